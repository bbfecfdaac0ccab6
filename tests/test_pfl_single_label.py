"""The single-label fast path of the PFL core equals the general one: loss, gradients, statistics, for any settings."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from umop_yolo.pfl import FORMS, REDUCTIONS, STATISTICS, ProgressiveFocalLoss, focal_loss, single_label
from umop_yolo.pfl.single_label import top_class

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def single_label_levels(draw):
    """1-4 levels of (B, N_l, C) logits and targets with at most one class > 0 per row (0/1 or soft scores)."""
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    batch, nc = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    scale = draw(st.sampled_from((1.0, 6.0, 1e4)))
    soft = draw(st.booleans())
    logits, targets = [], []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.sampled_from((0, 1, 9, 40)))
        rows = torch.rand(batch, n, generator=g) < draw(st.sampled_from((0.0, 0.1, 0.6)))
        cls = torch.randint(nc, (batch, n), generator=g)
        score = torch.rand(batch, n, generator=g) if soft else torch.ones(batch, n)
        t = torch.zeros(batch, n, nc)
        t[rows, cls[rows]] = score[rows]
        logits.append(torch.randn(batch, n, nc, generator=g) * scale)
        targets.append(t)
    return logits, targets


configs = st.fixed_dictionaries({
    "gamma": st.floats(0.5, 4.0), "frac": st.floats(0.0, 0.9), "statistic": st.sampled_from(STATISTICS),
    "reduction": st.sampled_from(REDUCTIONS), "levelwise": st.booleans(), "form": st.sampled_from(FORMS)})


def both_paths(logits, targets, dtype=torch.float32, scale=None, **cfg):
    """(loss, per-level losses, gradients, stats) of the general and the single-label path."""
    gamma, frac = cfg.pop("gamma", 2.0), cfg.pop("frac", 0.25)
    out = []
    for single in (False, True):
        pfl = ProgressiveFocalLoss(gamma=gamma, delta=gamma * frac, w=0.5 * gamma * (1 - frac), single_label=single,
                                   **cfg)
        x = [v.to(dtype).requires_grad_() for v in logits]
        losses, stats = pfl.per_level(x, [t.to(dtype) for t in targets], scale)
        total = sum(v.sum() for v in losses)
        total.backward()
        out.append((total.detach(), [v.detach() for v in losses], [v.grad for v in x], stats))
    return out


def assert_same(general, fast, rtol=1e-5, atol=1e-6):
    (total0, losses0, grads0, stats0), (total1, losses1, grads1, stats1) = general, fast
    torch.testing.assert_close(total1, total0, rtol=rtol, atol=atol)
    for a, b in zip(losses0 + grads0, losses1 + grads1):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)
    assert stats0.keys() == stats1.keys()
    for key in stats0:
        torch.testing.assert_close(stats1[key], stats0[key], rtol=rtol, atol=atol)


@SETTINGS
@given(data=single_label_levels(), cfg=configs)
def test_single_label_path_equals_the_general_path(data, cfg):
    assert_same(*both_paths(*data, **cfg))


@SETTINGS
@given(data=single_label_levels())
def test_level_scale_multiplies_loss_and_gradient(data):
    logits, targets = data
    scale = torch.rand(len(logits)) + 0.5
    assert_same(*both_paths(logits, targets, scale=scale))
    unscaled, scaled = both_paths(logits, targets)[1], both_paths(logits, targets, scale=scale)[1]
    for a, b, s in zip(unscaled[1], scaled[1], scale):
        torch.testing.assert_close(b, a * s, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_their_gradient_dtype(dtype):
    g = torch.Generator().manual_seed(3)
    logits = [torch.randn(2, 30, 4, generator=g) * 4 for _ in range(3)]
    targets = [torch.zeros(2, 30, 4) for _ in range(3)]
    for t in targets:
        t[:, ::5, 1] = 0.7
    general, fast = both_paths(logits, targets, dtype=dtype)
    assert all(g.dtype == dtype and torch.isfinite(g).all() for g in fast[2])
    assert_same(general, fast, rtol=2e-2, atol=2e-3)


def test_extreme_logits_stay_finite_and_match():
    x = torch.tensor([[[1e30, -1e30], [-1e30, 1e30], [0.0, 0.0], [88.0, -104.0]]])
    t = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [0.3, 0.0], [1.0, 0.0]]])
    general, fast = both_paths([x], [t])
    assert torch.isfinite(fast[0]) and torch.isfinite(fast[2][0]).all()
    assert_same(general, fast)


class _Syncs(torch.overrides.TorchFunctionMode):
    """Records calls that make the host wait for the device."""

    NAMES = {"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.NAMES:
            self.calls.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_single_label_path_makes_no_host_sync():
    logits = [torch.randn(2, n, 3, requires_grad=True) for n in (16, 4)]
    targets = [torch.zeros(2, n, 3) for n in (16, 4)]
    targets[0][:, 3, 2] = 0.6
    with _Syncs() as syncs:
        for statistic in STATISTICS:
            for reduction in REDUCTIONS:
                pfl = ProgressiveFocalLoss(statistic=statistic, reduction=reduction, single_label=True)
                loss, _ = pfl(logits, targets, torch.tensor(3.0))
                loss.backward()
    assert syncs.calls == []


@pytest.mark.parametrize("nc", [1, 80, 128, 129])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_top_class_is_each_anchors_largest_target_and_its_class(nc, dtype):
    """The dot-product class (<= 128 classes) equals max's: every class, tiny and subnormal scores, low precision."""
    g = torch.Generator().manual_seed(nc)
    t = torch.zeros(3, 2 * nc + 4, nc)
    rows = torch.arange(2 * nc)
    t[0, rows, rows % nc] = torch.rand(2 * nc, generator=g)  # every class, twice
    scores = torch.tensor([1.0, 1e-3, 1e-20, 1e-40])  # 1e-40: subnormal in fp32
    t[1, rows, (rows * 7) % nc] = scores.repeat(nc // 2 + 1)[: 2 * nc]
    t[2, :3, nc - 1] = 1.0
    t = t.to(dtype)
    top, index = top_class(t)
    want_top, want_index = t.float().max(-1, keepdim=True)
    assert top.dtype == torch.float32 and index.dtype == torch.long and top.shape == index.shape == (3, 2 * nc + 4, 1)
    assert torch.equal(top, want_top)
    assert torch.equal(index[want_top > 0], want_index[want_top > 0])
    assert (index[want_top == 0] == 0).all()  # no positive: class 0, whose entry is then scored as a negative


class _Bf16Matmul(torch.overrides.TorchFunctionMode):
    """Runs matmuls on inputs rounded to bf16, as reduced-precision fp32 matmul settings may."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in {"matmul", "__matmul__"}:
            args = tuple(a.bfloat16().float() if isinstance(a, torch.Tensor) else a for a in args)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("nc", [80, 128, 300])
def test_top_class_survives_a_bf16_matmul(nc):
    t = torch.zeros(nc, nc)
    t[torch.arange(nc), torch.arange(nc)] = torch.linspace(0.01, 1.0, nc) * (1 - 2**-9)  # scores bf16 must round
    with _Bf16Matmul():
        top, index = top_class(t)
    assert torch.equal(index.squeeze(-1), torch.arange(nc)) and torch.equal(top.squeeze(-1), t.diagonal())


def test_loss_blocks_join_without_seams(monkeypatch):
    """The CPU path scores negatives in blocks of anchors: blocks that cut levels, and a last short block, change
    nothing against the general path."""
    monkeypatch.setattr(single_label, "BLOCK", 3 * 4 * 5)  # 5 anchors of 3 images x 4 classes per block
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(3, n, 4, generator=g) * 4 for n in (23, 7, 2)]
    targets = [torch.zeros(3, n, 4) for n in (23, 7, 2)]
    for t in targets:
        t[:, ::3, 2] = torch.rand(t[:, ::3, 2].shape, generator=g)
    logits[1][targets[1] > 0] = 9.0  # level 1 well classified, levels 0 and 2 not: three different gamma_l
    scale = torch.tensor([0.5, 2.0, 3.0])
    for form in FORMS:
        general, fast = both_paths(logits, targets, scale=scale, form=form, gamma=2.0, frac=0.75)
        assert fast[3]["gamma"].unique().numel() == 3
        assert_same(general, fast)


def test_joined_levels_give_the_per_level_loss_and_stats():
    """`joined` (levels joined along the anchor dimension, the YOLO adapter's call) equals `per_level` on the split
    levels (the dense heads' call): loss, gradient and stats."""
    g = torch.Generator().manual_seed(1)
    sizes = [12, 5, 2]
    x = torch.randn(2, sum(sizes), 3, generator=g) * 3
    t = torch.zeros(2, sum(sizes), 3)
    t[:, ::2, 1] = torch.rand(2, (sum(sizes) + 1) // 2, generator=g)
    for single in (False, True):
        pfl = ProgressiveFocalLoss(delta=1.0, w=0.4, single_label=single)
        xs = [v.detach().requires_grad_() for v in (x, x)]
        a, stats_a = pfl.joined(xs[0], t, sizes, torch.tensor([1.0, 2.0, 3.0]))
        b, stats_b = pfl.per_level(list(xs[1].split(sizes, 1)), list(t.split(sizes, 1)), torch.tensor([1.0, 2.0, 3.0]))
        (a.sum() + sum(v.sum() for v in b)).backward()
        torch.testing.assert_close(a, torch.cat(b, 1))
        torch.testing.assert_close(xs[0].grad, xs[1].grad)
        assert stats_a.keys() == stats_b.keys() >= {"gamma", "alpha", "statistic", "num_pos", "num_samples", "positive"}
        for key in stats_a:
            torch.testing.assert_close(stats_a[key], stats_b[key])
        torch.testing.assert_close(stats_a["target_sum"], torch.stack([v.sum() for v in t.split(sizes, 1)]))
        assert torch.equal(stats_a["positive"], (t > 0).any(-1))


@pytest.mark.parametrize("gamma", [1.5, 2.5])
def test_confident_false_positives_get_a_float64_accurate_gradient(gamma):
    """Negatives at large logits (x ~ 14.7, p ~ 1 - 4e-7: confident false positives): the closed-form fp32 gradient
    w p^gamma (p + gamma softplus(x) (1 - p)) stays within 5e-6 of a float64 reference. With 1 - p formed from p it was
    up to 1.6e-5 off at gamma = 2.5 (and 9e-6 at 1.5): the digits of 1 - p are lost as p nears 1."""
    x = 14.7 + 0.5 * torch.randn(1, 4096, 3, generator=torch.Generator().manual_seed(0))
    t = torch.zeros_like(x)
    t[0, ::7, 1] = 1.0  # a few positives, so the anchors' classes vary
    pfl = ProgressiveFocalLoss(gamma=gamma, delta=0.0, w=0.5, single_label=True)
    fast = x.clone().requires_grad_()
    pfl.per_level([fast], [t])[0][0].sum().backward()
    ref = x.double().requires_grad_()
    focal_loss(ref, t.double(), gamma, 0.5 / gamma).sum().backward()
    negative = t == 0
    error = ((fast.grad.double() - ref.grad).abs() / ref.grad.abs())[negative]
    assert error.max() < 5e-6, float(error.max())
