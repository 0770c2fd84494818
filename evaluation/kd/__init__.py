"""Knowledge distillation: the KD loss registry, feature hooks, the teacher-student trainer and
soft-label training of compressed sets.

``create_kd_loss(name, **config)`` builds a loss (``list_kd_losses()`` names them);
``distill``/``distill_student`` train a student from a teacher; ``evaluate_soft`` trains the
students of a soft-label protocol.
"""

from evaluation.kd.hooks import FeatureHooks, resolve_module
from evaluation.kd.losses import (
    KD_LOSSES,
    ATConfig,
    CRDConfig,
    DKDConfig,
    FitNetConfig,
    KDBatch,
    KDConfig,
    KDLoss,
    KDLossConfig,
    NKDConfig,
    RKDConfig,
    create_kd_loss,
    dkd_parts,
    kl_divergence,
    list_kd_losses,
    register_kd_loss,
    standardize_logits,
)
from evaluation.kd.soft import (
    ReplayStore,
    SoftEvaluation,
    SoftLabelConfig,
    build_replay_store,
    evaluate_soft,
    soft_label_loss,
    train_soft_student,
)
from evaluation.kd.trainer import StudentRecipe, StudentStats, distill, distill_student, run_epochs

__all__ = [
    "ATConfig",
    "CRDConfig",
    "DKDConfig",
    "FeatureHooks",
    "FitNetConfig",
    "KDBatch",
    "KDConfig",
    "KDLoss",
    "KDLossConfig",
    "KD_LOSSES",
    "NKDConfig",
    "RKDConfig",
    "ReplayStore",
    "SoftEvaluation",
    "SoftLabelConfig",
    "StudentRecipe",
    "StudentStats",
    "build_replay_store",
    "create_kd_loss",
    "distill",
    "distill_student",
    "dkd_parts",
    "evaluate_soft",
    "kl_divergence",
    "list_kd_losses",
    "register_kd_loss",
    "resolve_module",
    "run_epochs",
    "soft_label_loss",
    "standardize_logits",
    "train_soft_student",
]
