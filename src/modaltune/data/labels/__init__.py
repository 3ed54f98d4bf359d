"""Labels of a patient: subtype class (ModalTune Table 4), stage/TNM in words (Sec. 9), survival bins (Table 5).

* :mod:`.grouping`: which class a GDC ``primary_diagnosis`` belongs to, per site
  (:func:`assign_subtype`; the default grouping is ``resources/grouping_table4.yaml``);
* :mod:`.wording`: AJCC stage, T, N and M values as the words of the prompts;
* :mod:`.survival_bins`: train-fitted quantile bins of survival months;
* :mod:`.glioma`: WHO CNS 2021 glioma diagnosis / grade from molecular markers, written as a clinical table.
"""

from .glioma import GLIOMA_SITE, GRADE_CLASSES, WHO2021_CLASSES, glioma_grade, who2021_diagnosis, write_glioma_clinical
from .grouping import (
    SITE_OF_PROJECT,
    Grouping,
    SiteGrouping,
    assign_subtype,
    default_grouping,
    load_grouping,
    normalise_diagnosis,
    shipped_grouping,
)
from .survival_bins import assign_bins, fit_survival_bins
from .wording import m_to_words, n_to_words, stage_to_words, t_to_words

__all__ = [
    "SITE_OF_PROJECT",
    "SiteGrouping",
    "Grouping",
    "default_grouping",
    "load_grouping",
    "shipped_grouping",
    "assign_subtype",
    "normalise_diagnosis",
    "stage_to_words",
    "t_to_words",
    "n_to_words",
    "m_to_words",
    "fit_survival_bins",
    "assign_bins",
    "WHO2021_CLASSES", "GRADE_CLASSES", "GLIOMA_SITE", "who2021_diagnosis", "glioma_grade", "write_glioma_clinical",
]
