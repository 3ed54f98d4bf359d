"""Evaluation: metrics, linear probes, Kaplan-Meier plots and bootstrap statistics."""

from .metrics import auc, balanced_accuracy, c_index, ipcw_c_index, ipcw_c_index_detail
from .stats import bootstrap_ci, format_mean_std, mean_std, paired_bootstrap_test

__all__ = ["auc", "balanced_accuracy", "c_index", "ipcw_c_index", "ipcw_c_index_detail", "bootstrap_ci",
           "format_mean_std", "mean_std", "paired_bootstrap_test"]
