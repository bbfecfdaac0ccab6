"""A synthetic COCO instances dataset shaped like train2017, for bench/coco_scale.py.

Shape copied from train2017: 118,287 images, 860,001 annotations, 1,021 images without any (0.86%), a heavy-tailed
count per image (mean 7.3, at most 93), 80 categories with ids 1-90 and COCO's gaps, `person` about 30% of the boxes,
41% small / 34% medium / 25% large boxes, polygon segmentations (about 24 vertices, so the JSON has train2017's size
per annotation, ~0.5 kB) and 1% crowd annotations with RLE counts. Image sizes are a handful around 640 x 480; each
size is encoded once as a small real JPEG and hard-linked (copied where links fail) under every file name of that
size, so image headers are real and agree with the JSON while the disk holds only the distinct files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

TRAIN2017 = {"images": 118_287, "boxes": 860_001, "empty": 1_021}
MAX_PER_IMAGE = 93
MISSING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)  # COCO's unused category ids in 1-90
SIZES = {(640, 480): 0.40, (640, 427): 0.18, (480, 640): 0.12, (427, 640): 0.08, (640, 426): 0.06,
         (640, 428): 0.04, (500, 375): 0.04, (640, 360): 0.04, (612, 612): 0.02, (640, 512): 0.02}


@dataclass
class Tables:
    """Images (ids, widths, heights) and annotations (image index, category id, ltwh box, crowd flag) as arrays."""

    image_ids: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    owner: np.ndarray  # image index of each annotation
    category: np.ndarray
    boxes: np.ndarray  # (n, 4) x, y, w, h in pixels
    crowd: np.ndarray


def category_ids() -> list[int]:
    return [i for i in range(1, 91) if i not in MISSING_IDS]


def category_names() -> list[str]:
    """The 80 COCO names, read from the installed Ultralytics' coco.yaml (class i is the i-th id)."""
    import ultralytics

    data = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml").read_text())
    return [data["names"][i] for i in range(80)]


def _counts(n_images: int, rng: np.random.Generator) -> np.ndarray:
    """Annotations per image: train2017's total and share of empty images, negative-binomial tail, capped at 93."""
    total = round(n_images * TRAIN2017["boxes"] / TRAIN2017["images"])
    empty = round(n_images * TRAIN2017["empty"] / TRAIN2017["images"])
    full = n_images - empty
    mean = total / full - 1
    counts = np.zeros(n_images, dtype=np.int64)
    counts[empty:] = np.minimum(1 + rng.negative_binomial(0.9, 0.9 / (0.9 + mean), full), MAX_PER_IMAGE)
    while (diff := total - int(counts.sum())) != 0:  # hit the total exactly, keeping 1..93 on non-empty images
        room = np.flatnonzero((counts[empty:] < MAX_PER_IMAGE) if diff > 0 else (counts[empty:] > 1)) + empty
        pick = rng.choice(room, min(abs(diff), len(room)), replace=False)
        counts[pick] += np.sign(diff)
    return rng.permutation(counts)


def make_tables(n_images: int, seed: int = 0) -> Tables:
    """The images and annotations of a dataset of `n_images`, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    sizes, p = list(SIZES), np.array(list(SIZES.values()))
    which = rng.choice(len(sizes), n_images, p=p / p.sum())
    widths, heights = np.array(sizes)[which].T
    image_ids = np.sort(rng.choice(600_000, n_images, replace=False)) + 1  # sparse, like COCO's
    owner = np.repeat(np.arange(n_images), _counts(n_images, rng))
    weights = 1 / np.arange(2, 81) ** 0.9
    weights = np.concatenate([[0.3], 0.7 * weights / weights.sum()])
    category = np.array(category_ids())[rng.choice(80, len(owner), p=weights)]
    w_img, h_img = widths[owner].astype(float), heights[owner].astype(float)
    side = np.exp(rng.normal(np.log(48), 1.15, len(owner)))  # sqrt(area): ~41% < 32 px, ~25% > 96 px
    aspect = np.exp(rng.normal(0, 0.5, len(owner)))
    w = np.clip(side * np.sqrt(aspect), 2, w_img)
    h = np.clip(side / np.sqrt(aspect), 2, h_img)
    x, y = rng.uniform(0, 1, len(owner)) * (w_img - w), rng.uniform(0, 1, len(owner)) * (h_img - h)
    boxes = np.round(np.stack([x, y, w, h], 1), 2)
    crowd = rng.uniform(size=len(owner)) < 0.01
    return Tables(image_ids, widths, heights, owner, category, boxes, crowd)


def _segmentation(box: np.ndarray, crowd: bool, height: int, width: int, rng: np.random.Generator) -> str:
    """A polygon inside the box (~24 vertices), or for a crowd an uncompressed RLE, as JSON text."""
    if crowd:
        counts = rng.integers(1, 2 * height, 120)
        return json.dumps({"counts": [*counts.tolist(), int(height * width - counts.sum())], "size": [height, width]})
    x, y, w, h = box
    t = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(12, 37)))
    r = rng.uniform(0.7, 1.0, len(t))
    poly = np.stack([x + w / 2 * (1 + r * np.cos(t)), y + h / 2 * (1 + r * np.sin(t))], 1).round(2)
    return f"[[{','.join(map(str, poly.ravel().tolist()))}]]"


def write_instances(tables: Tables, json_file: Path, folder: str, seed: int = 0) -> None:
    """Stream the instances JSON to `json_file` (the dataset never sits in memory as Python objects)."""
    rng = np.random.default_rng(seed + 1)
    cats = [{"supercategory": "thing", "id": i, "name": n} for i, n in zip(category_ids(), category_names())]
    with open(json_file, "w", encoding="utf-8") as f:
        f.write('{"info":{"description":"synthetic, shaped like COCO train2017"},"licenses":[{"id":1,"name":"x"}],')
        f.write('"images":[')
        for k, (image_id, width, height) in enumerate(zip(tables.image_ids, tables.widths, tables.heights)):
            name = f"{image_id:012d}.jpg"
            f.write(f'{"," if k else ""}{{"license":1,"file_name":"{name}","coco_url":"http://images.cocodataset.org/'
                    f'{folder}/{name}","height":{height},"width":{width},"date_captured":"2013-11-14 16:28:13",'
                    f'"flickr_url":"","id":{image_id}}}')
        f.write('],"annotations":[')
        for k in range(len(tables.owner)):
            i, box, crowd = tables.owner[k], tables.boxes[k], bool(tables.crowd[k])
            seg = _segmentation(box, crowd, int(tables.heights[i]), int(tables.widths[i]), rng)
            f.write(f'{"," if k else ""}{{"segmentation":{seg},"area":{round(float(box[2] * box[3]), 2)},'
                    f'"iscrowd":{int(crowd)},"image_id":{tables.image_ids[i]},"bbox":{box.tolist()},'
                    f'"category_id":{tables.category[k]},"id":{k + 1}}}')
        f.write(f'],"categories":{json.dumps(cats)}}}')


def write_images(tables: Tables, folder: Path, prototypes: Path) -> None:
    """One small JPEG per distinct size, hard-linked (or copied) under each image's file name."""
    prototypes.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    protos = {}
    for width, height in SIZES:
        ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
        protos[(width, height)] = prototypes / f"{width}x{height}.jpg"
        Image.fromarray(ramp).save(protos[(width, height)], quality=10)
    for image_id, width, height in zip(tables.image_ids, tables.widths, tables.heights):
        target = folder / f"{image_id:012d}.jpg"
        try:
            os.link(protos[(int(width), int(height))], target)
        except OSError:
            shutil.copyfile(protos[(int(width), int(height))], target)


def ground_truth(tables: Tables) -> dict:
    """The instances as a dict for COCOeval (no segmentation: box evaluation does not read it)."""
    images = [{"id": int(i), "width": int(w), "height": int(h), "file_name": f"{i:012d}.jpg"}
              for i, w, h in zip(tables.image_ids, tables.widths, tables.heights)]
    annotations = [{"id": k + 1, "image_id": int(tables.image_ids[i]), "category_id": int(c), "bbox": b,
                    "area": b[2] * b[3], "iscrowd": int(crowd)}
                   for k, (i, c, b, crowd) in enumerate(zip(tables.owner, tables.category, tables.boxes.tolist(),
                                                            tables.crowd))]
    cats = [{"id": i, "name": n} for i, n in zip(category_ids(), category_names())]
    return {"images": images, "annotations": annotations, "categories": cats}


def detections(tables: Tables, per_image: int = 100, seed: int = 2) -> list[dict]:
    """`per_image` detections per image: each ground-truth box jittered (most with its class and a high score), the
    rest random boxes with low scores, as a trained detector's top-100 looks."""
    rng = np.random.default_rng(seed)
    n = len(tables.image_ids)
    counts = np.bincount(tables.owner, minlength=n)  # owner is sorted: each image's annotations are contiguous
    rank = np.arange(len(tables.owner)) - (np.cumsum(counts) - counts)[tables.owner]
    gt_pick = np.flatnonzero(rank < per_image)
    extra = per_image - np.minimum(counts, per_image)
    image = np.concatenate([tables.owner[gt_pick], np.repeat(np.arange(n), extra)])
    jitter = rng.normal(1, 0.1, (len(gt_pick), 4)) * tables.boxes[gt_pick]
    w_img, h_img = tables.widths[image[len(gt_pick):]], tables.heights[image[len(gt_pick):]]
    side = np.exp(rng.normal(np.log(48), 1.15, len(w_img)))
    random = np.stack([rng.uniform(0, w_img - 1), rng.uniform(0, h_img - 1), np.minimum(side, w_img),
                       np.minimum(side, h_img)], 1)
    boxes = np.round(np.abs(np.concatenate([jitter, random])), 2)
    same = rng.uniform(size=len(gt_pick)) < 0.8
    cats = np.array(category_ids())
    category = np.concatenate([np.where(same, tables.category[gt_pick], rng.choice(cats, len(gt_pick))),
                               rng.choice(cats, len(w_img))])
    score = np.round(np.concatenate([rng.uniform(0.3, 1.0, len(gt_pick)), rng.uniform(0.0, 0.4, len(w_img))]), 5)
    ids = tables.image_ids[image]
    return [{"image_id": int(i), "category_id": int(c), "bbox": b, "score": float(s)}
            for i, c, b, s in zip(ids, category, boxes.tolist(), score)]
