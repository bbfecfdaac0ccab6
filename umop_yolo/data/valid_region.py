"""Where each training image lies in its input: MMDetection's pad_shape as a batch key, `valid_region`.

Ultralytics' training pipeline warps an image (or a mosaic canvas) into its input with a random affine
(`RandomPerspective`: scale, translation, a letterbox when mosaic is off) and flips it, and records neither: the grey
around it is not told apart from the image in the batch. `record_valid_regions(dataset)` tracks it as Ultralytics
tracks segmentation masks: a `semantic_mask` of zeros joins the labels right before the warp, which fills 255 outside
the warped image, every later geometric transform moves it with the image, and before `Format` it becomes
`valid_region`, the box around its remaining zeros as normalised xyxy (the box of a quadrilateral under rotation or
shear; under MixUp the heavier image's, as Ultralytics mixes masks). A mosaic canvas counts as valid throughout, its
grey fill included, as in MMDetection's mosaic pipelines; only what the warp leaves outside it is padding. The dense
criterion turns the regions into anchor valid flags (`umop_yolo.nn.targets.valid_regions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ultralytics.data.augment import Compose, Format, RandomPerspective

OUTSIDE = 255  # the warp's (and LetterBox's) fill of a semantic mask


class AttachImageMask:
    """A zero `semantic_mask` the size of the image about to be warped: every pixel of it is valid."""

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        labels["semantic_mask"] = np.zeros(labels["img"].shape[:2], dtype=np.uint8)
        return labels


class MaskToValidRegion:
    """`semantic_mask` -> `valid_region`: (4,) float32 normalised xyxy box of the pixels not filled by the warp."""

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        inside = labels.pop("semantic_mask") != OUTSIDE
        h, w = inside.shape
        rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
        box = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1] if rows.size else [0, 0, 0, 0]
        labels["valid_region"] = np.asarray(box, dtype=np.float32) / np.array([w, h, w, h], dtype=np.float32)
        return labels


def with_valid_regions(transforms: Compose) -> Compose:
    """Ultralytics' training transforms (`v8_transforms` + `Format`) recording `valid_region`; others unchanged."""
    pre = transforms.transforms[0] if transforms.transforms else None
    steps = pre.transforms if isinstance(pre, Compose) else []
    warp = next((i for i, t in enumerate(steps) if isinstance(t, RandomPerspective)), None)
    if warp is None or not isinstance(transforms.transforms[-1], Format):
        return transforms
    pre.insert(warp, AttachImageMask())
    transforms.insert(len(transforms.transforms) - 1, MaskToValidRegion())
    return transforms


class ValidRegionTransforms:
    """A dataset's `build_transforms`, recording `valid_region`: close_mosaic's rebuild keeps the record."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, hyp: Any) -> Compose:
        return with_valid_regions(type(self.dataset).build_transforms(self.dataset, hyp))


def record_valid_regions(dataset: Any) -> Any:
    """Make an Ultralytics YOLODataset's training batches carry `valid_region` (see the module docstring)."""
    dataset.build_transforms = ValidRegionTransforms(dataset)
    dataset.transforms = with_valid_regions(dataset.transforms)
    return dataset
