"""Images no decoder can read, reported with the reason instead of Ultralytics' "No module named 'pi_heif'".

Ultralytics retries any image PIL cannot identify with its optional HEIF plugin, so a zero-byte file or a text file
named .jpg is reported as the plugin's import error (dataset scans), or as "Image Read Error" without a reason
(predict). Both are checked here from the file's first bytes, warned once naming the file, and left out.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import cv2
from ultralytics.data.utils import IMG_FORMATS, VID_FORMATS

from umop_yolo.data.labels import Reporter
from umop_yolo.errors import InputNotFoundError, UserInputError

MEDIA = IMG_FORMATS | VID_FORMATS  # what Ultralytics' predict reads from a folder


def image_problem(image: Path) -> str:
    """Why `image` cannot be decoded, or "" if a decoder recognises it (a header check: fast, not a full decode).

    HEIC/HEIF are left to Ultralytics, which decodes them with the optional pi-heif plugin.
    """
    try:
        with open(image, "rb") as f:
            head = f.read(16)
    except OSError as e:
        return f"unreadable image ({e.strerror or type(e).__name__})"
    if not head:
        return "empty image file (zero bytes)"
    if image.suffix.lower() in {".heic", ".heif"} or cv2.haveImageReader(str(image)):
        return ""
    return f"not an image: no image format starts with {head!r}"


def readable_source(source: Any, listing: Path) -> Any:
    """A predict `source` without its unreadable images, each warned with the reason.

    A local image file, or a folder (read at its top level, as Ultralytics does), is checked; if some images cannot be
    read, the other images and videos are written to the list file `listing` (Ultralytics reads a .txt source as a
    list of paths) and its path is returned. A local path that does not exist, or a folder without images or videos,
    stops with one line. Other sources (URLs, globs, webcams, screen, list files, arrays) are returned as is.
    """
    text = str(source)
    if not isinstance(source, (str, Path)) or any(s in text for s in ("://", "*")) or text.startswith("screen"):
        return source
    if text.isnumeric():  # a webcam
        return source
    path = Path(source)
    if not path.exists():
        raise InputNotFoundError(f"source '{source}' not found")
    files = [path]
    if path.is_dir():
        files = sorted(Path(f) for f in glob.glob(os.path.join(glob.escape(str(path)), "*.*")))
        files = [f for f in files if f.suffix[1:].lower() in MEDIA]
        if not files:
            raise UserInputError(f"source '{source}' holds no images or videos")
    bad = {f: problem for f in files if f.suffix[1:].lower() in IMG_FORMATS and (problem := image_problem(f))}
    if not bad:
        return source
    if path.is_file():
        raise UserInputError(f"source '{source}': {bad[path]}")
    if len(bad) == len(files):
        file, problem = next(iter(bad.items()))
        raise UserInputError(f"source '{source}': none of its {len(files)} images is readable (e.g. {file}: {problem})")
    report = Reporter(path)
    for file, problem in bad.items():
        report(str(file), problem, "image")
    report.close()
    listing.write_text("".join(f"{f.resolve()}\n" for f in files if f not in bad), encoding="utf-8")
    return str(listing)
