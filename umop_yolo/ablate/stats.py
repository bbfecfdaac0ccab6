"""Seed statistics of an ablation: mean and sample std, and the paired difference to the baseline with its 95% CI.

Runs of two variants with the same seed share the data order and initialisation, so the per-seed differences
d_s = variant_s - baseline_s are the fair comparison; their mean with a Student-t interval says whether a gain is
larger than the seed noise (the interval excludes 0) or not.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_curve(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    """Epoch-wise mean and sample std over seeds (curves of equal length)."""
    pairs = [mean_std(list(values)) for values in zip(*curves)]
    return [m for m, _ in pairs], [s for _, s in pairs]


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """The first epoch (1-based) at which `curve` reaches `target`; None if it never does."""
    return next((i + 1 for i, value in enumerate(curve) if value >= target), None)


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with an integer number of degrees of freedom (the closed finite sums in
    theta = atan(t / sqrt(df)); exact, no SciPy needed)."""
    theta = math.atan2(t, math.sqrt(df))
    c2, term = math.cos(theta) ** 2, 1.0
    if df % 2:  # odd: 1/2 + (theta + sin(theta) cos(theta) (1 + 2/3 c2 + 2*4/(3*5) c2^2 + ...)) / pi
        total = 0.0 if df == 1 else 1.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 0.5 + (theta + math.sin(theta) * math.cos(theta) * total) / math.pi
    total = 1.0  # even: 1/2 + sin(theta) / 2 (1 + 1/2 c2 + 1*3/(2*4) c2^2 + ...)
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return 0.5 + math.sin(theta) * total / 2


def student_t_quantile(p: float, df: int) -> float:
    """The t with P(T <= t) = p (0.5 < p < 1), by bisection on `student_t_cdf`."""
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if student_t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences `diffs`, and the half width of its 95% confidence interval (nan for n < 2)."""

    diffs: tuple[float, ...]
    mean: float
    half_width: float

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes 0."""
        return not math.isnan(self.half_width) and abs(self.mean) > self.half_width


def paired_difference(variant: dict[int, float], baseline: dict[int, float]) -> PairedDifference:
    """Paired difference over the seeds both have ({seed: value}); nan values (no ground truth) are left out."""
    seeds = sorted(s for s in variant.keys() & baseline.keys() if not math.isnan(variant[s] - baseline[s]))
    diffs = tuple(variant[s] - baseline[s] for s in seeds)
    if not diffs:
        return PairedDifference(diffs, math.nan, math.nan)
    mean, std = mean_std(list(diffs))
    half = student_t_quantile(0.975, len(diffs) - 1) * std / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    return PairedDifference(diffs, mean, half)
