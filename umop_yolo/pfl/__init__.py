"""Progressive focal loss (PFL) with level-wise resampling (LRP): the UMOP loss core, in plain PyTorch.

Wu et al., "Progressive Hard-case Mining across Pyramid Levels in Object Detection". Equation numbers below are the
paper's. Nothing here imports Ultralytics; any dense detector can call it with one (..., N_l, C) logit/target pair
per pyramid level (C classes last).

    pfl = ProgressiveFocalLoss(gamma=2.0, delta=0.5, w=0.5, statistic="released", reduction="sum")
    loss, stats = pfl(logits, targets, normalizer)  # stats["gamma"], stats["alpha"]: (L,) detached
    elementwise, stats = pfl.joined(all_logits, all_targets, level_sizes)  # the levels joined along dim -2

The per-entry forms are in `forms.py`; `single_label.py` computes them for one-class-per-anchor targets in one pass.

Soft targets. Dense detectors with IoU-aware assigners (e.g. TaskAlignedAssigner) train against scores t in [0, 1]
instead of 0/1 labels. We use the quality-focal generalisation of Eq. (3)

    FL(p, t) = alpha_t * |t - p| ** gamma * BCE(p, t),   alpha_t = alpha if t > 0 else 1 - alpha,

which is exactly Eq. (3) for t in {0, 1} and, for soft t, is minimised at p = t. Likewise the statistic C_l measures
each positive against its own target: "p" becomes p / t (capped at 1), so a positive that has reached its IoU-aware
score counts as learned. For 0/1 targets both statistics are exactly the paper's / the released code's.

That ratio saturates on IoU-aware targets: a positive that reaches its small target counts as learned, so C_l falls
below gamma - delta within a few epochs and Eq. (4) leaves every level at the lower clamp (docs/yolo_heads.md).
`statistic="centered"` keeps the signed log-ratio instead, centred on gamma: C_l = gamma + mean over positives of
log(t / p). A level whose positives sit on their targets gets gamma, one below them more focusing, one above them
less, so gamma_l follows each level's calibration for all of training. For 0/1 targets it is gamma + mean(-log p),
not the paper's statistic.

Forms (`form`), each with the level's (gamma_l, alpha_l) of Eq. (4)-(5); negatives are the entries with t = 0:
    focal      alpha_t |t - p|^gamma BCE(p, t)                                  (the above; Eq. 3 for 0/1 targets)
    varifocal  positives t BCE(p, t); negatives alpha p^gamma BCE(p, 0)         (VarifocalNet's asymmetric form)
    negatives  positives BCE(p, t);   negatives (1 - alpha) p^gamma BCE(p, 0)   (Eq. 3's negative term on stock BCE)
The last two keep BCE's positive signal, which the focal modulator |t - p|^gamma weakens on small soft targets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from umop_yolo.distributed import mean_across_ranks
from umop_yolo.errors import UserInputError
from umop_yolo.pfl.forms import TINY, focal_loss
from umop_yolo.pfl.single_label import SingleLabelFocal, top_class

STATISTICS = ("released", "paper", "centered")
FORMS = ("focal", "varifocal", "negatives")
REDUCTIONS = ("sum", "mean")
SYNCS = ("ranks", "global")  # how DDP ranks share C_l: see ProgressiveFocalLoss
CHOICES = {"statistic": STATISTICS, "reduction": REDUCTIONS, "form": FORMS, "sync": SYNCS}
# The paper's settings, the one source of every default (ProgressiveFocalLoss's arguments, UMOP's settings).
DEFAULTS = {"gamma": 2.0, "delta": 0.5, "w": 0.5, "statistic": "released", "reduction": "sum", "form": "focal",
            "levelwise": True, "sync": "ranks"}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserInputError(f"{name}={value!r} must be a number")
    return float(value)


def check_pfl(gamma: Any, delta: Any, w: Any, statistic: Any = DEFAULTS["statistic"],
              reduction: Any = DEFAULTS["reduction"], form: Any = DEFAULTS["form"],
              levelwise: Any = DEFAULTS["levelwise"], names: Mapping[str, str] | None = None,
              sync: Any = DEFAULTS["sync"]) -> None:
    """Raise UserInputError naming the first bad PFL setting: gamma > 0, 0 <= delta < gamma (Eq. 4), w > 0 and
    w < gamma - delta, so alpha_l = w / gamma_l < 1 on every level (Eq. 5) and negatives keep a weight 1 - alpha_l > 0;
    statistic, reduction, form and sync from `CHOICES`; levelwise a bool. `names` maps an argument to the name the
    message uses (a settings key such as pfl_gamma); by default the argument's own name."""
    name = {key: key for key in DEFAULTS} | dict(names or {})
    if not isinstance(levelwise, bool):
        raise UserInputError(f"{name['levelwise']}={levelwise!r} must be true or false")
    gamma, delta, w = _number(name["gamma"], gamma), _number(name["delta"], delta), _number(name["w"], w)
    if gamma <= 0:
        raise UserInputError(f"{name['gamma']}={gamma} must be > 0")
    if not 0 <= delta < gamma:
        raise UserInputError(f"{name['delta']}={delta} must be >= 0 and < {name['gamma']}={gamma}")
    if w <= 0:
        raise UserInputError(f"{name['w']}={w} must be > 0")
    if w >= gamma - delta:  # alpha_l >= 1 would weight negatives by 1 - alpha_l <= 0: a negative or blind loss
        raise UserInputError(f"{name['w']}={w} must be < {name['gamma']} - {name['delta']} = {gamma - delta:g} "
                             "(alpha_l = w / gamma_l < 1)")
    for key, value in (("statistic", statistic), ("reduction", reduction), ("form", form), ("sync", sync)):
        if value not in CHOICES[key]:
            raise UserInputError(f"{name[key]}={value!r} must be one of {', '.join(CHOICES[key])}")


def per_anchor(values: Tensor, level_sizes: Sequence[int]) -> Tensor:
    """(L,) per-level values as (A, 1), each repeated over its level's anchors: broadcasts over (..., A, C)."""
    return torch.cat([v.expand(n) for v, n in zip(values, level_sizes)]).unsqueeze(-1)


def level_sums(values: Tensor, level_sizes: Sequence[int]) -> Tensor:
    """(L,) sums of (..., A, K) values over each level's anchors (dim -2)."""
    return torch.stack([v.sum() for v in values.split(list(level_sizes), -2)])


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


class ProgressiveFocalLoss:
    """Per-level focal loss whose gamma_l, alpha_l follow each level's classification quality (Eq. 1-5).

    Args:
        gamma: centre of the focusing parameter's range (2.0 in the paper).
        delta: gamma_l = clamp(C_l, gamma - delta, gamma + delta), Eq. (4). delta = 0 gives plain focal loss.
        w: alpha_l = w / gamma_l, Eq. (5). w = 0.5 keeps alpha = 0.25 at gamma = 2.
        statistic: "released" (authors' code: mean of -log p over positives), "paper" (Eq. 4: -log of mean p) or
            "centered" (gamma + mean log(t / p) over positives, for soft targets: see the module docstring).
        reduction: "sum" (authors' code: every level summed, divided by the batch's total positives) or "mean"
            (Eq. 1: mean over levels of each level's loss / its own positives).
        levelwise: True = LRP, one gamma_l per level; False = one gamma from all levels' positives (PFL alone).
        single_label: every row of the targets has at most one class > 0 (TaskAlignedAssigner, MaxIoU and ATSS
            targets do). Same values, computed with far less work: the statistic from each row's largest target
            only, the loss in closed form with its gradient in one pass (`SingleLabelFocal`). Multi-label
            targets need False (the default), which evaluates `focal_loss` with autograd on every entry.
        form: "focal" (Eq. 3, the default), "varifocal" or "negatives": see the module docstring.
        sync: under DDP, "ranks" (authors' code: each rank's C_l, then their mean over ranks) or "global" (the
            ranks' numerators and denominators averaged before the ratio: C_l of the whole global batch, exactly
            what one process with that batch computes). Either way one all-reduce per step, which also carries the
            loss normaliser.
    """

    def __init__(
        self,
        gamma: float = DEFAULTS["gamma"],
        delta: float = DEFAULTS["delta"],
        w: float = DEFAULTS["w"],
        statistic: str = DEFAULTS["statistic"],
        reduction: str = DEFAULTS["reduction"],
        levelwise: bool = DEFAULTS["levelwise"],
        single_label: bool = False,
        form: str = DEFAULTS["form"],
        sync: str = DEFAULTS["sync"],
    ) -> None:
        check_pfl(gamma, delta, w, statistic, reduction, form, levelwise, sync=sync)
        self.gamma, self.delta, self.w = float(gamma), float(delta), float(w)
        self.statistic, self.reduction, self.levelwise = statistic, reduction, levelwise
        self.single_label, self.form, self.sync = single_label, form, sync

    def level_params(self, logits: list[Tensor], targets: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """gamma_l, alpha_l and C_l per level, each (L,) fp32 and detached (Eq. 4, 5). No host sync."""
        parts = [level_statistic(x, t, self.statistic) for x, t in zip(logits, targets)]
        return self._params(torch.stack([n for n, _ in parts]), torch.stack([d for _, d in parts]))[:3]

    def _params(self, num: Tensor, den: Tensor, normalizer: Tensor | None = None) -> tuple[Tensor, ...]:
        """`level_params` from the levels' (L,) statistic numerators and denominators, and `normalizer` averaged over
        DDP ranks in the same all-reduce as C_l (None: not asked for). `sync` picks what the ranks average."""
        extra = [] if normalizer is None else [normalizer.reshape(1).float()]
        if self.sync == "global":  # the global batch's sums, then the ratio: one process's C_l
            num, den, norm = mean_across_ranks(torch.cat([num, den, *extra])).split([len(num), len(den), len(extra)])
            c = self._statistic(num, den)
        else:  # authors' code: this rank's C_l (2 without positives here), then the mean over ranks
            c, norm = mean_across_ranks(torch.cat([self._statistic(num, den), *extra])).split([len(num), len(extra)])
        gamma = c.clamp(self.gamma - self.delta, self.gamma + self.delta)  # Eq. (4)
        alpha = self.w / gamma  # Eq. (5)
        return (gamma, alpha, c) if normalizer is None else (gamma, alpha, c, norm[0])

    def _statistic(self, num: Tensor, den: Tensor) -> Tensor:
        """C_l (Eq. 4 or the released form) from (L,) numerators and denominators; gamma on a level without
        positives, so that level trains with plain focal loss."""
        if not self.levelwise:  # one statistic over the positives of all levels
            num, den = num.sum().expand_as(num), den.sum().expand_as(den)
        ratio = num / den.clamp_min(TINY)
        if self.statistic == "paper":
            c = -ratio.clamp_min(TINY).log()
        elif self.statistic == "centered":
            c = ratio + self.gamma
        else:
            c = ratio
        return torch.where(den > 0, c, torch.full_like(c, self.gamma))

    def level_weights(self, target_sum: Tensor, normalizer: Tensor | float) -> Tensor:
        """(L,) factors that turn per-level loss sums into the total: loss = sum_l weight_l * sum(level l), from the
        levels' (L,) target sums (`per_level`'s stats["target_sum"]) and the batch's normalizer."""
        if self.reduction == "sum":  # authors' code: every level / the total positives of the batch
            norm = torch.as_tensor(normalizer, dtype=torch.float32, device=target_sum.device)
            return (1.0 / norm.clamp_min(1.0)).expand(len(target_sum))
        return 1.0 / (len(target_sum) * target_sum.clamp_min(1.0))  # Eq. (1): mean of per-level losses

    def joined(
        self, logits: Tensor, targets: Tensor, level_sizes: Sequence[int], scale: Tensor | None = None,
        normalizer: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`per_level` on (..., A, C) logits whose anchors are the levels joined along dim -2 (`level_sizes` anchors
        each, in level order): one elementwise loss, each anchor with its level's (gamma_l, alpha_l), in one pass over
        all anchors without per-level copies (the YOLO adapter's call); the same stats. A `normalizer` (this rank's
        loss divisor) comes back as stats["normalizer"], its mean over DDP ranks (the same all-reduce as C_l)."""
        losses, stats = self._parts([logits], [targets], [list(level_sizes)], scale, normalizer)
        return losses[0], stats

    def per_level(
        self, logits: list[Tensor], targets: list[Tensor], scale: Tensor | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Elementwise focal loss of one (..., N_l, C) logit/target pair per level, each with its level's
        (gamma_l, alpha_l) (Eq. 3-5), and the statistics, detached: (L,) gamma, alpha, statistic (C_l), num_pos,
        num_samples, target_sum per level, and `positive`, the (..., A) anchors with a target above 0.

        `scale`: optional (L,) factors (no gradient) multiplied into each level's loss; free with `single_label`.
        """
        return self._parts(logits, targets, [[x.shape[-2]] for x in logits], scale)

    def _parts(self, logits: list[Tensor], targets: list[Tensor], level_sizes: list[list[int]],
               scale: Tensor | None, normalizer: Tensor | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        """`per_level` on parts that each hold one or more levels joined along dim -2, `level_sizes[k]` anchors each
        (the levels in order over the parts): the statistic of every level first, then one loss per part."""
        tops = []
        for x, t in zip(logits, targets):
            top, top_x, index = t.detach(), x.detach(), None
            if self.single_label:  # each anchor's one candidate positive: its largest target and that class's logit
                top, index = top_class(top)
                top_x = top_x.gather(-1, index)
            tops.append((top, top_x, index))

        def per_level_sums(values: list[Tensor]) -> Tensor:
            return torch.cat([level_sums(v, sizes) for v, sizes in zip(values, level_sizes)])

        terms = [statistic_terms(top_x, top, self.statistic) for top, top_x, _ in tops]
        gamma, alpha, c, *norm = self._params(*(per_level_sums([term[i] for term in terms]) for i in (0, 1)),
                                              normalizer)
        factors = torch.ones_like(gamma) if scale is None else scale.detach().float()
        losses = []
        for x, t, (top, top_x, index), sizes, g, a, f in zip(logits, targets, tops, level_sizes, *(
                v.split([len(sizes) for sizes in level_sizes]) for v in (gamma, alpha, factors))):
            g, a, f = (per_anchor(v, sizes) for v in (g, a, f))  # (A, 1): broadcast over (..., A, C)
            if self.single_label:
                losses.append(SingleLabelFocal.apply(x.float(), top_x.float(), top, index, g, a, f, self.form))
            else:
                loss = focal_loss(x, t, g, a, self.form)
                losses.append(loss if scale is None else loss * f)
        positive = [(top > 0).any(-1) for top, _, _ in tops]  # positive samples: anchors with a target above 0
        samples = math.prod(targets[0].shape[:-2])
        num_samples = [n * samples for sizes in level_sizes for n in sizes]
        return losses, {"gamma": gamma, "alpha": alpha, "statistic": c, "positive": torch.cat(positive, -1),
                        "num_pos": per_level_sums([p[..., None] for p in positive]).float(),
                        "num_samples": torch.tensor(num_samples, dtype=torch.float32, device=gamma.device),
                        "target_sum": per_level_sums([top.float() for top, _, _ in tops]),
                        **({"normalizer": norm[0]} if norm else {})}

    def __call__(
        self, logits: list[Tensor], targets: list[Tensor], normalizer: Tensor | float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total classification loss (Eq. 1/2 combination of Eq. 3 per level) and detached per-level stats."""
        if len(logits) != len(targets) or not logits:
            raise ValueError(f"need one target per level, got {len(logits)} logits and {len(targets)} targets")
        losses, stats = self.per_level(logits, targets)
        level_loss = torch.stack([x.sum() for x in losses]) * self.level_weights(stats["target_sum"], normalizer)
        stats["loss"] = level_loss.detach()
        return level_loss.sum(), stats
