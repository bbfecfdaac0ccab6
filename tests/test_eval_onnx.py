"""ONNX export with Ultralytics' exporter, run with onnxruntime: same boxes and scores as PyTorch."""

from __future__ import annotations

import pytest
import torch

import umop_yolo  # noqa: F401  (offline environment before Ultralytics is imported)
from ultralytics.engine.exporter import Exporter
from ultralytics.nn.tasks import DetectionModel

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def test_onnx_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    model.task, model.pt_path = "detect", str(tmp_path / "tiny.pt")  # the exporter names its file after pt_path
    # simplify=False: the default (True) asks for onnxslim, which is not a dependency; offline it only warns
    args = {"format": "onnx", "imgsz": 64, "batch": 1, "simplify": False, "device": "cpu"}
    exported = Exporter(overrides=args)(model=model)
    assert exported == str(tmp_path / "tiny.onnx")

    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.eval()(x)[0]
    session = onnxruntime.InferenceSession(exported, providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert output.shape == (1, 6, 84)  # xywh + 2 class scores for 8x8 + 4x4 + 2x2 anchors
    torch.testing.assert_close(torch.from_numpy(output), expected, atol=1e-4, rtol=1e-5)
