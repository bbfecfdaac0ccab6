"""Atomic file writes: a reader of a path sees its old complete file or the new one, never a partial file.

New content goes to a temporary file in the same folder (so the rename stays on one file system), which is then moved
over the final name with `os.replace`. `durable` also syncs the file and, on POSIX, its folder to disk, so the rename
survives a power loss (what a run directory's checkpoints and logs need; caches can be rebuilt).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(src: Path, dst: Path, durable: bool = False) -> None:
    """Move the complete file `src` over `dst` (same file system): readers see the old or the new file, never a mix."""
    if durable:
        _fsync(src)
    os.replace(src, dst)
    if durable and os.name == "posix":  # the rename itself survives a power loss once its folder is synced
        _fsync(dst.parent)


def write_text_atomic(path: Path, text: str, prefix: str = ".", durable: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary `<prefix><name>.<random>` beside it; folders are created.

    The file gets the permissions a plain write would (umask), and the temporary file is gone on every exit.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{prefix}{path.name}.{secrets.token_hex(6)}")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        replace_file(tmp, path, durable)
    finally:
        tmp.unlink(missing_ok=True)
    return path
