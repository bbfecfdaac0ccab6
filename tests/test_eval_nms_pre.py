"""The `nms_pre` setting: per image only the best `nms_pre` (box, class) scores enter NMS, in val, predict and
test-time augmentation, for YOLO and RetinaNet/ATSS heads (whose per-level cap is the same number); the default is
the documented one, a checkpoint keeps its training's value, and a bad value stops in one line."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.nms import TorchNMS

import umop_yolo.engine.model as umop_model
from scenes import predict, validate, write_scenes
from umop_yolo import help as umop_help
from umop_yolo.cfg import mode_args
from umop_yolo.engine.dense import DenseDetectionModel, DenseHead
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.validator import CocoDetectionValidator, training_test_args
from umop_yolo.errors import UserInputError
from umop_yolo.nn.postprocess import keep_top_scores
from umop_yolo.settings import UMOP_SETTINGS

DEFAULT = UMOP_SETTINGS["nms_pre"][0]


@pytest.fixture
def nms_inputs(monkeypatch) -> list[int]:
    """The number of boxes every NMS call of Ultralytics receives (torchvision's kernel or its own)."""
    seen: list[int] = []
    for owner, name in ((torchvision.ops, "nms"), (TorchNMS, "nms")):
        real = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda boxes, *a, real=real, **k: seen.append(len(boxes)) or real(boxes, *a,
                                                                                                           **k))
    return seen


class ManyBoxes(nn.Module):
    """Stub head-contract model: `n` random boxes per image, every class scored in (0.01, 1): 2n candidates."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.names = {0: "red", 1: "green"}
        self.register_buffer("stride", torch.tensor([32.0]))
        self.n = n

    def forward(self, x: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, dict]:
        g = torch.Generator().manual_seed(0)
        h, w = x.shape[-2:]
        xy = torch.rand(len(x), 2, self.n, generator=g) * torch.tensor([[w], [h]])
        wh = torch.rand(len(x), 2, self.n, generator=g) * 30 + 4
        scores = torch.rand(len(x), 2, self.n, generator=g) * 0.99 + 0.01
        return torch.cat([xy, wh, scores], 1).to(x.device), {}


def confident_yolo() -> UmopDetectionModel:
    """YOLOv8n (2 classes) whose class logits start at 0: every (anchor, class) scores about 0.5, a candidate."""
    torch.manual_seed(0)
    model = UmopDetectionModel("yolov8n.yaml", nc=2, verbose=False)
    for branch in model.model[-1].cv3:
        branch[-1].bias.data.zero_()
    model.names = {0: "red", 1: "green"}
    return model.eval()


def test_each_image_keeps_its_k_best_scores_and_every_box():
    y = torch.cat([torch.rand(2, 4, 5), torch.tensor([[[0.1, 0.9, 0.3, 0.0, 0.5], [0.8, 0.2, 0.7, 0.4, 0.6]],
                                                      [[0.5, 0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1, 0.9]]])], 1)
    kept = keep_top_scores((y, {}), 3)  # a head's (y, raw) as the validator gets it
    assert torch.equal(kept[:, :4], y[:, :4])
    assert torch.equal(kept[0, 4:], torch.tensor([[0, 0.9, 0, 0, 0], [0.8, 0, 0.7, 0, 0]]))
    assert (kept[1, 4:] > 0).sum() == 3 and kept[1, 5, 4] == y[1, 5, 4]  # ties at 0.5: any two of them
    assert keep_top_scores(y, 10) is y  # no more than k scores: untouched


@pytest.mark.parametrize("nms_pre", [None, 100])
def test_validation_nms_sees_at_most_nms_pre_candidates(tmp_path, nms_inputs, nms_pre):
    data = write_scenes(tmp_path / "scenes")
    given = {} if nms_pre is None else {"nms_pre": nms_pre}
    validator, _ = validate(data, tmp_path / "val", ManyBoxes(700), conf=0.001, **given)  # 1400 candidates an image
    assert validator.args.nms_pre == (nms_pre or DEFAULT)
    assert nms_inputs and set(nms_inputs) == {nms_pre or DEFAULT}  # the best nms_pre of each image: the default 300


def test_prediction_nms_sees_at_most_nms_pre_candidates(tmp_path, nms_inputs):
    write_scenes(tmp_path / "scenes")
    predict(tmp_path / "scenes" / "images" / "val", tmp_path / "pred", ManyBoxes(700), conf=0.001, nms_pre=50,
            save=False, save_txt=False)
    assert nms_inputs and max(nms_inputs) <= 50  # best class per box: at most one box per kept score


@pytest.mark.parametrize("mode", ["val", "predict"])
def test_test_time_augmentation_is_capped_too(tmp_path, nms_inputs, monkeypatch, mode):
    passes = []
    real = umop_model.predict_augment
    monkeypatch.setattr(umop_model, "predict_augment", lambda m, x: passes.append(x.shape) or real(m, x))
    data = write_scenes(tmp_path / "scenes")
    settings = {"augment": True, "conf": 0.001, "nms_pre": 64, "imgsz": 64}
    if mode == "val":
        validate(data, tmp_path / "val", confident_yolo(), **settings)
    else:
        predict(tmp_path / "scenes" / "images" / "val", tmp_path / "pred", confident_yolo(), save=False,
                save_txt=False, **settings)
    assert passes  # the multi-scale + flip passes ran (6 x 84 anchors x 2 classes per image here)
    assert nms_inputs and max(nms_inputs) <= 64 and (mode == "predict" or set(nms_inputs) == {64})


def test_dense_heads_take_the_same_number_as_their_per_level_cap(tmp_path, monkeypatch):
    model = DenseDetectionModel({"detector": "atss", "nc": 2, "backbone": {"depth": 18, "pretrained": None},
                                 "neck": {"out_channels": 32},
                                 "head": {"feat_channels": 32, "stacked_convs": 1, "gn_groups": 8}}, verbose=False)
    model.names = {0: "red", 1: "green"}
    head = model.model[-1]
    assert head.nms_pre == 1000  # the model YAML's test: nms_pre, the cap of a forward given none (export)
    x = torch.rand(1, 3, 160, 160)
    backend = AutoBackend(model=model.eval(), device=torch.device("cpu"), fuse=False, verbose=False)
    assert backend(x, nms_pre=3)[0].shape[-1] == 3 * 5  # the argument passes through Ultralytics' AutoBackend
    columns = []
    real = DenseHead._inference
    monkeypatch.setattr(DenseHead, "_inference", lambda self, *a: columns.append(real(self, *a).shape[-1])
                        or columns[-1] and real(self, *a))
    data = write_scenes(tmp_path / "scenes")
    validate(data, tmp_path / "val", model.eval(), nms_pre=2)
    assert set(columns) == {2 * 5}  # 2 anchors on each of P3-P7 (P7 of a 160 px image has 2 x 1 or more)
    columns.clear()
    predict(tmp_path / "scenes" / "images" / "val", tmp_path / "pred", model, nms_pre=1, save=False, save_txt=False)
    assert set(columns) == {1 * 5}
    y, raw = model(x)
    assert head.nms_pre == 1000 and y.shape[-1] == raw["cls_logits"].shape[1]  # left as it was: every anchor kept
    columns.clear()
    torch.save({"model": model, "train_args": {}}, tmp_path / "best.pt")  # a training's final check validates a file
    validate(data, tmp_path / "val", tmp_path / "best.pt", nms_pre=4)
    assert set(columns) == {4 * 5}


def test_the_default_is_the_documented_one_and_checkpoints_keep_theirs():
    assert DEFAULT_CFG_DICT["nms_pre"] == DEFAULT == 300
    assert CocoDetectionValidator(args={}).args.nms_pre == DEFAULT
    assert training_test_args({"train_args": {**DEFAULT_CFG_DICT, "nms_pre": 1000}}, {})["nms_pre"] == 1000
    assert "nms_pre" not in training_test_args({"train_args": {**DEFAULT_CFG_DICT, "nms_pre": 300}}, {"nms_pre": 9})
    assert f"nms_pre={DEFAULT} " in " ".join(umop_help.guide().split())  # `umop help` documents it


@pytest.mark.parametrize("mode", ["val", "predict", "train"])
@pytest.mark.parametrize("value", [0, -5, 2.5, "many", True])
def test_a_bad_value_stops_in_one_line(mode, value):
    with pytest.raises(UserInputError) as error:
        mode_args(mode, {"model": "yolov8n.yaml", "nms_pre": value})
    assert str(error.value) == f"nms_pre={value!r} must be an integer >= 1 (candidates per image that enter NMS)"
