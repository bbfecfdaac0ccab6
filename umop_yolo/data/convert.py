"""Convert COCO-JSON or Pascal VOC datasets to YOLO labels (cached mirrors with symlinked images).

Output layout (`dst`, by default `<cache>/datasets/<label>-<format>-<hash>`):
`images/<train|val|test>/` symlinks to the original images (flat, under their own base names), `labels/<split>/*.txt`,
and `data.yaml` with an absolute `path:` and `names:`. For VOC, `voc_box:` says how the boxes were read. For COCO,
each split also gets `<split>_json:` (the original instances JSON, for pycocotools evaluation) and
`<split>_image_ids:`, a JSON file that maps each mirror image (`images/<split>/<name>`, relative to `path`) to its
image id in that JSON. The hash covers the annotation files' paths, sizes and mtimes (editing annotations triggers a
new conversion), the class names and `voc_box`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from ultralytics.utils import LOGGER

from umop_yolo.data import coco, voc
from umop_yolo.data.cache import atomic_build, cache_root, short_hash
from umop_yolo.data.labels import Reporter, Sample, write_split
from umop_yolo.errors import InputNotFoundError, UserInputError

CONVERTER_VERSION = 2  # 2: COCO mirrors keep the images' own names and write the id maps; VOC's voc_box
FORMATS = ("coco", "voc")
ROLES = ("train", "val", "test")
CocoSource = tuple[Path, Path]  # (instances JSON, image folder)
VocSource = list[Path]  # ImageSets list files


def _fingerprint(files: list[Path]) -> list[tuple[str, int, int]]:
    stats = [(f, f.stat()) for f in files if f.is_file()]
    return [(str(f), s.st_size, s.st_mtime_ns) for f, s in stats]


def _annotation_files(fmt: str, sources: dict[str, Any]) -> list[Path]:
    if fmt == "coco":
        return [json for json, _ in sources.values()]
    files = []
    for list_files in sources.values():
        for list_file in list_files:
            files.append(list_file)
            files += [root / "Annotations" / f"{i}.xml" for root, i in voc.read_list(list_file)]
    return files


def convert_sources(
    fmt: str,
    sources: dict[str, Any],
    names: list[str] | None = None,
    dst: Path | None = None,
    label: str = "data",
    voc_box: str | None = None,
) -> Path:
    """Convert the splits `sources` ({role: CocoSource | VocSource}) once and return the mirror's data.yaml.

    `voc_box` (VOC only; default `devkit`) is how boxes are read, see `voc.VOC_BOXES`.
    """
    voc_box = box_convention(fmt, voc_box)
    files = _fingerprint(_annotation_files(fmt, sources))
    key = {"version": CONVERTER_VERSION, "format": fmt, "names": names, "sources": files, "voc_box": voc_box}
    key["folders"] = {role: str(src[1]) for role, src in sources.items()} if fmt == "coco" else None
    final = dst or cache_root() / "datasets" / f"{label}-{fmt}-{short_hash(key, 8)}"

    def build(tmp: Path) -> None:
        class_names, splits = _read_coco(sources, names) if fmt == "coco" else _read_voc(sources, names, voc_box)
        data: dict[str, Any] = {"path": str(final)}
        data.update({role: f"images/{role}" for role in splits})
        data["names"] = dict(enumerate(class_names))
        if voc_box:
            data["voc_box"] = voc_box
        for role, samples in splits.items():
            names_in_mirror = write_split(tmp, role, samples)
            if fmt == "coco":
                ids = {f"images/{role}/{n}": s.image_id for n, s in zip(names_in_mirror, samples)}
                (tmp / f"{role}_image_ids.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
                data[f"{role}_json"] = str(sources[role][0].resolve())
                data[f"{role}_image_ids"] = str(final / f"{role}_image_ids.json")
        header = f"# converted from {fmt} by umop_yolo.data.convert v{CONVERTER_VERSION}; images are symlinks\n"
        header += f"# voc_box: {voc_box}: boxes read as {voc.VOC_BOXES[voc_box]}\n" if voc_box else ""
        (tmp / "data.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

    if not final.is_dir():
        LOGGER.info(f"Converting {fmt} dataset to YOLO labels in {final} ...")
    return atomic_build(final, build) / "data.yaml"


def check_format(fmt: str) -> None:
    """ValueError unless `fmt` is a format this module converts."""
    if fmt not in FORMATS:
        raise UserInputError(f"'format' must be one of yolo, {', '.join(FORMATS)}, got {fmt!r}")


def box_convention(fmt: str, voc_box: Any) -> str | None:
    """The checked `voc_box` for format voc (default devkit); None for other formats, which must not set it."""
    if fmt != "voc":
        if voc_box is not None:
            raise UserInputError(f"'voc_box' applies to format voc only, not {fmt}")
        return None
    return voc.check_voc_box("devkit" if voc_box is None else voc_box)


def _read_coco(sources: dict[str, CocoSource], names: list[str] | None) -> tuple[list[str], dict[str, list[Sample]]]:
    splits, class_names = {}, None
    for role, (json_file, image_dir) in sources.items():
        split_names, splits[role] = coco.read_coco(json_file, image_dir)
        if class_names is not None and split_names != class_names:
            raise UserInputError(f"'{role}_json' {json_file} has other categories than the train split")
        class_names = split_names
    if names is not None and names != class_names:
        raise UserInputError(f"'names' {names} do not match the JSON categories (by id) {class_names}")
    return class_names, splits


def _read_voc(
    sources: dict[str, VocSource], names: list[str] | None, voc_box: str
) -> tuple[list[str], dict[str, list[Sample]]]:
    reports = {role: Reporter(", ".join(map(str, files))) for role, files in sources.items()}
    parsed = {role: voc.read_split(files, reports[role], voc_box) for role, files in sources.items()}
    if names is None:
        names = sorted({obj.name for images in parsed.values() for im in images for obj in im.objects})
    splits = {role: voc.to_samples(images, names, reports[role]) for role, images in parsed.items()}
    for report in reports.values():
        report.close()
    return names, splits


def role_of(split: str) -> str:
    """train / val / test for a split name such as train2017, val, trainval, test-dev."""
    for role in ROLES:
        if split.startswith(role):
            return role
    raise UserInputError(f"split {split!r} must start with train, val or test")


def discover(fmt: str, src: Path, splits: list[str] | None) -> dict[str, Any]:
    """Sources of a dataset root in its standard layout, for the given split names (default: all found)."""
    if not src.is_dir():
        raise InputNotFoundError(f"'src' {src} is not a folder")
    if fmt == "coco":
        jsons = (src / "annotations").glob("instances_*.json")
        found = splits or sorted(p.stem.removeprefix("instances_") for p in jsons)
        files = {s: src / "annotations" / f"instances_{s}.json" for s in found}
        folders = {s: src / "images" / s if (src / "images" / s).is_dir() else src / s for s in found}
    else:
        lists = src / "ImageSets" / "Main"
        found = splits or [s for s in ("train", "val", "test") if (lists / f"{s}.txt").is_file()]
        files = {s: lists / f"{s}.txt" for s in found}
    if not found:
        raise InputNotFoundError(f"no {fmt} splits found under {src}")
    sources: dict[str, Any] = {}
    for split in found:
        if not files[split].is_file():
            raise InputNotFoundError(f"split {split!r}: {files[split]} does not exist")
        if fmt == "coco" and not folders[split].is_dir():
            raise InputNotFoundError(f"split {split!r}: image folder {folders[split]} does not exist")
        role = role_of(split)
        if role in sources:
            raise UserInputError(f"splits {found} give two {role} splits; choose with splits=")
        sources[role] = (files[split], folders[split]) if fmt == "coco" else [files[split]]
    return sources


def convert(
    format: str,
    src: str | Path,
    dst: str | Path | None = None,
    splits: list[str] | None = None,
    names: list[str] | None = None,
    voc_box: str | None = None,
) -> Path:
    """Convert a COCO (`<src>/annotations/instances_<split>.json` + `<src>/[images/]<split>/`) or VOC
    (`<src>/Annotations`, `JPEGImages`, `ImageSets/Main/<split>.txt`) dataset; return its data.yaml.

    `dst` must not exist yet (default: the cache). `names` fixes the VOC class order (default: sorted names found),
    `voc_box` how VOC boxes are read (`voc.VOC_BOXES`).
    """
    src = Path(src).expanduser().resolve()
    if dst is not None and Path(dst).exists():
        raise UserInputError(f"'dst' {dst} already exists: name a new folder")
    check_format(format)
    sources = discover(format, src, splits)
    dst = Path(dst).expanduser().resolve() if dst else None
    return convert_sources(format, sources, names, dst, src.name, voc_box)


def convert_main(args: dict[str, Any]) -> Path:
    """`umop convert key=value ...`: convert a dataset and return the written data.yaml.

    Keys:
        format (required): `coco` or `voc`.
        src (required): dataset root. COCO: `annotations/instances_<split>.json` with images in `images/<split>/`
            or `<split>/`. VOC: a VOC year folder with `Annotations/`, `JPEGImages/`, `ImageSets/Main/<split>.txt`.
        dst: output folder, must not exist (default: `$UMOP_CACHE_DIR/datasets/<src name>-<format>-<hash>`).
        splits: comma-separated split names (default: every instances_*.json for COCO; train,val,test for VOC).
            Names starting with train / val / test become the train / val / test split.
        names: comma-separated VOC class names in class-id order (default: all names found, sorted).
        voc_box: how VOC boxes are read, `devkit` (default: 1-based inclusive, x1 = xmin - 1) or `plain` (x1 = xmin).
    """
    allowed = {"format", "src", "dst", "splits", "names", "voc_box"}
    if unknown := set(args) - allowed:
        raise UserInputError(
            f"convert: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    for key in ("format", "src"):
        if not args.get(key):
            raise UserInputError(f"convert: '{key}' is required, e.g. umop convert format=coco src=/data/coco")
    listed = {k: _as_list(args[k]) for k in ("splits", "names") if args.get(k) is not None}
    splits, names = listed.get("splits"), listed.get("names")
    return convert(str(args["format"]), args["src"], args.get("dst"), splits, names, args.get("voc_box"))


def _as_list(value: Any) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]
