"""PFL under half precision: the loss under CPU autocast (bf16, fp16) equals the fp32 loss within a stated tolerance
on realistic logits; C_l, gamma_l, alpha_l stay fp32; logits up to |1e4| in half precision give no NaN or overflow."""

import pytest
import torch

from umop_yolo.pfl import ProgressiveFocalLoss

# Measured (2026-12-07, these logits): |half - fp32| / fp32 = 2.6e-4 (bf16) and 1.7e-5 (fp16) on the loss, 6.3e-4 and
# 1.4e-4 on C_l. Only the logits are rounded (to 8 / 11 significant bits); loss and C_l are computed in fp32 from them.
LOSS_TOL = {torch.bfloat16: 2e-3, torch.float16: 2e-4}
STATISTIC_TOL = {torch.bfloat16: 5e-3, torch.float16: 1e-3}
HALF = [torch.bfloat16, torch.float16]


def realistic(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Three levels of (4, A, 5) logits as a detector's early training gives: negatives near -4.6 (prior 0.01),
    ~2% positives with soft (IoU-aware) targets and logits spread around 0."""
    g = torch.Generator().manual_seed(seed)
    logits, targets = [], []
    for anchors in (1024, 256, 64):
        x = -4.6 + 1.5 * torch.randn(4, anchors, 5, generator=g)
        t = torch.zeros(4, anchors, 5)
        pos = torch.rand(4, anchors, generator=g) < 0.02
        cls = torch.randint(0, 5, (4, anchors), generator=g)
        score = 0.2 + 0.8 * torch.rand(4, anchors, generator=g)
        t[pos, cls[pos]] = score[pos]
        x[pos, cls[pos]] = 2.0 * torch.randn(int(pos.sum()), generator=g)
        logits.append(x)
        targets.append(t)
    return logits, targets


def _loss(pfl, logits, targets, dtype=None):
    """The loss, with the logits a half-precision model would give (rounded), under CPU autocast."""
    xs = [x.to(dtype).requires_grad_() if dtype else x.clone().requires_grad_() for x in logits]
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss, stats = pfl(xs, targets, sum(float((t > 0).sum()) for t in targets))
    loss.backward()
    return loss, stats, [x.grad for x in xs]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("single_label", [True, False])
def test_half_precision_loss_equals_fp32_within_the_stated_tolerance(dtype, single_label):
    pfl = ProgressiveFocalLoss(single_label=single_label)
    logits, targets = realistic()
    ref, ref_stats, _ = _loss(pfl, logits, targets)
    loss, stats, grads = _loss(pfl, logits, targets, dtype)
    assert loss.dtype == torch.float32
    for key in ("statistic", "gamma", "alpha", "num_pos", "target_sum"):
        assert stats[key].dtype == torch.float32, key
    torch.testing.assert_close(loss, ref, rtol=LOSS_TOL[dtype], atol=0)
    torch.testing.assert_close(stats["statistic"], ref_stats["statistic"], rtol=STATISTIC_TOL[dtype], atol=0)
    assert not torch.equal(loss, ref)  # the logits really were rounded
    assert all(g.dtype == dtype and g.isfinite().all() for g in grads)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("statistic", ["released", "paper", "centered"])
def test_extreme_half_precision_logits_give_no_nan_or_overflow(dtype, statistic):
    pfl = ProgressiveFocalLoss(statistic=statistic, single_label=True)
    logits, targets = realistic(1)
    for x, t in zip(logits, targets):  # confident mistakes and confident hits, both ways, at |logit| = 1e4
        x[..., 0], x[..., 1] = torch.where(t[..., 0] > 0, -1e4, 1e4), torch.where(t[..., 1] > 0, 1e4, -1e4)
    loss, stats, grads = _loss(pfl, logits, targets, dtype)
    assert loss.isfinite() and all(g.isfinite().all() for g in grads)
    assert stats["gamma"].isfinite().all() and stats["alpha"].isfinite().all()
    assert not stats["statistic"].isnan().any()  # "released": +inf where sigmoid underflows, gamma at its clamp
