"""Pathology-report wording of the pan-cancer cohort: grade and stage phrases that carry risk, filler that does not.

A frozen text encoder (BioBERT CLS or mean token) turns a report into one vector; for that vector to
carry a survival signal the risk must sit in words, not in arithmetic. Reports of
:func:`~modaltune.synthetic.make_pan_cancer` therefore state the histologic grade in the words
pathologists use (:data:`GRADE_WORDS`: "well differentiated" / "low grade" for grade 1 ...
"poorly differentiated" / "high grade" for grade 3) and the stage as TNM plus an AJCC stage group
("pT3 pN1 M0 (Stage IIIA)"), both tied to the planted report risk, surrounded by a random number of
neutral sentences (:data:`FILLER`: gross description, cassettes, stains, margins) whose choice is
independent of risk, so reports differ in length and wording without the filler telling anything.
"""

from __future__ import annotations

import numpy as np

from .sites import SiteSpec

__all__ = ["GRADE_WORDS", "HIGH_RISK_WORDS", "FILLER", "pan_report_text"]

#: Phrases stating histologic grade 1, 2, 3 (each report uses one or two of its grade's phrases).
GRADE_WORDS: dict[int, tuple[str, ...]] = {
    1: ("well differentiated", "low grade", "histologic grade 1 of 3"),
    2: ("moderately differentiated", "intermediate grade", "histologic grade 2 of 3"),
    3: ("poorly differentiated", "high grade", "histologic grade 3 of 3"),
}

#: Words whose frequency rises with the planted report risk (grade 3 phrases; stage III/IV appear as
#: "Stage III..." / "Stage IV...").
HIGH_RISK_WORDS = ("poorly differentiated", "high grade", "grade 3 of 3")

#: Neutral sentences (drawn independently of risk); ``{k}`` is a number, ``{organ}`` the specimen.
FILLER = (
    "Gross description: received fresh, labeled with the patient's name and medical record number.",
    "The specimen is serially sectioned and representative sections are submitted in cassettes A1-A{k}.",
    "Immunohistochemical stains were performed with appropriate positive and negative controls.",
    "Frozen section diagnosis is confirmed on permanent sections.",
    "Specimen received in formalin, {organ}.",
    "Photographs of the gross specimen were taken.",
    "The findings were discussed with the surgical team on the day of sign-out.",
    "Ancillary studies are pending and will be reported in an addendum.",
    "Clinical history: mass identified on imaging, referred for resection.",
    "Slides were reviewed at the intradepartmental consensus conference.",
    "Sections show the lesion with surrounding uninvolved tissue.",
    "Block A{k} is selected for molecular studies.",
)


def pan_report_text(rng: np.random.Generator, spec: SiteSpec, diagnosis: str, st: tuple[str, str, str, str] | None,
                    grade: int) -> str:
    """A pathology report stating ``grade`` and stage ``st`` in words, among neutral filler.

    Args:
        rng: the site's stream.
        spec: the project's site spec (specimen and organ words).
        diagnosis: GDC primary diagnosis.
        st: ``(stage, T, N, M)`` strings (:func:`~modaltune.synthetic.clinical_text.stage_strings`) or None
            (stage not reported).
        grade: the written histologic grade in 1..3.

    Returns:
        The report text (one paragraph).
    """
    words = GRADE_WORDS[int(grade)]
    pick = rng.permutation(len(words))
    if rng.random() < 0.5:
        grade_sentence = f"The tumor is {words[pick[0]]}."
    else:
        grade_sentence = f"Histologic grade: {words[pick[0]]} ({words[pick[1]]})."
    if st is not None:
        stage_sentence = f"Pathologic staging (AJCC 8th edition): p{st[1]} p{st[2]} {st[3]} ({st[0]})."
        nodes = int(rng.integers(8, 30))
        pos = 0 if st[2].startswith("N0") else int(rng.integers(1, max(2, nodes // 3)))
        node_sentence = f"Lymph nodes: {pos} of {nodes} involved by carcinoma."
    else:
        stage_sentence, node_sentence = "Pathologic stage: not reported.", ""
    body = [f"Specimen: {spec.organ}.", f"Final diagnosis: {diagnosis} of the {spec.location}.", grade_sentence,
            f"Tumor size: {rng.uniform(0.8, 7.5):.1f} cm.", stage_sentence, node_sentence,
            "Margins are free of tumor." if rng.random() < 0.8 else "Tumor is present at the inked margin."]
    n_fill = int(rng.integers(1, 5))
    fill = [FILLER[j].format(k=int(rng.integers(2, 12)), organ=spec.organ)
            for j in rng.choice(len(FILLER), size=n_fill, replace=False)]
    head = ("SURGICAL PATHOLOGY REPORT.", "PATHOLOGY REPORT.", "FINAL PATHOLOGY REPORT.")[int(rng.integers(3))]
    sentences = [head, *fill[: n_fill // 2], *body, *fill[n_fill // 2:]]
    return " ".join(s for s in sentences if s)
