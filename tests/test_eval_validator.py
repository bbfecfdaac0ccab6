"""CocoDetectionValidator: pycocotools numbers on a drawn YOLO dataset, equal to COCOeval run on the saved files.

The detector is the stub of `scenes`, which finds the drawn rectangles exactly.
"""

from __future__ import annotations

import csv
import json
import logging
import math

import numpy as np
import pytest
import torch
from ultralytics.utils import DEFAULT_CFG_DICT, LOGGER

from scenes import SCENES, ColorBoxDetector, standalone_cocoeval, validate, write_scenes
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.errors import UserInputError
from umop_yolo.eval.coco_eval import METRICS
from umop_yolo.eval.metrics import COCO_KEYS


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
    np.testing.assert_allclose(ours, reference, rtol=1e-12)  # faster-coco-eval, if installed, sums in another order
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
    row = printed[next(i for i, line in enumerate(printed) if f"COCO ({validator.coco_backend})" in line) + 1]
    assert row.split()[0] == "all" and row.split()[-1] == "-" and "nan" not in row
    assert list(csv.reader((tmp_path / "val" / "coco_metrics.csv").open()))[1][-1] == ""
    assert (tmp_path / "val" / "coco_metrics.md").read_text().splitlines()[2].endswith("| - |")
