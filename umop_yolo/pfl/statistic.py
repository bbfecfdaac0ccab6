"""The per-level statistic C_l and the parameters it sets, gamma_l (Eq. 4) and alpha_l (Eq. 5), shared over DDP ranks.

C_l is formed from sums over each level's positives: a numerator and a denominator per level (`statistic_terms`), so
that the levels of several parts and ranks combine by adding before the ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from umop_yolo.distributed import mean_across_ranks
from umop_yolo.pfl.forms import TINY
from umop_yolo.pfl.settings import PFLSettings


def statistic_terms(logits: Tensor, targets: Tensor, statistic: str = "released") -> tuple[Tensor, Tensor]:
    """Per-entry terms of `level_statistic`'s numerator and denominator (fp32, detached)."""
    x, t = logits.detach().float(), targets.detach().float()
    pos = t > 0
    if statistic == "centered":
        log_ratio = t.clamp_min(TINY).log() - F.logsigmoid(x)  # signed log(t / p), stable for any logit
        return torch.where(pos, log_ratio, 0.0), pos.float()
    p = x.sigmoid()
    if statistic == "released":
        nll = -p.log()  # the released rounding, not the stable -logsigmoid(x)
        counted = pos & (nll > 0)
        relative = (nll + t.clamp_min(TINY).log()).clamp_min(0.0)  # -log(min(p / t, 1))
        return torch.where(counted, relative, 0.0), counted.float()
    return torch.minimum(p, t) * pos, t * pos


def level_statistic(logits: Tensor, targets: Tensor, statistic: str = "released") -> tuple[Tensor, Tensor]:
    """Numerator and denominator of C_l for one level (fp32 scalars), so that C_l = f(num / den).

    released: num = sum over positive entries of -log(p / t)+, den = their count; C_l = num / den. As in the authors'
              code, -log p is taken as -log(sigmoid(x)) in fp32: entries where it is exactly 0 (x above ~17.3, where
              sigmoid rounds to 1) are dropped, and a positive below x ~ -104 (sigmoid underflows to 0) gives +inf,
              so gamma_l goes to the upper clamp (Eq. 4).
    paper:    num = sum over positives of min(p, t), den = sum of their targets; C_l = -log(num / den), Eq. (4).
    centered: num = sum over positive entries of log(t / p), den = their count; C_l = gamma + num / den.
    """
    num, den = statistic_terms(logits, targets, statistic)
    return num.sum(), den.sum()


def statistic_from_sums(num: Tensor, den: Tensor, settings: PFLSettings) -> Tensor:
    """C_l (Eq. 4 or the released form) from (L,) numerators and denominators; gamma on a level without positives, so
    that level trains with plain focal loss. Without `levelwise`, one statistic over the positives of all levels."""
    if not settings.levelwise:
        num, den = num.sum().expand_as(num), den.sum().expand_as(den)
    ratio = num / den.clamp_min(TINY)
    if settings.statistic == "paper":
        c = -ratio.clamp_min(TINY).log()
    elif settings.statistic == "centered":
        c = ratio + settings.gamma
    else:
        c = ratio
    return torch.where(den > 0, c, torch.full_like(c, settings.gamma))


def params_from_sums(num: Tensor, den: Tensor, settings: PFLSettings,
                     normalizer: Tensor | None = None) -> tuple[Tensor, ...]:
    """gamma_l, alpha_l and C_l, each (L,) fp32, from the levels' (L,) statistic numerators and denominators, plus
    `normalizer` averaged over DDP ranks in the same all-reduce as C_l (None: not asked for, not returned).
    `settings.sync` picks what the ranks average."""
    extra = [] if normalizer is None else [normalizer.reshape(1).float()]
    if settings.sync == "global":  # the global batch's sums, then the ratio: one process's C_l
        num, den, norm = mean_across_ranks(torch.cat([num, den, *extra])).split([len(num), len(den), len(extra)])
        c = statistic_from_sums(num, den, settings)
    else:  # authors' code: this rank's C_l (gamma without positives here), then the mean over ranks
        c, norm = mean_across_ranks(torch.cat([statistic_from_sums(num, den, settings), *extra])).split(
            [len(num), len(extra)])
    gamma = c.clamp(settings.gamma - settings.delta, settings.gamma + settings.delta)  # Eq. (4)
    alpha = settings.w / gamma  # Eq. (5)
    return (gamma, alpha, c) if normalizer is None else (gamma, alpha, c, norm[0])
