"""`voc_box`: how VOC's xmin..xmax become pixel boxes (devkit: 1-based inclusive; plain: as written), end to end.

The images are the drawn SCENES of test_eval_validator; a rectangle drawn over 0-based pixels x1..x2-1 is, in the
VOC devkit's 1-based inclusive indices, xmin = x1 + 1 .. xmax = x2. Scored against its own drawing, the devkit
reading is exact and the plain reading is one pixel off.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scenes import SCENES, ColorBoxDetector, draw_scene, validate
from umop_yolo.data import convert_main, resolve_data
from umop_yolo.errors import UserInputError

pytestmark = pytest.mark.usefixtures("cache")
NAMES = ("red", "green")


def write_voc(root: Path) -> None:
    """SCENES as a VOC folder (PNG images, devkit-style XML), all in the `val` list."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i, ((h, w), boxes) in enumerate(SCENES):
        draw_scene(root / "JPEGImages" / f"scene{i}.png", i)
        objects = "".join(
            f"<object><name>{NAMES[c]}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
            f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for c, x1, y1, x2, y2 in boxes
        )
        size = f"<size><width>{w}</width><height>{h}</height></size>"
        (root / "Annotations" / f"scene{i}.xml").write_text(
            f"<annotation><filename>scene{i}.png</filename>{size}{objects}</annotation>"
        )
    (root / "ImageSets" / "Main" / "val.txt").write_text("".join(f"scene{i}\n" for i in range(len(SCENES))))


def voc_yaml(tmp_path: Path, extra: str = "") -> Path:
    write_voc(tmp_path / "VOC")
    cfg = tmp_path / "voc.yaml"
    cfg.write_text(f"format: voc\npath: VOC\ntrain: ImageSets/Main/val.txt\nval: ImageSets/Main/val.txt\n"
                   f"names: [red, green]\n{extra}")
    return cfg


@pytest.mark.parametrize("voc_box", ["devkit", "plain", None])
def test_voc_box_convention_is_applied_and_stated(tmp_path, voc_box):
    cfg = voc_yaml(tmp_path, f"voc_box: {voc_box}\n" if voc_box else "")
    data = Path(resolve_data(cfg))
    resolved = yaml.safe_load(data.read_text())
    convention = voc_box or "devkit"  # the default
    assert resolved["voc_box"] == convention
    assert f"voc_box: {convention}" in (Path(resolved["path"]) / "data.yaml").read_text()
    validator, stats = validate(data, tmp_path / "val", ColorBoxDetector())
    info = json.loads(Path(validator.gt_json).read_text())["info"]
    assert info["voc_box"].startswith(convention)  # the ground truth says how its boxes were read
    if convention == "devkit":
        assert stats["metrics/AP(COCO)"] == pytest.approx(1.0, abs=1e-12)
    else:
        assert stats["metrics/AP50(COCO)"] == pytest.approx(1.0, abs=1e-12) and stats["metrics/AP(COCO)"] < 0.99


def test_each_convention_has_its_own_converted_copy(tmp_path):
    devkit = yaml.safe_load(Path(resolve_data(voc_yaml(tmp_path))).read_text())["path"]
    (tmp_path / "voc.yaml").write_text((tmp_path / "voc.yaml").read_text() + "voc_box: plain\n")
    plain = yaml.safe_load(Path(resolve_data(tmp_path / "voc.yaml")).read_text())["path"]
    assert devkit != plain
    first = (Path(devkit) / "labels" / "val" / "scene0.txt").read_text().split("\n")[0].split()
    assert first[1:] == ["0.350000", "0.450000", "0.650000", "0.833333"]  # x 4..108 of 160, y 4..104 of 120


@pytest.mark.parametrize(("extra", "fmt", "message"), [
    ("voc_box: zero\n", "voc", r"voc.yaml': 'voc_box' must be devkit or plain, got 'zero'$"),
    ("voc_box: plain\n", "coco", r"voc.yaml': 'voc_box' applies to format voc only"),
])
def test_bad_voc_box_stops_in_one_line(tmp_path, extra, fmt, message):
    cfg = voc_yaml(tmp_path, extra)
    cfg.write_text(cfg.read_text().replace("format: voc", f"format: {fmt}"))
    with pytest.raises(UserInputError, match=message):
        resolve_data(cfg)


def test_convert_main_takes_voc_box(tmp_path):
    write_voc(tmp_path / "VOC")
    out = convert_main({"format": "voc", "src": str(tmp_path / "VOC"), "dst": str(tmp_path / "y"), "voc_box": "plain"})
    assert yaml.safe_load(out.read_text())["voc_box"] == "plain"
    first = (tmp_path / "y" / "labels" / "val" / "scene0.txt").read_text().split("\n")[0].split()
    assert first[1:3] == ["0.353125", "0.454167"]  # x1 = xmin = 5: the box starts one pixel later
    with pytest.raises(UserInputError, match="'voc_box' must be devkit or plain"):
        convert_main({"format": "voc", "src": str(tmp_path / "VOC"), "voc_box": "0-based"})
