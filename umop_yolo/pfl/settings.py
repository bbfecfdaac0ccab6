"""PFL/LRP settings: one frozen value that owns its defaults (the paper's) and its invariants (Eq. 4-5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass, fields
from typing import Any

from umop_yolo.errors import UserInputError

STATISTICS = ("released", "paper", "centered")
FORMS = ("focal", "varifocal", "negatives")
REDUCTIONS = ("sum", "mean")
SYNCS = ("ranks", "global")  # how DDP ranks share C_l: see `PFLSettings`
CHOICES = {"statistic": STATISTICS, "reduction": REDUCTIONS, "form": FORMS, "sync": SYNCS}
# settings key (umop_yolo.settings, YAML, key=value) -> PFLSettings field
SETTINGS_KEYS = {"lrp": "levelwise", "pfl_gamma": "gamma", "pfl_delta": "delta", "pfl_w": "w",
                 "pfl_statistic": "statistic", "pfl_form": "form", "lrp_reduction": "reduction", "pfl_sync": "sync"}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserInputError(f"{name}={value!r} must be a number")
    return float(value)


@dataclass(frozen=True)
class PFLSettings:
    """The settings of `ProgressiveFocalLoss`; the defaults are the paper's. Construction refuses a bad value with a
    UserInputError naming it (by its field, or by the settings key through `from_settings`).

    Args:
        gamma: centre of the focusing parameter's range (2.0 in the paper); > 0.
        delta: gamma_l = clamp(C_l, gamma - delta, gamma + delta), Eq. (4); 0 <= delta < gamma. 0 gives plain focal
            loss.
        w: alpha_l = w / gamma_l, Eq. (5); 0 < w < gamma - delta, so alpha_l < 1 on every level and negatives keep a
            weight 1 - alpha_l > 0. w = 0.5 keeps alpha = 0.25 at gamma = 2.
        statistic: "released" (authors' code: mean of -log p over positives), "paper" (Eq. 4: -log of mean p) or
            "centered" (gamma + mean log(t / p) over positives, for soft targets: see `umop_yolo.pfl`).
        reduction: "sum" (authors' code: every level summed, divided by the batch's total positives) or "mean"
            (Eq. 1: mean over levels of each level's loss / its own positives).
        form: "focal" (Eq. 3), "varifocal" or "negatives": see `umop_yolo.pfl`.
        levelwise: True = LRP, one gamma_l per level; False = one gamma from all levels' positives (PFL alone).
        sync: under DDP, "ranks" (authors' code: each rank's C_l, then their mean over ranks) or "global" (the
            ranks' numerators and denominators averaged before the ratio: C_l of the whole global batch, exactly
            what one process with that batch computes). Either way one all-reduce per step.
        names: field -> the name an error message uses for it (default: the field's own name).
    """

    gamma: float = 2.0
    delta: float = 0.5
    w: float = 0.5
    statistic: str = "released"
    reduction: str = "sum"
    form: str = "focal"
    levelwise: bool = True
    sync: str = "ranks"
    names: InitVar[Mapping[str, str] | None] = None

    def __post_init__(self, names: Mapping[str, str] | None) -> None:
        name = {f.name: f.name for f in fields(self)} | dict(names or {})
        if not isinstance(self.levelwise, bool):
            raise UserInputError(f"{name['levelwise']}={self.levelwise!r} must be true or false")
        gamma, delta, w = (_number(name[key], getattr(self, key)) for key in ("gamma", "delta", "w"))
        if gamma <= 0:
            raise UserInputError(f"{name['gamma']}={gamma} must be > 0")
        if not 0 <= delta < gamma:
            raise UserInputError(f"{name['delta']}={delta} must be >= 0 and < {name['gamma']}={gamma}")
        if w <= 0:
            raise UserInputError(f"{name['w']}={w} must be > 0")
        if w >= gamma - delta:  # alpha_l >= 1 would weight negatives by 1 - alpha_l <= 0: a negative or blind loss
            raise UserInputError(f"{name['w']}={w} must be < {name['gamma']} - {name['delta']} = {gamma - delta:g} "
                                 "(alpha_l = w / gamma_l < 1)")
        for key, choices in CHOICES.items():
            if getattr(self, key) not in choices:
                raise UserInputError(f"{name[key]}={getattr(self, key)!r} must be one of {', '.join(choices)}")
        for key, value in (("gamma", gamma), ("delta", delta), ("w", w)):
            object.__setattr__(self, key, value)  # frozen: ints given become the floats the loss computes with

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> PFLSettings:
        """From UMOP settings keys (`SETTINGS_KEYS`: pfl_gamma, lrp, ...); a key not given takes its default, and an
        error message names the key."""
        given = {field: values[key] for key, field in SETTINGS_KEYS.items() if key in values}
        return cls(**given, names={field: key for key, field in SETTINGS_KEYS.items()})

    def focal_baseline(self) -> PFLSettings:
        """Plain focal loss, Eq. (3), with this gamma and alpha = w / gamma on every level (delta = 0); the other
        settings the defaults. What RetinaNet/ATSS train with when umop=false."""
        return PFLSettings(gamma=self.gamma, delta=0.0, w=self.w)
