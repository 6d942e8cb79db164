"""``precision="bf16-weights"``: the frozen slide encoders with weights stored in bfloat16 (issue 19 item 1).

Error bound: the half-precision bound of the reference tests, ``4 * eps_bf16 * max|ref|`` (4 rounding steps of
the output's scale), here against the float32 path and against the official float64 outputs of the reduced
reference models. Unlike autocast, the residual stream is also bfloat16, so this is measured, not assumed:
reduced GigaPath 0.038 (bf16 autocast: 0.023) of a bound of 0.11, reduced TITAN 0.018 (autocast: 0.016) of 0.066.
"""
from __future__ import annotations

import pytest
import torch
from slide_refs import GIGAPATH_REDUCED, TITAN_REDUCED, load_ref

from modaltune.encoders.slide import create_slide_encoder
from modaltune.encoders.slide.precision import SLIDE_PRECISIONS, apply_precision
from modaltune.errors import ConfigError

EPS16 = torch.finfo(torch.bfloat16).eps
HALF_ULPS = 4

CASES = {
    "gigapath": (GIGAPATH_REDUCED, dict(in_dim=1536, embed_dim=256, depth=8, num_heads=16, ffn_dim=1024), {}, "cls_default"),
    "titan": (TITAN_REDUCED, dict(embed_dim=192), {"patch_size_level0": 512}, "slide_embedding"),
}


def _build(name: str, tmp_path, precision: str):
    ref_name, ctor, _, _ = CASES[name]
    path = tmp_path / f"{name}.pt"
    if not path.exists():
        torch.save(load_ref(ref_name)["state_dict"], path)
    return create_slide_encoder(name, checkpoint=path, precision=precision, **ctor).eval()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_weights_within_bound_of_fp32_and_fp64(name, tmp_path):
    ref_name, _, call_kw, field = CASES[name]
    ref = load_ref(ref_name)
    x, c, want64 = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp64"][field]
    m32, m16 = _build(name, tmp_path, "fp32"), _build(name, tmp_path, "bf16-weights")
    with torch.no_grad():
        out32, out16 = m32(x, c, **call_kw), m16(x, c, **call_kw)
    assert out16.dtype == torch.float32 and out16.shape == out32.shape  # float32 out, as the fp32 path
    err32 = float((out16 - out32).abs().max())
    err64 = float((out16.double() - want64).abs().max())
    bound = HALF_ULPS * EPS16 * float(out32.abs().max())
    # lower end: the bf16 path really ran (a float32 run differs from fp32 by ~1e-6, far below 1e-4)
    assert 1e-4 < err32 <= bound, (name, err32, bound)
    assert err64 <= HALF_ULPS * EPS16 * float(want64.abs().max()), (name, err64)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_weights_storage(name, tmp_path):
    m32, m16 = _build(name, tmp_path, "fp32"), _build(name, tmp_path, "bf16-weights")
    assert m32.precision == "fp32" and m16.precision == "bf16-weights"
    p32, p16 = dict(m32.named_parameters()), dict(m16.named_parameters())
    assert p32.keys() == p16.keys()
    for k, w in p16.items():
        # stored once as the bf16 rounding of the loaded float32 weights (a cast, not a float code path)
        assert w.dtype == torch.bfloat16 and not w.requires_grad and torch.equal(w, p32[k].detach().to(torch.bfloat16)), k
        assert p32[k].dtype == torch.float32 and p32[k].requires_grad
    if name == "titan":  # the ALiBi slopes stay float32: the bias is built in float32 as on the fp32 path
        assert m16.slopes.dtype == torch.float32 and torch.equal(m16.slopes, m32.slopes)


def test_unknown_precision_is_a_config_error_before_loading(tmp_path):
    # no checkpoint and no random_init would be an error too: the precision is checked first
    with pytest.raises(ConfigError, match="unknown slide-encoder precision 'fp16'") as e:
        create_slide_encoder("gigapath", precision="fp16")
    assert e.value.where == "slide_encoder.precision" and "bf16-weights" in e.value.fix
    with pytest.raises(ConfigError, match="precision"):
        apply_precision(torch.nn.Linear(2, 2), "bf16")
    assert SLIDE_PRECISIONS == ("fp32", "bf16-weights")


def test_small_encoder_bf16_weights_forward_is_float32():
    """Any registered encoder takes the option; float32 features in, float32 embedding out."""
    torch.manual_seed(0)
    m = create_slide_encoder("small_transformer", in_dim=16, embed_dim=32, depth=2, num_heads=4, precision="bf16-weights").eval()
    x = torch.randn(2, 20, 16)
    c = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij"), -1).reshape(1, 20, 2).expand(2, -1, -1) * 256
    with torch.no_grad():
        out = m(x, c)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_weights_stages_take_float32_tokens(name, tmp_path):
    """The Modal Adapter adds float32 injections between stages: a bf16-weights backbone takes them (cast to
    bf16 at each weight layer), with and without autocast, within the bf16 bound of the all-bf16 stages."""
    ref_name, _, call_kw, _ = CASES[name]
    ref = load_ref(ref_name)
    x, c = ref["inputs"]["features"], ref["inputs"]["coords"]
    m = _build(name, tmp_path, "bf16-weights")
    with torch.no_grad():
        state = m.embed(x, c, **call_kw)
        assert state.tokens.dtype == torch.bfloat16
        s32 = state.with_tokens(state.tokens.float())  # what an adapter's float32 addition produces
        half = m.run_layers(s32, 0, 2)
        out = m.pool(half.with_tokens(half.tokens.float())).float()
        want = m.pool(m.run_layers(state, 0, 2))
        assert want.dtype == torch.float32  # the stages' pool hands float32 to the adapter's heads
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = m.pool(m.run_layers(s32, 0, 2)).float()
    # float32 tokens keep a float32 residual stream (x + bf16 update), so the values differ at the bf16 level only
    bound = HALF_ULPS * EPS16 * float(want.abs().max())
    assert float((out - want).abs().max()) <= bound and float((auto - want).abs().max()) <= bound
