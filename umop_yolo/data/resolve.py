"""Turn a `data=` argument into a data YAML that Ultralytics' `check_det_dataset` can use as is.

`data` is a path, or a bare name found in the repo's `data/` folder (`shapes`, `coco128.yaml`). The YAML may be:
* `generate: {builder: shapes, ...}`: the dataset is generated into the cache; its own data.yaml is returned;
* `format: yolo` (the default): `path` (default: the YAML's folder) is taken relative to the YAML's folder, not the
  CWD as Ultralytics does; label files are checked row by row, and if bad rows exist a cleaned mirror is used;
* `format: coco` (`train`/`val` image folders + `train_json`/`val_json`) or `format: voc` (`train`/`val` ImageSets
  list files; `voc_box: devkit | plain`, how boxes are read): converted to YOLO labels in the cache (see
  `umop_yolo.data.convert`).
Except for generated data, the result is a resolved copy in `<cache>/resolved/`, keyed by the source path and
content: absolute `path`/`train`/`val`/`test`, `names` as a dict, no `download:` (nothing downloads at run time),
plus absolute `<split>_json` / `<split>_image_ids` for COCO ground truth (any format; see `umop_yolo.eval.coco_json`)
and `resolved_from`, the user's file, for messages to name.
Errors are one line naming the YAML file and the key: `UserInputError` (its `InputNotFoundError` for missing files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from umop_yolo.atomic import write_text_atomic
from umop_yolo.cfg import DATA_DIR, load_yaml
from umop_yolo.data import shapes
from umop_yolo.data.cache import atomic_build, cache_root, short_hash
from umop_yolo.data.convert import box_convention, check_format, convert_sources
from umop_yolo.data.labels import Reporter, Sample, write_split
from umop_yolo.data.yolo import audit_split, check_split, list_images
from umop_yolo.errors import InputNotFoundError, UserInputError

SPLITS = ("train", "val", "test")
COCO_FILES = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("json", "image_ids"))  # see eval.coco_json
SOURCE_KEY = "resolved_from"  # the user's data YAML, which messages name (not this copy)
CONSUMED = ("format", "path", "download", "names", "nc", "voc_box", SOURCE_KEY, *COCO_FILES, *SPLITS)


def resolve_data(data: str | Path) -> str:
    """Path of a ready-to-use data YAML for `data` (see the module docstring for each case)."""
    file = find_yaml(data)
    if file.is_relative_to(cache_root()):  # already produced by us
        return str(file)
    cfg = load_yaml(file, "data YAML")
    try:
        return str(_resolve(file, cfg))
    except UserInputError as e:
        raise type(e)(f"data YAML '{file}': {e}") from None


def find_yaml(data: str | Path) -> Path:
    """An existing file path, or a bare name (`shapes`, `shapes.yaml`) looked up in the repo's `data/` folder."""
    path = Path(data).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise InputNotFoundError(f"data '{data}' is a folder: pass its data YAML")
    if len(path.parts) == 1:
        for candidate in (DATA_DIR / path.name, DATA_DIR / f"{path.name}.yaml", DATA_DIR / f"{path.name}.yml"):
            if candidate.is_file():
                return candidate
        raise InputNotFoundError(f"data YAML '{data}' not found here nor in {DATA_DIR}")
    raise InputNotFoundError(f"data YAML '{data}' not found")


def _resolve(file: Path, cfg: dict[str, Any]) -> Path:
    if "generate" in cfg:
        if extra := sorted(map(str, set(cfg) - {"generate", "names"})):
            raise UserInputError(f"key '{extra[0]}' cannot be combined with 'generate' (only 'names' can)")
        return shapes.build_shapes(shapes.spec_from_yaml(cfg["generate"], cfg.get("names")))
    fmt = cfg.get("format", "yolo")
    if fmt != "yolo":
        check_format(fmt)
    voc_box = box_convention(fmt, cfg.get("voc_box"))
    root = dataset_root(file, cfg)
    names = class_names(cfg, required=fmt == "yolo")
    if fmt == "yolo":
        resolved = _resolve_yolo(file, cfg, root, names)
    else:
        converted = convert_sources(fmt, _sources(fmt, root, cfg), names, label=file.stem, voc_box=voc_box)
        resolved = yaml.safe_load(converted.read_text(encoding="utf-8"))
        resolved.update({k: str(Path(resolved["path"]) / resolved[k]) for k in SPLITS if k in resolved})
        for split in ("train", "val"):  # the converted copy: a JSON or list file may name no usable image
            images = [Sample(p) for p in list_images(Path(resolved[split]))]
            check_split(split, images, f"{cfg.get(f'{split}_json') or cfg[split]} converted to {resolved[split]}")
    out = {k: v for k, v in cfg.items() if k not in CONSUMED} | resolved | {SOURCE_KEY: str(file)}
    text = f"# resolved from {file} by umop_yolo.data.resolve\n" + yaml.safe_dump(out, sort_keys=False)
    target = cache_root() / "resolved" / f"{file.stem}-{short_hash([str(file), text])}.yaml"
    return target if target.is_file() else write_text_atomic(target, text)


def dataset_root(file: Path, cfg: dict[str, Any]) -> Path:
    """Dataset root: `path` relative to the YAML's folder (absolute stays absolute); the YAML's folder if absent."""
    value = cfg.get("path")
    if value is not None and not isinstance(value, str):
        raise UserInputError(f"'path' must be a string, got {value!r}")
    root = (file.parent / Path(value).expanduser()).resolve() if value else file.parent
    if not root.is_dir():
        raise InputNotFoundError(f"'path' {root} does not exist")
    return root


def class_names(cfg: dict[str, Any], required: bool) -> list[str] | None:
    """Class names as a list (index = class id) from `names` (list or {id: name}) or `nc`."""
    names, nc = cfg.get("names"), cfg.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
        raise UserInputError(f"'nc' must be a positive integer, got {nc!r}")
    if names is None:
        if nc is None and required:
            raise UserInputError("missing 'names' (class names, index = class id)")
        return [f"class_{i}" for i in range(nc)] if nc else None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            ids = sorted(names, key=str)
            raise UserInputError(f"'names' keys must be the class ids 0..{len(names) - 1}, got {ids}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise UserInputError(f"'names' must be a non-empty list or {{id: name}} mapping, got {names!r}")
    if nc is not None and nc != len(names):
        raise UserInputError(f"'nc' {nc} does not match the {len(names)} 'names'")
    return [str(n) for n in names]


def existing_path(root: Path, value: Any, key: str) -> Path:
    """The path `value` of key `key`, relative to `root`; a one-line error unless it is a string naming a file or folder
    that exists."""
    if not isinstance(value, str) or not value:
        raise UserInputError(f"'{key}' must be a path string, got {value!r}")
    path = (root / Path(value).expanduser()).resolve()
    if not path.exists():
        raise InputNotFoundError(f"'{key}' path {path} does not exist")
    return path


def split_entries(root: Path, cfg: dict[str, Any], key: str) -> list[Path] | None:
    """Existing paths of split `key` (a string or a list); None for an absent `test`."""
    if cfg.get(key) is None:
        if key == "test":
            return None
        raise UserInputError(f"missing '{key}'")
    values = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
    return [existing_path(root, v, key) for v in values]


def _resolve_yolo(file: Path, cfg: dict[str, Any], root: Path, names: list[str]) -> dict[str, Any]:
    """Absolute split paths; a mirror with the bad label rows dropped if any were found."""
    splits = {k: e for k in SPLITS if (e := split_entries(root, cfg, k)) is not None}
    report = Reporter(file)
    audited = {k: audit_split([im for e in v for im in list_images(e)], len(names), report) for k, v in splits.items()}
    report.close()
    for split, samples in audited.items():
        check_split(split, samples, ", ".join(map(str, splits[split])))
    data: dict[str, Any] = {"path": str(root)}
    if not report.count:
        data.update({k: str(e[0]) if len(e) == 1 else [str(p) for p in e] for k, e in splits.items()})
    else:
        key = short_hash([str(file), {k: [(str(s.image), s.rows) for s in v] for k, v in audited.items()}], 8)
        mirror = cache_root() / "datasets" / f"{file.stem}-clean-{key}"

        def build(tmp: Path) -> None:
            for split, samples in audited.items():
                write_split(tmp, split, samples)

        atomic_build(mirror, build)
        data = {"path": str(mirror), **{k: str(mirror / "images" / k) for k in audited}}
    data.update({key: str(existing_path(root, cfg[key], key)) for key in COCO_FILES if cfg.get(key) is not None})
    data["names"] = dict(enumerate(names))
    return data


def _sources(fmt: str, root: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Per split: (instances JSON, image folder) for COCO, or the ImageSets list files for VOC."""
    sources: dict[str, Any] = {}
    for key in SPLITS:
        entries = split_entries(root, cfg, key)
        if entries is None:
            continue
        if fmt == "voc":
            sources[key] = entries
            continue
        if len(entries) != 1 or not entries[0].is_dir():
            raise UserInputError(f"'{key}' must be one image folder for format coco")
        if cfg.get(f"{key}_json") is None:
            raise UserInputError(f"missing '{key}_json' (the COCO instances JSON of split '{key}')")
        sources[key] = (existing_path(root, cfg[f"{key}_json"], f"{key}_json"), entries[0])
    return sources
