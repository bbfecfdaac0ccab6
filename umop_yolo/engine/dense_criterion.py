"""The Ultralytics criterion of the dense detectors: Ultralytics' batch in, the nn/ loss of RetinaNet or ATSS out."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from umop_yolo.engine.criterion import LevelAssignment
from umop_yolo.nn.losses import ATSSLoss, RetinaNetLoss
from umop_yolo.nn.targets import padded_targets, valid_regions


class DenseCriterion:
    """Ultralytics criterion for DenseDetectionModel: (preds, batch) -> (loss * batch size, detached loss items).

    A plain object (not an nn.Module), rebuilt by `init_criterion()`. `head` is the model's DenseHead (anchors per
    feature-map shape). `last_stats` holds the latest per-level statistics for the trainer's level record
    (positives, samples, loss, gamma_l and alpha_l; the focal baseline's stay at gamma and w / gamma, the flat
    reference line of the Fig. 3 plot). `assign` and `last_stats`: `engine.criterion.LevelCriterion`.

    Anchors whose centre lies in an image's padding (`nn.targets.valid_regions`: letterboxed validation batches, and
    training batches of a dataset that records `valid_region`) are neither assigned nor sampled, as MMDetection's valid
    flags.
    """

    def __init__(self, head: Any, loss: RetinaNetLoss | ATSSLoss) -> None:
        self.head, self.loss = head, loss

    @property
    def last_stats(self) -> dict[str, Tensor]:
        """Per-level statistics of the latest step (the classification term's)."""
        return self.loss.last_stats

    def __call__(self, preds: dict[str, Any] | tuple, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        preds, anchors, sizes = self._anchors(preds)
        terms = self.loss(preds, anchors, sizes, *padded_targets(batch), self._valid(preds, batch))
        total = sum(terms.values())
        return total * batch["img"].shape[0], {k: v.detach() for k, v in terms.items()}

    def assign(self, preds: dict[str, Any] | tuple, batch: dict[str, Tensor]) -> LevelAssignment:
        """The head's assigner (MaxIoU or ATSS) on its anchors: no loss is computed."""
        preds, anchors, sizes = self._anchors(preds)
        boxes, _, mask = padded_targets(batch)
        assign = self.loss.assigner(anchors, sizes, boxes, mask, self._valid(preds, batch))
        return LevelAssignment(assign.pos, assign.gt_index, sizes)

    def _anchors(self, preds: dict[str, Any] | tuple) -> tuple[dict[str, Any], Tensor, list[int]]:
        """The training outputs (from an eval forward's (y, raw) too), the (A, 4) anchors and anchors per level."""
        preds = preds[1] if isinstance(preds, tuple) else preds
        return preds, *self.head.anchors_for(preds["feats"])

    def _valid(self, preds: dict[str, Any], batch: dict[str, Any]) -> Tensor | None:
        """(B, A) valid flags of the anchors, or None where every image fills its input."""
        regions = valid_regions(batch)
        if regions is None:
            return None
        return self.head.anchor_generator.valid_flags([tuple(f.shape[-2:]) for f in preds["feats"]], regions)
