"""ImageNet weights for the ResNet backbones: which file, read offline, checked to fit, every failure one line.

`pretrained` (the model YAML's `backbone.pretrained`, or the `backbone_weights` setting) is

* a file: a torchvision state dict (`resnet50-0676ba61.pth`) or an mmcv/MMDetection checkpoint (tensors wrapped in
  `state_dict` or `model`, keys prefixed `backbone.` or `module.`); the ImageNet classifier (`fc.`) is dropped;
* `imagenet` (torchvision's IMAGENET1K_V1, what MMDetection's `torchvision://resnet50` loads) or another torchvision
  weights name such as `IMAGENET1K_V2`: the file torchvision would download, looked up in the torch hub cache only;
* null / false: random init.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from umop_yolo.errors import InputNotFoundError, UserInputError

WRAPPERS = ("state_dict", "model")  # mmcv / MMDetection, torchvision's reference scripts
PREFIXES = ("module.", "backbone.")  # DistributedDataParallel, a whole MMDetection detector
# tensors a file may lack: DCNv2 offset/mask convs (they start at zero), BatchNorm counters of older files
OPTIONAL = ("conv_offset", "num_batches_tracked")


def torchvision_weights(pretrained: str, weights_enum: str) -> torchvision.models.WeightsEnum:
    """The torchvision weights entry `pretrained` names (`imagenet` = IMAGENET1K_V1), offline."""
    name = "IMAGENET1K_V1" if pretrained.lower() == "imagenet" else pretrained
    weights = getattr(getattr(torchvision.models, weights_enum), name, None)
    if weights is None:
        raise UserInputError(f"backbone pretrained='{pretrained}' is neither a file nor a {weights_enum} name "
                             f"({', '.join(w.name for w in getattr(torchvision.models, weights_enum))} or imagenet)")
    return weights


def hub_file(weights: torchvision.models.WeightsEnum) -> Path:
    """Where torchvision keeps its download of `weights`: $TORCH_HOME/hub/checkpoints/<file> (torch.hub.get_dir())."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def weights_file(pretrained: str | Path | None, weights_enum: str) -> Path | None:
    """The local file `pretrained` names; None for random init or for a torchvision name not in the hub cache."""
    if not pretrained:
        return None
    path = Path(pretrained).expanduser()
    if path.suffix or len(path.parts) > 1:  # a file path, not a name
        if not path.is_file():
            raise InputNotFoundError(f"backbone weights '{pretrained}' not found")
        return path
    cached = hub_file(torchvision_weights(str(pretrained), weights_enum))
    return cached if cached.is_file() else None


def missing_imagenet(pretrained: str, arch: str, weights_enum: str) -> str:
    """The one line that says which torchvision file `pretrained` needs, where it goes, and the alternatives."""
    weights = torchvision_weights(pretrained, weights_enum)
    file = hub_file(weights)
    return (f"{arch} backbone pretrained={pretrained} needs torchvision's {file.name} ({weights_enum}.{weights.name}) "
            f"in {file.parent} (torch.hub.get_dir()/checkpoints; $TORCH_HOME moves it), and nothing is downloaded: "
            f"put the file there, or pass one with backbone_weights=/path/to/{file.name} (torchvision or mmcv "
            "state dict), or train from scratch with backbone_weights=false")


def read_state_dict(file: Path) -> dict[str, Tensor]:
    """The backbone tensors of a weights file: unwrapped, prefixes stripped, the classifier dropped."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, a truncated one, a pickle of objects ...
        raise UserInputError(f"backbone weights '{file}' are not a readable state dict: {type(e).__name__}: "
                             f"{' '.join(str(e).split())[:200]}") from None
    while isinstance(state, dict) and any(isinstance(state.get(k), dict) for k in WRAPPERS):
        state = next(state[k] for k in WRAPPERS if isinstance(state.get(k), dict))
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserInputError(f"backbone weights '{file}' are not a state dict of tensors")
    for prefix in PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _shape(x: Tensor) -> str:
    return "x".join(map(str, x.shape)) or "scalar"


def misfit(state: dict[str, Tensor], target: dict[str, Tensor]) -> str | None:
    """How `state` fails to fill `target` (tensors that differ in shape, are missing or left over), or None."""
    differ = [k for k in state if k in target and state[k].shape != target[k].shape]
    missing = [k for k in target if k not in state and not any(n in k for n in OPTIONAL)]
    extra = [k for k in state if k not in target]
    parts = []
    if differ:
        parts.append(f"{len(differ)} tensors differ in shape (first: {differ[0]} {_shape(state[differ[0]])}, "
                     f"needs {_shape(target[differ[0]])})")
    parts += [f"{len(keys)} {what} (first: {keys[0]})" for keys, what in ((missing, "missing"), (extra, "unexpected"))
              if keys]
    return ", ".join(parts) or None


def identify(state: dict[str, Tensor], archs: list[str]) -> str | None:
    """The torchvision architecture among `archs` whose tensors `state` holds exactly (built on the meta device)."""
    for arch in archs:
        with torch.device("meta"):
            reference = getattr(torchvision.models, arch)(weights=None).state_dict()
        if misfit(state, {k: v for k, v in reference.items() if not k.startswith("fc.")}) is None:
            return arch
    return None


def fitting_state_dict(file: Path, model: nn.Module, arch: str, archs: list[str]) -> dict[str, Tensor]:
    """The tensors of `file` for `model` (a torchvision-named `arch`), or one line saying why they do not fit."""
    state = read_state_dict(file)
    problem = misfit(state, model.state_dict())
    if problem:
        found = identify(state, [a for a in archs if a != arch])
        raise UserInputError(f"{found + ' weights' if found else 'the weights'} in {file} do not fit {arch}: "
                             f"{problem}")
    return state
