"""faster-coco-eval, used when installed, scores exactly as pycocotools, the fallback and reference."""

import math

import numpy as np
import pytest

from umop_yolo.eval import coco_eval
from umop_yolo.eval.coco_eval import default_backend, evaluate_boxes


@pytest.fixture
def faster():
    pytest.importorskip("faster_coco_eval")


def scene(seed: int) -> tuple[dict, list[dict]]:
    """40 images (5 without ground truth), 3 categories, small/medium/large and crowd boxes; detections: jittered
    copies, duplicates, misses, wrong classes, false positives, an image with more than 100, some equal scores."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 480, "width": 640} for i in range(1, 41)]
    annotations, detections = [], []
    for image in images[:35]:
        for _ in range(rng.integers(1, 8)):
            w, h = rng.choice([8.0, 24.0, 60.0, 200.0]) * rng.uniform(0.6, 1.4, 2)
            box = [float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h)), float(w), float(h)]
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "bbox": box, "area": w * h,
                                "category_id": int(rng.integers(1, 4)), "iscrowd": int(rng.uniform() < 0.05)})
    for a in annotations:
        for _ in range(rng.choice([0, 1, 1, 2])):  # missed, found, found twice
            box = [v + rng.normal(0, 0.1 * math.sqrt(a["area"])) for v in a["bbox"]]
            cls = a["category_id"] if rng.uniform() < 0.9 else int(rng.integers(1, 4))
            detections.append({"image_id": a["image_id"], "category_id": cls, "bbox": box,
                               "score": round(float(rng.uniform()), 2)})  # 2 decimals: many equal scores
    for image_id in rng.integers(1, 41, 150).tolist() + [7] * 120:  # false positives; image 7 gets > 100
        x, y, w, h = rng.uniform(0, 300, 4) + 4
        detections.append({"image_id": image_id, "category_id": int(rng.integers(1, 4)),
                           "bbox": [float(x), float(y), float(w), float(h)], "score": float(rng.uniform(0, 0.5))})
    categories = [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def both(gt: dict, detections: list[dict], **kwargs) -> tuple:
    return tuple(evaluate_boxes(gt, detections, per_class=True, backend=b, **kwargs) for b in coco_eval.BACKENDS)


def same(a: list[float], b: list[float]) -> bool:
    """Equal up to the last bits of a double (the two sum precisions in different orders), nan where the other is."""
    return all((math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-12)
               for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faster_coco_eval_gives_pycocotools_numbers(seed, faster):
    gt, detections = scene(seed)
    for kwargs in ({}, {"use_cats": False}, {"img_ids": list(range(1, 41, 3))}):
        fast, reference = both(gt, detections, **kwargs)
        assert (fast.backend, reference.backend) == coco_eval.BACKENDS
        assert same(list(fast.stats.values()), list(reference.stats.values())), kwargs
        assert fast.per_class.keys() == reference.per_class.keys()
        assert all(same(fast.per_class[c], reference.per_class[c]) for c in fast.per_class)
    assert 0 < reference.stats["AP"] < 1


def test_no_detections_score_zero_with_both(faster):
    gt, _ = scene(0)
    fast, reference = both(gt, [])
    assert same(list(fast.stats.values()), list(reference.stats.values())) and fast.stats["AP"] == 0.0


def test_faster_coco_eval_is_the_default_when_installed_and_the_ids_are_integers(faster):
    gt, detections = scene(0)
    assert default_backend() == evaluate_boxes(gt, detections).backend == "faster-coco-eval"
    # string image ids (faster-coco-eval reads only integers; zero-padded to keep the order that breaks score ties)
    named = {**gt, "images": [{**i, "id": f"img{i['id']:03d}"} for i in gt["images"]],
             "annotations": [{**a, "image_id": f"img{a['image_id']:03d}"} for a in gt["annotations"]]}
    renamed = [{**d, "image_id": f"img{d['image_id']:03d}"} for d in detections]
    scores = evaluate_boxes(named, renamed)
    assert scores.backend == "pycocotools"
    assert same(list(scores.stats.values()), list(evaluate_boxes(gt, detections).stats.values()))


def test_pycocotools_scores_without_faster_coco_eval(monkeypatch):
    monkeypatch.setattr(coco_eval.importlib.util, "find_spec", lambda name: None)
    assert default_backend() == evaluate_boxes(*scene(0)).backend == "pycocotools"
