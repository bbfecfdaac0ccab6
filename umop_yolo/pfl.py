"""Progressive focal loss (PFL) with level-wise resampling (LRP): the UMOP loss core, in plain PyTorch.

Wu et al., "Progressive Hard-case Mining across Pyramid Levels in Object Detection". Equation numbers below are the
paper's. Nothing here imports Ultralytics; any dense detector can call it with one (..., N_l, C) logit/target pair
per pyramid level (C classes last).

    pfl = ProgressiveFocalLoss(gamma=2.0, delta=0.5, w=0.5, statistic="released", reduction="sum")
    loss, stats = pfl(logits, targets, normalizer)  # stats["gamma"], stats["alpha"]: (L,) detached

Soft targets. Dense detectors with IoU-aware assigners (e.g. TaskAlignedAssigner) train against scores t in [0, 1]
instead of 0/1 labels. We use the quality-focal generalisation of Eq. (3)

    FL(p, t) = alpha_t * |t - p| ** gamma * BCE(p, t),   alpha_t = alpha if t > 0 else 1 - alpha,

which is exactly Eq. (3) for t in {0, 1} and, for soft t, is minimised at p = t. Likewise the statistic C_l measures
each positive against its own target: "p" becomes p / t (capped at 1), so a positive that has reached its IoU-aware
score counts as learned. For 0/1 targets both statistics are exactly the paper's / the released code's.

Forms (`form`), each with the level's (gamma_l, alpha_l) of Eq. (4)-(5); negatives are the entries with t = 0:
    focal      alpha_t |t - p|^gamma BCE(p, t)                                  (the above; Eq. 3 for 0/1 targets)
    varifocal  positives t BCE(p, t); negatives alpha p^gamma BCE(p, 0)         (VarifocalNet's asymmetric form)
    negatives  positives BCE(p, t);   negatives (1 - alpha) p^gamma BCE(p, 0)   (Eq. 3's negative term on stock BCE)
The last two keep BCE's positive signal, which the focal modulator |t - p|^gamma weakens on small soft targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from umop_yolo.distributed import mean_across_ranks
from umop_yolo.errors import UserInputError

STATISTICS = ("released", "paper")
FORMS = ("focal", "varifocal", "negatives")
REDUCTIONS = ("sum", "mean")
CHOICES = {"statistic": STATISTICS, "reduction": REDUCTIONS, "form": FORMS}
# The paper's settings, the one source of every default (ProgressiveFocalLoss's arguments, UMOP's settings).
DEFAULTS = {"gamma": 2.0, "delta": 0.5, "w": 0.5, "statistic": "released", "reduction": "sum", "form": "focal",
            "levelwise": True}
_TINY = 1e-12  # keeps |t - p| ** gamma differentiable at p == t for any gamma > 0


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserInputError(f"{name}={value!r} must be a number")
    return float(value)


def check_pfl(gamma: Any, delta: Any, w: Any, statistic: Any = DEFAULTS["statistic"],
              reduction: Any = DEFAULTS["reduction"], form: Any = DEFAULTS["form"],
              levelwise: Any = DEFAULTS["levelwise"], names: Mapping[str, str] | None = None) -> None:
    """Raise UserInputError naming the first bad PFL setting: gamma > 0, 0 <= delta < gamma (Eq. 4), w > 0 and
    w < gamma - delta, so alpha_l = w / gamma_l < 1 on every level (Eq. 5) and negatives keep a weight 1 - alpha_l > 0;
    statistic, reduction and form from `CHOICES`; levelwise a bool. `names` maps an argument to the name the message
    uses (a settings key such as pfl_gamma); by default the argument's own name."""
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
    for key, value in (("statistic", statistic), ("reduction", reduction), ("form", form)):
        if value not in CHOICES[key]:
            raise UserInputError(f"{name[key]}={value!r} must be one of {', '.join(CHOICES[key])}")


def _negative_weight(alpha: Tensor | float, form: str) -> Tensor | float:
    """The factor before p^gamma BCE(p, 0) on negatives: 1 - alpha (focal, negatives) or alpha (varifocal)."""
    return alpha if form == "varifocal" else 1.0 - alpha


def focal_loss(logits: Tensor, targets: Tensor, gamma: Tensor | float, alpha: Tensor | float,
               form: str = "focal") -> Tensor:
    """Elementwise sigmoid focal loss, Eq. (3), for 0/1 or soft targets, in one of the `FORMS`; computed in fp32."""
    x, t = logits.float(), targets.float()
    p = x.sigmoid()
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if form == "focal":
        modulator = (t - p).abs().clamp_min(_TINY).pow(gamma)
        alpha_t = torch.where(t > 0, alpha, 1.0 - alpha)
        return alpha_t * modulator * bce
    positive = t * bce if form == "varifocal" else bce
    negative = _negative_weight(alpha, form) * p.clamp_min(_TINY).pow(gamma) * bce
    return torch.where(t > 0, positive, negative)


def _entry_loss_and_grad(x: Tensor, t: Tensor, gamma: Tensor, alpha: Tensor, form: str) -> tuple[Tensor, Tensor]:
    """`focal_loss` (fp32 x, t) and its derivative in x, in closed form.

    focal: alpha_t (|d|^gamma (p - t) + gamma |d|^(gamma - 1) sign(d) p (1 - p) BCE), d = p - t (0 where |d| is below
    the clamp, as autograd's). Other forms: positives c (p - t) with c = t (varifocal) or 1 (negatives); negatives
    a p^gamma (p + gamma (1 - p) BCE), a = `_negative_weight`.
    """
    p = x.sigmoid()
    d = p - t
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if form == "focal":
        a = d.abs()
        clamped = a.clamp_min(_TINY)
        mod = clamped.pow(gamma)
        alpha_t = torch.where(t > 0, alpha, 1.0 - alpha)
        slope = torch.where(a >= _TINY, gamma * mod / clamped * d.sign(), 0.0) * p * (1 - p)
        return alpha_t * mod * bce, alpha_t * (mod * d + slope * bce)
    c = t if form == "varifocal" else torch.ones_like(t)
    weight = _negative_weight(alpha, form) * p.clamp_min(_TINY).pow(gamma)
    pos = t > 0
    return (torch.where(pos, c * bce, weight * bce),
            torch.where(pos, c * d, weight * (p + gamma * (1 - p) * bce)))


class _SingleLabelFocal(torch.autograd.Function):
    """`focal_loss` x `scale` for targets with at most one positive class per row (`index`), its gradient formed in
    the forward pass.

    Every entry is first scored as a negative (t = 0): loss w softplus(x), gradient w (p + gamma softplus(x) (1 - p)),
    w = scale a p^gamma (a = `_negative_weight`), from one sigmoid, log and exp over the dense tensor (all vectorised;
    no log1p or fractional pow there) and four temporaries. The one entry per row that may be positive is then
    overwritten with the general form (`_entry_loss_and_grad`). Backward is one multiply.
    """

    @staticmethod
    def forward(ctx, x: Tensor, t: Tensor, index: Tensor, gamma: Tensor, alpha: Tensor, scale: Tensor,
                form: str) -> Tensor:
        log_p = x.abs().sigmoid_().log_()  # log sigmoid(|x|), in [-log 2, 0]
        softplus = x.clamp_min(0).sub_(log_p)  # -log(1 - p), stable for any x
        torch.sub(x, softplus, out=log_p)  # log p
        grad = log_p.exp()  # p
        negative = _negative_weight(alpha, form) * scale
        weight = torch.addcmul(negative.log(), log_p, gamma, out=log_p).exp_()  # scale a p^gamma
        loss = weight * softplus
        softplus.addcmul_(grad, softplus, value=-1)  # softplus (1 - p), finite for any x
        grad.addcmul_(softplus, gamma).mul_(weight)
        loss_i, grad_i = _entry_loss_and_grad(x.gather(-1, index), t.gather(-1, index), gamma, alpha, form)
        loss.scatter_(-1, index, loss_i.mul_(scale))
        ctx.save_for_backward(grad.scatter_(-1, index, grad_i.mul_(scale)))
        return loss

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None, None, None, None, None, None


def level_statistic(logits: Tensor, targets: Tensor, statistic: str = "released") -> tuple[Tensor, Tensor]:
    """Numerator and denominator of C_l for one level (fp32 scalars), so that C_l = f(num / den).

    released: num = sum over positive entries of -log(p / t)+, den = their count; C_l = num / den. As in the authors'
              code, -log p is taken as -log(sigmoid(x)) in fp32: entries where it is exactly 0 (x above ~17.3, where
              sigmoid rounds to 1) are dropped, and a positive below x ~ -104 (sigmoid underflows to 0) gives +inf,
              so gamma_l goes to the upper clamp (Eq. 4).
    paper:    num = sum over positives of min(p, t), den = sum of their targets; C_l = -log(num / den), Eq. (4).
    """
    x, t = logits.detach().float(), targets.detach().float()
    pos = t > 0
    p = x.sigmoid()
    if statistic == "released":
        nll = -p.log()  # the released rounding, not the stable -logsigmoid(x)
        counted = pos & (nll > 0)
        relative = (nll + t.clamp_min(_TINY).log()).clamp_min(0.0)  # -log(min(p / t, 1))
        return torch.where(counted, relative, 0.0).sum(), counted.sum().float()
    return (torch.minimum(p, t) * pos).sum(), (t * pos).sum()


class ProgressiveFocalLoss:
    """Per-level focal loss whose gamma_l, alpha_l follow each level's classification quality (Eq. 1-5).

    Args:
        gamma: centre of the focusing parameter's range (2.0 in the paper).
        delta: gamma_l = clamp(C_l, gamma - delta, gamma + delta), Eq. (4). delta = 0 gives plain focal loss.
        w: alpha_l = w / gamma_l, Eq. (5). w = 0.5 keeps alpha = 0.25 at gamma = 2.
        statistic: "released" (authors' code: mean of -log p over positives) or "paper" (Eq. 4: -log of mean p).
        reduction: "sum" (authors' code: every level summed, divided by the batch's total positives) or "mean"
            (Eq. 1: mean over levels of each level's loss / its own positives).
        levelwise: True = LRP, one gamma_l per level; False = one gamma from all levels' positives (PFL alone).
        single_label: every row of the targets has at most one class > 0 (TaskAlignedAssigner, MaxIoU and ATSS
            targets do). Same values, computed with far less work: the statistic from each row's largest target
            only, the loss in closed form with its gradient in one pass (`_SingleLabelFocal`). Multi-label
            targets need False (the default), which evaluates `focal_loss` with autograd on every entry.
        form: "focal" (Eq. 3, the default), "varifocal" or "negatives": see the module docstring.
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
    ) -> None:
        check_pfl(gamma, delta, w, statistic, reduction, form, levelwise)
        self.gamma, self.delta, self.w = float(gamma), float(delta), float(w)
        self.statistic, self.reduction, self.levelwise = statistic, reduction, levelwise
        self.single_label, self.form = single_label, form

    def level_params(self, logits: list[Tensor], targets: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """gamma_l, alpha_l and C_l per level, each (L,) fp32 and detached (Eq. 4, 5). No host sync."""
        parts = [level_statistic(x, t, self.statistic) for x, t in zip(logits, targets)]
        num = torch.stack([n for n, _ in parts])
        den = torch.stack([d for _, d in parts])
        if not self.levelwise:  # one statistic over the positives of all levels
            num, den = num.sum().expand_as(num), den.sum().expand_as(den)
        ratio = num / den.clamp_min(_TINY)
        c = ratio if self.statistic == "released" else -ratio.clamp_min(_TINY).log()
        c = torch.where(den > 0, c, torch.full_like(c, self.gamma))  # no positives: plain focal loss
        c = mean_across_ranks(c)  # as the authors' code does, so every rank uses the same gamma_l
        gamma = c.clamp(self.gamma - self.delta, self.gamma + self.delta)  # Eq. (4)
        alpha = self.w / gamma  # Eq. (5)
        return gamma, alpha, c

    def level_weights(self, targets: list[Tensor], normalizer: Tensor | float) -> Tensor:
        """(L,) factors that turn per-level loss sums into the total: loss = sum_l weight_l * sum(level l)."""
        n = len(targets)
        device = targets[0].device
        if self.reduction == "sum":  # authors' code: every level / the total positives of the batch
            norm = torch.as_tensor(normalizer, dtype=torch.float32, device=device)
            return (1.0 / norm.clamp_min(1.0)).expand(n)
        level_pos = torch.stack([t.detach().float().sum() for t in targets])  # Eq. (1): mean of per-level losses
        return 1.0 / (n * level_pos.clamp_min(1.0))

    def per_level(
        self, logits: list[Tensor], targets: list[Tensor], scale: Tensor | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Elementwise focal loss of every level with its own (gamma_l, alpha_l), and the level statistics.

        `scale`: optional (L,) factors (no gradient) multiplied into each level's loss; free with `single_label`.
        """
        if self.single_label:  # each row's one candidate positive: its largest target and that class's logit
            picked = [t.detach().max(-1, keepdim=True) for t in targets]
            top_targets = [v for v, _ in picked]
            gamma, alpha, c = self.level_params([x.gather(-1, i) for x, (_, i) in zip(logits, picked)], top_targets)
            factors = [1.0] * len(logits) if scale is None else scale.detach()
            losses = [_SingleLabelFocal.apply(x.float(), t.float(), i, gamma[k], alpha[k], factors[k], self.form)
                      for k, (x, t, (_, i)) in enumerate(zip(logits, targets, picked))]
        else:
            gamma, alpha, c = self.level_params(logits, targets)
            losses = [focal_loss(x, t, gamma[k], alpha[k], self.form) for k, (x, t) in enumerate(zip(logits, targets))]
            if scale is not None:
                losses = [x * f for x, f in zip(losses, scale.detach())]
            top_targets = targets
        num_pos = torch.stack([(t.detach() > 0).any(-1).sum().float() for t in top_targets])  # positive samples
        num_samples = torch.tensor([t[..., 0].numel() for t in targets], dtype=torch.float32, device=gamma.device)
        return losses, {"gamma": gamma, "alpha": alpha, "statistic": c, "num_pos": num_pos,
                        "num_samples": num_samples}

    def __call__(
        self, logits: list[Tensor], targets: list[Tensor], normalizer: Tensor | float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total classification loss (Eq. 1/2 combination of Eq. 3 per level) and detached per-level stats."""
        if len(logits) != len(targets) or not logits:
            raise ValueError(f"need one target per level, got {len(logits)} logits and {len(targets)} targets")
        losses, stats = self.per_level(logits, targets)
        level_loss = torch.stack([x.sum() for x in losses]) * self.level_weights(targets, normalizer)
        stats["loss"] = level_loss.detach()
        return level_loss.sum(), stats
