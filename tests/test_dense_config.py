"""The typed config of a RetinaNet/ATSS model YAML: checked and parsed once, kept by the model (not pickled), and the
per-level `nms_pre` cap as a forward argument that leaves the model as it was."""

from __future__ import annotations

import pickle

import pytest
import torch
from ultralytics.utils import DEFAULT_CFG_DICT

import umop_yolo.engine.model_yaml_check as model_yaml_check
from umop_yolo.cfg import ConfigError
from umop_yolo.engine.build import build_model
from umop_yolo.engine.dense import DenseDetectionModel, decoding_at
from umop_yolo.engine.dense_schema import DenseConfig, DenseTest
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.model_yaml_check import check_model_dict
from umop_yolo.settings import UMOP_DEFAULTS

TINY = {"detector": "atss", "nc": 2, "backbone": {"depth": 18, "pretrained": None}, "neck": {"out_channels": 32},
        "head": {"feat_channels": 32, "stacked_convs": 1, "gn_groups": 8, "test": {"nms_pre": 40}}}


@pytest.fixture
def merges(monkeypatch) -> list[dict]:
    """Every YAML dict whose defaults are filled in (`merged_config`) from now on."""
    seen: list[dict] = []
    real = model_yaml_check.merged_config
    monkeypatch.setattr(model_yaml_check, "merged_config", lambda cfg: seen.append(cfg) or real(cfg))
    return seen


def test_the_yaml_is_parsed_once_for_building_and_the_criterion(merges):
    model = build_model("atss_r18_fpn.yaml", nc=3, verbose=False, backbone_weights=False)
    model.args = {**DEFAULT_CFG_DICT, **UMOP_DEFAULTS}
    model.init_criterion()
    assert len(merges) == 1
    config = model.config
    assert isinstance(config, DenseConfig) and (config.detector, config.nc) == ("atss", 3)
    assert config.test == DenseTest(nms_pre=1000, score_thr=0.05) and "test" not in config.head
    assert config.backbone["pretrained"] is False and model.model[-1].nms_pre == config.test.nms_pre


def test_a_pickled_model_leaves_its_config_out_and_derives_it_again_once(merges):
    model = DenseDetectionModel(TINY, verbose=False)
    assert "_config" not in model.__getstate__() and len(merges) == 1
    copy = pickle.loads(pickle.dumps(model))
    assert copy.config == model.config and copy.config is copy.config and len(merges) == 2


def test_only_a_checked_yaml_builds_a_model():
    bad = {**TINY, "head": {"test": {"nms_pre": [[[1]]]}}}
    with pytest.raises(ConfigError, match="head.test.nms_pre must be plain data"):
        DenseDetectionModel(bad, verbose=False)
    yolo = UmopDetectionModel("yolov8n.yaml", verbose=False).yaml
    with pytest.raises(ConfigError, match="not a RetinaNet/ATSS model YAML"):
        DenseDetectionModel(yolo, verbose=False)
    assert check_model_dict(yolo, "x") is None and check_model_dict({"detector": "retinanet"}, "x").test.nms_pre == 1000


def test_nms_pre_is_an_argument_of_the_forward_and_test_time_augmentation():
    torch.manual_seed(0)
    model = DenseDetectionModel(TINY, verbose=False).eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert model(x)[0].shape[-1] == 40 + 40 + 40 + 16 + 4  # the YAML's 40 per level: P3-P7 of 256 px
        assert model(x, nms_pre=2)[0].shape[-1] == 2 * 5
        tta = model(x, augment=True, nms_pre=2)
    assert tta.shape[-1] == 6 * 2 * 5  # 3 scales x 2 flips (each padded back to 256 px), each capped


def test_decoding_at_views_a_dense_model_and_leaves_it_as_it_was():
    model = DenseDetectionModel(TINY, verbose=False).eval()
    view = decoding_at(model, 3)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert view(x)[0].shape[-1] == 3 * 5 and model(x)[0].shape[-1] > 3 * 5
    assert view.model is model.model and dict(view.named_parameters()).keys() == dict(model.named_parameters()).keys()
    yolo = UmopDetectionModel("yolov8n.yaml", verbose=False)
    assert decoding_at(yolo, 3) is yolo and decoding_at(None, 3) is None
