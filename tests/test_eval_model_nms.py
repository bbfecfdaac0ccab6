"""Standalone val and predict use the NMS settings (conf, iou, max_det, nms_pre) the checkpoint's training validated
with, unless given: a RetinaNet/ATSS experiment's 0.05 / 0.6 / 100, not Ultralytics' 0.001 / 0.7 / 300."""

from pathlib import Path

import pytest
import torch
import yaml
from ultralytics.utils import DEFAULT_CFG_DICT

from umop_yolo import UmopYOLO
from umop_yolo.data.resolve import resolve_data
from umop_yolo.engine.build import build_model
from umop_yolo.engine.validator import TEST_KEYS, training_test_args

MMDET_TEST = {"conf": 0.05, "iou": 0.6, "max_det": 100, "nms_pre": 1000}  # cfg/atss_umop.yaml


def dense_checkpoint(path: Path, **train_args) -> Path:
    """An ATSS-on-YOLOv8n checkpoint as Ultralytics' trainer writes it, trained (so to speak) with `train_args`."""
    torch.manual_seed(0)
    model = build_model("atss_yolov8n.yaml", nc=5, verbose=False)
    model.names = dict(enumerate(["circle", "square", "triangle", "cross", "star"]))
    args = {**DEFAULT_CFG_DICT, "model": "atss_yolov8n.yaml", "imgsz": 64, "task": "detect", **train_args}
    torch.save({"epoch": -1, "model": model.half(), "ema": None, "train_args": args}, path)
    return path


def test_a_checkpoint_holds_its_trainings_nms_settings():
    mmdet = {"train_args": {**DEFAULT_CFG_DICT, **MMDET_TEST}}
    assert training_test_args(mmdet, {}) == MMDET_TEST
    assert training_test_args(mmdet, {"iou": 0.5}) == {"conf": 0.05, "max_det": 100, "nms_pre": 1000}
    assert training_test_args({"train_args": DEFAULT_CFG_DICT}, {}) == {"iou": 0.7, "max_det": 300,
                                                                        "nms_pre": 300}  # conf: None
    assert training_test_args(None, {}) == {}


@pytest.mark.parametrize("given", [{}, {"conf": 0.2, "iou": 0.5, "max_det": 10, "nms_pre": 20}])
def test_val_and_predict_use_the_checkpoints_nms_settings_unless_given(tiny_shapes, tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    model = UmopYOLO(dense_checkpoint(tmp_path / "atss.pt", **MMDET_TEST))
    used = {}
    model.add_callback("on_val_start", lambda v: used.update(val={k: getattr(v.args, k) for k in TEST_KEYS}))
    model.add_callback("on_predict_start", lambda p: used.update(predict={k: getattr(p.args, k) for k in TEST_KEYS}))
    model.val(data=str(tiny_shapes), imgsz=64, batch=4, device="cpu", workers=0, plots=False, **given)
    data = yaml.safe_load(Path(resolve_data(tiny_shapes)).read_text())
    model.predict(Path(data["path"]) / data["val"], imgsz=64, device="cpu", save=False, **given)
    assert used == {"val": given or MMDET_TEST, "predict": given or MMDET_TEST}
