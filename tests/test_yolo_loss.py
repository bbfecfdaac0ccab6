"""The YOLO adapter: stock loss with umop=false, per-level PFL with umop=true, end-to-end heads, level stats."""

from types import SimpleNamespace

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.loss import E2ELoss

from umop_yolo.engine.args_adapter import settings_from_args
from umop_yolo.engine.loss import LevelwisePFL, PFLDetectionLoss
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.pfl import ProgressiveFocalLoss


def args(**kw):
    return SimpleNamespace(**{**DEFAULT_CFG_DICT, **kw})


def batch():
    return {
        "img": torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)),
        "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
        "cls": torch.tensor([[0.0], [2.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.2, 0.2, 0.08, 0.08], [0.6, 0.6, 0.8, 0.5]]),
    }


def model_pair(yaml="yolov8n.yaml", **kw):
    torch.manual_seed(0)
    stock = DetectionModel(yaml, nc=3, verbose=False)
    ours = UmopDetectionModel(yaml, nc=3, verbose=False)
    ours.load_state_dict(stock.state_dict())
    stock.args, ours.args = args(), args(**kw)
    return stock.train(), ours.train()


@pytest.mark.parametrize("yaml", ["yolov8n.yaml", "yolo26n.yaml"])
def test_umop_false_is_bit_identical_to_stock_loss(yaml):
    stock, ours = model_pair(yaml, umop=False)
    (l1, items1), (l2, items2) = stock.loss(batch()), ours.loss(batch())
    assert torch.equal(l1, l2)
    assert all(torch.equal(items1[k], items2[k]) for k in items1)
    assert isinstance(ours.criterion, type(stock.criterion))  # the stock criterion, or a subclass that only records


def test_umop_true_replaces_only_the_classification_term():
    stock, ours = model_pair(umop=True)
    (l1, _), (l2, _) = stock.loss(batch()), ours.loss(batch())
    assert isinstance(ours.criterion, PFLDetectionLoss)
    assert torch.equal(l1[0], l2[0]) and torch.equal(l1[2], l2[2])  # box and DFL untouched
    assert not torch.equal(l1[1], l2[1])
    l2.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in ours.parameters() if p.grad is not None)


def test_settings_from_args_read_every_setting_and_the_focal_baseline_has_delta_zero():
    a = args(pfl_gamma=1.5, pfl_delta=0.25, pfl_w=0.4, pfl_statistic="paper", lrp_reduction="mean",
             pfl_form="varifocal", lrp=False, pfl_sync="global")
    settings = settings_from_args(a)
    assert settings == settings_from_args(vars(a))  # a checkpoint's args: a dict
    pfl = settings.classification
    assert (pfl.gamma, pfl.delta, pfl.w, pfl.statistic, pfl.reduction, pfl.form, pfl.levelwise, pfl.sync) == (
        1.5, 0.25, 0.4, "paper", "mean", "varifocal", False, "global")
    focal = settings_from_args(args(**{**vars(a), "umop": False})).classification  # RetinaNet / ATSS, umop=false
    assert (focal.gamma, focal.delta, focal.w) == (1.5, 0.0, 0.4)  # Eq. (3), one fixed gamma and alpha
    assert (focal.statistic, focal.reduction, focal.form, focal.levelwise, focal.sync) == (
        "released", "sum", "focal", True, "ranks")


@pytest.mark.parametrize("form", ["varifocal", "negatives"])
def test_pfl_form_setting_reaches_the_yolo_criterion(form):
    _, focal = model_pair(umop=True)
    _, other = model_pair(umop=True, pfl_form=form)
    (l_focal, _), (l_other, _) = focal.loss(batch()), other.loss(batch())
    assert other.criterion.bce.pfl.settings.form == form and focal.criterion.bce.pfl.settings.form == "focal"
    assert torch.equal(l_focal[0], l_other[0]) and not torch.equal(l_focal[1], l_other[1])  # only cls differs


def test_level_split_follows_the_head_strides():
    _, ours = model_pair(umop=True)
    ours.loss(batch())
    assert ours.criterion.bce.level_sizes == [16 * 16, 8 * 8, 4 * 4]  # 128 px at strides 8, 16, 32
    stats = ours.criterion.last_stats
    assert stats["gamma"].shape == (3,) and stats["num_samples"].tolist() == [2 * 256, 2 * 64, 2 * 16]
    assert ((stats["gamma"] >= 1.5) & (stats["gamma"] <= 2.5)).all()


def test_end_to_end_heads_use_pfl_in_both_branches():
    _, ours = model_pair("yolo26n.yaml", umop=True)
    loss, items = ours.loss(batch())
    assert isinstance(ours.criterion, E2ELoss)
    assert isinstance(ours.criterion.one2many, PFLDetectionLoss)
    assert isinstance(ours.criterion.one2one, PFLDetectionLoss)
    assert torch.isfinite(loss).all() and set(items) == {"box_loss", "cls_loss", "l1_loss"}


@pytest.mark.parametrize("single_label", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_elementwise_adapter_realises_the_core_reduction(reduction, single_label):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 21, 3, generator=g)
    targets = torch.rand(2, 21, 3, generator=g) * (torch.rand(2, 21, 3, generator=g) > 0.85)
    if single_label:  # TAL's targets: one class per anchor
        targets = targets * torch.nn.functional.one_hot(targets.argmax(-1), 3)
    pfl = ProgressiveFocalLoss(reduction=reduction, single_label=single_label)
    adapter = LevelwisePFL(pfl)
    adapter.level_sizes = [16, 4, 1]
    normalizer = targets.sum().clamp_min(1.0)
    as_ultralytics = adapter(logits, targets).sum() / normalizer  # what v8DetectionLoss does with .bce's output
    expected, _ = pfl(list(logits.split([16, 4, 1], 1)), list(targets.split([16, 4, 1], 1)), normalizer)
    torch.testing.assert_close(as_ultralytics, expected)
    torch.testing.assert_close(adapter.last_stats["loss"].sum(), expected)


def test_single_label_adapter_equals_the_general_one_on_tal_targets():
    """The criterion's fast path (one pass over all anchors, each anchor's one class) gives the general path's
    elementwise loss, gradient and per-level stats on a real YOLOv8n step's logits and TAL targets."""
    _, ours = model_pair(umop=True)
    criterion = ours.criterion = ours.init_criterion()
    seen = {}

    class Seeing(LevelwisePFL):
        def __call__(self, logits, targets):
            seen.update(x=logits.detach(), t=targets)
            return super().__call__(logits, targets)

    assert criterion.bce.pfl.single_label
    criterion.bce = Seeing(criterion.bce.pfl)
    ours.loss(batch())
    assert (seen["t"] > 0).sum() == (seen["t"] > 0).any(-1).sum() > 0  # one class per anchor
    out = []
    for single_label in (False, True):
        adapter = LevelwisePFL(ProgressiveFocalLoss(delta=1.0, w=0.5, single_label=single_label))
        adapter.level_sizes = criterion.bce.level_sizes
        x = seen["x"].clone().requires_grad_()
        loss = adapter(x, seen["t"])
        loss.sum().backward()
        out.append((loss.detach(), x.grad, adapter.last_stats))
    (loss0, grad0, stats0), (loss1, grad1, stats1) = out
    torch.testing.assert_close(loss1, loss0)
    torch.testing.assert_close(grad1, grad0)
    assert stats0.keys() == stats1.keys()
    for key in stats0:
        torch.testing.assert_close(stats1[key], stats0[key])
