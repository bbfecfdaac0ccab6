"""The real trainer in 2 CPU processes (gloo), by torchrun and by Ultralytics' own launcher: one new run directory
beside an existing run of the same name, one results.csv row per epoch, the final validation on the CPU."""

import sys

import pytest
from ddp_launch import ROOT, run_group, torchrun
from test_reliability_run_dir import snapshot

from conftest import read_csv, tiny_train_args

pytestmark = pytest.mark.slow  # trains in two processes


def _existing_run(project):
    old = project / "run"
    (old / "weights").mkdir(parents=True)
    (old / "weights" / "best.pt").write_bytes(b"an older run's model")
    (old / "results.csv").write_text("epoch,metrics/mAP50-95(B)\n1,0.5\n")
    return old


def _check_new_run(project, old, before, epochs):
    assert snapshot(old) == before  # the older run is untouched
    assert sorted(p.name for p in project.iterdir()) == ["run", "run-2"]
    new = project / "run-2"
    assert [int(float(r["epoch"])) for r in read_csv(new / "results.csv")] == list(range(1, epochs + 1))
    assert (new / "weights" / "last.pt").is_file() and (new / "coco_metrics.csv").is_file()  # final validation ran


def test_torchrun_two_processes_train_into_one_new_directory(tiny_shapes, tmp_path):
    project = tmp_path / "runs"
    old = _existing_run(project)
    before = snapshot(old)
    args = tiny_train_args(tiny_shapes, project, epochs=2, imgsz=64, batch=4, val=False)
    result = torchrun(args, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    _check_new_run(project, old, before, epochs=2)


def test_ultralytics_launcher_trains_on_cpu_holding_the_lock(tiny_shapes, tmp_path):
    """Ultralytics' launcher (normally for device=0,1): its temporary script, torch.distributed.run, our workers."""
    project = tmp_path / "runs"
    old = _existing_run(project)
    before = snapshot(old)
    args = dict(a.split("=", 1) for a in tiny_train_args(tiny_shapes, project, imgsz=64, batch=4))
    marker = tmp_path / "lock_seen_by_rank_0"
    script = (
        "from umop_yolo.cli import parse_args\n"
        "from umop_yolo.engine.run.run_lock import RunLock, RunDirectoryInUseError\n"
        "from umop_yolo.engine.trainer import UmopTrainer\n"
        "def probe(trainer):  # in the workers\n"
        "    from ultralytics.utils import RANK\n"
        f"    open({str(tmp_path)!r} + f'/last_of_rank_{{RANK}}', 'w').write(str(trainer.last))\n"
        "    if RANK == 0:\n"
        "        try:\n"
        "            RunLock(trainer.save_dir).acquire()\n"
        "        except RunDirectoryInUseError:\n"
        f"            open({str(marker)!r}, 'w').write(f'launcher holds it: {{trainer.run_lock is None}}')\n"
        f"t = UmopTrainer(overrides=parse_args({[f'{k}={v}' for k, v in args.items()]!r}))\n"
        "t.add_callback('on_train_start', probe)\n"
        "t.world_size, t.ddp = 2, True  # what device=0,1 sets; the workers train on device=cpu\n"
        "t.train()\n"
        "RunLock(t.save_dir).acquire()  # released once the workers are done\n"
    )
    result = run_group([sys.executable, "-c", script], ROOT, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:]
    _check_new_run(project, old, before, epochs=1)
    assert marker.read_text() == "launcher holds it: True"  # no gap: the launching process kept the lock
    for rank in (0, 1):  # the checkpoint a NaN/divergence recovery reloads (rank 0 decides for all)
        assert (tmp_path / f"last_of_rank_{rank}").read_text() == str(project / "run-2" / "weights" / "last.pt")
