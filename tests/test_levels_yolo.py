"""Per-level statistics of the YOLO criteria (stock and UMOP) on constructed targets with known positives per level,
and `umop analyze`'s assignment against the criterion's own statistics."""

from types import SimpleNamespace

import pytest
import torch
from ultralytics.utils import DEFAULT_CFG_DICT

from umop_yolo.diagnostics.analyze import LevelReport, analyze_levels, assign
from umop_yolo.engine.criterion import LevelAssignment
from umop_yolo.engine.levels.level_stats import LevelRecorder, branch_stats, criterion_stats
from umop_yolo.engine.loss import LevelSplitDetectionLoss, PFLDetectionLoss
from umop_yolo.engine.model import UmopDetectionModel

SIZES = [16 * 16, 8 * 8, 4 * 4]  # anchors per level at 128 px, strides 8, 16, 32


def model(yaml="yolov8n.yaml", **kw):
    torch.manual_seed(0)
    m = UmopDetectionModel(yaml, nc=3, verbose=False)
    m.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **kw})
    return m


def constructed():
    """Neutral predictions for 2 images of 128 px and one box, pixels [1, 1, 22, 18], in image 0 (image 1 is empty).

    The box (larger than TAL's 16 px floor) contains the centres of exactly 6 P3 anchors (x 4, 12, 20; y 4, 12), one P4
    (8, 8) and one P5 (16, 16): 8 candidates, fewer than TAL's top-10, and all with a positive alignment metric, so all
    8 and only they are positive.
    """
    preds = {"boxes": torch.zeros(2, 64, sum(SIZES)), "scores": torch.zeros(2, 3, sum(SIZES)),
             "feats": [torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 4, 4)]}
    batch = {"batch_idx": torch.tensor([0.0]), "cls": torch.tensor([[1.0]]),
             "bboxes": torch.tensor([[11.5, 9.5, 21.0, 17.0]]) / 128}
    return preds, batch


@pytest.mark.parametrize("umop, kind", [(False, LevelSplitDetectionLoss), (True, PFLDetectionLoss)])
def test_known_positives_per_level_and_loss_shares_that_add_up_to_the_cls_term(umop, kind):
    criterion = model(umop=umop).init_criterion()
    assert type(criterion) is kind
    preds, batch = constructed()
    (fg_mask, gt_index, *_), loss, _ = criterion.get_assigned_targets_and_loss(preds, batch)
    stats = criterion.last_stats
    assert [int(m.sum()) for m in fg_mask.split(SIZES, 1)] == [6, 1, 1]
    assert stats["num_pos"].tolist() == [6, 1, 1] and stats["num_samples"].tolist() == [512, 128, 32]
    torch.testing.assert_close(stats["loss"].sum() * DEFAULT_CFG_DICT["cls"], loss[1])
    assert ("gamma" in stats) is umop

    rec = LevelRecorder(None, interval=1)
    rec.start_epoch(1, 0, ["P3", "P4", "P5"])
    rec.update(criterion_stats(criterion))
    means = rec.end_epoch()
    assert [means[f"level/pos_ratio_{n}"] for n in ("P3", "P4", "P5")] == pytest.approx([6 / 512, 1 / 128, 1 / 32])

    report = LevelReport(["P3", "P4", "P5"], [8, 16, 32])
    report.add(LevelAssignment(fg_mask, gt_index, SIZES), num_boxes=1)
    assert report.ratios == [[6 / 256, 0.0], [1 / 64, 0.0], [1 / 16, 0.0]]  # per image
    assert report.objects == [1, 1, 1] and report.unassigned == 0 and report.positives == [6, 1, 1]


def test_stock_criterion_loss_shares_are_the_bce_split_by_level():
    """With neutral logits every BCE entry is log 2: each level's share is (its entries) * log 2 / normaliser (1)."""
    criterion = model(umop=False).init_criterion()
    preds, batch = constructed()
    criterion.get_assigned_targets_and_loss(preds, batch)
    want = torch.tensor([2 * n * 3 for n in SIZES], dtype=torch.float32) * torch.log(torch.tensor(2.0))
    torch.testing.assert_close(criterion.last_stats["loss"], want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("yaml, umop, branches", [("yolov8n.yaml", True, [""]),
                                                   ("yolo26n.yaml", False, ["o2m", "o2o"])])  # both losses, E2E head
def test_analyze_assignment_equals_the_criterion_positives(yaml, umop, branches):
    """End to end on a real forward pass: `umop analyze`'s positives per level are what the loss trains with, in every
    branch of an end-to-end head; the one-to-one branch keeps at most one positive per object."""
    g = torch.Generator().manual_seed(0)
    batch = {"img": torch.rand(2, 3, 128, 128, generator=g), "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
             "cls": torch.tensor([[0.0], [2.0], [1.0]]),
             "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.2, 0.2, 0.08, 0.08], [0.6, 0.6, 0.8, 0.5]])}
    m = model(yaml, umop=umop).eval()
    with torch.no_grad():
        m.loss(batch)  # eval mode: the same predictions analyze sees
        stats = branch_stats(m.criterion)
        assignments = assign(m, batch)
    reports = analyze_levels(m, [batch], total=1)
    assert list(assignments) == list(stats) == list(reports) == branches
    for branch, (pos, gt_index, sizes) in assignments.items():
        assert sizes == SIZES and gt_index.shape == pos.shape == (2, sum(SIZES))
        assert [int(p.sum()) for p in pos.split(sizes, 1)] == stats[branch]["num_pos"].tolist()
        report = reports[branch]
        assert report.positives == stats[branch]["num_pos"].long().tolist() and report.branch == branch
        assert report.num_boxes == 3 and report.images == 2
        assert all(0 <= o <= 3 for o in report.objects)
        assert len(report.rows()) == 3 and "P5" in report.table()
    if "o2o" in reports:
        assert 0 < sum(reports["o2o"].positives) <= 3 < sum(reports["o2m"].positives)
        assert "one-to-one branch" in reports["o2o"].table()
