"""CocoDetectionPredictor: annotated images, YOLO txt and a COCO-style predictions.json, for any (y, raw) model."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from ultralytics.nn.tasks import DetectionModel

from scenes import SCENES, ColorBoxDetector, predict, write_scenes


def test_writes_images_txt_and_exact_coco_boxes(tmp_path):
    write_scenes(tmp_path / "scenes")
    results = predict(tmp_path / "scenes" / "images" / "val", tmp_path / "pred", ColorBoxDetector())
    assert len(results) == len(SCENES)
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    for i, (_, boxes) in enumerate(SCENES):
        mine = sorted((r["category_id"], r["bbox"]) for r in records if r["image_id"] == f"scene{i}")
        drawn = sorted((c, [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]) for c, x1, y1, x2, y2 in boxes)
        assert mine == drawn  # original-image pixels, xywh from the top left, class index as category id
        assert list((tmp_path / "pred").glob(f"scene{i}.*"))  # annotated image (Ultralytics writes .jpg)
        lines = (tmp_path / "pred" / "labels" / f"scene{i}.txt").read_text().splitlines()
        assert len(lines) == len(boxes)
    assert all(r["file_name"].startswith("scene") and r["score"] == 1.0 for r in records)


def test_category_ids_follow_the_data_val_json(tmp_path):
    data = write_scenes(tmp_path / "scenes")
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 9}, {"id": 5}]}))
    data.write_text(data.read_text() + f"val_json: {instances}\n")
    predict(tmp_path / "scenes" / "images" / "val", tmp_path / "pred", ColorBoxDetector(), data=str(data))
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    red = sum(c == 0 for _, boxes in SCENES for c, *_ in boxes)
    assert [r["category_id"] for r in records].count(5) == red  # class 0 -> smallest id
    assert {r["category_id"] for r in records} == {5, 9}


def test_yolo_model_and_numeric_file_names(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "000000000042.jpg"), np.full((48, 64, 3), 90, np.uint8))
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    results = predict(tmp_path / "images", tmp_path / "pred", model, imgsz=64, conf=1e-4, save=False)
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(records) == len(results[0].boxes) > 0
    assert {r["image_id"] for r in records} == {42}  # COCO file names give COCO image ids
    first = results[0].boxes
    assert records[0]["bbox"] == pytest.approx(
        [*first.xyxy[0, :2].tolist(), *(first.xyxy[0, 2:] - first.xyxy[0, :2]).tolist()], abs=1e-3
    )
