"""Bad input to `umop train`: one line naming the problem, exit status 2, and an existing run left as it was."""

import pytest

from conftest import tiny_train_args
from umop_yolo.cli import main

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
    }


CASES = ["truncated checkpoint", "unknown module", "missing model YAML", "missing data path", "wrong type",
         "out of range", "alpha above 1", "trust not a boolean"]


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
