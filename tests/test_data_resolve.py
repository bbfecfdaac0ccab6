"""resolve_data: bare names, paths relative to the YAML, generated data, bad inputs, bad YOLO label rows."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from ultralytics.data.utils import check_det_dataset

from conftest import COCO128
from umop_yolo.cfg import DATA_DIR
from umop_yolo.data import resolve
from umop_yolo.data.resolve import resolve_data
from umop_yolo.data.shapes import ShapesSpec, spec_from_yaml


def yolo_dataset(root: Path, labels: dict[str, str]) -> None:
    """images/{train,val}/<stem>.jpg with the given label text (train and val share the files)."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem, text in labels.items():
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), np.full((48, 64, 3), 127, np.uint8))
            (root / "labels" / split / f"{stem}.txt").write_text(text)


def test_relative_path_is_taken_from_the_yaml_folder_not_the_cwd(tmp_path, cache, monkeypatch):
    yolo_dataset(tmp_path / "sets" / "toy", {"a": "0 0.5 0.5 0.2 0.2\n"})
    cfg = tmp_path / "cfgs" / "toy.yaml"
    cfg.parent.mkdir()
    cfg.write_text("path: ../sets/toy\ntrain: images/train\nval: images/val\nnames: [thing]\ndownload: x.zip\n")
    monkeypatch.chdir(tmp_path)  # Ultralytics alone would look for ./../sets/toy from here
    out = Path(resolve_data(cfg))
    assert out.parent == cache / "resolved" and out.name.startswith("toy-")
    resolved = yaml.safe_load(out.read_text())
    assert resolved["path"] == str(tmp_path / "sets" / "toy") and "download" not in resolved
    assert check_det_dataset(str(out))["val"] == str(tmp_path / "sets" / "toy" / "images" / "val")
    assert resolve_data(cfg) == str(out)  # same source, same resolved copy
    assert resolve_data(out) == str(out)  # resolving a resolved YAML is a no-op
    assert cfg.read_text().startswith("path: ../sets/toy")  # the user's file is untouched


def test_yaml_without_path_uses_its_folder(tmp_path, cache):
    yolo_dataset(tmp_path, {"a": ""})
    (tmp_path / "d.yaml").write_text("train: images/train\nval: images/val\nnames: {0: x, 1: y}\n")
    resolved = yaml.safe_load(Path(resolve_data(tmp_path / "d.yaml")).read_text())
    assert resolved["train"] == str(tmp_path / "images" / "train") and resolved["names"] == {0: "x", 1: "y"}


def test_bare_names_are_looked_up_in_the_repo_data_folder(tmp_path, cache, monkeypatch):
    (tmp_path / "tiny.yaml").write_text("generate: {seed: 1, n_train: 2, n_val: 1, imgsz: 64}\nnames: [cross]\n")
    monkeypatch.setattr(resolve, "DATA_DIR", tmp_path)
    out = resolve_data("tiny")
    assert out == resolve_data("tiny.yaml")
    assert Path(out).parent.parent == cache / "datasets" and Path(out).name == "data.yaml"
    data = check_det_dataset(out)
    assert data["names"] == {0: "cross"} and len(list(Path(data["train"]).iterdir())) == 2
    with pytest.raises(FileNotFoundError, match=r"data YAML 'nope' not found here nor in"):
        resolve_data("nope")


def test_repo_yamls_parse():
    """data/shapes.yaml is the default generator spec; coco and coco128 are well-formed."""
    shapes_cfg = yaml.safe_load((DATA_DIR / "shapes.yaml").read_text())
    assert spec_from_yaml(shapes_cfg["generate"], shapes_cfg["names"]) == ShapesSpec()
    coco = yaml.safe_load((DATA_DIR / "coco.yaml").read_text())
    assert coco["format"] == "coco" and coco["val_json"].endswith("instances_val2017.json")
    assert len(yaml.safe_load((DATA_DIR / "coco128.yaml").read_text())["names"]) == 80


def test_coco128_by_bare_name(cache):
    if not COCO128.is_dir():
        pytest.skip("../shared/data/coco128 is not present")
    data = check_det_dataset(resolve_data("coco128"))
    assert data["train"] == str(COCO128.resolve() / "images" / "train2017") and data["nc"] == 80


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("train: images/train\nval: images/val\n", ValueError, r"missing 'names'"),
        ("train: images/train\nval: nowhere\nnames: [a]\n", FileNotFoundError, r"'val' path /.*nowhere does not exist"),
        ("val: images/val\nnames: [a]\n", ValueError, r"missing 'train'"),
        ("path: ../gone\ntrain: a\nval: b\nnames: [a]\n", FileNotFoundError, r"'path' .*gone does not exist"),
        ("train: images/train\nval: images/val\nnames: [a, b]\nnc: 3\n", ValueError, r"'nc' 3 does not match"),
        ("train: images/train\nval: images/val\nnames: {1: a}\n", ValueError, r"'names' keys must be the class ids"),
        ("format: darknet\ntrain: a\nval: b\nnames: [a]\n", ValueError, r"'format' must be one of yolo, coco, voc"),
        ("generate: {seed: 0}\ntrain: images/train\n", ValueError, r"key 'train' cannot be combined with 'generate'"),
        ("generate: {sed: 0}\n", ValueError, r"unknown key 'generate.sed'"),
        ("names: [a\ntrain: x\n", ValueError, r"malformed YAML at line \d"),
        ("- just\n- a list\n", ValueError, r"expected a mapping"),
        ("format: coco\ntrain: images/train\nval: images/val\n", ValueError, r"missing 'train_json'"),
    ],
)
def test_bad_yaml_gives_one_line_naming_file_and_key(tmp_path, cache, text, error, message):
    yolo_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(error, match=message) as info:
        resolve_data(cfg)
    assert str(info.value).startswith(f"data YAML '{cfg}': ") and "\n" not in str(info.value)


def test_bad_label_rows_are_reported_by_line_and_only_they_are_dropped(tmp_path, cache, warnings_seen):
    good = "1 0.5 0.5 0.2 0.2\n"
    yolo_dataset(
        tmp_path,
        {
            "a": good + "7 0.5 0.5 0.2 0.2\n",  # class out of range: Ultralytics would drop image a entirely
            "b": "0 0.3 0.3 0.0 0.1\n" + good,  # zero width: Ultralytics would keep it
            "c": "0 nan 0.5 0.1 0.1\n0 0.5 0.5 0.1\n0 0.5 1.7 0.1 0.1\n",
            "d": good,
        },
    )
    cfg = tmp_path / "d.yaml"
    cfg.write_text("train: images/train\nval: images/val\nnames: [p, q]\n")
    out = resolve_data(cfg)
    lbl = tmp_path / "labels" / "train"
    for where, problem in [
        (f"{lbl / 'a.txt'}:2", "class 7 is not an integer in 0-1"),
        (f"{lbl / 'b.txt'}:1", "zero or negative box size"),
        (f"{lbl / 'c.txt'}:1", "non-finite value"),
        (f"{lbl / 'c.txt'}:2", "expected 'class cx cy w h'"),
        (f"{lbl / 'c.txt'}:3", "coordinates outside [0, 1]"),
    ]:
        assert any(f"{where}: {problem}" in m and m.endswith("label skipped") for m in warnings_seen), where
    data = check_det_dataset(out)
    mirror = Path(data["train"])
    assert mirror.parent.parent.parent == cache / "datasets" and (mirror / "a.jpg").is_symlink()
    labels = {p.stem: p.read_text() for p in (mirror.parent.parent / "labels" / "train").iterdir()}
    assert labels == {"a": good, "b": good, "c": "", "d": good}
    assert (lbl / "a.txt").read_text().count("\n") == 2  # the source is untouched


def test_clean_dataset_needs_no_mirror(tmp_path, cache, warnings_seen):
    yolo_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": ""})
    (tmp_path / "d.yaml").write_text("train: images/train\nval: images/val\nnames: [p]\n")
    data = check_det_dataset(resolve_data(tmp_path / "d.yaml"))
    assert data["train"] == str(tmp_path / "images" / "train") and warnings_seen == []


def test_a_class_list_that_does_not_match_the_labels_is_one_clear_error(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "images" / split / f"{i}.jpg"), np.zeros((32, 32, 3), np.uint8))
            (tmp_path / "labels" / split / f"{i}.txt").write_text(f"{5 + i} 0.5 0.5 0.2 0.2\n")
    (tmp_path / "d.yaml").write_text("train: images/train\nval: images/val\nnames: [a, b]\n")
    with pytest.raises(ValueError) as e:
        resolve_data(tmp_path / "d.yaml")
    message = str(e.value)
    assert "\n" not in message and "d.yaml" in message and "'names' lists 2 classes" in message
    assert "3 of 3 label rows use class ids up to 7" in message and "0.txt:1" in message
