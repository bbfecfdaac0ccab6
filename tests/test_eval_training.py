"""UmopTrainer validates with CocoDetectionValidator: COCO columns in results.csv from epoch 1, after Ultralytics' own
columns, COCO AP as best.pt's fitness."""

from __future__ import annotations

import csv

import pytest
import torch
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils.metrics import DetMetrics

from scenes import train_on_scenes, write_scenes
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.eval.metrics import COCO_KEYS

pytestmark = pytest.mark.slow  # trains YOLOv8n


def test_training_logs_coco_columns_and_selects_best_by_coco_ap(tmp_path):
    trainer = train_on_scenes(write_scenes(tmp_path / "scenes"), tmp_path, epochs=2)

    assert isinstance(trainer.validator, CocoDetectionValidator)
    rows = list(csv.DictReader((trainer.save_dir / "results.csv").open()))
    assert len(rows) == 2 and all(key in rows[0] for key in COCO_KEYS)
    losses = DetectionTrainer.label_loss_items  # Ultralytics' columns of a stock run, from its own trainer
    stock = ["epoch", "time", *losses(trainer, prefix="train"), *DetMetrics().keys, *losses(trainer, prefix="val"),
             *trainer.lr]
    assert len(stock) == 15 and [k.strip() for k in rows[0]][:17] == [*stock, *COCO_KEYS[:2]]
    best = torch.load(trainer.best, weights_only=False)["train_metrics"]
    assert best["fitness"] == pytest.approx(best["metrics/AP(COCO)"], abs=1e-5)  # not Ultralytics' -loss fallback
    assert trainer.best_fitness == pytest.approx(max(float(r["metrics/AP(COCO)"]) for r in rows), abs=1e-5)
    assert (trainer.save_dir / "coco_metrics.md").is_file()  # the final validation of best.pt
