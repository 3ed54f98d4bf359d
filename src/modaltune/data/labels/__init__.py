"""Labels of a patient: subtype class (ModalTune Table 4), stage/TNM in words (Sec. 9), survival bins (Table 5).

* :mod:`.grouping`: which class a GDC ``primary_diagnosis`` belongs to, per site
  (:func:`assign_subtype`; the default grouping is ``resources/grouping_table4.yaml``);
* :mod:`.wording`: AJCC stage, T, N and M values as the words of the prompts;
* :mod:`.survival_bins`: train-fitted quantile bins of survival months.
"""

from .grouping import (
    SITE_OF_PROJECT,
    Grouping,
    SiteGrouping,
    assign_subtype,
    default_grouping,
    load_grouping,
    normalise_diagnosis,
)
from .survival_bins import assign_bins, fit_survival_bins
from .wording import m_to_words, n_to_words, stage_to_words, t_to_words

__all__ = [
    "SITE_OF_PROJECT",
    "SiteGrouping",
    "Grouping",
    "default_grouping",
    "load_grouping",
    "assign_subtype",
    "normalise_diagnosis",
    "stage_to_words",
    "t_to_words",
    "n_to_words",
    "m_to_words",
    "fit_survival_bins",
    "assign_bins",
]
