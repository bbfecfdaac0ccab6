"""Saving into a run directory so that a crash at any moment leaves complete files (`.partial-*` temporaries).

`atomic_weights()` lets Ultralytics write `last.pt`, `best.pt` and `epochN.pt` into a hidden folder next to them and
then moves each file over its final name, so a crash leaves either the old or the new complete file. A save removes
only its own folder; folders of killed processes are removed by `remove_leftovers` when the next training has locked
the run directory (`run_lock`), so no live save is touched. `trim_epochs` cuts the per-epoch logs back to the saved
checkpoint; `results_row` orders a results.csv row. `saved_as_ultralytics()` writes a YOLO model as Ultralytics'
own class. A run directory that cannot be written (`check_writable`) and a full disk during a save
(`kept_on_full_disk`) stop in one line. Loading checkpoints is `engine.checkpoint`.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn
from ultralytics.nn.tasks import DetectionModel

from umop_yolo.atomic import replace_file, write_text_atomic
from umop_yolo.engine import ultralytics_internals
from umop_yolo.engine.log_rewrite import rewritten_log
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.errors import UserInputError
from umop_yolo.eval.metrics import COCO_KEYS

PARTIAL_PREFIX = ".partial-"  # hidden: Ultralytics' `**/last*.pt` globs skip it
READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


class DiskFullError(UserInputError):
    """A checkpoint could not be written for want of disk space; the one before it is kept (one line naming it)."""


def check_writable(folder: Path, what: str = "run directory") -> None:
    """Create `folder` if needed and write a temporary file in it, or raise one line naming it (read-only)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        if e.errno not in READ_ONLY:
            raise
        raise UserInputError(f"{what} '{folder}' is not writable ({e.strerror}): choose another project= or "
                             "name=") from None


@contextmanager
def kept_on_full_disk(last: Path) -> Iterator[None]:
    """A save that fails for want of space (`atomic_weights` has moved nothing) raises one line naming the checkpoint
    kept, `last` (its final path), instead of a traceback. torch's own file writer reports a full disk as a
    RuntimeError of its zip container."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        full = e.errno == errno.ENOSPC if isinstance(e, OSError) else "inline_container" in str(e)
        if not full:
            raise
        kept = (f"'{last}' is kept as it was; free space, then continue with resume={last}" if last.is_file()
                else "this run has no checkpoint yet")
        raise DiskFullError(f"the disk is full: a checkpoint could not be written into '{last.parent}'; {kept}") \
            from None


@contextmanager
def atomic_weights(trainer: Any, copy_existing: bool = False) -> Iterator[None]:
    """Point `trainer.wdir/last/best` at a hidden folder inside `wdir`; on success move every file written there.

    `copy_existing` starts the folder with copies of last.pt and best.pt, for steps that rewrite them in place
    (Ultralytics' final `strip_optimizer`). On an exception nothing is moved. Only this call's folder is removed.
    """
    wdir, last, best = trainer.wdir, trainer.last, trainer.best
    wdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=wdir))
    try:
        with rewritten_log(lambda message: message.replace(str(tmp), str(wdir))):  # log lines name the final paths
            if copy_existing:
                for f in (last, best):
                    if f.is_file():
                        shutil.copyfile(f, tmp / f.name)
            trainer.wdir, trainer.last, trainer.best = tmp, tmp / last.name, tmp / best.name
            yield
            for f in sorted(tmp.iterdir(), key=lambda p: p.name == last.name):  # last.pt last: resume needs it most
                replace_file(f, wdir / f.name, durable=True)
    finally:
        trainer.wdir, trainer.last, trainer.best = wdir, last, best
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def saved_as_ultralytics(model: nn.Module) -> Iterator[None]:
    """Within this block a `UmopDetectionModel` (a YOLO head) is Ultralytics' `DetectionModel`, the class it extends
    with only a loss and test-time augmentation: checkpoints written meanwhile load in plain Ultralytics, without
    umop_yolo. Our loader gives them back their class (`engine.checkpoint`); training from one rebuilds the model from
    its YAML. RetinaNet/ATSS models keep their classes (their layers are ours), pickled so that plain Ultralytics says
    in one line that umop_yolo is needed (`engine.needs_umop`)."""
    cls = type(model)
    if cls is UmopDetectionModel:
        ultralytics_internals.retype(model, DetectionModel)
    try:
        yield
    finally:
        ultralytics_internals.retype(model, cls)


@contextmanager
def weights_file_names_only(args: Any, keys: tuple[str, ...] = ("backbone_weights",)) -> Iterator[None]:
    """Within this block `args` name backbone weights files by file name only, so a checkpoint's train_args hold no
    path of this machine (a checkpoint never reads them again: its weights replace the backbone's)."""
    saved = {k: getattr(args, k, None) for k in keys}
    for k, value in saved.items():
        if isinstance(value, str) and value.endswith(".pth"):
            setattr(args, k, Path(value).name)
    try:
        yield
    finally:
        for k, value in saved.items():
            setattr(args, k, value)


def remove_leftovers(run_dir: Path) -> None:
    """Remove the temporary files and folders (`.partial-*`) that killed processes left in a run directory.

    Call only while holding the run directory's lock: then no live process is writing them.
    """
    for folder in (run_dir, run_dir / "weights"):
        for stale in folder.glob(f"{PARTIAL_PREFIX}*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def trim_epochs(csv: Path, epochs: int) -> None:
    """Keep the header and the complete rows of epochs 1..`epochs` of a per-epoch log (atomically).

    The log is a CSV with an `epoch` column: results.csv, levels.csv. A run killed after logging an epoch but before
    saving its checkpoint, or in the middle of a row, leaves rows the resumed run would write again; so does an epoch
    that is redone after a NaN or divergence recovery.
    """
    if not csv.is_file():
        return
    lines = csv.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines:
        return
    header = [name.strip() for name in lines[0].split(",")]
    if "epoch" not in header:
        return
    column, width = header.index("epoch"), len(header)

    def complete_and_saved(row: str) -> bool:
        fields = row.split(",")
        try:
            return row.endswith("\n") and len(fields) == width and float(fields[column]) <= epochs
        except ValueError:
            return False

    kept = lines[:1] + [row for row in lines[1:] if complete_and_saved(row)]
    if kept != lines:
        write_text_atomic(csv, "".join(kept), prefix=PARTIAL_PREFIX, durable=True)


def results_row(metrics: dict[str, Any], levels: dict[str, float], csv: Path) -> dict[str, Any]:
    """One epoch's results.csv values in column order: Ultralytics' columns first, in its order (so tools that read
    them by position still work), then the COCO columns, then the per-level means. A results.csv that exists with the
    same columns in another order (a run started by an older version, resumed) keeps its header's order."""
    coco = {k: metrics[k] for k in COCO_KEYS if k in metrics}
    row = {**{k: v for k, v in metrics.items() if k not in coco}, **coco, **levels}
    header = []
    if csv.is_file():
        with open(csv, encoding="utf-8") as f:
            header = [name.strip() for name in f.readline().split(",")[2:]]  # after `epoch` and `time`
    return {k: row[k] for k in header} if sorted(header) == sorted(row) else row
