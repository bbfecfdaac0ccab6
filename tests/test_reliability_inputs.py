"""Bad input to `umop train`: one line naming the problem, exit status 2, and an existing run left as it was."""

import pytest
from conftest import tiny_train_args

from umop_yolo.cfg import check_values
from umop_yolo.cli import main
from umop_yolo.errors import UserInputError

UNKNOWN_MODULE_YAML = """\
nc: 5
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, FancyBlock, [32]]
head:
  - [[1], 1, Detect, [nc]]
"""


def existing_run(root):
    """A finished run's directory, as `exist_ok=true` would reuse it."""
    run = root / "run"
    (run / "weights").mkdir(parents=True)
    files = {
        run / "results.csv": b"epoch,time,metrics/mAP50-95(B)\n1,10.0,0.25\n2,20.0,0.5\n",
        run / "args.yaml": b"epochs: 2\n",
        run / "weights" / "last.pt": b"previous last.pt",
        run / "weights" / "best.pt": b"previous best.pt",
    }
    for path, content in files.items():
        path.write_bytes(content)
    return files


def bad_inputs(tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(b"PK\x03\x04 half of a zip")
    unknown = tmp_path / "unknown_module.yaml"
    unknown.write_text(UNKNOWN_MODULE_YAML)
    (tmp_path / "images" / "train").mkdir(parents=True)
    no_val = tmp_path / "no_val.yaml"
    no_val.write_text("train: images/train\nval: images/nowhere\nnames: [a]\n")
    return {
        "truncated checkpoint": (f"model={truncated}", f"checkpoint '{truncated}' is not readable"),
        "unknown module": (f"model={unknown}", f"model '{unknown}': unknown module 'FancyBlock' in layer 1"),
        "missing model YAML": ("model=yolov8q.yaml", "model 'yolov8q.yaml': FileNotFoundError"),
        "missing data path": (f"data={no_val}", "'val' path"),
        "wrong type": ("pfl_delta=abc", "pfl_delta='abc' must be a number"),
        "out of range": ("pfl_gamma=0", "pfl_gamma=0.0 must be > 0"),
        "alpha above 1": ("pfl_w=1.6", "pfl_w=1.6 must be < pfl_gamma - pfl_delta = 1.5"),
        "trust not a boolean": ("trust_checkpoint=yes", "trust_checkpoint='yes' must be true or false"),
        "zero image size": ("imgsz=0", "imgsz=0 must be a positive integer"),  # Ultralytics trains at 32
        "negative image size": ("imgsz=-64", "imgsz=-64 must be a positive integer"),
        "negative batch": ("batch=-3", "batch=-3 must be an integer >= 1"),  # Ultralytics: AutoBatch, 16 on CPU
        "epochs not a number": ("epochs=abc", "'epochs=abc' is of invalid type str"),  # a 24-line TypeError
        "missing CUDA device": ("device=7", "device=7: torch sees"),
        "negative workers": ("workers=-2", "workers=-2 must be an integer >= 0"),
    }


CASES = ["truncated checkpoint", "unknown module", "missing model YAML", "missing data path", "wrong type",
         "out of range", "alpha above 1", "trust not a boolean", "zero image size", "negative image size",
         "negative batch", "epochs not a number", "missing CUDA device", "negative workers"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_leaves_an_existing_run_untouched(case, tiny_shapes, tmp_path, capsys):
    files = existing_run(tmp_path)
    override, message = bad_inputs(tmp_path)[case]
    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path, exist_ok=True), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("umop: error: ") and "\n" not in err and message in err, err
    assert {path: path.read_bytes() for path in files} == files
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == ["args.yaml", "best.pt", "last.pt",
                                                                     "results.csv", "weights"]


@pytest.mark.parametrize("mode", ["val", "predict"])
@pytest.mark.parametrize("override, message", [
    ("imgsz=0", "imgsz=0 must be a positive integer"), ("batch=-1", "batch=-1 must be an integer >= 1"),
    ("batch=0.5", "batch=0.5 must be an integer >= 1"), ("conf=2", "'conf=2' is an invalid value"),
    ("device=7", "device=7: torch sees"), ("device=gpu", "device='gpu' must be cpu, mps, or CUDA indices"),
])
def test_bad_values_of_val_and_predict_are_one_line(mode, override, message, tmp_path, capsys):
    weights = tmp_path / "best.pt"
    weights.touch()  # never read: the values are refused first
    assert main([mode, f"model={weights}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("umop: error: ") and "\n" not in err and message in err, err


@pytest.mark.parametrize("values", [{"batch": -1}, {"batch": 0.7}, {"batch": 16.0}, {"imgsz": [480, 640]},
                                    {"device": "cpu"}, {"device": -1}, {"device": None}, {"time": None},
                                    {"close_mosaic": 0}, {"epochs": 1e2}])
def test_values_ultralytics_documents_stay_valid_for_training(values):
    check_values(values, training=True)


def test_the_trainer_refuses_bad_values_before_it_creates_a_run(tiny_shapes, tmp_path):
    from umop_yolo.engine.trainer import UmopTrainer

    args = {"model": "yolov8n.yaml", "data": str(tiny_shapes), "project": str(tmp_path), "name": "run", "imgsz": -64}
    with pytest.raises(UserInputError, match="imgsz=-64 must be a positive integer"):
        UmopTrainer(overrides=args)
    assert not (tmp_path / "run").exists()
