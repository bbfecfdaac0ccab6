"""RetinaNet / ATSS losses agree with MMDetection (2.x, which the authors' UMOP code forks) where it is easy to drift:
the normaliser counts every image at least once."""

import pytest
import torch

from umop_yolo.nn import ATSSAssigner, ATSSLoss, DeltaXYWHBoxCoder, MaxIoUAssigner, RetinaNetLoss
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
