"""MICE's noisy top-k router (spec mice.md (b) 6, (i) 15, (j) 4): kept weights are softmax entries,
eval is noise-free, training noise is mu + eps * sigma, and the two switches do what they say."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from modaltune.errors import ConfigError
from modaltune.methods.mice.router import Router, top_k_weights

E, KEEP = 15, 9


def _router(**kw) -> Router:
    torch.manual_seed(0)
    r = Router(dim=32, n_experts=E, keep_k=KEEP, hidden=8, **kw)
    with torch.no_grad():
        r.gate.weight.mul_(5.0)          # spread the logits so top-k is unambiguous
    return r


def test_exactly_keep_k_nonzero_weights_equal_to_the_softmax_entries():
    r = _router().eval()
    u = torch.randn(6, 32)
    w, gamma = r(u)
    mu, _, g = r.gate_outputs(u)
    soft = torch.softmax(mu, -1)
    assert w.shape == (6, E) and gamma.shape == (6,)
    assert ((w != 0).sum(1) == KEEP).all()
    kept = w != 0
    torch.testing.assert_close(w[kept], soft[kept], rtol=0, atol=0)
    # the kept ones are the keep_k largest; the rest of the mass is dropped (no renormalisation)
    assert (soft[~kept].reshape(6, -1).max(1).values <= soft.masked_fill(~kept, 2).min(1).values).all()
    assert (w.sum(1) < 1 - 1e-4).all()
    torch.testing.assert_close(gamma, g)


def test_eval_is_deterministic_and_noise_free():
    r = _router().eval()
    u = torch.randn(4, 32)
    w1, _ = r(u)
    torch.manual_seed(123)
    w2, _ = r(u, noise=torch.randn(4, E) * 100)     # noise is ignored in eval mode
    assert torch.equal(w1, w2)
    torch.testing.assert_close(w1, top_k_weights(r.gate_outputs(u)[0], KEEP), rtol=0, atol=0)


def test_training_noise_is_mu_plus_eps_sigma_and_sigma_zero_equals_eval():
    r = _router().train()
    u = torch.randn(4, 32)
    eps = torch.randn(4, E, generator=torch.Generator().manual_seed(1))
    mu, sigma, _ = r.gate_outputs(u)
    assert (sigma < 0).any()                        # raw sigma, as the code: no softplus by default
    torch.testing.assert_close(r(u, noise=eps)[0], top_k_weights(mu + eps * sigma, KEEP), rtol=0, atol=0)
    torch.manual_seed(5)
    a = r(u)[0]
    torch.manual_seed(5)
    assert torch.equal(a, r(u)[0])                  # drawn from the global generator: seeded = repeatable
    assert not torch.equal(a, r.eval()(u)[0])        # and it is noise
    with torch.no_grad():                           # sigma = 0: the sigma rows of the gate produce 0
        r.gate.weight[E:2 * E].zero_()
        r.gate.bias[E:2 * E].zero_()
    assert torch.equal(r.train()(u)[0], r.eval()(u)[0])


def test_softplus_noise_switch():
    r = _router(softplus_noise=True)
    u = torch.randn(4, 32)
    _, sigma, _ = r.gate_outputs(u)
    raw = r.gate(torch.cat([r.branch_a(u), r.branch_b(u)], -1))[:, E:2 * E]
    torch.testing.assert_close(sigma, F.softplus(raw))
    assert (sigma > 0).all()


def test_renormalise_switch():
    r = _router(renormalise=True).eval()
    u = torch.randn(4, 32)
    w, _ = r(u)
    plain = top_k_weights(r.gate_outputs(u)[0], KEEP)
    assert ((w != 0).sum(1) == KEEP).all()
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    torch.testing.assert_close(w, plain / plain.sum(1, keepdim=True))


def test_noise_switch_off_routes_on_mu_in_training():
    noisy, quiet = _router().train(), _router(noise=False).train()   # same seed: same weights
    u = torch.randn(4, 32)
    eps = torch.randn(4, E, generator=torch.Generator().manual_seed(2)) * 10
    assert not torch.equal(noisy(u, noise=eps)[0], noisy.eval()(u)[0])   # the default adds the noise
    w, gamma = quiet(u, noise=eps)                                      # off: the draw is ignored
    torch.testing.assert_close(w, top_k_weights(quiet.gate_outputs(u)[0], KEEP), rtol=0, atol=0)
    assert torch.equal(w, quiet.eval()(u)[0])
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    quiet.train()(u)                                                    # and nothing is drawn
    assert torch.equal(torch.rand(1), before)
    (w.sum() + gamma.sum()).backward()
    assert quiet.gate.weight.grad[:E].abs().sum() > 0                   # mu still learns
    assert quiet.gate.weight.grad[E:2 * E].abs().sum() == 0             # sigma is unused


def test_gradient_reaches_every_softmax_entry_but_not_through_the_mask():
    r = _router().eval()
    u = torch.randn(1, 32, requires_grad=True)
    w, gamma = r(u)
    (w.sum() + gamma.sum()).backward()
    assert u.grad.abs().sum() > 0 and r.gate.weight.grad[:E].abs().sum() > 0


def test_keep_k_is_checked():
    with pytest.raises(ConfigError, match="keep_k"):
        Router(dim=8, n_experts=3, keep_k=4, hidden=4)
    with pytest.raises(ConfigError, match="keep_k"):
        top_k_weights(torch.zeros(2, 3), 0)
