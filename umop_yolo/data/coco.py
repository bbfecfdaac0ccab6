"""Read COCO instances JSON (`instances_*.json`) into YOLO samples.

Class i is the category with the i-th smallest id (COCO's 1..90 become 0..79), which is what the evaluator assumes.
Crowd annotations (`iscrowd=1`) are not training boxes. Each sample keeps its image's base name and JSON image id,
which the converter records in an id map (`file_name` may hold folders, and ids may be any numbers or strings).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image
from ultralytics.utils import LOGGER

from umop_yolo.data.labels import Reporter, Sample, pixel_box_row
from umop_yolo.errors import UserInputError


def load_json(json_file: Path) -> dict[str, Any]:
    """Load and shape-check a COCO JSON; ValueError names the file and what is wrong."""
    try:
        data = json.loads(json_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserInputError(f"{json_file}: unreadable or malformed JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{json_file}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise UserInputError(f"{json_file}: '{key}' is missing or not a list")
    return data


def category_names(data: dict[str, Any], json_file: Path) -> tuple[list[str], dict[int, int]]:
    """Class names ordered by category id, and the map category id -> contiguous class id."""
    cats = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise UserInputError(f"{json_file}: category {c!r} needs an integer 'id' and a 'name'")
        if c["id"] in cats:
            raise UserInputError(f"{json_file}: category id {c['id']} appears twice")
        cats[c["id"]] = str(c["name"])
    ids = sorted(cats)
    return [cats[i] for i in ids], {cat: cls for cls, cat in enumerate(ids)}


def _image_size(entry: dict[str, Any], path: Path) -> tuple[float, float]:
    """Size declared in the JSON; the file's own size only when the JSON has none."""
    w, h = entry.get("width"), entry.get("height")
    if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0:
        return float(w), float(h)
    with Image.open(path) as im:
        return float(im.width), float(im.height)


def read_coco(json_file: Path, image_dir: Path) -> tuple[list[str], list[Sample]]:
    """Class names and one Sample per image of the JSON; bad annotations and missing images are warned and skipped."""
    report = Reporter(json_file)
    names, samples, crowd = coco_samples(load_json(json_file), json_file, image_dir, report)
    report.close()
    n_boxes = sum(len(s.rows) for s in samples)
    LOGGER.info(f"{json_file.name}: {len(samples)} images, {n_boxes} boxes, {crowd} crowd boxes not used for training")
    return names, samples


def coco_samples(
    data: dict[str, Any], json_file: Path, image_dir: Path, report: Reporter
) -> tuple[list[str], list[Sample], int]:
    """`read_coco` on a loaded JSON `data`, plus the number of crowd boxes left out: each bad annotation and missing
    image goes to `report` and is skipped."""
    names, cls_of = category_names(data, json_file)
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in data["annotations"]:
        if isinstance(ann, dict) and isinstance(ann.get("image_id"), (int, str)):
            by_image[ann["image_id"]].append(ann)
        else:
            report(f"{json_file}: annotation {ann!r}", "not an object with an 'image_id'")
    image_ids = {im.get("id") for im in data["images"] if isinstance(im, dict)}
    for image_id in by_image.keys() - image_ids:
        for ann in by_image[image_id]:
            report(f"{json_file}: annotation id {ann.get('id')}", f"unknown image_id {image_id!r}")

    samples, crowd = [], 0
    for entry in data["images"]:
        usable = isinstance(entry, dict) and isinstance(entry.get("id"), (int, str))
        if not usable or not isinstance(entry.get("file_name"), str):
            report(f"{json_file}: image {entry!r}", "needs an 'id' (number or string) and a 'file_name'", "image")
            continue
        path = image_dir / entry["file_name"]
        try:
            width, height = _image_size(entry, path) if path.is_file() else (0.0, 0.0)
        except OSError as e:
            report(str(path), f"unreadable image ({e})", "image")
            continue
        if not width:
            report(str(path), f"not found (image id {entry['id']} of {json_file.name})", "image")
            continue
        rows = []
        for ann in by_image.get(entry["id"], []):
            if ann.get("iscrowd", 0):
                crowd += 1
                continue
            where = f"{json_file}: annotation id {ann.get('id')}"
            if ann.get("category_id") not in cls_of:
                report(where, f"unknown category_id {ann.get('category_id')!r}")
                continue
            box = ann.get("bbox")
            if not isinstance(box, list) or len(box) != 4:
                report(where, f"'bbox' must be [x, y, w, h], got {box!r}")
                continue
            row, problem = pixel_box_row(cls_of[ann["category_id"]], [*box[:2], *_far_corner(box)], width, height)
            if problem:
                report(where, problem)
            else:
                rows.append(row)
        samples.append(Sample(path, rows, image_id=entry["id"]))
    return names, samples, crowd


def _far_corner(box: list[Any]) -> list[Any]:
    """x + w, y + h when the values are numbers; the raw values otherwise, for pixel_box_row to reject."""
    try:
        return [box[0] + box[2], box[1] + box[3]]
    except TypeError:
        return box[2:]
