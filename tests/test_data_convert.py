"""COCO JSON and Pascal VOC to YOLO: round trips on hand-made datasets, bad-label reports, coco128's real JSON."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from ultralytics.data.utils import check_det_dataset

from conftest import COCO128
from umop_yolo.data import convert, convert_main, resolve_data
from umop_yolo.errors import UserInputError

pytestmark = pytest.mark.usefixtures("cache")  # every test converts into its own cache


def write_image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))


def rows(label_file: Path) -> np.ndarray:
    """(N, 5) label rows; (0, 5) for an empty file."""
    return np.array([line.split() for line in label_file.read_text().splitlines()], float).reshape(-1, 5)


def read_labels(yaml_file: Path, split: str) -> dict[str, list[list[float]]]:
    data = check_det_dataset(str(yaml_file))
    labels = Path(data[split]).parent.parent / "labels" / split
    return {p.stem: rows(p).tolist() for p in sorted(labels.iterdir())}


def coco_dataset(root: Path) -> None:
    """Two splits; categories listed out of id order; crowd, bad and orphan annotations; one missing image."""
    images = [(1, "a.jpg", 100, 50), (2, "sub/b.png", 40, 40), (3, "gone.jpg", 10, 10)]
    for _, name, w, h in images[:2]:
        write_image(root / "imgs" / name, w, h)
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [90, 40, 20, 20], "iscrowd": 0},  # clipped to 10x10
        {"id": 12, "image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50], "iscrowd": 1},
        {"id": 13, "image_id": 2, "category_id": 99, "bbox": [0, 0, 5, 5], "iscrowd": 0},
        {"id": 14, "image_id": 2, "category_id": 3, "bbox": [4, 4, 0, 8], "iscrowd": 0},
        {"id": 15, "image_id": 2, "category_id": 3, "bbox": [4, 4], "iscrowd": 0},
        {"id": 16, "image_id": 77, "category_id": 3, "bbox": [1, 1, 2, 2], "iscrowd": 0},
        {"id": 17, "image_id": 2, "category_id": 3, "bbox": [0, 0, 40, 20]},
    ]
    doc = {
        "images": [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in images],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "seven"}, {"id": 1, "name": "one"}, {"id": 3, "name": "three"}],
    }
    (root / "ann").mkdir()
    (root / "ann" / "train.json").write_text(json.dumps(doc))
    (root / "ann" / "val.json").write_text(json.dumps({**doc, "annotations": annotations[:1]}))


def test_coco_yaml_round_trip(tmp_path, warnings_seen):
    coco_dataset(tmp_path / "src")
    cfg = tmp_path / "coco.yaml"
    cfg.write_text(
        "format: coco\npath: src\ntrain: imgs\nval: imgs\ntrain_json: ann/train.json\nval_json: ann/val.json\n"
    )
    out = Path(resolve_data(cfg))
    resolved = yaml.safe_load(out.read_text())
    assert resolved["names"] == {0: "one", 1: "three", 2: "seven"}  # class i = i-th smallest category id
    assert resolved["val_json"] == str(tmp_path / "src" / "ann" / "val.json")
    labels = read_labels(out, "train")
    assert labels == {  # the images keep their own names
        "a": [[2, 0.2, 0.2, 0.2, 0.2], [0, 0.95, 0.9, 0.1, 0.2]],
        "b": [[1, 0.5, 0.25, 1.0, 0.5]],
    }
    image = Path(check_det_dataset(str(out))["train"]) / "b.png"
    assert image.is_symlink() and image.resolve() == tmp_path / "src" / "imgs" / "sub" / "b.png"
    ids = json.loads(Path(resolved["train_image_ids"]).read_text())
    assert ids == {"images/train/a.jpg": 1, "images/train/b.png": 2}  # mirror image -> JSON image id
    train_json = tmp_path / "src" / "ann" / "train.json"
    for expected in [
        f"{train_json}: annotation id 13: unknown category_id 99",
        f"{train_json}: annotation id 14: empty box (w=0, h=8)",
        f"{train_json}: annotation id 15: 'bbox' must be [x, y, w, h]",
        f"{train_json}: annotation id 16: unknown image_id 77",
        f"{tmp_path / 'src' / 'imgs' / 'gone.jpg'}: not found (image id 3 of train.json), image skipped",
    ]:
        assert any(expected in m for m in warnings_seen), expected
    assert not any("annotation id 12" in m for m in warnings_seen)  # crowd boxes are skipped silently
    assert resolve_data(cfg) == str(out)  # cached: no second conversion


def test_malformed_coco_json_names_the_file(tmp_path):
    coco_dataset(tmp_path)
    (tmp_path / "ann" / "val.json").write_text('{"images": [')
    cfg = tmp_path / "c.yaml"
    cfg.write_text("format: coco\ntrain: imgs\nval: imgs\ntrain_json: ann/train.json\nval_json: ann/val.json\n")
    with pytest.raises(ValueError, match=r"c.yaml': .*val.json: unreadable or malformed JSON"):
        resolve_data(cfg)


def voc_xml(name: str, size: tuple[int, int] | None, objects: list[tuple[str, list[int], int]]) -> str:
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return f"<annotation><filename>{name}.jpg</filename>{size_xml}{objs}</annotation>"


def voc_dataset(root: Path) -> None:
    """VOC layout; boxes are 1-based inclusive, so xmin=1..xmax=50 is the continuous [0, 50]."""
    for stem, (w, h) in {"img1": (100, 50), "img2": (20, 40), "img3": (8, 8)}.items():
        write_image(root / "JPEGImages" / f"{stem}.jpg", w, h)
    (root / "Annotations").mkdir()
    xml = {
        "img1": voc_xml("img1", (100, 50), [("dog", [1, 1, 50, 50], 0), ("cat", [51, 11, 100, 30], 0),
                                            ("dog", [2, 2, 3, 3], 1), ("cow", [1, 1, 5, 5], 0)]),
        "img2": voc_xml("img2", None, [("cat", [1, 1, 20, 40], 0), ("dog", [5, 5, 4, 9], 0)]),  # size from image
        "img3": "<annotation><object>",
        "img4": voc_xml("img4", (5, 5), [("cat", [1, 1, 2, 2], 0)]),  # its image is missing
    }
    for stem, text in xml.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("img1\nimg3\nimg4\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("img2\n")


def test_voc_convert_main_round_trip(tmp_path, warnings_seen):
    voc_dataset(tmp_path / "VOC")
    args = {"format": "voc", "src": str(tmp_path / "VOC"), "dst": str(tmp_path / "yolo"), "names": "dog,cat"}
    out = convert_main(args)
    assert out == tmp_path / "yolo" / "data.yaml"
    assert read_labels(out, "train") == {"img1": [[0, 0.25, 0.5, 0.5, 1.0], [1, 0.75, 0.4, 0.5, 0.4]]}
    assert read_labels(out, "val") == {"img2": [[1, 0.5, 0.5, 1.0, 1.0]]}
    ann = tmp_path / "VOC" / "Annotations"
    for expected in [
        f"{ann / 'img1.xml'}: object 3: class 'cow' is not in names, label skipped",
        f"{ann / 'img2.xml'}: object 1: empty box (w=0, h=5), label skipped",
        f"{ann / 'img3.xml'}: missing or malformed XML",
        f"{ann / 'img4.xml'}: image {tmp_path / 'VOC' / 'JPEGImages' / 'img4.jpg'} not found, image skipped",
    ]:
        assert any(expected in m for m in warnings_seen), expected
    with pytest.raises(UserInputError, match="'dst' .* already exists"):
        convert_main(args)


def test_voc_yaml_collects_sorted_names(tmp_path):
    voc_dataset(tmp_path / "VOC")
    cfg = tmp_path / "voc.yaml"
    cfg.write_text("format: voc\npath: VOC\ntrain: [ImageSets/Main/train.txt]\nval: ImageSets/Main/val.txt\n")
    out = Path(resolve_data(cfg))
    assert yaml.safe_load(out.read_text())["names"] == {0: "cat", 1: "cow", 2: "dog"}
    assert read_labels(out, "train")["img1"][2] == [1, 0.025, 0.05, 0.05, 0.1]


def test_convert_main_rejects_bad_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        convert_main({"format": "coco", "src": str(tmp_path), "source": "x"})
    with pytest.raises(ValueError, match="'src' is required"):
        convert_main({"format": "coco"})
    with pytest.raises(ValueError, match="'format' must be one of"):
        convert_main({"format": "kitti", "src": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="no coco splits found"):
        convert_main({"format": "coco", "src": str(tmp_path)})


def test_coco128_official_json_matches_shipped_yolo_labels():
    if not COCO128.is_dir():
        pytest.skip("../shared/data/coco128 is not present")
    out = convert("coco", COCO128, splits=["train2017"])
    ours = Path(out).parent / "labels" / "train"
    shipped = COCO128 / "labels" / "train2017"
    stems = [p.stem for p in ours.iterdir()]
    assert len(stems) == len(json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())["images"])
    total = 0
    for stem in stems:
        mine = rows(ours / f"{stem}.txt")
        theirs = rows(shipped / f"{stem}.txt") if (shipped / f"{stem}.txt").is_file() else mine[:0]
        assert len(mine) == len(theirs), stem
        if len(mine):
            order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
            np.testing.assert_allclose(order(mine), order(theirs), atol=2e-6)
        total += len(mine)
    assert total > 900
