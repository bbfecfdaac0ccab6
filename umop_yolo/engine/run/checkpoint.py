"""Checkpoint loading: torch's weights-only unpickler with our allowlist, and routing Ultralytics' loads through it.

Ultralytics reads every checkpoint (train `model=`/`pretrained=`, resume, val, predict, export, the final
validation) through `ultralytics.nn.tasks.load_checkpoint` -> `torch_safe_load` -> the module-level `torch_load` of
`ultralytics.nn.tasks`. `checkpoint_loading()` points that one name at `load_file` (`ultralytics_internals`) for the
duration of a call from our entry points (`UmopTrainer`, `UmopYOLO`), and restores it afterwards; nothing is patched
at import time. `load_file` loads with `torch.load(weights_only=True)` and the allowlist of `safe_pickle` unless the
file is trusted (`trust_checkpoint=true`; never under ULTRALYTICS_SAFE_LOAD), and turns every failure into one
`CheckpointError` line naming the file, so a missing module never reaches Ultralytics' pip auto-install. A YOLO model
saved as Ultralytics' own `DetectionModel` (`engine.saving`) is a `UmopDetectionModel` again once loaded here.
"""

from __future__ import annotations

import pickle
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from ultralytics.nn.tasks import DetectionModel

from umop_yolo.engine import ultralytics_internals
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.model_yaml_check import check_model_dict
from umop_yolo.engine.run import safe_pickle
from umop_yolo.engine.run.safe_pickle import CheckpointError


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _damaged(error: Exception) -> bool:
    """Whether torch's zip reader or unpickler raised `error`: a damaged file (truncated, not torch's)."""
    damaged = (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, UnicodeDecodeError)
    return isinstance(error, damaged) or (isinstance(error, RuntimeError) and "PytorchStreamReader" in str(error))


def _check_contents(ckpt: Any, path: Path, trusted: bool) -> None:
    """A checkpoint is a dict holding a model; untrusted, its model YAML must be data that builds only allowed layers
    (`model_yaml_check`): training rebuilds the model from it."""
    models = [ckpt.get(k) for k in ("ema", "model")] if isinstance(ckpt, dict) else []
    if not any(isinstance(m, torch.nn.Module) for m in models):
        raise CheckpointError(f"checkpoint '{path}' holds no model: it is not an Ultralytics/umop_yolo checkpoint")
    for m in models:
        spec = getattr(m, "yaml", None) if isinstance(m, torch.nn.Module) else None
        if spec is not None and not trusted:
            try:
                check_model_dict(spec, f"checkpoint '{path}' model YAML", safe_pickle.UnsafeCheckpointError)
            except safe_pickle.UnsafeCheckpointError as e:
                raise type(e)(f"{e} (trust_checkpoint=true skips this check)") from None


def _restricted_load(path: Path, map_location: Any) -> Any:
    """`torch.load(weights_only=True)` after allowing the globals the file names (or refusing the first it may not)."""
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise CheckpointError("is not readable, the file is truncated or corrupt (not a torch.save zip archive)")
    safe_pickle.allow(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # torch's unpickler refused an operation, e.g. setting state on a class
        detail = str(e).rpartition("WeightsUnpickler error:")[2]  # torch's reason, after its advice
        reason = next((line.strip() for line in detail.splitlines() if line.strip()), type(e).__name__)
        raise safe_pickle.UnsafeCheckpointError(
            f"is refused by torch's weights-only unpickler ({reason[:200]}); load it with "
            "trust_checkpoint=true only if you trust the file and whoever made it"
        ) from None


def _as_umop_model(ckpt: dict) -> None:
    """A YOLO model trained or saved here is saved as Ultralytics' `DetectionModel` (`engine.saving`); the UMOP keys in
    its train_args (a training's checkpoint) or its own args (`UmopYOLO.save()` of a model built from a YAML) tell, and
    it becomes a `UmopDetectionModel` again (its UMOP criterion and test-time augmentation)."""
    for key in ("ema", "model"):
        model = ckpt.get(key)
        if type(model) is DetectionModel and any(isinstance(a, dict) and "umop" in a
                                                 for a in (ckpt.get("train_args"), getattr(model, "args", None))):
            ultralytics_internals.retype(model, UmopDetectionModel)


def load_file(path: str | Path, trusted: bool = False, map_location: Any = "cpu") -> dict:
    """Read a checkpoint dict; weights-only with our allowlist unless `trusted`. Errors: one-line `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' not found")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.rpartition("/")[2] == "constants.pkl" for n in z.namelist()):
                raise CheckpointError(f"checkpoint '{path}' is a TorchScript archive, not a training checkpoint")
    try:
        if trusted:
            ckpt = torch.load(path, map_location=map_location, weights_only=False)
        else:
            ckpt = _restricted_load(path, map_location)
    except CheckpointError as e:
        raise type(e)(f"checkpoint '{path}' {e}") from None
    except ModuleNotFoundError as e:
        raise CheckpointError(
            f"checkpoint '{path}' needs the module '{e.name}', which is not installed (nothing is installed for you)"
        ) from None
    except Exception as e:
        if not _damaged(e):
            raise  # a bug, in our code or a library's: its traceback
        detail = f"{type(e).__name__}: {_one_line(e)[:200]}" if str(e) else type(e).__name__
        raise CheckpointError(
            f"checkpoint '{path}' is not readable, the file is truncated or corrupt ({detail})"
        ) from None
    _check_contents(ckpt, path, trusted)
    _as_umop_model(ckpt)
    return ckpt


_scope = threading.local()  # per thread: stack of `trusted` flags of the active checkpoint_loading() scopes
_lock = threading.Lock()
_depth = 0
_saved: Callable[..., Any] | None = None


def _routed_torch_load(file: Any, *args: Any, **kwargs: Any) -> Any:
    """Stand-in for `ultralytics.nn.tasks.torch_load` while a `checkpoint_loading()` scope is active. Ultralytics asks
    for `weights_only=True` under ULTRALYTICS_SAFE_LOAD: then the file is never trusted."""
    modes = getattr(_scope, "modes", None)
    trusted = bool(modes and modes[-1]) and not kwargs.get("weights_only")
    return load_file(file, trusted=trusted, map_location=kwargs.get("map_location", "cpu"))


@contextmanager
def checkpoint_loading(trusted: bool = False) -> Iterator[None]:
    """Within this block, Ultralytics loads checkpoints with `load_file` (restricted unless `trusted`).

    Re-entrant and thread-safe: the first scope to open installs the stand-in, the last to close restores the
    original; a thread inside no scope that loads meanwhile gets the restricted loader.
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = ultralytics_internals.replace_torch_load(_routed_torch_load)
        _depth += 1
    modes = _scope.__dict__.setdefault("modes", [])
    modes.append(trusted)
    try:
        yield
    finally:
        modes.pop()
        with _lock:
            _depth -= 1
            if _depth == 0:
                ultralytics_internals.replace_torch_load(_saved)
