"""The registry of dense detectors: per detector its head towers, assigner, loss and MMDetection's head settings.

A new anchor-based head is one entry here (its towers' constructor takes `nc`, `num_anchors`, `in_channels` plus the
`head:` settings named in `head_keys`; its loss takes `(pfl, assigner, coder, nc, **loss settings)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from umop_yolo.nn.assigners import ATSSAssigner, MaxIoUAssigner
from umop_yolo.nn.atss_head import ATSSHead
from umop_yolo.nn.losses import ATSSLoss, RetinaNetLoss
from umop_yolo.nn.retina_head import RetinaHead


@dataclass(frozen=True)
class DetectorSpec:
    head: type[nn.Module]  # towers: per level (B, A*nc, H, W) class logits, (B, A*4, H, W) deltas [, centerness]
    head_keys: tuple[str, ...]  # `head:` settings (and `num_levels`) its constructor takes
    assigner: type
    loss: type
    extra_convs: str  # FPN's source of P6: 'on_input' (C5) or 'on_output' (P5)
    defaults: dict[str, Any]  # MMDetection's `head:` settings


_TOWER = ("feat_channels", "stacked_convs", "prior_prob")
_TEST = {"nms_pre": 1000, "score_thr": 0.05}
DETECTORS: dict[str, DetectorSpec] = {
    "retinanet": DetectorSpec(
        RetinaHead, _TOWER, MaxIoUAssigner, RetinaNetLoss, "on_input",
        {"feat_channels": 256, "stacked_convs": 4, "prior_prob": 0.01, "test": _TEST,
         "anchors": {"octave_base_scale": 4, "scales_per_octave": 3, "ratios": [0.5, 1.0, 2.0]},
         "box_coder": {"means": [0.0] * 4, "stds": [1.0] * 4},
         "assigner": {"pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0.0},
         "loss": {"box_weight": 1.0}}),
    "atss": DetectorSpec(
        ATSSHead, (*_TOWER, "gn_groups", "num_levels"), ATSSAssigner, ATSSLoss, "on_output",
        {"feat_channels": 256, "stacked_convs": 4, "prior_prob": 0.01, "test": _TEST, "gn_groups": 32,
         "anchors": {"octave_base_scale": 8, "scales_per_octave": 1, "ratios": [1.0]},
         "box_coder": {"means": [0.0] * 4, "stds": [0.1, 0.1, 0.2, 0.2]},
         "assigner": {"topk": 9},
         "loss": {"box_weight": 2.0, "centerness_weight": 1.0}}),
}
