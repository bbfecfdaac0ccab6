"""DDP functions of the core: nothing here imports Ultralytics or the rest of the package."""

from __future__ import annotations

import torch
from torch import Tensor


def mean_across_ranks(x: Tensor) -> Tensor:
    """Mean of `x` over DDP ranks (MMDetection's `reduce_mean`), detached; `x` itself outside DDP.

    Only while gradients are enabled: validation runs on uneven shards, where a collective would hang.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and torch.is_grad_enabled()):
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()
