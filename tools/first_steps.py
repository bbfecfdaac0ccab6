"""Fingerprint the default job's first optimizer steps, to show that a refactor changed no number.

    OMP_NUM_THREADS=1 python tools/first_steps.py out.pt [steps=3] [key=value ...]   # python train.py's experiment
    python tools/first_steps.py --compare a.pt b.pt

The first form trains `umop train` (the README's main job, with any overrides) for `steps` optimizer steps in a
temporary run directory and prints, per step, the loss items and a SHA-256 of the weights and of their EMA; `out.pt`
keeps every step's weights. `--compare` prints the largest relative difference of two such files per step (0 where
they are bit-identical). One torch thread: the same commit gives the same fingerprints on the same CPU.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from typing import Any

import torch


def digest(state: dict[str, Any]) -> str:
    """SHA-256 (16 hex digits) of a state dict's tensors, in key order."""
    h = hashlib.sha256()
    for key, value in state.items():
        if torch.is_tensor(value):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(out: str, steps: int, overrides: list[str]) -> None:
    from umop_yolo.cli import main
    from umop_yolo.engine.trainer import UmopTrainer

    step_parent, saved = UmopTrainer.optimizer_step, []

    def counted_step(trainer: UmopTrainer) -> None:
        step_parent(trainer)
        model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        saved.append(state)
        items = {k: round(float(v), 6) for k, v in dict(trainer.tloss or {}).items()} if isinstance(
            trainer.tloss, dict) else trainer.tloss
        print(f"step {len(saved)}: loss {items} weights {digest(state)} ema {digest(trainer.ema.ema.state_dict())}")
        if len(saved) == steps:
            torch.save(saved, out)
            raise SystemExit(0)

    UmopTrainer.optimizer_step = counted_step
    with tempfile.TemporaryDirectory() as tmp:
        main(["train", f"project={tmp}", "name=steps", "plots=false", *overrides])


def compare(a: str, b: str) -> None:
    for i, (sa, sb) in enumerate(zip(torch.load(a), torch.load(b)), 1):
        worst = max(((va.double() - sb[k].double()).abs().max() / va.double().abs().max().clamp_min(1e-30)).item()
                    for k, va in sa.items() if va.is_floating_point())
        print(f"step {i}: largest relative difference {worst:.3g}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--compare"]:
        compare(*args[1:3])
    else:
        n = next((int(a.split("=", 1)[1]) for a in args[1:] if a.startswith("steps=")), 3)
        fingerprint(args[0], n, [a for a in args[1:] if not a.startswith("steps=")])
