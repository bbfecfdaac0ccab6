"""CocoDetectionValidator in training: COCO columns in results.csv from epoch 1, COCO AP as best.pt's fitness."""

from __future__ import annotations

import csv
from copy import copy

import pytest
import torch

import umop_yolo  # noqa: F401  (offline environment before Ultralytics is imported)
from ultralytics.models.yolo.detect import DetectionTrainer

from test_eval_validator import write_scenes
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.eval.metrics import COCO_KEYS


class CocoTrainer(DetectionTrainer):
    """Ultralytics' trainer with our validator: the one line the project's trainer needs in get_validator."""

    def get_validator(self) -> CocoDetectionValidator:
        return CocoDetectionValidator(
            self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks
        )


def test_training_logs_coco_columns_and_selects_best_by_coco_ap(tmp_path):
    data = write_scenes(tmp_path / "scenes")
    args = dict(model="yolov8n.yaml", data=str(data), epochs=2, imgsz=64, batch=4, device="cpu", workers=0,
                project=str(tmp_path), name="run", plots=False, amp=False, conf=1e-4)
    trainer = CocoTrainer(overrides=args)
    trainer.train()

    rows = list(csv.DictReader((trainer.save_dir / "results.csv").open()))
    assert len(rows) == 2 and all(key in rows[0] for key in COCO_KEYS)
    best = torch.load(trainer.best, weights_only=False)["train_metrics"]
    assert best["fitness"] == pytest.approx(best["metrics/AP(COCO)"], abs=1e-5)  # not Ultralytics' -loss fallback
    assert trainer.best_fitness == pytest.approx(max(float(r["metrics/AP(COCO)"]) for r in rows), abs=1e-5)
    assert (trainer.save_dir / "coco_metrics.md").is_file()  # the final validation of best.pt
