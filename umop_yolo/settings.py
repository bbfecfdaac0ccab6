"""UMOP settings: registered as Ultralytics config keys, so YAML files, `key=value` and checkpoints all keep them.

Ultralytics rejects unknown keys (trainer, validator, predictor and exporter all check against `DEFAULT_CFG_DICT`)
and drops non-default keys from final checkpoints. Adding our defaults to that dict in place makes the keys
first-class everywhere, including DDP workers, which import this package while unpickling the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from umop_yolo.errors import UserInputError
from umop_yolo.pfl import SETTINGS_KEYS, PFLSettings


@dataclass(frozen=True)
class ModelSettings:
    """The UMOP settings a detection model's criterion and backbone read (YOLO and RetinaNet/ATSS alike), checked on
    construction; the engine builds them once from Ultralytics' args (`engine.args_adapter.settings_from_args`).

    umop: PFL/LRP as the classification loss (`pfl`); false: the detector's stock loss (YOLO: Ultralytics' BCE;
        RetinaNet/ATSS: `pfl.focal_baseline()`).
    backbone_weights: a ResNet backbone's weights in place of the model YAML's `backbone.pretrained` (None: the
        YAML's; false: random init).
    """

    umop: bool = True
    pfl: PFLSettings = field(default_factory=PFLSettings)
    backbone_weights: str | PurePath | bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.umop, bool):
            raise UserInputError(f"umop={self.umop!r} must be true or false")
        weights = self.backbone_weights
        if not (weights is None or weights is False or isinstance(weights, (str, PurePath))):
            raise UserInputError(f"backbone_weights={weights!r} must be a .pth file, imagenet, or false (random init)")

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> ModelSettings:
        """From UMOP settings keys (umop, backbone_weights and `pfl.SETTINGS_KEYS`); a key not given takes its
        default, and an error message names the key."""
        given = {key: values[key] for key in ("umop", "backbone_weights") if key in values}
        return cls(**given, pfl=PFLSettings.from_settings(values))

    @property
    def classification(self) -> PFLSettings:
        """The settings of a RetinaNet/ATSS classification loss: PFL/LRP (umop=true) or the focal baseline."""
        return self.pfl if self.umop else self.pfl.focal_baseline()


_PFL = {key: getattr(PFLSettings(), name) for key, name in SETTINGS_KEYS.items()}
_MODEL = ModelSettings()

# key: (default, help). Types and ranges are checked by `check_umop_args` (the model's keys by `ModelSettings`).
UMOP_SETTINGS: dict[str, tuple[Any, str]] = {
    "umop": (_MODEL.umop, "use progressive focal loss per level; false = the detector's stock classification loss"),
    "lrp": (_PFL["lrp"], "level-wise resampling: one gamma/alpha per pyramid level (false = one shared over all "
                         "levels)"),
    "pfl_gamma": (_PFL["pfl_gamma"], "focusing parameter gamma at the centre of the clamp (Eq. 4)"),
    "pfl_delta": (_PFL["pfl_delta"], "half-width of gamma's clamp: gamma_l in [gamma - delta, gamma + delta] (Eq. 4)"),
    "pfl_w": (_PFL["pfl_w"], "alpha_l = w / gamma_l (Eq. 5); 0.5 gives alpha = 0.25 at gamma = 2"),
    "pfl_statistic": (_PFL["pfl_statistic"], "C_l: 'released' = mean -log p over positives, 'paper' = -log of "
                                             "mean p (Eq. 4), 'centered' = gamma + mean log(t / p) over positives "
                                             "(soft targets)"),
    "pfl_form": (_PFL["pfl_form"], "loss form with (gamma_l, alpha_l): 'focal' = Eq. 3 (quality focal on soft "
                                   "targets), 'varifocal' = t BCE on positives, 'negatives' = stock BCE with focal "
                                   "negatives"),
    "pfl_sync": (_PFL["pfl_sync"], "DDP: 'ranks' = each rank's C_l averaged over ranks (released code), 'global' = C_l "
                                   "of the whole global batch (the same numbers as one process with that batch)"),
    "per_class": (False, "validation also prints and saves COCO AP per class (coco_per_class.md/.csv)"),
    "nms_pre": (300, "val/predict: per image only the nms_pre best (box, class) scores enter NMS (MMYOLO's nms_pre, "
                     "Ultralytics' max_nms 30000); RetinaNet/ATSS also keep their nms_pre best (anchor, class) scores "
                     "per level (MMDetection's nms_pre, 1000; replaces the model YAML's test: nms_pre). 300: COCO AP "
                     "within 0.02 of uncapped on shapes (docs/benchmarks.md); raise it for images with hundreds of "
                     "objects"),
    "lrp_reduction": (_PFL["lrp_reduction"], "'sum' = all levels / total positives (released), 'mean' = mean of "
                                             "level losses (Eq. 1)"),
    "lr_steps": ([], "epochs (0-based) at which lr is multiplied by 0.1, e.g. [8, 11]; [] = Ultralytics' lrf/cos_lr"),
    "warmup_iters": (0, "linear warmup over this many iterations (MMDetection: 500); 0 = Ultralytics' warmup_epochs"),
    "grad_clip": (10.0, "max gradient norm (Ultralytics: 10); 0 = no clipping, as MMDetection's RetinaNet/ATSS"),
    "warmup_ratio": (0.0, "warmup raises every group's lr from warmup_ratio x lr (MMDetection: 0.001); 0 = "
                          "Ultralytics' warmup (weights from 0, biases from warmup_bias_lr)"),
    "nesterov": (True, "SGD with Nesterov momentum (Ultralytics); false = plain momentum (MMDetection)"),
    "norm_bias_decay": (False, "weight decay on norm weights and biases too (MMDetection); false = on neither "
                               "(Ultralytics)"),
    "ema": (True, "validate and save Ultralytics' EMA of the weights; false = the weights as trained (MMDetection)"),
    "save_best": (True, "best.pt is the epoch with the best val AP; false = the last epoch (what MMDetection and "
                        "papers report)"),
    "backbone_weights": (_MODEL.backbone_weights, "RetinaNet/ATSS ResNet backbone weights: a .pth file "
                                                  "(torchvision or mmcv state dict), imagenet (torchvision's file "
                                                  "from the torch hub cache, never downloaded) or false (random "
                                                  "init); null = the model YAML's backbone.pretrained"),
    "level_log_interval": (10, "training steps per levels.csv row of each pyramid level (positive proportion, gamma, "
                               "alpha, cls loss: the window's mean and quartiles)"),
    "ddp_timeout": (600, "seconds a DDP rank on CPU (gloo) waits for the others in one collective; a rank lost "
                         "without a closed connection (a node gone) stops the rest after this long"),
    "trust_checkpoint": (False, "unpickle .pt files without the allowlist (can run code inside them): only files you "
                                "trust; by default only model layers and plain data are loaded"),
}
UMOP_DEFAULTS = {k: v[0] for k, v in UMOP_SETTINGS.items()}


def register() -> None:
    """Add the UMOP keys to Ultralytics' default config (idempotent, keeps values a user already set)."""
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT

    for key, value in UMOP_DEFAULTS.items():
        DEFAULT_CFG_DICT.setdefault(key, value)
        if not hasattr(DEFAULT_CFG, key):
            setattr(DEFAULT_CFG, key, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_schedule(epochs: int, lr_steps: Any, warmup_iters: Any, grad_clip: Any) -> None:
    """Raise UserInputError naming the setting if `lr_steps`, `warmup_iters` or `grad_clip` is malformed."""
    if not isinstance(lr_steps, (list, tuple)) or not all(_is_int(s) for s in lr_steps):
        raise UserInputError(f"lr_steps={lr_steps!r} must be a list of epoch numbers, e.g. [8, 11]")
    if list(lr_steps) != sorted(set(lr_steps)) or any(not 0 < s < epochs for s in lr_steps):
        raise UserInputError(
            f"lr_steps={list(lr_steps)} must increase strictly within 1..{epochs - 1} (epochs={epochs})"
        )
    if not _is_int(warmup_iters) or warmup_iters < 0:
        raise UserInputError(f"warmup_iters={warmup_iters!r} must be an integer >= 0 (0: use warmup_epochs)")
    if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)) or grad_clip < 0:
        raise UserInputError(f"grad_clip={grad_clip!r} must be a number >= 0 (0: no clipping)")


def check_umop_args(args: Any) -> None:
    """Raise UserInputError with one line naming the bad UMOP key if a value has the wrong type or is out of range.
    Keys not given take their defaults."""
    given = args if isinstance(args, dict) else vars(args)
    get = {**UMOP_DEFAULTS, "epochs": 100, **given}.get
    ModelSettings.from_settings(given)
    for key in ("trust_checkpoint", "nesterov", "norm_bias_decay", "ema", "save_best"):
        if not isinstance(get(key), bool):
            raise UserInputError(f"{key}={get(key)!r} must be true or false")
    if not _is_int(get("level_log_interval")) or get("level_log_interval") < 1:
        raise UserInputError(f"level_log_interval={get('level_log_interval')!r} must be an integer >= 1")
    nms_pre = get("nms_pre")  # an integral float counts, as in Ultralytics' own checks
    if isinstance(nms_pre, bool) or not isinstance(nms_pre, (int, float)) or not float(nms_pre).is_integer() \
            or nms_pre < 1:
        raise UserInputError(f"nms_pre={nms_pre!r} must be an integer >= 1 (candidates per image that enter NMS)")
    if isinstance(get("ddp_timeout"), bool) or not isinstance(get("ddp_timeout"), (int, float)) \
            or not get("ddp_timeout") > 0:
        raise UserInputError(f"ddp_timeout={get('ddp_timeout')!r} must be a number of seconds > 0")
    check_schedule(get("epochs"), get("lr_steps"), get("warmup_iters"), get("grad_clip"))
    ratio = get("warmup_ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise UserInputError(f"warmup_ratio={ratio!r} must be a number in [0, 1) (0: Ultralytics' warmup)")


def scaled_lr_steps(lr_steps: Any, epochs: Any, new_epochs: Any, source: str) -> Any:
    """The `lr_steps` of `source`, made for `epochs`, at the same fractions of `new_epochs` (rounded down), said in one
    log line: 1x -> 2x [8, 11] -> [16, 22], 2x -> 18 epochs [16, 22] -> [12, 16]. Steps that collapse stop in one line.
    Malformed values are returned as they are, for `check_umop_args` to name."""
    if new_epochs == epochs or not (_is_int(epochs) and _is_int(new_epochs) and epochs > 0 and new_epochs > 0
                                    and isinstance(lr_steps, list) and lr_steps and all(map(_is_int, lr_steps))):
        return lr_steps
    scaled = [s * new_epochs // epochs for s in lr_steps]
    what = f"epochs={new_epochs}: lr_steps={lr_steps} of {source} (for {epochs} epochs)"
    if scaled != sorted(set(scaled)) or not all(0 < s < new_epochs for s in scaled):
        raise UserInputError(f"{what} scale to {scaled}, no step schedule for {new_epochs} epochs: give lr_steps= too "
                             "(lr_steps=[]: Ultralytics' lrf decay)")
    from ultralytics.utils import LOGGER

    LOGGER.warning(f"{what} scaled to lr_steps={scaled}, the same fractions of training (give lr_steps= to choose)")
    return scaled
