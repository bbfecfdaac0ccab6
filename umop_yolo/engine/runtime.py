"""What the entry points do before they run, and importing does not: the `umop` command (`cli.main`), `UmopYOLO`, and
the trainer, validator and predictor (which DDP workers and Ultralytics' `Model` build directly) call `register()`;
they and `umop analyze` call `ensure_fonts()` before Ultralytics' first `check_font`."""

from __future__ import annotations

import os
from typing import Any

from umop_yolo import offline, settings
from umop_yolo.engine import ultralytics_internals


def register() -> None:
    """Idempotent: the UMOP keys in Ultralytics' defaults (`settings.register`), and Ultralytics' AutoInstall, pip
    update check and telemetry off unless the environment says otherwise (`YOLO_AUTOINSTALL`, `YOLO_OFFLINE`)."""
    settings.register()
    ultralytics_internals.stay_offline(os.environ)


def with_umop_defaults(cfg: Any) -> Any:
    """A config dict completed with the UMOP defaults: Ultralytics' DDP worker script copies `DEFAULT_CFG_DICT` before
    our trainer registers them, and then checks the trainer's own args (UMOP keys included) against that copy."""
    return {**settings.UMOP_DEFAULTS, **cfg} if isinstance(cfg, dict) else cfg


def ensure_fonts() -> None:
    """A local font where Ultralytics' `check_font` looks first (its dataset check and its image plots call it), so it
    never downloads Arial: copied on first use, never at import."""
    from ultralytics.utils import USER_CONFIG_DIR

    offline.ensure_fonts(USER_CONFIG_DIR)
