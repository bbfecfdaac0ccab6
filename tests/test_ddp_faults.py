"""A DDP rank killed with kill -9 mid-training (2 CPU processes, torchrun): the other rank stops within seconds with
one line naming the lost rank, no partial checkpoint is left, and resume continues the 2-process run."""

import os
import signal
import time
import zipfile

import pytest
from ddp_launch import started, torchrun, torchrun_cmd, worker_pid

from conftest import read_csv, tiny_train_args

pytestmark = pytest.mark.slow  # trains in two processes, twice

STOP_S = 30  # measured 4 s from kill -9 to torchrun's exit (2026-12-07); a silent loss waits ddp_timeout instead


def _wait_for(condition, timeout: float):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := condition():
            return value
        time.sleep(0.2)
    raise TimeoutError(f"not within {timeout} s")


def test_a_killed_rank_stops_the_other_in_one_line_and_resume_continues(tmp_path):
    data = tmp_path / "shapes.yaml"
    data.write_text("generate: {builder: shapes, seed: 0, n_train: 48, n_val: 4, imgsz: 64}\n"
                    "names: {0: circle, 1: square, 2: triangle, 3: cross, 4: star}\n")
    project = tmp_path / "runs"
    args = tiny_train_args(data, project, epochs=3, imgsz=64, batch=4, val=False)
    weights = project / "run" / "weights"
    with started(torchrun_cmd(args), tmp_path) as proc:
        _wait_for(lambda: (weights / "last.pt").is_file() or proc.poll() is not None, 180)
        rank1 = _wait_for(lambda: worker_pid(proc.pid, 1), 10)
        os.kill(rank1, signal.SIGKILL)
        killed = time.monotonic()
        out, _ = proc.communicate(timeout=STOP_S + 30)
        stopped = time.monotonic() - killed
    assert proc.returncode != 0 and stopped < STOP_S, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("umop: error:")]
    assert len(lines) == 1 and "on rank 0: rank 1 ended (killed or crashed)" in lines[0], out[-3000:]
    assert f"resume=True model={weights / 'last.pt'}" in lines[0]
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt", "last.pt"]  # no partial file
    assert zipfile.is_zipfile(weights / "last.pt")

    result = torchrun([f"resume={weights / 'last.pt'}"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert [int(float(r["epoch"])) for r in read_csv(project / "run" / "results.csv")] == [1, 2, 3]
