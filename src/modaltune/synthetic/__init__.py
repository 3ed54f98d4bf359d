"""A synthetic multi-modal TCGA-like cohort written in the standard on-disk formats.

:func:`make_synthetic` writes what a real user has after running TRIDENT/CLAM on their slides and
downloading GDC/Xena tables, so the synthetic data travels the real ingestion road
(``data.formats`` -> ``data.prepare.prepare_cohort``). It writes raw inputs and reads none, so it
sits beside ``data`` rather than in it::

    out/
      features_20x/<slide_id>.h5   TRIDENT/CLAM h5: `features` float32 [N, dim], `coords` int64 [N, 2]
                                   (level-0 pixels, level 0 = 20x, 256-px grid), attrs patch_size=256,
                                   magnification=20, patch_size_level0=256, ...
      features_10x/<slide_id>.h5   the same slides at 10x: 512-px level-0 grid, features pooled 2x2 from
                                   the 20x tissue + fresh noise (magnification=10, patch_size_level0=512)
      clinical.tsv                 GDC clinical TSV (`'--` = empty): case_submitter_id, project_id,
                                   primary_diagnosis, ajcc_pathologic_stage/_t/_n/_m, vital_status,
                                   days_to_death, days_to_last_follow_up, age_at_index
      expression.tsv               Xena genes x samples, first column `sample`, log2-scale values,
                                   one column per sample barcode TCGA-XX-XXXX-01 (one case also has -11)
      pathways.gmt                 GMT gene sets (name, description, genes...)
      reports.csv                  case_id,text short pathology reports (most patients)
      truth.csv                    per case: true risk, subtype, site, morphology fraction, pathway activity...
      truth_slides.csv             per slide: case, patch counts, realised aggressive fraction
      truth.json                   parameters, oracle C-index and event rate per site, planted structure

Slide ids are TCGA slide barcodes ``TCGA-XX-XXXX-01Z-00-DX1`` (the case id is the first 12
characters); some patients have 2-3 slides (DX2, DX3).

Generative model (per site ``s``, patient ``i``):

* Subtype ``c_i`` ~ Categorical(site class frequencies, imbalanced) or, with a small probability
  (BRCA, NSCLC, COADREAD), a Rare-set diagnosis of ModalTune Table 4. The GDC ``primary_diagnosis``
  string and ``project_id`` follow from the subtype (e.g. NSCLC class 1 -> TCGA-LUSC,
  "Squamous cell carcinoma, NOS"); :data:`DIAGNOSIS_CLASS` lists the mapping.
* Stage ``g_i`` in {1..4} ~ site stage frequencies, with consistent TNM strings; a few patients have
  the stage hidden (``'--``) in the clinical table (stage remains in the true risk).
* Pathway activities ``a_i`` in R^P: ``a_i = mu[s, c_i] + N(0, I)``; ``mu`` shifts six "subtype
  pathways" per class by +-U(0.8, 1.4). Expression (log2 scale)
  ``x_ig = base_g + batch[s, g] + sum_{p: g in p} load_gp a_ip + N(0, 0.5^2)`` with positive loadings.
  Three "prognostic pathways" (disjoint from the subtype pathways) with signs give the pathway score
  ``r_i = sum_p sign_p a_ip / sqrt(3)``.
* Morphology: K prototype vectors ``P_k`` in R^dim (tissue types; prototype 0 = "high-grade tumour",
  the aggressive one). Patient mixture ``w_i = (f_i, (1 - f_i) Dirichlet(12 pi[s, c_i]))`` with
  ``f_i ~ Beta(1.5, 5)`` and subtype-specific profiles ``pi = softmax(site + class logits)`` (each
  subtype has a signature prototype). Each slide is a blob-shaped tissue region
  on the 20x grid; per prototype a smooth Gaussian random field ``z_k`` is drawn on the grid and each
  patch's mixing weights are ``m = softmax((log w_i + 1.5 z) / 0.5)`` (neighbours share prototypes).
  Patch feature ``h = (m @ P + slide_stain + N(0, noise^2)) * (1 + gamma_s) + delta_s`` where
  ``(gamma_s, delta_s)`` is a per-site batch effect (larger for OOD sites). The morphology fraction
  ``phi_i`` is the realised mean weight of prototype 0 over all of the patient's 20x patches.
* Risk ``eta_i = b_stage z(g_i) + b_path z(r_i) + b_morph z(phi_i)`` (z = within-site
  standardisation); stage is seen only in the clinical table, ``r`` only in expression, ``phi`` only in
  the slides, so each modality alone predicts survival worse than all together.
  Event time ``T = lambda_s (E / exp(eta))^(1/k)``, E ~ Exp(1), Weibull shape k = 1.4; independent
  censoring ``C = lambda_s * U(0.05, 1.3)`` (about 40-50 % events). Observed months = min(T, C) (written
  as days = round(months * 30.44)); the oracle C-index is
  :func:`modaltune.evaluation.metrics.c_index` (Harrell's C; an event tied with a censoring counts
  as comparable) of ``eta`` on the written times, the same function that scores every model.
* Reports name site, diagnosis and stage/TNM (or "not reported") and a histologic grade loosely tied to
  ``phi`` (so text carries a weak morphology proxy).

Everything is drawn from ``numpy.random.default_rng`` streams derived from ``seed``, so the same seed
writes byte-identical files (h5 datasets use ``track_times=False``).

Modules: :mod:`.sites` (site, class and stage tables), :mod:`.genes` (symbols and gene sets),
:mod:`.slides` (tissue, features, h5 files), :mod:`.clinical_text` (barcodes, stage strings,
reports), :mod:`.world` (what all sites share), :mod:`.site_draw` (one site's patients) and
:mod:`.generate` (:func:`make_synthetic`, which writes the tables and ``truth.json``);
:mod:`.writers` holds the table writers every generator shares.

Two more generators plant the structure of particular methods (each module docstring gives the model,
the knobs and the intended orderings):

* :func:`make_pan_cancer` (:mod:`.pan_cancer`, :mod:`.pan_cancer_draw`, :mod:`.report_words`): one TCGA
  project per site (BRCA, LUAD, LUSC, KIRC, KIRP, COAD, STAD, HNSC), risk from a gene program shared by
  all sites, a site-specific morphology prototype and report grade/stage words; OS and PFS
  (``progression`` / ``days_to_progression``); realistic missingness (MICE).
* :func:`make_subspace_cohort` (:mod:`.subspaces`, :mod:`.subspace_draw`): one glioma site with TUMOR_* /
  TME_* gene sets driven by factors z_T / z_E, tumor and microenvironment tissue compartments at 20x and
  10x with per-patch truth, WHO 2021 diagnosis, grade and molecular calls with label noise (DMSF / SML).

:func:`oracle_c_index` (:mod:`.oracle`) scores the planted risk of either on any subset of patients.
"""


from .generate import make_synthetic
from .oracle import oracle_c_index
from .pan_cancer import PAN_CANCER_GROUPING, PAN_CANCER_PATIENTS, PAN_CANCER_SITES, make_pan_cancer
from .sites import DEFAULT_PATIENTS, DIAGNOSIS_CLASS, PROTOTYPE_NAMES, SITES
from .subspaces import GRADES, SUBSPACE_GROUPINGS, WHO_CLASSES, make_subspace_cohort

__all__ = ["SITES", "DIAGNOSIS_CLASS", "PROTOTYPE_NAMES", "DEFAULT_PATIENTS", "make_synthetic",
           "PAN_CANCER_SITES", "PAN_CANCER_PATIENTS", "PAN_CANCER_GROUPING", "make_pan_cancer", "WHO_CLASSES", "GRADES",
           "SUBSPACE_GROUPINGS", "make_subspace_cohort", "oracle_c_index"]
