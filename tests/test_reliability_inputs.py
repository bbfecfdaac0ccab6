"""Bad input to `umop train`: one line naming the problem, exit status 2, and an existing run left as it was."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
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
    return run


def snapshot(run):
    """Every file and folder under `run` (hidden ones too): its SHA-256, or 'dir'."""
    return {str(p.relative_to(run)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in run.rglob("*")}


def yolo_dataset(root, n_val=2, labels=True):
    """A YOLO dataset of 64 px noise images: 4 train, `n_val` val; one box per image unless `labels` is false."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), rng.integers(0, 255, (64, 64, 3), np.uint8))
            if labels:
                (root / "labels" / split / f"{i}.txt").write_text("0 0.5 0.5 0.3 0.3\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    return root / "data.yaml"


def bad_inputs(tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(b"PK\x03\x04 half of a zip")
    unknown = tmp_path / "unknown_module.yaml"
    unknown.write_text(UNKNOWN_MODULE_YAML)
    (tmp_path / "images" / "train").mkdir(parents=True)
    no_val = tmp_path / "no_val.yaml"
    no_val.write_text("train: images/train\nval: images/nowhere\nnames: [a]\n")
    empty_val, unlabelled = yolo_dataset(tmp_path / "empty_val", n_val=0), yolo_dataset(tmp_path / "bare", labels=False)
    return {
        "empty val split": (f"data={empty_val}", f"'val' has no images ({tmp_path / 'empty_val' / 'images' / 'val'})"),
        "no labels at all": (f"data={unlabelled}",
                             f"'train' has no label files (looked for e.g. {tmp_path / 'bare/labels/train/0.txt'})"),
        "truncated checkpoint": (f"model={truncated}", f"checkpoint '{truncated}' is not readable"),
        "unknown module": (f"model={unknown}",
                           f"model '{unknown}': backbone row 1 (layer 1): unknown module 'FancyBlock'"),
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
        "missing CUDA device": ("device=0,7", "device=0,7: torch sees"),
        "negative workers": ("workers=-2", "workers=-2 must be an integer >= 0"),
    }


CASES = ["empty val split", "no labels at all", "truncated checkpoint", "unknown module", "missing model YAML",
         "missing data path", "wrong type", "out of range", "alpha above 1", "trust not a boolean", "zero image size",
         "negative image size", "negative batch", "epochs not a number", "missing CUDA device", "negative workers"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_leaves_an_existing_run_untouched(case, tiny_shapes, tmp_path, capsys):
    run = existing_run(tmp_path)
    before = snapshot(run)
    override, message = bad_inputs(tmp_path)[case]
    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path, exist_ok=True), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("umop: error: ") and "\n" not in err and message in err, err
    assert snapshot(run) == before


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


def test_a_coco_val_json_without_images_is_refused_before_training(tmp_path, cache):
    import json

    from umop_yolo.data.resolve import resolve_data

    root = yolo_dataset(tmp_path, n_val=0).parent
    categories = [{"id": 1, "name": "a"}]
    box = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 16, 16], "iscrowd": 0, "area": 256}
    (root / "train.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "0.jpg", "width": 64, "height": 64}],
                                                 "annotations": [box], "categories": categories}))
    (root / "val.json").write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    (root / "coco.yaml").write_text("format: coco\ntrain: images/train\nval: images/val\n"
                                    "train_json: train.json\nval_json: val.json\n")
    with pytest.raises(UserInputError, match=r"coco.yaml': 'val' has no images \(val.json converted to "):
        resolve_data(root / "coco.yaml")


def test_empty_label_files_are_negatives_and_resolve(tmp_path, cache):
    from umop_yolo.data.resolve import resolve_data

    data = yolo_dataset(tmp_path, labels=False)
    for image in (tmp_path / "images" / "train").iterdir():
        (tmp_path / "labels" / "train" / f"{image.stem}.txt").touch()  # Ultralytics trains on these (backgrounds)
    assert resolve_data(data)


def unreadable_images(folder):
    """A zero-byte .jpg and a text file named .jpg in `folder`, and the reasons they cannot be read."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").touch()
    (folder / "text.jpg").write_text("hello\n")
    return {folder / "zero.jpg": "empty image file (zero bytes)",
            folder / "text.jpg": "not an image: no image format starts with b'hello\\n'"}


def test_the_data_audit_skips_unreadable_images_naming_the_real_reason(tmp_path, cache, warnings_seen):
    import yaml

    from umop_yolo.data.resolve import resolve_data

    data = yolo_dataset(tmp_path)
    bad = unreadable_images(tmp_path / "images" / "train") | unreadable_images(tmp_path / "images" / "val")
    for image in bad:
        label = tmp_path / "labels" / image.parent.name / f"{image.stem}.txt"
        label.write_text("0 0.5 0.5 0.3 0.3\n")
    resolved = yaml.safe_load(Path(resolve_data(data)).read_text())
    want = [f"WARNING ⚠️ {image}: {reason}, image skipped" for image, reason in bad.items()]
    assert sorted(warnings_seen) == sorted(want)
    for split, n in (("train", 4), ("val", 2)):  # Ultralytics is given the readable images only
        assert sorted(p.name for p in Path(resolved[split]).iterdir()) == [f"{i}.jpg" for i in range(n)]


def test_predict_skips_unreadable_images_naming_the_real_reason(tmp_path, warnings_seen):
    import torch

    from umop_yolo.engine.build import build_model

    folder = tmp_path / "pictures"
    bad = unreadable_images(folder)
    cv2.imwrite(str(folder / "good.jpg"), np.full((64, 64, 3), 127, np.uint8))
    weights = tmp_path / "m.pt"
    torch.save({"model": build_model("yolov8n.yaml", nc=1, verbose=False), "train_args": {}}, weights)
    argv = ["predict", f"model={weights}", f"source={folder}", "imgsz=64", "device=cpu", f"project={tmp_path}"]
    assert main([*argv, "name=pred"]) == 0
    want = [f"WARNING ⚠️ {image}: {reason}, image skipped" for image, reason in bad.items()]
    assert sorted(warnings_seen) == sorted(want)
    assert [p.name for p in (tmp_path / "pred").glob("*.jpg")] == ["good.jpg"]


def test_predict_on_an_unreadable_image_or_a_missing_source_is_one_line(tmp_path, capsys):
    weights = tmp_path / "m.pt"
    weights.touch()  # never read: the source is checked first
    bad = unreadable_images(tmp_path)
    (tmp_path / "empty").mkdir()
    expected = {**{image: f"source '{image}': {reason}" for image, reason in bad.items()},
                tmp_path / "nowhere": f"source '{tmp_path / 'nowhere'}' not found",
                tmp_path / "empty": f"source '{tmp_path / 'empty'}' holds no images or videos"}
    for source, message in expected.items():
        assert main(["predict", f"model={weights}", f"source={source}"]) == 2
        assert capsys.readouterr().err.strip() == f"umop: error: {message}"


def test_val_of_a_checkpoint_whose_dataset_is_gone_is_one_line(tmp_path, capsys):
    import torch

    from umop_yolo.engine.build import build_model

    weights, gone = tmp_path / "m.pt", tmp_path / "gone" / "data.yaml"
    model = build_model("yolov8n.yaml", nc=1, verbose=False)
    torch.save({"model": model, "train_args": {"data": str(gone), "imgsz": 64}}, weights)
    assert main(["val", f"model={weights}", "device=cpu"]) == 2  # Ultralytics tried to download coco8 instead
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (loading may log to a stream an earlier test closed)
    assert last == f"umop: error: data YAML '{gone}' not found"
