"""Pure COCO functions: ground truth from YOLO labels and its cache, category/image mapping, COCOeval, table rows."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from umop_yolo.eval.coco_eval import evaluate_boxes
from umop_yolo.eval.coco_gt import cached_yolo_gt, contiguous_category_ids, labels_key, yolo_images, yolo_to_coco
from umop_yolo.eval.coco_json import CocoTarget
from umop_yolo.eval.metrics import CocoDetMetrics
from umop_yolo.eval.report import csv_table, markdown_table, text_row

NAMES = {0: "cat", 1: "dog"}


def labels(root: Path) -> list[dict]:
    """Two images (written under `root`) in Ultralytics' label format; the second has no `shape`, as in rect mode."""
    (root / "sub").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "a.png"), np.zeros((100, 200, 3), np.uint8))
    cv2.imwrite(str(root / "sub" / "b.png"), np.zeros((50, 40, 3), np.uint8))
    return [
        {
            "im_file": str(root / "a.png"),
            "shape": (100, 200),
            "cls": np.array([[0.0], [1.0]]),
            "bboxes": np.array([[0.5, 0.5, 0.5, 0.2], [0.1, 0.1, 0.1, 0.1]]),
        },
        {"im_file": str(root / "sub" / "b.png"), "cls": np.zeros((0, 1)), "bboxes": np.zeros((0, 4))},
    ]


def detections_from(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"]]


def test_yolo_to_coco_pixels_ids_and_names(tmp_path):
    gt = yolo_to_coco(labels(tmp_path), NAMES)
    assert gt["images"] == [
        {"id": 1, "file_name": "a.png", "height": 100, "width": 200},
        {"id": 2, "file_name": "sub/b.png", "height": 50, "width": 40},  # size read from the file
    ]
    first, second = gt["annotations"]
    assert first["bbox"] == pytest.approx([50, 40, 100, 20]) and first["area"] == pytest.approx(2000)
    assert (first["id"], first["image_id"], first["category_id"], first["iscrowd"]) == (1, 1, 0, 0)
    assert second["bbox"] == pytest.approx([10, 5, 20, 10]) and second["id"] == 2  # ids start at 1
    assert gt["categories"] == [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]


def test_ground_truth_does_not_depend_on_dataset_order(tmp_path):
    """Rect validation sorts images by aspect ratio: ids, file and cache key must not change with that."""
    forward = labels(tmp_path)
    backward = forward[::-1]
    assert yolo_to_coco(backward, NAMES) == yolo_to_coco(forward, NAMES)
    assert labels_key(backward, NAMES) == labels_key(forward, NAMES)
    images = yolo_images([lb["im_file"] for lb in backward])
    assert {f: image["id"] for f, image in images.items()} == {img["im_file"]: i for i, img in enumerate(forward, 1)}
    assert [image["file_name"] for image in images.values()] == ["a.png", "sub/b.png"]


def test_cache_beside_labels_is_reused_until_a_label_or_image_changes(tmp_path):
    cache = tmp_path / "labels" / "val.coco.json"
    cache.parent.mkdir()
    original = labels(tmp_path / "images")
    gt, path = cached_yolo_gt(original, NAMES, cache, tmp_path / "fallback")
    assert path == cache and cache.is_file()
    stamp = cache.stat().st_mtime_ns
    again, path = cached_yolo_gt(original, NAMES, cache, tmp_path / "fallback")
    assert path == cache and cache.stat().st_mtime_ns == stamp and again["annotations"] == gt["annotations"]

    moved = copy.deepcopy(original)
    moved[0]["bboxes"][1, 0] = 0.2  # one box moved
    rebuilt, _ = cached_yolo_gt(moved, NAMES, cache, tmp_path / "fallback")
    assert rebuilt["annotations"][1]["bbox"][0] == pytest.approx(30)
    key = labels_key(original, NAMES)
    assert key != labels_key(original, {0: "cat", 1: "wolf"})  # class names count
    assert key != labels_key(labels(tmp_path / "images"), NAMES)  # so do image files (rewritten: new mtimes)


def test_read_only_label_folder_uses_the_cache_dir(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    folder.chmod(0o555)  # respected even when the tests run as root
    try:
        _, path = cached_yolo_gt(labels(tmp_path), NAMES, folder / "val.coco.json", tmp_path / "fallback")
    finally:
        folder.chmod(0o755)
    assert path.parent == tmp_path / "fallback" and path.is_file()
    assert not os.listdir(folder)


def test_category_and_image_mapping(tmp_path):
    instances = {
        "images": [{"id": 42, "file_name": "val2017/a.jpg"}, {"id": 7, "file_name": "c.jpg"},
                   {"id": "s", "file_name": "sub/d.jpg"}, {"id": 9, "file_name": "other/d.jpg"},
                   {"id": 5, "file_name": "x/e.jpg"}, {"id": 6, "file_name": "y/e.jpg"}],
        "categories": [{"id": 90}, {"id": 1}, {"id": 13}],
    }
    assert contiguous_category_ids(instances) == [1, 13, 90]
    target = CocoTarget(tmp_path / "val.json", instances)
    files = ["/x/images/a.jpg", "/x/images/b.jpg", "/x/sub/d.jpg", "/x/other/d.jpg", "/x/z/e.jpg"]
    matched = {f: image["id"] for f, image in target.match(files).items()}
    # the longest shared trailing path decides; b.jpg is not in the JSON and z/e.jpg could be either e.jpg
    assert matched == {"/x/images/a.jpg": 42, "/x/sub/d.jpg": "s", "/x/other/d.jpg": 9}
    mapped = CocoTarget(tmp_path / "val.json", instances, tmp_path, {"images/val/d.jpg": 9, "images/val/e_4.jpg": 6})
    assert mapped.entry(str(tmp_path / "images" / "val" / "d.jpg"))["id"] == 9  # the converter's map wins
    assert mapped.entry(str(tmp_path / "images" / "val" / "e_4.jpg"))["file_name"] == "y/e.jpg"


def test_perfect_detections_score_one_and_inputs_are_untouched(tmp_path):
    gt = yolo_to_coco(labels(tmp_path), NAMES)
    detections = detections_from(gt)
    gt_before, det_before = copy.deepcopy(gt), copy.deepcopy(detections)
    scores = evaluate_boxes(gt, detections, per_class=True)
    # no large box: nan (pycocotools' -1); class 0 has only a medium box, class 1 only a small one
    nan = float("nan")
    assert list(scores.stats.values()) == pytest.approx([1, 1, 1, 1, 1, nan], abs=1e-12, nan_ok=True)
    assert scores.per_class[0] == pytest.approx([1, 1, 1, nan, 1, nan], abs=1e-12, nan_ok=True)
    assert scores.per_class[1] == pytest.approx([1, 1, 1, 1, nan, nan], abs=1e-12, nan_ok=True)
    assert "Average Precision" in scores.summary
    assert gt == gt_before and detections == det_before


def test_ground_truth_without_area_and_iscrowd_is_scored(tmp_path):
    gt = yolo_to_coco(labels(tmp_path), NAMES)
    bare = {**gt, "annotations": [{k: v for k, v in a.items() if k not in {"area", "iscrowd"}}
                                  for a in gt["annotations"]]}
    assert evaluate_boxes(bare, detections_from(gt)).stats == evaluate_boxes(gt, detections_from(gt)).stats


def test_class_agnostic_evaluation_and_empty_detections(tmp_path):
    gt = yolo_to_coco(labels(tmp_path), NAMES)
    swapped = [{**d, "category_id": 1 - d["category_id"]} for d in detections_from(gt)]
    assert evaluate_boxes(gt, swapped).stats["AP"] == 0.0
    assert evaluate_boxes(gt, swapped, use_cats=False).stats["AP"] == pytest.approx(1, abs=1e-12)
    nothing = evaluate_boxes(gt, [], per_class=True)  # 0 where there is ground truth, nan where there is none
    assert list(nothing.stats.values()) == pytest.approx([0, 0, 0, 0, 0, float("nan")], nan_ok=True)
    assert nothing.per_class[0] == pytest.approx([0, 0, 0, float("nan"), 0, float("nan")], nan_ok=True)


def test_table_rows_in_percent():
    stats = {"AP": 0.4041, "AP50": 0.6, "AP75": 0.43, "APs": 0.25, "APm": 0.44, "APl": float("nan")}
    assert markdown_table("model", {"atss": stats}).splitlines() == [
        "| model | AP | AP50 | AP75 | APs | APm | APl |",
        "|---|---|---|---|---|---|---|",
        "| atss | 40.4 | 60.0 | 43.0 | 25.0 | 44.0 | - |",
    ]
    assert csv_table("class", {"a, b": stats}).splitlines()[1] == '"a, b",40.4,60.0,43.0,25.0,44.0,'  # empty: no data
    assert text_row("all", stats.values()).split() == ["all", "0.404", "0.6", "0.43", "0.25", "0.44", "-"]


def test_fitness_is_finite_without_any_ground_truth():
    metrics = CocoDetMetrics()
    metrics.coco = dict.fromkeys(metrics.coco, float("nan"))  # no ground truth at all: pycocotools has no AP
    assert metrics.fitness == 0.0  # Ultralytics treats a nan fitness as a diverged run
