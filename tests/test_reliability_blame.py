"""Errors blame the right thing: the user's input in one line naming it, our own bugs with their traceback."""

import pytest
import torch
import ultralytics.cfg

from umop_yolo.cfg import check_values
from umop_yolo.cli import main
from umop_yolo.engine import safe_pickle
from umop_yolo.engine.build import build_model
from umop_yolo.engine.checkpoint import load_file
from umop_yolo.errors import UserInputError


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    torch.save({"ema": build_model("yolov8n.yaml", nc=2, verbose=False)}, path)
    return path


def test_a_bug_while_loading_a_good_checkpoint_keeps_its_traceback(good_checkpoint, monkeypatch):
    def broken(names):
        raise AttributeError("'NoneType' object has no attribute 'x'")

    monkeypatch.setattr(safe_pickle, "allow", broken)
    with pytest.raises(AttributeError, match="has no attribute 'x'"):
        load_file(good_checkpoint)


def test_a_bug_in_the_value_checks_keeps_its_traceback(monkeypatch):
    def broken(cfg):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(ultralytics.cfg, "check_cfg", broken)
    with pytest.raises(TypeError, match="unsupported operand") as e:
        check_values({"epochs": 3}, training=True)
    assert not isinstance(e.value, UserInputError)


def test_a_bad_value_is_still_one_user_error():
    with pytest.raises(UserInputError, match="'epochs=abc' is of invalid type str"):
        check_values({"epochs": "abc"}, training=True)


@pytest.mark.parametrize("argv", [["val", "model={weights}", "data={bad}"], ["train", "cfg={bad}"],
                                  ["analyze", "data={bad}"], ["cfg", "cfg={bad}"]])
def test_a_binary_yaml_is_one_line(argv, good_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"train: images\nnames: [\xff\xfe\x00]\n")
    assert main([a.format(weights=good_checkpoint, bad=bad) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("umop: error: ") and f"'{bad}': not UTF-8 text (byte 22 is 0xff)" in err, err
    assert "\n" not in err
