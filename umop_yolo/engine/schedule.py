"""MMDetection-style optimisation for RetinaNet/ATSS in Ultralytics' trainer: step decay, warmup by iterations.

MMDetection trains these detectors with SGD (lr 0.01 per 16 images, momentum 0.9, weight decay 1e-4), a linear warmup
over the first 500 iterations and the learning rate x0.1 at fixed epochs:

    1x = 12 epochs, steps (8, 11);   1.5x = 18 epochs, steps (12, 16);   2x = 24 epochs, steps (16, 22).

Our criterion returns the batch-mean loss x the batch size (Ultralytics' convention), so the gradient Ultralytics
steps with is (images per optimiser step) x MMDetection's. The equivalent Ultralytics settings are therefore

    lr0 = 0.01 / 16 = 0.000625 (per image: the linear scaling rule holds for any batch), nbs = 16,
    weight_decay = 1e-4 x nbs = 0.0016 (Ultralytics multiplies it by batch x accumulate / nbs),
    momentum = warmup_momentum = 0.9, warmup_bias_lr = 0, optimizer = SGD,

plus three UMOP settings (checked by `umop_yolo.settings.check_schedule`): `lr_steps` (epochs at which lr x0.1),
`warmup_iters` (iterations of linear warmup) and `grad_clip` (max gradient norm; 0 = none, as MMDetection's
RetinaNet/ATSS configs).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence


def step_lr_lambda(steps: Sequence[int], gamma: float = 0.1) -> Callable[[int], float]:
    """LambdaLR factor of 0-based epoch e: gamma ** (number of steps <= e), MMDetection's StepLrUpdater."""
    steps = sorted(int(s) for s in steps)
    return lambda epoch: gamma ** bisect_right(steps, epoch)

