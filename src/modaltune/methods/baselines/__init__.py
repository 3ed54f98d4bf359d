"""Label-supervised baselines of ModalTune Sec. 4.2 / Table 2 (importing registers them).

WSI: ``abmil``, ``transmil``, ``gigapath_tuned``. Genomics: ``mlp``, ``snn``, ``smlp``,
``gene_mixer``. Multi-modal: ``mcat``, ``survpath``, ``{abmil,transmil,gigapath}_{cat,kp}``.
"""

from . import cmta, fusion, genomics, label_method, missing_modality, multimodal, pathomic, wsi  # noqa: F401

__all__ = ["fusion", "genomics", "label_method", "multimodal", "wsi"]
