"""Subtype groupings (ModalTune Table 4), stage/TNM wording (Sec. 9) and survival bins (Table 5).

Subtype matching rule (:func:`assign_subtype`)
----------------------------------------------
A site's grouping lists, per class, the GDC ``primary_diagnosis`` strings of its members, and a
``rare`` list (the Rare-set: used for text only, never as a class label). Strings are compared after
normalisation: lower case, every run of punctuation/whitespace turned into one space, ``&`` read as
``and``, and the token ``NOS`` dropped — so ``"Lobular carcinoma, NOS"``, ``"lobular carcinoma"`` and
``"LOBULAR  CARCINOMA,NOS"`` are the same diagnosis.

A member may be qualified by a project, ``"TCGA-COAD: Adenocarcinoma, NOS"``; it then matches only
patients of that project. This is needed where one GDC string means different classes by project
(COADREAD: ``Adenocarcinoma, NOS`` is a colon adenocarcinoma in TCGA-COAD and a rectal one in
TCGA-READ). Lookup order: project-qualified members (when the project is known), unqualified members,
the class names themselves (``"Lung adenocarcinoma"``), then the rare list. Without a project, a
string that qualified members place in several classes is ambiguous and treated as unknown.

Stage/TNM wording (ModalTune Sec. 9)
------------------------------------
Sub-stages are binned: ``Stage IIA`` -> ``stage two``; ``T1c`` -> ``tumor stage one``; ``N0`` (also
``N0 (i+)``, ``N0 (mol+)``) -> ``cancer has not spread to lymph nodes``; ``N1``/``N2``/``N3`` (any
letter) -> ``cancer has spread to lymph nodes, node stage one|two|three``; ``M0`` (also ``cM0 (i+)``)
-> ``no metastasis detected``; ``M1*`` -> ``distant metastasis detected``. Not assessable values are
worded, not dropped: ``TX`` -> ``primary tumor cannot be assessed``, ``NX`` -> ``lymph nodes cannot be
assessed``, ``MX`` -> ``distant metastasis cannot be assessed``; ``Tis`` -> ``tumor in situ``,
``T0`` -> ``tumor stage zero``. ``Stage X``, empty values (``'--``, ``Not Reported``, ``Unknown``) and
anything unrecognised give None (the prompt omits the item). Clinical (``c``), pathological (``p``)
and post-therapy (``y``) prefixes are ignored.

Survival bins (ModalTune Sec. 8, Table 5)
-----------------------------------------
:func:`fit_survival_bins` takes quantiles of the survival months of the **given** patients (pass the
training patients only) who had the event; the first edge is 0 and the last the largest observed
time. :func:`assign_bins` maps months to bin indices.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputError, warn_input

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

#: TCGA project -> site (the cancer types of ModalTune).
SITE_OF_PROJECT: dict[str, str] = {
    "TCGA-BRCA": "BRCA",
    "TCGA-LUAD": "NSCLC",
    "TCGA-LUSC": "NSCLC",
    "TCGA-KIRC": "RCC",
    "TCGA-KIRP": "RCC",
    "TCGA-KICH": "RCC",
    "TCGA-GBM": "GBMLGG",
    "TCGA-LGG": "GBMLGG",
    "TCGA-COAD": "COADREAD",
    "TCGA-READ": "COADREAD",
    "TCGA-BLCA": "BLCA",
}

_PROJECT_RE = re.compile(r"^\s*([A-Za-z0-9]+(?:-[A-Za-z0-9]+)+)\s*:\s*(.+)$")


def normalise_diagnosis(text: str) -> str:
    """Normalised diagnosis string used for matching (see the module docstring)."""
    s = str(text).lower().replace("&", " and ")
    tokens = re.sub(r"[^0-9a-z]+", " ", s).split()
    return " ".join(t for t in tokens if t != "nos")


def _split_member(member: str) -> tuple[str | None, str]:
    """``"TCGA-COAD: Adenocarcinoma, NOS"`` -> (``"TCGA-COAD"``, ``"Adenocarcinoma, NOS"``)."""
    m = _PROJECT_RE.match(str(member))
    if m:
        return m.group(1).upper(), m.group(2).strip()
    return None, str(member).strip()


# ----------------------------------------------------------------------------------------------
# groupings


@dataclass
class SiteGrouping:
    """Subtype grouping of one site.

    Attributes:
        classes: class names in label order (index = label).
        members: class name -> diagnosis strings (GDC ``primary_diagnosis``; optionally
            ``"PROJECT: diagnosis"``).
        rare: diagnosis strings of the Rare-set (text only, label -1).
        location: the site in words for the prompt (e.g. ``"breast"``).
    """

    classes: list[str]
    members: dict[str, list[str]] = field(default_factory=dict)
    rare: list[str] = field(default_factory=list)
    location: str = ""

    def _build(self) -> None:
        key = repr((self.classes, self.members, self.rare))
        if getattr(self, "_built_for", None) == key:
            return
        self._built_for = key
        self._qualified: dict[tuple[str, str], set[int]] = {}
        self._plain: dict[str, set[int]] = {}
        self._rare_q: set[tuple[str, str]] = set()
        self._rare: set[str] = set()
        for idx, name in enumerate(self.classes):
            for member in self.members.get(name, []):
                project, diag = _split_member(member)
                key = normalise_diagnosis(diag)
                if project:
                    self._qualified.setdefault((project, key), set()).add(idx)
                else:
                    self._plain.setdefault(key, set()).add(idx)
        self._names = {normalise_diagnosis(c): i for i, c in enumerate(self.classes)}
        for member in self.rare:
            project, diag = _split_member(member)
            (self._rare_q.add((project, normalise_diagnosis(diag))) if project
             else self._rare.add(normalise_diagnosis(diag)))

    def match(self, diagnosis: str, project: str | None = None) -> tuple[int | None, bool]:
        """(class index or None, rare) of a diagnosis string (see the module docstring)."""
        self._build()
        key = normalise_diagnosis(diagnosis)
        if not key:
            return None, False
        project = project.strip().upper() if isinstance(project, str) and project.strip() else None
        if project is not None:
            hit = self._qualified.get((project, key))
            if hit:
                return (min(hit), False) if len(hit) == 1 else (None, False)
        hit = self._plain.get(key)
        if hit:
            return (min(hit), False) if len(hit) == 1 else (None, False)
        if project is None:
            classes = {i for (_, k), idx in self._qualified.items() if k == key for i in idx}
            if len(classes) == 1:
                return classes.pop(), False
            if len(classes) > 1:
                return None, False  # ambiguous without the project
        if key in self._names:
            return self._names[key], False
        if key in self._rare or (project is not None and (project, key) in self._rare_q) or (
                project is None and any(k == key for _, k in self._rare_q)):
            return None, True
        return None, False

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "members": {k: list(v) for k, v in self.members.items()},
                "rare": list(self.rare), "location": self.location}


@dataclass
class Grouping:
    """Subtype groupings of all sites: ``sites[site] -> SiteGrouping``."""

    sites: dict[str, SiteGrouping] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``{site: {"classes", "members", "rare", "location"}}`` (the YAML shape of :func:`load_grouping`)."""
        return {site: g.to_dict() for site, g in self.sites.items()}

    @classmethod
    def from_dict(cls, data: Mapping, source: str | Path | None = None) -> "Grouping":
        """Build and validate a grouping from ``{site: {...}}`` (or ``{"sites": {...}}``)."""
        return _grouping_from_dict(data, source)


def default_grouping() -> Grouping:
    """ModalTune Table 4 (class order = label order) with GDC ``primary_diagnosis`` strings.

    Notes on member strings: GDC writes TCGA-READ's tubulovillous diagnosis as
    ``"Adenocarcinoma in tubolovillous adenoma"`` (both spellings are listed). LUAD variants not in
    Table 4's Rare-set (mixed subtypes, mucinous, clear cell) are grouped with lung adenocarcinoma, and
    ``Renal cell carcinoma, NOS`` goes to the class of its project (KIRC clear cell, KIRP papillary).
    GBMLGG class 1 (the lower-grade gliomas of Table 4) is named ``"Glioma"``.
    """
    sites = {
        "BRCA": SiteGrouping(
            classes=["Infiltrating duct carcinoma", "Lobular carcinoma"],
            members={"Infiltrating duct carcinoma": ["Infiltrating duct carcinoma, NOS"],
                     "Lobular carcinoma": ["Lobular carcinoma, NOS"]},
            rare=["Infiltrating duct and lobular carcinoma",
                  "Infiltrating duct mixed with other types of carcinoma",
                  "Infiltrating lobular mixed with other types of carcinoma",
                  "Mucinous adenocarcinoma",
                  "Metaplastic carcinoma, NOS",
                  "Medullary carcinoma, NOS",
                  "Intraductal papillary adenocarcinoma with invasion",
                  "Tubular adenocarcinoma",
                  "Adenoid cystic carcinoma",
                  "Cribriform carcinoma, NOS"],
            location="breast"),
        "GBMLGG": SiteGrouping(
            classes=["Glioblastoma", "Glioma"],
            members={"Glioblastoma": ["Glioblastoma"],
                     "Glioma": ["Mixed glioma", "Oligodendroglioma, NOS", "Astrocytoma, NOS",
                                "Oligodendroglioma, anaplastic", "Astrocytoma, anaplastic"]},
            rare=[],
            location="brain"),
        "NSCLC": SiteGrouping(
            classes=["Lung adenocarcinoma", "Lung squamous cell carcinoma"],
            members={"Lung adenocarcinoma": ["Adenocarcinoma, NOS",
                                             "Adenocarcinoma with mixed subtypes",
                                             "Mucinous adenocarcinoma",
                                             "Clear cell adenocarcinoma, NOS"],
                     "Lung squamous cell carcinoma": [
                         "Squamous cell carcinoma, NOS",
                         "Squamous cell carcinoma, keratinizing, NOS",
                         "Squamous cell carcinoma, large cell, nonkeratinizing, NOS",
                         "Squamous cell carcinoma, small cell, nonkeratinizing"]},
            rare=["Bronchiolo-alveolar carcinoma, non-mucinous",
                  "Bronchio-alveolar carcinoma, mucinous",
                  "Bronchiolo-alveolar adenocarcinoma, NOS",
                  "Bronchiolo-alveolar carcinoma, mixed mucinous and non-mucinous",
                  "Papillary adenocarcinoma, NOS",
                  "Acinar cell carcinoma",
                  "Basaloid squamous cell carcinoma",
                  "Solid carcinoma, NOS",
                  "Signet ring cell carcinoma",
                  "Papillary squamous cell carcinoma",
                  "Micropapillary carcinoma, NOS"],
            location="lung"),
        "RCC": SiteGrouping(
            classes=["Papillary renal cell carcinoma", "Renal clear cell carcinoma",
                     "Chromophobe renal cell carcinoma"],
            members={"Papillary renal cell carcinoma": ["Papillary adenocarcinoma, NOS",
                                                        "TCGA-KIRP: Renal cell carcinoma, NOS"],
                     "Renal clear cell carcinoma": ["Clear cell adenocarcinoma, NOS",
                                                    "TCGA-KIRC: Renal cell carcinoma, NOS"],
                     "Chromophobe renal cell carcinoma": ["Renal cell carcinoma, chromophobe type"]},
            rare=[],
            location="kidney"),
        "COADREAD": SiteGrouping(
            classes=["Colon adenocarcinoma", "Rectal adenocarcinoma"],
            members={"Colon adenocarcinoma": ["TCGA-COAD: Adenocarcinoma, NOS"],
                     "Rectal adenocarcinoma": ["TCGA-READ: Adenocarcinoma, NOS"]},
            rare=["Mucinous adenocarcinoma",  # colon and rectal mucinous adenocarcinoma
                  "Adenocarcinoma in tubolovillous adenoma",  # GDC spelling
                  "Adenocarcinoma in tubulovillous adenoma",
                  "Tubular adenocarcinoma",
                  "Papillary adenocarcinoma, NOS"],
            location="colon/rectum"),
        "BLCA": SiteGrouping(
            classes=["Transitional cell carcinoma", "Papillary transitional cell carcinoma"],
            members={"Transitional cell carcinoma": ["Transitional cell carcinoma"],
                     "Papillary transitional cell carcinoma": ["Papillary transitional cell carcinoma"]},
            rare=[],
            location="bladder"),
    }
    return Grouping(sites)


def _grouping_from_dict(data: Mapping, source) -> Grouping:
    if not isinstance(data, Mapping):
        raise InputError("a grouping must be a mapping of site -> {classes, members, rare, location}", file=source,
                         fix="see default_grouping().to_dict() for the shape")
    data = dict(data)
    extends = data.pop("extends", None)
    if "sites" in data and isinstance(data["sites"], Mapping):
        data = dict(data["sites"])
    base = default_grouping().sites if str(extends).lower() == "default" else {}
    if extends is not None and str(extends).lower() != "default":
        raise InputError(f"unknown 'extends: {extends}' in the grouping", file=source,
                         fix="use 'extends: default' (add to ModalTune Table 4) or leave it out")
    sites: dict[str, SiteGrouping] = dict(base)
    for site, spec in data.items():
        site = str(site).strip().upper()
        if not isinstance(spec, Mapping):
            raise InputError(f"grouping of site {site} must be a mapping with classes/members/rare/location",
                             file=source, fix="see default_grouping().to_dict() for the shape")
        classes = [str(c).strip() for c in (spec.get("classes") or [])]
        members_in = spec.get("members") or {}
        if not isinstance(members_in, Mapping):
            raise InputError(f"'members' of site {site} must map class name -> list of diagnoses", file=source,
                             fix="write members: {class name: [diagnosis, ...]}")
        members = {str(k).strip(): [str(v) for v in (vals if isinstance(vals, (list, tuple)) else [vals])]
                   for k, vals in members_in.items()}
        if not classes:
            classes = list(members)
        rare = [str(r) for r in (spec.get("rare") or [])]
        location = str(spec.get("location") or "").strip()
        problem = _check_site(site, classes, members, rare)
        if problem:
            raise InputError(problem, file=source, fix="fix the grouping: each diagnosis in at most one class "
                                                       "(or the rare list) per site and project")
        if not location:
            warn_input(f"site {site} has no 'location' in the grouping; prompts will omit the cancer location",
                       file=source, fix=f"add location: <words> to site {site}")
        sites[site] = SiteGrouping(classes=classes, members=members, rare=rare, location=location)
    return Grouping(sites)


def _check_site(site: str, classes: list[str], members: dict[str, list[str]], rare: list[str]) -> str | None:
    if len(set(classes)) != len(classes):
        return f"site {site} lists a class twice: {classes}"
    unknown = [k for k in members if k not in classes]
    if unknown:
        return f"site {site}: members given for class(es) {unknown} not in classes {classes}"
    seen: dict[tuple[str | None, str], str] = {}
    for name in classes:
        for member in members.get(name, []):
            project, diag = _split_member(member)
            key = (project, normalise_diagnosis(diag))
            if key in seen and seen[key] != name:
                return f"site {site}: diagnosis '{member}' is in two classes ({seen[key]} and {name})"
            seen[key] = name
    for member in rare:
        project, diag = _split_member(member)
        key = (project, normalise_diagnosis(diag))
        if key in seen:
            return f"site {site}: diagnosis '{member}' is both in class {seen[key]} and in the rare list"
    return None


def load_grouping(yaml_path: str | Path) -> Grouping:
    """Read a grouping YAML: ``{SITE: {classes: [...], members: {class: [diagnoses]}, rare: [...], location}}``.

    ``classes`` (label order) may be left out: the order of ``members`` is used. A top-level
    ``extends: default`` keeps the sites of :func:`default_grouping` that the file does not redefine
    (e.g. to add a new site). Diagnoses may be project-qualified (``"TCGA-READ: Adenocarcinoma, NOS"``).

    Raises:
        InputError: missing/invalid file, a diagnosis in two classes, members of an undeclared class.
    """
    import yaml

    path = Path(yaml_path)
    if not path.is_file():
        raise InputError("grouping file not found", file=path, fix="check the path of the grouping YAML")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise InputError(f"grouping file is not valid YAML ({detail})", file=path, fix="fix the YAML syntax") from exc
    return _grouping_from_dict(data or {}, path)


def assign_subtype(grouping: Grouping, site: str, diagnosis: str | None,
                   project: str | None = None) -> tuple[str | None, int | None, bool]:
    """Class of a patient's diagnosis within its site.

    Args:
        grouping: the grouping (e.g. :func:`default_grouping`).
        site: site name (``"NSCLC"``); a TCGA project id (``"TCGA-LUAD"``) is accepted too and then
            also serves as ``project``.
        diagnosis: GDC ``primary_diagnosis`` (case, punctuation and ``, NOS`` insensitive).
        project: the patient's ``project_id``; needed where the class depends on it (COADREAD).

    Returns:
        ``(class_name, class_index, False)`` for a class member; ``(None, None, True)`` for the
        Rare-set; ``(None, None, False)`` for an unknown diagnosis or site (the caller warns).
    """
    if diagnosis is None or (isinstance(diagnosis, float) and math.isnan(diagnosis)):
        return None, None, False
    key = str(site).strip().upper() if site is not None else ""
    if key not in grouping.sites and key in SITE_OF_PROJECT:
        project = project or key
        key = SITE_OF_PROJECT[key]
    g = grouping.sites.get(key)
    if g is None:
        return None, None, False
    idx, rare = g.match(str(diagnosis), project)
    if rare:
        return None, None, True
    if idx is None:
        return None, None, False
    return g.classes[idx], idx, False


# ----------------------------------------------------------------------------------------------
# stage / TNM wording

_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four"}
_ROMAN = {"0": 0, "i": 1, "ii": 2, "iii": 3, "iv": 4, "1": 1, "2": 2, "3": 3, "4": 4}
_EMPTY = {"", "'--", "--", "-", "na", "n/a", "nan", "none", "null", "not reported", "unknown",
          "not available", "[not available]", "[not applicable]", "[unknown]", "[discrepancy]"}


def _prep(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    s = str(value).strip().lower()
    return None if s in _EMPTY else s


def stage_to_words(stage: Any) -> str | None:
    """AJCC overall stage in words: ``"Stage IIA"`` -> ``"stage two"`` (sub-stages binned).

    Accepts ``Stage 0``..``Stage IV`` with any letter/number suffix (``IIIC``, ``IVB``, ``IS``
    excluded), Arabic numerals (``"Stage 2"``), and already worded values. ``Stage X``, empty and
    unrecognised values give None.
    """
    s = _prep(stage)
    if s is None:
        return None
    m = re.fullmatch(r"(?:stage\s*)?(zero|one|two|three|four)", s)
    if m:
        return f"stage {m.group(1)}"
    m = re.fullmatch(r"(?:stage\s*)?(iv|iii|ii|i|0|[1-4])\s*(?:[a-c][0-9]?)?", s)
    if not m:
        return None
    return f"stage {_WORDS[_ROMAN[m.group(1)]]}"


_PREFIX = r"(?:[cpyra]{1,3})?"


def t_to_words(t: Any) -> str | None:
    """AJCC T in words: ``"T1c"`` -> ``"tumor stage one"``; ``TX`` -> ``"primary tumor cannot be assessed"``;
    ``Tis`` -> ``"tumor in situ"``; ``T0`` -> ``"tumor stage zero"``; empty/unknown -> None."""
    s = _prep(t)
    if s is None:
        return None
    if re.fullmatch(r"tumor stage (zero|one|two|three|four)", s):
        return s
    s = s.replace(" ", "")
    m = re.fullmatch(_PREFIX + r"t(x|is|[0-4])(?:[a-e][0-9]?)?(?:mi)?(?:\(.*\))?", s)
    if not m:
        return None
    code = m.group(1)
    if code == "x":
        return "primary tumor cannot be assessed"
    if code == "is":
        return "tumor in situ"
    return f"tumor stage {_WORDS[int(code)]}"


def n_to_words(n: Any) -> str | None:
    """AJCC N in words: ``N0`` -> ``"cancer has not spread to lymph nodes"``; ``N2a`` -> ``"cancer has spread
    to lymph nodes, node stage two"``; ``NX`` -> ``"lymph nodes cannot be assessed"``; empty/unknown -> None."""
    s = _prep(n)
    if s is None:
        return None
    if s.startswith("cancer has"):
        return s
    s = s.replace(" ", "")
    m = re.fullmatch(_PREFIX + r"n(x|[0-3])(?:[a-d]|mi)?(?:\(.*\))?", s)
    if not m:
        return None
    code = m.group(1)
    if code == "x":
        return "lymph nodes cannot be assessed"
    if code == "0":
        return "cancer has not spread to lymph nodes"
    return f"cancer has spread to lymph nodes, node stage {_WORDS[int(code)]}"


def m_to_words(m: Any) -> str | None:
    """AJCC M in words: ``M0``/``cM0 (i+)`` -> ``"no metastasis detected"``; ``M1``/``M1a``... ->
    ``"distant metastasis detected"``; ``MX`` -> ``"distant metastasis cannot be assessed"``; else None."""
    s = _prep(m)
    if s is None:
        return None
    if s in ("no metastasis detected", "distant metastasis detected"):
        return s
    s = s.replace(" ", "")
    mt = re.fullmatch(_PREFIX + r"m(x|0|1)(?:[a-d][0-9]?)?(?:\(.*\))?", s)
    if not mt:
        return None
    code = mt.group(1)
    if code == "x":
        return "distant metastasis cannot be assessed"
    return "no metastasis detected" if code == "0" else "distant metastasis detected"


# ----------------------------------------------------------------------------------------------
# survival bins


def fit_survival_bins(months: np.ndarray, events: np.ndarray, n_bins: int = 4,
                      min_events: int | None = None) -> np.ndarray:
    """Quantile bin edges of survival months, fitted on the given (training) patients only.

    Inner edges are the ``k / n_bins`` quantiles (numpy's linear interpolation) of the months of the
    patients with ``event == 1``; with fewer than ``min_events`` (default ``n_bins``) such patients
    the quantiles of all patients are used (warned). The first edge is 0 and the last the largest
    observed time of all given patients, so every training time falls in a bin. Ties are broken so
    the edges increase strictly. Patients with NaN/negative months or NaN events are ignored.

    Returns:
        float64 array of length ``n_bins + 1``.

    Raises:
        InputError: ``n_bins < 1`` or no patient with a usable survival time.
    """
    if int(n_bins) < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins}", fix="use n_bins >= 1 (ModalTune: 4)")
    n_bins = int(n_bins)
    t = np.asarray(months, dtype=np.float64).reshape(-1)
    e = np.asarray(events, dtype=np.float64).reshape(-1)
    if t.shape != e.shape:
        raise InputError(f"months ({t.shape[0]}) and events ({e.shape[0]}) differ in length",
                         fix="pass one month and one event per patient")
    ok = np.isfinite(t) & (t >= 0) & np.isfinite(e)
    t, e = t[ok], e[ok]
    if t.size == 0:
        raise InputError("no patient with a survival time to fit the survival bins",
                         fix="check that the training patients have survival_months and event")
    min_events = n_bins if min_events is None else int(min_events)
    uncensored = t[e == 1]
    if uncensored.size >= max(1, min_events) or uncensored.size == t.size:
        values = uncensored
    else:
        warn_input(f"only {uncensored.size} event(s) among {t.size} patient(s): survival bins are quantiles of "
                   "all patients' times", fix="use more (training) patients per site for event-based bins")
        values = t
    hi = float(t.max())
    if hi <= 0:
        hi = 1.0
    inner = np.quantile(values, np.arange(1, n_bins) / n_bins) if n_bins > 1 else np.empty(0)
    edges = np.concatenate([[0.0], inner, [hi]])
    eps = max(hi, 1.0) * 1e-6
    for i in range(1, n_bins):  # forward: strictly above the previous edge
        edges[i] = max(edges[i], edges[i - 1] + eps)
    for i in range(n_bins - 1, 0, -1):  # backward: strictly below the next edge
        edges[i] = min(edges[i], edges[i + 1] - eps)
    return edges


def assign_bins(months: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each time: bin ``k`` holds ``edges[k] <= t < edges[k+1]``; times at or beyond the
    last edge go to the last bin; NaN or negative times give -1."""
    t = np.asarray(months, dtype=np.float64).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64).reshape(-1)
    n_bins = len(edges) - 1
    if n_bins < 1:
        raise InputError(f"survival bin edges need at least 2 values, got {len(edges)}",
                         fix="fit the edges with fit_survival_bins")
    out = np.full(t.shape, -1, dtype=np.int64)
    ok = np.isfinite(t) & (t >= 0)
    out[ok] = np.clip(np.searchsorted(edges, t[ok], side="right") - 1, 0, n_bins - 1)
    return out
