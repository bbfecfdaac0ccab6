"""The Ultralytics criterion of the dense detectors: Ultralytics' batch in, the nn/ loss of RetinaNet or ATSS out."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from umop_yolo.engine.criterion import LevelAssignment
from umop_yolo.nn.losses import ATSSLoss, RetinaNetLoss
from umop_yolo.nn.targets import padded_targets


class DenseCriterion:
    """Ultralytics criterion for DenseDetectionModel: (preds, batch) -> (loss * batch size, detached loss items).

    A plain object (not an nn.Module), rebuilt by `init_criterion()`. `head` is the model's DenseHead (anchors per
    feature-map shape). `last_stats` holds the latest per-level statistics for the trainer's level record
    (positives, samples, loss, gamma_l and alpha_l; the focal baseline's stay at gamma and w / gamma, the flat
    reference line of the Fig. 3 plot). `assign` and `last_stats`: `engine.criterion.LevelCriterion`.
    """

    def __init__(self, head: Any, loss: RetinaNetLoss | ATSSLoss) -> None:
        self.head, self.loss = head, loss

    @property
    def last_stats(self) -> dict[str, Tensor]:
        """Per-level statistics of the latest step (the classification term's)."""
        return self.loss.last_stats

    def __call__(self, preds: dict[str, Any] | tuple, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        preds, anchors, sizes = self._anchors(preds)
        terms = self.loss(preds, anchors, sizes, *padded_targets(batch))
        total = sum(terms.values())
        return total * batch["img"].shape[0], {k: v.detach() for k, v in terms.items()}

    def assign(self, preds: dict[str, Any] | tuple, batch: dict[str, Tensor]) -> LevelAssignment:
        """The head's assigner (MaxIoU or ATSS) on its anchors: no loss is computed."""
        _, anchors, sizes = self._anchors(preds)
        boxes, _, mask = padded_targets(batch)
        assign = self.loss.assigner(anchors, sizes, boxes, mask)
        return LevelAssignment(assign.pos, assign.gt_index, sizes)

    def _anchors(self, preds: dict[str, Any] | tuple) -> tuple[dict[str, Any], Tensor, list[int]]:
        """The training outputs (from an eval forward's (y, raw) too), the (A, 4) anchors and anchors per level."""
        preds = preds[1] if isinstance(preds, tuple) else preds
        return preds, *self.head.anchors_for(preds["feats"])
