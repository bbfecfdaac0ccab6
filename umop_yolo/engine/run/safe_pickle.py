"""The allowlist for loading checkpoints with torch's weights-only unpickler (`torch.load(weights_only=True)`).

torch's unpickler resolves only allowlisted globals, calls only allowlisted callables and sets state only on objects of
allowlisted types; its own list covers tensors, containers and dtypes. `allow(names)` adds the globals a checkpoint
names beyond that, if each is

* a model layer: a `torch.nn.Module` subclass defined in torch.nn, torchvision, ultralytics.nn or umop_yolo (the list is
  generated from the loaded classes), or a plain class our dense heads keep (anchor generator, box coder). Pickle
  re-creates these as `cls.__new__(cls)` and their state. The name resolves to a stand-in that does only that: calling
  it is refused, because a model's `__init__` parses a model YAML (Ultralytics eval()s its activation) or fetches
  weights;
* one of `plain_types()`: argument namespaces, paths, numpy scalars and arrays, a dense model's backbone spec, which
  pickle re-creates by calling them;
* one of the standard-library calls with which a model of ours checks that umop_yolo is installed before its class is
  looked up (`engine.needs_umop`); stand-ins do only that check and re-create the model through the layer's stand-in.

Anything else is refused with one line naming it, before the file is unpickled. Only the names a checkpoint uses are
registered, because torch rebuilds its lookup table from every registered global at each opcode; they stay registered
for the process, because `torch.serialization.safe_globals` removes its entries on exit even while another thread is
still unpickling.
"""

from __future__ import annotations

import functools
import pathlib
import sys
import threading
import types
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from umop_yolo.engine import needs_umop
from umop_yolo.errors import UserInputError

LAYER_PACKAGES = ("torch.nn.", "torchvision.", "ultralytics.nn.", "umop_yolo.")
_lock = threading.Lock()  # add_safe_globals rebinds torch's global set: two threads at once could drop an entry


class CheckpointError(UserInputError):
    """A checkpoint that cannot be loaded; the message is one line naming the problem."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint names a global outside the allowlist, or would call or modify one it may not."""


class MissingGlobalError(CheckpointError):
    """The checkpoint needs a class that this installation does not provide (one line, naming it)."""


def _name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _importable(cls: type) -> bool:
    """Whether pickle finds `cls` under its name (not a class made at run time, or of a module since removed)."""
    obj: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def model_layers() -> dict[str, type]:
    """Every model layer a checkpoint may re-create, by pickled name: the `nn.Module` subclasses of `LAYER_PACKAGES`
    that are loaded once Ultralytics' and our model builders are, and the anchor generator and box coder."""
    import torchvision  # noqa: F401  (its models)
    from ultralytics.nn import tasks  # noqa: F401  (every Ultralytics layer)

    from umop_yolo.engine import build  # noqa: F401  (every umop_yolo model, head and backbone)
    from umop_yolo.nn.anchors import AnchorGenerator
    from umop_yolo.nn.box_coder import DeltaXYWHBoxCoder

    layers = [c for c in _subclasses(nn.Module) if c.__module__.startswith(LAYER_PACKAGES) and _importable(c)]
    return {_name(c): c for c in (*layers, AnchorGenerator, DeltaXYWHBoxCoder)}


def plain_types() -> dict[str, Any]:
    """The plain data types (and their legacy pickled names) that checkpoints hold besides tensors and containers."""
    from ultralytics.utils import IterableSimpleNamespace

    from umop_yolo.engine.build import DenseBackboneSpec

    path = type(pathlib.Path())  # a path pickled on either OS loads as this OS's path
    scalar, reconstruct = np.float64(0).__reduce__()[0], np.empty(0).__reduce__()[0]
    return {
        "ultralytics.utils.IterableSimpleNamespace": IterableSimpleNamespace,  # model.args of an unstripped .pt
        "ultralytics.yolo.utils.IterableSimpleNamespace": IterableSimpleNamespace,  # Ultralytics < 8.0.44
        "types.SimpleNamespace": types.SimpleNamespace,
        "umop_yolo.engine.build.DenseBackboneSpec": DenseBackboneSpec,  # a dict: a dense model's `backbone:`
        "pathlib.PosixPath": path,
        "pathlib.WindowsPath": path,
        "numpy.dtype": np.dtype,
        "numpy.ndarray": np.ndarray,
        **{f"numpy.{core}.multiarray.{f.__name__}": f for core in ("core", "_core") for f in (scalar, reconstruct)},
    }


class _RecreateOnly(type):
    """Metaclass of the stand-ins: pickle's NEWOBJ (`cls.__new__(cls)`) re-creates the layer; calling it is refused."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnsafeCheckpointError(f"calls {cls.__qualname__} while loading, which only trust_checkpoint=true allows")


@functools.cache
def _stand_in(layer: type) -> type:
    def new(_: type, *args: Any) -> Any:
        return layer.__new__(layer, *args)

    return _RecreateOnly(layer.__name__, (), {"__new__": staticmethod(new), "__qualname__": _name(layer)})


def _refuse(call: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(f"calls {call} other than to check for umop_yolo, which only trust_checkpoint=true "
                                 "allows")


def _find_spec(name: Any) -> bool:
    if name != needs_umop.PACKAGE:
        raise _refuse("importlib.util.find_spec")
    return True  # this installation has umop_yolo


def _truth(found: Any) -> bool:
    if type(found) is not bool:
        raise _refuse("operator.truth")
    return found


def _getitem(container: Any, key: Any) -> Any:
    if type(container) not in (tuple, dict):
        raise _refuse("operator.getitem")
    return container[key]


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if not isinstance(cls, _RecreateOnly) or base is not object or state is not None:
        raise _refuse("copyreg._reconstructor")
    return cls.__new__(cls)  # the layer, as pickle's NEWOBJ would re-create it


CHECK_CALLS = {  # the pickled names of `needs_umop`'s calls (operator's are pickled as _operator's)
    "importlib.util.find_spec": _find_spec,
    "_operator.truth": _truth,
    "_operator.getitem": _getitem,
    "copyreg._reconstructor": _reconstructor,
    "builtins.object": object,
}


def _entries(name: str, layers: dict[str, type], plain: dict[str, Any]) -> list[Any]:
    """What to register for one global a checkpoint names; raises if it is not on the allowlist."""
    if name in plain:
        dtypes = {type(np.dtype(c)) for c in np.typecodes["All"]} if name == "numpy.dtype" else set()
        return [(plain[name], name), *dtypes]  # a dtype's state is set on an instance of its class
    if name in layers:  # the stand-in under the pickled name; the class itself (so its state may be set) under a
        return [(_stand_in(layers[name]), name), (layers[name], f"{name}\n")]  # name no pickle can spell
    module, _, attr = name.rpartition(".")
    if name.startswith(LAYER_PACKAGES) and not hasattr(sys.modules.get(module), attr):
        raise MissingGlobalError(f"needs '{name}', which this installation does not provide; was it written by "
                                 "another version of umop_yolo, ultralytics or torch?")
    raise UnsafeCheckpointError(f"refers to '{name}', which is not a model layer or plain data type on the allowlist; "
                                "load it with trust_checkpoint=true only if you trust the file and whoever made it")


def allow(names: Iterable[str]) -> None:
    """Allow torch's weights-only unpickler the globals `names`, or raise naming the first one not on the allowlist."""
    names = list(names)
    if not names:
        return
    layers, plain = model_layers(), {**plain_types(), **CHECK_CALLS}
    entries = [entry for name in names for entry in _entries(name, layers, plain)]
    with _lock:
        torch.serialization.add_safe_globals(entries)
