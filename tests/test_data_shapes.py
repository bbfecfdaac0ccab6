"""The built-in shapes dataset: determinism, multi-scale coverage, atomic cache."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from umop_yolo.data import cache
from umop_yolo.data.labels import pixel_box_row, yolo_row
from umop_yolo.data.shapes import SHAPES, ShapesSpec, build_shapes, layout, render, spec_from_yaml

TINY = ShapesSpec(seed=3, n_train=6, n_val=2, imgsz=128)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "data.yaml"  # data.yaml holds the (different) absolute path
    }


def test_same_seed_same_files_other_seed_other_files(tmp_path, monkeypatch):
    digests = []
    for run, spec in enumerate([TINY, TINY, ShapesSpec(seed=4, n_train=6, n_val=2, imgsz=128)]):
        monkeypatch.setenv("UMOP_CACHE_DIR", str(tmp_path / f"cache{run}"))
        digests.append(_tree_digest(build_shapes(spec).parent))
    assert len(digests[0]) == 2 * (6 + 2)  # images and labels of both splits
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_yaml_and_labels_are_ultralytics_ready(tmp_path, monkeypatch):
    from ultralytics.data.utils import check_det_dataset

    monkeypatch.setenv("UMOP_CACHE_DIR", str(tmp_path))
    yaml_file = build_shapes(TINY)
    assert yaml_file.parent.name == TINY.key() and yaml_file.parent.parent == tmp_path / "datasets"
    data = check_det_dataset(str(yaml_file))
    assert data["nc"] == 5 and data["names"][4] == "star"
    assert sorted(os.listdir(data["val"])) == ["000000.jpg", "000001.jpg"]
    rows = np.concatenate([np.loadtxt(f, ndmin=2) for f in (yaml_file.parent / "labels" / "train").glob("*.txt")])
    assert set(rows[:, 0]) <= set(range(5))
    x1, y1 = rows[:, 1] - rows[:, 3] / 2, rows[:, 2] - rows[:, 4] / 2
    x2, y2 = rows[:, 1] + rows[:, 3] / 2, rows[:, 2] + rows[:, 4] / 2
    assert (rows[:, 3:] > 0).all() and x1.min() >= 0 and y1.min() >= 0 and x2.max() <= 1 and y2.max() <= 1


def test_label_files_hold_render_boxes_as_the_converters_rows(tmp_path, monkeypatch):
    assert yolo_row(3, 16, 32, 48, 96, 128, 128) == "3 0.250000 0.500000 0.250000 0.500000\n"
    assert pixel_box_row(3, [-4, 32, 48, 96], 128, 128) == (yolo_row(3, 0.0, 32, 48, 96, 128, 128), "")  # clipped
    monkeypatch.setenv("UMOP_CACHE_DIR", str(tmp_path))
    labels = build_shapes(TINY).parent / "labels" / "val" / "000001.txt"
    _, boxes = render(np.random.default_rng([TINY.seed, 1, 1]), TINY.imgsz, TINY.names)
    rows = [yolo_row(int(c), x1, y1, x2, y2, TINY.imgsz, TINY.imgsz) for c, x1, y1, x2, y2 in boxes]
    assert labels.read_text() == "".join(rows) and rows


def _layouts(n: int, imgsz: int) -> list[np.ndarray]:
    """Per image: (N, 4) boxes x1 y1 x2 y2 in pixels, as `render` would draw them."""
    return [np.array([o[1] for o in layout(np.random.default_rng([0, 0, i]), imgsz, SHAPES)]) for i in range(n)]


def test_every_pyramid_level_gets_objects():
    """Sizes span ~8 px to more than half the image; at 640 px each of strides 8..128 gets its share."""
    imgsz = 640
    boxes = np.concatenate(_layouts(100, imgsz))
    size = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert size.min() < 9 and size.max() > imgsz / 2
    # RetinaNet-style assignment: anchor size 4 * stride per level, an object goes to the nearest level (log scale)
    level = np.clip(np.round(np.log2(size / 32)), 0, 4).astype(int)
    counts = np.bincount(level, minlength=5)
    assert (counts >= 0.05 * len(size)).all(), counts


def test_crowded_small_clusters_and_overlaps_exist():
    crowded = overlapping = 0
    for boxes in _layouts(100, 320):
        crowded += ((boxes[:, 2] - boxes[:, 0]) < 24).sum() >= 4
        iw = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
        ih = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        overlapping += (np.triu(inter, 1) > 0).any()
    assert crowded >= 5 and overlapping >= 20


def test_render_draws_every_class_inside_the_image():
    classes = set()
    for i in range(8):
        image, boxes = render(np.random.default_rng([0, 0, i]), 128, SHAPES)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert (boxes[:, 1:3] >= 0).all() and (boxes[:, 3:] <= 128).all() and (boxes[:, 3:] > boxes[:, 1:3]).all()
        classes |= set(boxes[:, 0].astype(int))
    assert classes == set(range(len(SHAPES)))


def test_names_choose_the_shapes_and_bad_generate_keys_are_named():
    spec = spec_from_yaml({"builder": "shapes", "n_train": 2}, {0: "star", 1: "circle"})
    assert spec.names == ("star", "circle") and spec.n_train == 2 and spec.key() != ShapesSpec().key()
    with pytest.raises(ValueError, match=r"unknown key 'generate.count'"):
        spec_from_yaml({"count": 3}, None)
    with pytest.raises(ValueError, match=r"'generate.imgsz' must be int"):
        spec_from_yaml({"imgsz": "320"}, None)
    with pytest.raises(ValueError, match=r"'generate.builder' 'mnist' is unknown"):
        spec_from_yaml({"builder": "mnist"}, None)
    with pytest.raises(ValueError, match=r"'names' must list distinct shapes"):
        spec_from_yaml({}, ["circle", "hexagon"])


def test_stale_temp_dir_is_swept_and_never_taken_for_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("UMOP_CACHE_DIR", str(tmp_path))
    final = tmp_path / "datasets" / TINY.key()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = final.parent / f".{final.name}.tmp-{dead.stdout.strip()}-abc"
    (stale / "images" / "train").mkdir(parents=True)  # what a killed generation leaves behind
    yaml_file = build_shapes(TINY)
    assert not stale.exists()
    assert len(list((final / "images" / "train").iterdir())) == 6 and yaml_file.is_file()


def test_failed_build_leaves_nothing_and_existing_dataset_is_reused(tmp_path):
    final = tmp_path / "ds"

    def broken(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.atomic_build(final, broken)
    assert list(tmp_path.iterdir()) == []
    cache.atomic_build(final, lambda tmp: (tmp / "ok").write_text("1"))
    cache.atomic_build(final, broken)  # complete already: not rebuilt
    assert [p.name for p in final.iterdir()] == ["ok"]
