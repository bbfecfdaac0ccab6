"""`UmopTrainer`: Ultralytics' DetectionTrainer building our models, checking UMOP settings, recording per-level stats,
holding its run directory's lock, and recovering from loss explosions as from NaNs."""

from __future__ import annotations

from copy import copy
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import optim
from ultralytics.cfg import cfg2dict
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.nn.tasks import load_checkpoint
from ultralytics.utils import DEFAULT_CFG, LOCAL_RANK, LOGGER, RANK, WORLD_SIZE
from ultralytics.utils.torch_utils import ModelEMA, unwrap_model

from umop_yolo.data.resolve import resolve_data
from umop_yolo.data.valid_region import record_valid_regions
from umop_yolo.engine import ddp, runtime
from umop_yolo.engine.build import build_model, check_weights_args
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.levels.level_plots import plot_results_without_levels, plot_run
from umop_yolo.engine.levels.level_stats import LEVEL_CALLBACKS, LevelRecorder, is_level_key
from umop_yolo.engine.mmdet_import import mmdet_start
from umop_yolo.engine.run.checkpoint import checkpoint_loading
from umop_yolo.engine.run.divergence import DivergenceError, DivergenceMonitor
from umop_yolo.engine.run.preflight import check_train_inputs
from umop_yolo.engine.run.run_lock import RunLock
from umop_yolo.engine.run.saving import (
    atomic_weights,
    kept_on_full_disk,
    remove_leftovers,
    results_row,
    saved_as_ultralytics,
    trim_epochs,
    weights_file_names_only,
)
from umop_yolo.engine.schedule import WARMUP_CALLBACKS, mmdetection_groups_, step_lr_lambda
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.settings import check_umop_args


def _watch_divergence(trainer: UmopTrainer) -> None:
    """on_train_batch_end: the step loss into the divergence monitor. Ultralytics' progress bar has just read this
    step's loss items to the host, so this read waits for no further device work."""
    if RANK in {-1, 0}:
        trainer.divergence.step(float(trainer.loss.detach()))


TRAIN_CALLBACKS = (*LEVEL_CALLBACKS, ("on_train_batch_end", _watch_divergence), *WARMUP_CALLBACKS)


class UmopTrainer(DetectionTrainer):
    """DetectionTrainer for UMOP: our model classes, validated UMOP settings, per-level gamma/alpha in results.csv."""

    def __init__(self, cfg: Any = DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None) -> None:
        runtime.register()  # also in DDP workers, which build the trainer from a pickled copy
        cfg = runtime.with_umop_defaults(cfg)
        args = {**cfg2dict(cfg), **(overrides or {})}
        check_umop_args(args)  # before any run directory is created, and before an existing one is touched:
        self.trust_checkpoint = args.get("trust_checkpoint", False)
        overrides = {**(overrides or {}), **check_train_inputs(args, self.trust_checkpoint)}
        if not args.get("resume"):  # a resumed run reads only its checkpoint
            check_weights_args(args.get("model"), args.get("backbone_weights"), args.get("pretrained"))
        self.run_lock: RunLock | None = None  # taken in check_resume(), held until train() ends
        try:
            with checkpoint_loading(self.trust_checkpoint):  # Ultralytics reads the resume checkpoint in here
                super().__init__(cfg, overrides, _callbacks)
        except BaseException:
            self.release_run_dir()
            raise
        self.args.trust_checkpoint = self.trust_checkpoint  # this command's choice, not the resumed run's
        if LOCAL_RANK != -1:  # a DDP worker (torchrun or Ultralytics' launcher): join the whole job, all nodes
            self.world_size = WORLD_SIZE  # Ultralytics counts only this node's devices
        levels_csv = self.save_dir / "levels.csv" if RANK in {-1, 0} else None  # rank 0 writes the ranks' means
        self.level_recorder = LevelRecorder(levels_csv, self.args.level_log_interval)
        self.divergence = DivergenceMonitor()
        for event, callback in TRAIN_CALLBACKS:
            if callback not in self.callbacks[event]:  # DDP workers receive ours pickled
                self.add_callback(event, callback)

    def check_resume(self, overrides: dict) -> None:
        """Ultralytics' resume check, then lock the run directory and clear what killed runs left in it.

        This is where BaseTrainer.__init__ first knows the run's final settings (a resume takes them from the
        checkpoint), and the last point before it writes args.yaml and deletes results.csv there. A resume stays in
        the run directory that holds its checkpoint; the directory must be writable. Only the process that writes
        (rank 0, or the single process) locks; Ultralytics' DDP launcher keeps its lock for its workers. A DDP worker
        joins the process group here, and every rank takes rank 0's directory (`engine.ddp`).
        """
        super().check_resume(overrides)
        if RANK != -1:
            ddp.join_process_group(self, self.args.ddp_timeout)
        resumed = self.args.resume if self.resume else None
        self.args.save_dir, self.run_lock = ddp.lock_run_dir(self.args, resumed)  # BaseTrainer uses it as is
        if RANK in {-1, 0}:
            remove_leftovers(Path(self.args.save_dir))

    def release_run_dir(self) -> None:
        """Let another training use the run directory."""
        if self.run_lock is not None:
            self.run_lock.release()

    def _setup_ddp(self) -> None:
        """A DDP worker joined the process group in `check_resume`: only its device is set here."""
        ddp.set_ddp_device(self)

    def _setup_train(self) -> None:
        """Ultralytics' setup; a CPU model is wrapped in DDP without device ids."""
        with ddp.cpu_ddp_wrapper(self):
            super()._setup_train()

    def get_dataset(self) -> dict:
        """Resolve built-in names, generated and non-YOLO datasets to a YOLO data YAML first."""
        self.args.data = resolve_data(self.args.data)
        runtime.ensure_fonts()  # Ultralytics' dataset check looks for its plotting font
        return super().get_dataset()

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None) -> Any:
        """Ultralytics' dataset; a RetinaNet/ATSS model's training batches also say where each image lies
        (`valid_region`), so anchors in the padding take no loss (MMDetection's valid flags)."""
        dataset = super().build_dataset(img_path, mode, batch)
        dense = isinstance(unwrap_model(self.model), DenseDetectionModel)
        return record_valid_regions(dataset) if mode == "train" and dense else dataset

    def setup_model(self) -> dict | None:
        """Ultralytics' model setup; an MMDetection checkpoint (`model=` or `pretrained=` .pth) gives the run all its
        weights (`engine.mmdet_import`)."""
        start = None if isinstance(self.model, torch.nn.Module) else mmdet_start(self.model, self.args.pretrained)
        if start is None:
            return super().setup_model()
        self.model = self.get_model(cfg=start.yaml, weights=start, verbose=RANK in {-1, 0})
        return None

    def get_model(self, cfg: str | dict | None = None, weights: Any = None, verbose: bool = True) -> Any:
        """Our model for `cfg`; with checkpoint `weights` its backbone reads no ImageNet weights (they are replaced)."""
        model = build_model(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1,
                            backbone_weights=False if weights else self.args.backbone_weights)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
        return model

    def get_validator(self) -> CocoDetectionValidator:
        """Validation with COCOeval's AP table; COCO AP is the fitness that picks best.pt."""
        return CocoDetectionValidator(
            self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks
        )

    def _setup_scheduler(self) -> None:
        """`lr_steps` set: MMDetection's step decay (x0.1 at those epochs); otherwise Ultralytics' schedule."""
        if not self.args.lr_steps:
            return super()._setup_scheduler()
        self.lf = step_lr_lambda(self.args.lr_steps)
        self.scheduler = optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=self.lf)

    def warmup_iterations(self, num_batches: int) -> int:
        """`warmup_iters` > 0 counts warmup in iterations (MMDetection's 500); else Ultralytics' warmup_epochs."""
        return self.args.warmup_iters or super()._get_warmup_iterations(num_batches)

    def _get_warmup_iterations(self, num_batches: int) -> int:
        """Ultralytics' warmup, none when `warmup_ratio` > 0: MMDetection's runs instead (`schedule.linear_warmup`)."""
        return 0 if self.args.warmup_ratio else self.warmup_iterations(num_batches)

    def build_optimizer(self, model: torch.nn.Module, *args: Any, **kwargs: Any) -> optim.Optimizer:
        """Ultralytics' optimizer, its groups made MMDetection's where `nesterov` / `norm_bias_decay` say so."""
        optimizer = super().build_optimizer(model, *args, **kwargs)
        mmdetection_groups_(optimizer, self.args.nesterov, self.args.norm_bias_decay)
        if self.args.norm_bias_decay or not self.args.nesterov:  # Ultralytics' log line counted its own groups
            decayed = sum(len(g["params"]) for g in optimizer.param_groups if g["weight_decay"])
            LOGGER.info(f"optimizer: as MMDetection's, nesterov={self.args.nesterov}, weight decay on {decayed} of "
                        f"{sum(len(g['params']) for g in optimizer.param_groups)} parameters")
        return optimizer

    @property
    def ema(self) -> ModelEMA | None:
        return self._ema

    @ema.setter
    def ema(self, ema: ModelEMA | None) -> None:
        """`ema=false`: every EMA Ultralytics makes (setup, resume, NaN recovery) gets decay 0, so it is the weights as
        trained, and validation, best.pt and last.pt hold those (MMDetection keeps no average)."""
        if ema is not None and not self.args.ema:
            ema.decay = lambda updates: 0.0
        self._ema = ema

    def optimizer_step(self) -> None:
        """Ultralytics' step with a configurable gradient-norm clip (`grad_clip`, 0 = none): a copy of its code, whose
        clip of 10 a call cannot change, pinned by `ultralytics_internals.COPIED_SOURCES`."""
        self.scaler.unscale_(self.optimizer)
        if self.args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.args.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema:
            self.ema.update(self.model)

    def save_metrics(self, metrics: dict) -> None:
        """results.csv: Ultralytics' columns, then the COCO ones, then the epoch's per-level means (pfl/gamma_P3,
        pfl/alpha_P3 when the loss has them, level/pos_ratio_P3, level/cls_loss_P3 ...), also put into `self.metrics`,
        which every Ultralytics logger (TensorBoard, W&B, MLflow, Comet ...) reads at on_fit_epoch_end, next.
        `self.metrics` keeps the last epoch's means when validation is skipped: they are dropped first."""
        levels = self.level_recorder.end_epoch()
        self.metrics = {**{k: v for k, v in self.metrics.items() if not is_level_key(k)}, **levels}
        super().save_metrics(results_row({k: v for k, v in metrics.items() if not is_level_key(k)}, levels, self.csv))

    def plot_metrics(self) -> None:
        """results.png from Ultralytics' own results.csv columns (the per-level ones would break its layout)."""
        if (png := plot_results_without_levels(self.csv)) is not None:
            self.on_plot(png)

    def train(self) -> None:
        """Ultralytics' training, holding the run directory's lock; every checkpoint it reads (weights, resume, final
        validation) is loaded restricted."""
        try:
            with (ddp.launcher_holds_lock(self), ddp.lost_rank_as_one_line(self),
                  checkpoint_loading(self.trust_checkpoint)):
                super().train()
        finally:
            self.release_run_dir()

    def save_model(self) -> bool:
        """Ultralytics' checkpoints, written atomically: a crash or a full disk leaves the previous or the new file.
        A YOLO model is written as Ultralytics' DetectionModel, which plain Ultralytics loads; train_args name backbone
        weights files without their folder."""
        with kept_on_full_disk(self.last), atomic_weights(self), saved_as_ultralytics(self.ema.ema), \
                weights_file_names_only(self.args):
            return super().save_model()

    def final_eval(self) -> None:
        """Strip the optimizer from last.pt/best.pt in copies moved into place when done, validate best.pt, then draw
        the level plots (the last step before Ultralytics' results.png and on_train_end)."""
        with ddp.validation_on_cpu(self):
            if RANK not in {-1, 0}:  # only rank 0 writes
                return super().final_eval()
            with kept_on_full_disk(self.last), atomic_weights(self, copy_existing=True):
                super().final_eval()
        self.plot_levels()

    def plot_levels(self) -> None:
        """The level diagnostics plots from levels.csv (whatever `plots` is: they are the paper's Fig. 2 and 3),
        drawn before on_train_end and registered as the run's plots, so loggers' artifact uploads include them."""
        if (self.save_dir / "levels.csv").is_file():
            for path in plot_run(self.save_dir):
                self.on_plot(path)

    def validate(self) -> tuple[dict | None, float | None]:
        """Ultralytics' validation; its loss is checked against the epoch's training loss for an explosion. With
        `save_best=false` this epoch counts as the best, so best.pt is the last epoch's, which final_eval scores."""
        metrics, fitness = super().validate()
        if not self.args.save_best and fitness is not None:  # best.pt follows the last epoch (MMDetection, papers)
            self.best_fitness = fitness
        if metrics is not None and self.tloss:
            val_loss = sum(v for k, v in metrics.items() if k.startswith("val/"))
            self.divergence.validated(sum(float(v) for v in self.tloss.values()), val_loss)
        return metrics, fitness

    def _handle_nan_recovery(self, epoch: int) -> bool:
        """Ultralytics' NaN/Inf recovery, and the same for an exploded finite loss: reload last.pt and redo the
        epoch (at most 3 times in a row), or stop with one line naming the learning rate."""
        cause = [self.divergence.pop_cause() if RANK in {-1, 0} else None]
        if RANK != -1:
            dist.broadcast_object_list(cause, 0)  # every rank recovers, or stops, together
        if cause[0] is None:
            return super()._handle_nan_recovery(epoch)
        self.nan_recovery_attempts += 1
        where = f"training diverged in epoch {epoch + 1}: {cause[0]}"
        # optimizer=auto has put its choice into args by now: name the optimizer and lr0 that were used
        lr = f"the learning rate is likely too high (lr0={self.args.lr0}, optimizer={self.args.optimizer}): lower lr0"
        if self.nan_recovery_attempts > 3:
            raise DivergenceError(f"{where}, again after 3 reloads of last.pt; {lr}")
        if (epoch == self.start_epoch and not self.resume) or not self.last.is_file():
            raise DivergenceError(f"{where}, before this run saved a last.pt to reload; {lr}")
        LOGGER.warning(f"{where}; reloading last.pt (attempt {self.nan_recovery_attempts}/3)")
        self._model_train()
        ckpt = load_checkpoint(self.last)[1]
        unwrap_model(self.model).load_state_dict(ckpt["ema"].float().state_dict())
        self._load_checkpoint_state(ckpt)  # optimizer, scaler, EMA, best fitness
        self.scheduler.last_epoch = epoch - 1  # the epoch starts again with its own learning rate
        return True

    def resume_training(self, ckpt: dict | None) -> None:
        """Ultralytics' resume (optimizer, EMA, scheduler, epoch), then results.csv cut back to the saved epochs."""
        super().resume_training(ckpt)
        if self.resume and ckpt is not None and RANK in {-1, 0}:
            trim_epochs(self.csv, self.start_epoch)
