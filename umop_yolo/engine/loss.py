"""UMOP classification loss for Ultralytics YOLO heads: PFL per pyramid level in place of BCE.

TaskAlignedAssigner, the box (CIoU) and DFL losses and the normaliser (sum of target scores) stay Ultralytics' own; only
`v8DetectionLoss.bce` is replaced, by a callable that splits the anchors by level (P3, P4, P5 ...) and applies the
progressive focal loss with that level's gamma_l, alpha_l (Eq. 3-5). With `umop=false` the same level split keeps
the stock BCE bit for bit and only records per-level positives and loss shares for the level diagnostics.

Under DDP (umop=true) every rank divides every term by 1/world of the whole batch's target-score sum (averaged over
ranks in the all-reduce of C_l), so the ranks' gradients add up to one process's on the whole batch. Ultralytics
(umop=false) divides by each rank's own sum.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from ultralytics.utils.loss import v8DetectionLoss

from umop_yolo.distributed import reducing_ranks
from umop_yolo.engine.criterion import LevelAssignment
from umop_yolo.pfl import PFLSettings, ProgressiveFocalLoss, level_sums


class LevelwisePFL:
    """Drop-in for `v8DetectionLoss.bce`: (B, A, C) logits and soft targets -> (B, A, C) elementwise loss.

    Ultralytics sums the result and divides by the target-score sum: the released sum reduction as it is; for Eq. (1)
    each level is pre-scaled here. All anchors in one pass (`ProgressiveFocalLoss.joined`), no per-level copies.
    `last_stats` keeps the step's detached per-level statistics (gamma, alpha, C_l, positives, loss) on the device.
    """

    def __init__(self, pfl: ProgressiveFocalLoss) -> None:
        self.pfl = pfl
        self.level_sizes: list[int] = []
        self.last_stats: dict[str, Tensor] = {}
        self.positive: Tensor | None = None  # (B, A) bool: the latest step's anchors with a target above 0
        self.divisor_ratio: Tensor | float = 1.0  # this rank's target-score sum / its mean over ranks

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        scale = None  # "sum" (released): every level / the batch's target-score sum, which Ultralytics divides by
        if self.pfl.settings.reduction == "mean":  # Eq. (1): each level / its own target sum, x Ultralytics' divisor
            target_sum = level_sums(targets.detach().float(), self.level_sizes)
            normalizer = target_sum.sum().clamp_min(1.0)
            scale = self.pfl.level_weights(target_sum, normalizer) * normalizer
        local = targets.detach().float().sum()  # Ultralytics' divisor (clamped to >= 1), this rank's
        loss, stats = self.pfl.joined(logits, targets, self.level_sizes, scale, normalizer=local)
        stats["loss"] = level_sums(loss.detach(), self.level_sizes) / stats["target_sum"].sum().clamp_min(1.0)
        # one process on the whole batch divides by max(sum, 1); each rank's share of that is its 1/world
        ranks = reducing_ranks()
        # one process (or validation, which never syncs) is its own whole batch: nothing to rescale
        self.divisor_ratio = (local.clamp_min(1.0) * ranks / (stats["normalizer"] * ranks).clamp_min(1.0)
                              if ranks > 1 else 1.0)
        self.positive = stats.pop("positive")
        self.last_stats = stats
        return loss


class LevelwiseBCE:
    """Drop-in for `v8DetectionLoss.bce` that returns exactly Ultralytics' elementwise BCE and records, per level, the
    positive samples and the level's share of the classification loss (`last_stats`, detached, on the device)."""

    def __init__(self) -> None:
        self.bce = nn.BCEWithLogitsLoss(reduction="none")  # the stock criterion's own op: same bits
        self.level_sizes: list[int] = []
        self.last_stats: dict[str, Tensor] = {}
        self.positive: Tensor | None = None  # (B, A) bool: the latest step's anchors with a target above 0

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        loss = self.bce(logits, targets)
        with torch.no_grad():
            normalizer = targets.float().sum().clamp_min(1.0)  # what Ultralytics divides by
            # Positives as PFL counts them, t > 0 in some class: one read-only pass for each anchor's largest target
            # (TAL's fg_mask also holds anchors whose target score is 0, which the loss trains as negatives).
            positive = self.positive = targets.amax(-1) > 0
            num_pos = [p.sum() for p in positive.split(self.level_sizes, 1)]
            level_loss = [x.float().sum() for x in loss.detach().split(self.level_sizes, 1)]
            self.last_stats = {
                "num_pos": torch.stack(num_pos).float(),
                "num_samples": torch.tensor([n * len(logits) for n in self.level_sizes], dtype=torch.float32,
                                            device=logits.device),
                "loss": torch.stack(level_loss) / normalizer,
            }
        return loss


class LevelSplitDetectionLoss(v8DetectionLoss):
    """`v8DetectionLoss` whose `bce` knows each anchor's pyramid level: by default the stock BCE, recorded per level
    (`umop=false`); `PFLDetectionLoss` swaps in the per-level progressive focal loss."""

    def __init__(self, model: torch.nn.Module, tal_topk: int = 10, tal_topk2: int | None = None) -> None:
        super().__init__(model, tal_topk, tal_topk2)
        self.bce: LevelwiseBCE | LevelwisePFL = LevelwiseBCE()

    @property
    def last_stats(self) -> dict[str, Tensor]:
        """Per-level statistics of the latest step."""
        return self.bce.last_stats

    def get_assigned_targets_and_loss(self, preds: dict[str, Any], batch: dict[str, Tensor], **assign_kwargs) -> tuple:
        """Record the level sizes (anchors per level, in head order) before Ultralytics' assignment and loss run."""
        self.bce.level_sizes = [f.shape[2] * f.shape[3] for f in preds["feats"]]
        return super().get_assigned_targets_and_loss(preds, batch, **assign_kwargs)

    def assign(self, preds: dict[str, Any] | tuple, batch: dict[str, Tensor]) -> LevelAssignment:
        """TaskAlignedAssigner on the model's predictions (for an end-to-end head, this branch's), through Ultralytics'
        own loss path, so `last_stats` is this batch's too (`engine.criterion.LevelCriterion`). Positives are the
        anchors with a target above 0, which the loss trains as positives and `last_stats` counts: TAL's fg_mask also
        holds anchors of target 0 (alignment metric 0, e.g. a predicted box that misses the object)."""
        preds = self.parse_output(preds)
        (_, gt_index, *_), _, _ = self.get_assigned_targets_and_loss(preds, batch)
        return LevelAssignment(self.bce.positive, gt_index, self.bce.level_sizes)


class PFLDetectionLoss(LevelSplitDetectionLoss):
    """`v8DetectionLoss` with the per-level progressive focal loss as its classification term, configured by `pfl`
    (TaskAlignedAssigner targets: one class per anchor, so the single-label path)."""

    def __init__(self, model: torch.nn.Module, tal_topk: int = 10, tal_topk2: int | None = None, *,
                 pfl: PFLSettings) -> None:
        super().__init__(model, tal_topk, tal_topk2)
        self.bce = LevelwisePFL(ProgressiveFocalLoss(pfl, single_label=True))

    def get_assigned_targets_and_loss(self, preds: dict[str, Any], batch: dict[str, Tensor], **assign_kwargs) -> tuple:
        """Ultralytics' terms, each divided by the target-score sum averaged over DDP ranks instead of this rank's."""
        assigned, loss, _ = super().get_assigned_targets_and_loss(preds, batch, **assign_kwargs)
        loss = loss * self.bce.divisor_ratio
        return assigned, loss, dict(zip(self.loss_names, loss.detach()))
