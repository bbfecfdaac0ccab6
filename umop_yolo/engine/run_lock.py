"""One training per run directory: an OS lock on `<run dir>/.lock`, held for the life of the training.

Two trainings into one directory (`exist_ok=true`, or the same `save_dir`) would interleave results.csv rows, mix
args.yaml and weights, and remove each other's temporary checkpoint folders. The lock is `flock(2)` on a file in the
run directory: the kernel drops it when its holder exits in any way (including `kill -9`), so a lock left by a dead
process never blocks, and nothing guesses liveness from a PID. The file itself stays (deleting a lock file that
another process may be opening would let two holders lock two different files).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from umop_yolo.errors import UserInputError

LOCK_NAME = ".lock"


class RunDirectoryInUseError(UserInputError):
    """Another live training holds the run directory."""


class RunLock:
    """An exclusive, non-blocking lock of a run directory (created if missing); `release()` or process exit frees it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise `RunDirectoryInUseError` (one line) without changing any file in the directory."""
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)  # never truncates: contents unused
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirectoryInUseError(
                f"run directory '{self.run_dir}' is in use by another training; wait for it to finish, "
                "or choose another name= (or project=)"
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        """Free the lock (closing the descriptor releases it); a no-op if not held."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
