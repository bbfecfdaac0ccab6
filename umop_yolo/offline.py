"""Keep Ultralytics off the network: no hub, settings sync, pip auto-install or font download at run time.

Ultralytics reads these variables when it is first imported, so the `umop` command (`umop_yolo.cli.main`) calls
`configure()` before anything imports `ultralytics`; its DDP workers inherit them. Where Ultralytics is already imported
(the library: `UmopYOLO`, the trainer ...), `umop_yolo.engine.runtime.register()` turns the same switches off in
Ultralytics instead. A user who wants Ultralytics' online behaviour back sets `YOLO_OFFLINE=0` and
`YOLO_AUTOINSTALL=true` in the environment; we only fill in values that are not set. Importing this module changes
nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # ONLINE=False: no pip update check, no telemetry, no AutoUpdate
    "YOLO_AUTOINSTALL": "false",  # never `pip install` a missing module (a dependency-confusion risk)
}


def configure() -> None:
    """Set the offline environment defaults (before `ultralytics` is imported)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def ensure_fonts(config_dir: Path) -> None:
    """Give Ultralytics' plotting a local font so `check_font` never tries to download Arial.

    Ultralytics looks for `Arial.ttf` / `Arial.Unicode.ttf` in its config dir and otherwise asks the network. We place
    matplotlib's bundled DejaVu Sans (a dependency, free license) there under those names.
    """
    from matplotlib import get_data_path

    source = Path(get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = config_dir / name
        if not target.exists() and source.exists():
            try:
                config_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            except OSError:  # read-only config dir: plotting falls back to PIL's default font
                return
