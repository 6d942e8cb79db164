"""Prov-GigaPath slide encoder against the official reference outputs (shared/reference)."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from slide_refs import GIGAPATH_FULL, GIGAPATH_REDUCED, compare_fields, gigapath_fields, load_ref

import modaltune.layers.attention as att
from modaltune.encoders.slide.gigapath import GigaPathSlideEncoder, dilated_attention
from modaltune.errors import InputError
from modaltune.layers.attention import attention_with_lse, attention_with_lse_reference, lse_backend

# float32 tolerances against the official float32 outputs. Both sides sum in float32, in a
# CPU-dependent kernel order, so the difference is a few float32 ulps of each value:
# * normalised / attention outputs (|x| <= 8: pooled CLS/GAP, all-layer embeddings, LayerNorm'd
#   encoder output, layer-0 branches, lse and merge, embedding input) measure <= 4.4e-6: 1e-5;
# * raw pre-norm residual-stream states grow to |x| ~ 25, where one ulp is 1.9e-6; they measured
#   8.1e-6 on the CI machine and 1.5e-5 / 2.0e-5 (reduced / full) on another CPU, so they use the
#   issue's criterion 1e-4 (~50 ulp at 25).
TOL = 1e-5
TOL_RAW = 1e-4
RAW_FIELDS = {"encoder_states_raw"}
# float64 against the official float64 run. The official FFN GELU runs in float32 even in float64 mode
# (we do the same), so float64 mode is only as precise as one float32 rounding per layer: float64
# inputs that differ by 1e-15 can round to neighbouring float32 values (a 6e-8 relative step) that
# later layers carry to the output. Whether such a flip happens depends on the CPU's float kernels:
# one CPU measured 1.9e-14 (reduced) and 8.3e-9 (full), an AMD EPYC 5.0e-7 (reduced) and 1.7e-6
# (full, raw states at |x| ~ 25). The bound is therefore the float32 one of the fields (above).
REDUCED = GIGAPATH_REDUCED
FULL = GIGAPATH_FULL


def _reduced_model(dtype=torch.float32) -> GigaPathSlideEncoder:
    ref = load_ref(REDUCED)
    m = GigaPathSlideEncoder(in_dim=1536, embed_dim=256, depth=8, num_heads=16, ffn_dim=1024).eval()
    m.load_state_dict(ref["state_dict"], strict=True)
    return m.to(dtype)


def _maxdiff(a, b) -> float:
    return float((a - b).abs().max())


def _check_all_fields(m, x, c, tile_size, expected: dict, tol_of) -> dict[str, Any]:
    """Compute every field of ``expected`` with ``m`` and assert each is within ``tol_of(field)``."""
    ours = gigapath_fields(m, x, c, tile_size, internals="l0_branch_out" in expected)
    diffs = compare_fields(ours, expected)
    bad = {k: d for k, d in diffs.items() if d > tol_of(k)}
    assert not bad, f"fields over tolerance: {bad}"
    return ours


def _fp32_tol(key: str) -> float:
    return TOL_RAW if key in RAW_FIELDS else TOL


def test_reference_files_hold_the_output_blocks_we_test():
    """Every output block of the files is checked by a test below; a new block fails here."""
    assert sorted(load_ref(REDUCED)["outputs"]) == ["fp32", "fp32_batch2", "fp64", "fp64_batch2"]
    assert sorted(load_ref(FULL)["outputs"]) == ["fp32", "fp64"]
    assert len(load_ref(FULL)["outputs"]["fp32"]["encoder_states_raw"]) == 13


def test_reduced_all_outputs_fp32():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c, o = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp32"]
    ours = _check_all_fields(m, x, c, ref["inputs"]["tile_size"], o, _fp32_tol)
    assert [b.shape for b in ours["l0_branch_out"]] == [b.shape for b in o["l0_branch_out"]]
    with torch.no_grad():  # the public calls give exactly the staged values checked above
        assert torch.equal(m(x, c), ours["cls_default"])
        assert torch.equal(m(x, c, global_pool=True), ours["gp_default"])
        assert torch.equal(m.forward_all_layers(x, c), ours["cls_all_layer_embed"])
        assert torch.equal(m.forward_all_layers(x, c, global_pool=True), ours["gp_all_layer_embed"])


def test_reduced_batch2_fp32():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    xb, cb = ref["inputs"]["features_batch2"], ref["inputs"]["coords_batch2"]
    _check_all_fields(m, xb, cb, ref["inputs"]["tile_size"], ref["outputs"]["fp32_batch2"], _fp32_tol)


def test_reduced_fp64_all_internals():
    # official fp64 keeps fp32-rounded positions and fp32 GELU; we mimic both
    ref = load_ref(REDUCED)
    m = _reduced_model(torch.float64)
    inp = ref["inputs"]
    _check_all_fields(m, inp["features"].double(), inp["coords"], inp["tile_size"], ref["outputs"]["fp64"], _fp32_tol)
    _check_all_fields(m, inp["features_batch2"].double(), inp["coords_batch2"], inp["tile_size"],
                      ref["outputs"]["fp64_batch2"], _fp32_tol)


@pytest.fixture(scope="module")
def full_model(gigapath_full_sd) -> GigaPathSlideEncoder:
    m = GigaPathSlideEncoder().eval()
    m.load_state_dict(gigapath_full_sd, strict=True)
    return m


def test_full_size_recipe_weights(full_model):
    ref = load_ref(FULL)
    x, c, o = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp32"]
    ours = _check_all_fields(full_model, x, c, ref["inputs"]["tile_size"], o, _fp32_tol)
    assert ours["encoder_states_raw"].shape[0] == 13
    with torch.no_grad():
        assert torch.equal(full_model(x, c, global_pool=True), ours["gp_default"])


def test_full_size_fp64(full_model):
    ref = load_ref(FULL)
    m = copy.deepcopy(full_model).double()
    x, c = ref["inputs"]["features"].double(), ref["inputs"]["coords"]
    _check_all_fields(m, x, c, ref["inputs"]["tile_size"], ref["outputs"]["fp64"], _fp32_tol)


# Half precision: the official inference runs under fp16 autocast on GPU. Here the reduced model
# runs in bfloat16 / float16 on CPU (same code path as GPU except the attention kernel) against
# the official float64 outputs. The error is a few rounding steps of the output dtype, so the
# bound is 4 units of ``finfo(dtype).eps * max|ref|`` (bf16: 0.11, fp16: 0.014 at max|ref| = 3.6).
# Measured on CPU: bf16 <= 0.045, fp16 <= 7.6e-3 (the official code under CPU autocast: 0.028 and
# 3.6e-3 on the full model, reference README).
HALF_ULPS = 4


def _half_tol(dtype, ref) -> float:
    return HALF_ULPS * torch.finfo(dtype).eps * float(ref.abs().max())


def _skip_if_cpu_lacks(dtype, exc: Exception) -> None:
    if "not implemented" in str(exc).lower():
        pytest.skip(f"this PyTorch build has no CPU {dtype} kernel: {exc}")
    raise exc


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_half_precision_against_fp64(dtype):
    ref = load_ref(REDUCED)
    m = _reduced_model(dtype)
    x, c, o64 = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp64"]
    try:
        with torch.no_grad():
            state = m.run_layers(m.embed(x, c))  # float32 features are cast to the model dtype
            cls, gp = m.pool(state, global_pool=False), m.pool(state, global_pool=True)
            assert torch.equal(m.embed(x.to(dtype), c).tokens, m.embed(x, c).tokens)  # half features: same tokens
    except (RuntimeError, NotImplementedError) as exc:
        _skip_if_cpu_lacks(dtype, exc)
    assert cls.dtype == dtype and gp.dtype == dtype
    for got, want in ((cls, o64["cls_default"]), (gp, o64["gp_default"])):
        err = _maxdiff(got.double(), want)
        assert err <= _half_tol(dtype, want), (dtype, err)
        assert err > 1e-4  # really computed in half precision (float32 is within 4e-6)
    # a float32 model keeps float32 outputs for half-precision features (features are cast up)
    with torch.no_grad():
        out = _reduced_model()(x.to(dtype), c)
    assert out.dtype == torch.float32


def test_reduced_bf16_autocast_against_fp64():
    """CPU autocast of a float32 model (the official GPU inference mode, in bf16 on CPU)."""
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c, want = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp64"]["cls_default"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, c)
    assert _maxdiff(out.double(), want) <= _half_tol(torch.bfloat16, want)


def test_layer_groups_equal_full_forward():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c = ref["inputs"]["features_batch2"], ref["inputs"]["coords_batch2"]
    with torch.no_grad():
        full = m(x, c)
        s = m.embed(x, c)
        for a, b in [(0, 3), (3, 3), (3, 6), (6, 8)]:
            s = m.run_layers(s, a, b)
        assert torch.equal(m.pool(s), full)
    assert s.num_prefix == 1 and s.patch_tokens.shape == (2, 37, 256)
    with pytest.raises(ValueError):
        m.run_layers(s, 2, 9)


def test_masked_batch_equals_separate_slides():
    """A right-padded batch gives each slide the output it has alone (official: batch of one)."""
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c = ref["inputs"]["features_batch2"], ref["inputs"]["coords_batch2"]
    xb, cb = x.clone(), c.clone()
    xb[1, 30:] = 123.0  # junk in the padding
    mask = torch.ones(2, 37, dtype=torch.bool)  # True = valid patch
    mask[1, 30:] = False
    with torch.no_grad():
        out = m(xb, cb, mask=mask, global_pool=True)
        alone0 = m(x[:1], c[:1], global_pool=True)
        alone1 = m(x[1:, :30], c[1:, :30], global_pool=True)
    assert _maxdiff(out[0], alone0[0]) <= 1e-6
    assert _maxdiff(out[1], alone1[0]) <= 1e-6


def test_multi_segment_dilated_attention_matches_bruteforce():
    """N=2001 spans two 1024-segments in branch 0: compare to a direct per-(token, head) union softmax."""
    torch.manual_seed(0)
    B, N, H, Dh = 1, 2001, 16, 4
    q, k, v = (torch.randn(B, N, H, Dh, dtype=torch.float64) for _ in range(3))
    seg, rat = (1024, 5792), (1, 2)
    out = dilated_attention(q, k, v, seg, rat)
    # closed form: attention over the multiset union of each covering branch's keys (zero pads count)
    expect = torch.zeros_like(q)
    for h in range(H):
        for t in [0, 1, 7, 1023, 1024, 1500, 2000]:
            logits, vals = [], []
            for s_len, r in zip(seg, rat):
                s = min(s_len, N)
                seg_i, p = divmod(t, s)
                if p % r != h // (H // r):
                    continue
                sp = -(-s // r) * r
                pos = torch.arange(h // (H // r), sp, r) + seg_i * s
                kk = torch.zeros(len(pos), Dh, dtype=torch.float64)
                vv = torch.zeros(len(pos), Dh, dtype=torch.float64)
                ok = (pos < N) & (pos < (seg_i + 1) * s)
                kk[ok], vv[ok] = k[0, pos[ok], h], v[0, pos[ok], h]
                logits.append(kk @ q[0, t, h] / Dh**0.5)
                vals.append(vv)
            w = torch.softmax(torch.cat(logits), 0)
            expect[0, t, h] = w @ torch.cat(vals)
            assert _maxdiff(out[0, t, h], expect[0, t, h]) <= 1e-12


def test_fused_lse_matches_reference():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 50, 8) for _ in range(3))
    o1, l1 = attention_with_lse(q, k, v)
    o2, l2 = attention_with_lse_reference(q, k, v, max_tile_elems=64)
    assert _maxdiff(o1, o2) <= 1e-5 and _maxdiff(l1, l2) <= 1e-5


def test_lse_backend_choice():
    """Which fused kernel each device/dtype gets (the CUDA rows cannot run here: no GPU)."""
    for dt in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        assert lse_backend("cpu", dt, 48) == "cpu_flash"
    assert lse_backend("cuda", torch.bfloat16, 48) == "cuda_flash"
    assert lse_backend("cuda", torch.float16, 16) == "cuda_flash"
    assert lse_backend("cuda", torch.float16, 20) == "cuda_efficient"  # flash wants head_dim % 8 == 0
    assert lse_backend("cuda", torch.bfloat16, 512) == "cuda_efficient"
    assert lse_backend("cuda", torch.float32, 48) == "cuda_efficient"
    assert lse_backend("cuda", torch.float64, 48) == "reference"
    assert lse_backend("mps", torch.float32, 48) == "reference"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attention_with_lse_half_precision(dtype):
    """Half inputs use the fused kernel: out in the input dtype, lse in float32, both close to fp64."""
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 4, 40, 16, dtype=torch.float64) for _ in range(3))
    o64, l64 = attention_with_lse_reference(q, k, v)
    o, lse = attention_with_lse(q.to(dtype), k.to(dtype), v.to(dtype))
    assert o.dtype == dtype and lse.dtype == torch.float32 and lse.shape == (2, 4, 40)
    eps = torch.finfo(dtype).eps
    # inputs are rounded to dtype (relative eps/2): logits |s| <= ~10 move by ~10 eps, the output by a few eps
    assert _maxdiff(o.double(), o64) <= 8 * eps and _maxdiff(lse.double(), l64) <= 16 * eps


def test_attention_with_lse_falls_back_when_kernel_refuses(monkeypatch):
    """A fused kernel that rejects the input (here: a CUDA kernel given CPU tensors) falls back to
    the exact chunked reference instead of failing."""
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 30, 8) for _ in range(3))
    calls = []

    def fake_backend(device_type, dtype, head_dim):
        calls.append(device_type)
        return "cuda_flash"

    monkeypatch.setattr(att, "lse_backend", fake_backend)
    o, lse = attention_with_lse(q, k, v)
    ro, rl = attention_with_lse_reference(q, k, v)
    assert calls and torch.equal(o, ro) and torch.equal(lse, rl)


def test_contract_errors():
    m = GigaPathSlideEncoder(in_dim=32, embed_dim=32, depth=1, num_heads=16, ffn_dim=64).eval()
    x = torch.randn(1, 5, 32)
    c = torch.arange(10.0).view(1, 5, 2) * 256
    with pytest.raises(InputError, match="expects 32-d patch features but got 31-d"):
        m(torch.randn(1, 5, 31), c)
    with pytest.raises(InputError, match=r"expects floating-point patch features .* got torch.int64"):
        m(torch.ones(1, 5, 32, dtype=torch.int64), c)
    with pytest.raises(InputError, match="coords is None"):
        m(x, None)
    for axis, name in ((0, "gx"), (1, "gy")):  # gy >= 1000 would alias onto the next column officially
        big = c.clone()
        big[0, 2, axis] = 1000 * 256
        with pytest.raises(InputError, match=rf"grid index {name}=1000 of slide 0, patch 2 .* outside \[0, 1000\)"):
            m(x, big)
    with pytest.raises(InputError, match=r"gy=-1 of slide 0, patch 0 .* outside"):
        m(x, -c)
    for bad_value in (float("nan"), float("inf"), -float("inf")):
        nf = c.clone()
        nf[0, 3, 1] = bad_value
        with pytest.raises(InputError, match=r"expects finite level-0 \(x, y\) pixel coordinates.*slide 0, patch 3"):
            m(x, nf)
    for ts in (0, -256, float("nan"), float("inf"), True, "256"):
        with pytest.raises(InputError, match="tile_size as a positive number"):
            m(x, c, tile_size=ts)
    with pytest.raises(InputError, match="coords of shape"):
        m(x, c[:, :4])
    assert m(x, c).shape == (1, 32)
    assert m(x[0], c[0]).shape == (1, 32)  # unbatched input gets a batch axis
    with torch.no_grad():  # integer coords and integral 0-d / NumPy tile sizes are fine
        assert torch.equal(m(x, c.long(), tile_size=torch.tensor(256)), m(x, c))


def test_gradient_checkpointing_same_grads():
    torch.manual_seed(0)
    m = GigaPathSlideEncoder(in_dim=16, embed_dim=32, depth=2, num_heads=16, ffn_dim=64, dropout=0.0, drop_path_rate=0.0)
    x = torch.randn(1, 20, 16)
    c = torch.rand(1, 20, 2) * 256 * 50
    m(x, c).sum().backward()
    g1 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m(x, c).sum().backward()
    for a, p in zip(g1, m.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(N=st.integers(1, 90), B=st.integers(1, 2), segs=st.lists(st.integers(1, 40), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_merged_dilated_attention_matches_per_branch_path(N, B, segs, seed):
    """Issue 19 fast merge (one padded buffer, in-place weighted scatter) against the per-branch official
    layout: same values (float64: 1e-12) and the same input gradients; odd segment/ratio pairs that cannot
    share the buffer fall back to the per-branch path."""
    ratios = [1, 2, 4][: len(segs)]
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, N, 4, 3, dtype=torch.float64, generator=g).requires_grad_() for _ in range(3))
    out = dilated_attention(q, k, v, segs, ratios)
    ref, _ = dilated_attention(q, k, v, segs, ratios, return_branches=True)  # always the per-branch path
    assert _maxdiff(out.detach(), ref.detach()) <= 1e-12
    gy = torch.randn(out.shape, dtype=torch.float64, generator=g)
    ga = torch.autograd.grad(out, (q, k, v), gy)
    gb = torch.autograd.grad(ref, (q, k, v), gy)
    for a, b in zip(ga, gb):
        assert _maxdiff(a, b) <= 1e-12


def test_branch_rows_known_values():
    """Released GigaPath at 4,097 tokens: the 1024-segment branch reads 5 segments (5,120 rows), the others one
    padded segment of m * r rows; a multi-segment branch whose ratio does not divide its length cannot share."""
    import modaltune.encoders.slide.gigapath as gp

    assert [gp._branch_rows(4097, min(s, 4097), r) for s, r in zip(gp.GIGAPATH_SEGMENT_LENGTHS, gp.GIGAPATH_DILATED_RATIOS)] == [
        5120, 4098, 4100, 4104, 4112]
    assert gp._branch_rows(50, 9, 2) is None and gp._branch_rows(9, 9, 2) == 10
