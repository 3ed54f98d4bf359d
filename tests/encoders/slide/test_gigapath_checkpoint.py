"""Tests of loading Prov-GigaPath's slide-encoder checkpoint."""

from __future__ import annotations

import pytest
import torch

from modaltune.encoders.slide.config import LongNetConfig
from modaltune.encoders.slide.gigapath_checkpoint import load_gigapath_checkpoint
from modaltune.encoders.slide.longnet import LongNetSlideEncoder
from modaltune.errors import InputError

torch.set_num_threads(1)


def _tiny(**kw) -> LongNetConfig:
    base = dict(dim=32, depth=2, heads=4, ffn_dim=64)
    base.update(kw)
    return LongNetConfig.small(16, **base)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def gigapath_shapes(in_dim: int, dim: int, depth: int, ffn: int) -> dict[str, tuple[int, ...]]:
    """State-dict names and shapes of GigaPath's slide encoder, written out independently."""
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dim),
        "patch_embed.proj.weight": (dim, in_dim), "patch_embed.proj.bias": (dim,),
        "encoder.layer_norm.weight": (dim,), "encoder.layer_norm.bias": (dim,),
        "norm.weight": (dim,), "norm.bias": (dim,),
    }
    for i in range(depth):
        p = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = (dim, dim)
            shapes[p + f"self_attn.{proj}.bias"] = (dim,)
        for ln_name, width in (("self_attn.inner_attn_ln", dim), ("self_attn_layer_norm", dim),
                               ("ffn.ffn_layernorm", ffn), ("final_layer_norm", dim)):
            shapes[p + ln_name + ".weight"] = (width,)
            shapes[p + ln_name + ".bias"] = (width,)
        shapes[p + "ffn.fc1.weight"] = (ffn, dim)
        shapes[p + "ffn.fc1.bias"] = (ffn,)
        shapes[p + "ffn.fc2.weight"] = (dim, ffn)
        shapes[p + "ffn.fc2.bias"] = (dim,)
    return shapes


def test_gigapath_preset_has_gigapath_keys_and_shapes():
    with torch.device("meta"):
        model = LongNetSlideEncoder(LongNetConfig.gigapath())
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == gigapath_shapes(1536, 768, 12, 3072)


def test_synthetic_gigapath_state_dict_loads_strictly(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s in gigapath_shapes(16, 32, 2, 64).items()}
    path = tmp_path / "slide_encoder.pth"
    torch.save({"model": sd}, path)
    model = LongNetSlideEncoder(_tiny())
    missing, unexpected = load_gigapath_checkpoint(model, path, strict=True)
    assert missing == [] and unexpected == []
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)
    # a bare state dict works too
    torch.save(sd, tmp_path / "bare.pth")
    assert load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), tmp_path / "bare.pth", strict=True) == ([], [])


def test_wrong_width_checkpoint_raises_naming_the_key(tmp_path):
    sd = {k: torch.zeros(s) for k, s in gigapath_shapes(16, 64, 2, 128).items()}
    path = tmp_path / "slide_encoder.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(InputError, match=r"cls_token.*\(1, 1, 64\).*\(1, 1, 32\).*preset"):
        load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), path)


def test_missing_checkpoint_and_partial_checkpoint(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), tmp_path / "nope.pth")
    sd = {k: torch.zeros(s) for k, s in gigapath_shapes(16, 32, 2, 64).items()}
    sd.pop("norm.weight")
    sd["decoder.extra"] = torch.zeros(3)
    torch.save({"model": sd}, tmp_path / "partial.pth")
    with pytest.warns(Warning, match="1 missing and 1 unexpected"):
        missing, unexpected = load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), tmp_path / "partial.pth")
    assert missing == ["norm.weight"] and unexpected == ["decoder.extra"]
    with pytest.raises(InputError, match="do not match"):
        load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), tmp_path / "partial.pth", strict=True)
