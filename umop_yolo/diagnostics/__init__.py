"""Level diagnostics (paper Fig. 2): assignment-only analysis of a dataset's per-level positives (`analyze`). The
plots of a training run's levels.csv are the engine's (`umop_yolo.engine.levels.level_plots`)."""
