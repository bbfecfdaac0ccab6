"""Checkpoints that travel: a YOLO model trained here is saved as Ultralytics' own DetectionModel, so plain Ultralytics
(umop_yolo not importable) loads it and predicts the same boxes, also under ULTRALYTICS_SAFE_LOAD=1; loaded by us it is
a UmopDetectionModel again. RetinaNet/ATSS checkpoints keep their own classes; Ultralytics' `yolo train` on one stops
with one line."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from ultralytics.cfg import entrypoint
from ultralytics.nn.tasks import DetectionModel

from conftest import tiny_train_args
from umop_yolo.cli import run
from umop_yolo.data.resolve import resolve_data
from umop_yolo.engine.api import UmopYOLO
from umop_yolo.engine.build import build_model
from umop_yolo.engine.checkpoint import load_file
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.saving import saved_as_ultralytics
from umop_yolo.errors import UserInputError

PLAIN_PREDICT = """
import importlib.abc, json, sys

class NoUmop(importlib.abc.MetaPathFinder):  # as if umop_yolo were not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "umop_yolo":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoUmop())
import torch
from ultralytics import YOLO

torch.set_num_threads(int(sys.argv[3]))
model = YOLO(sys.argv[1])
boxes = model.predict(sys.argv[2], imgsz=128, conf=0.001, iou=0.7, max_det=300, verbose=False)[0].boxes.data
print(json.dumps({"class": type(model.model).__name__, "boxes": boxes.tolist(),
                  "umop_modules": [m for m in sys.modules if m.startswith("umop_yolo")]}))
"""


def umop_globals(path) -> list[str]:
    return [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if g.startswith("umop_yolo")]


@pytest.fixture(scope="module")
def trained(tiny_shapes, tmp_path_factory):
    """weights/ of a 1-epoch UMOP training of YOLOv8n, and an image to predict on."""
    project = tmp_path_factory.mktemp("portable")
    run("train", tiny_train_args(tiny_shapes, project, pfl_delta=0.3))
    image = project / "image.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return project / "run" / "weights", image


@pytest.mark.slow
def test_yolo_checkpoints_name_no_umop_class_and_load_here_as_umop(trained):
    weights, _ = trained
    for name in ("best.pt", "last.pt"):
        assert umop_globals(weights / name) == []
        ckpt = load_file(weights / name)
        assert type(ckpt["model"]) is UmopDetectionModel and ckpt["train_args"]["pfl_delta"] == 0.3


@pytest.mark.slow
@pytest.mark.parametrize("safe_load", ["0", "1"])
def test_plain_ultralytics_predicts_the_same_boxes(safe_load, trained, tmp_path):
    weights, image = trained
    env = {k: v for k, v in os.environ.items() if k != "YOLO_AUTOINSTALL"}  # plain Ultralytics' defaults
    env.update(ULTRALYTICS_SAFE_LOAD=safe_load, YOLO_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", PLAIN_PREDICT, str(weights / "best.pt"), str(image),
                           str(torch.get_num_threads())], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    assert plain["class"] == "DetectionModel" and plain["umop_modules"] == []
    ours = UmopYOLO(weights / "best.pt")
    assert type(ours.model) is UmopDetectionModel
    boxes = ours.predict(str(image), imgsz=128, conf=0.001, iou=0.7, max_det=300, verbose=False)[0].boxes.data
    assert len(plain["boxes"]) > 0 and torch.equal(torch.tensor(plain["boxes"]), boxes)


def test_saved_as_ultralytics_only_while_saving_and_only_yolo_heads(tmp_path):
    yolo = build_model("yolov8n.yaml", nc=2, verbose=False)
    dense = build_model("atss_r18_fpn.yaml", nc=2, verbose=False)
    with saved_as_ultralytics(yolo), saved_as_ultralytics(dense):
        assert type(yolo) is DetectionModel and type(dense) is DenseDetectionModel
        torch.save({"ema": yolo, "train_args": {"umop": True}}, tmp_path / "yolo.pt")
        torch.save({"ema": yolo}, tmp_path / "stock.pt")
    assert type(yolo) is UmopDetectionModel
    with pytest.raises(KeyError), saved_as_ultralytics(yolo):
        raise KeyError
    assert type(yolo) is UmopDetectionModel
    assert umop_globals(tmp_path / "yolo.pt") == []
    assert type(load_file(tmp_path / "yolo.pt")["ema"]) is UmopDetectionModel
    assert type(load_file(tmp_path / "stock.pt")["ema"]) is DetectionModel  # not trained here: left as it is


@pytest.mark.parametrize("yaml", ["atss_r18_fpn.yaml", "retinanet_yolov8n.yaml"])
def test_stock_yolo_train_on_a_dense_checkpoint_stops_in_one_line(yaml, tiny_shapes, tmp_path):
    """Ultralytics' `yolo train model=atss.pt` builds its own DetectionModel from the checkpoint's model YAML, which
    describes a RetinaNet/ATSS model: one line naming `umop train`, not `KeyError: 0`."""
    path = tmp_path / "dense.pt"
    torch.save({"model": build_model(yaml, nc=5, verbose=False).half(), "train_args": {"umop": True}}, path)
    command = (f"yolo train model={path} data={resolve_data(tiny_shapes)} epochs=1 imgsz=64 batch=8 device=cpu "
               f"workers=0 project={tmp_path} name=run")
    with pytest.raises(UserInputError, match="umop train") as error:
        entrypoint(command)
    assert "\n" not in str(error.value)
