"""What a method knows about the data it is built for: :class:`CohortInfo`.

Computed from the cohort and the training patients (:func:`modaltune.runs.builders.cohort_info`),
written with every run (``cohort_info.json``) and inherited unchanged by chained runs, so a model
can be rebuilt without the cohort and a fine-tuned model keeps its parent's vocabularies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError

__all__ = ["CohortInfo"]


@dataclass
class CohortInfo:
    """What a method needs to know about the data to build itself (written to ``cohort_info.json``).

    Attributes:
        feature_dim: width of the primary patch features (of ``data.magnification`` when it is
            ``secondary``).
        feature_dim_secondary: width of the second magnification's features (0 = none).
        n_genes: length of the omics vector.
        pathways: gene indices of each gene set.
        pathway_names: names of the gene sets.
        n_classes: width of a subtype head. One site: ``max(2, K)``; several sites (a pooled head):
            the sum of the sites' class counts, each site owning the slice
            ``class_offsets[site] : class_offsets[site] + class_counts[site]``, so class 0 of one
            site is never class 0 of another.
        class_counts: number of subtype classes per site.
        class_offsets: first logit of each site's classes in a pooled head.
        n_bins: number of survival bins.
        sites: the site vocabulary (order fixes per-site parameters such as MICE's cancer tokens);
            inherited unchanged by chained runs.
        site_map: extra site names mapped onto the vocabulary (an external cohort fine-tuned from
            a pre-trained model, e.g. ``{"HANCOCK": "HNSC"}``).
        text_dim: width of the prompt text embeddings.
        report_dim: width of the report embeddings (0 = none).
        task: the prediction task of a single-task run (``subtype`` | ``survival``) or ``multi``.
        train_class_counts: training patients per local class and site (for class weights).
        gene_variance: variance of each gene's stored expression over the training patients (for
            highly-variable-gene selection; unstandardised values).
    """

    feature_dim: int = 0
    feature_dim_secondary: int = 0
    n_genes: int = 0
    pathways: list[np.ndarray] = field(default_factory=list)
    pathway_names: list[str] = field(default_factory=list)
    n_classes: int = 2
    class_counts: dict[str, int] = field(default_factory=dict)
    class_offsets: dict[str, int] = field(default_factory=dict)
    n_bins: int = 4
    sites: list[str] = field(default_factory=list)
    site_map: dict[str, str] = field(default_factory=dict)
    text_dim: int = 384
    report_dim: int = 0
    task: str = "multi"
    train_class_counts: dict[str, list[int]] = field(default_factory=dict)
    gene_variance: list[float] = field(default_factory=list)

    def site_index(self, site: str) -> int:
        """Index of ``site`` (or the site it maps to) in :attr:`sites`.

        Raises:
            ConfigError: the site is not in the vocabulary.
        """
        name = self.site_map.get(str(site), str(site))
        try:
            return self.sites.index(name)
        except ValueError:
            raise ConfigError(f"site '{site}' is not in the model's site vocabulary {self.sites}; map it with "
                              "data.site_map (e.g. {EXTERNAL: TCGA_SITE})") from None

    def subtype_slice(self, site: str) -> slice:
        """Logits of ``site``'s subtype classes in a head of width :attr:`n_classes`.

        With one site the whole head is the site's (as before pooled heads existed).
        """
        name = self.site_map.get(str(site), str(site))
        if len(self.class_offsets) <= 1 or name not in self.class_offsets:
            return slice(0, self.n_classes)
        start = int(self.class_offsets[name])
        return slice(start, start + int(self.class_counts[name]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = dataclasses.asdict(self)
        d["pathways"] = [np.asarray(p).astype(int).tolist() for p in self.pathways]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CohortInfo":
        """Inverse of :meth:`to_dict` (unknown keys are ignored; missing ones take defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["pathways"] = [np.asarray(p, dtype=np.int64) for p in kw.get("pathways", [])]
        return cls(**kw)
