"""End-to-end training through the CLI: per-level PFL columns, checkpoints keep UMOP settings, offline, DDP launch."""

import csv
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_train_args
from umop_yolo.cfg import REPO_ROOT
from umop_yolo.cli import main
from umop_yolo.data.resolve import resolve_data


def read_csv(path):
    with open(path) as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_training_logs_gamma_and_alpha_per_level_and_checkpoints_keep_umop_settings(tiny_shapes, tmp_path):
    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path, pfl_delta=0.4, epochs=2)]) == 0
    run = tmp_path / "run"
    rows = read_csv(run / "results.csv")
    assert len(rows) == 2
    for level in ("P3", "P4", "P5"):
        gamma, alpha = float(rows[-1][f"pfl/gamma_{level}"]), float(rows[-1][f"pfl/alpha_{level}"])
        assert 1.6 <= gamma <= 2.4 and abs(alpha * gamma - 0.5) < 0.05  # alpha_l = w / gamma_l per step
    ckpt = torch.load(run / "weights" / "last.pt", weights_only=False)
    assert ckpt["train_args"]["umop"] is True and ckpt["train_args"]["pfl_delta"] == 0.4
    assert type(ckpt["model"]).__name__ == "DetectionModel"  # the model, as Ultralytics' own class (portable)


@pytest.mark.slow
def test_stock_run_has_no_pfl_columns(tiny_shapes, tmp_path):
    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path, umop=False)]) == 0
    assert not any(k.startswith("pfl/") for k in read_csv(tmp_path / "run" / "results.csv")[0])


BLOCK_NETWORK = """
import socket
def _refuse(*args, **kwargs):
    with open({log!r}, "a") as f:
        f.write(repr(args[:2]) + "\\n")
    raise OSError("network disabled by test")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
"""


@pytest.mark.slow
def test_training_runs_with_the_network_blocked_and_never_tries_it(tiny_shapes, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    log = tmp_path / "attempts.log"
    (site / "sitecustomize.py").write_text(BLOCK_NETWORK.format(log=str(log)))
    env = {**os.environ, "PYTHONPATH": str(site), "YOLO_CONFIG_DIR": str(tmp_path / "ycfg")}
    for key in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL"):
        env.pop(key, None)  # the entry point must set them itself
    cmd = [sys.executable, str(REPO_ROOT / "train.py"), *tiny_train_args(tiny_shapes, tmp_path, plots=True)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "weights" / "best.pt").is_file()
    assert not log.exists(), log.read_text()


@pytest.mark.slow
def test_generated_ddp_worker_script_trains_with_our_trainer(tiny_shapes, tmp_path):
    """What `device=0,1,2,3` runs in every worker, executed here in one CPU process (no GPUs to launch on)."""
    script = tmp_path / "make_ddp.py"
    script.write_text(textwrap.dedent(f"""
        from ultralytics.utils.dist import generate_ddp_file
        from umop_yolo.cli import parse_args
        from umop_yolo.cfg import experiment_args
        from umop_yolo.engine.trainer import UmopTrainer
        args = experiment_args(None, parse_args({tiny_train_args(tiny_shapes, tmp_path, name='ddp')!r}))
        print(generate_ddp_file(UmopTrainer(overrides=args)))
    """))
    made = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    worker = made.stdout.strip().splitlines()[-1]
    run = subprocess.run([sys.executable, worker], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "ddp" / "weights" / "last.pt").is_file()
    assert "pfl/gamma_P3" in read_csv(tmp_path / "ddp" / "results.csv")[0]


@pytest.mark.slow
def test_torchrun_worker_joins_with_the_global_world_size(tiny_shapes, tmp_path):
    """Two "nodes" of one process each (LOCAL_WORLD_SIZE 1): each worker counts the job's 2 ranks, not its node's."""
    code = textwrap.dedent(f"""
        from umop_yolo.engine.trainer import UmopTrainer
        t = UmopTrainer(overrides=dict(model="yolov8n.yaml", data={str(tiny_shapes)!r}, device="cpu",
                                       project={str(tmp_path)!r}, name="tr"))
        print(t.world_size, t.ddp, t.save_dir)
    """)
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": "0",
                                   "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
             for rank in (0, 1)]
    try:
        outs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
        assert out.split()[-3:] == ["2", "False", str(tmp_path / "tr")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_val_predict_export_commands_on_a_trained_checkpoint(tiny_shapes, tmp_path):
    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path)]) == 0
    weights = tmp_path / "run" / "weights" / "best.pt"
    val_dir, pred_dir = tmp_path / "val", tmp_path / "pred"
    assert main(["val", f"model={weights}", f"data={tiny_shapes}", "imgsz=128", "batch=4", "device=cpu",
                 f"project={val_dir}", "name=v", "plots=false"]) == 0
    assert (val_dir / "v" / "coco_metrics.md").is_file()
    data = yaml.safe_load(open(resolve_data(tiny_shapes)))
    source = Path(data["path"]) / data["val"]
    assert main(["predict", f"model={weights}", f"source={source}", "imgsz=128", "device=cpu", f"project={pred_dir}",
                 "name=p", "save_txt=true", "save_json=true", "conf=0.001"]) == 0
    assert len(list((pred_dir / "p").glob("*.jpg"))) == 8
    assert (pred_dir / "p" / "predictions.json").is_file()
    assert main(["export", f"model={weights}", "format=torchscript", "imgsz=128", "device=cpu"]) == 0
    assert weights.with_suffix(".torchscript").is_file()


@pytest.mark.slow
def test_mmdetection_step_schedule_warmup_iters_and_grad_clip_reach_the_optimizer(tiny_shapes, tmp_path):
    args = tiny_train_args(tiny_shapes, tmp_path, epochs=3, lr_steps=[1, 2], warmup_iters=1, grad_clip=0.0,
                           optimizer="SGD", lr0=0.01, val=False)
    assert main(["train", *args]) == 0
    lrs = [float(row["lr/pg0"]) for row in read_csv(tmp_path / "run" / "results.csv")]
    assert lrs == pytest.approx([0.01, 0.001, 0.0001])  # x0.1 at epochs 1 and 2, warmup over after 1 iteration


def test_bad_schedule_settings_name_the_key(capsys):
    assert main(["train", "lr_steps=[5]", "epochs=3"]) == 2
    assert "lr_steps=[5]" in capsys.readouterr().err
