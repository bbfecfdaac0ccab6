"""Level diagnostics (paper Fig. 2, 3): plots of a run's levels.csv (`plots`) and assignment-only analysis of a
dataset's per-level positives (`analyze`)."""
