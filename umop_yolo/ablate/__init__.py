"""`umop ablate`: the paper's Table 1 ablation (baseline / + PFL / + PFL + LRP) over seeds, with identical settings.

    umop ablate cfg=yolov8n_umop.yaml seeds=5 variants=baseline,pfl,pfl+lrp baseline:cls=0.5 name=shapes

Every (variant, seed) pair is one training run `<project>/<name>/<variant>-seed<k>/` with the experiment's settings,
the variant's UMOP switches (`umop`, `lrp`: any value in the cfg or command line is replaced), `seed=k` and the
variant's own `VARIANT:key=value` overrides (e.g. `baseline:cls=0.5`: the stock loss with the stock cls gain, the
UMOP variants with the experiment's); nothing else differs between variants, and the report lists what does. The
validator scores every epoch with pycocotools, so each run's results.csv holds the AP curve. The output directory
gets:

    ablation.md     Table 1: final AP, AP50, AP75, APs, APm, APl (mean +- sample std over seeds, difference to the
                    baseline), the paired difference to the baseline (same seed) with its 95% Student-t interval for
                    AP and AP50, and the epochs each variant needs to reach the baseline's final AP; then every run
                    and the settings
    ablation.csv    every run's final six numbers
    ap_curves.png   COCO AP versus epoch, mean over seeds with a +-1 std band, one line per variant
    settings.yaml   the shared settings and the variants' own; a later call into the same directory must match them

Finished runs (results.csv with all requested epochs and weights/last.pt) are read, not retrained; an interrupted run
resumes from its last.pt (Ultralytics' resume), or restarts if it never saved one.

Modules: `runner` (variants, parsing, training), `report` (tables, curves), `stats` (seed statistics).
"""

from umop_yolo.ablate.runner import run_ablation

__all__ = ["run_ablation"]
