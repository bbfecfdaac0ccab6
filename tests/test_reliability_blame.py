"""Errors blame the right thing: the user's input in one line naming it, our own bugs with their traceback."""

import errno
import os
import pathlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import ultralytics.cfg
from test_reliability_inputs import yolo_dataset

from conftest import tiny_train_args
from umop_yolo.cfg import check_values
from umop_yolo.cli import main
from umop_yolo.engine.build import build_model
from umop_yolo.engine.run import safe_pickle
from umop_yolo.engine.run.checkpoint import load_file
from umop_yolo.engine.run.saving import DiskFullError, atomic_weights, kept_on_full_disk
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


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("umop: error: ") and "\n" not in err, err
    return err


@pytest.fixture
def read_only(monkeypatch):
    """Folders in which os.open creates no file, as on a read-only mount (chmod does not stop root)."""
    folders, real_open = [], os.open

    def guarded(path, flags, *args, **kwargs):
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) and any(
                pathlib.Path(path).is_relative_to(f) for f in folders):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    return folders


@pytest.mark.parametrize("mode, what", [("train", "run"), ("val", "validation"), ("predict", "prediction")])
def test_a_read_only_run_folder_is_one_line_naming_it(mode, what, read_only, tiny_shapes, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    weights = tmp_path / "m.pt"
    torch.save({"ema": build_model("yolov8n.yaml", nc=5, verbose=False)}, weights)
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), dtype=np.uint8))
    args = {"train": tiny_train_args(tiny_shapes, tmp_path, exist_ok=True),
            "val": [f"model={weights}", f"data={tiny_shapes}", "imgsz=64"],
            "predict": [f"model={weights}", f"source={image}"]}[mode]
    read_only.append(run)
    assert main([mode, *args, f"project={tmp_path}", "name=run", "exist_ok=true"]) == 2
    assert f"{what} directory '{run}' is not writable (Read-only file system)" in error_line(capsys)


def test_a_full_disk_during_a_save_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "last.pt").write_bytes(b"epoch 1")
    trainer = SimpleNamespace(wdir=weights, last=weights / "last.pt", best=weights / "best.pt")

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    with pytest.raises(DiskFullError) as e:
        with kept_on_full_disk(trainer.last), atomic_weights(trainer):
            trainer.last.write_bytes(b"epoch 2")  # as Ultralytics' save_model writes it
    assert str(e.value) == (f"the disk is full: a checkpoint could not be written into '{weights}'; "
                            f"'{weights / 'last.pt'}' is kept as it was; free space, then continue with "
                            f"resume={weights / 'last.pt'}")
    assert (weights / "last.pt").read_bytes() == b"epoch 1" and sorted(weights.iterdir()) == [weights / "last.pt"]


@pytest.mark.slow
def test_a_training_whose_disk_fills_stops_in_one_line(tiny_shapes, tmp_path, monkeypatch, capsys):
    real, saves = pathlib.Path.write_bytes, []

    def fills_at_the_second_save(path, data):
        if path.name == "last.pt":
            saves.append(path)
            if len(saves) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", fills_at_the_second_save)
    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path, epochs=2, imgsz=64, val=False)]) == 2
    last = tmp_path / "run" / "weights" / "last.pt"
    assert f"the disk is full: a checkpoint could not be written into '{last.parent}'; '{last}' is kept" in \
        error_line(capsys)
    assert torch.load(last, weights_only=False)["epoch"] == 0  # epoch 1's checkpoint


@pytest.mark.parametrize("content", [None, ""])
def test_analyze_checks_the_model_yaml_as_train_does(content, tiny_shapes, tmp_path, capsys):
    model = tmp_path / "model.yaml"
    if content is not None:
        model.write_text(content)
    messages = []
    for mode in ("train", "analyze"):
        args = [f"model={model}", f"data={tiny_shapes}", f"project={tmp_path / 'runs'}"]
        assert main([mode, *args, *(["epochs=1"] if mode == "train" else [])]) == 2
        messages.append(error_line(capsys))
    assert messages[0] == messages[1] and f"model '{model}'" in messages[0]
    assert not (tmp_path / "runs").exists()


def test_val_of_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    assert main(["val", f"model={tmp_path}"]) == 2
    assert f"model '{tmp_path}' is a folder: pass a .pt checkpoint or a model YAML" in error_line(capsys)


def test_the_class_count_message_names_the_users_data_yaml(good_checkpoint, tmp_path, capsys):
    data = yolo_dataset(tmp_path / "one_class")
    assert main(["val", f"model={good_checkpoint}", f"data={data}", "imgsz=64", f"project={tmp_path}"]) == 2
    assert f"the model has 2 classes but data '{data}' has 1" in error_line(capsys)
