"""Safe checkpoint loading and no install at run time.

Checkpoints are pickles: unpickling can call anything the file names. Every load from our entry points goes through
torch's weights-only unpickler with our allowlist (`umop_yolo.engine.run.safe_pickle`) unless trust_checkpoint=true,
also under ULTRALYTICS_SAFE_LOAD=1, and a missing module is an error, never a pip install.
"""

import collections
import copyreg
import importlib.util
import operator
import os
import subprocess
import sys
import textwrap
import types
import zipfile

import cv2
import numpy as np
import pytest
import torch
from ultralytics.nn import tasks

from conftest import tiny_train_args
from umop_yolo.cfg import MODELS_DIR
from umop_yolo.cli import main, run
from umop_yolo.engine.api import UmopYOLO
from umop_yolo.engine.build import build_model
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.run.checkpoint import CheckpointError, checkpoint_loading, load_file
from umop_yolo.engine.run.safe_pickle import MissingGlobalError, UnsafeCheckpointError


class RunsCommand:
    """Pickles as a call to os.system: what a malicious checkpoint contains."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class Calls:
    """Pickles as a call to `func(*args)`: what a crafted checkpoint asks the unpickler to run."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class CallsModelInit:
    """Pickles as a call to our model class with a YAML whose activation Ultralytics would eval()."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from umop_yolo.engine.model import UmopDetectionModel

        cfg = {"nc": 1, "activation": f"__import__('os').system('touch {self.marker}')",
               "backbone": [[-1, 1, "Conv", [8, 3, 2]]], "head": [[-1, 1, "Conv", [8, 3, 2]]]}
        return UmopDetectionModel, (cfg,)


@pytest.fixture(scope="module")
def small_model():
    return build_model("yolov8n.yaml", nc=2, verbose=False)


def save(path, obj):
    torch.save(obj, path)
    return path


def crafted(path, stream: bytes):
    """A torch.save zip archive whose pickle is `stream`: opcodes no Python object pickles to."""
    torch.save({}, path)
    with zipfile.ZipFile(path) as z:
        records = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in records.items():
            z.writestr(name, stream if name.endswith("/data.pkl") else data)
    return path


def test_pickled_os_system_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = save(tmp_path / "evil.pt", {"ema": RunsCommand(f"touch {marker}"), "train_args": {}})
    with pytest.raises(UnsafeCheckpointError, match=r"refers to '(posix|nt)\.system'"):
        load_file(evil)
    assert not marker.exists()


@pytest.mark.parametrize("mode", ["train", "val", "predict", "export"])
def test_every_command_refuses_a_malicious_checkpoint_with_one_line(mode, tmp_path, tiny_shapes, capsys):
    marker = tmp_path / "pwned"
    evil = save(tmp_path / "evil.pt", {"ema": RunsCommand(f"touch {marker}"), "train_args": {}})
    extra = tiny_train_args(tiny_shapes, tmp_path) if mode == "train" else [f"data={tiny_shapes}"] * (mode == "val")
    assert main([mode, *extra, f"model={evil}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"umop: error: checkpoint '{evil}' refers to ") and "system'" in err and "\n" not in err
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_resume_refuses_a_malicious_checkpoint(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = save(tmp_path / "last.pt", {"ema": RunsCommand(f"touch {marker}"), "epoch": 0})
    assert main(["train", "resume=true", f"model={evil}"]) == 2
    assert "system'" in capsys.readouterr().err and not marker.exists()


def test_calling_an_allowed_model_class_is_refused(tmp_path):
    """Model classes may be re-created (cls.__new__ + state) but not called: __init__ parses a YAML and may eval."""
    marker = tmp_path / "pwned"
    evil = save(tmp_path / "evil.pt", {"ema": CallsModelInit(marker)})
    with pytest.raises(UnsafeCheckpointError, match="calls umop_yolo.engine.model.UmopDetectionModel"):
        load_file(evil)
    assert not marker.exists()


@pytest.mark.parametrize("func, args, named", [
    (eval, ("__import__('os').system('touch {marker}')",), "builtins.eval"),
    (torch.hub.load_state_dict_from_url, ("http://example.com/{marker}.pth",), "torch.hub.load_state_dict_from_url"),
])
def test_crafted_calls_are_refused_before_they_run(func, args, named, tmp_path):
    marker = tmp_path / "pwned"
    evil = save(tmp_path / "evil.pt", {"ema": Calls(func, *(a.format(marker=marker) for a in args))})
    with pytest.raises(UnsafeCheckpointError, match=f"refers to '{named}'"):
        load_file(evil)
    assert not marker.exists()


@pytest.mark.parametrize("func, args, named", [
    (importlib.util.find_spec, ("os",), "importlib.util.find_spec"),
    (operator.truth, (torch.nn.Identity(),), "operator.truth"),
    (operator.getitem, (torch.nn.Sequential(torch.nn.Identity()), 0), "operator.getitem"),
    (copyreg._reconstructor, (collections.OrderedDict, object, None), "copyreg._reconstructor"),
])
def test_the_calls_that_check_for_umop_yolo_do_only_that(func, args, named, tmp_path):
    """Our models pickle a check for umop_yolo made of these calls (`engine.needs_umop`): allowed for nothing else."""
    evil = save(tmp_path / "evil.pt", {"ema": Calls(func, *args)})
    with pytest.raises(UnsafeCheckpointError, match=f"calls {named} other than to check for umop_yolo"):
        load_file(evil)


def test_calling_any_model_layer_is_refused(tmp_path):
    """A layer's constructor may read files or fetch weights (ResNet's `pretrained`): layers are only re-created."""
    from umop_yolo.nn.resnet import ResNet

    evil = save(tmp_path / "evil.pt", {"ema": Calls(ResNet, 18, 1, 64, 1, True, (), "http://example.com/r18.pth")})
    with pytest.raises(UnsafeCheckpointError, match="calls umop_yolo.nn.resnet.ResNet while loading"):
        load_file(evil)


def test_setting_attributes_of_a_class_is_refused(tmp_path):
    stream = b"\x80\x02cultralytics.nn.modules.conv\nConv\n}b."  # GLOBAL Conv, EMPTY_DICT, BUILD: patch the class
    from ultralytics.nn.modules.conv import Conv

    before = dict(vars(Conv))
    with pytest.raises(UnsafeCheckpointError, match=r"refused by torch's weights-only unpickler \(Can only build"):
        load_file(crafted(tmp_path / "patch.pt", stream))
    assert dict(vars(Conv)) == before


def test_model_activation_that_would_be_evaluated_is_refused(tmp_path, tiny_shapes, capsys):
    marker = tmp_path / "pwned"
    model = build_model("yolov8n.yaml", nc=2, verbose=False)
    model.yaml["activation"] = f"__import__('os').system('touch {marker}')"  # eval()ed when training rebuilds it
    path = save(tmp_path / "act.pt", {"ema": model, "train_args": {}})
    with pytest.raises(UnsafeCheckpointError, match="activation"):
        load_file(path)
    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path), f"model={path}"]) == 2
    assert "activation" in capsys.readouterr().err and not marker.exists()
    model.yaml["activation"] = "nn.LeakyReLU(0.1)"
    assert isinstance(load_file(save(tmp_path / "ok.pt", {"ema": model}))["ema"], torch.nn.Module)


@pytest.mark.parametrize("detector", ["retinanet_r18_fpn", "atss_r18_fpn"])
def test_dense_model_checkpoints_load_restricted(detector, tmp_path):
    model = DenseDetectionModel(MODELS_DIR / f"{detector}.yaml", nc=3, verbose=False)
    ckpt = load_file(save(tmp_path / "m.pt", {"ema": model.half(), "train_args": {"umop": True}}))
    assert type(ckpt["ema"]) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(ckpt["ema"].state_dict().values(), model.state_dict().values()))


def test_other_globals_need_trust_checkpoint(tmp_path, small_model, capsys):
    from fractions import Fraction

    path = save(tmp_path / "odd.pt", {"ema": small_model, "train_args": {"lr0": Fraction(1, 100)}})
    with pytest.raises(UnsafeCheckpointError, match="'fractions.Fraction'.*trust_checkpoint=true"):
        load_file(path)
    assert load_file(path, trusted=True)["train_args"]["lr0"] == Fraction(1, 100)
    assert UmopYOLO(str(path), trust_checkpoint=True).overrides["trust_checkpoint"] is True
    with pytest.raises(UnsafeCheckpointError):
        UmopYOLO(str(path))
    assert main(["val", f"model={path}", "trust_checkpoint=maybe"]) == 2
    assert "trust_checkpoint='maybe' must be true or false" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, problem",
    [(b"", "is not readable"), (b"not a checkpoint at all", "is not readable"), ("truncate", "is not readable"),
     ("plain dict", "holds no model")],
)
def test_damaged_checkpoints_are_one_line_errors(content, problem, tmp_path, small_model, capsys):
    good = save(tmp_path / "good.pt", {"ema": small_model})
    bad = tmp_path / "bad.pt"
    if content == "truncate":
        content = good.read_bytes()[: good.stat().st_size // 2]
    elif content == "plain dict":
        content = save(tmp_path / "dict.pt", {"epoch": 3}).read_bytes()
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match=problem):
        load_file(bad)
    assert main(["val", f"model={bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"umop: error: checkpoint '{bad}' {problem}") and "\n" not in err


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        load_file(path)


def test_routing_is_scoped_and_restores_ultralytics(small_model, tmp_path):
    original = tasks.torch_load
    path = save(tmp_path / "m.pt", {"ema": small_model})
    with checkpoint_loading():
        assert tasks.torch_load is not original
        with checkpoint_loading(trusted=True):
            model, _ = tasks.load_checkpoint(path)
        assert tasks.torch_load is not original
    assert tasks.torch_load is original and isinstance(model, torch.nn.Module)


def test_missing_module_under_an_allowed_package_is_named(tmp_path):
    ghost = types.ModuleType("umop_yolo.ghost")
    layer = type("Layer", (torch.nn.Module,), {"__module__": "umop_yolo.ghost"})
    ghost.Layer = layer
    sys.modules["umop_yolo.ghost"] = ghost
    try:
        path = save(tmp_path / "ghost.pt", {"ema": layer()})
    finally:
        del sys.modules["umop_yolo.ghost"]
    with pytest.raises(MissingGlobalError, match="needs 'umop_yolo.ghost.Layer', which this installation"):
        load_file(path)


NO_INSTALL = """
import subprocess

_popen_init = subprocess.Popen.__init__

def _refuse_installs(self, args, *rest, **kwargs):
    if "install" in repr(args):
        with open({log!r}, "a") as f:
            f.write(repr(args) + "\\n")
        raise OSError("installs disabled by test")
    _popen_init(self, args, *rest, **kwargs)

subprocess.Popen.__init__ = _refuse_installs
"""

FRESH_LOAD = """
import pickle, sys
from ultralytics.utils import checks
from umop_yolo.engine.api import UmopYOLO
for trust in (False, True):
    try:
        UmopYOLO({path!r}, trust_checkpoint=trust)
    except ValueError as e:
        print("ERROR", e)
print("AUTOINSTALL", checks.AUTOINSTALL)
"""


@pytest.mark.slow
def test_missing_module_never_triggers_an_install(tmp_path):
    """In a fresh interpreter: `UmopYOLO` turns Ultralytics' AUTOINSTALL off, and a checkpoint naming a module that
    is not installed fails with one line, trusted or not, without running pip (or anything)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "vanished_pkg_umop.py").write_text("import torch\nclass Layer(torch.nn.Module):\n    pass\n")
    make = f"import sys, torch; sys.path.insert(0, {str(src)!r}); import vanished_pkg_umop as v; " \
           f"torch.save({{'ema': v.Layer()}}, {str(tmp_path / 'needs.pt')!r})"
    subprocess.run([sys.executable, "-c", make], check=True, timeout=120)

    site, log = tmp_path / "site", tmp_path / "subprocess.log"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_INSTALL.format(log=str(log)))
    env = {k: v for k, v in os.environ.items() if k not in {"YOLO_AUTOINSTALL", "YOLO_OFFLINE"}}
    code = textwrap.dedent(FRESH_LOAD.format(path=str(tmp_path / "needs.pt")))
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(site)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert "AUTOINSTALL False" in lines
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 2
    assert "refers to 'vanished_pkg_umop.Layer'" in errors[0]
    assert "needs the module 'vanished_pkg_umop', which is not installed" in errors[1]
    assert not log.exists(), log.read_text()


@pytest.mark.slow
def test_importing_the_package_patches_nothing_in_ultralytics():
    code = ("from ultralytics.nn import tasks; before = tasks.torch_load; "
            "import umop_yolo.engine.api, umop_yolo.engine.trainer, umop_yolo.cli; print(tasks.torch_load is before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr[-2000:]


def test_restricted_loading_keeps_plain_data(tmp_path, small_model):
    from ultralytics.utils import IterableSimpleNamespace

    data = {"a": [1, 2.5, "x", None, True], "b": (1, 2), "c": {3, 4}, "d": b"bytes", "e": torch.float16,
            "f": np.float64(0.25), "g": types.SimpleNamespace(lr0=0.01), "h": IterableSimpleNamespace(imgsz=64),
            "i": tmp_path / "file.txt"}
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    loaded = load_file(save(tmp_path / "data.pt", {"ema": small_model, **data, "array": array}))
    assert np.array_equal(loaded.pop("array"), array) and {k: loaded[k] for k in data} == data


@pytest.mark.parametrize("model", ["yolov8n.yaml", "atss_r18_fpn.yaml"])
def test_umop_predict_works_under_ultralytics_safe_load(model, tmp_path, monkeypatch):
    """ULTRALYTICS_SAFE_LOAD=1 asks for torch's weights-only loader: ours, with the layers of our models allowed."""
    weights = build_model(model, nc=2, verbose=False).half()
    path = save(tmp_path / "m.pt", {"ema": weights, "train_args": {"umop": True}})
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8))
    monkeypatch.setattr(tasks, "SAFE_LOAD", True)  # what the variable sets when Ultralytics is imported
    results = run("predict", [f"model={path}", f"source={image}", "imgsz=64", "save=false", f"project={tmp_path}"])
    assert len(results) == 1 and results[0].orig_shape == (80, 100)
