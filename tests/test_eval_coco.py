"""Pure COCO helpers: ground truth from YOLO labels and its cache, category/image mapping, COCOeval, table rows."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from umop_yolo.eval.coco_eval import evaluate_boxes
from umop_yolo.eval.coco_gt import (
    cached_yolo_gt,
    contiguous_category_ids,
    image_ids_by_name,
    labels_key,
    yolo_to_coco,
)
from umop_yolo.eval.report import csv_table, markdown_table

NAMES = {0: "cat", 1: "dog"}


def labels(root: str = "/data/images/val") -> list[dict]:
    """Two images in Ultralytics' label format: normalized xywh boxes, shape (h, w)."""
    return [
        {
            "im_file": f"{root}/a.jpg",
            "shape": (100, 200),
            "cls": np.array([[0.0], [1.0]]),
            "bboxes": np.array([[0.5, 0.5, 0.5, 0.2], [0.1, 0.1, 0.1, 0.1]]),
        },
        {"im_file": f"{root}/sub/b.jpg", "shape": (50, 50), "cls": np.zeros((0, 1)), "bboxes": np.zeros((0, 4))},
    ]


def detections_from(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"]]


def test_yolo_to_coco_pixels_ids_and_names():
    gt = yolo_to_coco(labels(), NAMES)
    assert gt["images"] == [
        {"id": 1, "file_name": "a.jpg", "height": 100, "width": 200},
        {"id": 2, "file_name": "sub/b.jpg", "height": 50, "width": 50},
    ]
    first, second = gt["annotations"]
    assert first["bbox"] == pytest.approx([50, 40, 100, 20]) and first["area"] == pytest.approx(2000)
    assert (first["id"], first["image_id"], first["category_id"], first["iscrowd"]) == (1, 1, 0, 0)
    assert second["bbox"] == pytest.approx([10, 5, 20, 10]) and second["id"] == 2  # ids start at 1
    assert gt["categories"] == [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]


def test_cache_beside_labels_is_reused_until_a_label_changes(tmp_path):
    cache = tmp_path / "labels" / "val.coco.json"
    cache.parent.mkdir()
    gt, path = cached_yolo_gt(labels(), NAMES, cache, tmp_path / "fallback")
    assert path == cache and cache.is_file()
    stamp = cache.stat().st_mtime_ns
    again, path = cached_yolo_gt(labels(), NAMES, cache, tmp_path / "fallback")
    assert path == cache and cache.stat().st_mtime_ns == stamp and again["annotations"] == gt["annotations"]

    changed = labels()
    changed[0]["bboxes"][1, 0] = 0.2  # one box moved
    rebuilt, _ = cached_yolo_gt(changed, NAMES, cache, tmp_path / "fallback")
    assert rebuilt["annotations"][1]["bbox"][0] == pytest.approx(30)
    assert labels_key(changed, NAMES) != labels_key(labels(), NAMES)
    assert labels_key(labels(), {0: "cat", 1: "wolf"}) != labels_key(labels(), NAMES)  # names count too


def test_read_only_label_folder_uses_the_cache_dir(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    folder.chmod(0o555)  # respected even when the tests run as root
    try:
        _, path = cached_yolo_gt(labels(), NAMES, folder / "val.coco.json", tmp_path / "fallback")
    finally:
        folder.chmod(0o755)
    assert path.parent == tmp_path / "fallback" and path.is_file()
    assert not os.listdir(folder)


def test_category_and_image_mapping():
    instances = {
        "images": [{"id": 42, "file_name": "val2017/a.jpg"}, {"id": 7, "file_name": "c.jpg"}],
        "categories": [{"id": 90}, {"id": 1}, {"id": 13}],
    }
    assert contiguous_category_ids(instances) == [1, 13, 90]
    assert image_ids_by_name(instances, ["/x/images/a.jpg", "/x/images/b.jpg"]) == {"/x/images/a.jpg": 42}


def test_perfect_detections_score_one_and_inputs_are_untouched():
    gt = yolo_to_coco(labels(), NAMES)
    detections = detections_from(gt)
    gt_before, det_before = copy.deepcopy(gt), copy.deepcopy(detections)
    scores = evaluate_boxes(gt, detections, per_class=True)
    # no large box: pycocotools reports -1; class 0 has only a medium box, class 1 only a small one
    assert list(scores.stats.values()) == pytest.approx([1, 1, 1, 1, 1, -1], abs=1e-12)
    assert scores.per_class[0] == pytest.approx([1, 1, 1, -1, 1, -1], abs=1e-12)
    assert scores.per_class[1] == pytest.approx([1, 1, 1, 1, -1, -1], abs=1e-12)
    assert "Average Precision" in scores.summary
    assert gt == gt_before and detections == det_before


def test_class_agnostic_evaluation_and_empty_detections():
    gt = yolo_to_coco(labels(), NAMES)
    swapped = [{**d, "category_id": 1 - d["category_id"]} for d in detections_from(gt)]
    assert evaluate_boxes(gt, swapped).stats["AP"] == 0.0
    assert evaluate_boxes(gt, swapped, use_cats=False).stats["AP"] == pytest.approx(1, abs=1e-12)
    with pytest.raises(ValueError, match="at least one detection"):
        evaluate_boxes(gt, [])


def test_table_rows_in_percent():
    stats = {"AP": 0.4041, "AP50": 0.6, "AP75": 0.43, "APs": 0.25, "APm": 0.44, "APl": -1.0}
    assert markdown_table("model", {"atss": stats}).splitlines() == [
        "| model | AP | AP50 | AP75 | APs | APm | APl |",
        "|---|---|---|---|---|---|---|",
        "| atss | 40.4 | 60.0 | 43.0 | 25.0 | 44.0 | - |",
    ]
    assert csv_table("class", {"a, b": stats}).splitlines()[1] == '"a, b",40.4,60.0,43.0,25.0,44.0,-'
