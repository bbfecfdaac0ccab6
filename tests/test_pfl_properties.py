"""Property-based tests of the PFL core (`umop_yolo.pfl`): finite values and gradients for any logits and targets,
exact focal loss at delta = 0, gamma_l always inside the clamp."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import sigmoid_focal_loss

from umop_yolo.pfl import REDUCTIONS, STATISTICS, ProgressiveFocalLoss

SETTINGS = settings(max_examples=50, deadline=None)
LOGIT_SCALES = (1.0, 10.0, 1e4)  # ordinary, saturated, far beyond fp16's sigmoid range


@st.composite
def levels(draw, soft=True, scales=LOGIT_SCALES):
    """1-5 pyramid levels of (N_l, C) logits and targets; any level may be empty or have no positives."""
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    num_classes = draw(st.integers(1, 6))
    logits, targets = [], []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.sampled_from((0, 1, 7, 40)))
        x = torch.randn(n, num_classes, generator=g) * draw(st.sampled_from(scales))
        kind = draw(st.sampled_from(("none", "binary", "soft") if soft else ("none", "binary")))
        t = torch.zeros(n, num_classes)
        if kind != "none" and n:
            rows = torch.rand(n, generator=g) < draw(st.sampled_from((0.05, 0.5, 1.0)))
            cls = torch.randint(num_classes, (n,), generator=g)
            score = torch.rand(n, generator=g) if kind == "soft" else torch.ones(n)
            t[rows, cls[rows]] = score[rows]
        logits.append(x)
        targets.append(t)
    return logits, targets


pfl_configs = st.builds(  # every valid setting: alpha_l = w / gamma_l < 1 for all gamma_l (PFLSettings)
    lambda gamma, frac, w_frac, statistic, reduction, levelwise: ProgressiveFocalLoss(
        gamma=gamma, delta=gamma * frac, w=gamma * (1 - frac) * w_frac, statistic=statistic, reduction=reduction,
        levelwise=levelwise,
    ),
    gamma=st.floats(0.25, 5.0),
    frac=st.floats(0.0, 0.95),
    w_frac=st.floats(0.05, 0.99),
    statistic=st.sampled_from(STATISTICS),
    reduction=st.sampled_from(REDUCTIONS),
    levelwise=st.booleans(),
)


def loss_and_grads(pfl, logits, targets, dtype=torch.float32):
    x = [v.to(dtype).requires_grad_() for v in logits]
    normalizer = sum(float(t.sum()) for t in targets)
    loss, stats = pfl(x, [t.to(dtype) for t in targets], normalizer)
    loss.backward()
    return loss, [v.grad for v in x], stats


@SETTINGS
@given(data=levels(), pfl=pfl_configs)
def test_loss_and_gradients_are_finite_for_any_logits_and_targets(data, pfl):
    loss, grads, stats = loss_and_grads(pfl, *data)
    assert torch.isfinite(loss) and loss >= 0
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(torch.isfinite(v).all() for k, v in stats.items() if k != "statistic")
    assert not stats["statistic"].isnan().any()  # +inf is the released rule for a positive at sigmoid(x) = 0


@SETTINGS
@given(data=levels(), pfl=pfl_configs)
def test_fp16_inputs_give_finite_loss_and_gradients(data, pfl):
    loss, grads, _ = loss_and_grads(pfl, *data, dtype=torch.float16)
    assert torch.isfinite(loss)
    assert all(g.dtype == torch.float16 and torch.isfinite(g).all() for g in grads)


@SETTINGS
@given(data=levels(), pfl=pfl_configs)
def test_gamma_stays_inside_the_clamp_and_alpha_follows_it(data, pfl):
    gamma, alpha, _ = pfl.level_params(*data)
    cfg = pfl.settings
    lo, hi = cfg.gamma - cfg.delta, cfg.gamma + cfg.delta
    assert ((gamma >= lo - 1e-6) & (gamma <= hi + 1e-6)).all(), (gamma, lo, hi)
    torch.testing.assert_close(alpha, cfg.w / gamma)
    for t, g in zip(data[1], gamma):
        if not (t > 0).any() and cfg.levelwise:  # a level without positives falls back to plain focal loss
            assert math.isclose(float(g), cfg.gamma, rel_tol=1e-6)


@SETTINGS
@given(data=levels(soft=False, scales=(1.0, 8.0)), gamma=st.floats(0.25, 5.0), w_frac=st.floats(0.05, 0.99),
       statistic=st.sampled_from(STATISTICS), levelwise=st.booleans())
def test_delta_zero_is_exactly_torchvision_sigmoid_focal_loss(data, gamma, w_frac, statistic, levelwise):
    logits, targets = data
    w = gamma * w_frac
    pfl = ProgressiveFocalLoss(gamma=gamma, delta=0.0, w=w, statistic=statistic, reduction="sum", levelwise=levelwise)
    losses, stats = pfl.per_level(logits, targets)
    for x, t, got in zip(logits, targets, losses):
        want = sigmoid_focal_loss(x, t, alpha=w / gamma, gamma=gamma, reduction="none")
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)  # fp32: pow vs torchvision's products
    normalizer = max(sum(float(t.sum()) for t in targets), 1.0)
    total, _ = pfl(logits, targets, normalizer)
    want_total = sum(sigmoid_focal_loss(x, t, alpha=w / gamma, gamma=gamma, reduction="sum") for x, t in
                     zip(logits, targets)) / normalizer
    torch.testing.assert_close(total, torch.as_tensor(want_total, dtype=total.dtype), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(stats["gamma"], torch.full_like(stats["gamma"], gamma))


@pytest.mark.parametrize("statistic", STATISTICS)
def test_huge_logits_on_positives_and_negatives_stay_finite(statistic):
    """The extremes a diverging head produces: confidently wrong and confidently right at +-1e30."""
    x = torch.tensor([[1e30, -1e30], [-1e30, 1e30], [0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.3, 0.0]])
    loss, stats = ProgressiveFocalLoss(statistic=statistic)([x], [t], 2.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(stats["gamma"]).all()
