"""Line-level checks of YOLO label files and images, for what Ultralytics' `verify_image_label` does not report well.

Ultralytics drops a whole image when one row has a class id >= nc or an out-of-range coordinate, naming only the image,
and it keeps zero-area or negative-size boxes. Here each bad row is reported as `label_file:line: problem` and only
that row is dropped (the caller then trains on a mirror with cleaned label files). An image no decoder can read is
reported with the reason (Ultralytics says "No module named 'pi_heif'", its HEIF fallback) and left out.
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

from ultralytics.data.utils import IMG_FORMATS

from umop_yolo.data.images import image_problem
from umop_yolo.data.labels import Reporter, Sample
from umop_yolo.errors import UserInputError

TOLERANCE = 0.01  # Ultralytics accepts coordinates in [-0.01, 1.01]


def list_images(entry: Path) -> list[Path]:
    """Images of one split entry, read as Ultralytics does: a folder (recursive), a list file, or one image."""
    if entry.is_dir():
        files = glob.glob(os.path.join(glob.escape(str(entry)), "**", "*.*"), recursive=True)
    elif entry.suffix.lower() == ".txt":
        lines = [x.strip() for x in entry.read_text(encoding="utf-8-sig").splitlines() if x.strip()]
        files = [str(entry.parent / x[2:]) if x.startswith("./") else x for x in lines]
    else:
        files = [str(entry)]
    return sorted(Path(f) for f in files if f.rpartition(".")[-1].lower() in IMG_FORMATS)


def label_file(image: Path) -> Path:
    """The label file Ultralytics reads for `image` (last `/images/` replaced by `/labels/`, suffix `.txt`)."""
    head, sep, tail = str(image).rpartition(f"{os.sep}images{os.sep}")
    return Path(f"{head}{os.sep}labels{os.sep}{tail}" if sep else str(image)).with_suffix(".txt")


def check_split(split: str, samples: list[Sample], source: str) -> None:
    """Refuse one line early what Ultralytics refuses only once it has set up the run: a train or val split without
    images, a train split without any label file (Ultralytics' 'No labels found'). Empty label files are negatives."""
    if split in ("train", "val") and not samples:
        raise UserInputError(f"'{split}' has no images ({source})")
    if split == "train" and not any(label_file(s.image).is_file() for s in samples):
        raise UserInputError(f"'train' has no label files (looked for e.g. {label_file(samples[0].image)}): "
                             "Ultralytics does not train without labels")


def row_problem(parts: list[str], nc: int) -> str:
    """Why a label row is unusable, or "" if it is fine. Boxes are `class cx cy w h`, segments `class x y x y ...`."""
    if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
        return f"expected 'class cx cy w h' (or a polygon), got {len(parts)} values"
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return "non-numeric value"
    if not all(math.isfinite(v) for v in values):
        return "non-finite value"
    cls, coords = values[0], values[1:]
    if cls != int(cls) or not 0 <= cls < nc:
        return f"class {parts[0]} is not an integer in 0-{nc - 1}"
    if any(v < -TOLERANCE or v > 1 + TOLERANCE for v in coords):
        return "coordinates outside [0, 1] (labels must be normalised)"
    if len(parts) == 5 and (coords[2] <= 0 or coords[3] <= 0):
        return f"zero or negative box size (w={parts[3]}, h={parts[4]})"
    return ""


def _class_id(parts: list[str]) -> int | None:
    try:
        value = float(parts[0])
    except (ValueError, IndexError):
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def audit_split(images: list[Path], nc: int, report: Reporter) -> list[Sample]:
    """Check every image and label row of `images`; unreadable images and bad rows go to `report` and are left out.

    A few rows with a class id >= nc are stray labels (warned, skipped); when most rows are, the class list itself is
    wrong and a UserInputError names it.
    """
    samples = []
    n_rows, beyond = 0, []  # (class id, where) of rows whose class id is >= nc
    for image in images:
        if problem := image_problem(image):
            report(str(image), problem, "image")
            continue
        lf = label_file(image)
        try:
            text = lf.read_text(encoding="utf-8-sig")
        except FileNotFoundError:  # an unlabelled image is a negative for Ultralytics too
            samples.append(Sample(image))
            continue
        except (OSError, UnicodeDecodeError) as e:
            report(str(lf), f"unreadable label file ({e.__class__.__name__})", "image")
            continue
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            n_rows += 1
            if (cls := _class_id(line.split())) is not None and cls >= nc:
                beyond.append((cls, f"{lf}:{n}"))
            if problem := row_problem(line.split(), nc):
                report(f"{lf}:{n}", problem)
            else:
                rows.append(line.strip() + "\n")
        samples.append(Sample(image, rows))
    if 2 * len(beyond) > n_rows:
        raise UserInputError(f"'names' lists {nc} classes but {len(beyond)} of {n_rows} label rows use class ids up to "
                         f"{max(c for c, _ in beyond)} (e.g. {beyond[0][1]}): the class list does not match the labels")
    return samples
