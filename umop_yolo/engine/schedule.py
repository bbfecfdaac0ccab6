"""MMDetection-style optimisation for RetinaNet/ATSS in Ultralytics' trainer: step decay, warmup by iterations.

MMDetection trains these detectors with SGD (lr 0.01 per 16 images, momentum 0.9, weight decay 1e-4), a linear warmup
over the first 500 iterations and the learning rate x0.1 at fixed epochs:

    1x = 12 epochs, steps (8, 11);   1.5x = 18 epochs, steps (12, 16);   2x = 24 epochs, steps (16, 22).

Our criterion returns the batch-mean loss x the batch size (Ultralytics' convention), so the gradient Ultralytics
steps with is (images per optimiser step) x MMDetection's. The equivalent Ultralytics settings are therefore

    lr0 = 0.01 / 16 = 0.000625 (per image: the linear scaling rule holds for any batch), nbs = 16,
    weight_decay = 1e-4 x nbs = 0.0016 (Ultralytics multiplies it by batch x accumulate / nbs),
    momentum = warmup_momentum = 0.9, warmup_bias_lr = 0, optimizer = SGD,

plus UMOP settings (checked by `umop_yolo.settings`): `lr_steps` (epochs at which lr x0.1), `warmup_iters`
(iterations of linear warmup), `grad_clip` (max gradient norm; 0 = none, as MMDetection's RetinaNet/ATSS configs), and
where Ultralytics' optimisation differs from MMDetection's:

    warmup_ratio = 0.001    every group's lr rises from 0.001 x lr (Ultralytics: weights from 0, biases from
                            warmup_bias_lr, momentum from warmup_momentum, accumulation from 1);
    nesterov = false        plain momentum (Ultralytics' SGD is Nesterov's);
    norm_bias_decay = true  weight decay on every parameter (Ultralytics spares norm weights and biases);
    ema = false             validation and checkpoints hold the weights as trained (Ultralytics: their EMA);
    save_best = false       best.pt follows the last epoch, whose AP MMDetection reports (Ultralytics: best epoch).

Left at their Ultralytics defaults, these keep YOLO experiments Ultralytics' own.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from torch import optim


def step_lr_lambda(steps: Sequence[int], gamma: float = 0.1) -> Callable[[int], float]:
    """LambdaLR factor of 0-based epoch e: gamma ** (number of steps <= e), MMDetection's StepLrUpdater."""
    steps = sorted(int(s) for s in steps)
    return lambda epoch: gamma ** bisect_right(steps, epoch)



def linear_warmup_factor(iteration: int, warmup_iters: int, ratio: float) -> float:
    """MMDetection's linear warmup: the lr factor at 0-based `iteration`, from `ratio` at 0 to 1 at `warmup_iters`."""
    return 1.0 if iteration >= warmup_iters else ratio + (1 - ratio) * iteration / warmup_iters


def mmdetection_groups_(optimizer: optim.Optimizer, nesterov: bool, norm_bias_decay: bool) -> None:
    """Ultralytics' parameter groups (weight with decay; norm weights and biases without) made MMDetection's in place,
    before the first step: `norm_bias_decay` moves every parameter into the decayed weight group (the others stay,
    empty, so results.csv keeps its lr/pg columns); `nesterov` is set on every SGD group."""
    groups = {g.get("param_group"): g for g in optimizer.param_groups}
    if norm_bias_decay and "weight" in groups:
        for name in ("bn", "bias"):
            if name in groups:
                groups["weight"]["params"] += groups[name]["params"]
                groups[name]["params"] = []
    for group in optimizer.param_groups:
        if "nesterov" in group:
            group["nesterov"] = nesterov


def count_iterations(trainer: Any) -> None:
    """on_train_epoch_start: the iteration this epoch starts at (Ultralytics' `ni`), for `linear_warmup`."""
    trainer.iteration = trainer.epoch * len(trainer.train_loader)


def linear_warmup(trainer: Any) -> None:
    """on_train_batch_start, `warmup_ratio` > 0: MMDetection's linear warmup, every group's lr from warmup_ratio x its
    scheduled lr to that lr over the warmup iterations (Ultralytics' own warmup is off then)."""
    ni, trainer.iteration = trainer.iteration, trainer.iteration + 1
    if not trainer.args.warmup_ratio or ni > (nw := trainer.warmup_iterations(len(trainer.train_loader))):
        return
    factor = linear_warmup_factor(ni, nw, trainer.args.warmup_ratio)
    for group in trainer.optimizer.param_groups:
        group["lr"] = group["initial_lr"] * trainer.lf(trainer.epoch) * factor


# the trainer's callbacks for MMDetection's warmup (`warmup_ratio`)
WARMUP_CALLBACKS = (("on_train_epoch_start", count_iterations), ("on_train_batch_start", linear_warmup))
