"""Ultralytics adapters: UMOP loss, model, trainer. Importing registers the UMOP settings with Ultralytics."""

from umop_yolo import settings

settings.register()
