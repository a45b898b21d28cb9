"""Membership inference with the runs as shadow models: LiRA (Carlini et al. 2022).

Pure numpy, plus ``scipy.special.log_ndtr`` for the offline score's ``log Phi`` (numpy has no
error function, and ``log(Phi(z))`` computed directly underflows to -inf below z = -38, where
the one-sided offline score still has to rank). On plain arrays::

    from heldout.privacy import attack_metrics, lira_scores

    lira = lira_scores(statistic, mask)          # float [R, N(, V)], bool [R, N]
    m = attack_metrics(lira.scores["online"], lira.member)
    print(m.auc, m.tpr_at_fpr)                   # TPR at FPR 1e-2, 1e-3, 1e-4, 1e-5

Modules, dependencies flowing one way: `lira` (the leave-one-run-out scores) and `metrics`
(ROC, AUC, balanced accuracy, TPR at low FPR, exposure) <- `attack` (a predictions store in,
the `heldout lira` file out).
"""

from heldout.errors import LiraError, MetricsError
from heldout.privacy.attack import (
    IDENTITY,
    LIRA_FORMAT,
    VIEWS_ARRAY,
    VIEWS_ATTRIBUTE,
    LiraInputs,
    LiraResult,
    load_lira,
    load_lira_inputs,
    run_lira,
    save_lira,
    select_targets,
)
from heldout.privacy.lira import (
    LOCATIONS,
    SIGMA_EPSILON,
    VARIANTS,
    LiraScores,
    check_inputs,
    choose_targets,
    lira_scores,
)
from heldout.privacy.metrics import (
    FPR_LEVELS,
    AttackMetrics,
    Exposure,
    Roc,
    attack_metrics,
    auc,
    balanced_accuracy,
    exposure,
    roc_curve,
    thin_roc,
    tpr_at_fpr,
)

__all__ = [
    "FPR_LEVELS", "IDENTITY", "LIRA_FORMAT", "LOCATIONS", "SIGMA_EPSILON", "VARIANTS",
    "VIEWS_ARRAY", "VIEWS_ATTRIBUTE", "AttackMetrics", "Exposure", "LiraError", "LiraInputs",
    "LiraResult", "LiraScores", "MetricsError", "Roc", "attack_metrics", "auc",
    "balanced_accuracy", "check_inputs", "choose_targets", "exposure", "lira_scores",
    "load_lira", "load_lira_inputs", "roc_curve", "run_lira", "save_lira", "select_targets",
    "thin_roc", "tpr_at_fpr",
]
