"""Ultralytics `DetMetrics` extended with the COCOeval numbers, so they reach results.csv and select best.pt."""

from __future__ import annotations

import math

from ultralytics.utils.metrics import DetMetrics

from umop_yolo.eval.coco_eval import METRICS

COCO_KEYS = tuple(f"metrics/{m}(COCO)" for m in METRICS)


class CocoDetMetrics(DetMetrics):
    """Ultralytics' box metrics (P, R, mAP50, mAP50-95) followed by COCO AP, AP50, AP75, APs, APm, APl.

    `keys` and `mean_results` grow together, so `results_dict` (what the trainer logs) carries all ten columns from
    the first epoch on, and `fitness` is COCO AP, so best.pt follows the number papers report.
    """

    def __init__(self, names: dict[int, str] | None = None) -> None:
        """Start with zero COCO scores; the validator fills `coco` (and `coco_per_class` on request)."""
        super().__init__(names)
        self.coco = dict.fromkeys(METRICS, 0.0)
        self.coco_per_class: dict[str, dict[str, float]] = {}

    @property
    def keys(self) -> list[str]:
        """Ultralytics' four box keys, then the six COCO keys."""
        return [*super().keys, *COCO_KEYS]

    def mean_results(self) -> list[float]:
        """Mean P, R, mAP50, mAP50-95, then the six COCO numbers."""
        return [*super().mean_results(), *self.coco.values()]

    @property
    def fitness(self) -> float:
        """COCO AP (IoU 0.50:0.95, all areas, 100 detections per image); 0 when there is no ground truth at all (AP
        nan), since Ultralytics takes a nan fitness for a diverged run."""
        ap = float(self.coco["AP"])
        return ap if math.isfinite(ap) else 0.0
