"""Evaluation: metrics, linear probes, per-site scores, Kaplan-Meier plots, statistics, attribution.

One home per metric: ranking and survival metrics in :mod:`.metrics`, classification metrics (macro
AUC / F1 / sensitivity / specificity) in :mod:`.classification`.
"""

from .classification import classification_summary, macro_auc, macro_f1, macro_sensitivity, macro_specificity
from .metrics import balanced_accuracy, c_index, ipcw_c_index, ipcw_c_index_detail
from .stats import bootstrap_ci, format_mean_std, mean_std, paired_bootstrap_test, wilcoxon_paired

__all__ = ["balanced_accuracy", "c_index", "ipcw_c_index", "ipcw_c_index_detail", "macro_auc", "macro_f1",
           "macro_sensitivity", "macro_specificity", "classification_summary", "bootstrap_ci", "format_mean_std",
           "mean_std", "paired_bootstrap_test", "wilcoxon_paired"]
