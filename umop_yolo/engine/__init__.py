"""The Ultralytics side of the package, by job:

- here, the adapters: UMOP loss and model, dense (RetinaNet/ATSS) model, trainer, validator, predictor, the `UmopYOLO`
  API, DDP, MMDetection import, and `ultralytics_internals` (every private member of Ultralytics we use, pinned);
- `run/`: run infrastructure: restricted checkpoint loading, saving, the run-directory lock, preflight checks,
  divergence;
- `levels/`: the level diagnostics recorded while training (levels.csv) and their plots.

Importing changes nothing in Ultralytics: the entry points call `runtime.register()` (UMOP settings, offline) and
`runtime.ensure_fonts()` (a local plotting font) when they run.
"""
