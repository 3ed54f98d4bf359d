"""Clinical text of the synthetic cohort: TCGA case barcodes, GDC stage/TNM strings, pathology reports.

Strings are written the way GDC and pathologists write them (``Stage IIIA``, ``T2b``, ``N0 (i-)``,
``'--`` for an empty cell) so the readers and the stage/TNM wording meet the variety of real tables.
Reports name site, diagnosis and stage/TNM (or "not reported") and a histologic grade loosely tied to
the patient's aggressive-morphology fraction, so text carries a weak morphology proxy.
"""

from __future__ import annotations

import math
import string

import numpy as np

from .sites import SiteSpec

__all__ = ["GDC_EMPTY", "fmt_int", "new_case_id", "stage_strings", "report_text"]

#: How GDC writes an empty cell.
GDC_EMPTY = "'--"


def fmt_int(x: float | None) -> str:
    """A day count as GDC writes it: the integer, or ``'--`` when missing."""
    return GDC_EMPTY if x is None or (isinstance(x, float) and math.isnan(x)) else str(int(x))


def new_case_id(rng, tss_codes, used: set[str]) -> str:
    """A new TCGA case barcode ``TCGA-<TSS>-<4 chars>`` not in ``used`` (added to it)."""
    alphabet = string.ascii_uppercase + string.digits
    while True:
        tss = tss_codes[rng.integers(len(tss_codes))]
        code = "".join(alphabet[j] for j in rng.integers(0, len(alphabet), size=4))
        cid = f"TCGA-{tss}-{code}"
        if cid not in used:
            used.add(cid)
            return cid


def stage_strings(rng, spec: SiteSpec, g: int) -> tuple[str, str, str, str]:
    """GDC ``(stage, T, N, M)`` strings consistent with overall stage ``g`` in 1..4."""
    stage = spec.substages[g - 1][rng.integers(len(spec.substages[g - 1]))]
    t = spec.t_codes[g - 1][rng.integers(len(spec.t_codes[g - 1]))]
    if g == 1:
        n = "N0"
    elif g == 2:
        n = ("N0", "N1", "N0 (i-)")[rng.integers(3)] if spec.location == "breast" else ("N0", "N1")[rng.integers(2)]
    else:
        n = ("N1", "N2", "N1a", "N2a", "NX")[rng.integers(5)]
    m = "M1" if g == 4 else ("M0" if rng.random() < 0.85 else "MX")
    return stage, t, n, m


def report_text(rng, spec: SiteSpec, diagnosis: str, st, morph: float) -> str:
    """A short pathology report; ``st`` is :func:`stage_strings` output or None (stage not reported)."""
    grade = 3 if morph > 0.35 else (2 if morph > 0.15 else 1)
    if rng.random() < 0.2:  # graders disagree sometimes
        grade = int(np.clip(grade + rng.choice([-1, 1]), 1, 3))
    size = rng.uniform(0.8, 7.5)
    parts = [
        "SURGICAL PATHOLOGY REPORT.",
        f"Specimen: {spec.organ}.",
        f"Final diagnosis: {diagnosis} of the {spec.location}.",
        f"Tumor size: {size:.1f} cm. Histologic grade: {grade} of 3.",
    ]
    if st is not None:
        parts.append(f"Pathologic staging: p{st[1]} p{st[2]} {st[3]} ({st[0]}).")
    else:
        parts.append("Pathologic stage: not reported.")
    parts.append(("Margins free of tumor." if rng.random() < 0.8 else "Tumor present at the inked margin."))
    return " ".join(parts)
