"""The UMOP core (umop_yolo.pfl): Eq. (1)-(5), the released code's choices, numerics and no host syncs."""

import dataclasses
import math
import subprocess
import sys

import pytest
import torch
import torchvision

from umop_yolo.errors import UserInputError
from umop_yolo.pfl import PFLSettings, ProgressiveFocalLoss, focal_loss, level_statistic


def binary_levels(seed=0, sizes=(64, 16, 4), nc=3, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(n, nc, generator=g) * scale for n in sizes]
    targets = [(torch.rand(n, nc, generator=g) > 0.8).float() for n in sizes]
    return logits, targets


@pytest.mark.slow
def test_pure_pytorch_module_imports_no_ultralytics():
    code = "import sys, umop_yolo.pfl; sys.exit('ultralytics' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_delta_zero_equals_torchvision_focal_loss():
    logits, targets = binary_levels()
    loss, stats = ProgressiveFocalLoss(gamma=2.0, delta=0.0, w=0.5)(logits, targets, normalizer=7.0)
    expected = sum(
        torchvision.ops.sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0, reduction="sum")
        for x, t in zip(logits, targets)
    ) / 7.0
    torch.testing.assert_close(loss, expected)
    assert torch.equal(stats["gamma"], torch.full((3,), 2.0))
    torch.testing.assert_close(stats["alpha"], torch.full((3,), 0.25))


def test_released_statistic_is_mean_neg_log_p_over_positive_entries():
    x = torch.tensor([[2.0, -1.0], [0.5, 30.0], [-3.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    num, den = level_statistic(x, t, "released")
    expected = -torch.nn.functional.logsigmoid(torch.tensor([2.0, 0.5, 1.0])).mean()
    torch.testing.assert_close(num / den, expected)


def test_released_statistic_drops_entries_with_p_exactly_one():
    x, t = torch.tensor([[1.0], [200.0]]), torch.ones(2, 1)  # sigmoid(200) == 1 exactly in fp32
    num, den = level_statistic(x, t, "released")
    assert den.item() == 1.0
    torch.testing.assert_close(num, -torch.nn.functional.logsigmoid(torch.tensor(1.0)))


def test_paper_statistic_is_neg_log_of_mean_p_eq4():
    x = torch.tensor([[2.0, -1.0], [0.5, 0.0], [-3.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pfl = ProgressiveFocalLoss(statistic="paper", delta=1.9, w=0.05)
    _, _, c = pfl.level_params([x], [t])
    expected = -math.log(torch.sigmoid(torch.tensor([2.0, 0.5, 1.0])).mean().item())
    assert c.item() == pytest.approx(expected, rel=1e-6)


def test_gamma_is_clamped_and_alpha_is_w_over_gamma_eq4_eq5():
    logits = [torch.full((8, 1), -6.0), torch.full((8, 1), 6.0), torch.zeros(8, 1)]
    targets = [torch.ones(8, 1), torch.ones(8, 1), torch.zeros(8, 1)]
    _, stats = ProgressiveFocalLoss(gamma=2.0, delta=0.5, w=0.5)(logits, targets, 1.0)
    # hard level -> upper clamp, easy level -> lower clamp, level without positives -> gamma (plain focal loss)
    torch.testing.assert_close(stats["gamma"], torch.tensor([2.5, 1.5, 2.0]))
    torch.testing.assert_close(stats["alpha"], 0.5 / torch.tensor([2.5, 1.5, 2.0]))
    assert stats["num_pos"].tolist() == [8.0, 8.0, 0.0]


def test_each_level_uses_its_own_gamma():
    logits = [torch.full((4, 1), -6.0), torch.full((4, 1), 6.0)]
    targets = [torch.ones(4, 1), torch.ones(4, 1)]
    loss, stats = ProgressiveFocalLoss()(logits, targets, 8.0)
    expected = sum(focal_loss(x, t, g, a).sum() for x, t, g, a in zip(logits, targets, [2.5, 1.5], [0.2, 1 / 3])) / 8
    torch.testing.assert_close(loss, expected)


def test_without_lrp_all_levels_share_one_pooled_gamma():
    logits, targets = binary_levels(scale=1.0)
    _, stats = ProgressiveFocalLoss(delta=1.5, w=0.25, levelwise=False)(logits, targets, 1.0)
    pooled_x = torch.cat([x for x in logits])[torch.cat(targets) > 0]
    expected = -torch.nn.functional.logsigmoid(pooled_x).mean()
    torch.testing.assert_close(stats["gamma"], expected.expand(3))


def test_sum_reduction_divides_every_level_by_the_total_normalizer():
    logits, targets = binary_levels()
    pfl = ProgressiveFocalLoss()
    loss, stats = pfl(logits, targets, normalizer=11.0)
    losses, _ = pfl.per_level(logits, targets)
    torch.testing.assert_close(loss, sum(x.sum() for x in losses) / 11.0)
    torch.testing.assert_close(stats["loss"].sum(), loss.detach())


def test_mean_reduction_is_eq1_mean_of_per_level_losses():
    logits, targets = binary_levels()
    pfl = ProgressiveFocalLoss(reduction="mean")
    loss, _ = pfl(logits, targets, normalizer=123.0)  # the normalizer is not used by Eq. (1)
    losses, _ = pfl.per_level(logits, targets)
    expected = sum(x.sum() / max(1.0, t.sum().item()) for x, t in zip(losses, targets)) / 3
    torch.testing.assert_close(loss, expected)


def test_statistics_carry_no_gradient():
    logits, targets = binary_levels()
    logits = [x.requires_grad_() for x in logits]
    pfl = ProgressiveFocalLoss()
    loss, stats = pfl(logits, targets, 5.0)
    assert not any(v.requires_grad for v in stats.values())
    loss.backward()
    # the gradient equals that of focal loss with gamma_l, alpha_l held fixed
    fixed = [x.detach().clone().requires_grad_() for x in logits]
    ref = sum(focal_loss(x, t, g, a).sum() for x, t, g, a in zip(fixed, targets, stats["gamma"], stats["alpha"])) / 5
    ref.backward()
    for x, y in zip(logits, fixed):
        torch.testing.assert_close(x.grad, y.grad)


def test_soft_targets_reduce_to_eq3_and_are_minimised_at_p_equals_t():
    x = torch.randn(20, 4)
    t = (torch.rand(20, 4) > 0.5).float()
    alpha, gamma = 0.3, 1.7
    p = x.sigmoid()
    eq3 = torch.where(t > 0, -alpha * (1 - p) ** gamma * p.log(), -(1 - alpha) * p**gamma * (1 - p).log())
    torch.testing.assert_close(focal_loss(x, t, gamma, alpha), eq3)
    soft = torch.rand(20, 4) * 0.9 + 0.05
    at_target = torch.logit(soft).requires_grad_()
    focal_loss(at_target, soft, gamma, alpha).sum().backward()
    assert at_target.grad.abs().max() < 1e-6


def test_soft_statistic_counts_a_positive_at_its_target_as_learned():
    t = torch.tensor([[0.3], [0.6]])
    num, den = level_statistic(torch.logit(t), t, "released")
    assert num.item() == pytest.approx(0.0, abs=1e-6) and den.item() == 2
    num, den = level_statistic(torch.logit(t), t, "paper")
    assert (num / den).item() == pytest.approx(1.0)


def test_centered_statistic_is_gamma_plus_signed_mean_log_ratio():
    t = torch.tensor([[0.2, 0.0], [0.0, 0.6], [0.0, 0.0]])
    p = torch.tensor([[0.1, 0.5], [0.3, 0.9], [0.7, 0.2]])  # positives: below (0.1 < 0.2) and above (0.9 > 0.6) target
    pfl = ProgressiveFocalLoss(gamma=2.0, delta=0.5, statistic="centered")
    gamma, alpha, c = pfl.level_params([torch.logit(p)], [t])
    expected = 2.0 + (math.log(0.2 / 0.1) + math.log(0.6 / 0.9)) / 2  # negatives (t = 0) do not count
    assert c.item() == pytest.approx(expected, rel=1e-5)
    assert gamma.item() == pytest.approx(expected, rel=1e-5) and alpha.item() == pytest.approx(0.5 / expected)


def test_centered_statistic_does_not_saturate_where_released_does():
    # positives at or above small targets: the released ratio says "learned" (lower clamp) on both levels; centered
    # keeps the levels apart and at gamma for positives exactly on their targets
    t = torch.full((6, 1), 0.1)
    logits = [torch.logit(t), torch.logit(torch.full((6, 1), 0.15))]
    released, *_ = ProgressiveFocalLoss(statistic="released").level_params(logits, [t, t])
    centered, *_ = ProgressiveFocalLoss(statistic="centered").level_params(logits, [t, t])
    assert released.tolist() == [1.5, 1.5]
    assert centered[0].item() == pytest.approx(2.0, abs=1e-5)
    assert centered[1].item() == pytest.approx(2.0 + math.log(0.1 / 0.15), abs=1e-5)  # inside the clamp


def test_centered_statistic_falls_back_to_gamma_and_stays_finite():
    logits = [torch.full((2, 1), -200.0), torch.zeros(3, 1)]
    targets = [torch.ones(2, 1), torch.zeros(3, 1)]
    _, stats = ProgressiveFocalLoss(gamma=2.2, delta=0.4, w=0.5, statistic="centered")(logits, targets, 2.0)
    assert stats["gamma"].tolist() == pytest.approx([2.6, 2.2])  # p = sigmoid(-200): C_l finite, upper clamp
    assert torch.isfinite(stats["statistic"]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_for_extreme_logits_low_precision_and_empty_levels(dtype):
    logits = [torch.tensor([[100.0, -100.0], [-100.0, 100.0]]), torch.zeros(0, 2), torch.full((3, 2), 100.0)]
    targets = [torch.tensor([[1.0, 1.0], [0.0, 0.0]]), torch.zeros(0, 2), torch.zeros(3, 2)]
    logits = [x.to(dtype).requires_grad_() for x in logits]
    loss, stats = ProgressiveFocalLoss()(logits, targets, 0.0)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(torch.isfinite(x.grad).all() for x in logits)
    assert all(torch.isfinite(v).all() for k, v in stats.items() if k != "statistic")
    assert float(stats["statistic"][0]) == math.inf and float(stats["gamma"][0]) == 2.5  # released: sigmoid(-100) = 0


class _SyncRecorder(torch.overrides.TorchFunctionMode):
    SYNCS = {"item", "tolist", "__bool__", "__float__", "__int__", "nonzero", "__index__"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.SYNCS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def test_loss_path_makes_no_host_sync():
    logits, targets = binary_levels()
    with _SyncRecorder() as recorder:
        for statistic in ("released", "paper", "centered"):
            for reduction in ("sum", "mean"):
                ProgressiveFocalLoss(statistic=statistic, reduction=reduction)(logits, targets, torch.tensor(9.0))
    assert recorder.calls == []


def test_invalid_settings_name_the_bad_value():
    with pytest.raises(ValueError, match="delta"):
        ProgressiveFocalLoss(delta=-1)
    with pytest.raises(ValueError, match="statistic"):
        ProgressiveFocalLoss(statistic="median")
    with pytest.raises(ValueError, match="reduction"):
        ProgressiveFocalLoss(reduction="max")


def test_w_at_or_above_the_lower_clamp_is_refused_so_alpha_stays_below_one():
    """alpha_l = w / gamma_l (Eq. 5) must stay < 1 down to gamma_l = gamma - delta, or negatives get
    1 - alpha_l <= 0."""
    with pytest.raises(UserInputError, match=r"^w=1.6 must be < gamma - delta = 1.5 "):
        ProgressiveFocalLoss(w=1.6, gamma=2, delta=0.5)
    with pytest.raises(UserInputError, match=r"^w=1.5 must be"):
        ProgressiveFocalLoss(w=1.5, gamma=2, delta=0.5)
    with pytest.raises(UserInputError, match=r"^pfl_w=1.6 must be < pfl_gamma - pfl_delta = 1.5 "):
        PFLSettings.from_settings({"pfl_gamma": 2.0, "pfl_delta": 0.5, "pfl_w": 1.6})
    with pytest.raises(UserInputError, match=r"^gamma=True must be a number$"):
        ProgressiveFocalLoss(gamma=True)
    assert ProgressiveFocalLoss(w=1.49, gamma=2, delta=0.5).settings.w == 1.49  # just below the bound


@pytest.mark.parametrize("form", ["varifocal", "negatives"])
def test_bce_positive_forms_follow_their_definitions(form):
    """varifocal: positives t BCE(p, t), negatives alpha p^gamma BCE(p, 0); negatives: positives BCE(p, t), negatives
    (1 - alpha) p^gamma BCE(p, 0). (The single-label closed form is checked against this in test_pfl_single_label.)"""
    x = torch.tensor([[-1.0, 0.5, 2.0], [0.3, -2.0, 1.0]], requires_grad=True)
    t = torch.tensor([[0.0, 0.4, 0.0], [0.0, 0.0, 1.0]])
    gamma, alpha = 1.5, 0.3
    p = x.detach().sigmoid()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x.detach(), t, reduction="none")
    pos_weight = t if form == "varifocal" else torch.ones_like(t)
    neg_weight = alpha if form == "varifocal" else 1 - alpha
    want = torch.where(t > 0, pos_weight * bce, neg_weight * p**gamma * bce)
    got = focal_loss(x, t, gamma, alpha, form)
    torch.testing.assert_close(got.detach(), want)
    # a soft positive keeps its BCE signal
    assert float(got[0, 1]) == pytest.approx(float(pos_weight[0, 1] * bce[0, 1]))
    with pytest.raises(ValueError, match="form='vfl'"):
        ProgressiveFocalLoss(form="vfl")


def released_gamma(logits, labels, gamma=2.0, delta=0.5):
    """Transcription of the authors' rule (mmdet/models/dense_heads/level_resampling_head.py): fp32
    -log(sigmoid(x)) on one-hot positives, entries > 0 averaged, 2 without any; then Eq. (4)'s clamp."""
    xse = -torch.log(logits.float().sigmoid()) * labels
    c = xse[xse > 0].mean() if (xse > 0).any() else torch.tensor(2.0)
    return float(c.clamp(gamma - delta, gamma + delta))


@pytest.mark.parametrize("single_label", [False, True])
@pytest.mark.parametrize("positives", [(-1.5, -1.5, 20.0), (-1.5, 0.3, 110.0), (-110.0, 1.0, 2.0), (40.0, 50.0)])
def test_released_statistic_matches_the_authors_rule_at_saturated_logits(positives, single_label):
    n = len(positives)
    logits = torch.full((n + 2, 3), -4.0)
    labels = torch.zeros(n + 2, 3)
    logits[torch.arange(n), 1] = torch.tensor(positives)
    labels[torch.arange(n), 1] = 1.0
    pfl = ProgressiveFocalLoss(statistic="released", single_label=single_label)
    _, stats = pfl([logits], [labels], n)
    assert float(stats["gamma"][0]) == pytest.approx(released_gamma(logits, labels), abs=1e-6)
    if positives == (-1.5, -1.5, 20.0):  # the logit 20 is dropped (fp32 sigmoid = 1): C_l = -log sigmoid(-1.5)
        assert float(stats["gamma"][0]) == pytest.approx(1.7014, abs=1e-4)
    if positives[0] == -110.0:  # sigmoid underflows to 0: +inf, the upper clamp
        assert float(stats["gamma"][0]) == 2.5


def test_settings_are_one_frozen_value_whose_fields_keywords_replace():
    base = PFLSettings(gamma=1.5, delta=0.25, w=0.5)
    pfl = ProgressiveFocalLoss(base, delta=0.0)
    assert pfl.settings == PFLSettings(gamma=1.5, delta=0.0, w=0.5) and base.delta == 0.25
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.gamma = 3.0
    with pytest.raises(UserInputError, match=r"^w=1.5 must be < gamma - delta = 1.5 "):
        ProgressiveFocalLoss(base, delta=0.0, w=1.5)  # the replaced values are checked too
    assert type(PFLSettings(gamma=3).gamma) is float  # the loss computes with floats, whatever number was given
