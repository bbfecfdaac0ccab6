"""Loss explosions that Ultralytics' NaN/Inf check misses.

Ultralytics redoes an epoch from last.pt only when the last step's loss or the fitness is NaN/Inf. A learning rate
far too high (`lr0=1` with SGD or Adam) instead drives the loss to finite values like 1e30: the run ends with exit 0
and a model that predicts nothing. Two symptoms are watched, both relative so that no loss scale is assumed:

* the training step loss above FACTOR x the median of the last WINDOW normal steps, for PATIENCE steps in a row;
* the validation loss (sum of its items) above FACTOR x the epoch's training loss, or not finite. In the lr0=1 runs
  this is the first and often the only sign: in training mode batch statistics keep the loss near normal while the
  evaluated (EMA, BatchNorm running statistics) model already gives val cls losses of 1e18 and more.

The trainer reloads last.pt as the NaN path does and stops after repeated failures (`DivergenceError`).
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from umop_yolo.errors import UserInputError

# Healthy step losses stay within ~10x of their recent median (batch composition, warmup, closing mosaic); the
# exploding runs measured pass 1e3x within a few steps and go on to 1e6 and beyond. So 1e3 leaves two orders of
# magnitude of margin on both sides.
FACTOR = 1e3
WINDOW = 50  # steps in the running median: ignores single spikes, follows the slow decline of normal training
WARM_STEPS = 10  # the median of fewer steps is too noisy to judge against
PATIENCE = 3  # consecutive exploded steps: one odd batch is no divergence
# Losses below this count as this much, so that a loss near 0 (a memorised tiny dataset, no targets) cannot make a
# modest loss look like a 1e3x jump. Loss items are per-image means of gained terms, of order 1-10 when healthy.
LOSS_FLOOR = 1.0


class DivergenceError(UserInputError):
    """Training diverged and recovery failed; the message names the likely cause (the learning rate)."""


class DivergenceMonitor:
    """Per-step and per-validation explosion checks; `pop_cause()` at the end of each epoch says what exploded."""

    def __init__(self) -> None:
        self.history: deque[float] = deque(maxlen=WINDOW)  # recent normal step losses
        self.run = 0  # consecutive exploded steps
        self.cause: str | None = None

    def step(self, loss: float) -> None:
        """One training step's loss. Non-finite losses are left to Ultralytics' NaN/Inf recovery."""
        if self.cause is not None or not math.isfinite(loss):
            return
        if len(self.history) >= WARM_STEPS:
            median = statistics.median(self.history)
            if loss > FACTOR * max(median, LOSS_FLOOR):
                self.run += 1
                if self.run >= PATIENCE:
                    self.cause = (f"the training loss exploded to {loss:.3g} against a running median of "
                                  f"{median:.3g}, {self.run} steps in a row")
                return  # exploded steps stay out of the median
        self.run = 0
        self.history.append(loss)

    def validated(self, train_loss: float, val_loss: float) -> None:
        """An epoch's validation loss against its training loss (both sums of the loss items)."""
        if self.cause is None and (not math.isfinite(val_loss) or val_loss > FACTOR * max(train_loss, LOSS_FLOOR)):
            self.cause = f"the validation loss exploded to {val_loss:.3g} (training loss {train_loss:.3g})"

    def pop_cause(self) -> str | None:
        """What exploded since the last call (None if nothing), and start over for the next epoch."""
        cause, self.cause, self.run = self.cause, None, 0
        return cause
