"""The committed MMDetection checkpoints in every mode: predict, val, export, `UmopYOLO`, and a fine-tune that starts
from all their weights (another class count re-initialises the classifier and says so)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_train_args
from umop_yolo.cli import main
from umop_yolo.engine.api import UmopYOLO
from umop_yolo.engine.mmdet_read import read_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ATSS3, RETINANET3 = FIXTURES / "mmdet3_atss_r18.pth", FIXTURES / "mmdet3_retinanet_r18.pth"


@pytest.fixture
def image(tmp_path) -> Path:
    golden = torch.load(FIXTURES / "mmdet_atss_outputs.pt", weights_only=True)
    path = tmp_path / "image.png"
    import cv2

    cv2.imwrite(str(path), np.ascontiguousarray(golden["images"][0].numpy()[..., ::-1]))
    return path


def test_umop_yolo_predicts_with_the_checkpoints_classes_and_nms_settings(image):
    model = UmopYOLO(str(ATSS3))
    result = model.predict(source=str(image), imgsz=128, conf=0.05, save=False, verbose=False)[0]
    assert list(result.names.values()) == ["circle", "square", "triangle", "cross", "star"]
    assert 0 < len(result.boxes) <= 100  # max_det 100 of the checkpoint's test_cfg


def test_cli_val_and_predict_run_on_the_checkpoint(tiny_shapes, image, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["val", f"model={RETINANET3}", f"data={tiny_shapes}", "imgsz=128", "batch=4", "plots=false"]) == 0
    assert (tmp_path / "runs" / "detect" / "val" / "predictions.json").is_file()
    assert main(["predict", f"model={ATSS3}", f"source={image}", "imgsz=128", "save=false"]) == 0
    assert main(["val", f"model={ATSS3}"]) == 2  # the checkpoint names no dataset: nothing is downloaded


def test_model_yaml_with_pretrained_checkpoint_predicts_the_same(image, tmp_path):
    arch = tmp_path / "tiny_atss.yaml"
    arch.write_text(yaml.safe_dump({"detector": "atss", "backbone": {"depth": 18, "base_channels": 4},
                                    "neck": {"out_channels": 16},
                                    "head": {"feat_channels": 16, "stacked_convs": 2, "gn_groups": 4}}))
    args = {"source": str(image), "imgsz": 128, "conf": 0.05, "save": False, "verbose": False}
    by_yaml = UmopYOLO(str(arch)).load(str(ATSS3)).predict(**args)[0].boxes
    by_meta = UmopYOLO(str(ATSS3)).predict(**args)[0].boxes
    torch.testing.assert_close(by_yaml.data, by_meta.data)
    assert main(["predict", f"model={arch}", f"pretrained={ATSS3}", f"source={image}", "imgsz=128",
                 "save=false", f"project={tmp_path}"]) == 0


@pytest.mark.slow
def test_export_onnx_from_the_checkpoint(tmp_path):
    pytest.importorskip("onnx")
    copy = tmp_path / "atss.pth"
    copy.write_bytes(ATSS3.read_bytes())
    exported = UmopYOLO(str(copy)).export(format="onnx", imgsz=64, simplify=False, device="cpu")
    assert Path(exported).is_file() and Path(exported).suffix == ".onnx"


@pytest.mark.slow
@pytest.mark.parametrize("umop, names", [(True, ["circle", "square", "star"]), (False, None)])
def test_fine_tune_starts_from_all_the_checkpoints_weights(umop, names, tiny_shapes, tmp_path, messages_logged):
    data = tiny_shapes
    if names:  # another class count: the built-in shapes with three of its classes
        data = tmp_path / "three.yaml"
        data.write_text(tiny_shapes.read_text().split("names:")[0] + f"names: {dict(enumerate(names))}\n")
    args = tiny_train_args(data, tmp_path / "runs", model=ATSS3, umop=umop, batch=4, epochs=1)
    assert main(["train", *args]) == 0
    reinit = [m for m in messages_logged if m.startswith("Classification layers re-initialised")]
    assert reinit == (["Classification layers re-initialised for 3 classes (the weights have 5): "
                       "model.2.head.atss_cls"] if names else [])
    assert any(m == f"Transferred {157 if names else 159}/159 items from pretrained weights" for m in messages_logged)
    trained = torch.load(tmp_path / "runs" / "run" / "weights" / "last.pt", weights_only=False)["model"]
    frozen = read_checkpoint(ATSS3)["state_dict"]["backbone.layer1.0.conv1.weight"]  # stage 1: frozen, unchanged
    torch.testing.assert_close(trained.model[0].layer1[0].conv1.weight, frozen.half())  # checkpoints are fp16
