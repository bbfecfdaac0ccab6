"""RetinaNet / ATSS on Ultralytics YOLO backbones: the shipped YAMLs, P6/P7, schema errors, fusing, the registry."""

import dataclasses

import pytest
import torch

from umop_yolo.cfg import CFG_DIR, load_yaml
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.errors import UserInputError
from umop_yolo.nn.detectors import DETECTORS
from umop_yolo.nn.yolo_backbone import YOLOBackbone

YAMLS = ["atss_yolov8n.yaml", "retinanet_yolov8n.yaml", "atss_yolo11n.yaml", "retinanet_yolo11n.yaml"]
SCHEDULE = ("data", "epochs", "imgsz", "batch", "nbs", "warmup_epochs", "close_mosaic", "optimizer", "lr0")
UMOP_ONLY = {"umop", "lrp", "pfl_delta", "pfl_statistic", "lrp_reduction"}


def batch(n_img=2, size=64):
    return {"img": torch.rand(n_img, 3, size, size), "batch_idx": torch.tensor([1.0, 0, 1]),
            "cls": torch.tensor([[2.0], [0], [1]]),
            "bboxes": torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.5, 0.5, 0.25, 0.5], [0.75, 0.5, 0.5, 0.5]])}


@pytest.mark.parametrize("name", YAMLS)
def test_shipped_yamls_keep_the_yolo_levels_and_meet_the_detect_contract(name):
    model = DenseDetectionModel(name, nc=3, verbose=False)
    per_loc = 9 if name.startswith("retinanet") else 1
    assert isinstance(model.model[0], YOLOBackbone) and model.stride.tolist() == [8, 16, 32]
    x = torch.rand(2, 3, 64, 96)
    preds = model(x)
    sizes = [per_loc * (8 // 2**i) * (12 // 2**i) for i in range(3)]
    assert preds["cls_logits"].shape == (2, sum(sizes), 3) and [f.shape[1] for f in preds["feats"]] == [64] * 3
    loss, items = model.loss(batch())
    assert torch.isfinite(loss) and set(items) >= {"box_loss", "cls_loss"}
    model.eval()
    y, _ = model(x)
    assert y.shape == (2, 4 + 3, sum(sizes))  # every anchor kept: nms_pre 1000 > anchors per level here


def test_five_levels_add_p6_p7_to_the_yolo_outputs():
    cfg = {"detector": "atss", "backbone": {"yolo": "yolov8n.yaml"}, "neck": {"out_channels": 32, "num_outs": 5},
           "head": {"feat_channels": 32, "stacked_convs": 1, "gn_groups": 8}}
    model = DenseDetectionModel(cfg, nc=2, verbose=False)
    assert model.stride.tolist() == [8, 16, 32, 64, 128] and len(model.model[-1].head.scales) == 5
    feats = model(torch.rand(1, 3, 128, 128))["feats"]
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 16, 16), (32, 8, 8), (32, 4, 4), (32, 2, 2), (32, 1, 1)]


@pytest.mark.parametrize("backbone, neck, head, match", [
    ({"yolo": "nosuch_yolo.yaml"}, {}, {}, "backbone.yolo 'nosuch_yolo.yaml' not found"),
    ({"yolo": "atss_r18_fpn.yaml"}, {}, {}, "backbone.yolo 'atss_r18_fpn.yaml' is not a YOLO detection YAML"),
    ({"yolo": 8}, {}, {}, "backbone.yolo=8"),
    ({"yolo": "yolov8n.yaml", "depth": 18}, {}, {}, "backbone.depth"),
    ({"yolo": "yolov8n.yaml"}, {"add_extra_convs": "on_input"}, {}, "neck.add_extra_convs"),
    ({"yolo": "yolov8n.yaml"}, {}, {"feat_channels": 64, "gn_groups": 32 + 16}, "gn_groups=48 must divide"),
])
def test_bad_yolo_backbone_settings_name_their_key(backbone, neck, head, match):
    with pytest.raises(UserInputError, match=match):
        DenseDetectionModel({"detector": "atss", "backbone": backbone, "neck": neck, "head": head}, verbose=False)


def test_fuse_folds_the_yolo_batchnorms_and_keeps_the_detections():
    model = DenseDetectionModel("atss_yolov8n.yaml", nc=3, verbose=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]
        assert not model.is_fused()
        after = model.fuse(verbose=False)(x)[0]
    assert model.is_fused()
    torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-3)


def test_a_new_head_is_one_registry_entry(monkeypatch):
    """A RetinaNet variant with one square anchor per location, added without touching the model code."""
    spec = DETECTORS["retinanet"]
    one_anchor = {**spec.defaults, "anchors": {"octave_base_scale": 4, "scales_per_octave": 1, "ratios": [1.0]}}
    monkeypatch.setitem(DETECTORS, "retinanet_1a", dataclasses.replace(spec, defaults=one_anchor))
    model = DenseDetectionModel({"detector": "retinanet_1a", "backbone": {"yolo": "yolov8n.yaml"},
                                 "neck": {"out_channels": 32, "num_outs": 3},
                                 "head": {"feat_channels": 32, "stacked_convs": 1}}, nc=3, verbose=False)
    assert model.model[-1].head.retina_cls.out_channels == 3  # 1 anchor x 3 classes
    loss, items = model.loss(batch())
    assert torch.isfinite(loss) and set(items) == {"box_loss", "cls_loss"}


@pytest.mark.parametrize("detector", ["atss", "retinanet"])
def test_cpu_experiments_are_the_default_yolo_job_with_another_head(detector):
    job = load_yaml(CFG_DIR / "yolov8n_umop.yaml")
    umop, focal = (load_yaml(CFG_DIR / f"yolov8n_{detector}_{loss}.yaml") for loss in ("umop", "focal"))
    for cfg in (umop, focal):
        assert {k: cfg.get(k) for k in SCHEDULE} == {k: job.get(k) for k in SCHEDULE}
        assert cfg["model"] == f"{detector}_yolov8n.yaml"
    assert umop["umop"] and not focal["umop"] and {k: job[k] for k in UMOP_ONLY} == {k: umop[k] for k in UMOP_ONLY}
    assert {k: v for k, v in umop.items() if k not in UMOP_ONLY} == {k: v for k, v in focal.items() if k != "umop"}
