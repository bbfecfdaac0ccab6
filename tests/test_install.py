"""A regular (non-editable) install: the wheel carries every module and the repo's cfg/ and data/ YAMLs, found by bare
name from any folder, and `umop train` runs from an empty folder into Ultralytics' `runs_dir`.

The wheel goes into a fresh venv (no system site packages) that sees the running environment's packages (torch,
Ultralytics ...) through a .pth file naming its site-packages, so the test works from any interpreter: a base Python,
a `python -m venv` (the README's, CI's) or any other environment."""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import umop_yolo
from umop_yolo.cfg import PACKAGE_DIR

REPO = PACKAGE_DIR.parent
pytestmark = pytest.mark.slow  # builds a wheel and starts processes


def run(cmd: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `cmd` as the installed package would be run: no PYTHONPATH pointing at a checkout."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          env={**base, "OMP_NUM_THREADS": "1", **env})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def environment_site_packages() -> list[str]:
    """The folders this interpreter imports installed packages from: its site-packages (venv or not) and the user's,
    where it reads that."""
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        paths.append(site.getusersitepackages())
    return [p for p in dict.fromkeys(paths) if Path(p).is_dir()]


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
    """A fresh venv with the wheel installed, not editable; the running environment's packages (not an editable
    umop_yolo: the .pth names folders, their own .pth files are not read) come after its own. Returns its scripts
    folder (bin/)."""
    env = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", env], env)
    python = env / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib, scripts = run([python, "-c", "import sysconfig; p = sysconfig.get_paths(); print(p['purelib']); "
                                          "print(p['scripts'])"], env).stdout.splitlines()
    Path(purelib, "outer-environment.pth").write_text("\n".join(environment_site_packages()) + "\n")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", wheel], env)  # pip seen by .pth
    return Path(scripts)


def test_the_venv_sees_no_system_site_packages_and_this_environment_after_its_own(venv, tmp_path):
    probe = "import sys, site, torch; print(sys.prefix); print(site.ENABLE_USER_SITE); print(torch.__file__)"
    prefix, user_site, torch_file = run([venv / "python", "-c", probe], tmp_path).stdout.split()
    assert Path(prefix) == venv.parent and user_site == "False"
    assert any(Path(torch_file).is_relative_to(p) for p in environment_site_packages())


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
    lines = run([venv / "python", "-c", probe], tmp_path).stdout.split()
    package = Path(lines[0]).parent
    assert package.is_relative_to(venv.parent) and lines[1] == "shapes.yaml"
    assert Path(lines[2]) == package / "assets" / "cfg" / "models" / "atss_r18_fpn.yaml"
    assert Path(lines[3]) == package / "assets" / "data" / "shapes.yaml"


def test_installed_umop_train_runs_from_an_empty_folder_into_the_runs_dir_setting(venv, tmp_path):
    assert run([venv / "umop", "version"], tmp_path).stdout.strip() == umop_yolo.__version__
    work, runs = tmp_path / "empty", tmp_path / "my-runs"
    work.mkdir()
    settings = {"YOLO_CONFIG_DIR": str(tmp_path / "config"), "UMOP_CACHE_DIR": str(tmp_path / "cache")}
    set_runs_dir = f"from ultralytics.utils import SETTINGS; SETTINGS.update(runs_dir={str(runs)!r})"
    run([venv / "python", "-c", set_runs_dir], work, **settings)  # what `yolo settings runs_dir=...` does
    run([venv / "umop", "train", "epochs=1", "imgsz=64", "device=cpu", "workers=0"], work, **settings)
    assert (runs / "detect" / "train" / "weights" / "best.pt").is_file()
    assert list(work.iterdir()) == []
