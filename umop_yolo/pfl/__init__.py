"""Progressive focal loss (PFL) with level-wise resampling (LRP): the UMOP loss core, in plain PyTorch.

Wu et al., "Progressive Hard-case Mining across Pyramid Levels in Object Detection". Equation numbers below are the
paper's. Nothing here imports Ultralytics; any dense detector can call it with one (..., N_l, C) logit/target pair
per pyramid level (C classes last).

    pfl = ProgressiveFocalLoss(PFLSettings(gamma=2.0, delta=0.5, w=0.5, statistic="released", reduction="sum"))
    loss, stats = pfl(logits, targets, normalizer)  # stats["gamma"], stats["alpha"]: (L,) detached
    elementwise, stats = pfl.joined(all_logits, all_targets, level_sizes)  # the levels joined along dim -2

Modules: `settings.py` the settings and their invariants (`PFLSettings`), `statistic.py` C_l and gamma_l, alpha_l
(Eq. 4-5), `loss.py` the loss (`ProgressiveFocalLoss`), `forms.py` the per-entry forms, `single_label.py` those forms
for one-class-per-anchor targets in one pass.

Soft targets. Dense detectors with IoU-aware assigners (e.g. TaskAlignedAssigner) train against scores t in [0, 1]
instead of 0/1 labels. We use the quality-focal generalisation of Eq. (3)

    FL(p, t) = alpha_t * |t - p| ** gamma * BCE(p, t),   alpha_t = alpha if t > 0 else 1 - alpha,

which is exactly Eq. (3) for t in {0, 1} and, for soft t, is minimised at p = t. Likewise the statistic C_l measures
each positive against its own target: "p" becomes p / t (capped at 1), so a positive that has reached its IoU-aware
score counts as learned. For 0/1 targets both statistics are exactly the paper's / the released code's.

That ratio saturates on IoU-aware targets: a positive that reaches its small target counts as learned, so C_l falls
below gamma - delta within a few epochs and Eq. (4) leaves every level at the lower clamp (docs/yolo_heads.md).
`statistic="centered"` keeps the signed log-ratio instead, centred on gamma: C_l = gamma + mean over positives of
log(t / p). A level whose positives sit on their targets gets gamma, one below them more focusing, one above them
less, so gamma_l follows each level's calibration for all of training. For 0/1 targets it is gamma + mean(-log p),
not the paper's statistic.

Forms (`form`), each with the level's (gamma_l, alpha_l) of Eq. (4)-(5); negatives are the entries with t = 0:
    focal      alpha_t |t - p|^gamma BCE(p, t)                                  (the above; Eq. 3 for 0/1 targets)
    varifocal  positives t BCE(p, t); negatives alpha p^gamma BCE(p, 0)         (VarifocalNet's asymmetric form)
    negatives  positives BCE(p, t);   negatives (1 - alpha) p^gamma BCE(p, 0)   (Eq. 3's negative term on stock BCE)
The last two keep BCE's positive signal, which the focal modulator |t - p|^gamma weakens on small soft targets.
"""

from umop_yolo.pfl.forms import TINY, entry_loss_and_grad, focal_loss, negative_weight
from umop_yolo.pfl.loss import ProgressiveFocalLoss, level_sums, per_anchor
from umop_yolo.pfl.settings import CHOICES, FORMS, REDUCTIONS, SETTINGS_KEYS, STATISTICS, SYNCS, PFLSettings
from umop_yolo.pfl.single_label import SingleLabelFocal, top_class
from umop_yolo.pfl.statistic import level_statistic, params_from_sums, statistic_from_sums, statistic_terms

__all__ = [
    "CHOICES", "FORMS", "REDUCTIONS", "SETTINGS_KEYS", "STATISTICS", "SYNCS", "TINY", "PFLSettings",
    "ProgressiveFocalLoss", "SingleLabelFocal", "entry_loss_and_grad", "focal_loss", "level_statistic", "level_sums",
    "negative_weight", "params_from_sums", "per_anchor", "statistic_from_sums", "statistic_terms", "top_class",
]
