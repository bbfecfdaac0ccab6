"""Our model classes pickle so that a checkpoint says it needs umop_yolo where umop_yolo is not installed.

Plain Ultralytics unpickles a checkpoint with `torch.load(weights_only=False)`. A class of ours would fail there with
`ModuleNotFoundError: umop_yolo`, which Ultralytics' `torch_safe_load` answers with a pip install of that name
(AutoInstall). So a model of ours is pickled as `copyreg._reconstructor(<its class, once umop_yolo is found>, object,
None)` and its state, where the class is looked up only after a check made of standard-library calls:

    getitem({"umop_yolo": None}, getitem((NEEDS_UMOP_YOLO, "umop_yolo"), truth(find_spec("umop_yolo"))))

Without umop_yolo, `find_spec` finds nothing and the check raises `KeyError: 'this checkpoint needs umop_yolo: pip
install its source folder ...'` (what installs it), which Ultralytics passes on unchanged, before any name of ours is
imported. With umop_yolo installed the class is imported as before, so stock `yolo val/predict model=<dense .pt>`
works. Our own loader gives these names stand-ins that do only this (`safe_pickle`); checkpoints written before name
the class directly and load as they did.
"""

from __future__ import annotations

import copyreg
import importlib.util
import operator
from typing import Any

# No package index serves umop-yolo: name what installs it, its source folder or a wheel built there.
NEEDS_UMOP_YOLO = ("this checkpoint needs umop_yolo: pip install its source folder (pip install path/to/umop-yolo), "
                   "or a wheel built there by pip wheel --no-deps .")
PACKAGE = "umop_yolo"


class _Call:
    """Pickles as the call `func(*args)`: the unpickler makes it, in the order the arguments are written."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _found(cls: type) -> _Call:
    """`cls` once umop_yolo is found; else `KeyError(NEEDS_UMOP_YOLO)`, raised before `cls` is looked up."""
    found = _Call(operator.truth, _Call(importlib.util.find_spec, PACKAGE))
    key = _Call(operator.getitem, (NEEDS_UMOP_YOLO, PACKAGE), found)  # the message, unless found
    check = _Call(operator.getitem, {PACKAGE: None}, key)
    return _Call(operator.getitem, (check, cls), 1)  # a tuple is made in order: the check, then the class


def reduce_needing_umop(reduced: tuple) -> tuple:
    """`object.__reduce_ex__`'s answer for a model of ours, re-created through the check instead of its bare class.

    Both forms pickle gives a plain object, `(copyreg.__newobj__, (cls,), state, ...)` (protocol 2+) and
    `(copyreg._reconstructor, (cls, object, None), state)`, re-create it as `object.__new__(cls)` and then set state.
    """
    func, args, *rest = reduced
    newobj = func is copyreg.__newobj__ and len(args) == 1
    if newobj or (func is copyreg._reconstructor and args[1:] == (object, None)):
        return (copyreg._reconstructor, (_found(args[0]), object, None), *rest)
    return reduced
