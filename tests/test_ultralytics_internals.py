"""The private members of Ultralytics that umop_yolo relies on (`engine.ultralytics_internals`) are there as in 8.4.190:
an upgrade that renames or changes one fails here, naming it, instead of training wrongly."""

import hashlib
import importlib
import inspect
from typing import Any

import pytest
from ultralytics.nn.modules.head import Detect
from ultralytics.nn.tasks import DetectionModel

from umop_yolo.engine.api import UmopYOLO
from umop_yolo.engine.dense import DenseDetectionModel, DenseHead
from umop_yolo.engine.loss import LevelSplitDetectionLoss, PFLDetectionLoss
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.predictor import CocoDetectionPredictor
from umop_yolo.engine.trainer import UmopTrainer
from umop_yolo.engine.ultralytics_internals import (
    ATTRIBUTE,
    COPIED_SOURCES,
    GLOBAL,
    PRIVATE_MEMBERS,
    SKIPPED_INITS,
    Private,
    replaced,
    retype,
)
from umop_yolo.engine.validator import CocoDetectionValidator

OURS = (UmopTrainer, CocoDetectionValidator, CocoDetectionPredictor, UmopYOLO, UmopDetectionModel, DenseHead,
        DenseDetectionModel, LevelSplitDetectionLoss, PFLDetectionLoss)


def resolve(path: str) -> Any:
    """A dotted path -> its module, or the class or function it names."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        module, _, name = path.rpartition(".")
        return getattr(resolve(module), name)


def mismatch(owner: Any, entry: Private) -> str | None:
    """Why `owner` does not have `entry.member` as the table pins it; None when it does."""
    where = f"{entry.owner}.{entry.member}"
    if entry.pinned == ATTRIBUTE:
        found = hasattr(owner, entry.member) or f"self.{entry.member}" in inspect.getsource(owner)
        return None if found else f"{where}: the attribute is gone"
    if not hasattr(owner, entry.member):
        return f"{where} is gone"
    if entry.pinned == GLOBAL:
        return None
    signature = str(inspect.signature(getattr(owner, entry.member)))
    return None if signature == entry.pinned else f"{where}{signature}, pinned {entry.pinned}"


@pytest.mark.parametrize("entry", PRIVATE_MEMBERS, ids=lambda e: f"{e.owner.rpartition('.')[2]}.{e.member}")
def test_each_private_member_is_as_pinned(entry):
    assert mismatch(resolve(entry.owner), entry) is None


def test_the_check_fails_on_a_renamed_or_changed_member():
    """Checked against fake classes: a renamed method, a changed signature, a dropped attribute all fail."""

    class Pinned:
        def _setup_scheduler(self): ...

    class Renamed:
        def _setup_schedule(self): ...

    class Changed:
        def _setup_scheduler(self, epochs): ...

    class SetsIt:
        def __init__(self):
            self.build_gdict = True

    method = Private("Trainer", "_setup_scheduler", "(self)", "")
    attribute = Private("Validator", "build_gdict", ATTRIBUTE, "")
    assert mismatch(Pinned, method) is None and mismatch(SetsIt, attribute) is None
    assert mismatch(Renamed, method) == "Trainer._setup_scheduler is gone"
    assert mismatch(Changed, method) == "Trainer._setup_scheduler(self, epochs), pinned (self)"
    assert mismatch(Pinned, attribute) == "Validator.build_gdict: the attribute is gone"


def test_every_private_override_of_ours_is_in_the_table():
    """A private method of Ultralytics' that one of our classes overrides is listed, with a base class as owner."""
    listed = {(entry.owner, entry.member) for entry in PRIVATE_MEMBERS}
    for cls in OURS:
        for name in vars(cls):
            if name.startswith("_") and not name.startswith("__"):
                bases = [b for b in cls.__mro__[1:] if name in vars(b) and b.__module__.startswith("ultralytics")]
                if bases:
                    owners = {f"{b.__module__}.{b.__qualname__}" for b in bases}
                    assert any((owner, name) in listed for owner in owners), f"{cls.__name__}.{name}"


@pytest.mark.parametrize("name", sorted(COPIED_SOURCES))
def test_copied_methods_are_unchanged(name):
    """UmopTrainer.optimizer_step copies Ultralytics' with the clip made a setting: a change there needs porting."""
    source = inspect.getsource(resolve(name))
    assert hashlib.sha256(source.encode()).hexdigest() == COPIED_SOURCES[name], f"{name} changed:\n{source}"


def public_state(module: Any) -> tuple[set[str], set[str]]:
    return {k for k in vars(module) if not k.startswith("_") and k != "training"}, set(module._modules)


def test_the_skipped_inits_set_what_ours_set():
    """Detect's and DetectionModel's __init__ set what is pinned, and our classes, which skip them, set the same (or
    do without what the table says)."""
    made = {"ultralytics.nn.modules.head.Detect": Detect(nc=2, ch=(8, 16, 32)),
            "ultralytics.nn.tasks.DetectionModel": DetectionModel("yolov8n.yaml", verbose=False)}
    dense = DenseDetectionModel("retinanet_yolov8n.yaml", nc=2, verbose=False)
    ours = {"ultralytics.nn.modules.head.Detect": dense.model[-1], "ultralytics.nn.tasks.DetectionModel": dense}
    for owner, (attributes, modules, without) in SKIPPED_INITS.items():
        assert public_state(made[owner]) == (attributes, modules), owner
        have = {k for k in dir(ours[owner])} | set(ours[owner]._modules)
        assert (attributes | modules) - set(without) <= have, owner


def test_retype_refuses_unrelated_classes():
    model = DetectionModel("yolov8n.yaml", verbose=False)
    retype(model, UmopDetectionModel)
    assert type(model) is UmopDetectionModel
    with pytest.raises(TypeError, match="cannot retype a UmopDetectionModel as Detect"):
        retype(model, Detect)


def test_replaced_puts_the_originals_back_after_an_error():
    class Owner:
        load = "original"

    with pytest.raises(RuntimeError), replaced(Owner, {"load": "stand-in"}):
        assert Owner.load == "stand-in"
        raise RuntimeError
    assert Owner.load == "original"
