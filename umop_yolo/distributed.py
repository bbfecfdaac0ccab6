"""DDP functions of the core: nothing here imports Ultralytics or the rest of the package."""

from __future__ import annotations

import torch
from torch import Tensor


def reducing_ranks() -> int:
    """How many ranks `mean_across_ranks` averages over now: the world size while training under DDP, else 1.

    Only while gradients are enabled: validation runs on uneven shards, where a collective would hang.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and torch.is_grad_enabled()):
        return 1
    return dist.get_world_size()


def mean_across_ranks(x: Tensor) -> Tensor:
    """Mean of `x` over DDP ranks (MMDetection's `reduce_mean`), detached; `x` itself outside DDP or without grad."""
    if reducing_ranks() == 1:
        return x
    x = x.detach().clone()
    torch.distributed.all_reduce(x)
    return x / torch.distributed.get_world_size()


def nanmean_across_ranks(x: Tensor) -> Tensor:
    """Mean of `x` over DDP ranks, each element over the ranks where it is not NaN (NaN where it is NaN on all);
    `x` itself outside DDP or without grad. One all-reduce."""
    if reducing_ranks() == 1:
        return x
    valid = ~x.isnan()
    both = torch.stack([torch.where(valid, x, 0.0), valid.to(x.dtype)])
    torch.distributed.all_reduce(both)
    return both[0] / both[1]
