"""One run directory for all DDP ranks (2 CPU processes, gloo): rank 0 chooses and locks it, every rank gets its path,
and a rank that cannot see it (no shared filesystem) stops every rank with one line."""

import os
import socket
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow  # starts two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, hidden: str | None, args: dict, out: dict) -> None:
    # Ultralytics reads RANK and WORLD_SIZE when first imported: the environment comes first
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    if hidden and rank == 1:  # another node's filesystem: rank 0's folder under `hidden` does not exist there
        is_dir = Path.is_dir
        Path.is_dir = lambda p: not str(p).startswith(hidden) and is_dir(p)
    from umop_yolo.engine import ddp
    from umop_yolo.errors import UserInputError

    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=30))
    try:
        path, lock = ddp.lock_run_dir(SimpleNamespace(**args))
        out[rank] = (path, lock is not None and lock.run_dir.is_dir())
    except UserInputError as e:
        out[rank] = ("error", str(e))
    finally:
        dist.destroy_process_group()


def _run(hidden: Path | None = None, **args) -> dict:
    out = mp.Manager().dict()
    args = {"task": "detect", "mode": "train", "save_dir": None, "exist_ok": False, **args}
    mp.spawn(_worker, args=(_free_port(), hidden and str(hidden), args, out), nprocs=2, join=True)
    return dict(out)


def test_rank_0_chooses_the_incremented_directory_for_every_rank(tmp_path):
    old = tmp_path / "runs" / "x"
    (old / "weights").mkdir(parents=True)
    (old / "weights" / "best.pt").write_bytes(b"the first run's model")
    out = _run(project=str(tmp_path / "runs"), name="x")
    new = str(tmp_path / "runs" / "x-2")
    assert out == {0: (new, True), 1: (new, False)}  # one path; only rank 0 holds the lock
    assert (old / "weights" / "best.pt").read_bytes() == b"the first run's model"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["x", "x-2"]


def test_a_rank_that_cannot_see_the_directory_stops_every_rank_in_one_line(tmp_path):
    out = _run(hidden=tmp_path / "runs", project=str(tmp_path / "runs"), name="x")
    assert out[0] == out[1]
    kind, message = out[0]
    assert kind == "error" and "\n" not in message
    assert f"'{tmp_path / 'runs' / 'x'}'" in message and "not visible to rank 1 on" in message
    assert "shared" in message
