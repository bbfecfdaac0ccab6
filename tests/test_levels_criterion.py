"""One interface for the two loss families (`engine.criterion.LevelCriterion`): the YOLO criteria (stock and UMOP,
end to end included) and RetinaNet / ATSS expose `assign` and `last_stats`, and `assign` gives the positives the loss
trains with."""

from types import SimpleNamespace

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.loss import E2ELoss, v8DetectionLoss

from conftest import tiny_batch
from umop_yolo.diagnostics.analyze import assign
from umop_yolo.engine.build import build_model
from umop_yolo.engine.criterion import E2E_BRANCHES, LevelAssignment, LevelCriterion, level_branches
from umop_yolo.engine.dense_criterion import DenseCriterion
from umop_yolo.engine.loss import LevelSplitDetectionLoss

SIZES = [16 * 16, 8 * 8, 4 * 4]  # anchors per location and level at 128 px, strides 8, 16, 32
MODELS = [("yolov8n.yaml", True), ("yolov8n.yaml", False), ("yolo26n.yaml", True),  # yolo26n: end-to-end head
          ("atss_yolov8n.yaml", True), ("retinanet_yolov8n.yaml", False)]


def model(yaml, umop):
    torch.manual_seed(0)
    m = build_model(yaml, nc=3, verbose=False)
    m.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": umop})
    return m


@pytest.mark.parametrize("yaml, umop", MODELS)
def test_both_loss_families_assign_the_positives_their_loss_trains_with(yaml, umop):
    m, b = model(yaml, umop).train(), tiny_batch()
    m.criterion = m.init_criterion()
    branches = level_branches(m.criterion)
    assert list(branches) == (["o2m", "o2o"] if "yolo26" in yaml else [""])
    preds = m(b["img"])
    m.criterion(preds, b)
    for name, criterion in branches.items():
        assert isinstance(criterion, LevelCriterion)
        assert isinstance(criterion, DenseCriterion if "detector" in m.yaml else LevelSplitDetectionLoss)
        stats = {k: v.clone() for k, v in criterion.last_stats.items()}
        result = criterion.assign(preds[E2E_BRANCHES[name]] if name else preds, b)  # E2ELoss: each its own
        assert isinstance(result, LevelAssignment)
        anchors_per_location = 9 if "retinanet" in yaml else 1
        assert result.level_sizes == [n * anchors_per_location for n in SIZES]
        assert result.pos.shape == result.gt_index.shape == (2, sum(result.level_sizes))
        assert [int(p.sum()) for p in result.pos.split(result.level_sizes, 1)] == stats["num_pos"].tolist()
        assert stats["num_samples"].tolist() == [2 * n for n in result.level_sizes]
        assert int(result.pos.sum()) > 0


def test_end_to_end_heads_record_both_branches_and_foreign_criteria_have_no_levels():
    m = model("yolo26n.yaml", umop=False)
    e2e = m.init_criterion()
    assert isinstance(e2e, E2ELoss) and level_branches(e2e) == {"o2m": e2e.one2many, "o2o": e2e.one2one}
    assert level_branches(None) == {}

    torch.manual_seed(0)
    stock = DetectionModel("yolov8n.yaml", nc=3, verbose=False).eval()  # Ultralytics' own: v8DetectionLoss
    stock.args = m.args
    stock.criterion = stock.init_criterion()
    assert type(stock.criterion) is v8DetectionLoss and level_branches(stock.criterion) == {}
    with pytest.raises(TypeError, match="DetectionModel.*v8DetectionLoss"):
        assign(stock, tiny_batch())
