"""ContinuousPositionBias (separable first layer, tiled hand-written backward) against the plain MLP."""

import pytest
import torch
from torch import nn

from modaltune.encoders import position_bias
from modaltune.encoders.position_bias import ContinuousPositionBias

DT = torch.float64


def _plain(cpb, key_pos, h, w):
    """The MLP applied to every (query, key) pair with autograd: [G, out, h*w, Nk]."""
    axis = {n: torch.linspace(-1, 1, n, dtype=DT) if n > 1 else -torch.ones(1, dtype=DT) for n in (h, w)}
    ys, xs = torch.meshgrid(axis[h], axis[w], indexing="ij")  # one row / column sits at -1, as before
    query = torch.stack((xs, ys), -1).reshape(h * w, 2)
    d = query[None, :, None, :] - key_pos[:, None, :, :]
    return cpb.mlp(torch.sign(d) * torch.log(1.0 + d.abs())).permute(0, 3, 1, 2)


def _setup(out_dim, groups=3, keys=7, seed=0):
    torch.manual_seed(seed)
    cpb = ContinuousPositionBias(hidden=8, out_dim=out_dim).to(DT)
    key_pos = (torch.rand(groups, keys, 2, dtype=DT) * 2.6 - 1.3).requires_grad_()
    return cpb, key_pos


@pytest.mark.parametrize("out_dim", [1, 3])
@pytest.mark.parametrize("h,w,tile", [(6, 5, 2 ** 14), (6, 5, 10), (5, 1, 1), (1, 4, 3)])
def test_values_and_gradients_match_the_plain_mlp(monkeypatch, out_dim, h, w, tile):
    monkeypatch.setattr(position_bias, "_TILE_ROWS", tile)  # tiles of one row, of several, uneven ends
    cpb, key_pos = _setup(out_dim)
    fast = cpb(key_pos, h, w)
    ref = _plain(cpb, key_pos, h, w)
    assert fast.shape == ref.shape == (3, out_dim, h * w, 7)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    upstream = torch.randn_like(ref)
    params = [key_pos, *cpb.parameters()]
    g_fast = torch.autograd.grad((fast * upstream).sum(), params)
    g_ref = torch.autograd.grad((ref * upstream).sum(), params)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck_through_key_positions_and_weights(monkeypatch):
    monkeypatch.setattr(position_bias, "_TILE_ROWS", 10)
    cpb, key_pos = _setup(2, groups=2, keys=4)
    names = [n for n, _ in cpb.named_parameters()]

    def f(kp, *ws):
        return torch.func.functional_call(cpb, dict(zip(names, ws)), (kp, 4, 3))

    assert torch.autograd.gradcheck(f, (key_pos, *[p.detach().requires_grad_() for p in cpb.parameters()]))


def test_relu_kinks_get_no_gradient_through_inactive_units():
    cpb, key_pos = _setup(1)
    with torch.no_grad():  # every hidden unit of layer 2 dead: the bias is b3 and only b3 learns
        cpb.mlp[2].bias.fill_(-1e6)
    out = cpb(key_pos, 4, 4)
    torch.testing.assert_close(out, cpb.mlp[4].bias.expand_as(out))
    out.sum().backward()
    assert key_pos.grad.abs().max() == 0
    assert cpb.mlp[0].weight.grad.abs().max() == 0 and cpb.mlp[2].weight.grad.abs().max() == 0
    assert cpb.mlp[4].bias.grad.item() == out.numel()


def test_state_dict_is_that_of_the_plain_sequential_mlp():
    plain = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    cpb = ContinuousPositionBias()
    cpb.mlp.load_state_dict(plain.state_dict())
    assert set(cpb.state_dict()) == {f"mlp.{k}" for k in plain.state_dict()}
