"""A size range without ground truth in training: results.csv holds nan (not -1); best.pt and `umop ablate` work."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from scenes import train_on_scenes, write_scenes
from umop_yolo.ablate.report import summarize
from umop_yolo.ablate.runner import Run

pytestmark = pytest.mark.slow  # trains YOLOv8n


def test_results_csv_holds_nan_for_a_size_range_without_ground_truth(tmp_path):
    trainer = train_on_scenes(write_scenes(tmp_path / "scenes", large=False), tmp_path, epochs=1)

    rows = list(csv.DictReader((trainer.save_dir / "results.csv").open()))
    assert [row["metrics/APl(COCO)"].strip() for row in rows] == ["nan"]
    assert float(rows[0]["metrics/AP(COCO)"]) >= 0
    best = torch.load(trainer.best, weights_only=False)["train_metrics"]  # best.pt saved: fitness is a number
    assert best["fitness"] == pytest.approx(float(rows[0]["metrics/AP(COCO)"]), abs=1e-5)

    final = Run("baseline", 0, trainer.save_dir).final()  # what `umop ablate` reads
    assert math.isnan(final["APl"]) and final["AP"] >= 0
    assert all(math.isnan(x) for x in summarize({"baseline": {0: final}})["baseline"]["APl"])
