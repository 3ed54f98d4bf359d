"""Subtype groupings (ModalTune Table 4) and the rule that puts a diagnosis in a class.

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

The default grouping is data, not code: it lives in ``modaltune/resources/grouping_table4.yaml``,
in the same shape a user writes to change it (:func:`load_grouping`), and goes through the same
validation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Mapping

from ...errors import InputError, warn_input

__all__ = ["SITE_OF_PROJECT", "SiteGrouping", "Grouping", "default_grouping", "load_grouping", "assign_subtype",
           "normalise_diagnosis"]

#: The packaged ModalTune Table 4 grouping (read by :func:`default_grouping`).
TABLE4_RESOURCE = "grouping_table4.yaml"
#: Groupings shipped with the package, by name (pass ``shipped_grouping(name)`` as ``grouping``).
SHIPPED_GROUPINGS = ("grouping_table4", "glioma_who2021", "glioma_grade")

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
        """``{"classes", "members", "rare", "location"}``: one site of the grouping YAML."""
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

    Read from the packaged ``resources/grouping_table4.yaml`` (whose comments explain the member
    strings); every call returns a new, independent :class:`Grouping`.
    """
    return _grouping_from_dict(_table4(), f"modaltune/resources/{TABLE4_RESOURCE}")


@lru_cache(maxsize=1)
def _table4() -> dict:
    import yaml

    return yaml.safe_load(files("modaltune").joinpath("resources").joinpath(TABLE4_RESOURCE).read_text())


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


def shipped_grouping(name: str) -> Path:
    """Path of a grouping YAML shipped in ``modaltune/resources`` (``glioma_who2021``, ``glioma_grade``, ...).

    Raises:
        InputError: an unknown name (the message lists the shipped ones).
    """
    if name not in SHIPPED_GROUPINGS:
        raise InputError(f"no shipped grouping '{name}'; shipped: {list(SHIPPED_GROUPINGS)}",
                         fix="pass the path of your own grouping YAML instead")
    return Path(str(files("modaltune").joinpath("resources").joinpath(f"{name}.yaml")))
