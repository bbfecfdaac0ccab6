"""A real dataset in COCO format (../shared/data/deeppcb: PCB defects, 6 classes) through `format: coco`, as a user
reads it: its own data YAML, one tiny training epoch, COCO AP scored against its own val JSON."""

from __future__ import annotations

import json

import pytest
from ultralytics.utils import YAML

from conftest import SHARED, read_csv, tiny_train_args
from umop_yolo.cli import main

DEEPPCB = SHARED / "data" / "deeppcb"

pytestmark = [pytest.mark.skipif(not (DEEPPCB / "deeppcb.yaml").is_file(),
                                 reason="../shared/data/deeppcb is not present"),
              pytest.mark.slow]


def test_one_tiny_epoch_on_deeppcb_through_format_coco(tmp_path, cache):
    args = tiny_train_args(DEEPPCB / "deeppcb.yaml", tmp_path, fraction=0.02, batch=4, umop=True)
    assert main(["train", *args]) == 0
    run = tmp_path / "run"
    rows = read_csv(run / "results.csv", float)
    assert len(rows) == 1 and 0.0 <= rows[0]["metrics/AP(COCO)"] <= 1.0
    assert 1.5 <= rows[0]["pfl/gamma_P3"] <= 2.5  # UMOP trained on it: gamma_l recorded per level
    # the classes are the JSON's categories by id; the converted labels live in the cache, never beside the dataset
    categories = json.loads((DEEPPCB / "annotations" / "instances_val.json").read_text())["categories"]
    names = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    converted = next(cache.rglob("deeppcb-coco-*/data.yaml"))
    assert list(YAML.load(converted)["names"].values()) == names == [
        "open", "short", "mousebite", "spur", "copper", "pin-hole"]
    assert len(list((converted.parent / "labels" / "val").glob("*.txt"))) == 500
    table = (run / "coco_metrics.md").read_text().splitlines()
    assert table[0].split("|")[2].strip() == "AP"  # the final table from best.pt (the only epoch): the same AP
    assert float(table[2].split("|")[2]) == pytest.approx(100 * rows[0]["metrics/AP(COCO)"], abs=0.051)
