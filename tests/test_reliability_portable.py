"""Checkpoints that travel: a YOLO model trained (or `UmopYOLO.save()`d) here is saved as Ultralytics' own
DetectionModel, so plain Ultralytics (umop_yolo not importable) loads it and predicts the same boxes, also under
ULTRALYTICS_SAFE_LOAD=1; loaded by us it is a UmopDetectionModel again. RetinaNet/ATSS checkpoints keep their own
classes: plain Ultralytics loads them where umop_yolo is installed, says in one line that umop_yolo is needed where it
is not (never AutoInstall), and its `yolo train` on one stops with one line."""

import copy
import copyreg
import json
import os
import pickle
import pickletools
import subprocess
import sys
import zipfile
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from ultralytics import YOLO
from ultralytics.cfg import entrypoint
from ultralytics.nn.tasks import DetectionModel

from conftest import tiny_train_args
from umop_yolo.cli import run
from umop_yolo.data.resolve import resolve_data
from umop_yolo.engine.api import UmopYOLO
from umop_yolo.engine.build import build_model
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.needs_umop import NEEDS_UMOP_YOLO
from umop_yolo.engine.run.checkpoint import load_file
from umop_yolo.engine.run.saving import saved_as_ultralytics
from umop_yolo.errors import UserInputError

NO_UMOP = """
import json, sys

sys.modules["umop_yolo"] = None  # as if umop_yolo were not installed: importing it fails, find_spec finds nothing
"""

PLAIN_PREDICT = NO_UMOP + """
import torch
from ultralytics import YOLO

torch.set_num_threads(int(sys.argv[3]))
model = YOLO(sys.argv[1])
boxes = model.predict(sys.argv[2], imgsz=128, conf=0.001, iou=0.7, max_det=300, verbose=False)[0].boxes.data
print(json.dumps({"class": type(model.model).__name__, "boxes": boxes.tolist(),
                  "umop_modules": [m for m, v in sys.modules.items() if m.startswith("umop_yolo") and v]}))
"""


PLAIN_LOAD = NO_UMOP + """
from ultralytics import YOLO
from ultralytics import YOLO
from ultralytics.cfg import entrypoint
from ultralytics.nn import tasks
from ultralytics.utils import checks

installs = []

def auto_install(*args, **kwargs):  # what Ultralytics runs for a module a checkpoint needs: pip install
    installs.append(repr(args))
    raise RuntimeError("AutoInstall")

tasks.check_requirements = checks.check_requirements = auto_install
errors = []
for load in (lambda: YOLO(sys.argv[1]),
             lambda: entrypoint(f"yolo predict model={sys.argv[1]} source={sys.argv[2]} imgsz=64 save=False")):
    try:
        load()
        errors.append(None)
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
print(json.dumps({"errors": errors, "installs": installs}))
"""


def plain_ultralytics(script: str, *args, cwd, safe_load: str = "0") -> dict:
    """Run `script` in plain Ultralytics' defaults (AutoInstall on), umop_yolo not importable; its last JSON line."""
    env = {k: v for k, v in os.environ.items() if k != "YOLO_AUTOINSTALL"}
    env.update(ULTRALYTICS_SAFE_LOAD=safe_load, YOLO_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def image(path):
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return path


def checkpoint_globals(path) -> list[str]:
    """Every non-torch global a checkpoint names, whatever safe globals earlier loads in this process registered."""
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    finally:
        torch.serialization.add_safe_globals(registered)


def umop_globals(path) -> list[str]:
    return [g for g in checkpoint_globals(path) if g.startswith("umop_yolo")]


@pytest.fixture(scope="module")
def trained(tiny_shapes, tmp_path_factory):
    """weights/ of a 1-epoch UMOP training of YOLOv8n, and an image to predict on."""
    project = tmp_path_factory.mktemp("portable")
    run("train", tiny_train_args(tiny_shapes, project, pfl_delta=0.3))
    return project / "run" / "weights", image(project / "image.png")


@pytest.mark.slow
def test_yolo_checkpoints_name_no_umop_class_and_load_here_as_umop(trained):
    weights, _ = trained
    for name in ("best.pt", "last.pt"):
        assert umop_globals(weights / name) == []
        ckpt = load_file(weights / name)
        assert type(ckpt["model"]) is UmopDetectionModel and ckpt["train_args"]["pfl_delta"] == 0.3


@pytest.mark.slow
@pytest.mark.parametrize("safe_load, saved", [("0", "best.pt"), ("1", "best.pt"), ("0", "UmopYOLO.save()")])
def test_plain_ultralytics_predicts_the_same_boxes(safe_load, saved, trained, tmp_path):
    weights, source = trained
    path = weights / "best.pt"
    if saved == "UmopYOLO.save()":
        UmopYOLO(path).save(tmp_path / "saved.pt")
        path = tmp_path / "saved.pt"
    plain = plain_ultralytics(PLAIN_PREDICT, path, source, torch.get_num_threads(), cwd=tmp_path, safe_load=safe_load)
    assert plain["class"] == "DetectionModel" and plain["umop_modules"] == []
    ours = UmopYOLO(path)
    assert type(ours.model) is UmopDetectionModel
    boxes = ours.predict(str(source), imgsz=128, conf=0.001, iou=0.7, max_det=300, verbose=False)[0].boxes.data
    assert len(plain["boxes"]) > 0 and torch.equal(torch.tensor(plain["boxes"]), boxes)


@pytest.mark.parametrize("yaml", ["yolov8n.yaml", "retinanet_yolov8n.yaml"])
def test_umop_yolo_save_writes_what_training_writes(yaml, tmp_path):
    """`UmopYOLO.save()`: a YOLO head as Ultralytics' DetectionModel (no class of ours), a dense model checking for
    umop_yolo first; our loader gives each its class back."""
    model = UmopYOLO(yaml)
    model.save(tmp_path / "saved.pt")
    assert type(model.model) is (UmopDetectionModel if yaml.startswith("yolo") else DenseDetectionModel)
    names = checkpoint_globals(tmp_path / "saved.pt")
    assert (umop_globals(tmp_path / "saved.pt") == []) == yaml.startswith("yolo")
    assert ("importlib.util.find_spec" in names) != yaml.startswith("yolo")
    assert type(load_file(tmp_path / "saved.pt")["model"]) is type(model.model)


@pytest.mark.slow
@pytest.mark.parametrize("safe_load", ["0", "1"])
def test_plain_ultralytics_says_a_dense_checkpoint_needs_umop_yolo_and_installs_nothing(safe_load, tmp_path):
    """Without umop_yolo, `YOLO(dense.pt)` and `yolo predict model=dense.pt` fail in one line, never calling
    Ultralytics' AutoInstall (check_requirements): saying that umop_yolo is needed, or, under ULTRALYTICS_SAFE_LOAD=1,
    Ultralytics' own refusal of a class outside its allowlist."""
    path = tmp_path / "retinanet.pt"
    torch.save({"model": build_model("retinanet_yolov8n.yaml", nc=2, verbose=False).half(), "train_args": {}}, path)
    plain = plain_ultralytics(PLAIN_LOAD, path, image(tmp_path / "image.png"), cwd=tmp_path, safe_load=safe_load)
    assert plain["installs"] == [] and len(plain["errors"]) == 2
    for error in plain["errors"]:
        if safe_load == "0":
            assert error == f"KeyError: {NEEDS_UMOP_YOLO!r}"
        else:
            assert error.startswith("TypeError: ") and "outside the supported Ultralytics checkpoint" in error
        assert "\n" not in error


def test_needs_umop_yolo_names_what_installs_it():
    """No package index serves umop-yolo: the message names a source-folder install or a wheel built by `pip wheel`
    (what test_install builds and installs), in one line."""
    assert "pip install umop-yolo" not in NEEDS_UMOP_YOLO and "\n" not in NEEDS_UMOP_YOLO
    assert "pip install path/to/umop-yolo" in NEEDS_UMOP_YOLO and NEEDS_UMOP_YOLO.endswith("pip wheel --no-deps .")


def test_plain_ultralytics_loads_a_dense_checkpoint_where_umop_yolo_is_installed(tmp_path):
    """Stock `YOLO(dense.pt)` / `yolo predict` unpickle the classes of umop_yolo where it is installed (as here)."""
    path = tmp_path / "retinanet.pt"
    torch.save({"model": build_model("retinanet_yolov8n.yaml", nc=2, verbose=False).half()}, path)
    stock, ours = YOLO(path), UmopYOLO(path)
    assert type(stock.model) is type(ours.model) is DenseDetectionModel
    assert all(torch.equal(a, b) for a, b in zip(stock.model.state_dict().values(), ours.model.state_dict().values()))
    assert len(stock.predict(str(image(tmp_path / "image.png")), imgsz=64, verbose=False)) == 1


def data_pickle_globals(path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        stream = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    return [arg.replace(" ", ".") for op, arg, _ in pickletools.genops(stream) if op.name == "GLOBAL"]


class BeforeTheCheck(pickle.Pickler):
    """Pickles our models as they were before they checked for umop_yolo: their class, then their state."""

    dispatch_table = {**copyreg.dispatch_table, DenseDetectionModel: lambda m: object.__reduce_ex__(m, 2)}


def test_dense_checkpoints_check_for_umop_yolo_first_and_older_ones_still_load(tmp_path):
    model = build_model("retinanet_yolov8n.yaml", nc=2, verbose=False).half()
    new, old = tmp_path / "new.pt", tmp_path / "old.pt"
    for path, pickler in ((new, pickle.Pickler), (old, BeforeTheCheck)):
        torch.save({"model": model, "train_args": {"umop": True}}, path, pickle_module=SimpleNamespace(
            __name__="pickle", Pickler=pickler))
    names = data_pickle_globals(new)
    first_ours = next(i for i, name in enumerate(names) if name.startswith("umop_yolo"))
    assert "importlib.util.find_spec" in names[:first_ours] and data_pickle_globals(old)[0].startswith("umop_yolo")
    for path in (new, old):
        loaded = load_file(path)["model"]
        assert type(loaded) is DenseDetectionModel
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert type(copy.deepcopy(model)) is DenseDetectionModel


def test_saved_as_ultralytics_only_while_saving_and_only_yolo_heads(tmp_path):
    yolo = build_model("yolov8n.yaml", nc=2, verbose=False)
    dense = build_model("atss_r18_fpn.yaml", nc=2, verbose=False)
    with saved_as_ultralytics(yolo), saved_as_ultralytics(dense):
        assert type(yolo) is DetectionModel and type(dense) is DenseDetectionModel
        torch.save({"ema": yolo, "train_args": {"umop": True}}, tmp_path / "yolo.pt")
        torch.save({"ema": yolo}, tmp_path / "stock.pt")
    assert type(yolo) is UmopDetectionModel
    with pytest.raises(KeyError), saved_as_ultralytics(yolo):
        raise KeyError
    assert type(yolo) is UmopDetectionModel
    assert umop_globals(tmp_path / "yolo.pt") == []
    assert type(load_file(tmp_path / "yolo.pt")["ema"]) is UmopDetectionModel
    assert type(load_file(tmp_path / "stock.pt")["ema"]) is DetectionModel  # not trained here: left as it is


@pytest.mark.parametrize("yaml", ["atss_r18_fpn.yaml", "retinanet_yolov8n.yaml"])
def test_stock_yolo_train_on_a_dense_checkpoint_stops_in_one_line(yaml, tiny_shapes, tmp_path):
    """Ultralytics' `yolo train model=atss.pt` builds its own DetectionModel from the checkpoint's model YAML, which
    describes a RetinaNet/ATSS model: one line naming `umop train`, not `KeyError: 0`."""
    path = tmp_path / "dense.pt"
    torch.save({"model": build_model(yaml, nc=5, verbose=False).half(), "train_args": {"umop": True}}, path)
    command = (f"yolo train model={path} data={resolve_data(tiny_shapes)} epochs=1 imgsz=64 batch=8 device=cpu "
               f"workers=0 project={tmp_path} name=run")
    with pytest.raises(UserInputError, match="umop train") as error:
        entrypoint(command)
    assert "\n" not in str(error.value)
