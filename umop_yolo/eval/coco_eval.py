"""Score box detections with COCOeval: the six summary numbers papers report, optionally per class.

faster-coco-eval (a dependency, what Ultralytics itself uses) scores when it can: the same numbers, several times
faster. pycocotools is the fallback (non-integer ids) and the reference the tests compare it with.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
BACKENDS = ("faster-coco-eval", "pycocotools")


@dataclass
class CocoScores:
    """COCOeval results: `stats` holds COCOeval.stats[0:6] by name, nan where no ground truth falls in a size range
    (pycocotools' -1, "no data")."""

    stats: dict[str, float]
    per_class: dict[int, list[float]] = field(default_factory=dict)  # category id -> the six numbers, same definitions
    summary: str = ""  # COCOeval's printed summary (AP and AR lines)
    backend: str = "pycocotools"  # the library that scored them (BACKENDS)


def default_backend(gt: Mapping | None = None) -> str:
    """faster-coco-eval if it is installed and can read `gt` (it needs integer ids), else pycocotools."""
    ids = [] if gt is None else [x["id"] for key in ("images", "annotations", "categories") for x in gt[key]]
    usable = all(isinstance(i, int) for i in ids)
    return BACKENDS[0] if usable and importlib.util.find_spec("faster_coco_eval") else BACKENDS[1]


def _library(backend: str) -> tuple[type, Callable[[Any, Any], Any]]:
    """A backend's COCO class and a bbox COCOeval factory; both evaluators print to stdout."""
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, lambda gt, dt: COCOeval_faster(gt, dt, "bbox", print_function=print)
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, lambda gt, dt: COCOeval(gt, dt, "bbox")
    raise ValueError(f"backend={backend!r} must be one of {BACKENDS}")


def _per_class(evaluator: Any) -> dict[int, list[float]]:
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


def _results(coco_gt: Any, detections: Sequence[Mapping]) -> Any:
    """The detections as a COCO results object; an empty one too (pycocotools' loadRes rejects an empty list)."""
    if detections:
        return coco_gt.loadRes([dict(d) for d in detections])  # loadRes adds area/id/segmentation to these
    empty = type(coco_gt)()
    empty.dataset = {**coco_gt.dataset, "annotations": []}
    empty.createIndex()
    return empty


def evaluate_boxes(
    gt: Mapping,
    detections: Sequence[Mapping],
    img_ids: Sequence[int] | None = None,
    use_cats: bool = True,
    per_class: bool = False,
    backend: str | None = None,
) -> CocoScores:
    """Run COCOeval (bbox) on a ground-truth dict and a list of results (image_id, category_id, bbox, score).

    `img_ids` limits the evaluation to those images (default: every ground-truth image); `use_cats=False` ignores
    categories (single-class evaluation). No detections score 0 wherever there is ground truth. Neither input is
    modified. `backend` is one of BACKENDS (default: `default_backend(gt)`).
    """
    backend = backend or default_backend(gt)
    coco, cocoeval = _library(backend)
    with contextlib.redirect_stdout(io.StringIO()):  # both print progress
        coco_gt = coco()
        coco_gt.dataset = {**gt, "annotations": [_complete(a) for a in gt["annotations"]]}
        coco_gt.createIndex()
        evaluator = cocoeval(coco_gt, _results(coco_gt, detections))
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
        backend=backend,
    )
