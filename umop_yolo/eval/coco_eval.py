"""Score box detections with pycocotools' COCOeval: the six summary numbers papers report, optionally per class."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class CocoScores:
    """COCOeval results: `stats` holds COCOeval.stats[0:6] by name, nan where no ground truth falls in a size range
    (pycocotools' -1, "no data")."""

    stats: dict[str, float]
    per_class: dict[int, list[float]] = field(default_factory=dict)  # category id -> the six numbers, same definitions
    summary: str = ""  # pycocotools' printed summary (12 lines)


def _per_class(evaluator: COCOeval) -> dict[int, list[float]]:
    """The six summary numbers for each category, read from the accumulated precision array as `summarize` does."""
    p = evaluator.params
    precision = evaluator.eval["precision"]  # [IoU T, recall R, class K, area A, maxDets M]; M=-1 is 100 detections
    everything = np.ones(len(p.iouThrs), dtype=bool)
    selections = [  # (IoU thresholds, area range index) for AP, AP50, AP75, APs, APm, APl
        (everything, 0),
        (np.isclose(p.iouThrs, 0.5), 0),
        (np.isclose(p.iouThrs, 0.75), 0),
        (everything, 1),
        (everything, 2),
        (everything, 3),
    ]
    table = {}
    for k, category in enumerate(p.catIds):
        row = []
        for ious, area in selections:
            s = precision[ious, :, k, area, -1]
            row.append(float(s[s > -1].mean()) if (s > -1).any() else math.nan)
        table[int(category)] = row
    return table


def _complete(annotation: Mapping) -> dict:
    """A copy (COCOeval adds keys) with the `iscrowd` and `area` COCOeval needs: 0 and the box area where missing,
    as in JSON exports that leave them out."""
    box = annotation.get("bbox") or [0, 0, 0, 0]
    return {"iscrowd": 0, "area": box[2] * box[3], **annotation}


def _no_data(value: float) -> float:
    """pycocotools' -1 ("no ground truth in this range") as nan, so it can never pass for a score."""
    return math.nan if value == -1 else float(value)


def _results(coco_gt: COCO, detections: Sequence[Mapping]) -> COCO:
    """The detections as a COCO results object; an empty one too (pycocotools' loadRes rejects an empty list)."""
    if detections:
        return coco_gt.loadRes([dict(d) for d in detections])  # loadRes adds area/id/segmentation to these
    empty = COCO()
    empty.dataset = {**coco_gt.dataset, "annotations": []}
    empty.createIndex()
    return empty


def evaluate_boxes(
    gt: Mapping,
    detections: Sequence[Mapping],
    img_ids: Sequence[int] | None = None,
    use_cats: bool = True,
    per_class: bool = False,
) -> CocoScores:
    """Run COCOeval (bbox) on a ground-truth dict and a list of results (image_id, category_id, bbox, score).

    `img_ids` limits the evaluation to those images (default: every ground-truth image); `use_cats=False` ignores
    categories (single-class evaluation). No detections score 0 wherever there is ground truth. Neither input is
    modified.
    """
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {**gt, "annotations": [_complete(a) for a in gt["annotations"]]}
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, _results(coco_gt, detections), "bbox")
        if img_ids is not None:
            evaluator.params.imgIds = list(img_ids)
        evaluator.params.useCats = int(use_cats)
        evaluator.evaluate()
        evaluator.accumulate()
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        evaluator.summarize()
    return CocoScores(
        stats=dict(zip(METRICS, (_no_data(x) for x in evaluator.stats[:6]))),
        per_class=_per_class(evaluator) if per_class and use_cats else {},
        summary=summary.getvalue().rstrip(),
    )
