"""A restricted unpickler for checkpoints: model layers and plain data only, so loading a file cannot run its code.

A checkpoint is a pickle, and unpickling calls whatever the file names (`os.system`, `subprocess.Popen`, ...).
`RestrictedUnpickler` resolves only:

* `CALLABLES`: the functions and plain types a checkpoint calls while loading (tensor rebuilding, containers,
  argument namespaces, paths, numpy scalars and arrays);
* `torch.nn.Module` subclasses defined in `TRUSTED_ROOTS` (the layers of a model) and any class defined in
  `umop_yolo` (helpers a model keeps, e.g. anchor generators), which pickle re-creates with `cls.__new__` and fills
  with `__setstate__`; calling one (a model's `__init__` parses a model YAML, which can eval) is refused;
* torch dtypes, layouts and memory formats (plain values).

Anything else stops the load with `UnsafeCheckpointError` naming the global, before it is imported. The unpickler is
the pure-Python one from the standard library, extended so that REDUCE, INST and OBJ may call only `CALLABLES`, and
BUILD may not set attributes on classes, functions or modules.

This module is itself a valid `pickle_module` for `torch.load(..., weights_only=False, pickle_module=safe_pickle)`.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickle
import types
from typing import IO, Any

import torch

from umop_yolo.errors import UserInputError

TRUSTED_ROOTS = ("umop_yolo", "torch", "torchvision", "ultralytics")
CALLABLES = frozenset(
    {
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.serialization._get_layout",
        "torch.device",
        "torch.Size",
        "collections.OrderedDict",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.range",
        "builtins.complex",
        "builtins.bytearray",
        "_codecs.encode",  # bytes under pickle protocol 2, torch.save's default
        "types.SimpleNamespace",
        "ultralytics.utils.IterableSimpleNamespace",
        "ultralytics.yolo.utils.IterableSimpleNamespace",  # checkpoints of Ultralytics < 8.0.44 (aliased on load)
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.numeric._frombuffer",  # arrays under pickle protocol 5
        "numpy._core.numeric._frombuffer",
    }
)
_VALUES = (torch.dtype, torch.layout, torch.memory_format)
_NO_STATE = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)


class CheckpointError(UserInputError):
    """A checkpoint that cannot be loaded; the message is one line naming the problem."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint names a global outside the allowlist, or would call or modify one it may not."""


class MissingGlobalError(CheckpointError):
    """The checkpoint needs a class or function that this installation does not provide (one line, naming it)."""


def _resolve(module: str, name: str) -> Any:
    """Import `module` and look up the (possibly dotted) `name` in it."""
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise MissingGlobalError(
            f"needs '{module}.{name}', which this installation does not provide ({type(e).__name__}: {e}); "
            "was it written by another version of umop_yolo, ultralytics or torch?"
        ) from None
    return obj


def _refuse(what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"refers to '{what}', which is not a model layer or plain data type on the allowlist; "
        "load it with trust_checkpoint=true only if you trust the file and whoever made it"
    )


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be overridden
    """`pickle.Unpickler` that resolves only allowlisted globals and calls only `CALLABLES` (see the module doc)."""

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._callables: dict[int, str] = {}  # id -> name of every CALLABLES object this load resolved

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # protocol 2 names builtins `__builtin__`, as Python 2 did
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if full in CALLABLES:
            obj = _resolve(module, name)
            self._callables[id(obj)] = full
            return obj
        if module.partition(".")[0] not in TRUSTED_ROOTS or "<" in name or name.startswith("__"):
            raise _refuse(full)
        obj = _resolve(module, name)
        if isinstance(obj, _VALUES):
            return obj
        home = getattr(obj, "__module__", "").partition(".")[0]  # where it is defined, not just re-exported
        layer = home in TRUSTED_ROOTS and isinstance(obj, type) and issubclass(obj, torch.nn.Module)
        if layer or (home == "umop_yolo" and isinstance(obj, type)):
            return obj
        raise _refuse(full)

    def _check_callable(self, func: Any) -> None:
        if id(func) not in self._callables:
            raise UnsafeCheckpointError(
                f"calls {getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(func).__name__)} "
                "while loading, which only trust_checkpoint=true allows"
            )

    def load_reduce(self) -> None:
        self._check_callable(self.stack[-2])
        super().load_reduce()

    def _instantiate(self, klass: Any, args: tuple) -> None:
        self._check_callable(klass)
        super()._instantiate(klass, args)

    def load_build(self) -> None:
        target = self.stack[-2]
        if isinstance(target, _NO_STATE):
            raise UnsafeCheckpointError(f"sets attributes of {target!r} while loading, which is never allowed")
        super().load_build()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.BUILD[0]] = load_build


Unpickler = RestrictedUnpickler


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """`pickle.load` with the restricted unpickler."""
    return RestrictedUnpickler(file, **kwargs).load()

