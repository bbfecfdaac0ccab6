"""bench/val_speed.py, kept from rotting: from a fresh clone it trains both models, times their validation and prints
the table (both models, capped and uncapped), the AP change and `val_time_ratio=` last; given weights it trains
nothing, and `--sweep` adds a row per model and cap."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"[0-9]+\.[0-9]+"


def val_speed(*args: str) -> subprocess.CompletedProcess:
    """Run the script as a user would, with this interpreter and one CPU thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "val_speed.py"), *args], capture_output=True,
                          text=True, env=env, timeout=900, cwd=ROOT)


def check_report(out: str, nms_pre: int) -> None:
    lines = out.strip().splitlines()
    assert re.fullmatch(rf"val_time_ratio={NUMBER}", lines[-1]), lines[-1]
    for model in ("stock", "umop"):
        for cap in (str(nms_pre), "uncapped"):
            assert re.search(rf"^\| {model} \| {cap} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \|$", out, re.M)
    assert re.search(rf"^umop COCO AP, nms_pre={nms_pre} - uncapped: [+-]{NUMBER} ", out, re.M)


@pytest.mark.slow
def test_trains_both_models_then_reuses_given_weights(tiny_shapes, tmp_path):
    common = ["--data", str(tiny_shapes), "--imgsz", "64", "--batch", "4", "--rounds", "1"]
    done = val_speed(*common, "--epochs", "1", "--project", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training stock YOLOv8n" in done.stdout and "training umop YOLOv8n" in done.stdout
    check_report(done.stdout, 300)
    weights = {k: tmp_path / k / "weights" / "last.pt" for k in ("stock", "umop")}
    again = val_speed(*common, "--stock", str(weights["stock"]), "--umop", str(weights["umop"]), "--nms-pre", "50",
                      "--sweep", "10")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training" not in again.stdout
    check_report(again.stdout, 50)
    for model in ("stock", "umop"):  # the sweep: each model at nms_pre=10 and uncapped
        for cap in ("10", "uncapped"):
            assert re.search(rf"^\| {model} \| {cap} \| {NUMBER} \| [+-]{NUMBER} \| {NUMBER} \| [0-9]+ \| {NUMBER} \|$",
                             again.stdout, re.M)
