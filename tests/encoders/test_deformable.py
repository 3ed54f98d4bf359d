"""DeformableAttention2D against a slow loop reference written from the spec (disentangled.md (b), (j) 1)."""

import math

import pytest
import torch
from torch.func import functional_call

from modaltune.encoders.deformable import DeformableAttention2D
from modaltune.errors import ConfigError, InputError

DT = torch.float64


def _module(dim=16, dim_head=4, heads=4, groups=4, seed=0, offset_gain=10.0, dropout=0.0):
    torch.manual_seed(seed)
    m = DeformableAttention2D(dim=dim, dim_head=dim_head, heads=heads, offset_groups=groups,
                              dropout=dropout).to(DT)
    with torch.no_grad():  # make the offsets large enough to move points by whole cells
        m.to_offsets[2].weight.mul_(offset_gain)
    return m.eval()


# ------------------------------------------------------------------------------ loop reference
def _gelu(x):
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _grouped_1x1(weight, x, groups):
    """out[o, y, x] = sum_c W[o, c] * x[g*cin + c, y, x] for output channel o of group g."""
    cout, cin = weight.shape[0], weight.shape[1]
    per_group_out = cout // groups
    out = torch.zeros(cout, *x.shape[1:], dtype=DT)
    for o in range(cout):
        g = o // per_group_out
        for c in range(cin):
            out[o] += weight[o, c, 0, 0] * x[g * cin + c]
    return out


def _bilinear(img, nx, ny):
    """grid_sample(bilinear, zeros, align_corners=False) of img [C, H, W] at one normalised point."""
    c, h, w = img.shape
    ix = ((nx + 1.0) * w - 1.0) / 2.0
    iy = ((ny + 1.0) * h - 1.0) / 2.0
    x0, y0 = math.floor(ix), math.floor(iy)
    out = torch.zeros(c, dtype=DT)
    for yy, wy in ((y0, 1.0 - (iy - y0)), (y0 + 1, iy - y0)):
        for xx, wx in ((x0, 1.0 - (ix - x0)), (x0 + 1, ix - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[:, yy, xx]
    return out


def _cpb(m, d):
    lin1, lin2, lin3 = m.cpb.mlp[0], m.cpb.mlp[2], m.cpb.mlp[4]
    z = torch.sign(d) * torch.log(1.0 + d.abs())
    z = torch.relu(lin1.weight @ z + lin1.bias)
    z = torch.relu(lin2.weight @ z + lin2.bias)
    return lin3.weight @ z + lin3.bias


def reference(m, q_map, kv_map):
    """Per-sample loops: returns out [B, C, H, W], attention [B, heads, HW, n_keys], points."""
    b_size, c, h, w = q_map.shape
    g, heads, dh = m.offset_groups, m.heads, m.dim_head
    inner = heads * dh
    od, cg, hpg = inner // g, c // g, heads // g
    conv, proj = m.to_offsets[0], m.to_offsets[2]
    k_size, stride, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    lh = (h + 2 * pad - k_size) // stride + 1
    lw = (w + 2 * pad - k_size) // stride + 1
    outs, attns, pts_all = [], [], []
    with torch.no_grad():
        for b in range(b_size):
            q = _grouped_1x1(m.to_q.weight, q_map[b], g)
            points = torch.zeros(g, lh, lw, 2, dtype=DT)
            sampled = torch.zeros(c, lh, lw, dtype=DT)
            for gi in range(g):
                qg = q[gi * od:(gi + 1) * od]
                for i in range(lh):
                    for j in range(lw):
                        act = torch.zeros(od, dtype=DT)
                        for ch in range(od):  # explicit depthwise convolution sum, zero padding
                            s = conv.bias[ch].item()
                            for u in range(k_size):
                                for v in range(k_size):
                                    y, x = i * stride + u - pad, j * stride + v - pad
                                    if 0 <= y < h and 0 <= x < w:
                                        s += conv.weight[ch, 0, u, v].item() * qg[ch, y, x].item()
                            act[ch] = _gelu(s)
                        off = torch.tanh(proj.weight[:, :, 0, 0] @ act) * m.offset_scale
                        px, py = j + off[0], i + off[1]
                        nx, ny = 2 * px / max(lw - 1, 1) - 1, 2 * py / max(lh - 1, 1) - 1
                        points[gi, i, j] = torch.stack((nx, ny))
                        sampled[gi * cg:(gi + 1) * cg, i, j] = _bilinear(kv_map[b, gi * cg:(gi + 1) * cg], nx, ny)
            k = _grouped_1x1(m.to_k.weight, sampled, g).reshape(inner, lh * lw)
            v = _grouped_1x1(m.to_v.weight, sampled, g).reshape(inner, lh * lw)
            qf = q.reshape(inner, h * w)
            attn = torch.zeros(heads, h * w, lh * lw, dtype=DT)
            out = torch.zeros(inner, h * w, dtype=DT)
            for hh in range(heads):
                gi, o = hh // hpg, hh % hpg
                key_pos = points[gi].reshape(lh * lw, 2)
                for n in range(h * w):
                    qpos = torch.tensor([2 * (n % w) / (w - 1) - 1, 2 * (n // w) / (h - 1) - 1], dtype=DT)
                    logits = torch.zeros(lh * lw, dtype=DT)
                    for mm in range(lh * lw):
                        dot = (qf[hh * dh:(hh + 1) * dh, n] * k[hh * dh:(hh + 1) * dh, mm]).sum() / math.sqrt(dh)
                        logits[mm] = dot + _cpb(m, qpos - key_pos[mm])[o]
                    a = torch.exp(logits - logits.max())
                    a = a / a.sum()
                    attn[hh, n] = a
                    out[hh * dh:(hh + 1) * dh, n] = v[hh * dh:(hh + 1) * dh] @ a
            final = m.to_out.weight[:, :, 0, 0] @ out + m.to_out.bias[:, None]
            outs.append(final.reshape(c, h, w))
            attns.append(attn)
            pts_all.append(points)
    return torch.stack(outs), torch.stack(attns), torch.stack(pts_all)


@pytest.mark.parametrize("grid,heads,groups", [(8, 4, 4), (12, 4, 2)])
def test_matches_loop_reference(grid, heads, groups):
    m = _module(heads=heads, groups=groups)
    torch.manual_seed(1)
    q = torch.randn(2, 16, grid, grid, dtype=DT)
    kv = torch.randn(2, 16, grid, grid, dtype=DT)
    out, attn, pos = m(q, kv, return_attention=True)
    ref_out, ref_attn, ref_pos = reference(m, q, kv)
    assert attn.shape == (2, heads, grid * grid, ref_attn.shape[-1])
    torch.testing.assert_close(pos, ref_pos, atol=1e-9, rtol=0)
    torch.testing.assert_close(attn, ref_attn, atol=1e-9, rtol=0)
    torch.testing.assert_close(out, ref_out, atol=1e-9, rtol=0)
    # the offsets must actually move points off the lattice, or the test would not see them
    lattice = reference(_zero_offsets(m), q, kv)[2]
    assert (pos - lattice).abs().max() > 0.1


def _zero_offsets(m):
    m0 = _module(heads=m.heads, groups=m.offset_groups)
    m0.load_state_dict(m.state_dict())
    with torch.no_grad():
        m0.to_offsets[2].weight.zero_()
    return m0


def test_token_input_equals_row_major_map():
    m = _module()
    x = torch.randn(2, 64, 16, dtype=DT)
    out_tokens = m(x)
    out_map = m(x.transpose(1, 2).reshape(2, 16, 8, 8))
    assert out_tokens.shape == (2, 64, 16)
    torch.testing.assert_close(out_tokens, out_map.flatten(2).transpose(1, 2), atol=0, rtol=0)


def test_zero_offset_weights_sample_on_lattice():
    m = _zero_offsets(_module())
    x = torch.randn(1, 16, 12, 12, dtype=DT)
    _, _, pos = m(x, return_attention=True)
    lat = torch.linspace(-1, 1, 3, dtype=DT)  # 3 x 3 lattice for a 12 grid, normalised by (3 - 1)
    expected = torch.stack(torch.meshgrid(lat, lat, indexing="xy"), dim=-1)  # [..., (x, y)]
    assert torch.equal(pos, expected.expand_as(pos))


def test_gradcheck_through_offsets():
    m = _module(dim=4, dim_head=2, heads=2, groups=2)
    params = {k: v.detach() for k, v in m.named_parameters()}
    w_off = params.pop("to_offsets.2.weight").clone().requires_grad_(True)
    q = torch.randn(1, 4, 8, 8, dtype=DT, requires_grad=True)
    kv = torch.randn(1, 4, 8, 8, dtype=DT, requires_grad=True)

    def f(w, q_src, kv_src):
        return functional_call(m, {**params, "to_offsets.2.weight": w}, (q_src, kv_src))

    # full Jacobian for the offset weights (they reach the output only through the offsets) of
    # 4 fixed random projections of the output; a random-projection check for the input maps
    proj = torch.randn(4 * 64, 4, dtype=DT)
    assert torch.autograd.gradcheck(lambda w: f(w, q, kv).flatten() @ proj, (w_off,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(f, (w_off, q, kv), eps=1e-6, atol=1e-6, fast_mode=True)
    f(w_off, q, kv).sum().backward()
    assert w_off.grad.abs().sum() > 0


def test_batch_order_invariance():
    m = _module()
    x = torch.randn(3, 16, 8, 8, dtype=DT)
    kv = torch.randn(3, 16, 8, 8, dtype=DT)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(m(x, kv)[perm], m(x[perm], kv[perm]), atol=1e-12, rtol=0)


def test_bf16_autocast_attention_close_to_fp32():
    torch.manual_seed(0)
    m = DeformableAttention2D(dropout=0.0).eval()  # paper setting, 12 x 12 grid (9 keys)
    x = torch.randn(2, 144, 128)
    _, attn32, pos32 = m(x, return_attention=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16, attn16, pos16 = m(x, return_attention=True)
    assert attn16.dtype == torch.float32 and pos16.dtype == torch.float32
    assert out16.dtype == torch.bfloat16
    assert (attn16 - attn32).abs().max() < 1e-2
    assert (pos16 - pos32).abs().max() < 1e-2


def test_paper_setting_parameter_count_and_shapes():
    m = DeformableAttention2D()
    assert sum(p.numel() for p in m.parameters()) == 93_921
    out, attn, pos = m(torch.randn(1, 128, 8, 8), return_attention=True)
    assert out.shape == (1, 128, 8, 8) and attn.shape == (1, 8, 64, 4) and pos.shape == (1, 8, 2, 2, 2)


def test_bad_inputs_raise():
    m = _module()
    with pytest.raises(InputError, match="N = 63") as e:
        m(torch.randn(1, 63, 16, dtype=DT))
    assert "fixed_bag" in str(e.value)
    with pytest.raises(InputError, match="channels"):
        m(torch.randn(1, 64, 8, dtype=DT))
    with pytest.raises(InputError, match="differ"):
        m(torch.randn(1, 16, 8, 8, dtype=DT), torch.randn(1, 16, 12, 12, dtype=DT))
    with pytest.raises(ConfigError):
        DeformableAttention2D(heads=6, offset_groups=4)
    with pytest.raises(ConfigError):
        DeformableAttention2D(offset_kernel_size=5)
