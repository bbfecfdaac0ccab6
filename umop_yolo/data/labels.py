"""YOLO label rows, one-line warnings for bad labels, and the writer of a YOLO "mirror" of a dataset.

A mirror is `images/<split>/<name>` symlinks to the original images plus `labels/<split>/<stem>.txt`; Ultralytics
finds the labels by swapping the last `/images/` for `/labels/`, so nothing is copied and the source stays untouched.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ultralytics.utils import LOGGER

MAX_WARNINGS = 50  # per source file; the rest are counted in one summary line


@dataclass
class Sample:
    """One image of a split: its source file, YOLO label rows (with newline), its file name in the mirror, and its
    image id in the source's annotation file (COCO JSON), if it has one."""

    image: Path
    rows: list[str] = field(default_factory=list)
    name: str = ""
    image_id: Any = None

    def __post_init__(self) -> None:
        self.name = self.name or self.image.name


class Reporter:
    """Log one warning line per bad label, at most MAX_WARNINGS per source, then a count of the rest."""

    def __init__(self, source: Path | str) -> None:
        self.source = str(source)
        self.count = 0

    def __call__(self, where: str, problem: str, skipped: str = "label") -> None:
        """Report `problem` found at `where` (a file:line, an annotation id, ...) and what is `skipped` for it."""
        self.count += 1
        if self.count <= MAX_WARNINGS:
            LOGGER.warning(f"{where}: {problem}, {skipped} skipped")

    def close(self) -> None:
        """Log how many warnings were not shown."""
        if self.count > MAX_WARNINGS:
            LOGGER.warning(f"{self.source}: {self.count - MAX_WARNINGS} more bad labels skipped ({self.count} in all)")


def yolo_row(cls: int, x1: float, y1: float, x2: float, y2: float, width: float, height: float) -> str:
    """The YOLO label row (with newline) of pixel box `x1 y1 x2 y2` in a `width` x `height` image: class, then the
    box centre and size as fractions of the image, 6 decimals."""
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{cls} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n"


def pixel_box_row(cls: int, box: list[float], width: float, height: float) -> tuple[str, str]:
    """Turn a pixel box `x1 y1 x2 y2` into a normalised YOLO row; returns (row, "") or ("", problem)."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return "", f"non-finite or non-numeric box {box}"
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        return "", f"empty box (w={x2 - x1:g}, h={y2 - y1:g})"
    x1, x2 = max(x1, 0.0), min(x2, float(width))
    y1, y2 = max(y1, 0.0), min(y2, float(height))
    if x2 <= x1 or y2 <= y1:
        return "", f"box {box} lies outside the {width:g}x{height:g} image"
    return yolo_row(cls, x1, y1, x2, y2, width, height), ""


def write_split(root: Path, split: str, samples: list[Sample]) -> list[str]:
    """Write `samples` as a mirror split under `root` (symlinked images, YOLO label files, empty for negatives).

    Returns each sample's file name in `images/<split>/`: its `name`, or `<stem>_<index><ext>` when an earlier sample
    took that stem (a.jpg and a.png would share a.txt; sub/a.jpg and other/a.jpg would share a.jpg).
    """
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    names = []
    for i, sample in enumerate(samples):
        stem, suffix = Path(sample.name).stem, Path(sample.name).suffix
        name = sample.name if stem not in used else f"{stem}_{i}{suffix}"
        used.add(Path(name).stem)
        os.symlink(os.path.abspath(sample.image), images / name)
        (labels / f"{Path(name).stem}.txt").write_text("".join(sample.rows))
        names.append(name)
    return names
