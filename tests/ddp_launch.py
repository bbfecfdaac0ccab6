"""Start the trainer in several CPU processes (torchrun) for tests, and always clean up: every process of the run is in
one process group, killed when the test ends or times out."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def torchrun_cmd(args: list[str], nproc: int = 2) -> list[str]:
    """`torchrun --standalone --nproc-per-node nproc train.py args`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            str(ROOT / "train.py"), *args]


def torchrun(args: list[str], cwd: Path, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    """torchrun of the trainer on the CPU until it ends; output and exit status."""
    with started(torchrun_cmd(args, nproc), cwd) as proc:
        out, _ = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def run_group(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run `cmd` until it ends; output and exit status."""
    with started(cmd, cwd) as proc:
        out, _ = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(cmd, proc.returncode, out)


@contextmanager
def started(cmd: list[str], cwd: Path) -> Iterator[subprocess.Popen]:
    """`cmd` running in a new process group with PYTHONPATH at this checkout; the whole group is killed on exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate(timeout=10)


def worker_pid(launcher: int, local_rank: int) -> int | None:
    """The pid of the worker of `local_rank` started by the torchrun process `launcher` (None: not started yet)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == launcher and f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(stat.parent.name)
    return None
