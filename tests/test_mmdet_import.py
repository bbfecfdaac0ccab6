"""MMDetection checkpoints read as data: mmengine objects become records, nothing else runs, the architecture comes from
the config in `meta` or a model YAML, and a checkpoint that does not fit stops in one line naming the tensor."""

import collections
import os
import re
from pathlib import Path

import pytest
import torch

from umop_yolo.engine.dense_schema import load_model_yaml
from umop_yolo.engine.mmdet_config import ConfigTextError, model_yaml, parse_config
from umop_yolo.engine.mmdet_import import mmdet_model
from umop_yolo.engine.mmdet_read import RecordedAttribute, RecordedObject, read_checkpoint
from umop_yolo.engine.model_yaml_check import check_model_dict
from umop_yolo.engine.run.safe_pickle import CheckpointError, UnsafeCheckpointError
from umop_yolo.errors import UserInputError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ATSS3, ATSS2 = FIXTURES / "mmdet3_atss_r18.pth", FIXTURES / "mmdet2_atss_r18.pth"
CLASSES = ["circle", "square", "triangle", "cross", "star"]


def tiny_atss_yaml() -> dict:
    """The fixture's architecture as a model YAML (what a user gives for a checkpoint without a config)."""
    return {"detector": "atss", "backbone": {"depth": 18, "base_channels": 4, "pretrained": None},
            "neck": {"out_channels": 16}, "head": {"feat_channels": 16, "stacked_convs": 2, "gn_groups": 4}}


def resave(tmp_path: Path, ckpt: dict, name: str = "x.pth") -> Path:
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name


def test_mmdet3_message_hub_is_recorded_not_run():
    ckpt = read_checkpoint(ATSS3)
    loss = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(loss, RecordedObject) and type(loss).__module__ == "mmengine.logging.history_buffer"
    assert loss.state["_log_history"].tolist() == [1.0, 0.5, 1 / 3]  # its pickled state, as data
    mean = loss.state["statistics_methods"]["mean"]  # pickled as getattr(HistoryBuffer, 'mean'): kept as a name
    assert isinstance(mean, RecordedAttribute) and mean.owner is type(loss) and mean.name == "mean"


@pytest.mark.parametrize("file", [ATSS3, ATSS2])
def test_mmdet_checkpoint_gives_architecture_classes_and_test_settings(file):
    model, ckpt = mmdet_model(file)
    assert list(model.names.values()) == CLASSES
    assert model.yaml["detector"] == "atss" and model.model[0].conv1.out_channels == 4
    assert ckpt["train_args"]["iou"] == 0.6 and ckpt["train_args"]["max_det"] == 100
    state = read_checkpoint(file)["state_dict"]
    torch.testing.assert_close(model.model[2].head.scales[3].scale, state["bbox_head.scales.3.scale"])
    torch.testing.assert_close(model.model[1].extra_convs[1].weight, state["neck.fpn_convs.4.conv.weight"])
    torch.testing.assert_close(model.model[2].head.reg_convs[4].weight, state["bbox_head.reg_convs.1.gn.weight"])


def test_legacy_non_zip_checkpoint_reads_the_same(tmp_path):
    """MMDetection 2.x model-zoo files were saved by torch < 1.6, in the legacy (non-zip) format."""
    legacy = tmp_path / "legacy.pth"
    torch.save(read_checkpoint(ATSS2), legacy, _use_new_zipfile_serialization=False)
    model = mmdet_model(legacy)[0]
    for (k, v), w in zip(model.state_dict().items(), mmdet_model(ATSS2)[0].state_dict().values()):
        assert torch.equal(v, w), k


def test_model_yaml_gives_the_architecture_of_a_checkpoint_without_config(tmp_path):
    ckpt = read_checkpoint(ATSS2)
    bare = resave(tmp_path, {"state_dict": ckpt["state_dict"], "meta": {"CLASSES": ckpt["meta"]["CLASSES"]}})
    with pytest.raises(UserInputError, match="keeps no MMDetection config.*model=atss_r50_fpn.yaml pretrained=x.pth"):
        mmdet_model(bare)
    model, _ = mmdet_model(bare, architecture=tiny_atss_yaml())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], mmdet_model(ATSS2)[0](x)[0], rtol=0, atol=0)
    assert list(model.names.values()) == CLASSES


def test_a_tensor_that_does_not_fit_is_named_in_one_line(tmp_path):
    ckpt = read_checkpoint(ATSS2)
    ckpt["state_dict"]["bbox_head.atss_reg.weight"] = torch.zeros(4, 8, 3, 3)
    with pytest.raises(CheckpointError) as error:
        mmdet_model(resave(tmp_path, ckpt))
    message = str(error.value)
    assert "bbox_head.atss_reg.weight" in message and "4x8x3x3, needs 4x16x3x3" in message and "\n" not in message
    with pytest.raises(CheckpointError, match="does not fit.*missing"):
        mmdet_model(ATSS2, architecture={**tiny_atss_yaml(), "head": {**tiny_atss_yaml()["head"], "stacked_convs": 3}})


def test_a_truncated_checkpoint_is_one_line(tmp_path):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(ATSS3.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="cut.pth' is not readable, the file is truncated or corrupt"):
        read_checkpoint(cut)


def test_backbone_weights_are_not_a_detector(tmp_path):
    backbone = {k: v for k, v in read_checkpoint(ATSS2)["state_dict"].items() if k.startswith("backbone.")}
    file = resave(tmp_path, backbone, "r18.pth")
    with pytest.raises(CheckpointError, match=f"no MMDetection ATSS or RetinaNet head.*backbone_weights={file}"):
        mmdet_model(file)


class _CallsSystem:
    def __reduce__(self):
        return os.system, ("echo pwned",)


class _GetattrOnAllowed:
    def __reduce__(self):
        return getattr, (collections.OrderedDict, "fromkeys")


@pytest.mark.parametrize("payload, refused", [(_CallsSystem(), "system"), (_GetattrOnAllowed(), "getattr")])
def test_code_in_a_checkpoint_is_refused_before_it_runs(payload, refused, tmp_path):
    ckpt = read_checkpoint(ATSS2)
    with pytest.raises(UnsafeCheckpointError, match=refused):
        read_checkpoint(resave(tmp_path, {**ckpt, "meta": {"hook": payload}}))


def test_config_is_parsed_never_run():
    text = "import os\nx = os.system('echo pwned')\nmodel = dict(type='ATSS', bbox_head=dict(num_classes=3))\n"
    assert parse_config(text, "f") == {"model": {"type": "ATSS", "bbox_head": {"num_classes": 3}}}
    with pytest.raises(ConfigTextError, match="model \\(line 1\\) is not plain data"):
        parse_config("model = dict(backbone=__import__('os'))", "f")


@pytest.mark.parametrize("change, key", [
    ({"backbone": {"style": "caffe"}}, "backbone.style='caffe'"),
    ({"neck": {"type": "PAFPN"}}, "neck.type='PAFPN'"),
    ({"neck": {"start_level": 0}}, "neck.start_level=0"),
    ({"backbone": {"deep_stem": True}}, "backbone.deep_stem=True"),
    ({"bbox_head": {"norm_cfg": None}}, "bbox_head.norm_cfg=None"),
    ({"backbone": {"dcn": {"type": "DCN"}, "stage_with_dcn": [False, True, True, True]}}, "backbone.dcn.type='DCN'"),
])
def test_an_architecture_without_counterpart_stops_naming_the_setting(change, key):
    config = parse_config(read_checkpoint(ATSS3)["meta"]["cfg"], "f")
    for part, settings in change.items():
        config["model"][part] = {**config["model"][part], **settings}
    with pytest.raises(ConfigTextError, match=re.escape(f"model.{key} has no counterpart here")):
        model_yaml(config)


ZOO_ATSS = """model = dict(
    type='ATSS',
    backbone=dict(type='ResNet', depth={depth}, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch',{dcn}
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet{depth}')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
              add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(type='ATSSHead', num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
                              strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=100))
"""
ZOO_RETINANET = """model = dict(
    type='RetinaNet',
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch'),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
              add_extra_convs='on_input', num_outs=5),
    bbox_head=dict(type='RetinaHead', num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                              ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[1.0, 1.0, 1.0, 1.0])),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                  max_per_img=100))
"""
DCN = "\n                  dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False), " \
      "stage_with_dcn=(False, True, True, True),"


@pytest.mark.parametrize("text, yaml_file, iou", [
    (ZOO_ATSS.format(depth=50, dcn=""), "atss_r50_fpn.yaml", 0.6),
    (ZOO_ATSS.format(depth=50, dcn="").replace("add_extra_convs='on_output'",  # MMDetection 2.0-2.x's spelling
                                               "add_extra_convs=True, extra_convs_on_inputs=False"),
     "atss_r50_fpn.yaml", 0.6),
    (ZOO_ATSS.format(depth=101, dcn=DCN), "atss_r101_dcn_fpn.yaml", 0.6),
    (ZOO_RETINANET, "retinanet_r50_fpn.yaml", 0.5),
])
def test_model_zoo_configs_are_our_model_yamls(text, yaml_file, iou):
    """MMDetection's own configs (atss_r50_fpn_1x_coco, atss_r101 with DCNv2, retinanet_r50_fpn_1x_coco) read as
    the model YAMLs of cfg/models, which spell out MMDetection's settings."""
    ours, test = model_yaml(parse_config(text, "zoo"))
    expected = load_model_yaml(yaml_file)
    expected["backbone"]["pretrained"] = None
    assert check_model_dict(ours, "ours") == check_model_dict(expected, yaml_file)  # the YAML as given: not compared
    assert test == {"iou": iou, "max_det": 100, "nms_pre": 1000}


def test_a_yolo_architecture_cannot_take_an_mmdetection_checkpoint():
    with pytest.raises(UserInputError, match="model 'yolov8n.yaml' is not a RetinaNet/ATSS model YAML"):
        mmdet_model(ATSS3, architecture="yolov8n.yaml")
