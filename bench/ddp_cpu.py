"""CPU DDP (gloo) cost: training images/s in 1 vs 2 processes at the same global batch, and the collectives per step.

    PYTHONPATH=. python bench/ddp_cpu.py [--model yolov8n.yaml] [--batch 8] [--imgsz 128] [--steps 10] [--warmup 2]
                                         [--threads 0]

Each run is a fresh set of processes (the single process too) splitting the machine's cores evenly (or `--threads`
each); a step is the trainer's: the model's loss times the world size, backward through DistributedDataParallel,
SGD. Synthetic images with two boxes each. Collectives are counted per step in two kinds: the Python-level ones
(torch.distributed functions wrapped: the loss's statistics), and DDP's gradient buckets (a counting comm hook, whose
all-reduces are not counted twice); with umop=true and umop=false. Prints one Markdown table.
"""

import argparse
import os
import platform
import socket
import subprocess
import time
from datetime import timedelta
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_object", "broadcast_object_list", "reduce",
               "gather_object")


def synthetic_batch(images: int, imgsz: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = 2 * images
    boxes = torch.cat([0.3 + 0.4 * torch.rand(n, 2, generator=g), 0.15 + 0.3 * torch.rand(n, 2, generator=g)], 1)
    return {"img": torch.rand(images, 3, imgsz, imgsz, generator=g), "bboxes": boxes,
            "cls": torch.randint(0, 3, (n, 1), generator=g).float(),
            "batch_idx": torch.arange(images).repeat_interleave(2).float()}


def _count_collectives(counts: dict) -> None:
    for name in COLLECTIVES:
        original = getattr(dist, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(*args, **kwargs)

        setattr(dist, name, counted)


def _bucket_hook(state: dict, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    state["buckets"] += 1
    return allreduce_hook(None, bucket)


def _run(rank: int, world: int, port: int, a: argparse.Namespace, umop: bool, out: dict) -> None:
    from ultralytics.utils import DEFAULT_CFG_DICT

    from umop_yolo.engine.build import build_model

    torch.set_num_threads(a.threads or max(1, (os.cpu_count() or 1) // world))
    counts, buckets = {}, {"buckets": 0}
    torch.manual_seed(0)
    model = build_model(a.model, nc=3, verbose=False, backbone_weights=False)
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": umop})
    model.train()
    net = model
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=300))
        net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        net.register_comm_hook(buckets, _bucket_hook)
        _count_collectives(counts)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    per = a.batch // world
    batches = [synthetic_batch(per, a.imgsz, 1000 * step + rank) for step in range(a.warmup + a.steps)]
    for step, batch in enumerate(batches):
        if step == a.warmup:
            if world > 1:
                dist.barrier()
            start, counts_at, buckets_at = time.perf_counter(), dict(counts), buckets["buckets"]
        (net(batch)[0].sum() * world).backward()
        optimizer.step()
        optimizer.zero_grad()
    if world > 1:
        dist.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        counts["all_reduce"] = counts.get("all_reduce", 0) - buckets["buckets"]  # the hook's own all-reduces
        counts_at["all_reduce"] = counts_at.get("all_reduce", 0) - buckets_at
        per_step = {k: (v - counts_at.get(k, 0)) / a.steps for k, v in counts.items() if v > counts_at.get(k, 0)}
        out[(world, umop)] = {"images_s": a.batch * a.steps / seconds, "collectives": per_step,
                              "buckets": (buckets["buckets"] - buckets_at) / a.steps}
    if world > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="yolov8n.yaml")
    p.add_argument("--batch", type=int, default=8, help="global batch")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: the cores / processes)")
    a = p.parse_args()
    out = mp.Manager().dict()
    for umop in (True, False):
        for world in (1, 2):
            mp.spawn(_run, args=(world, _free_port(), a, umop, out), nprocs=world, join=True)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")),
                      platform.processor())
    print(f"{a.model}, global batch {a.batch}, {a.imgsz} px, {a.steps} steps after {a.warmup}, threads per process "
          f"{a.threads or 'cores / processes'}; {os.cpu_count()} CPU cores ({model_name}), load average "
          f"{os.getloadavg()[0]:.1f}, torch {torch.__version__}\n")
    print("| umop | processes | images/s | Python-level collectives per step | DDP gradient buckets per step |")
    print("|---|---|---|---|---|")
    for (world, umop), r in sorted(out.items(), key=lambda kv: (not kv[0][1], kv[0][0])):
        calls = ", ".join(f"{n} {k}" for k, n in sorted(r["collectives"].items())) or "0"
        print(f"| {str(umop).lower()} | {world} | {r['images_s']:.1f} | {calls if world > 1 else '-'} | "
              f"{r['buckets'] if world > 1 else '-'} |")


if __name__ == "__main__":
    main()
