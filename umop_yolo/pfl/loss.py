"""ProgressiveFocalLoss: the per-level focal loss of Eq. (1)-(5), each level with its (gamma_l, alpha_l) from
`statistic.params_from_sums`, computed per entry by `forms` or, for single-label targets, `single_label`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from umop_yolo.pfl.forms import focal_loss
from umop_yolo.pfl.settings import PFLSettings
from umop_yolo.pfl.single_label import SingleLabelFocal, top_class
from umop_yolo.pfl.statistic import level_statistic, params_from_sums, statistic_terms


def per_anchor(values: Tensor, level_sizes: Sequence[int]) -> Tensor:
    """(L,) per-level values as (A, 1), each repeated over its level's anchors: broadcasts over (..., A, C)."""
    return torch.cat([v.expand(n) for v, n in zip(values, level_sizes)]).unsqueeze(-1)


def level_sums(values: Tensor, level_sizes: Sequence[int]) -> Tensor:
    """(L,) sums of (..., A, K) values over each level's anchors (dim -2)."""
    return torch.stack([v.sum() for v in values.split(list(level_sizes), -2)])


class ProgressiveFocalLoss:
    """Per-level focal loss whose gamma_l, alpha_l follow each level's classification quality (Eq. 1-5).

    Args:
        settings: the `PFLSettings` (default: the paper's).
        single_label: every row of the targets has at most one class > 0 (TaskAlignedAssigner, MaxIoU and ATSS
            targets do). Same values, computed with far less work: the statistic from each row's largest target
            only, the loss in closed form with its gradient in one pass (`SingleLabelFocal`). Multi-label
            targets need False (the default), which evaluates `focal_loss` with autograd on every entry.
        **fields: `PFLSettings` fields that replace those of `settings`, e.g. ProgressiveFocalLoss(delta=0.0).

    Under DDP the one all-reduce per step of C_l (`PFLSettings.sync`) also carries the loss normaliser.
    """

    def __init__(self, settings: PFLSettings | None = None, single_label: bool = False, **fields: Any) -> None:
        self.settings = replace(settings or PFLSettings(), **fields)  # replace() checks the result again
        self.single_label = single_label

    def level_params(self, logits: list[Tensor], targets: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """gamma_l, alpha_l and C_l per level, each (L,) fp32 and detached (Eq. 4, 5). No host sync."""
        parts = [level_statistic(x, t, self.settings.statistic) for x, t in zip(logits, targets)]
        num, den = torch.stack([n for n, _ in parts]), torch.stack([d for _, d in parts])
        return params_from_sums(num, den, self.settings)[:3]

    def level_weights(self, target_sum: Tensor, normalizer: Tensor | float) -> Tensor:
        """(L,) factors that turn per-level loss sums into the total: loss = sum_l weight_l * sum(level l), from the
        levels' (L,) target sums (`per_level`'s stats["target_sum"]) and the batch's normalizer."""
        if self.settings.reduction == "sum":  # authors' code: every level / the total positives of the batch
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

        terms = [statistic_terms(top_x, top, self.settings.statistic) for top, top_x, _ in tops]
        num, den = (per_level_sums([term[i] for term in terms]) for i in (0, 1))
        gamma, alpha, c, *norm = params_from_sums(num, den, self.settings, normalizer)
        factors = torch.ones_like(gamma) if scale is None else scale.detach().float()
        losses = []
        for x, t, (top, top_x, index), sizes, g, a, f in zip(logits, targets, tops, level_sizes, *(
                v.split([len(sizes) for sizes in level_sizes]) for v in (gamma, alpha, factors))):
            g, a, f = (per_anchor(v, sizes) for v in (g, a, f))  # (A, 1): broadcast over (..., A, C)
            if self.single_label:
                losses.append(SingleLabelFocal.apply(x.float(), top_x.float(), top, index, g, a, f, self.settings.form))
            else:
                loss = focal_loss(x, t, g, a, self.settings.form)
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
