"""`UmopTrainer`: Ultralytics' DetectionTrainer building our models, checking UMOP settings, logging gamma_l/alpha_l."""

from __future__ import annotations

from typing import Any

from ultralytics.cfg import cfg2dict
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG, LOCAL_RANK, RANK, WORLD_SIZE
from ultralytics.utils.torch_utils import unwrap_model

from umop_yolo.data.resolve import resolve_data
from umop_yolo.engine.level_stats import LevelStatsMeter, criterion_stats, level_names
from umop_yolo.engine.model import build_model
from umop_yolo.settings import check_umop_args


def _record_level_stats(trainer: "UmopTrainer") -> None:
    """on_train_batch_end: add this step's per-level PFL stats to the epoch meter (device tensors only)."""
    trainer.level_meter.update(criterion_stats(unwrap_model(trainer.model).criterion))


class UmopTrainer(DetectionTrainer):
    """DetectionTrainer for UMOP: our model classes, validated UMOP settings, per-level gamma/alpha in results.csv."""

    def __init__(self, cfg: Any = DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None) -> None:
        check_umop_args({**cfg2dict(cfg), **(overrides or {})})  # before any run directory is created
        super().__init__(cfg, overrides, _callbacks)
        if LOCAL_RANK != -1:  # a DDP worker (torchrun or Ultralytics' launcher): join the whole job, all nodes
            self.world_size = WORLD_SIZE  # Ultralytics counts only this node's devices
        self.level_meter = LevelStatsMeter()
        if _record_level_stats not in self.callbacks["on_train_batch_end"]:  # DDP workers receive ours pickled
            self.add_callback("on_train_batch_end", _record_level_stats)

    def get_dataset(self) -> dict:
        """Resolve built-in names, generated and non-YOLO datasets to a YOLO data YAML first."""
        self.args.data = resolve_data(self.args.data)
        return super().get_dataset()

    def get_model(self, cfg: str | dict | None = None, weights: Any = None, verbose: bool = True) -> Any:
        model = build_model(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
        return model

    def save_metrics(self, metrics: dict) -> None:
        """Append the epoch's mean gamma_l and alpha_l (columns per level, e.g. pfl/gamma_P3) to results.csv."""
        names = level_names(unwrap_model(self.model).stride)
        super().save_metrics({**metrics, **self.level_meter.summary(names)})
