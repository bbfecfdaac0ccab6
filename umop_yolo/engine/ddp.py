"""The trainer in several processes: CPU (gloo) as well as GPU workers, one run directory for all ranks.

A DDP worker (started by torchrun or by Ultralytics' launcher) joins the process group as soon as it knows its
settings, before any file is written, so that rank 0 alone chooses the run directory (incremented name, exist_ok,
resume), locks it and sends its path to every rank. A rank that cannot see that directory (nodes without a shared
filesystem) stops, and so do all the others, with one line naming it.

On CPU the group is gloo and the model is wrapped without device ids; Ultralytics' own DDP setup assumes a GPU index
per rank. Ultralytics' launcher keeps holding the run directory's lock while its workers train: it sets
`LAUNCHER_LOCK` to the directory, and the workers' rank 0 accepts that lock as its own. A rank that dies stops the
others with one line naming it (`lost_rank_as_one_line`); one that goes silent, after `ddp_timeout` seconds (gloo).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from ultralytics.cfg import get_save_dir
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.utils import RANK, WORLD_SIZE
from ultralytics.utils.torch_utils import parse_device

from umop_yolo.engine.run.preflight import check_resume_dir
from umop_yolo.engine.run.run_lock import RunDirectoryInUseError, RunLock
from umop_yolo.engine.run.saving import check_writable
from umop_yolo.engine.ultralytics_internals import replaced
from umop_yolo.errors import UserInputError

LAUNCHER_LOCK = "UMOP_LAUNCHER_LOCK"  # the run directory whose lock the launching process holds for its workers


class LostRankError(UserInputError):
    """A rank of the process group stopped answering (killed, crashed or unreachable)."""


def is_cpu(device: Any) -> bool:
    """Whether a `device=` setting trains on the CPU (`cpu`, or unset without a GPU)."""
    device = str(device or "").strip().lower()
    return device == "cpu" or (device in {"", "none", "-1"} and not torch.cuda.is_available())


def join_process_group(trainer: Any, timeout_s: float) -> None:
    """A DDP worker joins the whole job (all nodes): gloo on CPU, Ultralytics' setup (NCCL) on GPUs.

    `timeout_s` bounds every gloo collective: a rank that stops answering ends the others' waits after it.
    """
    trainer.world_size = WORLD_SIZE  # Ultralytics counts only this node's devices
    if dist.is_initialized():
        return
    if is_cpu(trainer.args.device):
        dist.init_process_group("gloo", rank=RANK, world_size=WORLD_SIZE, timeout=timedelta(seconds=timeout_s))
        trainer.ddp_device = torch.device("cpu")
    else:  # Ultralytics' setup reads the canonical device string ('0,1'), which BaseTrainer makes only after this
        trainer.args.device = parse_device(trainer.args.device)
        BaseTrainer._setup_ddp(trainer)  # GPU index per local rank, NCCL (not verified here)
        trainer.ddp_device = trainer.device
    trainer.ddp_peers = [None] * WORLD_SIZE  # each rank's (host, pid): which one was lost, should one be
    dist.all_gather_object(trainer.ddp_peers, (socket.gethostname(), os.getpid()))


def set_ddp_device(trainer: Any) -> None:
    """What Ultralytics' `_setup_ddp` leaves on the trainer, for a worker that has already joined the group."""
    trainer.device = trainer.ddp_device
    if trainer.device.type == "cpu":
        trainer.accelerator = None


def _lock_run_dir(run_dir: str) -> RunLock | None:
    """Rank 0's lock of the run directory; None when Ultralytics' launcher holds it for this job."""
    try:
        return RunLock(run_dir).acquire()
    except RunDirectoryInUseError:
        if os.environ.get(LAUNCHER_LOCK) == run_dir:
            return None
        raise


def lock_run_dir(args: Any, resumed: str | None = None) -> tuple[str, RunLock | None]:
    """The run directory for `args` (incremented name, exist_ok, resume) and its lock, chosen by the single process or
    by rank 0 for all ranks; None in place of the lock on the other ranks, and where Ultralytics' launcher holds it.
    A run resumed from checkpoint `resumed` must stay in the directory holding it, and the directory must be writable:
    one line each, before anything is written there."""
    run_dir = None
    if RANK in {-1, 0}:
        run_dir = str(get_save_dir(args))
        if resumed:
            check_resume_dir(run_dir, resumed)
        check_writable(Path(run_dir))
    return (run_dir, RunLock(run_dir).acquire()) if RANK == -1 else share_run_dir(run_dir)


def share_run_dir(run_dir: str | None) -> tuple[str, RunLock | None]:
    """Rank 0 passes its chosen `run_dir` (other ranks pass None); every rank gets rank 0's path and rank 0 its lock.

    Rank 0 locks (creates) the directory before sending the path, so each rank then checks that it sees it; if any
    rank does not, every rank raises the same one line.
    """
    lock = _lock_run_dir(run_dir) if RANK == 0 else None
    path = [run_dir]
    dist.broadcast_object_list(path, 0)
    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, (Path(path[0]).is_dir(), socket.gethostname()))
    blind = [f"rank {r} on {host}" for r, (visible, host) in enumerate(seen) if not visible]
    if blind:
        if lock is not None:
            lock.release()
        raise UserInputError(f"run directory '{path[0]}' (made by rank 0 on {seen[0][1]}) is not visible to "
                             f"{', '.join(blind)}: training on several nodes needs project= on a filesystem "
                             "shared by all nodes")
    return path[0], lock


PEER_LOSS = ("Connection reset by peer", "Connection closed by peer", "Timed out", "timed out", "Broken pipe")


def _gone(pid: int) -> bool:
    """Whether process `pid` of this host has ended (a zombie not yet reaped by its launcher counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in {"Z", "X"}
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _lost_here(peers: list[tuple[str, int]], wait_s: float = 2.0) -> list[str]:
    """The ranks of this host that have ended, waiting up to `wait_s` for an exiting one: a killed process closes its
    connections before it is marked as ended. torchrun's SIGTERM to the survivors waits meanwhile."""
    host = socket.gethostname()
    here = [(r, pid) for r, (h, pid) in enumerate(peers) if h == host and r != RANK]
    handler = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        for _ in range(round(wait_s / 0.05)):
            if lost := [str(r) for r, pid in here if _gone(pid)]:
                return lost
            time.sleep(0.05)
        return []
    finally:
        signal.signal(signal.SIGTERM, handler)


def lost_ranks_message(peers: list[tuple[str, int]], epoch: int, last: Path) -> str:
    """One line: which ranks of this host have ended (or that a rank elsewhere stopped answering), and how to go on."""
    host = socket.gethostname()
    lost = _lost_here(peers)
    elsewhere = sorted({h for h, _ in peers if h != host})
    who = (f"rank {', '.join(lost)} ended (killed or crashed)" if lost else
           f"a rank on {', '.join(elsewhere) or 'this host'} stopped answering")
    resume = f"; resume=True model={last} continues the run" if last.is_file() else ""
    return f"training stopped in epoch {epoch + 1} on rank {RANK}: {who}{resume}"


@contextmanager
def lost_rank_as_one_line(trainer: Any) -> Iterator[None]:
    """In a DDP worker, a collective that fails because a peer is gone (closed connection, or `ddp_timeout` passed)
    becomes one line (`LostRankError`) naming the lost rank, instead of gloo's traceback."""
    try:
        yield
    except RuntimeError as e:
        if RANK == -1 or not hasattr(trainer, "ddp_peers") or not any(s in str(e) for s in PEER_LOSS):
            raise
        raise LostRankError(lost_ranks_message(trainer.ddp_peers, getattr(trainer, "epoch", 0), trainer.last)) from None


class _CpuDistributedDataParallel(DistributedDataParallel):
    """DDP of a CPU model: Ultralytics passes `device_ids=[device.index]`, which is `[None]` on the CPU."""

    def __init__(self, module: torch.nn.Module, device_ids: list | None = None, **kwargs: Any) -> None:
        super().__init__(module, device_ids=None if device_ids == [None] else device_ids, **kwargs)


def _cpu_ddp(trainer: Any) -> bool:
    return trainer.world_size > 1 and trainer.device.type == "cpu"


@contextmanager
def cpu_ddp_wrapper(trainer: Any) -> Iterator[None]:
    """Within this block (Ultralytics' `_setup_train`), a CPU model of a DDP rank can be wrapped in DDP."""
    cpu = {"DistributedDataParallel": _CpuDistributedDataParallel}
    with replaced(torch.nn.parallel, cpu if _cpu_ddp(trainer) else {}):
        yield


class _CurrentCpu:
    """Stands in for `torch.cuda` where Ultralytics' validator asks a DDP rank for its current GPU."""

    @staticmethod
    def current_device() -> int:
        return 0


@contextmanager
def validation_on_cpu(trainer: Any) -> Iterator[None]:
    """Within this block, Ultralytics' validator loads a checkpoint on the CPU in a DDP rank of a CPU run (the final
    validation of best.pt), where it would take the rank's current GPU."""
    from ultralytics.engine import validator

    auto_backend = validator.AutoBackend

    def on_cpu(*args: Any, **kwargs: Any) -> Any:
        return auto_backend(*args, **{**kwargs, "device": torch.device("cpu")})

    cpu = {"get_torch_device_backend": lambda device_type: _CurrentCpu, "AutoBackend": on_cpu}
    with replaced(validator, cpu if _cpu_ddp(trainer) else {}):
        yield


@contextmanager
def launcher_holds_lock(trainer: Any) -> Iterator[None]:
    """Ultralytics' launcher (`trainer.ddp`): keep the run directory and its lock for the workers' whole run; nothing
    for a trainer that trains itself.

    The launcher deletes the run directory unless resuming, lock file included; the run directory has just been
    created and locked by this process, so it is kept (`resume` is only read there in the launching process).
    """
    if not trainer.ddp:
        yield
        return
    saved_env, saved_resume = os.environ.get(LAUNCHER_LOCK), trainer.resume
    os.environ[LAUNCHER_LOCK], trainer.resume = str(trainer.save_dir), True
    try:
        yield
    finally:
        trainer.resume = saved_resume
        if saved_env is None:
            os.environ.pop(LAUNCHER_LOCK, None)
        else:
            os.environ[LAUNCHER_LOCK] = saved_env
