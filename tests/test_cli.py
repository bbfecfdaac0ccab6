"""The `umop` / train.py / val.py command line: experiment lookup, key=value grammar, one-line errors."""

import subprocess
import sys

import pytest

from umop_yolo import cli
from umop_yolo import help as umop_help
from umop_yolo.cfg import CFG_DIR, REPO_ROOT, ConfigError, experiment_args
from umop_yolo.cli import main, parse_args
from umop_yolo.engine.run.safe_pickle import CheckpointError
from umop_yolo.errors import InputNotFoundError, UserInputError
from umop_yolo.settings import UMOP_SETTINGS


def run_main(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_key_value_grammar_matches_yolo():
    args = parse_args(["epochs=3", "lr0=0.01", "umop=false", "device=0,1,2,3", "name", "=", "exp"])
    assert args["epochs"] == 3 and args["lr0"] == 0.01 and args["umop"] is False and args["name"] == "exp"
    assert str(args["device"]).replace(" ", "") in {"0,1,2,3", "(0,1,2,3)"}


def test_bare_experiment_name_is_found_in_cfg_and_overrides_win():
    args = experiment_args("yolov8n_umop.yaml", {"epochs": 1, "pfl_delta": 0.25})
    assert args["umop"] is True and args["epochs"] == 1 and args["pfl_delta"] == 0.25
    assert args["data"] == "shapes.yaml"
    assert experiment_args("yolov8n_umop", {}) == experiment_args(str(CFG_DIR / "yolov8n_umop.yaml"), {})


def test_unknown_key_fails_with_one_line_naming_the_closest_valid_key(capsys):
    code, err = run_main(["train", "pfl_detla=0.3"], capsys)
    assert code == 2
    assert err == "umop: error: unknown key 'pfl_detla' in the command line (closest valid key: 'pfl_delta')"


def test_unknown_key_inside_an_experiment_file_names_the_file(tmp_path, capsys):
    bad = tmp_path / "exp.yaml"
    bad.write_text("model: yolov8n.yaml\nepochz: 3\n")
    code, err = run_main(["train", f"cfg={bad}"], capsys)
    assert code == 2 and "'epochz'" in err and str(bad) in err and "'epochs'" in err


def test_missing_cfg_and_missing_weights_are_named(capsys):
    code, err = run_main(["train", "cfg=nope.yaml"], capsys)
    assert code == 2 and "'nope.yaml' not found" in err
    code, err = run_main(["val", "model=missing.pt"], capsys)
    assert code == 2 and "'missing.pt' not found" in err and "never downloaded" in err


@pytest.mark.parametrize(
    "override, key",
    [("pfl_delta=abc", "pfl_delta"), ("pfl_delta=-1", "pfl_delta"), ("pfl_gamma=0", "pfl_gamma"),
     ("lrp_reduction=max", "lrp_reduction"), ("umop=maybe", "umop")],
)
def test_bad_umop_values_fail_before_a_run_directory_exists(override, key, tmp_path, capsys):
    code, err = run_main(["train", override, f"project={tmp_path}", "name=run"], capsys)
    assert code == 2 and err.startswith(f"umop: error: {key}=") and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_unknown_mode_and_help(capsys):
    assert main(["fly"]) == 2
    assert "unknown mode 'fly'" in capsys.readouterr().err
    assert main(["--help"]) == 0


@pytest.mark.slow
def test_entry_points_report_errors_on_one_line():
    for script in ("train.py", "val.py"):
        proc = subprocess.run([sys.executable, str(REPO_ROOT / script), "bogus_key=1"], capture_output=True, text=True)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("umop: error: unknown key 'bogus_key' in the command line")


def test_user_input_errors_are_one_family_of_value_errors():
    assert issubclass(ConfigError, UserInputError) and issubclass(CheckpointError, UserInputError)
    assert issubclass(UserInputError, ValueError) and issubclass(InputNotFoundError, FileNotFoundError)


@pytest.mark.parametrize("error", [ValueError("shapes (3,) and (4,) differ"), FileNotFoundError("cache/x.npy"),
                                   SyntaxError("bad generated code")])
def test_an_internal_error_inside_a_mode_raises_with_its_traceback(error, monkeypatch, tmp_path):
    def broken(args):
        raise error

    weights = tmp_path / "x.pt"
    weights.touch()
    monkeypatch.setitem(cli.MODES, "val", broken)
    with pytest.raises(type(error), match=str(error.args[0]).replace("(", r"\(").replace(")", r"\)")):
        main(["val", f"model={weights}"])


@pytest.mark.parametrize("error", [UserInputError("conf=2 must be in [0, 1]"), InputNotFoundError("'x.jpg' not found"),
                                   CheckpointError("checkpoint 'x.pt' holds no model")])
def test_a_user_input_error_inside_a_mode_is_one_line_and_exit_2(error, monkeypatch, tmp_path, capsys):
    def refuse(args):
        raise error

    weights = tmp_path / "x.pt"
    weights.touch()
    monkeypatch.setitem(cli.MODES, "val", refuse)
    assert run_main(["val", f"model={weights}"], capsys) == (2, f"umop: error: {error}")


def test_convert_mode_writes_a_yolo_dataset_from_coco_json(tmp_path, capsys):
    import json

    import cv2
    import numpy as np
    import yaml

    (tmp_path / "coco" / "images" / "val").mkdir(parents=True)
    (tmp_path / "coco" / "annotations").mkdir()
    cv2.imwrite(str(tmp_path / "coco" / "images" / "val" / "a.jpg"), np.zeros((40, 80, 3), np.uint8))
    instances = {"images": [{"id": 7, "file_name": "a.jpg", "width": 80, "height": 40}],
                 "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
                 "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [8, 4, 16, 8], "iscrowd": 0,
                                  "area": 128}]}
    (tmp_path / "coco" / "annotations" / "instances_val.json").write_text(json.dumps(instances))
    assert main(["convert", "format=coco", f"src={tmp_path / 'coco'}", f"dst={tmp_path / 'out'}"]) == 0
    data = yaml.safe_load(open(capsys.readouterr().out.strip().splitlines()[-1]))
    assert [data["names"][i] for i in sorted(data["names"])] == ["person", "car"]  # sorted by category id
    (label_file,) = (tmp_path / "out" / "labels").rglob("*.txt")
    label = label_file.read_text().split()
    assert label[0] == "1" and [float(v) for v in label[1:]] == [0.2, 0.2, 0.2, 0.2]
    assert data["val_json"] == str(tmp_path / "coco" / "annotations" / "instances_val.json")


@pytest.mark.parametrize("runs_dir", ["runs", "settings-runs", "/abs/runs"])
def test_runs_go_under_ultralytics_runs_dir_setting_unless_project_is_given(monkeypatch, tmp_path, runs_dir):
    import ultralytics.utils

    monkeypatch.setattr(ultralytics.utils, "SETTINGS", {"runs_dir": runs_dir})  # `yolo settings runs_dir=...`
    monkeypatch.chdir(tmp_path)  # a relative runs_dir is taken from here
    weights = tmp_path / "x.pt"
    weights.touch()
    seen = []
    for mode in ("train", "val", "predict"):
        monkeypatch.setitem(cli.MODES, mode, seen.append)
        cli.run(mode, [f"model={weights}"])
    cli.run("val", [f"model={weights}", "project=/elsewhere"])
    expected = str((tmp_path / runs_dir / "detect").resolve())  # an absolute runs_dir replaces tmp_path
    assert [a["project"] for a in seen] == [expected] * 3 + ["/elsewhere"]


def test_ablation_runs_go_under_ultralytics_runs_dir_setting(monkeypatch, tmp_path):
    import ultralytics.utils

    from umop_yolo.ablate import runner

    monkeypatch.setattr(ultralytics.utils, "SETTINGS", {"runs_dir": str(tmp_path / "elsewhere")})
    seen = []

    class Stop(Exception):
        pass

    def stop(out, *args):  # called with the output folder before any training: stop there
        seen.append(out)
        raise Stop

    monkeypatch.setattr(runner, "check_settings", stop)
    for args in ({}, {"project": str(tmp_path / "given")}):
        with pytest.raises(Stop):
            runner.run_ablation({"epochs": 1, **args})
    assert seen == [tmp_path / "elsewhere" / "ablate" / "ablation", tmp_path / "given" / "ablation"]


@pytest.mark.parametrize("argv", [[], ["help"], ["--help"], ["-h"], ["train", "help"], ["detect", "val", "--help"]])
def test_help_prints_the_guide(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == umop_help.guide()


def test_the_guide_has_every_mode_and_every_umop_key_with_its_default_and_help():
    text = " ".join(umop_help.guide().split())
    assert set(umop_help.MODES) == {*cli.MODES, *cli.OWN_KEYS, "cfg", *cli.INFO}
    for mode, (what, example) in umop_help.MODES.items():
        assert f" {mode} {what} " in text and (mode in {"help", "version"} or example in text)
    for key, (default, meaning) in UMOP_SETTINGS.items():
        assert f" {key}={umop_help._value(default)} {' '.join(meaning.split())}" in text


def test_cfg_lists_every_key_in_force(capsys):
    from ultralytics.utils import DEFAULT_CFG_DICT

    assert main(["cfg", "cfg=atss_umop.yaml", "epochs=20", "pfl_delta=0.25"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "# in force for: umop train cfg=atss_umop.yaml epochs=20 pfl_delta=0.25"
    values = dict(line.split(": ", 1) for line in lines[1:])
    assert set(values) >= {*DEFAULT_CFG_DICT, *UMOP_SETTINGS}
    assert values["epochs"] == "20  # default: 100" and values["pfl_delta"] == "0.25  # default: 0.5"
    assert values["lr0"] == "0.000625  # default: 0.01"
    assert values["lr_steps"] == "[13, 18]  # default: []"  # [8, 11] scaled to epochs=20
    assert values["model"].startswith(str(CFG_DIR / "models" / "atss_r50_fpn.yaml"))
    assert values["iou"] == "0.6  # default: 0.7" and values["mosaic"] == "0.0  # default: 1.0"
    assert values["pfl_gamma"] == "2.0" and values["batch"] == "16"  # at the default: no note


def test_cfg_refuses_what_train_would_refuse(capsys):
    code, err = run_main(["cfg", "pfl_delta=-1"], capsys)
    assert code == 2 and err.startswith("umop: error: pfl_delta=-1") and "\n" not in err


def test_version_and_checks_read_only_local_information(capsys, monkeypatch):
    import socket
    from importlib import metadata

    from ultralytics.utils.cpu import CPUInfo

    import umop_yolo

    def no_network(*args):
        raise AssertionError("umop checks went to the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert main(["version"]) == 0 and capsys.readouterr().out.strip() == umop_yolo.__version__
    assert main(["checks"]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    assert rows["umop_yolo"] == umop_yolo.__version__ and rows["ultralytics"] == metadata.version("ultralytics")
    assert {"python", "torch", "torchvision", "pycocotools", "faster-coco-eval", "cpu", "cuda"} <= set(rows)
    assert rows["cpu"].startswith(f"{CPUInfo.name()} (")  # the model, as `lscpu` names it
    monkeypatch.setattr(CPUInfo, "name", staticmethod(lambda: "Test CPU 9000"))
    assert main(["checks"]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    assert rows["cpu"].startswith("Test CPU 9000 (")
    assert run_main(["version", "epochs=1"], capsys) == (2, "umop: error: version takes no arguments, got 'epochs=1'")


def test_task_word_and_leading_dashes_are_accepted_as_yolo_does(monkeypatch, capsys, warnings_seen):
    seen = []
    monkeypatch.setitem(cli.MODES, "train", seen.append)
    assert main(["detect", "train", "--epochs=1", "--pfl_delta", "=", "0.25"]) == 0
    assert seen[0]["epochs"] == 1 and seen[0]["pfl_delta"] == 0.25 and seen[0]["cls"] == 2.0  # the default experiment
    assert any("'--epochs=1' does not need leading dashes" in w for w in warnings_seen)
    assert run_main(["segment", "train"], capsys) == (
        2, "umop: error: task 'segment' is not supported: umop trains and runs detectors (task detect)")
