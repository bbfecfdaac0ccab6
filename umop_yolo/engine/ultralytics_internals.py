"""Every private member of Ultralytics (8.4.190) that umop_yolo relies on, in one place.

Ultralytics offers subclassing (custom trainer, validator, predictor, model classes) and callbacks (`add_callback`) as
its public hooks; we use those where they reach (e.g. MMDetection's warmup and the level statistics are callbacks).
What they do not reach is listed in PRIVATE_MEMBERS: (owner, member, what 8.4.190 has, what we use it for), where
"what 8.4.190 has" is the `inspect.signature` of a method or function, ATTRIBUTE for an attribute the owner's own code
sets or reads (`self.<member>`), or GLOBAL for a module-level name. `tests/test_ultralytics_internals.py` checks each
against the installed Ultralytics, so an upgrade that renames or changes one fails there instead of training wrongly.
The swaps and attribute settings that are not plain method overrides are done by the functions below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from torch import nn

ATTRIBUTE, GLOBAL = "attribute", "global"
TRAINER = "ultralytics.engine.trainer.BaseTrainer"
DETECT = "ultralytics.nn.modules.head.Detect"
VALIDATOR = "ultralytics.models.yolo.detect.DetectionValidator"


class Private(NamedTuple):
    owner: str  # dotted path of the class or module
    member: str
    pinned: str  # the signature in 8.4.190, or ATTRIBUTE / GLOBAL
    use: str


PRIVATE_MEMBERS: tuple[Private, ...] = (
    Private(TRAINER, "_setup_scheduler", "(self)", "overridden: MMDetection's step decay when lr_steps is set"),
    Private(TRAINER, "_get_warmup_iterations", "(self, num_batches)",
            "overridden: warmup_iters counts warmup in iterations; none of Ultralytics' when warmup_ratio > 0"),
    Private(TRAINER, "optimizer_step", "(self)",
            "copied into UmopTrainer.optimizer_step with max_norm=grad_clip and without the NPU branch (its source "
            "is pinned in COPIED_SOURCES: a parent call cannot change or drop the clip of 10)"),
    Private(TRAINER, "_handle_nan_recovery", "(self, epoch)",
            "overridden: an exploded finite loss is recovered from as a NaN is"),
    Private(TRAINER, "_model_train", "(self)", "called by our recovery before it reloads last.pt"),
    Private(TRAINER, "_load_checkpoint_state", "(self, ckpt)", "called by our recovery: optimizer, scaler, EMA, best"),
    Private(TRAINER, "_setup_ddp", "(self)", "overridden (a DDP worker joined in check_resume); called for GPUs"),
    Private(TRAINER, "_setup_train", "(self)", "overridden: a CPU model of a DDP rank is wrapped without device ids"),
    Private(TRAINER, "nan_recovery_attempts", ATTRIBUTE, "counted by our recovery, as Ultralytics' counts NaNs"),
    Private("ultralytics.engine.validator", "get_torch_device_backend", "(device: 'torch.device | str')",
            "replaced in a CPU DDP rank's final validation (`replaced`): it would ask for the rank's GPU"),
    Private("ultralytics.engine.validator", "AutoBackend", GLOBAL,
            "replaced in a CPU DDP rank's final validation (`replaced`): best.pt is loaded on the CPU"),
    Private("torch.nn.parallel", "DistributedDataParallel", GLOBAL,
            "replaced within Ultralytics' _setup_train in a CPU DDP rank (`replaced`): it passes device_ids=[None]"),
    Private(VALIDATOR, "is_custom_json", ATTRIBUTE,
            "set False by `use_own_ground_truth`: we score against our own COCO ground truth"),
    Private(VALIDATOR, "build_gdict", ATTRIBUTE,
            "set False by `use_own_ground_truth`: Ultralytics would collect a ground-truth dict of its own"),
    Private(VALIDATOR, "gdict", ATTRIBUTE,
            "set None by `use_own_ground_truth`"),
    Private("ultralytics.nn.tasks", "torch_load", "(*args, **kwargs)",
            "replaced by `replace_torch_load` within checkpoint_loading(): every checkpoint Ultralytics reads goes "
            "through our restricted loader"),
    Private("ultralytics.nn.tasks", "torch_safe_load", "(weight, safe_only=None)",
            "Ultralytics' reader of every checkpoint, which calls `torch_load` by its module-level name"),
    Private("ultralytics.nn.tasks.BaseModel", "_predict_augment", "(self, x)",
            "overridden by UmopDetectionModel: test-time augmentation for any head"),
    Private(DETECT, "_inference", "(self, x: 'dict[str, torch.Tensor]') -> 'torch.Tensor'",
            "overridden by DenseHead: anchors' deltas decoded, per level the nms_pre best scores"),
    Private(DETECT, "dynamic", ATTRIBUTE, "read by DenseHead's anchor cache"),
    Private(DETECT, "shape", ATTRIBUTE, "DenseHead's anchor cache key"),
    Private(DETECT, "xyxy", ATTRIBUTE, "DenseHead's box format, as Detect's"),
    Private(DETECT, "export", ATTRIBUTE, "DenseHead returns y alone when exporting"),
    Private(DETECT, "end2end", ATTRIBUTE, "DenseHead has no NMS-free branch"),
    Private("ultralytics.engine.model.Model", "_load", "(self, weights: 'str', task: 'str | None' = None) -> 'None'",
            "overridden by UmopYOLO: an MMDetection checkpoint (.pth) becomes its dense model"),
    Private("ultralytics.engine.model.Model", "_reset_ckpt_args", "(args: 'dict[str, Any]') -> 'dict[str, Any]'",
            "called by UmopYOLO._load for an MMDetection checkpoint's args"),
    Private("ultralytics.utils.loss.v8DetectionLoss", "bce", ATTRIBUTE,
            "replaced by the level-wise BCE / PFL in LevelSplitDetectionLoss and PFLDetectionLoss"),
    Private("ultralytics.utils.loss.v8DetectionLoss", "get_assigned_targets_and_loss",
            "(self, preds: 'dict[str, torch.Tensor]', batch: 'dict[str, Any]', **assign_kwargs) -> 'tuple'",
            "overridden: level sizes recorded before it runs, its terms rescaled under DDP"),
    Private("ultralytics.utils", "AUTOINSTALL", GLOBAL, "set False by `stay_offline` (read by the exporters)"),
    Private("ultralytics.utils.checks", "AUTOINSTALL", GLOBAL, "set False by `stay_offline`: no pip install"),
    Private("ultralytics.utils.checks", "ONLINE", GLOBAL, "set False by `stay_offline`: no pip update check"),
    Private("ultralytics.utils.events.Events", "enabled", ATTRIBUTE, "set False by `stay_offline`: no telemetry"),
)

# Methods copied rather than called: sha256 of `inspect.getsource` in 8.4.190 (a change there needs porting).
COPIED_SOURCES = {f"{TRAINER}.optimizer_step": "bec16cbc552a8f2dcbc5535dde4957f6e56c6d7bbf34abdaf35ba6bf648ea576"}

# __init__s our classes skip (`skip_parent_init`): what they set in 8.4.190 (attributes, submodules), and what we do
# without. DenseHead sets the rest itself, as DenseDetectionModel does.
SKIPPED_INITS = {
    DETECT: ({"nc", "nl", "no", "reg_max", "stride"}, {"cv2", "cv3", "dfl"},
             {"dfl": "DenseHead decodes its anchors' deltas itself (`_inference`)"}),
    "ultralytics.nn.tasks.DetectionModel": ({"inplace", "names", "save", "stride", "yaml"}, {"model"}, {}),
}


def stay_offline(environ: Mapping[str, str]) -> None:
    """What `YOLO_AUTOINSTALL=false` / `YOLO_OFFLINE=1` give when set before Ultralytics is imported, for an Ultralytics
    that is imported already: no `pip install` of a missing module, no pip update check, no telemetry. A variable the
    user set is left to Ultralytics."""
    import ultralytics.utils
    from ultralytics.utils import checks, events

    if "YOLO_AUTOINSTALL" not in environ:
        ultralytics.utils.AUTOINSTALL = checks.AUTOINSTALL = False
    if "YOLO_OFFLINE" not in environ:
        checks.ONLINE = False
        events.events.enabled = False


def replace_torch_load(load: Callable[..., Any]) -> Callable[..., Any]:
    """Point `ultralytics.nn.tasks.torch_load` (through which `torch_safe_load` reads every checkpoint) at `load`;
    returns the function it replaced, to put back the same way."""
    from ultralytics.nn import tasks

    previous, tasks.torch_load = tasks.torch_load, load
    return previous


@contextmanager
def replaced(owner: Any, values: Mapping[str, Any]) -> Iterator[None]:
    """Within this block `owner.<name>` is `values[name]` for each name; the originals are put back afterwards."""
    saved = {name: getattr(owner, name) for name in values}
    for name, value in values.items():
        setattr(owner, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(owner, name, value)


def retype(obj: Any, cls: type) -> None:
    """Make `obj` an instance of `cls`, a subclass or base of its class that adds no state of its own (UMOP's YOLO
    model <-> Ultralytics' DetectionModel: only the loss and test-time augmentation differ)."""
    if not (issubclass(cls, type(obj)) or issubclass(type(obj), cls)):
        raise TypeError(f"cannot retype a {type(obj).__name__} as {cls.__name__}: neither derives from the other")
    obj.__class__ = cls


def skip_parent_init(module: nn.Module) -> None:
    """Start `module` as a bare nn.Module, skipping Ultralytics' Detect / DetectionModel __init__ (which would build
    YOLO branches / run parse_model); the caller sets what SKIPPED_INITS lists."""
    nn.Module.__init__(module)


def use_own_ground_truth(validator: Any) -> None:
    """Ultralytics' DetectionValidator neither reads a custom COCO JSON nor collects ground truth of its own: our
    validator builds COCO ground truth itself."""
    validator.is_custom_json, validator.build_gdict, validator.gdict = False, False, None
