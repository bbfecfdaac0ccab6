"""`umop check data=...`: a dry run over a dataset before a long job, one line per problem, nothing converted.

It reads what training would read and reports, for every split of the data YAML:
* YOLO txt: images no decoder recognises, label rows that training would drop (class id outside `names`,
  coordinates outside [0, 1], ...), a train split without label files;
* COCO JSON: the JSON and image folder are present and the JSON is valid, every image file is present and its size
  (read from the file's header) is the JSON's `width` x `height`, annotations name known images and categories and
  boxes inside their image, the categories are the same in every split and match `names` if the YAML gives them;
* VOC XML: every XML and image is present, the XML's `<size>` is the image's size, object names are in `names`.
Image sizes come from the headers only (PIL opens lazily), so COCO train2017 is checked in minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from umop_yolo.cfg import load_yaml
from umop_yolo.data import coco, voc
from umop_yolo.data.labels import Reporter
from umop_yolo.data.resolve import SPLITS, class_names, dataset_root, existing_path, find_yaml, split_entries
from umop_yolo.data.yolo import audit_split, check_split, list_images
from umop_yolo.errors import UserInputError


class Problems(Reporter):
    """A Reporter that keeps every problem as one line `where: problem` instead of logging the first ones."""

    def __init__(self, source: Path | str) -> None:
        super().__init__(source)
        self.lines: list[str] = []
        self.categories: list[str] | None = None  # COCO: the first split's category names, which the others must match

    def __call__(self, where: str, problem: str, skipped: str = "label") -> None:
        self.count += 1
        self.lines.append(f"{where}: {problem}")

    def close(self) -> None:
        """Nothing to summarise: every line is kept."""


def size_problem(image: Path, width: float, height: float) -> str:
    """Why the file `image` is not `width` x `height` pixels (its header is read), or "" if it is."""
    try:
        with Image.open(image) as im:
            actual = im.size
    except OSError as e:
        return f"unreadable image ({e})"
    if actual != (int(width), int(height)):
        return f"image is {actual[0]}x{actual[1]}, the annotation says {width:g}x{height:g}"
    return ""


def _check_yolo(cfg: dict[str, Any], root: Path, names: list[str], split: str, report: Problems) -> int:
    entries = split_entries(root, cfg, split)
    if entries is None:
        return 0
    samples = audit_split([im for e in entries for im in list_images(e)], len(names), report)
    check_split(split, samples, ", ".join(map(str, entries)))
    return len(samples)


def _check_coco(cfg: dict[str, Any], root: Path, names: list[str] | None, split: str, report: Problems) -> int:
    folders = split_entries(root, cfg, split)
    if folders is None:
        return 0
    if cfg.get(f"{split}_json") is None:
        raise UserInputError(f"missing '{split}_json' (the COCO instances JSON of split '{split}')")
    json_file = existing_path(root, cfg[f"{split}_json"], f"{split}_json")
    data = coco.load_json(json_file)
    split_names, samples, _ = coco.coco_samples(data, json_file, folders[0], report)
    expected = names or report.categories
    if expected is not None and split_names != expected:
        given = "the YAML's 'names'" if names else "the first split's categories"
        report(str(json_file), f"its categories (by id) {split_names} are not {given} {expected}")
    report.categories = report.categories or split_names
    declared = {e["id"]: e for e in data["images"] if isinstance(e, dict)}
    for sample in samples:
        entry = declared[sample.image_id]
        if isinstance(entry.get("width"), (int, float)) and isinstance(entry.get("height"), (int, float)):
            if problem := size_problem(sample.image, entry["width"], entry["height"]):
                report(str(sample.image), f"{problem} (image id {sample.image_id} of {json_file.name})")
    return len(samples)


def _check_voc(cfg: dict[str, Any], root: Path, names: list[str] | None, split: str, report: Problems) -> int:
    lists = split_entries(root, cfg, split)
    if lists is None:
        return 0
    images = voc.read_split(lists, report, voc.check_voc_box(cfg.get("voc_box", "devkit")))
    voc.to_samples(images, names or sorted({obj.name for im in images for obj in im.objects}), report)
    for im in images:
        if problem := size_problem(im.image, im.width, im.height):
            report(str(im.image), f"{problem} (<size> of its XML)")
    return len(images)


CHECKERS = {"yolo": _check_yolo, "coco": _check_coco, "voc": _check_voc}


def check_data(data: str | Path) -> tuple[Path, list[str], int]:
    """The data YAML checked, one line per problem found in its dataset, and the number of images checked."""
    file = find_yaml(data)
    cfg = load_yaml(file, "data YAML")
    report = Problems(file)
    if "generate" in cfg:  # built by umop itself
        return file, [], 0
    fmt = cfg.get("format", "yolo")
    if fmt not in ("yolo", "coco", "voc"):
        return file, [f"{file}: 'format' must be yolo, coco or voc, got {fmt!r}"], 0
    try:
        root = dataset_root(file, cfg)
        names = class_names(cfg, required=fmt == "yolo")
    except UserInputError as e:
        return file, [f"{file}: {e}"], 0
    images = 0
    for split in SPLITS:
        try:
            images += CHECKERS[fmt](cfg, root, names, split, report)
        except UserInputError as e:  # what stops this split: a missing folder or JSON, malformed JSON, no images
            report(f"{file}: split '{split}'", str(e))
    return file, report.lines, images


def check_main(args: dict[str, Any]) -> list[str]:
    """`umop check data=...`: print one line per problem and the verdict; a UserInputError (exit 2) if any."""
    if set(args) != {"data"}:
        raise UserInputError("check takes only data= (a data YAML, e.g. umop check data=coco.yaml)")
    file, lines, images = check_data(args["data"])
    for line in lines:
        print(line)
    if lines:
        raise UserInputError(f"check: {len(lines)} problem(s) in the dataset of {file}")
    print(f"check: {file}: no problems ({images} images)")
    return lines
