"""CocoDetectionValidator: pycocotools numbers on a drawn YOLO dataset, equal to COCOeval run on the saved files.

The detector here is a stub that finds the drawn red (class 0) and green (class 1) rectangles in its input, so its
boxes are exact: images are PNGs whose long side equals imgsz, so nothing is resampled.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

import umop_yolo  # noqa: F401  (offline environment before Ultralytics is imported)
from ultralytics.utils import DEFAULT_CFG_DICT, LOGGER

from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.errors import UserInputError
from umop_yolo.eval.coco_eval import METRICS
from umop_yolo.eval.metrics import COCO_KEYS

IMGSZ = 160
COLORS = {0: (0, 0, 255), 1: (0, 255, 0)}  # BGR: class 0 red, class 1 green
# (height, width) and boxes (class, x1, y1, x2, y2) with exclusive ends; small (< 32^2 px), medium and large boxes
SCENES = [
    ((120, 160), [(0, 4, 4, 108, 104), (1, 112, 8, 152, 44), (0, 120, 60, 132, 74), (1, 140, 100, 150, 110)]),
    ((160, 120), [(1, 4, 4, 104, 108), (0, 8, 112, 48, 150), (1, 60, 120, 74, 132)]),
    ((160, 160), [(0, 50, 50, 150, 150), (0, 4, 4, 44, 40), (1, 10, 60, 22, 72), (1, 60, 4, 100, 40)]),
    ((96, 160), [(1, 4, 2, 114, 92), (0, 120, 10, 134, 22), (0, 118, 40, 156, 80)]),
]


def draw_scene(path: Path, i: int) -> None:
    """Write SCENES[i] as a PNG image at `path` (folders created)."""
    (h, w), boxes = SCENES[i]
    image = np.zeros((h, w, 3), np.uint8)
    for c, x1, y1, x2, y2 in boxes:
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), COLORS[c], thickness=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def write_scenes(root: Path, large: bool = True) -> Path:
    """Write the SCENES as PNG images with YOLO labels under `root`; return the data YAML (train = val).

    `large=False` leaves the large boxes (over 96^2 px) out of the labels: no ground truth in COCO's large range.
    """
    (root / "labels" / "val").mkdir(parents=True, exist_ok=True)
    for i, ((h, w), boxes) in enumerate(SCENES):
        draw_scene(root / "images" / "val" / f"scene{i}.png", i)
        lines = [f"{c} {(x1 + x2) / 2 / w:.8f} {(y1 + y2) / 2 / h:.8f} {(x2 - x1) / w:.8f} {(y2 - y1) / h:.8f}"
                 for c, x1, y1, x2, y2 in boxes if large or (x2 - x1) * (y2 - y1) <= 96**2]
        (root / "labels" / "val" / f"scene{i}.txt").write_text("\n".join(lines) + "\n")
    data = root / "scenes.yaml"
    data.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n  0: red\n  1: green\n")
    return data


class ColorBoxDetector(nn.Module):
    """Stub head-contract model: eval forward returns (y, {}) with y = (B, 4+2, N) xywh pixel boxes + class scores.

    With `noise` > 0, boxes are jittered by that fraction of their size, scores are random and two random false
    positives per image are added (seeded), which gives COCO numbers strictly between 0 and 1.
    """

    def __init__(self, noise: float = 0.0, empty: bool = False) -> None:
        super().__init__()
        self.names = {0: "red", 1: "green"}
        self.register_buffer("stride", torch.tensor([32.0]))
        self.noise, self.empty = noise, empty
        self.generator = torch.Generator().manual_seed(0)

    def _find(self, image: torch.Tensor) -> list[list[float]]:
        r, g, b = (image[i] for i in range(3))
        rows = []
        for c, mask in enumerate(((r > 0.7) & (g < 0.3) & (b < 0.3), (g > 0.7) & (r < 0.3) & (b < 0.3))):
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask.cpu().numpy().astype(np.uint8), connectivity=4)
            for left, top, w, h, _ in stats[1:].tolist():
                rows.append([left + w / 2, top + h / 2, w, h, float(c == 0), float(c == 1)])
        return rows

    def _perturb(self, rows: list[list[float]], size: tuple[int, int]) -> list[list[float]]:
        t = torch.tensor(rows)
        t[:, :4] += torch.randn(len(t), 4, generator=self.generator) * self.noise * t[:, 2:4].repeat(1, 2)
        t[:, 4:] *= torch.rand(len(t), 1, generator=self.generator) * 0.7 + 0.3
        fp = torch.rand(2, 6, generator=self.generator) * torch.tensor([size[1], size[0], 40, 40, 0.5, 0.5])
        return torch.cat((t, fp)).tolist()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, dict]:
        found = [[] if self.empty else self._find(im) for im in x]
        if self.noise:
            found = [self._perturb(rows, x.shape[-2:]) for rows in found]
        y = torch.zeros(len(x), 32, 6)  # 32 anchors (NMS reads a last dim of 6 as an end-to-end output)
        for i, rows in enumerate(found):
            if rows:
                y[i, : len(rows)] = torch.tensor(rows)
        return y.permute(0, 2, 1).to(x.device), {}


def validate(data: Path, save_dir: Path, model: nn.Module, **overrides) -> tuple[CocoDetectionValidator, dict]:
    """Standalone validation of `model` at IMGSZ on CPU."""
    args = {"data": str(data), "imgsz": IMGSZ, "batch": 2, "device": "cpu", "workers": 0, "plots": False, **overrides}
    validator = CocoDetectionValidator(save_dir=save_dir, args=args)
    return validator, validator(model=model)


def standalone_cocoeval(gt_json: Path, predictions: Path, img_ids: list[int] | None = None) -> np.ndarray:
    """pycocotools run on its own over the files the validator left on disk: COCOeval.stats[0:6]."""
    gt = COCO(str(gt_json))
    evaluator = COCOeval(gt, gt.loadRes(str(predictions)), "bbox")
    if img_ids is not None:
        evaluator.params.imgIds = img_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats[:6]


def test_exact_boxes_score_one_everywhere(tmp_path):
    data = write_scenes(tmp_path / "scenes")
    validator, stats = validate(data, tmp_path / "val", ColorBoxDetector())
    assert [stats[k] for k in COCO_KEYS] == pytest.approx([1.0] * 6, abs=1e-12)
    assert stats["fitness"] == pytest.approx(1.0, abs=1e-12)
    assert validator.gt_json == tmp_path / "scenes" / "labels" / "val.coco.json"  # beside the labels
    predictions = json.loads((tmp_path / "val" / "predictions.json").read_text())
    assert len(predictions) == sum(len(boxes) for _, boxes in SCENES)
    scene0 = [p for p in predictions if p["file_name"] == "scene0.png" and p["category_id"] == 0]
    assert sorted(p["bbox"] for p in scene0) == [[4.0, 4.0, 104.0, 100.0], [120.0, 60.0, 12.0, 14.0]]
    md = (tmp_path / "val" / "coco_metrics.md").read_text().splitlines()
    assert md[0] == "| model | AP | AP50 | AP75 | APs | APm | APl |"
    assert md[2].endswith("| 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |")
    rows = list(csv.reader((tmp_path / "val" / "coco_metrics.csv").open()))
    assert rows[0] == ["model", *METRICS] and rows[1][1:] == ["100.0"] * 6


def test_printed_numbers_equal_pycocotools_on_saved_files(tmp_path):
    data = write_scenes(tmp_path / "scenes")
    validator, stats = validate(data, tmp_path / "val", ColorBoxDetector(noise=0.08))
    ours = [stats[k] for k in COCO_KEYS]
    assert 0.05 < ours[0] < 0.95  # a non-trivial score, so equality means something
    reference = standalone_cocoeval(validator.gt_json, tmp_path / "val" / "predictions.json")
    np.testing.assert_array_equal(ours, reference)
    assert list(validator.metrics.coco.values()) == ours


def test_per_class_rows(tmp_path):
    DEFAULT_CFG_DICT.setdefault("per_class", False)  # the key the package registers
    data = write_scenes(tmp_path / "scenes")
    validator, _ = validate(data, tmp_path / "val", ColorBoxDetector(noise=0.08), per_class=True)
    assert set(validator.metrics.coco_per_class) == {"red", "green"}
    rows = list(csv.reader((tmp_path / "val" / "coco_per_class.csv").open()))
    assert [r[0] for r in rows] == ["class", "red", "green"]
    # the mean over classes of per-class AP is COCO AP (both classes have boxes in every area range)
    mean_ap = np.mean([v["AP"] for v in validator.metrics.coco_per_class.values()])
    assert mean_ap == pytest.approx(validator.metrics.coco["AP"], abs=1e-12)


def test_no_predictions_gives_zeros(tmp_path):
    data = write_scenes(tmp_path / "scenes")
    _, stats = validate(data, tmp_path / "val", ColorBoxDetector(empty=True))
    assert [stats[k] for k in COCO_KEYS] == [0.0] * 6
    assert stats["fitness"] == 0.0


def test_changed_label_rebuilds_ground_truth(tmp_path):
    data = write_scenes(tmp_path / "scenes")
    validator, _ = validate(data, tmp_path / "val", ColorBoxDetector())
    label = tmp_path / "scenes" / "labels" / "val" / "scene0.txt"
    label.write_text(label.read_text().splitlines()[0] + "\n")  # scene0 now has one box: three are "false"
    validator, stats = validate(data, tmp_path / "val2", ColorBoxDetector())
    gt = json.loads(validator.gt_json.read_text())
    assert len(gt["annotations"]) == sum(len(boxes) for _, boxes in SCENES) - 3
    assert stats["metrics/AP(COCO)"] < 1.0


def test_nms_keeps_every_image_when_it_runs_past_ultralytics_time_limit(monkeypatch):
    from ultralytics.utils import nms

    clock = iter(range(0, 10**6, 100))  # every clock read is 100 s later: Ultralytics' limit trips after image 1
    monkeypatch.setattr(nms.time, "time", lambda: next(clock))
    args = dict(DEFAULT_CFG_DICT, conf=0.001, iou=0.7, max_det=300)
    validator = CocoDetectionValidator(args=args)
    validator.end2end = False
    boxes = torch.tensor([[40.0, 40.0, 20.0, 20.0], [100.0, 100.0, 30.0, 30.0]]).T  # (4, 2) xywh
    scores = torch.tensor([[0.9, 0.1], [0.1, 0.8]])  # (2 classes, 2 boxes)
    preds = torch.cat([boxes, scores]).expand(3, -1, -1).contiguous()  # 3 images, the same 2 boxes each
    outputs = validator.postprocess(preds)
    assert [len(o["conf"]) for o in outputs] == [4, 4, 4]  # multi-label: both classes of both boxes, every image


def test_model_with_another_class_count_stops_in_one_line(tmp_path):
    data = write_scenes(tmp_path / "scenes")
    model = ColorBoxDetector()
    model.names = {i: f"class{i}" for i in range(5)}
    with pytest.raises(UserInputError, match=rf"model has 5 classes but data '{data}' has 2") as error:
        validate(data, tmp_path / "val", model)
    assert "\n" not in str(error.value)


def test_model_with_other_class_names_warns_once(tmp_path, warnings_seen):
    data = write_scenes(tmp_path / "scenes")
    model = ColorBoxDetector()
    model.names = {0: "red", 1: "blue"}
    _, stats = validate(data, tmp_path / "val", model)
    assert stats["metrics/AP(COCO)"] == pytest.approx(1.0)  # classes are matched by index
    named = [m for m in warnings_seen if "class names" in m]
    assert len(named) == 1 and "class 1 is 'blue' in the model but 'green' in data" in named[0]


def test_size_range_without_ground_truth_is_nan_and_printed_as_dash(tmp_path):
    data = write_scenes(tmp_path / "scenes", large=False)
    printed: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: printed.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        validator, stats = validate(data, tmp_path / "val", ColorBoxDetector(noise=0.08))
    finally:
        LOGGER.removeHandler(handler)
    assert math.isnan(stats["metrics/APl(COCO)"]) and math.isnan(validator.metrics.coco["APl"])  # not -1
    assert 0 < stats["fitness"] == stats["metrics/AP(COCO)"] < 1
    row = printed[next(i for i, line in enumerate(printed) if "COCO (pycocotools)" in line) + 1]
    assert row.split()[0] == "all" and row.split()[-1] == "-" and "nan" not in row
    assert list(csv.reader((tmp_path / "val" / "coco_metrics.csv").open()))[1][-1] == ""
    assert (tmp_path / "val" / "coco_metrics.md").read_text().splitlines()[2].endswith("| - |")
