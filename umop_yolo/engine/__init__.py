"""Ultralytics adapters: UMOP loss, model, trainer. Importing changes nothing in Ultralytics: the entry points call
`runtime.register()` (UMOP settings, offline) and `runtime.ensure_fonts()` (a local plotting font) when they run."""
