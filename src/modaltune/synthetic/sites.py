"""What the synthetic cohort draws from: TCGA-like sites, their classes, stages and identifiers.

Each site mirrors its TCGA counterpart closely enough that the real ingestion road is exercised:
GDC ``project_id`` and ``primary_diagnosis`` strings that the ModalTune Table 4 grouping must
resolve (including project-dependent ones, COADREAD's ``Adenocarcinoma, NOS``), Rare-set diagnoses,
AJCC sub-stages and T codes, tissue-source-site codes for barcodes, and class and stage frequencies
that are imbalanced as in TCGA. Survival scales differ by site so sites differ in event rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PROTOTYPE_NAMES", "ClassSpec", "SiteSpec", "SITES", "DIAGNOSIS_CLASS", "DEFAULT_PATIENTS",
           "prototype_names"]

#: Names of the morphology prototypes (tissue types) written to truth.json.
PROTOTYPE_NAMES = (
    "high_grade_tumour",  # index 0: the aggressive prototype
    "tumour_epithelium",
    "glandular",
    "squamous_or_papillary",
    "stroma",
    "lymphocytes",
    "necrosis_debris",
    "adipose_normal",
)


@dataclass(frozen=True)
class ClassSpec:
    """One subtype class of a site: its frequency and the GDC strings that express it."""

    name: str  # ModalTune Table 4 class name
    freq: float
    variants: tuple[tuple[str, str, float], ...]  # (project_id, GDC primary_diagnosis, weight)


@dataclass(frozen=True)
class SiteSpec:
    """One TCGA-like site: classes, Rare-set, staging, survival scale, barcode codes, report words."""

    location: str
    classes: tuple[ClassSpec, ...]
    rare_freq: float
    rare: tuple[tuple[str, str], ...]  # (project_id, GDC primary_diagnosis)
    stage_freq: tuple[float, float, float, float] | None  # None: no AJCC staging (GBMLGG)
    substages: tuple[tuple[str, ...], ...]  # per stage 1..4, GDC "Stage ..." strings
    t_codes: tuple[tuple[str, ...], ...]  # per stage 1..4
    scale_months: float  # Weibull scale of the event times
    tss: Mapping[str, tuple[str, ...]]  # project -> tissue source site codes
    organ: str  # specimen words for reports


#: T codes per stage 1..4 for sites with sub-staged T (BRCA, NSCLC).
_T_SUB = (("T1a", "T1b", "T1c", "T1"), ("T2", "T2a", "T2b", "T1c"), ("T3", "T4", "T4a", "T4b"),
          ("T2", "T3", "T4", "T4b"))

SITES: dict[str, SiteSpec] = {
    "BRCA": SiteSpec(
        location="breast",
        classes=(
            ClassSpec("Infiltrating duct carcinoma", 0.70, (("TCGA-BRCA", "Infiltrating duct carcinoma, NOS", 1.0),)),
            ClassSpec("Lobular carcinoma", 0.19, (("TCGA-BRCA", "Lobular carcinoma, NOS", 1.0),)),
        ),
        rare_freq=0.11,
        rare=(("TCGA-BRCA", "Infiltrating duct and lobular carcinoma"),
              ("TCGA-BRCA", "Infiltrating duct mixed with other types of carcinoma"),
              ("TCGA-BRCA", "Mucinous adenocarcinoma"),
              ("TCGA-BRCA", "Metaplastic carcinoma, NOS"),
              ("TCGA-BRCA", "Medullary carcinoma, NOS")),
        stage_freq=(0.18, 0.56, 0.23, 0.03),
        substages=(("Stage I", "Stage IA", "Stage IB"), ("Stage IIA", "Stage IIB"),
                   ("Stage IIIA", "Stage IIIB", "Stage IIIC"), ("Stage IV",)),
        t_codes=_T_SUB, scale_months=90.0,
        tss={"TCGA-BRCA": ("A2", "AR", "BH", "E2", "D8", "A8")}, organ="breast, mastectomy",
    ),
    "NSCLC": SiteSpec(
        location="lung",
        classes=(
            ClassSpec("Lung adenocarcinoma", 0.46, (("TCGA-LUAD", "Adenocarcinoma, NOS", 0.85),
                                                 ("TCGA-LUAD", "Adenocarcinoma with mixed subtypes", 0.15))),
            ClassSpec("Lung squamous cell carcinoma", 0.46, (
                ("TCGA-LUSC", "Squamous cell carcinoma, NOS", 0.85),
                ("TCGA-LUSC", "Squamous cell carcinoma, keratinizing, NOS", 0.10),
                ("TCGA-LUSC", "Squamous cell carcinoma, large cell, nonkeratinizing, NOS", 0.05))),
        ),
        rare_freq=0.08,
        rare=(("TCGA-LUAD", "Bronchiolo-alveolar carcinoma, non-mucinous"),
              ("TCGA-LUAD", "Papillary adenocarcinoma, NOS"),
              ("TCGA-LUAD", "Acinar cell carcinoma"),
              ("TCGA-LUAD", "Solid carcinoma, NOS"),
              ("TCGA-LUSC", "Basaloid squamous cell carcinoma"),
              ("TCGA-LUSC", "Papillary squamous cell carcinoma")),
        stage_freq=(0.50, 0.29, 0.17, 0.04),
        substages=(("Stage IA", "Stage IB"), ("Stage IIA", "Stage IIB"), ("Stage IIIA", "Stage IIIB"),
                   ("Stage IV",)),
        t_codes=_T_SUB, scale_months=45.0,
        tss={"TCGA-LUAD": ("05", "44", "49", "55", "78"), "TCGA-LUSC": ("18", "22", "33", "43", "56")},
        organ="lung, lobectomy",
    ),
    "RCC": SiteSpec(
        location="kidney",
        classes=(
            ClassSpec("Papillary renal cell carcinoma", 0.28, (("TCGA-KIRP", "Papillary adenocarcinoma, NOS", 1.0),)),
            ClassSpec("Renal clear cell carcinoma", 0.60, (("TCGA-KIRC", "Clear cell adenocarcinoma, NOS", 1.0),)),
            ClassSpec("Chromophobe renal cell carcinoma", 0.12,
                   (("TCGA-KICH", "Renal cell carcinoma, chromophobe type", 1.0),)),
        ),
        rare_freq=0.0, rare=(),
        stage_freq=(0.50, 0.11, 0.22, 0.17),
        substages=(("Stage I",), ("Stage II",), ("Stage III",), ("Stage IV",)),
        t_codes=(("T1", "T1a", "T1b"), ("T2", "T2a"), ("T3", "T3a", "T3b"), ("T2", "T3a", "T4")),
        scale_months=70.0,
        tss={"TCGA-KIRP": ("2Z", "B9", "DW", "G7"), "TCGA-KIRC": ("A3", "B0", "CJ", "CZ"),
             "TCGA-KICH": ("KL", "KM", "KN", "KO")},
        organ="kidney, nephrectomy",
    ),
    "BLCA": SiteSpec(
        location="bladder",
        classes=(
            ClassSpec("Transitional cell carcinoma", 0.80, (("TCGA-BLCA", "Transitional cell carcinoma", 1.0),)),
            ClassSpec("Papillary transitional cell carcinoma", 0.20,
                   (("TCGA-BLCA", "Papillary transitional cell carcinoma", 1.0),)),
        ),
        rare_freq=0.0, rare=(),
        stage_freq=(0.02, 0.32, 0.35, 0.31),
        substages=(("Stage I",), ("Stage II",), ("Stage III",), ("Stage IV",)),
        t_codes=(("T1",), ("T2", "T2a", "T2b"), ("T3", "T3a", "T3b", "T4a"), ("T3", "T4", "T4a", "T4b")),
        scale_months=35.0,
        tss={"TCGA-BLCA": ("BT", "DK", "FD", "ZF", "XF")}, organ="urinary bladder, cystectomy",
    ),
    "COADREAD": SiteSpec(
        location="colorectum",
        classes=(
            ClassSpec("Colon adenocarcinoma", 0.74, (("TCGA-COAD", "Adenocarcinoma, NOS", 1.0),)),
            ClassSpec("Rectal adenocarcinoma", 0.18, (("TCGA-READ", "Adenocarcinoma, NOS", 1.0),)),
        ),
        rare_freq=0.08,
        rare=(("TCGA-COAD", "Mucinous adenocarcinoma"), ("TCGA-COAD", "Papillary adenocarcinoma, NOS"),
              ("TCGA-READ", "Mucinous adenocarcinoma"), ("TCGA-READ", "Adenocarcinoma in tubolovillous adenoma"),
              ("TCGA-READ", "Tubular adenocarcinoma")),
        stage_freq=(0.17, 0.37, 0.29, 0.17),
        substages=(("Stage I",), ("Stage IIA", "Stage IIB"), ("Stage IIIA", "Stage IIIB", "Stage IIIC"),
                   ("Stage IV", "Stage IVA")),
        t_codes=(("T1", "T2"), ("T3", "T4a"), ("T3", "T4a", "T4b"), ("T3", "T4", "T4b")),
        scale_months=60.0,
        tss={"TCGA-COAD": ("A6", "AA", "AZ", "CM"), "TCGA-READ": ("AF", "AG", "DC")},
        organ="colon/rectum, resection",
    ),
    "GBMLGG": SiteSpec(
        location="brain",
        classes=(
            ClassSpec("Glioblastoma", 0.42, (("TCGA-GBM", "Glioblastoma", 1.0),)),
            ClassSpec("Glioma", 0.58, (("TCGA-LGG", "Mixed glioma", 0.25), ("TCGA-LGG", "Oligodendroglioma, NOS", 0.2),
                                    ("TCGA-LGG", "Astrocytoma, NOS", 0.2),
                                    ("TCGA-LGG", "Oligodendroglioma, anaplastic", 0.15),
                                    ("TCGA-LGG", "Astrocytoma, anaplastic", 0.2))),
        ),
        rare_freq=0.0, rare=(),
        stage_freq=None, substages=(), t_codes=(),
        scale_months=30.0,
        tss={"TCGA-GBM": ("02", "06", "12", "19"), "TCGA-LGG": ("CS", "DB", "DU", "HT")},
        organ="brain, resection",
    ),
}

#: GDC ``primary_diagnosis`` -> (site, ModalTune Table 4 class name or "Rare-set") as generated here.
#: Note: COADREAD "Adenocarcinoma, NOS" is colon or rectal by ``project_id`` (TCGA-COAD / TCGA-READ).
DIAGNOSIS_CLASS: dict[tuple[str, str], str] = {}
for _site_name, _spec in SITES.items():
    for _cls in _spec.classes:
        for _proj, _diag, _w in _cls.variants:
            DIAGNOSIS_CLASS[(_site_name, _diag)] = _cls.name
    for _proj, _diag in _spec.rare:
        DIAGNOSIS_CLASS.setdefault((_site_name, _diag), "Rare-set")
del _site_name, _spec, _cls, _proj, _diag, _w

#: Patients per site when ``patients`` is not given (class/size imbalance across sites, as in TCGA).
DEFAULT_PATIENTS = {"BRCA": 100, "NSCLC": 90, "RCC": 90, "BLCA": 60, "COADREAD": 70, "GBMLGG": 80}


def prototype_names(k: int) -> list[str]:
    """Names of ``k`` prototypes: :data:`PROTOTYPE_NAMES`, then ``prototype_<i>``."""
    return [PROTOTYPE_NAMES[i] if i < len(PROTOTYPE_NAMES) else f"prototype_{i}" for i in range(k)]
