"""MMDetection's RetinaNet/ATSS state-dict keys as the keys of our dense models (`DenseDetectionModel`).

MMDetection 2.x and 3.x name these detectors' tensors alike:

| MMDetection | ours |
|---|---|
| `backbone.<torchvision names>` | `model.0.<same>` |
| `neck.lateral_convs.i.conv.*` | `model.1.lateral_convs.i.*` |
| `neck.fpn_convs.i.conv.*`, i < inputs | `model.1.fpn_convs.i.*` |
| `neck.fpn_convs.i.conv.*`, i >= inputs (P6, P7) | `model.1.extra_convs.<i - inputs>.*` |
| `bbox_head.{cls,reg}_convs.i.conv.*` / `.gn.*` | `model.2.head.{cls,reg}_convs.<k>.*` (conv [, GroupNorm], ReLU) |
| `bbox_head.{atss,retina}_{cls,reg}.*`, `atss_centerness.*`, `scales.i.scale` | `model.2.head.<same>` |

A key with no counterpart keeps its MMDetection name, so the fit check names it as unexpected.
"""

from __future__ import annotations

import re

from torch import Tensor

HEAD_CLASSIFIERS = {"atss": "atss_cls", "retinanet": "retina_cls"}  # detector -> its classification conv
_TOWER = re.compile(r"bbox_head\.(cls|reg)_convs\.(\d+)\.(conv|gn)\.(.+)")
_NECK = re.compile(r"neck\.(lateral|fpn)_convs\.(\d+)\.conv\.(.+)")
_HEAD = re.compile(r"bbox_head\.((?:atss|retina)_\w+|scales\.\d+\.scale)(\..+)?")


def strip_wrappers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keys without DistributedDataParallel's `module.` prefix."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def detector_of(state: dict[str, Tensor]) -> str | None:
    """'atss' or 'retinanet' from the head's classification conv, None for anything else."""
    return next((d for d, conv in HEAD_CLASSIFIERS.items() if f"bbox_head.{conv}.weight" in state), None)


def has_head_norm(state: dict[str, Tensor]) -> bool:
    """Whether the head's towers hold GroupNorms (ATSS), which spaces the tower's layers by three, not two."""
    return any((m := _TOWER.fullmatch(k)) is not None and m.group(3) == "gn" for k in state)


def _our_key(key: str, neck_inputs: int, per_conv: int) -> str:
    if key.startswith("backbone."):
        return "model.0." + key.removeprefix("backbone.")
    if m := _NECK.fullmatch(key):
        kind, i, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind == "fpn" and i >= neck_inputs:
            return f"model.1.extra_convs.{i - neck_inputs}.{rest}"
        return f"model.1.{kind}_convs.{i}.{rest}"
    if m := _TOWER.fullmatch(key):
        branch, i, layer, rest = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        return f"model.2.head.{branch}_convs.{i * per_conv + (layer == 'gn')}.{rest}"
    if _HEAD.fullmatch(key):
        return "model.2.head." + key.removeprefix("bbox_head.")
    return key


def to_dense_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An MMDetection RetinaNet/ATSS state dict under our model's keys (unmatched keys keep their names)."""
    state = strip_wrappers(state)
    neck_inputs = len({k.split(".")[2] for k in state if k.startswith("neck.lateral_convs.")})
    per_conv = 3 if has_head_norm(state) else 2
    return {_our_key(k, neck_inputs, per_conv): v for k, v in state.items()}
