"""ONNX export with Ultralytics' exporter, run with onnxruntime: same boxes and scores as PyTorch."""

from __future__ import annotations

import pytest
import torch
from ultralytics.engine.exporter import Exporter

from umop_yolo.engine.build import build_model

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.parametrize("cfg, imgsz", [("yolov8n.yaml", 64), ("retinanet_r18_fpn.yaml", 128),
                                        ("atss_r18_fpn.yaml", 128), ("atss_yolov8n.yaml", 64),
                                        ("retinanet_yolo11n.yaml", 64)])
def test_onnx_matches_pytorch_for_every_head(cfg, imgsz, tmp_path):
    torch.manual_seed(0)
    model = build_model(cfg, nc=2, verbose=False)
    if hasattr(model.model[-1], "nms_pre"):  # RetinaNet/ATSS: keep every anchor, so the set cannot change at the cut
        model.model[-1].nms_pre = 10**6
    model.task, model.pt_path = "detect", str(tmp_path / "tiny.pt")  # the exporter names its file after pt_path
    # simplify=False: the default (True) asks for onnxslim, which is not a dependency; offline it only warns
    args = {"format": "onnx", "imgsz": imgsz, "batch": 1, "simplify": False, "device": "cpu"}
    exported = Exporter(overrides=args)(model=model)
    assert exported == str(tmp_path / "tiny.onnx")

    assert_same_outputs(model, onnxruntime.InferenceSession(exported, providers=["CPUExecutionProvider"]), imgsz)


def assert_same_outputs(model: torch.nn.Module, ort_model: onnxruntime.InferenceSession, imgsz: int) -> None:
    """The ONNX Runtime model and the PyTorch model give the same (1, 4 + nc, N) output on one random image."""
    x = torch.rand(1, 3, imgsz, imgsz)
    with torch.no_grad():
        expected = model.eval()(x)[0]
    (output,) = ort_model.run(None, {ort_model.get_inputs()[0].name: x.numpy()})
    assert output.shape == expected.shape and output.shape[1] == 6  # xywh + 2 class scores per kept anchor
    # Dense heads sort anchors by score, and onnxruntime's ~1e-4 differences reorder near-equal scores: compare the
    # outputs as sets, each row matched to its nearest row of the other output, both ways (boxes clipped to the image
    # can be identical rows, so the matching need not be a permutation).
    got, want = torch.from_numpy(output)[0].T, expected[0].T
    torch.testing.assert_close(got, want[torch.cdist(got, want).argmin(1)], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(want, got[torch.cdist(want, got).argmin(1)], atol=1e-3, rtol=1e-3)


def test_dynamic_onnx_keeps_each_levels_top_k_cap_at_every_input_size(tmp_path):
    """A cap of 200 per level, on anchors and then on (anchor, class) pairs (2 classes). Exported at 128 px, P3 (256
    anchors, 512 pairs) is over both caps and P4 (64 anchors, 128 pairs) under them; at 192 px P4's 288 pairs must be
    cut to 200 as in PyTorch, and at 64 px P3 (64 anchors, 128 pairs) must not ask TopK for 200."""
    torch.manual_seed(0)
    model = build_model("atss_yolov8n.yaml", nc=2, verbose=False)
    head = model.model[-1]
    head.nms_pre, head.score_thr = 200, 0.0
    torch.nn.init.normal_(head.head.atss_cls.weight, std=10.0)  # spread scores: no near-ties where the top-k cuts
    model.task, model.pt_path = "detect", str(tmp_path / "tiny.pt")
    args = {"format": "onnx", "imgsz": 128, "batch": 1, "simplify": False, "device": "cpu", "dynamic": True}
    ort_model = onnxruntime.InferenceSession(Exporter(overrides=args)(model=model), providers=["CPUExecutionProvider"])
    for imgsz in (64, 128, 192):
        assert_same_outputs(model, ort_model, imgsz)
