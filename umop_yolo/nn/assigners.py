"""Anchor-to-ground-truth assignment for a whole batch at once (no Python loop over images, anchors or boxes).

Ground truth is padded per image: boxes (B, M, 4) xyxy, mask (B, M) marking the real ones. Both assigners return an
`Assignment`: for every anchor the index of its box (meaningful where `pos`), and which anchors are positive or
ignored (neither positive nor negative: no loss at all). An optional (B, A) `valid` (MMDetection's valid flags,
`AnchorGenerator.valid_flags`) leaves the anchors outside it, in an image's padding, out of the assignment, as
MMDetection assigns only `flat_anchors[inside_flags]`; they are returned as ignored.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from umop_yolo.nn.iou import pairwise_iou


class Assignment(NamedTuple):
    gt_index: Tensor  # (B, A) long: index into the image's boxes (M axis)
    pos: Tensor  # (B, A) bool
    ignore: Tensor  # (B, A) bool


class MaxIoUAssigner:
    """RetinaNet's assigner: positive if max IoU >= pos_iou_thr, negative if < neg_iou_thr, ignored in between.

    Low-quality matches (MMDetection `match_low_quality=True`, `gt_max_assign_all=True`): every anchor whose IoU with a
    box equals that box's best IoU (>= min_pos_iou and > 0) is made positive for it, so each box gets at least one
    anchor; where several boxes claim an anchor this way the last box wins, as in MMDetection's loop over boxes.
    """

    def __init__(self, pos_iou_thr: float = 0.5, neg_iou_thr: float = 0.4, min_pos_iou: float = 0.0) -> None:
        self.pos_iou_thr, self.neg_iou_thr, self.min_pos_iou = pos_iou_thr, neg_iou_thr, min_pos_iou

    def __call__(self, anchors: Tensor, level_sizes: list[int], boxes: Tensor, mask: Tensor,
                 valid: Tensor | None = None) -> Assignment:
        iou = pairwise_iou(anchors, boxes).masked_fill_(~mask[:, None, :], -1.0)  # (B, A, M)
        if valid is not None:  # no IoU, so neither a match nor any box's best anchor
            iou.masked_fill_(~valid[:, :, None], -1.0)
        max_iou, gt_index = iou.max(-1)
        pos = max_iou >= self.pos_iou_thr
        neg = max_iou < self.neg_iou_thr  # includes images without boxes (max_iou = -1)
        best = iou.amax(1, keepdim=True)  # (B, 1, M): each box's best IoU
        claims = (iou == best) & (best >= self.min_pos_iou) & (best > 0)
        order = torch.arange(1, iou.shape[-1] + 1, device=iou.device)
        claimant = (claims * order).amax(-1)  # (B, A): 1 + the last box claiming the anchor, 0 if none
        low_quality = claimant > 0
        gt_index = torch.where(low_quality, claimant - 1, gt_index)
        pos = pos | low_quality
        ignore = ~pos & ~neg
        return Assignment(gt_index, pos, ignore if valid is None else ignore | ~valid)


class ATSSAssigner:
    """Adaptive training sample selection (Zhang et al. 2020).

    For each box: the `topk` anchors per level whose centres are closest to the box centre are candidates; those with
    IoU >= mean + std of the candidates' IoUs (std unbiased, as torch/MMDetection) and whose centre lies inside the box
    (by more than 0.01 px) are positive. An anchor positive for several boxes goes to the one it overlaps most (the
    first such box on ties). Everything else is negative; nothing is ignored but invalid anchors, which are no
    candidates (a level with fewer than `topk` valid anchors gives them all, MMDetection's min(topk, inside)).
    """

    def __init__(self, topk: int = 9) -> None:
        self.topk = topk

    def __call__(self, anchors: Tensor, level_sizes: list[int], boxes: Tensor, mask: Tensor,
                 valid: Tensor | None = None) -> Assignment:
        iou = pairwise_iou(anchors, boxes)  # (B, A, M)
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2  # (A, 2)
        box_centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B, M, 2)
        dist = (centres[None, :, None, :] - box_centres[:, None, :, :]).pow(2).sum(-1)  # squared: same order
        if valid is not None:  # invalid anchors come last, and are dropped below
            dist.masked_fill_(~valid[:, :, None], torch.inf)
        candidates, start = [], 0
        for n in level_sizes:
            k = min(self.topk, n)
            candidates.append(dist[:, start : start + n].topk(k, dim=1, largest=False).indices + start)
            start += n
        cand = torch.cat(candidates, 1)  # (B, K, M) anchor indices
        cand_iou = iou.gather(1, cand)
        usable = torch.ones_like(cand, dtype=torch.bool) if valid is None else valid.gather(1, cand.flatten(1))
        usable = usable.view_as(cand)
        n = usable.sum(1, keepdim=True)
        mean = torch.where(usable, cand_iou, 0.0).sum(1, keepdim=True) / n
        var = torch.where(usable, (cand_iou - mean).pow(2), 0.0).sum(1, keepdim=True) / (n - 1)  # unbiased
        cx, cy = centres[cand, 0], centres[cand, 1]  # (B, K, M)
        b = boxes[:, None, :, :]
        inside = torch.stack([cx - b[..., 0], cy - b[..., 1], b[..., 2] - cx, b[..., 3] - cy], -1).amin(-1) > 0.01
        keep = (cand_iou >= mean + var.sqrt()) & inside & mask[:, None, :] & usable
        masked = torch.full_like(iou, -1.0).scatter_(1, cand, torch.where(keep, cand_iou, -1.0))
        best, gt_index = masked.max(-1)
        pos = best >= 0
        return Assignment(gt_index, pos, torch.zeros_like(pos) if valid is None else ~valid)
