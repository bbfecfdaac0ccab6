"""Level diagnostics recorded during training: per-level positives, gamma_l, alpha_l and classification loss in
windows of steps (level_stats -> levels.csv, results.csv columns) and their plots (level_plots)."""
