"""Ultralytics adapters: UMOP loss, model, trainer. Importing registers the UMOP settings with Ultralytics and gives
its plotting a local font (so it never tries to download one)."""

from ultralytics.utils import USER_CONFIG_DIR

from umop_yolo import offline, settings

settings.register()
offline.ensure_fonts(USER_CONFIG_DIR)
