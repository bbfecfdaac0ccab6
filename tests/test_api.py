"""The Python API: `from umop_yolo import UmopYOLO`, names resolved as `umop` resolves them, an experiment for another
model refused, and a missing exporter package named in one line."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ultralytics.engine.model import Model

import umop_yolo
from umop_yolo import UmopYOLO
from umop_yolo.cfg import MODELS_DIR, PACKAGE_DIR, runs_dir
from umop_yolo.cli import main
from umop_yolo.data import resolve
from umop_yolo.engine import api
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.errors import InputNotFoundError, UserInputError


@pytest.fixture
def seen(monkeypatch) -> dict:
    """The keyword arguments `UmopYOLO.train/val` hand to Ultralytics' `Model` (which is not run)."""
    calls: dict = {}
    monkeypatch.setattr(Model, "train", lambda self, trainer=None, **kw: calls.setdefault("train", kw))
    monkeypatch.setattr(Model, "val", lambda self, validator=None, **kw: calls.setdefault("val", kw))
    return calls


def test_umop_yolo_is_exported_at_the_top_level():
    assert UmopYOLO is api.UmopYOLO and "UmopYOLO" in umop_yolo.__all__
    with pytest.raises(AttributeError, match="no attribute 'YOLO'"):
        umop_yolo.YOLO  # noqa: B018


@pytest.mark.slow
def test_importing_the_package_does_not_import_ultralytics():
    code = "import sys, umop_yolo, umop_yolo.pfl; print('ultralytics' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_bare_model_names_resolve_as_the_cli_does():
    atss = UmopYOLO("atss_r18_fpn.yaml")
    assert isinstance(atss.model, DenseDetectionModel)
    assert atss.overrides["model"] == str(MODELS_DIR / "atss_r18_fpn.yaml")
    assert type(UmopYOLO("yolov8n.yaml").model) is UmopDetectionModel  # Ultralytics' own YAML
    with pytest.raises(InputNotFoundError, match="never downloaded"):
        UmopYOLO("yolov8n.pt")


def test_an_experiment_for_another_model_stops_in_one_line(seen):
    with pytest.raises(UserInputError) as error:
        UmopYOLO("yolov8n.yaml").train(cfg="atss_umop.yaml", epochs=1)
    assert str(error.value) == ("experiment cfg 'atss_umop.yaml' trains model 'atss_r50_fpn.yaml', but this UmopYOLO "
                                "holds 'yolov8n.yaml': use UmopYOLO('atss_r50_fpn.yaml').train(cfg='atss_umop.yaml')")
    assert seen == {}


def test_train_takes_the_experiment_of_its_model_or_the_default_one(seen):
    UmopYOLO("yolov8n.yaml").train(cfg="yolov8n_umop.yaml", epochs=1)
    args = seen.pop("train")
    assert args["cls"] == 2.0 and args["epochs"] == 1 and args["data"] == "shapes.yaml" and "model" not in args
    assert args["project"] == str(runs_dir() / "detect")  # Ultralytics' runs_dir setting (test_cli varies it)
    UmopYOLO("atss_r18_fpn.yaml").train(epochs=1)  # no cfg=: the default experiment, as `umop train`, on this model
    assert seen["train"]["umop"] is True and "model" not in seen["train"]
    with pytest.raises(UserInputError, match="unknown key 'epoch' in train()"):
        UmopYOLO("yolov8n.yaml").train(epoch=1)


def test_a_checkpoint_accepts_an_experiment_of_its_architecture(seen):
    model = UmopYOLO("yolov8n.yaml")
    model.overrides["model"] = "runs/detect/train/weights/best.pt"  # as after training: the file differs, the YAML not
    model.train(cfg="yolov8n_umop.yaml")
    with pytest.raises(UserInputError, match="holds 'best.pt'"):
        model.train(cfg="yolov8n_atss_umop.yaml")


def test_val_looks_up_bare_data_names_in_data(seen, cache, tmp_path, monkeypatch):
    (tmp_path / "tiny.yaml").write_text("generate: {builder: shapes, seed: 0, n_train: 4, n_val: 2, imgsz: 64}\n")
    monkeypatch.setattr(resolve, "DATA_DIR", tmp_path)
    UmopYOLO("yolov8n.yaml").val(data="tiny")
    data = Path(seen["val"]["data"])
    assert data.is_file() and data.is_relative_to(cache)


def test_export_extra_is_the_one_in_pyproject():
    extra = re.search(r"^export = \[(.*)\]$", (PACKAGE_DIR.parent / "pyproject.toml").read_text(), re.M)[1]
    assert sorted(re.findall(r'"([\w-]+)', extra)) == sorted(api.EXPORT_EXTRA)


def test_onnx_export_without_onnx_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    model = UmopYOLO("yolov8n.yaml")
    model.save(tmp_path / "x.pt")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ModuleNotFoundError
    with pytest.raises(UserInputError, match=r"format=onnx needs the package 'onnx'.*umop-yolo\[export\]"):
        model.export(format="onnx", imgsz=64)
    assert main(["export", f"model={tmp_path / 'x.pt'}", "format=onnx", "imgsz=64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("umop: error: export format=onnx needs the package 'onnx'") and "\n" not in err


@pytest.mark.parametrize("module, expected", [("openvino", UserInputError), ("onnxslim.core", UserInputError),
                                              ("ultralytics.utils.nope", ModuleNotFoundError)])
def test_a_missing_module_in_an_exporter_is_a_user_error_unless_it_is_ours(module, expected, monkeypatch):
    def missing(self, **kwargs):
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)

    monkeypatch.setattr(Model, "export", missing)
    with pytest.raises(expected) as error:
        UmopYOLO("yolov8n.yaml").export(format="openvino")
    if expected is UserInputError:
        hint = "umop-yolo[export]" if module.startswith("onnxslim") else "install it"
        assert f"needs the package '{module.split('.')[0]}'" in str(error.value) and hint in str(error.value)


def test_readme_names_the_attribute_that_holds_the_coco_ap():
    """`model.val()` returns the validator's CocoDetMetrics; the README's comment names where COCO AP is in it."""
    line = next(x for x in (PACKAGE_DIR.parent / "README.md").read_text().splitlines() if x.startswith("metrics = "))
    attribute, key = re.search(r'# metrics\.(\w+)\["(\w+)"\]: COCO AP', line).groups()
    metrics = CocoDetectionValidator().metrics  # what Model.val returns
    metrics.coco["AP"] = 0.42
    assert getattr(metrics, attribute)[key] == metrics.results_dict["metrics/AP(COCO)"] == metrics.fitness == 0.42
    assert metrics.box.map == 0.0  # Ultralytics' mAP50-95 is another number
