"""One training per run directory: an OS lock on `<run dir>/.lock`, held for the life of the training.

Two trainings into one directory (`exist_ok=true`, or the same `save_dir`) would interleave results.csv rows, mix
args.yaml and weights, and remove each other's temporary checkpoint folders. The lock is the `filelock` package's OS
lock on a file in the run directory (`flock(2)` on POSIX, `msvcrt.locking` on Windows): the OS drops it when its
holder exits in any way (including `kill -9`), so a lock left by a dead process never blocks, and nothing guesses
liveness from a PID. Its soft fallback (a lock that is only the file's existence, left behind by a crash) is off.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from filelock import FileLock, Timeout

from umop_yolo.errors import UserInputError

LOCK_NAME = ".lock"


class RunDirectoryInUseError(UserInputError):
    """Another live training holds the run directory."""


class RunLock:
    """An exclusive, non-blocking lock of a run directory (created if missing); `release()` or process exit frees it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._lock: FileLock | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise `RunDirectoryInUseError` (one line) without changing any file in the directory."""
        if self._lock is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # held by the process, whichever thread releases it; never a soft lock (a crash would leave it taken)
        lock = FileLock(self.run_dir / LOCK_NAME, blocking=False, thread_local=False, fallback_to_soft=False)
        try:
            lock.acquire()
        except Timeout:
            raise RunDirectoryInUseError(
                f"run directory '{self.run_dir}' is in use by another training; wait for it to finish, "
                "or choose another name= (or project=)"
            ) from None
        self._lock = lock
        return self

    def release(self) -> None:
        """Free the lock; a no-op if not held."""
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def clear_run_dir(run_dir: str | Path) -> None:
    """Empty a run directory (all but the lock file) under its lock: a training that is still running holds that lock
    from before its first write to its last, so its directory is never removed from under it (`RunDirectoryInUseError`).
    Links are removed, never followed."""
    run_dir = Path(run_dir)
    with RunLock(run_dir):
        for entry in run_dir.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
