"""Level diagnostics under DDP (2 CPU processes, gloo): levels.csv holds the means over ranks, read once per window
(one all-reduce per window, none per step); rank 1 writes nothing."""

import csv
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow  # starts two processes

SAMPLES = torch.tensor([100.0, 50.0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_stats(rank: int, step: int) -> dict:
    """Rank 0: 10 and 5 positives of (100, 50); rank 1: 30 and none (gamma there is no measurement)."""
    pos = torch.tensor([10.0, 5.0]) if rank == 0 else torch.tensor([30.0, 0.0])
    return {"num_pos": pos, "num_samples": SAMPLES.clone(), "gamma": torch.tensor([1.6 + 0.1 * step, 2.2]),
            "alpha": torch.tensor([0.3, 0.2]), "loss": torch.tensor([1.0, 2.0]) * (rank + 1)}


def _worker(rank: int, port: int, path: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=30))
    from umop_yolo.engine.levels.level_stats import LevelRecorder

    calls = []
    all_reduce = dist.all_reduce
    dist.all_reduce = lambda *a, **k: calls.append(1) or all_reduce(*a, **k)
    try:
        recorder = LevelRecorder(Path(path) if rank == 0 else None, interval=2)
        recorder.start_epoch(1, 0, ["P3", "P4"])
        for step in range(3):
            recorder.update(rank_stats(rank, step))
        recorder.flush()  # the epoch's end, on every rank
        out[rank] = (len(calls), recorder.end_epoch())
    finally:
        dist.all_reduce = all_reduce
        dist.destroy_process_group()


def test_levels_csv_holds_the_ranks_means_read_once_per_window(tmp_path):
    path = tmp_path / "levels.csv"
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), str(path), out), nprocs=2, join=True)
    assert out[0][0] == out[1][0] == 2  # 3 steps, windows of 2: two all-reduces, not one per step
    rows = list(csv.DictReader(path.open()))
    assert [(r["iteration"], r["level"], r["iterations"]) for r in rows] == [
        ("2", "P3", "2"), ("2", "P4", "2"), ("3", "P3", "1"), ("3", "P4", "1")]
    p3, p4 = rows[0], rows[1]
    assert float(p3["pos_ratio_mean"]) == pytest.approx((0.1 + 0.3) / 2)  # mean over ranks, not rank 0's 0.1
    assert float(p4["pos_ratio_mean"]) == pytest.approx((0.1 + 0.0) / 2)
    assert float(p3["cls_loss"]) == pytest.approx((1.0 + 2.0) / 2)
    assert float(p4["gamma"]) == pytest.approx(2.2)  # rank 1 measured none there: rank 0's alone
    assert float(p3["gamma"]) == pytest.approx(1.65)  # steps 0 and 1
    levels = out[0][1]
    assert levels["level/pos_ratio_P3"] == pytest.approx(0.2) and levels["pfl/gamma_P3"] == pytest.approx(1.7)
    assert not any(p.name != "levels.csv" for p in tmp_path.iterdir())  # rank 1 wrote no file
