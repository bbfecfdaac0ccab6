"""RetinaNet and ATSS training losses over a whole batch; the classification term is always the PFL core.

`ProgressiveFocalLoss` gets one (B, N_l, C) logits/targets pair per pyramid level and the batch's positive count as
normaliser: with delta = 0 (gamma 2, w 0.5 -> alpha 0.25) it is exactly the focal loss of RetinaNet/ATSS, with
delta > 0 it is UMOP. There is no other focal-loss implementation in this package. Ignored anchors (RetinaNet's IoU
in [0.4, 0.5)) get a logit of -100 with target 0, i.e. a loss and gradient of exactly 0, so no tensor changes size
and nothing waits on the host. All inputs are batched: preds (B, A, K), anchors (A, 4) xyxy, ground truth padded to
(B, M, 4) boxes, (B, M) labels and (B, M) validity mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from umop_yolo.distributed import mean_across_ranks
from umop_yolo.nn.assigners import Assignment, ATSSAssigner, MaxIoUAssigner
from umop_yolo.nn.box_coder import DeltaXYWHBoxCoder
from umop_yolo.nn.iou import giou
from umop_yolo.pfl import ProgressiveFocalLoss

IGNORED_LOGIT = -100.0  # sigmoid ~ 4e-44: focal loss and its gradient are 0 in fp32


def gather_boxes(boxes: Tensor, gt_index: Tensor) -> Tensor:
    """(B, M, 4) boxes, (B, A) indices -> (B, A, 4) the box matched to each anchor."""
    return boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))


def class_targets(labels: Tensor, assign: Assignment, nc: int) -> Tensor:
    """(B, A, nc) 0/1 targets: 1 at the matched box's class for positive anchors."""
    cls = labels.gather(1, assign.gt_index)
    return torch.zeros(*cls.shape, nc, device=cls.device).scatter_(-1, cls[..., None], assign.pos[..., None].float())


def centerness_target(anchors: Tensor, boxes: Tensor) -> Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of each anchor centre in its box (0 outside)."""
    cx, cy = (anchors[..., 0] + anchors[..., 2]) / 2, (anchors[..., 1] + anchors[..., 3]) / 2
    lr = torch.stack([cx - boxes[..., 0], boxes[..., 2] - cx], -1).clamp_min(0)
    tb = torch.stack([cy - boxes[..., 1], boxes[..., 3] - cy], -1).clamp_min(0)
    ratio = lr.amin(-1) / lr.amax(-1).clamp_min(1e-6) * tb.amin(-1) / tb.amax(-1).clamp_min(1e-6)
    return ratio.sqrt()


class DenseLoss:
    """Assignment, class targets and the per-level classification loss shared by RetinaNet and ATSS."""

    def __init__(self, pfl: ProgressiveFocalLoss, assigner: MaxIoUAssigner | ATSSAssigner, coder: DeltaXYWHBoxCoder,
                 nc: int) -> None:
        self.pfl, self.assigner, self.coder, self.nc = pfl, assigner, coder, nc

    def classification(self, logits: Tensor, assign: Assignment, labels: Tensor, level_sizes: list[int],
                       num_pos: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """PFL over levels P3.. of (B, A, nc) logits; ignored anchors contribute nothing."""
        logits = torch.where(assign.ignore[..., None], IGNORED_LOGIT, logits)
        targets = class_targets(labels, assign, self.nc)
        return self.pfl(list(logits.split(level_sizes, 1)), list(targets.split(level_sizes, 1)), num_pos)


class RetinaNetLoss(DenseLoss):
    """cls: focal / PFL over all non-ignored anchors / #pos; box: L1 on encoded deltas of positives / #pos."""

    def __init__(self, pfl: ProgressiveFocalLoss, assigner: MaxIoUAssigner, coder: DeltaXYWHBoxCoder, nc: int,
                 box_weight: float = 1.0) -> None:
        super().__init__(pfl, assigner, coder, nc)
        self.box_weight = box_weight

    def __call__(self, preds: dict[str, Tensor], anchors: Tensor, level_sizes: list[int], boxes: Tensor,
                 labels: Tensor, mask: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        assign = self.assigner(anchors, level_sizes, boxes, mask)
        num_pos = mean_across_ranks(assign.pos.sum().float()).clamp_min(1.0)
        cls_loss, stats = self.classification(preds["cls_logits"], assign, labels, level_sizes, num_pos)
        target = self.coder.encode(anchors[None], gather_boxes(boxes, assign.gt_index))
        l1 = (preds["bbox_deltas"].float() - target).abs().sum(-1)
        box_loss = torch.where(assign.pos, l1, 0.0).sum() / num_pos * self.box_weight
        return {"box_loss": box_loss, "cls_loss": cls_loss}, stats


class ATSSLoss(DenseLoss):
    """cls: focal / PFL / #pos; box: GIoU loss of decoded boxes weighted by centerness targets / their sum (x2);
    centerness: BCE of positives / #pos."""

    def __init__(self, pfl: ProgressiveFocalLoss, assigner: ATSSAssigner, coder: DeltaXYWHBoxCoder, nc: int,
                 box_weight: float = 2.0, centerness_weight: float = 1.0) -> None:
        super().__init__(pfl, assigner, coder, nc)
        self.box_weight, self.centerness_weight = box_weight, centerness_weight

    def __call__(self, preds: dict[str, Tensor], anchors: Tensor, level_sizes: list[int], boxes: Tensor,
                 labels: Tensor, mask: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        assign = self.assigner(anchors, level_sizes, boxes, mask)
        matched = gather_boxes(boxes, assign.gt_index)
        ctr_target = torch.where(assign.pos, centerness_target(anchors[None], matched), 0.0)
        norms = mean_across_ranks(torch.stack([assign.pos.sum().float(), ctr_target.sum()]))
        num_pos, ctr_sum = norms[0].clamp_min(1.0), norms[1].clamp_min(1.0)
        cls_loss, stats = self.classification(preds["cls_logits"], assign, labels, level_sizes, num_pos)
        decoded = self.coder.decode(anchors[None], preds["bbox_deltas"])
        box_loss = (ctr_target * (1.0 - giou(decoded, matched))).sum() / ctr_sum * self.box_weight
        bce = F.binary_cross_entropy_with_logits(preds["centerness"][..., 0].float(), ctr_target, reduction="none")
        ctr_loss = torch.where(assign.pos, bce, 0.0).sum() / num_pos * self.centerness_weight
        return {"box_loss": box_loss, "cls_loss": cls_loss, "ctr_loss": ctr_loss}, stats
