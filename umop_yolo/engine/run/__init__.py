"""Run infrastructure around Ultralytics' trainer: restricted checkpoint loading (safe_pickle, checkpoint), saving and
results files (saving), the run-directory lock (run_lock), checks before a run starts (preflight) and stopping a
diverged run (divergence)."""
