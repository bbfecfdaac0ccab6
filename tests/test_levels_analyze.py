"""`umop analyze` end to end on the tiny generated dataset: the numbers each loss family's assignment gives.

The expected values were recorded with the implementation that read each criterion's internals (TaskAlignedAssigner
through `v8DetectionLoss.get_assigned_targets_and_loss`, the dense heads' anchors and assigner), before `analyze` used
only the criterion's `assign`; they must not change.
"""

import csv
from types import SimpleNamespace

import pytest
import torch
from ultralytics import YOLO
from ultralytics.utils import DEFAULT_CFG_DICT

from umop_yolo.cli import run
from umop_yolo.diagnostics.analyze import LevelReport, assign, checkpoint_model
from umop_yolo.engine.build import build_model
from umop_yolo.engine.model import UmopDetectionModel

RECORDED = {  # model, umop -> positives, objects per level (P3-P5); boxes without a positive anchor; anchors per image
    ("yolov8n.yaml", True): ([528, 33, 3], [65, 23, 3], 0, [256, 64, 16]),
    ("yolo26n.yaml", False): ([425, 142, 7], [64, 50, 4], 0, [256, 64, 16]),  # end to end: the one-to-many branch
    ("atss_yolov8n.yaml", True): ([419, 6, 0], [63, 1, 0], 1, [256, 64, 16]),
    ("retinanet_yolov8n.yaml", False): ([869, 78, 4], [63, 10, 1], 1, [2304, 576, 144]),  # 9 anchors per location
}
RATIO_SUMS = {  # per level: the sum over images of positive anchors / anchors of the level
    "yolov8n.yaml": [2.0625, 0.515625, 0.1875],
    "yolo26n.yaml": [1.660156, 2.21875, 0.4375],
    "atss_yolov8n.yaml": [1.636719, 0.09375, 0.0],
    "retinanet_yolov8n.yaml": [0.37717, 0.135417, 0.027778],
}


@pytest.mark.parametrize("model, umop", list(RECORDED))
def test_analyze_gives_the_recorded_positives_for_both_loss_families(model, umop, tiny_shapes, tmp_path):
    reports = run("analyze", [f"model={model}", f"umop={umop}", f"data={tiny_shapes}", "imgsz=128", "batch=4",
                              "device=cpu", f"project={tmp_path}", "name=an", "batches=2"])
    report = reports["o2m" if "yolo26" in model else ""]
    positives, objects, unassigned, anchors = RECORDED[model, umop]
    assert (report.images, report.num_boxes) == (8, 65)
    assert report.positives == positives and report.objects == objects and report.unassigned == unassigned
    assert report.anchors == anchors
    assert [sum(r) for r in report.ratios] == pytest.approx(RATIO_SUMS[model], abs=1e-6)
    assert (tmp_path / "an" / "levels_table.csv").is_file()


def test_analyze_reports_both_branches_of_an_end_to_end_head(tiny_shapes, tmp_path):
    """YOLO26: the one-to-one branch's own assignment beside the one-to-many one, in the table (a `branch` column, as
    levels.csv) and in one plot per branch; one-to-one keeps at most one positive per object."""
    reports = run("analyze", ["model=yolo26n.yaml", f"data={tiny_shapes}", "imgsz=128", "batch=4", "device=cpu",
                              f"project={tmp_path}", "name=an", "batches=2"])
    assert list(reports) == ["o2m", "o2o"]
    o2m, o2o = reports.values()
    assert o2m.positives == RECORDED["yolo26n.yaml", False][0]  # the same batches for both branches
    assert (o2o.images, o2o.num_boxes) == (8, 65)
    assert o2o.positives == o2o.objects  # one positive per object: it counts once, on one level
    assert sum(o2o.objects) + o2o.unassigned == o2o.num_boxes and sum(o2o.positives) < sum(o2m.positives)
    with open(tmp_path / "an" / "levels_table.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["branch"], r["level"]) for r in rows] == [(b, p) for b in ("o2m", "o2o") for p in ("P3", "P4", "P5")]
    assert [float(r["objects"]) for r in rows[3:]] == o2o.objects
    assert all((tmp_path / "an" / f"levels_pos_ratio_{b}.png").is_file() for b in ("o2m", "o2o"))
    assert not (tmp_path / "an" / "levels_pos_ratio.png").exists()


def test_a_stock_ultralytics_checkpoint_is_analyzed_with_its_own_weights_and_assigner(tmp_path):
    """Rebuilt as ours (a criterion with `assign`): the same weights give the assignment of Ultralytics' own loss."""
    torch.manual_seed(0)
    YOLO("yolov8n.yaml").save(tmp_path / "stock.pt")
    stock, ours = YOLO(tmp_path / "stock.pt").model.float().eval(), checkpoint_model(str(tmp_path / "stock.pt")).eval()
    assert type(stock).__name__ == "DetectionModel" and isinstance(ours, UmopDetectionModel)
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in stock.state_dict().items())
    g = torch.Generator().manual_seed(0)
    batch = {"img": torch.rand(2, 3, 128, 128, generator=g), "batch_idx": torch.tensor([0.0, 1.0]),
             "cls": torch.tensor([[3.0], [7.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.6, 0.2, 0.5]])}
    stock.args = ours.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": False})
    ours.criterion = ours.init_criterion()
    criterion, seen = stock.init_criterion(), {}
    bce = criterion.bce

    def seeing(logits, targets):  # Ultralytics' TAL target scores
        seen["targets"] = targets
        return bce(logits, targets)

    criterion.bce = seeing
    with torch.no_grad():
        (fg_mask, gt_index, *_), _, _ = criterion.get_assigned_targets_and_loss(stock(batch["img"])[1], batch)
        result = assign(ours, batch)[""]
    assert fg_mask.any() and torch.equal(result.gt_index, gt_index)
    assert torch.equal(result.pos, seen["targets"].amax(-1) > 0)  # the positives Ultralytics' loss trains with


@pytest.mark.parametrize("umop", [False, True])
def test_analyze_counts_the_positives_the_loss_trains_and_the_record_counts(umop):
    """TAL's fg_mask can hold anchors whose target score is 0 (inside the box, but their predicted box misses it: CIoU
    clamped to 0, so alignment metric 0, yet in the top 10); the loss trains them as negatives and levels.csv does not
    count them. `umop analyze` counts the same positives: anchors with a target above 0."""
    m = build_model("yolov8n.yaml", nc=2, verbose=False).eval()
    m.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": umop})
    criterion = m.criterion = m.init_criterion()
    feats = [torch.zeros(1, 1, n, n) for n in (8, 4, 2)]  # 64 px: 64 + 16 + 4 anchors at strides 8, 16, 32
    boxes = torch.full((1, 4, 16, 84), -30.0)  # (image, side, DFL bin, anchor) logits
    boxes[:, :, 0] = 30.0  # every predicted box has size 0 at its anchor point: CIoU with the box clamps to 0 ...
    boxes[:, :, :, [9, 18, 27]] = torch.where(torch.arange(16)[:, None] == 2, 30.0, -30.0)  # ... but 3: 2 cells a side
    preds = {"boxes": boxes.view(1, 64, 84), "scores": torch.zeros(1, 2, 84), "feats": feats}
    batch = {"batch_idx": torch.zeros(1), "cls": torch.zeros(1, 1), "bboxes": torch.tensor([[0.5, 0.5, 1.0, 1.0]])}
    (fg_mask, *_), _, _ = criterion.get_assigned_targets_and_loss(preds, batch)
    result = criterion.assign(preds, batch)
    num_pos = criterion.last_stats["num_pos"]
    assert fg_mask.sum() == 10 and num_pos.tolist() == [3, 0, 0]  # the top 10: 3 with a target, 7 zero-target ones
    report = LevelReport(["P3", "P4", "P5"], [8, 16, 32])
    report.add(result, num_boxes=1)
    assert report.positives == [3, 0, 0] and report.objects == [1, 0, 0] and report.unassigned == 0
    assert [sum(r) for r in report.ratios] == [3 / 64, 0, 0]
