"""MMDetection-style optimisation for RetinaNet/ATSS in Ultralytics' trainer: step decay, warmup by iterations.

MMDetection trains these detectors with SGD (lr 0.01 per 16 images, momentum 0.9, weight decay 1e-4), a linear warmup
over the first 500 iterations and the learning rate x0.1 at fixed epochs:

    1x = 12 epochs, steps (8, 11);   1.5x = 18 epochs, steps (12, 16);   2x = 24 epochs, steps (16, 22).

Our criterion returns the batch-mean loss x the batch size (Ultralytics' convention), so the gradient Ultralytics
steps with is (images per optimiser step) x MMDetection's. The equivalent Ultralytics settings are therefore

    lr0 = 0.01 / 16 = 0.000625 (per image: the linear scaling rule holds for any batch), nbs = 16,
    weight_decay = 1e-4 x nbs = 0.0016 (Ultralytics multiplies it by batch x accumulate / nbs),
    momentum = warmup_momentum = 0.9, warmup_bias_lr = 0, optimizer = SGD,

plus the three settings checked here: `lr_steps` (epochs at which lr x0.1), `warmup_iters` (iterations of linear
warmup) and `grad_clip` (max gradient norm; 0 = none, as MMDetection's RetinaNet/ATSS configs).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from umop_yolo.errors import UserInputError


def step_lr_lambda(steps: Sequence[int], gamma: float = 0.1) -> Callable[[int], float]:
    """LambdaLR factor of 0-based epoch e: gamma ** (number of steps <= e), MMDetection's StepLrUpdater."""
    steps = sorted(int(s) for s in steps)
    return lambda epoch: gamma ** bisect_right(steps, epoch)


def check_schedule(epochs: int, lr_steps: Any, warmup_iters: Any, grad_clip: Any) -> None:
    """Raise ValueError naming the setting if `lr_steps`, `warmup_iters` or `grad_clip` is malformed."""
    if not isinstance(lr_steps, (list, tuple)) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in lr_steps):
        raise UserInputError(f"lr_steps={lr_steps!r} must be a list of epoch numbers, e.g. [8, 11]")
    if list(lr_steps) != sorted(set(lr_steps)) or any(not 0 < s < epochs for s in lr_steps):
        raise UserInputError(
            f"lr_steps={list(lr_steps)} must increase strictly within 1..{epochs - 1} (epochs={epochs})"
        )
    if isinstance(warmup_iters, bool) or not isinstance(warmup_iters, int) or warmup_iters < 0:
        raise UserInputError(f"warmup_iters={warmup_iters!r} must be an integer >= 0 (0: use warmup_epochs)")
    if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)) or grad_clip < 0:
        raise UserInputError(f"grad_clip={grad_clip!r} must be a number >= 0 (0: no clipping)")
