"""The dataset cache: where generated and converted datasets live, and how they are built without half-states.

A dataset directory is built in a sibling temp directory and renamed into place in one step, so a directory with
the final name is always complete. A generation that was killed leaves only a temp directory, which is ignored and
swept the next time the same dataset is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STALE_AFTER_S = 3600  # a temp dir untouched this long is abandoned even if its pid was reused


def cache_root() -> Path:
    """Root of umop-yolo's cache: `$UMOP_CACHE_DIR`, else `$XDG_CACHE_HOME/umop_yolo`, else `~/.cache/umop_yolo`."""
    if env := os.environ.get("UMOP_CACHE_DIR"):
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "umop_yolo"


def short_hash(obj: Any, n: int = 10) -> str:
    """Stable short hex digest of a JSON-serialisable object (dict keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.tmp-"


def sweep_stale(final: Path) -> None:
    """Delete temp dirs of `final` left by builds whose process is gone (or that are older than an hour)."""
    if not final.parent.is_dir():
        return
    prefix = _temp_prefix(final)
    for tmp in final.parent.glob(prefix + "*"):
        pid = tmp.name[len(prefix) :].split("-")[0]
        try:
            age = time.time() - tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        if not pid.isdigit() or not _pid_alive(int(pid)) or age > STALE_AFTER_S:
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_build(final: Path, build: Callable[[Path], None]) -> Path:
    """Return `final`, first running `build(tmp_dir)` and renaming tmp_dir to `final` if it does not exist yet.

    If another process finishes the same directory first, its result is kept and ours is discarded.
    """
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(final)}{os.getpid()}-", dir=final.parent))
    try:
        build(tmp)
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():  # a real failure, not a lost race
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
