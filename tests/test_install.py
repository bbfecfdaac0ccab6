"""A regular (non-editable) install: the wheel carries every module and the repo's cfg/ and data/ YAMLs, found by bare
name from any folder, and `umop train` runs from an empty folder."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import umop_yolo
from umop_yolo.cfg import PACKAGE_DIR

REPO = PACKAGE_DIR.parent
pytestmark = pytest.mark.slow  # builds a wheel and starts processes


def run(cmd: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the repo's sources (the build leaves build/ and *.egg-info beside them)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for folder in ("umop_yolo", "cfg", "data"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", out], src)
    (built,) = out.glob(f"umop_yolo-{umop_yolo.__version__}-*.whl")  # the version `umop version` prints
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A venv (seeing this interpreter's torch and Ultralytics) with the wheel installed, not editable."""
    env = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", env], env)
    run([env / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", wheel], env)
    return env


def test_wheel_ships_every_module_and_the_repo_yamls(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "umop_yolo").rglob("*.py")}
    yamls = {f"umop_yolo/assets/{p.relative_to(REPO).as_posix()}"
             for folder in ("cfg", "data") for p in (REPO / folder).rglob("*") if p.suffix in {".yaml", ".sh"}}
    assert modules - names == set() and yamls - names == set()
    assert "umop_yolo/assets/cfg/yolov8n_umop.yaml" in yamls and "umop_yolo/assets/data/shapes.yaml" in yamls
    assert not any(n.startswith(("cfg/", "data/")) for n in names)  # inside the package, not top-level folders


def test_installed_package_finds_yamls_by_bare_name_from_any_folder(venv, tmp_path):
    probe = ("import umop_yolo, umop_yolo.cfg as c\n"
             "from umop_yolo.data.resolve import find_yaml\n"
             "print(umop_yolo.__file__)\n"
             "print(c.experiment_args('yolov8n_umop.yaml', {})['data'])\n"
             "print(c.resolve_model('atss_r18_fpn.yaml'))\n"
             "print(find_yaml('shapes'))\n")
    lines = run([venv / "bin" / "python", "-c", probe], tmp_path).stdout.split()
    package = Path(lines[0]).parent
    assert package.is_relative_to(venv) and lines[1] == "shapes.yaml"
    assert Path(lines[2]) == package / "assets" / "cfg" / "models" / "atss_r18_fpn.yaml"
    assert Path(lines[3]) == package / "assets" / "data" / "shapes.yaml"


def test_installed_umop_train_runs_from_an_empty_folder(venv, tmp_path):
    assert run([venv / "bin" / "umop", "version"], tmp_path).stdout.strip() == umop_yolo.__version__
    run([venv / "bin" / "umop", "train", "epochs=1", "imgsz=64", "device=cpu", "workers=0"], tmp_path,
        UMOP_CACHE_DIR=str(tmp_path.parent / "cache"))
    assert (tmp_path / "runs" / "detect" / "train" / "weights" / "best.pt").is_file()
