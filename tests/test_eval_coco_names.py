"""COCO data with its own file names, ids and folders is scored against its own JSON, as pycocotools scores it.

The images are the drawn SCENES of test_eval_validator, placed under arbitrary names (two of them `a.png` in different
folders) and described by a hand-written instances JSON with non-sequential (or string) image ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from scenes import SCENES, ColorBoxDetector, draw_scene, predict, standalone_cocoeval, validate
from umop_yolo.data import resolve_data
from umop_yolo.eval.metrics import COCO_KEYS

FILE_NAMES = ["field/sub/a.png", "field/other/a.png", "field_val_b.png", "deep/x/y/c.png"]  # one per scene
CATEGORIES = [{"id": 8, "name": "green"}, {"id": 3, "name": "red"}]  # class 0 (red) = the smallest id
CATEGORY_ID = {0: 3, 1: 8}


def write_coco(root: Path, ids: list, with_labels: bool = False) -> Path:
    """Images at FILE_NAMES under `root/imgs` and `root/val.json` with image ids `ids`; returns the JSON.

    `with_labels` also writes YOLO labels (all empty: negatives), for a YOLO-format data YAML over `root/images`.
    """
    images, annotations = [], []
    for i, (image_id, name) in enumerate(zip(ids, FILE_NAMES)):
        (h, w), boxes = SCENES[i]
        folder = root / ("images" if with_labels else "imgs")
        draw_scene(folder / name, i)
        if with_labels:
            label = root / "labels" / Path(name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("")
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for c, x1, y1, x2, y2 in boxes:
            annotations.append({"id": 1000 + 7 * len(annotations), "image_id": image_id, "category_id": CATEGORY_ID[c],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    json_file = root / "val.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return json_file


def coco_yaml(root: Path, ids: list) -> tuple[Path, Path]:
    """A `format: coco` data YAML over write_coco's dataset; returns (YAML, JSON)."""
    json_file = write_coco(root, ids)
    cfg = root / "field.yaml"
    cfg.write_text("format: coco\ntrain: imgs\nval: imgs\ntrain_json: val.json\nval_json: val.json\n")
    return cfg, json_file


@pytest.mark.parametrize("ids", [[907, 13, 4021, 5], ["sub-a", "other-a", "b", "c"]], ids=["int", "str"])
def test_coco_format_with_own_names_is_scored_as_pycocotools_scores_it(tmp_path, cache, ids):
    cfg, json_file = coco_yaml(tmp_path / "src", ids)
    data = Path(resolve_data(cfg))
    _, stats = validate(data, tmp_path / "exact", ColorBoxDetector())
    assert [stats[k] for k in COCO_KEYS] == pytest.approx([1.0] * 6, abs=1e-12)  # every image under its own id
    records = json.loads((tmp_path / "exact" / "predictions.json").read_text())
    assert {(r["image_id"], r["file_name"]) for r in records} == set(zip(ids, FILE_NAMES))

    _, stats = validate(data, tmp_path / "noisy", ColorBoxDetector(noise=0.08))
    ours = [stats[k] for k in COCO_KEYS]
    assert 0.05 < ours[0] < 0.95
    reference = standalone_cocoeval(json_file, tmp_path / "noisy" / "predictions.json")
    np.testing.assert_allclose(ours, reference, rtol=1e-12)  # faster-coco-eval (int ids) sums in another order


def test_yolo_data_with_val_json_matches_nested_paths(tmp_path, cache):
    """No id map (YOLO-format data + val_json): files match the JSON by their relative path, not the bare name."""
    json_file = write_coco(tmp_path / "ds", [31, 32, 33, 34], with_labels=True)
    cfg = tmp_path / "ds" / "field.yaml"
    cfg.write_text("train: images\nval: images\nval_json: val.json\nnames: [red, green]\n")
    _, stats = validate(Path(resolve_data(cfg)), tmp_path / "val", ColorBoxDetector())
    assert [stats[k] for k in COCO_KEYS] == pytest.approx([1.0] * 6, abs=1e-12)
    records = json.loads((tmp_path / "val" / "predictions.json").read_text())
    assert {(r["image_id"], r["file_name"]) for r in records} == set(zip([31, 32, 33, 34], FILE_NAMES))
    assert standalone_cocoeval(json_file, tmp_path / "val" / "predictions.json")[0] == pytest.approx(1.0)


@pytest.mark.parametrize("source", ["original", "mirror"])
def test_predictor_writes_the_json_ids(tmp_path, cache, source):
    """Predicting on the user's own folders (data = their YAML) or on the converted copy (data = the resolved YAML)."""
    ids = [907, 13, 4021, 5]
    cfg, _ = coco_yaml(tmp_path / "src", ids)
    data = Path(resolve_data(cfg))
    if source == "original":
        images, data = f"{tmp_path / 'src' / 'imgs'}/**/*.png", cfg
    else:
        images = yaml.safe_load(data.read_text())["val"]
    predict(images, tmp_path / "pred", ColorBoxDetector(), data=str(data))
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert {(r["image_id"], r["file_name"]) for r in records} == set(zip(ids, FILE_NAMES))
    assert {r["category_id"] for r in records} == {3, 8}
