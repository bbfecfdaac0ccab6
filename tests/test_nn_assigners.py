"""IoU / GIoU, and both assigners on hand-made boxes whose IoUs are worked out in the comments."""

import torch
import torchvision

from umop_yolo.nn import ATSSAssigner, MaxIoUAssigner
from umop_yolo.nn.iou import giou, pairwise_iou


def padded(*images):
    """Per-image box lists -> (B, M, 4) boxes and (B, M) mask."""
    m = max(max(len(b) for b in images), 1)
    boxes, mask = torch.zeros(len(images), m, 4), torch.zeros(len(images), m, dtype=torch.bool)
    for i, b in enumerate(images):
        if b:
            boxes[i, : len(b)] = torch.tensor(b, dtype=torch.float32)
            mask[i, : len(b)] = True
    return boxes, mask


def test_pairwise_iou_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(30, 2, generator=g) * 50
    a = torch.cat([xy, xy + 1 + torch.rand(30, 2, generator=g) * 40], 1)
    xy = torch.rand(2, 7, 2, generator=g) * 50
    b = torch.cat([xy, xy + 1 + torch.rand(2, 7, 2, generator=g) * 40], -1)
    iou = pairwise_iou(a, b)
    for i in range(2):
        torch.testing.assert_close(iou[i], torchvision.ops.box_iou(a, b[i]))


def test_giou_known_values():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 2, 2]])
    b = torch.tensor([[0.0, 0, 2, 2], [2, 0, 3, 1], [1, 0, 3, 2]])
    # identical: 1; disjoint: 0 - (3 - 2) / 3; half overlap: 2 / 6 - 0
    torch.testing.assert_close(giou(a, b), torch.tensor([1.0, -1 / 3, 1 / 3]))


ANCHORS = torch.tensor([
    [0.0, 0, 10, 10],  # 0: IoU 1 with box A
    [0, 0, 10, 8],  # 1: IoU 0.8 with box A
    [0, 0, 10, 4.5],  # 2: IoU 0.45 with box A: between the thresholds, ignored
    [20, 20, 30, 30],  # 3: IoU 0.36 with box B, B's best: a low-quality positive
    [50, 50, 60, 60],  # 4: IoU 0.3 with boxes C and D, the best of both
])


def test_max_iou_assigner_thresholds_low_quality_matches_and_empty_images():
    box_a, box_b = [0, 0, 10, 10], [20, 20, 26, 26]
    box_c, box_d = [50, 50, 53, 60], [57, 50, 60, 60]
    boxes, mask = padded([box_a, box_b], [box_c, box_d], [])
    got = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0)(ANCHORS, [5], boxes, mask)
    assert got.pos.tolist() == [[True, True, False, True, False], [False, False, False, False, True], [False] * 5]
    assert got.ignore.tolist() == [[False, False, True, False, False], [False] * 5, [False] * 5]
    assert got.gt_index[0, [0, 1, 3]].tolist() == [0, 0, 1]
    assert got.gt_index[1, 4].item() == 1  # two boxes claim the anchor as their best: the last one wins


ATSS_ANCHORS = torch.tensor([
    [0.0, 0, 10, 10],  # level 0
    [0, 2, 10, 12],
    [40, 40, 50, 50],
    [-10, -10, 20, 20],  # level 1
    [60, 60, 90, 90],
])


def test_atss_assigner_threshold_tie_break_and_centre_rule():
    # Image 0. Box A = [0,0,10,10]: candidates (2 nearest per level) have IoUs 1, 0.667, 0.111, 0 -> threshold
    # mean + std = 0.916: anchor 0 only. Box B = [-.5,-.5,10.5,10.5]: IoUs 0.826, 0.625, 0.134, 0 -> threshold 0.789:
    # anchor 0 again; it goes to the box it overlaps most, A (listed second).
    # Image 1. Box C = [5.5,0,15.5,10]: IoUs 0.290, 0.220, 0.111, 0 -> threshold 0.282: anchor 0 passes the IoU test,
    # but its centre (5, 5) lies outside C, so C gets no anchor at all.
    boxes, mask = padded([[-0.5, -0.5, 10.5, 10.5], [0, 0, 10, 10]], [[5.5, 0, 15.5, 10]], [])
    got = ATSSAssigner(topk=2)(ATSS_ANCHORS, [3, 2], boxes, mask)
    assert got.pos.tolist() == [[True, False, False, False, False], [False] * 5, [False] * 5]
    assert got.gt_index[0, 0].item() == 1
    assert not got.ignore.any()
    # Without box A, anchor 0 is B's.
    boxes, mask = padded([[-0.5, -0.5, 10.5, 10.5]])
    got = ATSSAssigner(topk=2)(ATSS_ANCHORS, [3, 2], boxes, mask)
    assert got.pos.tolist() == [[True, False, False, False, False]] and got.gt_index[0, 0].item() == 0
