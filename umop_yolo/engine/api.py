"""`UmopYOLO`: the `YOLO`-like Model API (train/val/predict/export) on our model builder, trainer and validator."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ultralytics.engine.model import Model

from umop_yolo.cfg import experiment_args, mode_args, resolve_model
from umop_yolo.data.resolve import resolve_data
from umop_yolo.engine import runtime
from umop_yolo.engine.build import build_model
from umop_yolo.engine.log_rewrite import rewritten_log, umop_commands
from umop_yolo.engine.mmdet_import import is_mmdet_file, mmdet_model
from umop_yolo.engine.predictor import CocoDetectionPredictor
from umop_yolo.engine.run.checkpoint import checkpoint_loading
from umop_yolo.engine.run.saving import saved_as_ultralytics
from umop_yolo.engine.trainer import UmopTrainer
from umop_yolo.engine.validator import CocoDetectionValidator, training_test_args
from umop_yolo.errors import UserInputError

EXPORT_EXTRA = ("onnx", "onnxruntime", "onnxslim")  # pyproject's [export] extra: what format=onnx uses


class UmopYOLO(Model):
    """`YOLO`-like Model API (train/val/predict/export) that builds and runs our model, trainer and validator.

    `model` is resolved as `umop` resolves `model=`: a bare name in cfg/models (`atss_r18_fpn.yaml`), one of
    Ultralytics' architecture YAMLs (`yolov8n.yaml`), an existing `.pt` (never downloaded), or an MMDetection
    RetinaNet/ATSS checkpoint `.pth` (`engine.mmdet_import`; `UmopYOLO('<model YAML>').load('file.pth')` takes the
    architecture from the YAML). Keyword arguments of train/val/predict/export are checked and completed as `umop
    MODE key=value` does (experiment `cfg=`, runs under `<runs_dir>/detect`, Ultralytics' `runs_dir` setting). A `.pt`
    is loaded with the restricted unpickler (`umop_yolo.engine.run.checkpoint`) unless `trust_checkpoint=True`, which
    later `train()`/`val()`/... calls inherit; a `.pth` is always read as data only.
    """

    def __init__(
        self, model: str | Path = "yolov8n.yaml", task: str = "detect", verbose: bool = False,
        trust_checkpoint: bool = False,
    ) -> None:
        if not isinstance(trust_checkpoint, bool):
            raise UserInputError(f"trust_checkpoint={trust_checkpoint!r} must be true or false")
        runtime.register()
        with checkpoint_loading(trust_checkpoint):
            super().__init__(model=resolve_model(str(model)), task=task, verbose=verbose)
        self.trust_checkpoint = trust_checkpoint
        if trust_checkpoint:
            self.overrides["trust_checkpoint"] = True

    def _load(self, weights: str, task: str | None = None) -> None:
        """As `Model._load`; an MMDetection checkpoint (.pth) becomes its dense model (`engine.mmdet_import`)."""
        if not is_mmdet_file(weights):
            return super()._load(weights, task)
        self.model, self.ckpt = mmdet_model(weights)
        self.task, self.ckpt_path, self.model_name = "detect", weights, weights
        self.overrides = self.model.args = self._reset_ckpt_args(self.model.args)
        self.overrides.update(model=weights, task="detect")

    def load(self, weights: Any = "yolo26n.pt") -> UmopYOLO:
        """Transfer weights from a checkpoint (restricted loading unless trusted), as `Model.load`. An MMDetection
        checkpoint (.pth) replaces the model with this model YAML's architecture holding all its weights and classes."""
        if is_mmdet_file(weights):
            self.model, self.ckpt = mmdet_model(weights, architecture=self.model.yaml)
            self.overrides["pretrained"] = str(weights)
            return self
        with checkpoint_loading(self.trust_checkpoint):
            return super().load(weights)

    def save(self, filename: str | Path = "saved_model.pt") -> None:
        """As `Model.save`, with the model saved as best.pt is: a YOLO head as Ultralytics' own `DetectionModel`
        (plain Ultralytics loads it; our loader gives its class back)."""
        with saved_as_ultralytics(self.model):
            super().save(filename)

    def train(self, trainer: Any = None, **kwargs: Any) -> Any:
        """Train this model as `umop train` would: `cfg=` names an experiment (default: the default experiment).
        An experiment whose `model:` is another architecture stops, rather than training this one with its settings."""
        if kwargs.get("cfg") is not None and "model" not in kwargs:
            named = experiment_args(kwargs["cfg"], {}).get("model")
            if named is not None:
                self._check_same_model(named, kwargs["cfg"])
        args = mode_args("train", kwargs, "train()")
        if "model" not in kwargs:
            args.pop("model", None)  # this object's model, as `Model.train` takes it
        return super().train(trainer, **args)

    def _check_same_model(self, named: str, cfg: str) -> None:
        """Raise if the experiment's `model:` is neither the file this model came from nor its architecture YAML."""
        held = str(self.overrides.get("model"))
        yaml_file = getattr(self.model, "yaml", {}).get("yaml_file") or held
        if Path(named).resolve() != Path(held).resolve() and Path(named).name != Path(yaml_file).name:
            raise UserInputError(f"experiment cfg '{cfg}' trains model '{Path(named).name}', but this UmopYOLO holds "
                                 f"'{Path(held).name}': use UmopYOLO('{Path(named).name}').train(cfg='{cfg}')")

    def val(self, validator: Any = None, **kwargs: Any) -> Any:
        """Validate as `umop val`: data defaults to the data the checkpoint was trained on (required where the model
        records none); bare names are looked up in data/ (checked here: Ultralytics would try to download a missing
        dataset); conf/iou/max_det default to the checkpoint's training's."""
        args = mode_args("val", kwargs, "val()")
        args.update(training_test_args(self.ckpt, args))
        data = args.get("data") or self.overrides.get("data")
        if not data:  # an exported file or a YAML model: Ultralytics would download coco8 instead
            name = Path(str(self.overrides.get("model"))).name
            raise UserInputError(f"model '{name}' records no dataset: give data=")
        args["data"] = resolve_data(data)
        return super().val(validator, **args)

    def predict(self, source: Any = None, stream: bool = False, predictor: Any = None, **kwargs: Any) -> Any:
        """Predict as `umop predict` (keys checked, runs under `<runs_dir>/detect`); conf/iou/max_det default to the
        checkpoint's training's."""
        args = mode_args("predict", kwargs, "predict()")
        args.update(training_test_args(self.ckpt, args))
        return super().predict(source, stream, predictor, **args)

    def export(self, **kwargs: Any) -> Any:
        """Export as `umop export`; a missing exporter package stops with one line naming what to install. The log's
        closing hints name `umop predict` / `umop val`, which run the exported file, not `yolo`'s."""
        args = mode_args("export", kwargs, "export()")
        fmt = str(args.get("format", "torchscript")).lower()
        try:
            if fmt == "onnx":
                importlib.import_module("onnx")  # before the exporter logs its own failure
            with rewritten_log(umop_commands):
                return super().export(**args)
        except ModuleNotFoundError as e:
            package = (e.name or "").partition(".")[0]
            if package in {"", "umop_yolo", "ultralytics"}:
                raise  # a bug, not a missing exporter
            hint = "pip install 'umop-yolo[export]'" if package in EXPORT_EXTRA else "install it"
            raise UserInputError(f"export format={fmt} needs the package '{package}', which is not installed (nothing "
                                 f"is installed at run time): {hint}") from None

    @property
    def task_map(self) -> dict[str, dict[str, Any]]:
        return {
            "detect": {
                "model": build_model,
                "trainer": UmopTrainer,
                "validator": CocoDetectionValidator,
                "predictor": CocoDetectionPredictor,
            }
        }
