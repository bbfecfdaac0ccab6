"""`umop check data=...`: a dry run that lists every problem of a YOLO, COCO or VOC dataset in one line each, exit 0
when clean and 2 otherwise, without converting anything."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import COCO128
from umop_yolo.cli import main


def write_image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))


def check(capsys, yaml_file: Path) -> tuple[int, list[str], str]:
    code = main(["check", f"data={yaml_file}"])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err.strip()


def coco_dataset(root: Path) -> Path:
    """Two images (one per split) with one box each, categories 1 and 3; returns the data YAML."""
    for name, (w, h) in {"a.jpg": (80, 40), "b.jpg": (60, 60)}.items():
        write_image(root / "imgs" / name, w, h)
    categories = [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}]
    for split, (image_id, name, w, h) in {"train": (7, "a.jpg", 80, 40), "val": (9, "b.jpg", 60, 60)}.items():
        doc = {"images": [{"id": image_id, "file_name": name, "width": w, "height": h}], "categories": categories,
               "annotations": [{"id": 1, "image_id": image_id, "category_id": 3, "bbox": [4, 4, 10, 10]}]}
        (root / "ann").mkdir(exist_ok=True)
        (root / "ann" / f"{split}.json").write_text(json.dumps(doc))
    (root / "coco.yaml").write_text("format: coco\ntrain: imgs\nval: imgs\ntrain_json: ann/train.json\n"
                                    "val_json: ann/val.json\n")
    return root / "coco.yaml"


def test_a_clean_coco_dataset_passes_and_converts_nothing(tmp_path, capsys, cache):
    code, out, err = check(capsys, coco_dataset(tmp_path))
    assert (code, err) == (0, "")
    assert out == [f"check: {tmp_path / 'coco.yaml'}: no problems (2 images)"]
    assert not cache.exists()  # a dry run: no mirror, no resolved YAML


def test_a_broken_coco_dataset_gives_one_line_per_problem_and_exit_2(tmp_path, capsys):
    yaml_file = coco_dataset(tmp_path)
    doc = json.loads((tmp_path / "ann" / "train.json").read_text())
    doc["images"] += [{"id": 8, "file_name": "gone.jpg", "width": 80, "height": 40},
                      {"id": 10, "file_name": "b.jpg", "width": 640, "height": 480}]  # b.jpg is 60 x 60
    doc["annotations"].append({"id": 2, "image_id": 7, "category_id": 99, "bbox": [1, 1, 5, 5]})
    (tmp_path / "ann" / "train.json").write_text(json.dumps(doc))
    (tmp_path / "ann" / "val.json").write_text('{"images": [')
    code, out, err = check(capsys, yaml_file)
    assert code == 2 and err == f"umop: error: check: 4 problem(s) in the dataset of {yaml_file}"
    assert len(out) == 4
    assert f"{tmp_path / 'imgs' / 'gone.jpg'}: not found (image id 8 of train.json)" in out
    assert f"{tmp_path / 'imgs' / 'b.jpg'}: image is 60x60, the annotation says 640x480 (image id 10 of train.json)" \
        in out
    assert f"{tmp_path / 'ann' / 'train.json'}: annotation id 2: unknown category_id 99" in out
    (bad_json,) = [line for line in out if "val.json" in line]
    assert bad_json.startswith(f"{yaml_file}: split 'val': {tmp_path / 'ann' / 'val.json'}: unreadable or malformed")


def test_a_missing_coco_json_or_image_folder_stops_only_its_split(tmp_path, capsys):
    yaml_file = coco_dataset(tmp_path)
    (tmp_path / "ann" / "val.json").unlink()
    yaml_file.write_text(yaml_file.read_text().replace("train: imgs", "train: images"))
    code, out, _ = check(capsys, yaml_file)
    assert code == 2 and out == [f"{yaml_file}: split 'train': 'train' path {tmp_path / 'images'} does not exist",
                                 f"{yaml_file}: split 'val': 'val_json' path {tmp_path / 'ann' / 'val.json'} does not "
                                 "exist"]


def test_coco_categories_must_match_names_and_the_other_splits(tmp_path, capsys):
    yaml_file = coco_dataset(tmp_path)
    doc = json.loads((tmp_path / "ann" / "val.json").read_text())
    doc["categories"][0]["name"] = "truck"
    (tmp_path / "ann" / "val.json").write_text(json.dumps(doc))
    code, out, _ = check(capsys, yaml_file)
    assert code == 2 and out == [f"{tmp_path / 'ann' / 'val.json'}: its categories (by id) ['person', 'truck'] are "
                                 "not the first split's categories ['person', 'car']"]
    yaml_file.write_text(yaml_file.read_text() + "names: [person, bus]\n")
    code, out, _ = check(capsys, yaml_file)
    assert code == 2 and len(out) == 2 and all("are not the YAML's 'names'" in line for line in out)


def yolo_dataset(root: Path) -> Path:
    for split in ("train", "val"):
        write_image(root / "images" / split / "a.jpg", 64, 48)
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat, dog]\n")
    return root / "data.yaml"


def test_yolo_class_ids_out_of_range_and_unreadable_images_are_listed(tmp_path, capsys):
    yaml_file = yolo_dataset(tmp_path)
    assert check(capsys, yaml_file)[:2] == (0, [f"check: {yaml_file}: no problems (2 images)"])
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n")
    (tmp_path / "images" / "val" / "b.jpg").write_bytes(b"")
    code, out, _ = check(capsys, yaml_file)
    assert code == 2
    assert out == [f"{tmp_path / 'labels' / 'train' / 'a.txt'}:2: class 2 is not an integer in 0-1",
                   f"{tmp_path / 'images' / 'val' / 'b.jpg'}: empty image file (zero bytes)"]


def test_a_yolo_split_without_images_and_a_yaml_without_names(tmp_path, capsys):
    yaml_file = yolo_dataset(tmp_path)
    (tmp_path / "images" / "val" / "a.jpg").unlink()
    code, out, _ = check(capsys, yaml_file)
    assert code == 2 and out == [f"{yaml_file}: split 'val': 'val' has no images ({tmp_path / 'images' / 'val'})"]
    yaml_file.write_text("train: images/train\nval: images/train\n")
    code, out, _ = check(capsys, yaml_file)
    assert code == 2 and out == [f"{yaml_file}: missing 'names' (class names, index = class id)"]


def voc_dataset(root: Path) -> Path:
    for stem, (w, h), name in (("img1", (50, 40), "cat"), ("img2", (30, 30), "dog")):
        write_image(root / "JPEGImages" / f"{stem}.jpg", w, h)
        (root / "Annotations").mkdir(exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{w}</width><height>{h}</height></size>"
            f"<object><name>{name}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
            "</object></annotation>")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("img1\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("img2\n")
    (root / "voc.yaml").write_text("format: voc\ntrain: ImageSets/Main/train.txt\nval: ImageSets/Main/val.txt\n"
                                   "names: [cat, dog]\n")
    return root / "voc.yaml"


def test_voc_sizes_missing_images_and_unknown_names(tmp_path, capsys):
    yaml_file = voc_dataset(tmp_path)
    assert check(capsys, yaml_file)[:2] == (0, [f"check: {yaml_file}: no problems (2 images)"])
    xml = tmp_path / "Annotations" / "img1.xml"
    xml.write_text(xml.read_text().replace("<width>50</width>", "<width>500</width>").replace(">cat<", ">cow<"))
    (tmp_path / "JPEGImages" / "img2.jpg").unlink()
    code, out, _ = check(capsys, yaml_file)
    assert code == 2 and len(out) == 3
    assert f"{xml}: object 0: class 'cow' is not in names" in out
    assert f"{tmp_path / 'JPEGImages' / 'img1.jpg'}: image is 50x40, the annotation says 500x40 (<size> of its XML)" \
        in out
    assert f"{tmp_path / 'Annotations' / 'img2.xml'}: image {tmp_path / 'JPEGImages' / 'img2.jpg'} not found" in out


@pytest.mark.parametrize("argv", [["check"], ["check", "data=x.yaml", "imgsz=64"]])
def test_check_takes_only_data(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == "umop: error: check takes only data= (a data YAML, e.g. umop check " \
                                              "data=coco.yaml)"


@pytest.mark.skipif(not COCO128.is_dir(), reason="needs ../shared/data/coco128")
def test_real_coco128_photos_agree_with_their_official_json(tmp_path, capsys):
    yaml_file = tmp_path / "coco128_json.yaml"
    yaml_file.write_text(f"format: coco\npath: {COCO128}\ntrain: images/train2017\nval: images/train2017\n"
                         "train_json: annotations/instances_train2017.json\n"
                         "val_json: annotations/instances_train2017.json\n")
    assert check(capsys, yaml_file) == (0, [f"check: {yaml_file}: no problems (256 images)"], "")
