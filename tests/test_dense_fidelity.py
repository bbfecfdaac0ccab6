"""RetinaNet / ATSS losses agree with MMDetection (2.x, which the authors' UMOP code forks) where it is easy to drift:
the normaliser counts every image at least once, box targets are what the coder can represent."""

import pytest
import torch
import torch.nn.functional as F

from umop_yolo.nn import ATSSAssigner, ATSSLoss, DeltaXYWHBoxCoder, MaxIoUAssigner, RetinaNetLoss
from umop_yolo.nn.losses import centerness_target
from umop_yolo.pfl import ProgressiveFocalLoss

FOCAL = ProgressiveFocalLoss(gamma=2.0, delta=0.0, w=0.5)
ATSS_CODER = DeltaXYWHBoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
ANCHORS = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 4.5], [20, 20, 30, 30], [40, 40, 50, 50]])
BOXES = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 28, 30]]])
LABELS = torch.tensor([[1, 2]])
MASK = torch.tensor([[True, True]])


def losses(detector):
    if detector == "retinanet":
        return RetinaNetLoss(FOCAL, MaxIoUAssigner(), DeltaXYWHBoxCoder(), nc=3)
    return ATSSLoss(FOCAL, ATSSAssigner(topk=2), ATSS_CODER, nc=3)


def preds(n_img, seed=0, nc=3, anchors=5):
    g = torch.Generator().manual_seed(seed)
    return {"cls_logits": torch.randn(n_img, anchors, nc, generator=g) * 2,
            "bbox_deltas": torch.randn(n_img, anchors, 4, generator=g),
            "centerness": torch.randn(n_img, anchors, 1, generator=g)}


def image(p, i):
    return {k: v[i : i + 1] for k, v in p.items()}


@pytest.mark.parametrize("detector", ["retinanet", "atss"])
def test_an_image_without_boxes_adds_one_to_the_divisor_of_cls_and_centerness(detector):
    """MMDetection's num_total_pos = sum_i max(#pos_i, 1): the cls (and ATSS' centerness) divisor, RetinaNet's L1's
    too; ATSS' GIoU keeps the centerness-target sum."""
    p = preds(2)
    boxes, labels, mask = torch.cat([BOXES, torch.zeros(1, 2, 4)]), torch.cat([LABELS, LABELS]), \
        torch.tensor([[True, True], [False, False]])
    loss = losses(detector)
    alone = loss(image(p, 0), ANCHORS, [3, 2], BOXES, LABELS, MASK)
    n_pos = float(loss.last_stats["num_pos"].sum())
    empty = loss(image(p, 1), ANCHORS, [3, 2], boxes[1:], labels[1:], mask[1:])
    both = loss(p, ANCHORS, [3, 2], boxes, labels, mask)
    assert n_pos == (3 if detector == "retinanet" else 2)
    # each image's sum over the sum of the divisors: (S0 + S1) / (n_pos + 1)
    torch.testing.assert_close(both["cls_loss"], (alone["cls_loss"] * n_pos + empty["cls_loss"]) / (n_pos + 1))
    if detector == "atss":
        torch.testing.assert_close(both["ctr_loss"], alone["ctr_loss"] * n_pos / (n_pos + 1))
        torch.testing.assert_close(both["box_loss"], alone["box_loss"])  # / the centerness-target sum
    else:
        torch.testing.assert_close(both["box_loss"], alone["box_loss"] * n_pos / (n_pos + 1))


# --- box targets through the coder ------------------------------------------------------------------------------------

def test_atss_box_and_centerness_targets_are_decode_encode_of_the_box():
    """A 4 px box on a 640 px anchor: log(4 / 640) / 0.2 is past the coder's clamp, so MMDetection's target is the
    10.24 px box decode(encode(gt)) (pos_decode_bbox_targets, also the centerness target's box)."""
    anchors = torch.tensor([[0.0, 0, 640, 640], [1000, 1000, 1010, 1010], [2000, 2000, 2010, 2010]])
    box = torch.tensor([[[319.0, 319, 323, 323]]])  # centre (321, 321); the anchor centre (320, 320) is inside
    deltas = ATSS_CODER.encode(anchors[None], box.expand(1, 3, 4))  # what the box encodes to, unclamped
    p = {"cls_logits": torch.zeros(1, 3, 1), "bbox_deltas": deltas, "centerness": torch.zeros(1, 3, 1)}
    loss = ATSSLoss(FOCAL, ATSSAssigner(topk=3), ATSS_CODER, nc=1)
    terms = loss(p, anchors, [3], box, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool))
    assert loss.last_stats["num_pos"].tolist() == [1.0]
    clamped = ATSS_CODER.decode(anchors[:1], deltas[0, :1])  # 10.24 px wide, centred on (321, 321)
    torch.testing.assert_close(clamped[0, 2] - clamped[0, 0], torch.tensor(640 * 16 / 1000))
    torch.testing.assert_close(terms["box_loss"], torch.tensor(0.0), atol=1e-6, rtol=0)  # the prediction is the target
    ctr = centerness_target(anchors[:1], clamped)  # (320 - 315.88) / (326.12 - 320), not 1 / 3 as of the raw box
    torch.testing.assert_close(terms["ctr_loss"], F.binary_cross_entropy_with_logits(torch.zeros(1), ctr))
