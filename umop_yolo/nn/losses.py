"""RetinaNet and ATSS training losses over a whole batch; the classification term is always the PFL core.

`ProgressiveFocalLoss` gets one (B, N_l, C) logits/targets pair per pyramid level and the batch's positive count as
normaliser: with delta = 0 (gamma 2, w 0.5 -> alpha 0.25) it is exactly the focal loss of RetinaNet/ATSS, with
delta > 0 it is UMOP. There is no other focal-loss implementation in this package. Ignored anchors (RetinaNet's IoU
in [0.4, 0.5)) get a logit of -100 with target 0, i.e. a loss and gradient of exactly 0, so no tensor changes size
and nothing waits on the host. All inputs are batched: preds (B, A, K), anchors (A, 4) xyxy, ground truth padded to
(B, M, 4) boxes, (B, M) labels and (B, M) validity mask; optionally (B, A) valid flags (`AnchorGenerator.valid_flags`):
anchors in an image's padding are left out of the assignment and, ignored, out of every term.

Normalisers as MMDetection 2.x (and the authors' code, which forks it): num_total_pos = sum over images of
max(#positives, 1), so an image without objects counts once; ATSSHead averages it and the centerness-target sum over
GPUs, AnchorHead (RetinaNet) divides by its own GPU's.

As DETR's SetCriterion, each loss is one method per term (`loss_cls`, `loss_bbox`, `loss_centerness`) over targets
assigned once per batch (`targets`), so a new head (FCOS, GFL) overrides or adds one term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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


def num_total_pos(pos: Tensor) -> Tensor:
    """MMDetection's num_total_pos of (B, A) positives: sum over images of max(#positives, 1), as fp32."""
    return pos.sum(1).clamp_min(1).sum().float()


def centerness_target(anchors: Tensor, boxes: Tensor) -> Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of each anchor centre in its box (0 outside)."""
    cx, cy = (anchors[..., 0] + anchors[..., 2]) / 2, (anchors[..., 1] + anchors[..., 3]) / 2
    lr = torch.stack([cx - boxes[..., 0], boxes[..., 2] - cx], -1).clamp_min(0)
    tb = torch.stack([cy - boxes[..., 1], boxes[..., 3] - cy], -1).clamp_min(0)
    ratio = lr.amin(-1) / lr.amax(-1).clamp_min(1e-6) * tb.amin(-1) / tb.amax(-1).clamp_min(1e-6)
    return ratio.sqrt()


@dataclass
class DenseTargets:
    """One batch's assignment and normaliser: what every loss term reads (DETR's matched indices and num_boxes)."""

    anchors: Tensor  # (A, 4) xyxy
    level_sizes: list[int]  # anchors per level, P3 first
    labels: Tensor  # (B, M) classes of the padded boxes
    assign: Assignment
    matched: Tensor  # (B, A, 4) the box matched to each anchor (meaningful where assign.pos)
    num_pos: Tensor  # sum over images of max(positive anchors, 1) (RetinaNet: this rank's; ATSS: mean over ranks)


@dataclass
class ATSSTargets(DenseTargets):
    box_targets: Tensor  # (B, A, 4) decode(encode(matched)): the box as the coder represents it (dw, dh clamped)
    centerness: Tensor  # (B, A) centerness target of positive anchors in their box_targets, 0 elsewhere
    centerness_sum: Tensor  # its sum, mean over DDP ranks, >= 1: the box loss' normaliser


class DenseLoss:
    """Assignment once per batch (`targets`), then one method per loss term; the classification term, shared by
    RetinaNet and ATSS, is the PFL core. `terms` maps Ultralytics' loss items (results.csv columns), in order, to the
    methods. `last_stats`: the latest step's per-level statistics from PFL (gamma_l, alpha_l, positives, loss)."""

    terms: ClassVar[dict[str, str]] = {"box_loss": "loss_bbox", "cls_loss": "loss_cls"}

    def __init__(self, pfl: ProgressiveFocalLoss, assigner: MaxIoUAssigner | ATSSAssigner, coder: DeltaXYWHBoxCoder,
                 nc: int) -> None:
        self.pfl, self.assigner, self.coder, self.nc = pfl, assigner, coder, nc
        self.last_stats: dict[str, Tensor] = {}

    def __call__(self, preds: dict[str, Tensor], anchors: Tensor, level_sizes: list[int], boxes: Tensor,
                 labels: Tensor, mask: Tensor, valid: Tensor | None = None) -> dict[str, Tensor]:
        """Each term of `terms` on the batch's targets: {loss item: scalar}."""
        targets = self.targets(anchors, level_sizes, boxes, labels, mask, valid)
        return {item: getattr(self, method)(preds, targets) for item, method in self.terms.items()}

    def match(self, anchors: Tensor, level_sizes: list[int], boxes: Tensor, mask: Tensor,
              valid: Tensor | None = None) -> tuple[Assignment, Tensor]:
        """The assigner's result and the (B, A, 4) box matched to each anchor."""
        assign = self.assigner(anchors, level_sizes, boxes, mask, valid)
        return assign, gather_boxes(boxes, assign.gt_index)

    def targets(self, anchors: Tensor, level_sizes: list[int], boxes: Tensor, labels: Tensor, mask: Tensor,
                valid: Tensor | None = None) -> DenseTargets:
        """The assignment and MMDetection AnchorHead's normaliser, this rank's num_total_pos."""
        assign, matched = self.match(anchors, level_sizes, boxes, mask, valid)
        return DenseTargets(anchors, level_sizes, labels, assign, matched, num_total_pos(assign.pos))

    def loss_cls(self, preds: dict[str, Tensor], t: DenseTargets) -> Tensor:
        """PFL (Eq. 1-5; the focal loss at delta 0) over levels P3.. of the (B, A, nc) logits / num_total_pos; ignored
        (and invalid) anchors contribute nothing."""
        logits = torch.where(t.assign.ignore[..., None], IGNORED_LOGIT, preds["cls_logits"])
        targets = class_targets(t.labels, t.assign, self.nc)
        loss, self.last_stats = self.pfl(list(logits.split(t.level_sizes, 1)), list(targets.split(t.level_sizes, 1)),
                                         t.num_pos)
        self.last_stats["normalizer"] = t.num_pos.detach()
        return loss


class RetinaNetLoss(DenseLoss):
    """cls: focal / PFL over all non-ignored anchors / num_total_pos; box: L1 on encoded deltas of positives /
    num_total_pos (the deltas of encode(gt), unclamped: MMDetection's AnchorHead with reg_decoded_bbox=False)."""

    def __init__(self, pfl: ProgressiveFocalLoss, assigner: MaxIoUAssigner, coder: DeltaXYWHBoxCoder, nc: int,
                 box_weight: float = 1.0) -> None:
        super().__init__(pfl, assigner, coder, nc)
        self.box_weight = box_weight

    def loss_bbox(self, preds: dict[str, Tensor], t: DenseTargets) -> Tensor:
        """L1 on the encoded deltas of positives / num_total_pos."""
        target = self.coder.encode(t.anchors[None], t.matched)
        l1 = (preds["bbox_deltas"].float() - target).abs().sum(-1)
        return torch.where(t.assign.pos, l1, 0.0).sum() / t.num_pos * self.box_weight


class ATSSLoss(DenseLoss):
    """cls: focal / PFL / num_total_pos; box: GIoU loss of decoded boxes against decode(encode(gt)), weighted by
    centerness targets / their sum (x2); centerness: BCE of positives / num_total_pos."""

    terms: ClassVar[dict[str, str]] = {**DenseLoss.terms, "ctr_loss": "loss_centerness"}

    def __init__(self, pfl: ProgressiveFocalLoss, assigner: ATSSAssigner, coder: DeltaXYWHBoxCoder, nc: int,
                 box_weight: float = 2.0, centerness_weight: float = 1.0) -> None:
        super().__init__(pfl, assigner, coder, nc)
        self.box_weight, self.centerness_weight = box_weight, centerness_weight

    def targets(self, anchors: Tensor, level_sizes: list[int], boxes: Tensor, labels: Tensor, mask: Tensor,
                valid: Tensor | None = None) -> ATSSTargets:
        """The common targets plus the box and centerness targets, as MMDetection's ATSSHead: boxes through the
        coder (decode(encode(gt)), its pos_decode_bbox_targets), centerness of the anchor in that box; both
        normalisers in one all-reduce."""
        assign, matched = self.match(anchors, level_sizes, boxes, mask, valid)
        box_targets = self.coder.decode(anchors[None], self.coder.encode(anchors[None], matched))
        centerness = torch.where(assign.pos, centerness_target(anchors[None], box_targets), 0.0)
        norms = mean_across_ranks(torch.stack([num_total_pos(assign.pos), centerness.sum()])).clamp_min(1.0)
        return ATSSTargets(anchors, level_sizes, labels, assign, matched, norms[0], box_targets, centerness, norms[1])

    def loss_bbox(self, preds: dict[str, Tensor], t: ATSSTargets) -> Tensor:
        """GIoU loss of the decoded boxes against the box targets, weighted by the centerness targets / their sum."""
        decoded = self.coder.decode(t.anchors[None], preds["bbox_deltas"])
        return (t.centerness * (1.0 - giou(decoded, t.box_targets))).sum() / t.centerness_sum * self.box_weight

    def loss_centerness(self, preds: dict[str, Tensor], t: ATSSTargets) -> Tensor:
        """BCE of the predicted centerness of positives / num_total_pos."""
        bce = F.binary_cross_entropy_with_logits(preds["centerness"][..., 0].float(), t.centerness, reduction="none")
        return torch.where(t.assign.pos, bce, 0.0).sum() / t.num_pos * self.centerness_weight
