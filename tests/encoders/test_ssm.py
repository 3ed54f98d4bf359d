"""Tests of the pure-torch Mamba block and selective scan (modaltune.encoders.ssm)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modaltune.encoders import ssm_scan
from modaltune.encoders.ssm import (
    Mamba,
    _CausalConvSiLU,
    auto_chunk_size,
    plan_chunks,
    selective_scan,
    selective_scan_ref,
)
from modaltune.errors import ConfigError, InputError


def _scan_inputs(b=2, d=5, n=4, length=37, delta_scale=1.0, dtype=torch.float32, seed=0, gate=False):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, length, d, generator=g, dtype=torch.float64)
    delta = F.softplus(torch.randn(b, length, d, generator=g, dtype=torch.float64)) * delta_scale
    A = -torch.exp(torch.randn(d, n, generator=g, dtype=torch.float64))
    B = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    C = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    D = torch.randn(d, generator=g, dtype=torch.float64)
    z = torch.randn(b, length, d, generator=g, dtype=torch.float64)
    return [t.to(dtype).requires_grad_() for t in (u, delta, A, B, C, D, *([z] if gate else []))]


def _values_and_grads(fn, inputs, weight):
    y = fn(*inputs)
    return [y.detach(), *torch.autograd.grad((y * weight).sum(), inputs)]


@pytest.mark.parametrize("length", [37, 5, 8])  # several chunks, a partial last one; shorter than a chunk; exactly one
def test_chunked_scan_matches_sequential_reference(length):
    inputs = _scan_inputs(length=length)
    weight = torch.randn(2, length, 5, generator=torch.Generator().manual_seed(1)) / length
    got = _values_and_grads(lambda *t: selective_scan(*t, chunk_size=8), inputs, weight)
    ref = _values_and_grads(selective_scan_ref, inputs, weight)
    for name, a, b in zip(["y", "du", "ddelta", "dA", "dB", "dC", "dD"], got, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("length, chunk_size", [(37, 8), (5, 8), (16, 8), (300, None)])
def test_scan_with_folded_skip_and_gate_matches_reference(length, chunk_size):
    # y = (<C, h> + D u) * SiLU(z) inside the Function: values and all seven gradients, incl. dz
    inputs = _scan_inputs(length=length, gate=True)
    weight = torch.randn(2, length, 5, generator=torch.Generator().manual_seed(1)) / length
    got = _values_and_grads(lambda *t: selective_scan(*t, chunk_size=chunk_size), inputs, weight)
    ref = _values_and_grads(selective_scan_ref, inputs, weight)
    for name, a, b in zip(["y", "du", "ddelta", "dA", "dB", "dC", "dD", "dz"], got, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


def test_auto_chunk_size_keeps_a_chunk_cache_sized():
    assert auto_chunk_size(1, 512, 16) == 16  # MICE: 2^17 state elements per chunk
    assert auto_chunk_size(4, 512, 16) == 4 and auto_chunk_size(64, 512, 16) == 4  # never below 4
    assert auto_chunk_size(1, 5, 4) == 64  # small models: the longest chunks


def test_scan_loop_runs_single_threaded_and_restores_the_thread_count(monkeypatch):
    inputs = _scan_inputs(length=37)
    weight = torch.randn(2, 37, 5) / 37
    in_loop = []
    chunk = ssm_scan._Work.chunk
    monkeypatch.setattr(ssm_scan._Work, "chunk", lambda *a: in_loop.append(torch.get_num_threads()) or chunk(*a))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        got = _values_and_grads(lambda *t: selective_scan(*t, chunk_size=8), inputs, weight)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert in_loop and set(in_loop) == {1}  # forward and backward chunk loops
    for a, b in zip(got, _values_and_grads(selective_scan_ref, inputs, weight)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_cumsum_path_used_when_matmuls_may_be_reduced_precision():
    inputs = _scan_inputs(length=37)
    weight = torch.randn(2, 37, 5) / 37
    ref = _values_and_grads(selective_scan_ref, inputs, weight)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # the triangular GEMMs would lose bits: not used
        got = _values_and_grads(lambda *t: selective_scan(*t, chunk_size=8), inputs, weight)
    finally:
        torch.set_float32_matmul_precision(before)
    for a, b in zip(got[:2], ref[:2]):  # y and du do not go through the other (small) matmuls
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_chunked_scan_is_exact_in_float64_with_decay_limited_chunks():
    # large steps: the chunk ends are set by the decay budget, not by chunk_size
    inputs = _scan_inputs(length=50, delta_scale=6.0, dtype=torch.float64)
    step = (inputs[1] * inputs[2].abs().amax(1)).amax(dim=(0, 2))
    bounds = plan_chunks(step, 16, 10.0)
    assert len(bounds) > math.ceil(50 / 16) and {e - s for s, e in bounds} != {16}
    weight = torch.randn(2, 50, 5, dtype=torch.float64)
    got = _values_and_grads(lambda *t: selective_scan(*t, chunk_size=16, max_chunk_decay=10.0), inputs, weight)
    ref = _values_and_grads(selective_scan_ref, inputs, weight)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-11)


def test_plan_chunks_respects_length_and_decay_budget():
    step = torch.tensor([0.5, 3.0, 30.0, 0.1, 0.1, 2.0, 2.0, 2.5, 9.0, 0.0, 0.0])
    bounds = plan_chunks(step, 3, 4.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(step)
    assert all(e0 == s1 for (_, e0), (s1, _) in zip(bounds, bounds[1:]))
    assert all(e - s <= 3 and float(step[s + 1:e].sum()) <= 4.0 for s, e in bounds)
    assert bounds == [(0, 2), (2, 5), (5, 7), (7, 8), (8, 11)]


@pytest.mark.parametrize("scale, budget", [(200.0, 40.0), (3.0, 120.0)])  # huge single steps; full budgets
def test_large_decays_do_not_overflow(scale, budget):
    u, delta, A, B, C, D = _scan_inputs(length=40)
    with torch.no_grad():
        delta.mul_(scale)  # |delta A| up to ~1e5 per step, or chunks filled up to the budget
        A.mul_(scale / 4)
    y = selective_scan(u, delta, A, B, C, D, chunk_size=64, max_chunk_decay=budget)
    y.square().sum().backward()
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(t.grad).all() for t in (u, delta, A, B, C, D))
    torch.testing.assert_close(y, selective_scan_ref(u, delta, A, B, C, D), atol=1e-4, rtol=1e-4)


def test_scan_saves_no_state_sized_tensor_for_backward():
    u, delta, A, B, C, D = _scan_inputs(b=1, d=8, n=16, length=256, delta_scale=0.01)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        selective_scan(u, delta, A, B, C, chunk_size=32)
    assert saved and max(saved) < 256 * 8 * 16 / 4  # [L, D, N] states are recomputed, never stored
    assert sum(saved) < 3 * 256 * 8 + 2 * 256 * 16 + 8 * 8 * 16 + 8 * 16  # inputs + one state per chunk


def test_scan_with_gate_saves_only_inputs_output_and_chunk_states():
    u, delta, A, B, C, D, z = _scan_inputs(b=1, d=8, n=16, length=256, delta_scale=0.01, gate=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        selective_scan(u, delta, A, B, C, D, z, chunk_size=32)
    assert saved and max(saved) < 256 * 8 * 16 / 4
    assert sum(saved) <= 4 * 256 * 8 + 2 * 256 * 16 + 8 * 8 * 16 + 8 * 16 + 8  # u, delta, z, y, B, C, states, A, D


def test_scan_checks_shapes_and_settings():
    u, delta, A, B, C, _ = _scan_inputs()
    with pytest.raises(InputError, match="time-major"):
        selective_scan(u.transpose(1, 2), delta, A, B, C)
    with pytest.raises(ConfigError):
        selective_scan(u, delta, A, B, C, max_chunk_decay=500.0)


def _small_mamba(**kw):
    torch.manual_seed(0)
    return Mamba(16, d_state=4, chunk_size=8, **kw)


@pytest.mark.parametrize("length, bias", [(9, True), (2, True), (9, False)])  # L < d_conv - 1 too
def test_causal_conv_silu_matches_conv1d_and_gradcheck(length, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, length, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    ref = F.conv1d(x.transpose(1, 2), w[:, None], b, padding=3, groups=5)[..., :length]
    torch.testing.assert_close(_CausalConvSiLU.apply(x, w, b), F.silu(ref).transpose(1, 2))
    assert torch.autograd.gradcheck(lambda *t: _CausalConvSiLU.apply(*t, *([b] if bias else [None])), (x, w))
    if bias:
        assert torch.autograd.gradcheck(lambda t: _CausalConvSiLU.apply(x.detach(), w.detach(), t), (b,))


def test_mamba_is_causal_including_the_convolution():
    m = _small_mamba()
    x = torch.randn(2, 30, 16)
    x2 = x.clone()
    x2[:, 13:] += 3 * torch.randn(2, 17, 16)
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    torch.testing.assert_close(y2[:, :13], y[:, :13], atol=1e-6, rtol=0)
    assert (y2[:, 13] - y[:, 13]).abs().max() > 1e-3  # the perturbed step itself changes at once


def test_state_dict_has_mamba_ssm_names_and_shapes_and_round_trips():
    d_model, d_state, d_conv, expand = 24, 16, 4, 2
    di, r = expand * d_model, math.ceil(d_model / 16)
    expected = {  # mamba_ssm.Mamba v1, bias=False, conv_bias=True
        "in_proj.weight": (2 * di, d_model),
        "conv1d.weight": (di, 1, d_conv),
        "conv1d.bias": (di,),
        "x_proj.weight": (r + 2 * d_state, di),
        "dt_proj.weight": (di, r),
        "dt_proj.bias": (di,),
        "A_log": (di, d_state),
        "D": (di,),
        "out_proj.weight": (d_model, di),
    }
    m = Mamba(d_model)
    sd = m.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    other = Mamba(d_model)
    other.load_state_dict(sd, strict=True)
    x = torch.randn(1, 9, d_model)
    torch.testing.assert_close(other(x), m(x))
    with_bias = Mamba(d_model, bias=True).state_dict()
    assert tuple(with_bias["in_proj.bias"].shape) == (2 * di,) and tuple(with_bias["out_proj.bias"].shape) == (d_model,)


def test_initialisation_follows_mamba_v1():
    torch.manual_seed(0)
    m = Mamba(64, d_state=8, dt_min=1e-3, dt_max=0.1)
    assert m.dt_rank == 4 and m.d_inner == 128
    torch.testing.assert_close(m.A_log.detach(), torch.log(torch.arange(1.0, 9.0)).repeat(128, 1))
    assert torch.equal(m.D.detach(), torch.ones(128))
    assert m.A_log._no_weight_decay and m.D._no_weight_decay
    dt = F.softplus(m.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert m.dt_proj.weight.abs().max() <= 4 ** -0.5
    const = Mamba(64, dt_init="constant", dt_scale=2.0)
    assert torch.allclose(const.dt_proj.weight, torch.full_like(const.dt_proj.weight, 2 * 4 ** -0.5))
    with pytest.raises(ConfigError):
        Mamba(64, dt_init="xavier")


def test_mamba_matches_a_slow_composition_of_its_own_parameters():
    m = _small_mamba()
    x = torch.randn(1, 11, 16)
    xz = x @ m.in_proj.weight.T
    xs, z = xz[..., :32], xz[..., 32:]
    conv = torch.zeros_like(xs)
    w = m.conv1d.weight[:, 0]  # [d_inner, d_conv]; tap k sees x_{t - (d_conv - 1) + k}
    for t in range(11):
        for k in range(4):
            if t - 3 + k >= 0:
                conv[:, t] += xs[:, t - 3 + k] * w[:, k]
    xs = F.silu(conv + m.conv1d.bias)
    dt, B, C = (xs @ m.x_proj.weight.T).split([1, 4, 4], dim=-1)
    delta = F.softplus(dt @ m.dt_proj.weight.T + m.dt_proj.bias)
    y = selective_scan_ref(xs, delta, -torch.exp(m.A_log), B, C, m.D)
    expected = (y * F.silu(z)) @ m.out_proj.weight.T
    torch.testing.assert_close(m(x), expected, atol=1e-5, rtol=1e-5)


def test_mamba_under_bf16_autocast_is_finite_and_close_to_fp32():
    m = _small_mamba()
    x = torch.randn(2, 40, 16)
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
        u, delta, A, B, C, _ = _scan_inputs()
        assert selective_scan(u.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16()).dtype == torch.float32
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_fast_kernel_path_uses_mamba_ssm_conventions(monkeypatch):
    """With fake kernels that follow mamba_ssm's documented API, the CUDA path equals ours."""

    def fake_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        assert u.shape == delta.shape == z.shape and u.shape[1] == A.shape[0]  # [B, D, L]
        assert B.shape == C.shape == (u.shape[0], A.shape[1], u.shape[2])  # [B, N, L]
        delta = F.softplus(delta + delta_bias[:, None]) if delta_softplus else delta
        y = selective_scan_ref(*(t.transpose(1, 2) for t in (u, delta)), A, B.transpose(1, 2), C.transpose(1, 2), D)
        return y.transpose(1, 2) * F.silu(z)

    def fake_conv(x, weight, bias=None, activation=None):
        assert weight.dim() == 2 and activation == "silu"
        return F.silu(F.conv1d(x, weight[:, None], bias, padding=weight.shape[1] - 1, groups=x.shape[1])
                      [..., :x.shape[-1]])

    m = _small_mamba()
    x = torch.randn(2, 13, 16)
    ours = m(x)
    monkeypatch.setattr(Mamba, "_kernels", lambda self, t: (fake_scan, fake_conv))
    torch.testing.assert_close(m(x), ours, atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(Mamba, "_kernels", lambda self, t: (fake_scan, None))
    torch.testing.assert_close(m(x), ours, atol=1e-5, rtol=1e-5)


def test_cpu_never_asks_for_cuda_kernels():
    m = _small_mamba()
    assert m._kernels(torch.zeros(1, 2, 16)) is None
    with pytest.raises(InputError, match="batch"):
        m(torch.zeros(5, 16))
