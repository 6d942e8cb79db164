"""Cohort analyses that need no training: partial information decomposition ("will fusion help?")."""
from .pid import (
    PIDResult,
    joint_counts,
    mutual_information,
    pid_from_counts,
    pid_from_labels,
)

__all__ = ["PIDResult", "joint_counts", "mutual_information", "pid_from_counts", "pid_from_labels"]
