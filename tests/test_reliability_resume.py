"""Crash and resume: a SIGKILLed training resumes from its last checkpoint to the configured epochs with its UMOP
settings; checkpoints and results.csv are never left half-written."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_train_args
from umop_yolo.cli import main, run
from umop_yolo.engine.run.saving import PARTIAL_PREFIX, atomic_weights, trim_epochs

UMOP = {"pfl_delta": 0.3, "pfl_statistic": "paper", "lrp_reduction": "mean", "pfl_w": 0.4}

PAUSING_TRAIN = """
import os, sys, time
from ultralytics.utils.callbacks import base

steps = []

def pause_in_second_epoch(trainer):  # epoch 1 is saved, epoch 2's first step logged; hold so the test can kill us
    steps.append(trainer.epoch)
    if steps.count(1) == 2:
        open(os.environ["PAUSED"], "w").close()
        time.sleep(600)

base.default_callbacks["on_train_batch_start"].append(pause_in_second_epoch)
from umop_yolo.cli import main
sys.exit(main(["train", *sys.argv[1:]]))
"""


def read_csv(path):
    with open(path) as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def adam_steps(optimizer_state: dict) -> int:
    return max(int(s["step"]) for s in optimizer_state["state"].values())


def kill_mid_second_epoch(script: Path, args: list[str], paused: Path) -> None:
    """Run training in a subprocess and SIGKILL it once it is inside epoch 2 (epoch 1's checkpoint written)."""
    proc = subprocess.Popen([sys.executable, str(script), *args], env={**os.environ, "PAUSED": str(paused)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 480
        while not paused.exists():
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "training never reached epoch 2"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_configured_epochs_with_its_umop_settings(tiny_shapes, tmp_path):
    script = tmp_path / "pausing_train.py"
    script.write_text(PAUSING_TRAIN)
    run_dir, weights = tmp_path / "run", tmp_path / "run" / "weights"
    args = tiny_train_args(tiny_shapes, tmp_path, epochs=3, level_log_interval=1, **UMOP)  # 2 steps per epoch
    kill_mid_second_epoch(script, args, tmp_path / "paused")

    assert [r["epoch"] for r in read_csv(run_dir / "results.csv")] == ["1"]
    assert [r["epoch"] for r in read_csv(run_dir / "levels.csv") if r["level"] == "P3"] == ["1", "1", "2"]
    killed = torch.load(weights / "last.pt", weights_only=False)
    assert killed["epoch"] == 0 and killed["optimizer"] is not None

    trainer = run("train", ["resume=true", f"model={weights / 'last.pt'}"])
    assert trainer.start_epoch == 1 and trainer.epochs == 3
    assert trainer.ema.updates > killed["updates"]  # the EMA continued from the saved one, not from zero
    assert adam_steps(trainer.optimizer.state_dict()) == trainer.ema.updates  # and so did the optimizer
    assert {k: getattr(trainer.args, k) for k in UMOP} == UMOP
    rows = read_csv(run_dir / "results.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    levels = [(r["epoch"], r["iteration"]) for r in read_csv(run_dir / "levels.csv") if r["level"] == "P3"]
    assert levels == [("1", "1"), ("1", "2"), ("2", "3"), ("2", "4"), ("3", "5"), ("3", "6")]  # epoch 2's once
    for row in rows:  # the resumed epochs trained with delta = 0.3 too
        assert all(1.7 - 1e-4 <= float(row[f"pfl/gamma_{p}"]) <= 2.3 + 1e-4 for p in ("P3", "P4", "P5"))
    final = torch.load(weights / "last.pt", weights_only=False)
    assert {k: final["train_args"][k] for k in UMOP} == UMOP and final["train_args"]["epochs"] == 3
    assert not [p for p in weights.iterdir() if p.name.startswith(PARTIAL_PREFIX)]

    assert main(["train", "resume=true", f"model={weights / 'last.pt'}"]) == 2  # finished: nothing to resume


def test_resume_needs_a_checkpoint(capsys):
    assert main(["train", "resume=true"]) == 2
    assert "resume=true needs the checkpoint" in capsys.readouterr().err


class Boom(Exception):
    pass


def test_weights_are_replaced_whole_or_not_at_all(tmp_path):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    trainer = SimpleNamespace(wdir=wdir, last=wdir / "last.pt", best=wdir / "best.pt")
    trainer.last.write_bytes(b"old last")

    with pytest.raises(Boom), atomic_weights(trainer):
        trainer.last.write_bytes(b"half of a new ")  # a save that dies half way
        raise Boom
    assert trainer.last == wdir / "last.pt" and trainer.last.read_bytes() == b"old last"
    assert sorted(p.name for p in wdir.iterdir()) == ["last.pt"]

    with atomic_weights(trainer):
        assert trainer.last.parent != wdir  # Ultralytics writes into the private folder
        trainer.last.write_bytes(b"new last")
        trainer.best.write_bytes(b"new best")
        (trainer.wdir / "epoch3.pt").write_bytes(b"epoch 3")
    assert {p.name: p.read_bytes() for p in wdir.iterdir()} == {
        "last.pt": b"new last", "best.pt": b"new best", "epoch3.pt": b"epoch 3"}

    with atomic_weights(trainer, copy_existing=True):  # in-place rewrites (the final strip) work on copies
        assert trainer.best.read_bytes() == b"new best"
        trainer.best.write_bytes(b"stripped best")
    assert (wdir / "best.pt").read_bytes() == b"stripped best" and (wdir / "last.pt").read_bytes() == b"new last"


def test_results_csv_keeps_only_the_saved_epochs_and_whole_rows(tmp_path):
    results = tmp_path / "results.csv"
    results.write_text("epoch,time,loss\n1,1.0,0.5\n2,2.0,0.4\n3,3.0,0.3\n4,4.0")  # 3 logged, not saved; 4 cut
    trim_epochs(results, 2)
    assert results.read_text() == "epoch,time,loss\n1,1.0,0.5\n2,2.0,0.4\n"
    trim_epochs(results, 2)  # idempotent
    assert results.read_text() == "epoch,time,loss\n1,1.0,0.5\n2,2.0,0.4\n"
