"""One training per run directory: a second training into a locked run stops in one line and changes nothing; a lock
of a killed process does not block; a save removes only its own temporary folder; the next training removes what
killed ones left, and the log names final paths; the package imports where fcntl is unavailable; `umop ablate`
never clears the directory of a run that another training holds."""

import logging
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import tiny_train_args
from umop_yolo.cli import main
from umop_yolo.engine.run.run_lock import RunDirectoryInUseError, RunLock, clear_run_dir
from umop_yolo.engine.run.saving import PARTIAL_PREFIX, atomic_weights

HOLD_LOCK = """
import sys, time
from umop_yolo.engine.run.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under `folder`, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.fixture
def lock_holder():
    """Start a process that holds a run directory's lock (it sleeps until killed); kill it at the end."""
    procs = []

    def start(run_dir: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_run_lock_admits_one_holder_at_a_time(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunDirectoryInUseError, match="in use by another training"):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released on exit
        pass


@pytest.mark.slow
def test_second_training_into_a_locked_run_stops_in_one_line_and_leaves_it_byte_identical(
        tiny_shapes, tmp_path, lock_holder, capsys):
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    (run / "args.yaml").write_text("epochs: 3\n")
    (run / "results.csv").write_text("epoch,time\n1,1.0\n")
    (run / "weights" / "last.pt").write_bytes(b"the first training's weights")
    lock_holder(run)  # the first training, still running
    before = snapshot(run)

    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path, exist_ok=True)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("umop: error: run directory") and "in use" in err[0]
    assert snapshot(run) == before


@pytest.mark.slow
def test_lock_of_a_killed_process_does_not_block(tmp_path, lock_holder):
    holder = lock_holder(tmp_path / "run")
    with pytest.raises(RunDirectoryInUseError):
        RunLock(tmp_path / "run").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(tmp_path / "run"):
        pass


@pytest.mark.slow
def test_package_imports_where_fcntl_is_unavailable(tmp_path):
    """As on Windows: the run lock needs no fcntl, so the package, its API and CLI import without it."""
    probe = ("import sys; sys.modules['fcntl'] = None\n"  # `import fcntl` now raises ImportError
             "import umop_yolo, umop_yolo.cli, umop_yolo.engine.trainer\n"
             "from umop_yolo import UmopYOLO\n"
             "print(UmopYOLO.__name__)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["UmopYOLO"]


def test_a_save_removes_only_its_own_temporary_folder(tmp_path):
    wdir = tmp_path / "weights"
    live = wdir / f"{PARTIAL_PREFIX}another-process"  # another save in progress
    live.mkdir(parents=True)
    (live / "last.pt").write_bytes(b"half written")
    trainer = SimpleNamespace(wdir=wdir, last=wdir / "last.pt", best=wdir / "best.pt")
    with atomic_weights(trainer):
        trainer.last.write_bytes(b"new last")
    assert (live / "last.pt").read_bytes() == b"half written"
    assert sorted(p.name for p in wdir.iterdir()) == [live.name, "last.pt"]


@pytest.mark.slow
def test_next_training_removes_what_killed_saves_left_and_logs_final_paths(tiny_shapes, tmp_path):
    run = tmp_path / "run"
    killed_strip = run / "weights" / f"{PARTIAL_PREFIX}killed-in-final-strip"
    killed_strip.mkdir(parents=True)
    (killed_strip / "last.pt").write_bytes(b"copy of last.pt, half stripped")
    (run / f"{PARTIAL_PREFIX}results.csv").write_text("epoch,time\n")  # a trim_epochs killed before its rename
    from ultralytics.utils import LOGGER

    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        assert main(["train", *tiny_train_args(tiny_shapes, tmp_path, exist_ok=True, val=False)]) == 0
    finally:
        LOGGER.removeHandler(handler)
    assert not [p for p in run.rglob(f"{PARTIAL_PREFIX}*")]
    assert not [line for line in lines if PARTIAL_PREFIX in line]
    assert any(f"Optimizer stripped from {run / 'weights' / 'last.pt'}" in line for line in lines)
    assert any(f"Validating {run / 'weights' / 'best.pt'}" in line for line in lines)


def test_ablation_never_clears_the_run_of_a_training_that_holds_its_lock(tiny_shapes, tmp_path, lock_holder, capsys):
    # a training of this run started by another `umop ablate` and has not saved its first checkpoint yet
    run = tmp_path / "abl" / "baseline-seed0"
    run.mkdir(parents=True)
    (run / "args.yaml").write_text("epochs: 1\n")
    (run / "levels.csv").write_text("step,level\n")
    lock_holder(run)
    before = snapshot(run)

    argv = ["ablate", *tiny_train_args(tiny_shapes, tmp_path, name="abl", imgsz=64), "seeds=[0]", "variants=baseline"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "baseline-seed0' is in use by another training" in err[0]
    assert snapshot(run) == before


def test_clearing_a_run_without_checkpoint_keeps_only_the_lock_file_and_releases_it(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside.txt"
    (run / "weights").mkdir(parents=True)
    (run / "results.csv").write_text("epoch\n")
    (run / "weights" / "best.pt").write_bytes(b"x")
    outside.write_text("not the run's")
    (run / "link.txt").symlink_to(outside)

    clear_run_dir(run)
    assert [p.name for p in run.iterdir()] == [".lock"]
    assert outside.read_text() == "not the run's"  # a link is removed, never followed
    with RunLock(run):  # free again for the training that follows
        pass
