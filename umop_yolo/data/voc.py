"""Read Pascal VOC (`Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/<split>.txt`) into YOLO samples.

A split is one or more list files; each list file's VOC root is three levels up (`<root>/ImageSets/Main/x.txt`),
so VOC2007 and VOC2012 lists can be combined. How `xmin..xmax` becomes a pixel box is the data YAML's `voc_box`
(see VOC_BOXES): by default 1-based inclusive pixel indices, as the VOC devkit reads them, so `xmin..xmax` covers the
continuous interval [xmin - 1, xmax]. Objects marked `difficult` are not training boxes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from umop_yolo.data.labels import Reporter, Sample, pixel_box_row
from umop_yolo.errors import UserInputError

VOC_BOXES = {  # voc_box -> how xmin..xmax (and ymin..ymax) become the pixel box x1..x2
    "devkit": "1-based inclusive pixel indices, as the VOC devkit: x1 = xmin - 1, x2 = xmax (w = xmax - xmin + 1)",
    "plain": "pixel coordinates as written: x1 = xmin, x2 = xmax (w = xmax - xmin)",
}


def check_voc_box(value: object) -> str:
    """`value` if it names a VOC_BOXES convention, else a one-line UserInputError."""
    if value not in VOC_BOXES:
        raise UserInputError(f"'voc_box' must be {' or '.join(VOC_BOXES)}, got {value!r}")
    return str(value)


@dataclass
class VocObject:
    """One usable object of an XML file: its class name, pixel box x1 y1 x2 y2, and where it came from."""

    name: str
    box: list[float]
    where: str


@dataclass
class VocImage:
    """An annotated image: file, size, and its non-difficult objects."""

    image: Path
    width: float
    height: float
    objects: list[VocObject] = field(default_factory=list)


def read_list(list_file: Path) -> list[tuple[Path, str]]:
    """(VOC root, image id) for each line of an ImageSets list (extra columns, as in class lists, are ignored)."""
    parents = list_file.resolve().parents
    root = parents[2] if len(parents) > 2 else parents[-1]
    if not (root / "Annotations").is_dir():
        raise UserInputError(f"{list_file}: expected <root>/ImageSets/Main/{list_file.name} beside <root>/Annotations")
    lines = list_file.read_text(encoding="utf-8-sig").splitlines()
    return [(root, line.split()[0]) for line in lines if line.strip()]


def _text(node: ET.Element, tag: str) -> str:
    child = node.find(tag)
    return (child.text or "").strip() if child is not None else ""


def _number(node: ET.Element, tag: str) -> float:
    """A numeric child element; ValueError names the tag when it is missing or not a number."""
    try:
        return float(_text(node, tag))
    except ValueError:
        raise ValueError(f"<{tag}> missing or not a number") from None


def parse_xml(root: Path, image_id: str, report: Reporter, voc_box: str = "devkit") -> VocImage | None:
    """Parse `<root>/Annotations/<image_id>.xml` with boxes read as `voc_box` says; report and return None if the XML
    or its image is unusable."""
    xml = root / "Annotations" / f"{image_id}.xml"
    try:
        tree = ET.parse(xml).getroot()
    except (OSError, ET.ParseError) as e:
        report(str(xml), f"missing or malformed XML ({e})", "image")
        return None
    image = root / "JPEGImages" / (_text(tree, "filename") or f"{image_id}.jpg")
    if not image.is_file():
        report(str(xml), f"image {image} not found", "image")
        return None
    size = tree.find("size")
    try:
        width, height = (_number(size, "width"), _number(size, "height")) if size is not None else (0.0, 0.0)
    except ValueError:
        width = height = 0.0
    if width <= 0 or height <= 0:  # no usable <size>: read it from the image
        try:
            with Image.open(image) as im:
                width, height = float(im.width), float(im.height)
        except OSError as e:
            report(str(image), f"unreadable image ({e})", "image")
            return None
    result = VocImage(image, width, height)
    start = 1.0 if voc_box == "devkit" else 0.0  # subtracted from xmin, ymin
    for k, obj in enumerate(tree.iter("object")):
        where = f"{xml}: object {k}"
        if _text(obj, "difficult") == "1":
            continue
        name, bndbox = _text(obj, "name"), obj.find("bndbox")
        try:
            if not name or bndbox is None:
                raise ValueError("<name> or <bndbox> missing")
            xmin, ymin = _number(bndbox, "xmin"), _number(bndbox, "ymin")
            box = [xmin - start, ymin - start, _number(bndbox, "xmax"), _number(bndbox, "ymax")]
        except ValueError as e:
            report(where, str(e))
            continue
        result.objects.append(VocObject(name, box, where))
    return result


def read_split(list_files: list[Path], report: Reporter, voc_box: str = "devkit") -> list[VocImage]:
    """Parse every image of one split (the union of its list files)."""
    images = []
    for list_file in list_files:
        for root, image_id in read_list(list_file):
            if (parsed := parse_xml(root, image_id, report, voc_box)) is not None:
                images.append(parsed)
    return images


def to_samples(images: list[VocImage], names: list[str], report: Reporter) -> list[Sample]:
    """YOLO samples with class ids from `names`; objects of other classes or with bad boxes are reported."""
    cls_of = {n: i for i, n in enumerate(names)}
    samples = []
    for im in images:
        rows = []
        for obj in im.objects:
            if obj.name not in cls_of:
                report(obj.where, f"class {obj.name!r} is not in names")
                continue
            row, problem = pixel_box_row(cls_of[obj.name], obj.box, im.width, im.height)
            if problem:
                report(obj.where, problem)
            else:
                rows.append(row)
        samples.append(Sample(im.image, rows))
    return samples
