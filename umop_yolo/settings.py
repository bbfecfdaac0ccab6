"""UMOP settings: registered as Ultralytics config keys, so YAML files, `key=value` and checkpoints all keep them.

Ultralytics rejects unknown keys (trainer, validator, predictor and exporter all check against `DEFAULT_CFG_DICT`)
and drops non-default keys from final checkpoints. Adding our defaults to that dict in place makes the keys
first-class everywhere, including DDP workers, which import this package while unpickling the trainer.
"""

from __future__ import annotations

from typing import Any

from umop_yolo.errors import UserInputError
from umop_yolo.pfl import FORMS, REDUCTIONS, STATISTICS

# key: (default, help). Types and ranges are checked by `check_umop_args`.
UMOP_SETTINGS: dict[str, tuple[Any, str]] = {
    "umop": (True, "use progressive focal loss per level; false = the detector's stock classification loss"),
    "lrp": (True, "level-wise resampling: one gamma/alpha per pyramid level (false = one shared over all levels)"),
    "pfl_gamma": (2.0, "focusing parameter gamma at the centre of the clamp (Eq. 4)"),
    "pfl_delta": (0.5, "half-width of gamma's clamp: gamma_l in [gamma - delta, gamma + delta] (Eq. 4)"),
    "pfl_w": (0.5, "alpha_l = w / gamma_l (Eq. 5); 0.5 gives alpha = 0.25 at gamma = 2"),
    "pfl_statistic": ("released", "C_l: 'released' = mean -log p over positives, 'paper' = -log of mean p (Eq. 4)"),
    "pfl_form": ("focal", "loss form with (gamma_l, alpha_l): 'focal' = Eq. 3 (quality focal on soft targets), "
                          "'varifocal' = t BCE on positives, 'negatives' = stock BCE with focal negatives"),
    "per_class": (False, "validation also prints and saves COCO AP per class (coco_per_class.md/.csv)"),
    "lrp_reduction": ("sum", "'sum' = all levels / total positives (released), 'mean' = mean of level losses (Eq. 1)"),
    "lr_steps": ([], "epochs (0-based) at which lr is multiplied by 0.1, e.g. [8, 11]; [] = Ultralytics' lrf/cos_lr"),
    "warmup_iters": (0, "linear warmup over this many iterations (MMDetection: 500); 0 = Ultralytics' warmup_epochs"),
    "grad_clip": (10.0, "max gradient norm (Ultralytics: 10); 0 = no clipping, as MMDetection's RetinaNet/ATSS"),
    "level_log_interval": (10, "training steps per levels.csv row of each pyramid level (positive proportion, gamma, "
                               "alpha, cls loss: the window's mean and quartiles)"),
    "trust_checkpoint": (False, "unpickle .pt files without the allowlist (can run code inside them): only files you "
                                "trust; by default only model layers and plain data are loaded"),
}
UMOP_DEFAULTS = {k: v[0] for k, v in UMOP_SETTINGS.items()}
CHOICES = {"pfl_statistic": STATISTICS, "lrp_reduction": REDUCTIONS, "pfl_form": FORMS}  # owned by the core


def register() -> None:
    """Add the UMOP keys to Ultralytics' default config (idempotent, keeps values a user already set)."""
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT

    for key, value in UMOP_DEFAULTS.items():
        DEFAULT_CFG_DICT.setdefault(key, value)
        if not hasattr(DEFAULT_CFG, key):
            setattr(DEFAULT_CFG, key, value)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserInputError(f"{key}={value!r} must be a number")
    return float(value)


def check_umop_args(args: Any) -> None:
    """Raise UserInputError with one line naming the bad UMOP key if a value has the wrong type or is out of range."""
    get = args.get if isinstance(args, dict) else lambda k, d=None: getattr(args, k, d)
    for key in ("umop", "lrp", "trust_checkpoint"):
        if not isinstance(get(key, True), bool):
            raise UserInputError(f"{key}={get(key)!r} must be true or false")
    gamma = _number("pfl_gamma", get("pfl_gamma", UMOP_DEFAULTS["pfl_gamma"]))
    delta = _number("pfl_delta", get("pfl_delta", UMOP_DEFAULTS["pfl_delta"]))
    w = _number("pfl_w", get("pfl_w", UMOP_DEFAULTS["pfl_w"]))
    if gamma <= 0:
        raise UserInputError(f"pfl_gamma={gamma} must be > 0")
    if not 0 <= delta < gamma:
        raise UserInputError(f"pfl_delta={delta} must be >= 0 and < pfl_gamma={gamma}")
    if w <= 0:
        raise UserInputError(f"pfl_w={w} must be > 0")
    if w >= gamma - delta:  # alpha_l >= 1 would weight negatives by 1 - alpha_l <= 0: a negative or blind loss
        raise UserInputError(f"pfl_w={w} must be < pfl_gamma - pfl_delta = {gamma - delta:g} (alpha_l = w / gamma_l < 1)")
    interval = get("level_log_interval", UMOP_DEFAULTS["level_log_interval"])
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise UserInputError(f"level_log_interval={interval!r} must be an integer >= 1")
    from umop_yolo.engine.schedule import check_schedule

    check_schedule(get("epochs", 100), get("lr_steps", []), get("warmup_iters", 0), get("grad_clip", 10.0))
    for key, choices in CHOICES.items():
        value = get(key, UMOP_DEFAULTS[key])
        if value not in choices:
            raise UserInputError(f"{key}={value!r} must be one of {', '.join(choices)}")
