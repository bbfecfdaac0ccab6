"""Checks of a training run's inputs before Ultralytics creates its run directory or touches an existing one.

`BaseTrainer.__init__` writes args.yaml into the run directory and deletes its results.csv unless resuming, and the
model is only built or loaded later, in `train()`. So a bad checkpoint or model YAML would fail after an existing
run's results were gone. `check_train_inputs` first loads the checkpoint (restricted), checks the model YAML as data
(`model_yaml_check`) and resolves the data YAML (splits without images, a train split without labels), raising one
line (`UserInputError`) naming the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from umop_yolo.cfg import ConfigError, check_values
from umop_yolo.data.resolve import resolve_data
from umop_yolo.engine.mmdet_import import is_mmdet_file, mmdet_start
from umop_yolo.engine.model_yaml_check import check_model_dict
from umop_yolo.engine.run.checkpoint import CheckpointError, load_file
from umop_yolo.settings import check_umop_args


def resume_path(args: dict[str, Any]) -> Path:
    """The checkpoint a `resume` run continues from: `resume=PATH`, or `resume=true model=PATH.pt`."""
    resume, model = args.get("resume"), args.get("model")
    if isinstance(resume, (str, Path)):
        return Path(resume)
    if str(model).endswith(".pt"):
        return Path(model)
    raise ConfigError("resume=true needs the checkpoint to continue: model=path/to/weights/last.pt")


def check_resumable(ckpt: dict, path: Path) -> None:
    """The checkpoint must come from an unfinished run with valid UMOP settings."""
    train_args = ckpt.get("train_args") or {}
    epochs, done = train_args.get("epochs"), ckpt.get("epoch", -1) + 1
    if not isinstance(epochs, int) or not 0 < done < epochs:
        raise CheckpointError(
            f"checkpoint '{path}' is from a finished training ({epochs} epochs), nothing to resume; "
            f"start a new run from its weights with model={path}"
        )
    check_umop_args(train_args)  # keys an older checkpoint lacks take their defaults


def check_resume_dir(save_dir: str | Path, checkpoint: str | Path) -> None:
    """A resumed run writes only into the run directory holding its checkpoint (`<run dir>/weights/last.pt`): the
    directory the checkpoint names (its stored save_dir, or project/name) must be that one."""
    run_dir = Path(checkpoint).resolve().parent.parent
    if Path(save_dir).resolve() != run_dir:
        raise CheckpointError(
            f"checkpoint '{checkpoint}' names run directory '{save_dir}', which does not hold it: resume writes only "
            f"into the run directory of its checkpoint ({run_dir}); start a new run from it with model={checkpoint}"
        )


def check_model_yaml(model: str) -> None:
    """The model YAML exists and is data that builds only allowed layers (`model_yaml_check`), or one line."""
    from ultralytics.nn import tasks

    try:
        spec = tasks.yaml_model_load(model)
    except Exception as e:  # Ultralytics' YAML lookup raises FileNotFoundError, YAML errors ...
        raise ConfigError(f"model '{model}': {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    check_model_dict(spec, f"model '{model}'")


def check_train_inputs(args: dict[str, Any], trusted: bool) -> dict[str, Any]:
    """Validate values, checkpoint, model YAML and data of a training run; returns overrides to use instead.

    Returned keys: `resume` (the checkpoint path, also for `resume=true model=PATH`), `data` (the resolved data
    YAML, which Ultralytics then uses as is).
    """
    check_values(args, training=True)
    updates: dict[str, Any] = {}
    if args.get("resume"):
        path = resume_path(args)
        check_resumable(load_file(path, trusted), path)
        updates["resume"] = str(path)
    else:
        model, pretrained = args.get("model"), args.get("pretrained")
        mmdet_start(model, pretrained)  # an MMDetection .pth (model= or pretrained=) is read and must fit
        if str(model).endswith(".pt"):
            load_file(model, trusted)
        elif model and not is_mmdet_file(model):
            check_model_yaml(str(model))
        if isinstance(pretrained, (str, Path)) and str(pretrained).endswith(".pt"):
            load_file(pretrained, trusted)
    if args.get("data"):
        updates["data"] = resolve_data(args["data"])
    return updates
