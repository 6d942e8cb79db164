"""Losses: discrete-time survival NLL, Cox partial likelihood (Efron), cross-entropy, MSE,
text-target KL distillation, per-task masking and multi-task weighting."""
from .basic import cross_entropy, regression_mse
from .distill import kl_text_distillation
from .multitask import SURVIVAL_LOSSES, UncertaintyWeighting, combine_task_losses, task_loss
from .survival import cox_partial_likelihood, nll_discrete_survival

__all__ = [
    "SURVIVAL_LOSSES",
    "UncertaintyWeighting",
    "combine_task_losses",
    "cox_partial_likelihood",
    "cross_entropy",
    "kl_text_distillation",
    "nll_discrete_survival",
    "regression_mse",
    "task_loss",
]
