"""COCO ground truth for evaluation: built from YOLO labels and cached as JSON, or read from an instances JSON."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from ultralytics.data.utils import exif_size

from umop_yolo.atomic import write_text_atomic
from umop_yolo.data.cache import cache_root


def default_cache_dir() -> Path:
    """Where ground truth goes when the label folder is read-only: `<umop cache root>/coco_gt`."""
    return cache_root() / "coco_gt"


def _relative_names(im_files: Sequence[str]) -> list[str]:
    """Image paths relative to their deepest common folder (so `a/1.jpg` and `b/1.jpg` stay distinct)."""
    root = os.path.commonpath([os.path.dirname(f) for f in im_files])
    return [Path(os.path.relpath(f, root)).as_posix() for f in im_files]


def _image_hw(label: Mapping) -> tuple[int, int]:
    """(height, width) of the original image: the label's `shape`, else the file's EXIF-corrected size.

    Ultralytics pops `shape` from the labels of rect datasets (the validation set during training).
    """
    if "shape" in label:
        return int(label["shape"][0]), int(label["shape"][1])
    with Image.open(label["im_file"]) as image:
        w, h = exif_size(image)
    return h, w


def yolo_images(im_files: Sequence[str]) -> dict[str, dict]:
    """The `id` and `file_name` `yolo_to_coco` gives each image: 1-based positions of the sorted paths, and the paths
    relative to their deepest common folder. Neither depends on the dataset's order (rect validation sorts by aspect
    ratio)."""
    files = sorted(im_files)
    names = _relative_names(files) if files else []
    return {f: {"id": i, "file_name": name} for i, (f, name) in enumerate(zip(files, names), 1)}


def yolo_to_coco(labels: Sequence[Mapping], names: Mapping[int, str]) -> dict:
    """COCO ground truth from Ultralytics label dicts (`im_file`, `cls`, normalized xywh `bboxes`, maybe `shape`).

    Image ids and file names are those of `yolo_images`; category ids are the YOLO class indices, `area` is the box
    area in pixels (YOLO labels have no masks) and `iscrowd` is 0.
    """
    images, annotations = [], []
    entries = yolo_images([lb["im_file"] for lb in labels])
    for lb in sorted(labels, key=lambda lb: lb["im_file"]):
        h, w = _image_hw(lb)
        image_id = entries[lb["im_file"]]["id"]
        images.append({**entries[lb["im_file"]], "height": h, "width": w})
        boxes = np.asarray(lb["bboxes"], dtype=np.float64).reshape(-1, 4) * [w, h, w, h]
        boxes[:, :2] -= boxes[:, 2:] / 2  # centre to top-left corner
        for c, box in zip(np.asarray(lb["cls"]).reshape(-1).tolist(), boxes.tolist()):
            annotations.append(
                {
                    "id": len(annotations) + 1,  # pycocotools treats a matched ground-truth id of 0 as unmatched
                    "image_id": image_id,
                    "category_id": int(c),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": int(i), "name": str(n)} for i, n in sorted(names.items())]
    return {"images": images, "annotations": annotations, "categories": categories}


def labels_key(labels: Sequence[Mapping], names: Mapping[int, str]) -> str:
    """SHA-256 of what the ground truth is built from: image paths, sizes and mtimes, classes, boxes, class names."""
    digest = hashlib.sha256(json.dumps(sorted((int(i), str(n)) for i, n in names.items())).encode())
    for lb in sorted(labels, key=lambda lb: lb["im_file"]):
        cls = np.asarray(lb["cls"], dtype=np.float32)
        stat = os.stat(lb["im_file"])
        digest.update(f"{lb['im_file']}\0{stat.st_size}\0{stat.st_mtime_ns}\0{cls.size}\0".encode())
        digest.update(cls.tobytes())
        digest.update(np.asarray(lb["bboxes"], dtype=np.float32).tobytes())
    return digest.hexdigest()


def _read_current(path: Path, info: Mapping[str, str]) -> dict | None:
    """The cached ground truth at `path` if its `info` (labels key included) is `info`, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            gt = json.load(f)
    except (OSError, ValueError):  # missing, unreadable or truncated: rebuild
        return None
    return gt if isinstance(gt, dict) and gt.get("info") == info else None


def _writable_dir(folder: Path) -> bool:
    """True if we may write in `folder`: its owner-write bit is set (respected even by root) and we have access."""
    return folder.is_dir() and bool(folder.stat().st_mode & 0o200) and os.access(folder, os.W_OK)


def cached_yolo_gt(
    labels: Sequence[Mapping],
    names: Mapping[int, str],
    cache_file: Path,
    fallback_dir: Path | None = None,
    notes: Mapping[str, str] | None = None,
) -> tuple[dict, Path | None]:
    """Ground truth for `labels`, reused from disk while the labels are unchanged, and the file that holds it.

    The file is `cache_file` (beside the labels) when its folder is writable, else `<fallback_dir>/<key>.coco.json`
    (default `default_cache_dir()`); the path is None if neither can be written, and the ground truth is then only
    returned. A changed label, image file, class filter or class name changes the key and rebuilds the file. `notes`
    (e.g. how converted boxes were read) are added to its `info`.
    """
    key = labels_key(labels, names)
    info = {"description": "ground truth from YOLO labels", "labels_sha256": key, **(notes or {})}
    fallback = (fallback_dir or default_cache_dir()) / f"{key[:16]}.coco.json"
    for path in (cache_file, fallback):
        if (gt := _read_current(path, info)) is not None:
            return gt, path
    gt = {"info": info, **yolo_to_coco(labels, names)}
    for path in ([cache_file] if _writable_dir(cache_file.parent) else []) + [fallback]:
        try:
            write_text_atomic(path, json.dumps(gt))  # a concurrent reader never sees half a file
            return gt, path
        except OSError:
            continue
    return gt, None


def load_instances(path: str | Path) -> dict:
    """Read a COCO instances JSON (images, annotations, categories)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def contiguous_category_ids(gt: Mapping) -> list[int]:
    """Category id of each contiguous class: class i is the i-th smallest id (COCO's 80 classes -> ids 1..90)."""
    return sorted(int(c["id"]) for c in gt["categories"])
