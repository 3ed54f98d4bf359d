"""Validate and align raw inputs into a cohort directory (the writer; :mod:`..cohort` reads it back).

:func:`prepare_cohort` reads the user's files through :mod:`modaltune.data.formats`, checks them,
aligns every modality on the case id (patient) and writes the layout described in
:mod:`modaltune.data.cohort`. One module per step:

* :mod:`.run`: ``prepare_cohort``, the sequence of steps;
* :mod:`.clinical`: patients, sites, subtypes and stage/TNM words;
* :mod:`.features`: feature-file checks (with a validation cache), slide -> case matching,
  secondary-magnification pairing;
* :mod:`.expression`: expression, gene sets, reports, OOD sites;
* :mod:`.log`: :class:`IngestLog`, the record of everything dropped or unmatched;
* :mod:`.summary`: counts and the human-readable ``summary.txt``;
* :mod:`.write`: manifest rows, ``cohort.json`` and the files.

Rules (no silent loss):

* The clinical table defines the patients. A patient of the clinical table is **always kept**,
  whatever it lacks (slides, expression, report, label, survival); what it lacks is recorded in
  the availability columns and counted in the summary.
* A slide, expression sample or report whose case is **not in the clinical table** cannot get a
  site (nor labels) and is dropped, with a warning naming the items and the fix; it is listed under
  ``unmatched`` in the summary.
* Sites: a ``site`` column of the clinical table wins; otherwise the site of ``project_id`` under
  ``site_scheme`` (:mod:`..site_schemes`: ``modaltune`` = ``SITE_OF_PROJECT``, the organ grouping;
  ``tcga_project`` = one site per project except COAD + READ -> CRC, GBM + LGG -> GBMLGG); a project
  in neither table gives the project id without ``TCGA-`` (``TCGA-UCEC`` -> ``UCEC``); a patient with
  neither gets ``UNKNOWN`` (kept, warned). Sites without a subtype grouping (most ``tcga_project``
  sites under the default grouping) keep their patients without subtype, warned once per site.
* Endpoints: OS fills ``survival_months`` / ``event`` / ``has_survival``; every other endpoint of the
  clinical table (PFS, DSS, DFS, DMFS, LRFS) gets ``<ep>_months`` / ``<ep>_event`` / ``has_<ep>``;
  patients without a usable value are kept and counted per endpoint in the summary.
* Diagnoses are grouped by ``labels.assign_subtype``; an unknown diagnosis string keeps the patient
  with no subtype (index -1) and warns, naming the cases and the fix (add the string to a grouping
  YAML passed as ``grouping``).
* Several clinical rows of one case (GDC has one per treatment, SurvPath one per slide) are merged
  when they agree; rows that disagree on a patient-level value are an error naming the case.
* Genes of the GMT absent from the expression matrix are dropped and listed; pathways left with
  fewer than ``min_genes_per_pathway`` genes (default 3: one or two genes make a meaningless
  pathway token) are dropped and listed. No pathway left is an error (usually a gene-id mismatch).
  Every expression gene is kept, also those in no gene set (genome-wide methods read all genes,
  pathway methods the genes their gene sets index); the summary counts the genes no set covers.
  Expression that looks linear-scale (maximum above 100, or a heavy right skew) is warned about
  with the transform to apply (log2(x + 1)).
* Feature files: all must be readable (error naming the file), non-empty (error naming the file)
  and of one width per magnification (error naming the odd files and the widths). With
  ``check_values=True`` each file is read once to find NaN/inf (error naming the file) and
  missing coordinates (recorded). Secondary-magnification files are matched to primary ones by
  slide id; unmatched ones on either side are listed.
"""

from .log import IngestLog
from .run import DEFAULT_MIN_GENES_PER_PATHWAY, prepare_cohort
from .summary import build_summary, format_summary

__all__ = ["prepare_cohort", "DEFAULT_MIN_GENES_PER_PATHWAY", "IngestLog", "build_summary", "format_summary"]
