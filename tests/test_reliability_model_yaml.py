"""A model YAML is data: a checkpoint's stored YAML and the user's own are checked before any model is built from them.

Ultralytics' `parse_model` calls any name in `ultralytics.nn.tasks` with a row's arguments and eval()s activations, so
a checkpoint whose YAML nests a `DetectionModel` with its own config and activation runs that activation when a model
is rebuilt from it (training). Every entry point must stop in one line (exit 2) before a run directory exists, and the
marker file the expression would create must not appear.
"""

import copy
import glob

import cv2
import numpy as np
import pytest
import torch
from ultralytics.nn.tasks import yaml_model_load
from ultralytics.utils import DEFAULT_CFG_DICT

from conftest import tiny_train_args
from umop_yolo.cfg import MODELS_DIR, ConfigError
from umop_yolo.cli import main
from umop_yolo.engine.api import UmopYOLO
from umop_yolo.engine.build import build_model
from umop_yolo.engine.dense_schema import load_model_yaml
from umop_yolo.engine.model_yaml_check import check_model_dict
from umop_yolo.engine.run.checkpoint import load_file
from umop_yolo.engine.run.safe_pickle import UnsafeCheckpointError
from umop_yolo.errors import UserInputError
from umop_yolo.settings import UMOP_DEFAULTS


def touching(marker) -> str:
    return f"__import__('os').system('touch {marker}') or nn.SiLU()"


def nested_model_row(marker) -> list:
    """The probe: a row that builds a whole DetectionModel from its own config, whose activation runs a command."""
    config = {"nc": 1, "activation": touching(marker), "backbone": [[-1, 1, "Conv", [8, 3, 2]]],
              "head": [[[0], 1, "Detect", ["nc"]]]}
    return [-1, 1, "DetectionModel", [config]]


@pytest.fixture(scope="module")
def yolo():
    return build_model("yolov8n.yaml", nc=2, verbose=False)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "pwned"


@pytest.fixture
def evil(yolo, marker, tmp_path, tiny_shapes):
    """A randomly initialised YOLOv8n checkpoint whose stored YAML has the probe as backbone row 0 (the top-level
    activation stays clean), saved as a resumable last.pt of run directory tmp_path/run that names another one."""
    model = copy.deepcopy(yolo)
    model.yaml["backbone"].insert(0, nested_model_row(marker))
    train_args = {**DEFAULT_CFG_DICT, **UMOP_DEFAULTS, "model": "yolov8n.yaml", "data": str(tiny_shapes),
                  "epochs": 3, "imgsz": 64, "device": "cpu", "workers": 0, "project": str(tmp_path / "elsewhere"),
                  "name": "run", "save_dir": str(tmp_path / "elsewhere" / "run")}
    path = tmp_path / "run" / "weights" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save({"ema": model, "epoch": 0, "train_args": train_args}, path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("umop: error: ") and "\n" not in err, err
    return err


def image(tmp_path):
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), np.zeros((64, 64, 3), dtype=np.uint8))
    return path


ENTRY_POINTS = {
    "train model=": lambda evil, data, tmp: ["train", *tiny_train_args(data, tmp / "runs", model=evil)],
    "train pretrained=": lambda evil, data, tmp: ["train", *tiny_train_args(data, tmp / "runs", pretrained=evil)],
    "train resume=": lambda evil, data, tmp: ["train", f"resume={evil}"],
    "val": lambda evil, data, tmp: ["val", f"model={evil}", f"data={data}", f"project={tmp / 'runs'}"],
    "predict": lambda evil, data, tmp: ["predict", f"model={evil}", f"source={image(tmp)}", f"project={tmp / 'runs'}"],
    "export": lambda evil, data, tmp: ["export", f"model={evil}", "format=torchscript"],
    "analyze": lambda evil, data, tmp: ["analyze", f"model={evil}", f"data={data}", f"project={tmp / 'runs'}"],
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_checkpoint_whose_yaml_nests_a_model_runs_nothing(entry, evil, marker, tiny_shapes, tmp_path, capsys):
    assert main(ENTRY_POINTS[entry](evil, tiny_shapes, tmp_path)) == 2
    err = one_line_error(capsys)
    assert f"checkpoint '{evil}' model YAML: backbone row 0 (layer 0): unknown module 'DetectionModel'" in err
    assert not marker.exists()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == ["last.pt", "weights"]


def test_the_api_refuses_the_checkpoint_before_training(evil, marker, tiny_shapes, tmp_path):
    with pytest.raises(UnsafeCheckpointError, match="backbone row 0"):
        UmopYOLO(str(evil)).train(data=str(tiny_shapes), epochs=1, imgsz=64, project=str(tmp_path / "runs"))
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_backbone_weights_holding_a_model_runs_nothing(evil, marker, tiny_shapes, tmp_path, capsys):
    weights = evil.with_suffix(".pth")
    evil.rename(weights)
    args = tiny_train_args(tiny_shapes, tmp_path / "runs", model="retinanet_r18_fpn.yaml", backbone_weights=weights)
    assert main(["train", *args]) == 2
    assert f"backbone weights '{weights}' are not a" in one_line_error(capsys)  # state dict (of tensors)
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_a_trusted_checkpoint_skips_the_check_and_the_hint_says_so(evil):
    with pytest.raises(UnsafeCheckpointError, match=r"\(trust_checkpoint=true skips this check\)$"):
        load_file(evil)
    assert isinstance(load_file(evil, trusted=True)["ema"], torch.nn.Module)


EVIL_YAML = """\
nc: 2
activation: {activation}
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
head:
  - [[0], 1, Detect, [nc]]
"""


@pytest.mark.parametrize("entry", ["train", "analyze", "api"])
def test_a_user_yaml_with_an_evil_activation_runs_nothing(entry, marker, tiny_shapes, tmp_path, capsys):
    path = tmp_path / "evil.yaml"
    path.write_text(EVIL_YAML.format(activation=f'"{touching(marker)}"'))
    if entry == "api":
        with pytest.raises(ConfigError, match="model YAML: activation"):  # Ultralytics passes the YAML's dict
            UmopYOLO(str(path))
    else:
        args = tiny_train_args(tiny_shapes, tmp_path / "runs", model=path)
        if entry == "analyze":
            args = [f"model={path}", f"data={tiny_shapes}", f"project={tmp_path / 'runs'}"]
        assert main([entry, *args]) == 2
        assert f"model '{path}': activation" in one_line_error(capsys)
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_resume_writes_only_into_the_run_directory_holding_the_checkpoint(yolo, evil, tmp_path, capsys):
    ckpt = torch.load(evil, weights_only=False)
    ckpt["ema"] = yolo  # a clean model: only the stored save_dir is wrong
    torch.save(ckpt, evil)
    assert main(["train", f"resume={evil}"]) == 2
    err = one_line_error(capsys)
    assert f"names run directory '{tmp_path / 'elsewhere' / 'run'}', which does not hold it" in err
    assert not (tmp_path / "elsewhere").exists()


SHIPPED = sorted(glob.glob(str(MODELS_DIR / "*.yaml")))


@pytest.mark.parametrize("path", SHIPPED + ["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml", "yolov8x.yaml"])
def test_shipped_and_ultralytics_model_yamls_pass(path):
    check_model_dict(load_model_yaml(path) if path in SHIPPED else yaml_model_load(path), path)


def yolo_dict(**changes) -> dict:
    spec = {"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]]],
            "head": [[[1], 1, "Detect", ["nc"]]]}
    return {**spec, **changes}


def with_row(row, section="backbone") -> dict:
    spec = yolo_dict()
    spec[section] = [*spec[section][:1], row, *spec[section][1:]]
    return spec


@pytest.mark.parametrize("spec, problem", [
    (with_row([-1, 1, "check_requirements", ["evil-package"]]), "backbone row 1 (layer 1): unknown module"),
    (with_row([-1, 1, "TorchVision", [16, "resnet18", "DEFAULT"]]), "unknown module 'TorchVision'"),
    (with_row([-1, 1, "Conv", ["d"]]), "backbone row 1 (layer 1): argument 'd' is not"),
    (with_row([-1, 1, "Conv", ["{'nc': 1}"]]), "argument \"{'nc': 1}\" is not"),
    (with_row([-1, 1, "Conv", [{"nc": 1}]]), "argument \"{'nc': 1}\" is not"),
    (with_row([-1, 1, "Conv", [[[[16]]]]]), "argument '[[[16]]]' is not"),
    (with_row([-1, 1, "Conv", [10 ** 9]]), "argument '1000000000' is not a number within +-10000"),
    (with_row([-1, 1, "Conv", [float("nan")]]), "argument 'nan' is not"),
    (with_row([-1, 10 ** 6, "C2f", [16]]), "repeats=1000000 must be an integer from 1 to 100"),
    (with_row([5, 1, "Conv", [16]]), "from=5 must name earlier layers"),
    (with_row([-1, 1, "Conv"]), "is not a [from, repeats, module, args] row"),
    (yolo_dict(activation="nn.Module()"), "activation 'nn.Module()' is not one of"),
    (yolo_dict(activation="nn.SiLU(x)"), "activation 'nn.SiLU(x)' is not one of"),
    (yolo_dict(activation="nn.ReLU(*a)"), "activation"),
    (yolo_dict(width_multiple=100), "depth_multiple/width_multiple [1.0, 100] must be numbers in (0, 4.0]"),
    (yolo_dict(nc=10 ** 9), "nc=1000000000 must be an integer from 1 to 10000"),
    (yolo_dict(scales={"n": [0.5, 0.25, 10 ** 9]}), "scales must map names"),
    (yolo_dict(text_model={"activation": "nn.SiLU()"}), "key 'text_model' must be plain data"),
    (yolo_dict(backbone={}), "needs 'backbone' and 'head' lists"),
    ({"detector": "atss", "backbone": {"yolo": "https://example.com/yolov8n.yaml"}}, "must name a local YAML file"),
    ({"detector": "atss", "head": {"feat_channels": {"activation": "nn.SiLU()"}}}, "head.feat_channels must be plain"),
    ({"detector": "atss", "head": {"test": {"nms_pre": [[[1]]]}}}, "head.test.nms_pre must be plain data"),
    ({"detector": "atss", "neck": {"activation": "evil()"}}, "unknown key 'neck.activation'"),
    ({"detector": "atss", "nc": 0}, "nc=0 must be an integer from 1 to 10000"),
])
def test_model_yaml_check_refuses_in_one_line_naming_the_row(spec, problem):
    with pytest.raises(ConfigError) as e:
        check_model_dict(spec, "model 'x.yaml'")
    assert str(e.value).startswith("model 'x.yaml': ") and problem in str(e.value) and "\n" not in str(e.value)


def test_a_dense_yaml_naming_an_evil_yolo_backbone_is_refused(marker, tmp_path):
    yolo_yaml = tmp_path / "evil_yolo.yaml"
    yolo_yaml.write_text(EVIL_YAML.format(activation=f'"{touching(marker)}"'))
    dense = tmp_path / "atss_evil.yaml"
    dense.write_text(f"detector: atss\nbackbone: {{yolo: {yolo_yaml}}}\n")
    with pytest.raises(UserInputError, match=f"backbone.yolo '{yolo_yaml}': activation"):
        build_model(str(dense), nc=2, verbose=False)
    assert not marker.exists()


@pytest.mark.parametrize("activation", ["nn.SiLU()", "torch.nn.ReLU()", "nn.LeakyReLU(0.1)", "nn.ReLU(inplace=True)"])
def test_plain_activations_pass(activation):
    check_model_dict(yolo_dict(activation=activation), "m")


def test_a_backbone_yaml_that_is_not_on_this_machine_leaves_loading_to_the_builder(tmp_path):
    """A RetinaNet/ATSS checkpoint names its YOLO backbone's YAML; val/predict need not read it (training does)."""
    spec = {"detector": "atss", "backbone": {"yolo": str(tmp_path / "trained_elsewhere.yaml")}}
    check_model_dict(spec, "checkpoint 'x.pt' model YAML")
    with pytest.raises(UserInputError, match="trained_elsewhere.yaml' not found"):
        build_model(spec, nc=2, verbose=False)
