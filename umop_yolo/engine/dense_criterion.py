"""The Ultralytics criterion of the dense detectors: Ultralytics' batch in, the nn/ loss of RetinaNet or ATSS out."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from umop_yolo.nn.losses import ATSSLoss, RetinaNetLoss
from umop_yolo.nn.targets import padded_targets


class DenseCriterion:
    """Ultralytics criterion for DenseDetectionModel: (preds, batch) -> (loss * batch size, detached loss items).

    A plain object (not an nn.Module), rebuilt by `init_criterion()`. `head` is the model's DenseHead (anchors per
    feature-map shape). `last_stats` holds the latest per-level statistics for the trainer's level record
    (positives, samples, loss, gamma_l and alpha_l; the focal baseline's stay at gamma and w / gamma, the flat
    reference line of the Fig. 3 plot).
    """

    def __init__(self, head: Any, loss: RetinaNetLoss | ATSSLoss) -> None:
        self.head, self.loss = head, loss
        self.last_stats: dict[str, Tensor] = {}

    def __call__(self, preds: dict[str, Any] | tuple, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        preds = preds[1] if isinstance(preds, tuple) else preds
        anchors, sizes = self.head.anchors_for(preds["feats"])
        boxes, labels, mask = padded_targets(batch)
        terms, stats = self.loss(preds, anchors, sizes, boxes, labels, mask)
        self.last_stats = stats
        total = sum(terms.values())
        return total * batch["img"].shape[0], {k: v.detach() for k, v in terms.items()}
