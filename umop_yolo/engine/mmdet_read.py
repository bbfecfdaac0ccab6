"""Reading an MMDetection checkpoint (.pth) as data, with torch's weights-only unpickler.

MMDetection 3.x checkpoints pickle mmengine objects (the message hub's `HistoryBuffer`s, with `getattr(cls, name)`
for their statistics methods); 2.x ones may hold mmcv objects. No mmengine/mmcv/mmdet code is imported or run: each
such class resolves to a `RecordedObject` that only keeps the arguments and state pickle gives it, and `getattr` is
answered only on those, with a `RecordedAttribute`. Every other global goes through the checkpoint allowlist
(`safe_pickle.allow`), which refuses, in one line, anything that is not plain data or a model layer.
"""

from __future__ import annotations

import functools
import pickle
import threading
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from umop_yolo.engine.run import safe_pickle
from umop_yolo.engine.run.safe_pickle import CheckpointError, UnsafeCheckpointError

RECORDED_PACKAGES = ("mmengine.", "mmcv.", "mmdet.")
GETATTR = ("builtins.getattr", "__builtin__.getattr")
_lock = threading.Lock()  # safe_globals() adds and removes its entries: one MMDetection read at a time


class RecordedObject:
    """An mmengine/mmcv/mmdet object of a checkpoint as plain data: `args` and `state`, no behaviour."""

    def __new__(cls, *args: Any) -> RecordedObject:
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any) -> None:  # a REDUCE call: the arguments were recorded by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<recorded {type(self).__qualname__}>"


class RecordedAttribute:
    """`getattr(recorded, name)` as pickled (e.g. a HistoryBuffer's statistics methods): the name only."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name


@functools.cache
def recorded_class(name: str) -> type:
    """The stand-in class of the global `name` (one per name)."""
    module, _, qualname = name.rpartition(".")
    return type(qualname, (RecordedObject,), {"__module__": module, "__qualname__": qualname})


def _recorded_getattr(owner: Any, name: Any, *default: Any) -> RecordedAttribute:
    recorded = isinstance(owner, RecordedObject) or (isinstance(owner, type) and issubclass(owner, RecordedObject))
    if not recorded or not isinstance(name, str):
        raise UnsafeCheckpointError(f"calls getattr on {type(owner).__name__}, which only trust_checkpoint=true "
                                    "allows")
    return RecordedAttribute(owner, name)


def _entries(names: set[str]) -> list[tuple[Any, str]]:
    """Stand-ins for the mmengine/mmcv/mmdet globals and getattr; the others pass the allowlist or are refused."""
    recorded = {n for n in names if n.startswith(RECORDED_PACKAGES)}
    safe_pickle.allow(sorted(names - recorded - set(GETATTR)))
    entries = [(recorded_class(n), n) for n in sorted(recorded)]
    return entries + [(_recorded_getattr, n) for n in GETATTR if n in names]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict of an MMDetection .pth file, read as data; one-line `CheckpointError` otherwise."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' not found")
    try:
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) if zipfile.is_zipfile(path) else set()
        with _lock, torch.serialization.safe_globals(_entries(names)):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError as e:
        raise type(e)(f"checkpoint '{path}' {e}") from None
    except pickle.UnpicklingError as e:  # torch refused an operation (a legacy file naming another global ...)
        reason = next((s.strip() for s in str(e).rpartition("WeightsUnpickler error:")[2].splitlines() if s.strip()),
                      type(e).__name__)
        raise UnsafeCheckpointError(f"checkpoint '{path}' is refused by torch's weights-only unpickler "
                                    f"({reason[:200]})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint '{path}' is not readable, the file is truncated or corrupt "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(ckpt).__name__}, not an MMDetection checkpoint dict")
    return ckpt


def state_dict_of(ckpt: dict[str, Any], path: Path) -> dict[str, Tensor]:
    """The detector's tensors (`state_dict`, else the dict itself when it holds only tensors)."""
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint '{path}' has no state_dict of tensors: it is not an MMDetection checkpoint")
    return state


def class_names(ckpt: dict[str, Any]) -> list[str] | None:
    """The class names in `meta` (3.x `dataset_meta['classes']`, 2.x `CLASSES`), if any."""
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    names = dataset_meta.get("classes", meta.get("CLASSES"))
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def config_text(ckpt: dict[str, Any]) -> str | None:
    """The config source in `meta` (3.x `cfg`, 2.x `config`), if any."""
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    text = meta.get("cfg", meta.get("config"))
    return text if isinstance(text, str) else None
