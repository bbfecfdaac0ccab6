"""Per-level PFL statistics, accumulated on the device every step and read once per epoch (no per-step host sync)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

LOGGED = ("gamma", "alpha")  # per-level values written to results.csv every epoch


def level_names(strides: Tensor | list[float]) -> list[str]:
    """Pyramid level names from strides: stride 8 -> 'P3', 128 -> 'P7'."""
    return [f"P{round(math.log2(float(s)))}" for s in strides]


def criterion_stats(criterion: Any) -> dict[str, Tensor]:
    """The latest per-level stats of a criterion (the one-to-many branch of an end-to-end loss); {} if none."""
    criterion = getattr(criterion, "one2many", criterion)
    return getattr(criterion, "last_stats", None) or {}


class LevelStatsMeter:
    """Running sums of per-level statistics, kept on the device."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.steps = 0

    def update(self, stats: dict[str, Tensor]) -> None:
        for key in LOGGED:
            if key in stats:
                self.sums[key] = self.sums[key] + stats[key] if key in self.sums else stats[key].clone()
        self.steps += bool(stats)

    def summary(self, names: list[str]) -> dict[str, float]:
        """Epoch means as `pfl/<stat>_<level>` columns, then reset. One host sync per call."""
        out = {}
        for key, total in self.sums.items():
            for name, value in zip(names, (total / max(self.steps, 1)).tolist()):
                out[f"pfl/{key}_{name}"] = value
        self.sums, self.steps = {}, 0
        return out
