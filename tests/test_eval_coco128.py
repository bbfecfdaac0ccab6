"""CocoDetectionValidator on real COCO images (../shared/data/coco128): official JSON and YOLO-label ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ultralytics.data.utils import check_det_dataset
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import YAML

from conftest import COCO128
from scenes import standalone_cocoeval
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.eval.metrics import COCO_KEYS

pytestmark = pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 is not present")


def data_yaml(tmp_path: Path, split: str, with_json: bool) -> Path:
    """A data YAML over coco128's `split` images, with the official train2017 JSON as `val_json` if asked."""
    names = YAML.load(COCO128 / "coco128.yaml")["names"]
    cfg = {"path": str(COCO128), "train": f"images/{split}", "val": f"images/{split}", "names": names}
    if with_json:
        cfg["val_json"] = str(COCO128 / "annotations" / "instances_train2017.json")
    path = tmp_path / f"coco128_{split}.yaml"
    YAML.save(path, cfg)
    return path


def score_labels_as_predictions(validator: CocoDetectionValidator, jitter: float) -> dict:
    """Drive the validator as its __call__ does, with each image's YOLO labels (optionally jittered) as predictions.

    Writes predictions.json as a standalone run does and returns the stats dict.
    """
    validator.training, validator.device, validator.stride = False, torch.device("cpu"), 32
    validator.data = check_det_dataset(validator.args.data)
    validator.dataloader = validator.get_dataloader(validator.data["val"], validator.args.batch)
    names = validator.data["names"]
    validator.init_metrics(SimpleNamespace(names=names, end2end=False))
    generator = torch.Generator().manual_seed(0)
    for batch in validator.dataloader:
        batch = validator.preprocess(batch)
        preds = []
        for i in range(len(batch["im_file"])):
            gt = validator._prepare_batch(i, batch)
            boxes = gt["bboxes"].clone()
            wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
            boxes += torch.randn(boxes.shape, generator=generator) * jitter * wh
            conf = torch.rand(len(boxes), generator=generator) if jitter else torch.ones(len(boxes))
            preds.append({"bboxes": boxes, "conf": conf, "cls": gt["cls"], "extra": torch.zeros(len(boxes), 0)})
        validator.update_metrics(preds, batch)
    stats = validator.get_stats()
    validator.print_results()
    (validator.save_dir / "predictions.json").write_text(json.dumps(validator.jdict))
    return stats


def make_validator(data: Path, save_dir: Path, **overrides) -> CocoDetectionValidator:
    args = {"data": str(data), "imgsz": 128, "batch": 16, "device": "cpu", "workers": 0, "plots": False, **overrides}
    return CocoDetectionValidator(save_dir=save_dir, args=args)


def test_official_json_labels_as_predictions_score_one(tmp_path):
    validator = make_validator(data_yaml(tmp_path, "train2017", with_json=True), tmp_path / "val")
    stats = score_labels_as_predictions(validator, jitter=0.0)
    assert [stats[k] for k in COCO_KEYS] == pytest.approx([1.0] * 6, abs=1e-9)
    predictions = json.loads((tmp_path / "val" / "predictions.json").read_text())
    official = json.loads(Path(validator.gt_json).read_text())
    assert {p["category_id"] for p in predictions} <= {c["id"] for c in official["categories"]}
    assert max(p["category_id"] for p in predictions) == 90  # toothbrush: COCO's 80 -> 91 id mapping
    assert {p["image_id"] for p in predictions} <= {img["id"] for img in official["images"]}


def test_official_json_numbers_equal_standalone_pycocotools(tmp_path):
    validator = make_validator(data_yaml(tmp_path, "train2017", with_json=True), tmp_path / "val")
    stats = score_labels_as_predictions(validator, jitter=0.05)
    ours = [stats[k] for k in COCO_KEYS]
    assert 0.1 < ours[0] < 0.9
    img_ids = sorted(image["id"] for image in validator.images.values())  # this dataset's: all 128 of the JSON
    assert len(img_ids) == 128
    predictions = tmp_path / "val" / "predictions.json"
    np.testing.assert_allclose(ours, standalone_cocoeval(validator.gt_json, predictions, img_ids), rtol=1e-12)


def test_tiny_model_on_yolo_labels_equals_standalone_pycocotools(tmp_path):
    """A real (untrained) YOLOv8n through the whole standalone path; coco128's read-only labels -> cache dir."""
    validator = make_validator(data_yaml(tmp_path, "val2017", with_json=False), tmp_path / "val", imgsz=64, conf=1e-4)
    stats = validator(model=DetectionModel("yolov8n.yaml", nc=80, verbose=False))
    assert validator.gt_json.parent.name == "coco_gt"  # not beside coco128's read-only labels
    predictions = tmp_path / "val" / "predictions.json"
    assert len(json.loads(predictions.read_text())) > 0
    ours = [stats[k] for k in COCO_KEYS]
    np.testing.assert_allclose(ours, standalone_cocoeval(validator.gt_json, predictions), rtol=1e-12)
