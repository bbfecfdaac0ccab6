"""RetinaNet / ATSS losses: the classification term is the PFL core and, at delta 0, torchvision's focal loss."""

import math
from typing import ClassVar

import torch
import torchvision

from umop_yolo.nn import ATSSAssigner, ATSSLoss, DeltaXYWHBoxCoder, MaxIoUAssigner, RetinaNetLoss, losses
from umop_yolo.nn.losses import centerness_target
from umop_yolo.pfl import ProgressiveFocalLoss

FOCAL = ProgressiveFocalLoss(gamma=2.0, delta=0.0, w=0.5)  # what umop=false builds
ANCHORS = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 4.5], [20, 20, 30, 30], [40, 40, 50, 50]])
BOXES = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 28, 30]]])  # anchor 2 (IoU 0.45) is ignored
LABELS = torch.tensor([[1, 2]])
MASK = torch.tensor([[True, True]])


def retina_preds(seed=0, nc=3):
    g = torch.Generator().manual_seed(seed)
    return {"cls_logits": (torch.randn(1, 5, nc, generator=g) * 2).requires_grad_(),
            "bbox_deltas": torch.randn(1, 5, 4, generator=g).requires_grad_()}


def test_retinanet_cls_loss_is_torchvision_focal_over_non_ignored_anchors_per_positive():
    preds = retina_preds()
    loss = RetinaNetLoss(FOCAL, MaxIoUAssigner(), DeltaXYWHBoxCoder(), nc=3)
    terms, stats = loss(preds, ANCHORS, [3, 2], BOXES, LABELS, MASK), loss.last_stats
    targets = torch.zeros(5, 3)
    targets[[0, 1], 1] = 1  # anchors 0, 1 -> box 0 (class 1)
    targets[3, 2] = 1  # anchor 3 -> box 1 (class 2, IoU 0.8)
    keep = torch.tensor([0, 1, 3, 4])
    expected = torchvision.ops.sigmoid_focal_loss(preds["cls_logits"][0, keep], targets[keep], alpha=0.25, gamma=2.0,
                                                  reduction="sum") / 3
    torch.testing.assert_close(terms["cls_loss"], expected)
    terms["cls_loss"].backward()
    assert torch.equal(preds["cls_logits"].grad[0, 2], torch.zeros(3))  # the ignored anchor gets no gradient
    assert stats["gamma"].tolist() == [2.0, 2.0] and stats["num_pos"].tolist() == [2.0, 1.0]


def test_retinanet_box_loss_is_l1_on_deltas_per_positive():
    preds = retina_preds()
    coder = DeltaXYWHBoxCoder()
    terms = RetinaNetLoss(FOCAL, MaxIoUAssigner(), coder, nc=3)(preds, ANCHORS, [3, 2], BOXES, LABELS, MASK)
    target = coder.encode(ANCHORS[[0, 1, 3]], BOXES[0, [0, 0, 1]])
    expected = (preds["bbox_deltas"][0, [0, 1, 3]] - target).abs().sum() / 3
    torch.testing.assert_close(terms["box_loss"], expected)


def test_centerness_target_known_values():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 3)
    anchors = torch.tensor([[0.0, 0, 10, 10], [-2.5, 0, 7.5, 10], [20, 20, 30, 30]])  # centres (5,5), (2.5,5), out
    torch.testing.assert_close(centerness_target(anchors, boxes), torch.tensor([1.0, math.sqrt(2.5 / 7.5), 0.0]))


def test_atss_exact_boxes_give_zero_box_loss_and_every_term_is_finite_without_boxes():
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 2, 10, 12], [40, 40, 50, 50], [-10, -10, 20, 20], [60, 60, 90, 90]])
    boxes, labels = torch.tensor([[[0.5, 0.5, 10, 10]], [[0.0, 0, 0, 0]]]), torch.zeros(2, 1, dtype=torch.long)
    mask = torch.tensor([[True], [False]])
    coder = DeltaXYWHBoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
    deltas = coder.encode(anchors[None], boxes[:1].expand(2, 5, 4)).requires_grad_()  # every anchor decodes to the box
    preds = {"cls_logits": torch.zeros(2, 5, 2, requires_grad=True), "bbox_deltas": deltas,
             "centerness": torch.zeros(2, 5, 1, requires_grad=True)}
    loss = ATSSLoss(FOCAL, ATSSAssigner(topk=2), coder, nc=2)
    terms = loss(preds, anchors, [3, 2], boxes, labels, mask)
    assert list(terms) == ["box_loss", "cls_loss", "ctr_loss"]  # Ultralytics' loss items, in order
    assert loss.last_stats["num_pos"].tolist() == [1.0, 0.0]  # anchor 0 (IoU 0.90; threshold 0.85)
    torch.testing.assert_close(terms["box_loss"], torch.tensor(0.0), atol=1e-5, rtol=0)
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in preds.values())
    assert torch.equal(preds["centerness"].grad[1], torch.zeros(5, 1))  # the empty image: no centerness loss


def atss_preds(seed=0, nc=3):
    g = torch.Generator().manual_seed(seed)
    return {**retina_preds(seed, nc), "centerness": torch.randn(1, 5, 1, generator=g)}


ATSS_CODER = DeltaXYWHBoxCoder(stds=(0.1, 0.1, 0.2, 0.2))


def test_a_head_that_overrides_one_term_keeps_the_other_terms_bit_identical():
    """DETR's SetCriterion: one method per term, so e.g. GFL's own classification loss replaces only `loss_cls`."""

    class OwnCls(ATSSLoss):
        def loss_cls(self, preds, t):
            return preds["cls_logits"].sigmoid().sum() / t.num_pos

    preds = atss_preds()
    want = ATSSLoss(FOCAL, ATSSAssigner(topk=2), ATSS_CODER, nc=3)(preds, ANCHORS, [3, 2], BOXES, LABELS, MASK)
    got = OwnCls(FOCAL, ATSSAssigner(topk=2), ATSS_CODER, nc=3)(preds, ANCHORS, [3, 2], BOXES, LABELS, MASK)
    assert list(got) == list(want) == ["box_loss", "cls_loss", "ctr_loss"]
    assert torch.equal(got["box_loss"], want["box_loss"]) and torch.equal(got["ctr_loss"], want["ctr_loss"])
    assert not torch.equal(got["cls_loss"], want["cls_loss"])


def test_a_head_that_adds_a_term_lists_it_after_the_others():
    class WithL1(RetinaNetLoss):
        terms: ClassVar[dict[str, str]] = {**RetinaNetLoss.terms, "l1_loss": "loss_l1"}

        def loss_l1(self, preds, t):
            return preds["bbox_deltas"].abs().sum() / t.num_pos

    preds = retina_preds()
    plain = RetinaNetLoss(FOCAL, MaxIoUAssigner(), DeltaXYWHBoxCoder(), nc=3)
    want = plain(preds, ANCHORS, [3, 2], BOXES, LABELS, MASK)
    got = WithL1(FOCAL, MaxIoUAssigner(), DeltaXYWHBoxCoder(), nc=3)(preds, ANCHORS, [3, 2], BOXES, LABELS, MASK)
    assert list(got) == ["box_loss", "cls_loss", "l1_loss"]
    assert torch.equal(got["box_loss"], want["box_loss"]) and torch.equal(got["cls_loss"], want["cls_loss"])
    torch.testing.assert_close(got["l1_loss"], preds["bbox_deltas"].abs().sum() / 3)  # 3 positives


def test_only_atss_averages_its_normalisers_over_ranks_once(monkeypatch):
    """MMDetection: ATSSHead reduce_means num_total_pos and the centerness-target sum (one all-reduce here, both
    together); AnchorHead (RetinaNet) divides by its own GPU's num_total_pos."""
    reduced = []
    monkeypatch.setattr(losses, "mean_across_ranks", lambda x: reduced.append(x.shape) or x)
    RetinaNetLoss(FOCAL, MaxIoUAssigner(), ATSS_CODER, nc=3)(atss_preds(), ANCHORS, [3, 2], BOXES, LABELS, MASK)
    assert reduced == []
    ATSSLoss(FOCAL, ATSSAssigner(topk=2), ATSS_CODER, nc=3)(atss_preds(), ANCHORS, [3, 2], BOXES, LABELS, MASK)
    assert reduced == [torch.Size([2])]
