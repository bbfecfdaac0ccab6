"""PFL's loss forms per entry (Eq. 3 and its soft-target variants, `FORMS` in `umop_yolo.pfl`): the elementwise
reference through autograd, and the closed form with its derivative that the single-label path uses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TINY = 1e-12  # keeps |t - p| ** gamma differentiable at p == t for any gamma > 0


def negative_weight(alpha: Tensor | float, form: str) -> Tensor | float:
    """The factor before p^gamma BCE(p, 0) on negatives: 1 - alpha (focal, negatives) or alpha (varifocal)."""
    return alpha if form == "varifocal" else 1.0 - alpha


def focal_loss(logits: Tensor, targets: Tensor, gamma: Tensor | float, alpha: Tensor | float,
               form: str = "focal") -> Tensor:
    """Elementwise sigmoid focal loss, Eq. (3), for 0/1 or soft targets, in one of the `FORMS`; computed in fp32."""
    x, t = logits.float(), targets.float()
    p = x.sigmoid()
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if form == "focal":
        modulator = (t - p).abs().clamp_min(TINY).pow(gamma)
        alpha_t = torch.where(t > 0, alpha, 1.0 - alpha)
        return alpha_t * modulator * bce
    positive = t * bce if form == "varifocal" else bce
    negative = negative_weight(alpha, form) * p.clamp_min(TINY).pow(gamma) * bce
    return torch.where(t > 0, positive, negative)


def entry_loss_and_grad(x: Tensor, t: Tensor, gamma: Tensor, alpha: Tensor, form: str) -> tuple[Tensor, Tensor]:
    """`focal_loss` (fp32 x, t) and its derivative in x, in closed form.

    focal: alpha_t (|d|^gamma (p - t) + gamma |d|^(gamma - 1) sign(d) p (1 - p) BCE), d = p - t (0 where |d| is below
    the clamp, as autograd's). Other forms: positives c (p - t) with c = t (varifocal) or 1 (negatives); negatives
    a p^gamma (p + gamma (1 - p) BCE), a = `negative_weight`.
    """
    p = x.sigmoid()
    d = p - t
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if form == "focal":
        a = d.abs()
        clamped = a.clamp_min(TINY)
        mod = clamped.pow(gamma)
        alpha_t = torch.where(t > 0, alpha, 1.0 - alpha)
        slope = torch.where(a >= TINY, gamma * mod / clamped * d.sign(), 0.0) * p * (1 - p)
        return alpha_t * mod * bce, alpha_t * (mod * d + slope * bce)
    c = t if form == "varifocal" else torch.ones_like(t)
    weight = negative_weight(alpha, form) * p.clamp_min(TINY).pow(gamma)
    pos = t > 0
    return (torch.where(pos, c * bce, weight * bce),
            torch.where(pos, c * d, weight * (p + gamma * (1 - p) * bce)))
