"""Importing the package changes nothing outside it: no environment variable, no Ultralytics default, no file.

Each import runs in a fresh interpreter, with Ultralytics' config folder (YOLO_CONFIG_DIR) in a new temporary folder;
Ultralytics' modules that the engine imports are imported first there, so what Ultralytics and torch themselves change
at import (torch._dynamo, which torchvision imports, sets TORCHINDUCTOR_CACHE_DIR) is not counted.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "umop_yolo").rglob("*.py"))

PROBE = textwrap.dedent("""
    import importlib, json, os, sys
    from pathlib import Path
    import torch._dynamo  # torchvision.ops imports it
    import ultralytics.engine.model, ultralytics.models.yolo.detect, ultralytics.nn.tasks
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT, checks
    config_dir = Path(os.environ["YOLO_CONFIG_DIR"])

    def state():
        files = sorted(str(p.relative_to(config_dir)) for p in config_dir.rglob("*"))
        return {"env": dict(os.environ), "cfg": sorted(DEFAULT_CFG_DICT), "cfg_attrs": sorted(vars(DEFAULT_CFG)),
                "autoinstall": checks.AUTOINSTALL, "online": checks.ONLINE, "files": files}

    before = state()
    for name in sys.argv[1:]:
        importlib.import_module(name)
    after = state()
    def diff(a, b):  # env: the variables that changed; lists: what was added or removed; flags: both values
        if isinstance(a, dict):
            return {k: [a.get(k), b.get(k)] for k in sorted({*a, *b}) if a.get(k) != b.get(k)}
        return sorted(set(a) ^ set(b)) if isinstance(a, list) else [a, b]

    print(json.dumps({k: diff(before[k], after[k]) for k in before if before[k] != after[k]}))
""")


def changes(*modules: str, tmp_path: Path, path: str = str(ROOT)) -> dict:
    """What importing `modules` (in this order, in a fresh interpreter, with `path` importable) changed:
    {what: the difference}."""
    env = {k: v for k, v in os.environ.items() if k not in {"YOLO_OFFLINE", "YOLO_AUTOINSTALL"}}
    env.update(YOLO_CONFIG_DIR=str(tmp_path / "ycfg"), PYTHONPATH=path, OMP_NUM_THREADS="1")
    (tmp_path / "ycfg").mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", PROBE, *modules], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_importing_every_module_changes_nothing_outside(tmp_path):
    assert {"umop_yolo.engine.trainer", "umop_yolo.engine.api", "umop_yolo.engine.validator"} <= set(MODULES)
    assert changes(*MODULES, tmp_path=tmp_path) == {}


@pytest.mark.slow
def test_the_probe_sees_each_kind_of_change(tmp_path):
    """The check can fail: a module that sets a variable, adds a default and writes a file is caught on all three."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "meddler.py").write_text(
        "import os\nfrom pathlib import Path\nfrom ultralytics.utils import DEFAULT_CFG_DICT\n"
        "os.environ['YOLO_OFFLINE'] = '1'\nDEFAULT_CFG_DICT['meddle'] = 1\n"
        "(Path(os.environ['YOLO_CONFIG_DIR']) / 'Arial.ttf').write_text('')\n"
    )
    assert {"env", "cfg", "files"} <= set(changes("meddler", tmp_path=tmp_path, path=str(site)))


ENTRY = textwrap.dedent("""
    import json, os, sys
    {call}
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT, checks
    print(json.dumps({{"cfg": "umop" in DEFAULT_CFG_DICT and hasattr(DEFAULT_CFG, "pfl_gamma"),
                      "autoinstall": checks.AUTOINSTALL, "online": checks.ONLINE,
                      "env": os.environ.get("YOLO_OFFLINE")}}))
""")


def entry_point_state(call: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"YOLO_OFFLINE", "YOLO_AUTOINSTALL"}}
    env.update(YOLO_CONFIG_DIR=str(tmp_path / "ycfg"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", ENTRY.format(call=call)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_library_entry_point_registers_and_stays_offline_without_touching_the_environment(tmp_path):
    """`UmopYOLO(...)` adds the UMOP keys and turns Ultralytics' AutoInstall and online checks off in Ultralytics
    itself (it is imported already), leaving the environment as it was."""
    call = "from umop_yolo import UmopYOLO; UmopYOLO('yolov8n.yaml')"
    assert entry_point_state(call, tmp_path) == {"cfg": True, "autoinstall": False, "online": False, "env": None}


@pytest.mark.slow
def test_the_command_sets_the_offline_environment_before_ultralytics_is_imported(tmp_path):
    call = "from umop_yolo.cli import main; assert main(['val']) == 2  # model= missing: after registering"
    assert entry_point_state(call, tmp_path) == {"cfg": True, "autoinstall": False, "online": False, "env": "1"}


def test_a_config_copied_before_registration_gets_the_umop_defaults():
    """What Ultralytics' DDP worker script passes the trainer: a copy of its defaults, made before ours are added."""
    from umop_yolo.engine.runtime import with_umop_defaults
    from umop_yolo.settings import UMOP_DEFAULTS

    cfg = with_umop_defaults({"epochs": 3, "umop": False})
    assert cfg == {**UMOP_DEFAULTS, "epochs": 3, "umop": False}


def test_the_plotting_font_is_copied_where_ultralytics_looks_first(tmp_path):
    from umop_yolo.offline import ensure_fonts

    ensure_fonts(tmp_path / "ycfg")
    assert {p.name for p in (tmp_path / "ycfg").iterdir()} == {"Arial.ttf", "Arial.Unicode.ttf"}
    assert (tmp_path / "ycfg" / "Arial.ttf").stat().st_size > 100_000  # DejaVu Sans, a real font
