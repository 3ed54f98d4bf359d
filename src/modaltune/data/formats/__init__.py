"""Readers of the standard input formats (each raises :class:`~modaltune.errors.InputError` naming file and fix).

Formats read here, one module each:

* :mod:`.features`: patch features of one slide, TRIDENT/CLAM ``.h5`` (datasets ``features`` [N, D]
  and ``coords`` [N, 2] level-0 pixels; file and dataset attributes kept) or ``.pt`` (a tensor [N, D]
  or a dict with ``features`` and optionally ``coords``), see :func:`read_features`;
* :mod:`.clinical`: GDC ``clinical.tsv``/``.csv`` (``'--`` = empty, one row per treatment) and
  SurvPath style tables (one row per slide, ``survival_months`` + ``censorship``), see
  :func:`read_clinical`;
* :mod:`.expression`: UCSC Xena genes x samples (first column gene symbols) or samples x genes,
  see :func:`read_expression`;
* :mod:`.annotations`: gene sets (``.gmt``), pathology reports, slide -> case tables.

Shared ground: :mod:`.ids` (TCGA barcodes, slide file names, the truncated listing of messages) and
:mod:`.tables` (separator sniffing, column lookup, the one set of missing-value tokens).

Case ids: every reader returns **case ids** (patients). A TCGA barcode is reduced to its first 12
characters (``TCGA-XX-XXXX``) by :func:`tcga_case_id`; other ids are kept as written.
"""

from .annotations import read_gmt, read_reports, read_slide_case_table
from .clinical import CLINICAL_COLUMNS, DAYS_PER_MONTH, read_clinical
from .expression import ORIENTATIONS, read_expression
from .features import FeatureFile, feature_shape, list_feature_files, read_features
from .ids import is_tcga_barcode, sample_type_code, tcga_case_id
from .tables import MISSING_TOKENS, is_missing

__all__ = [
    "DAYS_PER_MONTH",
    "CLINICAL_COLUMNS",
    "ORIENTATIONS",
    "FeatureFile",
    "tcga_case_id",
    "is_tcga_barcode",
    "sample_type_code",
    "read_features",
    "feature_shape",
    "list_feature_files",
    "read_clinical",
    "read_expression",
    "read_gmt",
    "read_reports",
    "read_slide_case_table",
    "MISSING_TOKENS",
    "is_missing",
]
