"""Class names with quotes, commas, `|` and line breaks: the CSV reads back the same names, Markdown keeps one row per
class, printed rows stay on one line, and the image plots draw them without a traceback."""

import csv
import threading

import cv2
import numpy as np
import pytest
import torch
import yaml

from umop_yolo.cli import main
from umop_yolo.engine.build import build_model
from umop_yolo.eval.coco_eval import METRICS
from umop_yolo.eval.report import csv_table, markdown_table, text_row

NAMES = {0: 'cross"q', 1: "a,b", 2: "new\nline", 3: "x|y"}


def test_report_rows_keep_any_class_name():
    rows = {name: dict.fromkeys(METRICS, 0.5) for name in NAMES.values()}
    assert [r[0] for r in csv.reader(csv_table("class", rows).splitlines(keepends=True))][1:] == list(NAMES.values())
    lines = markdown_table("class", rows).splitlines()
    assert len(lines) == 2 + len(NAMES)
    assert all(line.replace("\\|", "").count("|") == len(METRICS) + 2 for line in lines)
    assert lines[4].startswith("| new<br>line |") and lines[5].startswith("| x\\|y |")
    assert text_row("new\nline", [0.5]) == r"new\nline".rjust(22) + f"{0.5:11.3g}"


@pytest.fixture
def odd_names_data(tmp_path):
    root = tmp_path / "odd"
    for split in ("train", "val"):
        for i in range(4):
            image = root / "images" / split / f"{i}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8))
            label = root / "labels" / split / f"{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"{i} 0.5 0.5 0.3 0.3\n")
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": NAMES}
    (root / "data.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return root / "data.yaml"


def test_val_writes_and_plots_odd_class_names(odd_names_data, tmp_path, monkeypatch):
    model = build_model("yolov8n.yaml", nc=4, verbose=False)
    model.names = dict(NAMES)
    torch.save({"ema": model}, tmp_path / "m.pt")
    failures = []
    monkeypatch.setattr(threading, "excepthook", failures.append)  # Ultralytics plots images in threads
    assert main(["val", f"model={tmp_path / 'm.pt'}", f"data={odd_names_data}", "imgsz=64", "batch=4", "plots=true",
                 "per_class=true", "conf=0.001", f"project={tmp_path}", "name=val"]) == 0
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(timeout=60)
    assert not failures, [f.exc_value for f in failures]
    with open(tmp_path / "val" / "coco_per_class.csv", newline="", encoding="utf-8") as f:
        assert [row[0] for row in csv.reader(f)][1:] == list(NAMES.values())
    assert len((tmp_path / "val" / "coco_per_class.md").read_text(encoding="utf-8").splitlines()) == 2 + len(NAMES)
    assert (tmp_path / "val" / "val_batch0_labels.jpg").is_file()
