"""Level statistics and `umop analyze` for the RetinaNet / ATSS heads."""

from types import SimpleNamespace

import pytest
import torch
from ultralytics.utils import DEFAULT_CFG_DICT

from conftest import tiny_batch
from umop_yolo.diagnostics.analyze import analyze_levels
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.levels.level_stats import LevelRecorder, criterion_stats, level_names

TINY = {"backbone": {"depth": 18, "pretrained": None}, "neck": {"out_channels": 16},
        "head": {"feat_channels": 16, "stacked_convs": 1}}


def tiny_model(detector: str, umop: bool):
    torch.manual_seed(0)
    head = {**TINY["head"], **({"gn_groups": 4} if detector == "atss" else {})}
    m = DenseDetectionModel({"detector": detector, "nc": 3, **TINY, "head": head}, verbose=False)
    m.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": umop})
    return m


@pytest.mark.parametrize("detector", ["retinanet", "atss"])
def test_dense_heads_record_levels_and_analyze_matches_their_assigner(detector):
    m = tiny_model(detector, umop=True).train()
    m.loss(tiny_batch())
    stats = criterion_stats(m.criterion)
    names = level_names(m.stride)
    assert names == ["P3", "P4", "P5", "P6", "P7"] and stats["num_pos"].shape == (5,)
    assert stats["num_pos"].sum() > 0

    rec = LevelRecorder(None, interval=4)
    rec.start_epoch(1, 0, names)
    rec.update(stats)
    means = rec.end_epoch()
    ratio = (stats["num_pos"] / stats["num_samples"]).tolist()
    assert [means[f"level/pos_ratio_{n}"] for n in names] == pytest.approx(ratio)
    measured = torch.where(stats["num_pos"] > 0, stats["gamma"], torch.nan)  # levels without positives: a gap
    assert [means[f"pfl/gamma_{n}"] for n in names] == pytest.approx(measured.tolist(), nan_ok=True)

    # anchor-based assigners: the same positives whatever the predictions and the classification loss
    for model in (m, tiny_model(detector, umop=False)):
        report = analyze_levels(model, [tiny_batch()], total=1)[""]
        assert report.positives == stats["num_pos"].long().tolist()
        assert sum(report.objects) >= 3 - report.unassigned
    if detector == "retinanet":  # low-quality matches give every box an anchor
        assert report.unassigned == 0
