"""PFL under torch.distributed (2 CPU processes, gloo): every rank uses the same C_l, by default the mean of the ranks'
C_l (the authors' code), with sync="global" the global batch's; validation never syncs."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from umop_yolo.pfl import ProgressiveFocalLoss

pytestmark = pytest.mark.slow  # starts two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_inputs(rank: int):
    # rank 0: level 0 poorly classified, level 1 without positives; rank 1: both levels well classified
    logits = [torch.full((4, 2), -3.0 if rank == 0 else 1.0), torch.full((4, 2), 2.0)]
    targets = [torch.ones(4, 2), torch.zeros(4, 2) if rank == 0 else torch.ones(4, 2)]
    return logits, targets


def _worker(rank: int, port: int, sync: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    pfl = ProgressiveFocalLoss(gamma=2.0, delta=1.9, w=0.05, sync=sync)
    logits, targets = _rank_inputs(rank)
    _, train_stats = pfl(logits, targets, 1.0)
    with torch.no_grad():  # validation: local statistic, no collective (uneven shards would hang)
        _, val_stats = pfl(logits, targets, 1.0)
    out[rank] = (train_stats["statistic"], val_stats["statistic"])
    dist.destroy_process_group()


@pytest.mark.parametrize("sync", ["ranks", "global"])
def test_ranks_share_one_statistic_and_validation_stays_local(sync):
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), sync, out), nprocs=2, join=True)
    pfl = ProgressiveFocalLoss(gamma=2.0, delta=1.9, w=0.05)
    local = [pfl.level_params(*_rank_inputs(r))[2] for r in (0, 1)]
    both = [[torch.cat(level) for level in zip(*(_rank_inputs(r)[i] for r in (0, 1)))] for i in (0, 1)]
    one_process = pfl.level_params(*both)[2]  # one process with the global batch
    rank_mean = (local[0] + local[1]) / 2  # the authors' code: each rank's C_l (2 without positives), averaged
    assert not torch.allclose(one_process, rank_mean)  # the two rules differ on these inputs
    for rank in (0, 1):
        torch.testing.assert_close(out[rank][0], rank_mean if sync == "ranks" else one_process)
        torch.testing.assert_close(out[rank][1], local[rank])
    assert not torch.allclose(local[0], local[1])  # the ranks really did disagree before averaging
