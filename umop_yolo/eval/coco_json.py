"""Where image files and detections meet a COCO instances JSON, for validation and prediction alike.

A data dict names the JSON of a split as `<split>_json` and, when the dataset was converted, the converter's map
`<split>_image_ids` (a JSON file: image path relative to the data's `path` -> the JSON's image id). A file is the
JSON image that map names; without a map, it is the image whose `file_name` shares the longest trailing path with
the file (`sub/a.jpg` and `other/a.jpg` stay distinct). Results carry the JSON's own image ids and file names.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from umop_yolo.eval.coco_gt import contiguous_category_ids, load_instances


def data_file(data: Mapping[str, Any], key: str) -> Path | None:
    """The file a data dict names under `key` (e.g. `val_json`); a relative path is taken from the data's `path`."""
    value = data.get(key)
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(data.get("path") or "") / path


def result_record(image_id: Any, file_name: str, category_id: int, ltwh: Iterable[float], score: float) -> dict:
    """One detection in COCO results format: bbox = [x, y, w, h] from the top left, in original-image pixels."""
    return {
        "image_id": image_id,
        "file_name": file_name,
        "category_id": category_id,
        "bbox": [round(float(v), 3) for v in ltwh],
        "score": round(float(score), 5),
    }


def _shared_tail(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many trailing path parts `a` and `b` have in common."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


@dataclass
class CocoTarget:
    """A split's instances JSON with the converter's id map, if any; `entry(file)` is the JSON image of a file."""

    json_file: Path
    instances: dict
    root: Path | None = None  # the data's `path`, which the id map's keys are relative to
    id_map: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {img["id"]: img for img in self.instances["images"]}
        self._by_name: dict[str, list[tuple[tuple[str, ...], dict]]] = defaultdict(list)
        for img in self.instances["images"]:
            parts = PurePosixPath(str(img["file_name"]).replace("\\", "/")).parts
            self._by_name[parts[-1] if parts else ""].append((parts, img))

    @classmethod
    def from_data(cls, data: Mapping[str, Any], split: str) -> CocoTarget | None:
        """The target of `split` (e.g. `val`) of a data dict; None when the data names no `<split>_json`."""
        json_file = data_file(data, f"{split}_json")
        if json_file is None:
            return None
        id_file = data_file(data, f"{split}_image_ids")
        id_map = json.loads(id_file.read_text(encoding="utf-8")) if id_file else {}
        root = Path(data["path"]) if data.get("path") else None
        return cls(json_file, load_instances(json_file), root, id_map)

    @property
    def category_ids(self) -> list[int]:
        """Category id of each contiguous class (class i -> i-th smallest id)."""
        return contiguous_category_ids(self.instances)

    def entry(self, im_file: str) -> dict | None:
        """The JSON image of `im_file`: by the id map, else by the longest shared trailing path (None: none or tied)."""
        if self.id_map and self.root is not None:
            key = Path(os.path.relpath(im_file, self.root)).as_posix()
            if key in self.id_map and self.id_map[key] in self._by_id:
                return self._by_id[self.id_map[key]]
        parts = Path(im_file).parts
        candidates = [(_shared_tail(parts, p), img) for p, img in self._by_name.get(parts[-1] if parts else "", [])]
        if not candidates:
            return None
        best = max(n for n, _ in candidates)
        winners = {img["id"]: img for n, img in candidates if n == best}
        return next(iter(winners.values())) if len(winners) == 1 else None

    def match(self, im_files: Iterable[str]) -> dict[str, dict]:
        """The JSON image of each file that has one; unmatched files are left out."""
        return {f: img for f in im_files if (img := self.entry(f)) is not None}
