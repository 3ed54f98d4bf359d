"""Loss functions shared by the methods.

- :func:`kl_text_loss`: ModalTune's text-distillation KL (paper Eq. 5, reference code form).
- :func:`nll_survival_loss` / :func:`survival_risk`: discrete-time survival (Zadeh & Schmid 2020,
  as used by SurvPath / MCAT / MICE).
- :func:`cox_ph_loss`: negative Cox partial log-likelihood with Breslow ties.
- :func:`supcon_loss`: supervised contrastive loss over several views (modalities) per sample.
- :func:`multiview_contrastive`: MICE's contrastive loss over a ragged set of modality tokens.
- :func:`cross_entropy`: cross-entropy accepting a single unbatched logit vector.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["balanced_class_weights", "kl_text_loss", "nll_survival_loss", "survival_risk", "cox_ph_loss", "supcon_loss",
           "multiview_contrastive", "CONTRASTIVE_FORMS", "cross_entropy"]


def kl_text_loss(z: torch.Tensor, y: torch.Tensor, scale: float = 10.0, temperature: float = 1.0) -> torch.Tensor:
    """KL divergence between the feature-softmax of text targets and of model outputs.

    Both ``z`` (model, ``[T, D]``) and ``y`` (projected text, ``[T, D]``) are L2-normalised over
    the feature dimension; the loss is ``KLDivLoss(reduction="sum")(log_softmax(z / t), softmax(y / t))``
    (i.e. ``sum softmax(y/t) * (log softmax(y/t) - log_softmax(z/t))``) times ``scale`` (10),
    divided by the number of tasks ``T`` (paper Eq. 5 averages over tasks; the reference code
    sums, a constant factor ``T``). A 1-D input counts as one task.

    ``temperature`` ``t`` is 1 in the paper. The entries of a unit vector of width ``D`` are about
    ``1/sqrt(D)`` (0.09 at 128), so at ``t = 1`` both softmaxes are within a few per cent of uniform and
    the loss is, to second order, ``scale / (2 D)`` times the squared distance of the centred vectors;
    a smaller ``t`` sharpens both distributions (see ``benchmarks/README.md``, issue 15 ablation).
    """
    if z.dim() == 1:
        z = z.unsqueeze(0)
    if y.dim() == 1:
        y = y.unsqueeze(0)
    if z.shape != y.shape:
        raise ValueError(f"kl_text_loss: z {tuple(z.shape)} and y {tuple(y.shape)} differ in shape")
    if not temperature > 0:
        raise ValueError(f"kl_text_loss: temperature must be positive, got {temperature}")
    z = F.normalize(z.float(), dim=-1) / temperature
    y = F.normalize(y.float(), dim=-1) / temperature
    kl = F.kl_div(F.log_softmax(z, dim=-1), F.softmax(y, dim=-1), reduction="sum")
    return kl * scale / z.shape[0]


def nll_survival_loss(hazard_logits: torch.Tensor, y_bin: torch.Tensor, event: torch.Tensor,
                      alpha: float = 0.4, eps: float = 1e-7) -> torch.Tensor:
    """Discrete-time negative log-likelihood (Zadeh & Schmid; SurvPath's ``NLLSurvLoss``).

    Args:
        hazard_logits: ``[K]`` or ``[B, K]`` logits; hazards ``h = sigmoid(logits)``.
        y_bin: ``[]`` or ``[B]`` bin index of the event / censoring time.
        event: ``[]`` or ``[B]`` 1 = event observed, 0 = censored (``c = 1 - event``).
        alpha: weight of the extra uncensored term:
            ``(1 - alpha) * (censored + uncensored) + alpha * uncensored``.

    With ``S = cumprod(1 - h)`` and ``S_pad = [1, S]``: uncensored ``-log S_pad[y] - log h[y]``;
    censored ``-log S_pad[y + 1]``. Returns the mean over the batch.
    """
    if hazard_logits.dim() == 1:
        hazard_logits = hazard_logits.unsqueeze(0)
    b = hazard_logits.shape[0]
    y = y_bin.reshape(-1).long().to(hazard_logits.device)
    c = 1.0 - event.reshape(-1).float().to(hazard_logits.device)
    if y.numel() != b or c.numel() != b:
        raise ValueError("nll_survival_loss: y_bin/event must have one entry per row of hazard_logits")
    h = torch.sigmoid(hazard_logits.float())
    s = torch.cumprod(1.0 - h, dim=1)
    s_pad = torch.cat([torch.ones_like(s[:, :1]), s], dim=1)
    y = y.unsqueeze(1)
    c = c.unsqueeze(1)
    uncensored = -(1.0 - c) * (torch.log(s_pad.gather(1, y).clamp(min=eps))
                               + torch.log(h.gather(1, y).clamp(min=eps)))
    censored = -c * torch.log(s_pad.gather(1, y + 1).clamp(min=eps))
    loss = (1.0 - alpha) * (censored + uncensored) + alpha * uncensored
    return loss.mean()


def survival_risk(hazard_logits: torch.Tensor) -> torch.Tensor:
    """Risk = ``-sum_k S_k`` with ``S = cumprod(1 - sigmoid(logits))`` (higher = shorter survival)."""
    s = torch.cumprod(1.0 - torch.sigmoid(hazard_logits.float()), dim=-1)
    return -s.sum(dim=-1)


def cox_ph_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), averaged over events.

    ``-(1/n_events) * sum_{i: event} [risk_i - log sum_{j: t_j >= t_i} exp(risk_j)]``.
    A batch without events returns ``0 * risk.sum()`` (a zero that keeps the graph).
    """
    risk = risk.reshape(-1).float()
    time = time.reshape(-1).to(risk.device).float()
    event = event.reshape(-1).to(risk.device).float()
    n_events = event.sum()
    if n_events.item() == 0:
        return risk.sum() * 0.0
    order = torch.argsort(time, descending=True)
    r, t, e = risk[order], time[order], event[order]
    log_cum = torch.logcumsumexp(r, dim=0)
    # Breslow: the risk set of t_i includes every tied time, i.e. the last position of its tie group.
    # times sorted descending -> -t ascending; count of j with t_j >= t_i, minus one = last index
    last = torch.searchsorted(-t.contiguous(), -t.contiguous(), right=True) - 1
    log_risk_set = log_cum[last]
    return -((r - log_risk_set) * e).sum() / n_events


def supcon_loss(features: torch.Tensor, labels: torch.Tensor | None = None, temperature: float = 0.1,
                base_temperature: float | None = None) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, ``contrast_mode="all"``) across views.

    Args:
        features: ``[B, M, D]`` -- ``M`` views (e.g. modalities) of each of ``B`` samples; they are
            L2-normalised here.
        labels: ``[B]``; samples with equal labels are positives. ``None`` = each sample is its own
            class (its ``M`` views are the only positives).
        temperature: softmax temperature (MICE: 0.1).
        base_temperature: if given, the loss is multiplied by ``temperature / base_temperature``
            (Khosla's reference code); ``None`` = no rescaling.

    Anchors without any positive are left out; returns the mean over the remaining anchors
    (0 with the graph kept when there are none).
    """
    if features.dim() != 3:
        raise ValueError("supcon_loss expects features [B, M, D]")
    b, m, _ = features.shape
    device = features.device
    if labels is None:
        labels = torch.arange(b, device=device)
    labels = labels.reshape(-1).to(device)
    feats = F.normalize(features.float(), dim=-1).reshape(b * m, -1)      # view-major per sample
    lab = labels.repeat_interleave(m)
    logits = feats @ feats.t() / temperature
    self_mask = torch.eye(b * m, dtype=torch.bool, device=device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (lab.unsqueeze(0) == lab.unsqueeze(1)) & ~self_mask
    n_pos = pos.sum(1)
    keep = n_pos > 0
    if not bool(keep.any()):
        return features.sum() * 0.0
    mean_log_prob_pos = (log_prob.masked_fill(~pos, 0.0)).sum(1)[keep] / n_pos[keep]
    loss = -mean_log_prob_pos
    if base_temperature is not None:
        loss = loss * (temperature / base_temperature)
    return loss.mean()


CONTRASTIVE_FORMS = ("supcon_out", "infonce_in")


def multiview_contrastive(features: torch.Tensor, owner: torch.Tensor, temperature: float = 0.1,
                          form: str = "supcon_out") -> torch.Tensor:
    """MICE's multi-modal contrastive loss over the real unimodal tokens of a batch (ragged views).

    Every token is an anchor; its positives are the other tokens of the same patient (``owner``),
    its negatives every token of the other patients; itself is excluded. Tokens are L2-normalised
    and the logits are ``cos / temperature`` (MICE: 0.1), computed in fp32. The caller passes only
    *real* tokens: synthesised tokens of missing modalities must not be contrasted.

    Args:
        features: ``[M, D]`` tokens (any number per patient).
        owner: ``[M]`` patient index of each token.
        temperature: softmax temperature.
        form: ``"supcon_out"`` (the official code, SupCon's "outside" form): the anchor's loss is
            ``-mean_{p in P} log softmax_p`` over all non-self tokens; ``"infonce_in"`` (the paper's
            Eq. 1): ``-log (sum_{p in P} exp l_p / sum_{j != a} exp l_j)``.

    Anchors without a positive (a patient with one real modality) are left out of the mean; the
    code counts them as zeros, which only rescales the loss by the fraction of such anchors (spec
    ``mice.md`` (c), (i) 16). Their tokens still serve as negatives of the other anchors, as in the
    code. With no anchor left the loss is ``0 * features.sum()`` (zero, graph kept).

    Returns:
        The mean loss over anchors with at least one positive (a scalar).
    """
    if form not in CONTRASTIVE_FORMS:
        raise ValueError(f"multiview_contrastive form must be one of {CONTRASTIVE_FORMS}, got {form!r}")
    if features.dim() != 2 or owner.reshape(-1).numel() != features.shape[0]:
        raise ValueError("multiview_contrastive expects features [M, D] and owner [M]")
    m = features.shape[0]
    owner = owner.reshape(-1).to(features.device)
    self_mask = torch.eye(m, dtype=torch.bool, device=features.device)
    pos = (owner.unsqueeze(0) == owner.unsqueeze(1)) & ~self_mask
    keep = pos.any(1)
    if not bool(keep.any()):
        return features.sum() * 0.0
    z = F.normalize(features.float(), dim=-1)
    # only anchors with a positive: a row of -inf would put NaN into the backward pass
    logits = (z[keep] @ z.t() / float(temperature)).masked_fill(self_mask[keep], float("-inf"))
    pos = pos[keep]
    log_denominator = torch.logsumexp(logits, dim=1)
    if form == "supcon_out":
        log_prob = logits - log_denominator.unsqueeze(1)
        per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(1) / pos.sum(1)
    else:
        per_anchor = log_denominator - torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=1)
    return per_anchor.mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """``F.cross_entropy`` that also accepts unbatched ``[C]`` logits with a scalar target."""
    if logits.dim() == 1:
        logits = logits.unsqueeze(0)
    return F.cross_entropy(logits.float(), target.reshape(-1).long().to(logits.device), weight=weight)


def balanced_class_weights(info, n_out: int) -> torch.Tensor:
    """One weight per subtype logit: ``max_k n_k / n_c`` within each site's slice of the head.

    The counts are ``info.train_class_counts`` (training patients only, so validation and test
    patients never change a weight); a class without training patients weighs 1, and so does every
    logit when no counts are known.
    """
    w = torch.ones(max(1, int(n_out)))
    for site, counts in (info.train_class_counts or {}).items():
        sl = info.subtype_slice(site)
        top = max(counts, default=0)
        for c, n in enumerate(counts[: sl.stop - sl.start]):
            w[sl.start + c] = top / n if n > 0 else 1.0
    return w

