"""TITAN slide encoder against the official reference outputs (shared/reference)."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from slide_refs import TITAN_FULL, TITAN_REDUCED, compare_fields, load_ref, titan_fields

from modaltune.encoders.slide.titan import TitanSlideEncoder
from modaltune.errors import ConfigError, InputError
from modaltune.layers.alibi import alibi_bias_tile, alibi_slopes, distance_table

# float32 against the official float32 outputs (a few float32 ulps, CPU-dependent summation order):
# normalised outputs (|x| <= 5: slide embedding, pooler tokens, final norm, patch embedding) measure
# <= 4.2e-6 and use 1e-5; the raw residual-stream block outputs (|x| up to 11, measured 8.1e-6) and
# the un-normalised ``@ proj`` output (|x| up to 21, measured 1.5e-5) use the 1e-4.
TOL = 1e-5
TOL_RAW = 1e-4
RAW_FIELDS = {"block_outputs", "slide_embedding_proj"}
TOL64 = 1e-12  # official float64 run; measured <= 4.6e-14 (the ALiBi bias is bit-identical)
REDUCED = TITAN_REDUCED
FULL = TITAN_FULL


def _reduced_model(dtype=torch.float32) -> TitanSlideEncoder:
    ref = load_ref(REDUCED)
    m = TitanSlideEncoder(embed_dim=192).eval()
    m.load_state_dict(ref["state_dict"], strict=True)
    return m.to(dtype)


def _maxdiff(a, b) -> float:
    return float((a - b).abs().max())


def _fp32_tol(key: str) -> float:
    return TOL_RAW if key in RAW_FIELDS else TOL


def _check_all_fields(m, x, c, ps, expected: dict, tol_of, on_collision=None) -> dict[str, Any]:
    """Compute every field of ``expected`` with ``m`` and assert each is within ``tol_of(field)``
    (ALiBi bias, grid shape, background mask and token cells must match exactly)."""
    ours = titan_fields(m, x, c, ps, on_collision=on_collision)
    diffs = compare_fields(ours, expected)
    if "alibi_bias" in expected:
        assert torch.equal(ours["alibi_bias"], expected["alibi_bias"])  # bit-exact, also in float64
    bad = {k: d for k, d in diffs.items() if d > tol_of(k)}
    assert not bad, f"fields over tolerance: {bad}"
    return ours


def test_reference_files_hold_the_output_blocks_we_test():
    assert sorted(load_ref(REDUCED)["outputs"]) == ["fp32", "fp32_duplicate_cell_case", "fp64"]
    assert sorted(load_ref(FULL)["outputs"]) == ["fp32", "fp64"]
    assert sorted(load_ref(FULL)["outputs"]["fp32"]["block_outputs"]) == [0, 1, 2, 3, 4, 5]


def test_slopes_match_spec():
    expect = [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625, 0.70710678, 0.35355339, 0.17677670, 0.08838835]
    assert torch.allclose(alibi_slopes(12), torch.tensor(expect), atol=1e-7)


def test_reduced_all_stages_fp32_and_alibi():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c, ps, o = ref["inputs"]["features"], ref["inputs"]["coords"], ref["inputs"]["patch_size_lv0"], ref["outputs"]["fp32"]
    ours = _check_all_fields(m, x, c, ps, o, _fp32_tol)
    assert int(o["bg_mask"].sum()) == 36 and not o["bg_mask"].flatten()[ours["token_cell_index"]].logical_not().any()
    with torch.no_grad():
        s = m.embed(x, c, patch_size_level0=ps)
        assert s.context["n_background"] == [1]  # feature row 7 is all zeros
        assert s.context["grid_shape"] == [tuple(o["grid_shape_HW"])]
        # tiled evaluation gives the same bias rows
        g = s.context["grid"][0]
        cls = torch.arange(len(g)) < 1
        tab = distance_table(g)
        assert torch.equal(alibi_bias_tile(g[5:9], g, m.slopes, cls[5:9], cls, dist_table=tab), o["alibi_bias"][0, :, 5:9])
        assert torch.equal(m(x, c, patch_size_level0=ps), ours["slide_embedding"])  # public call == staged


def test_reduced_fp64_all_internals():
    ref = load_ref(REDUCED)
    m = _reduced_model(torch.float64)
    inp = ref["inputs"]
    _check_all_fields(m, inp["features"].double(), inp["coords"], inp["patch_size_lv0"], ref["outputs"]["fp64"], lambda k: TOL64)


def test_duplicate_cell_error_by_default_and_official_sum_on_request():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, cd = ref["inputs"]["features"], ref["inputs"]["coords_duplicate_cell_case"]
    od = ref["outputs"]["fp32_duplicate_cell_case"]
    with pytest.raises(InputError, match=r"grid collision.*patches 20 and 21.*on_collision='sum'"):
        m(x, cd, patch_size_level0=512)
    ours = _check_all_fields(m, x, cd, 512, od, _fp32_tol, on_collision="sum")
    assert len(ours["token_cell_index"]) == 35  # 37 patches - 1 background - 1 merged
    with pytest.raises(ConfigError):
        TitanSlideEncoder(embed_dim=192, on_collision="mean")


@pytest.fixture(scope="module")
def full_model(titan_full_sd) -> TitanSlideEncoder:
    m = TitanSlideEncoder().eval()
    m.load_state_dict(titan_full_sd, strict=True)
    return m


def test_full_size_recipe_weights(full_model):
    ref = load_ref(FULL)
    x, c, o = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp32"]
    _check_all_fields(full_model, x, c, ref["inputs"]["patch_size_lv0"], o, _fp32_tol)


def test_full_size_fp64(full_model):
    ref = load_ref(FULL)
    m = copy.deepcopy(full_model).double()
    x, c = ref["inputs"]["features"].double(), ref["inputs"]["coords"]
    _check_all_fields(m, x, c, ref["inputs"]["patch_size_lv0"], ref["outputs"]["fp64"], lambda k: TOL64)


# Half precision (see test_gigapath.py): bound = 4 units of finfo(dtype).eps * max|ref|.
# Measured on CPU against the official float64 run: bf16 <= 0.020 (slide embedding) / 0.060 (@ proj,
# max|ref| 8.9), fp16 <= 2.5e-3 / 0.011. The official code under CPU autocast: bf16 0.016, fp16 1.8e-3.
HALF_ULPS = 4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_half_precision_against_fp64(dtype):
    ref = load_ref(REDUCED)
    m = _reduced_model(dtype)
    x, c, o64 = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp64"]
    try:
        with torch.no_grad():
            state = m.run_layers(m.embed(x, c, patch_size_level0=512))  # float32 features are cast to the model dtype
            emb, proj = m.pool(state), m.pool(state, proj=True)
            assert torch.equal(m.embed(x.to(dtype), c, patch_size_level0=512).tokens, m.embed(x, c, patch_size_level0=512).tokens)
    except (RuntimeError, NotImplementedError) as exc:
        if "not implemented" in str(exc).lower():
            pytest.skip(f"this PyTorch build has no CPU {dtype} kernel: {exc}")
        raise
    assert emb.dtype == dtype and proj.dtype == dtype
    for got, want in ((emb, o64["slide_embedding"]), (proj, o64["slide_embedding_proj"])):
        err = _maxdiff(got.double(), want)
        assert 1e-4 < err <= HALF_ULPS * torch.finfo(dtype).eps * float(want.abs().max()), (dtype, err)
    with torch.no_grad():
        out = _reduced_model()(x.to(dtype), c, patch_size_level0=512)
    assert out.dtype == torch.float32  # a float32 model keeps float32 for half features


def test_reduced_bf16_autocast_against_fp64():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c, want = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp64"]["slide_embedding"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, c, patch_size_level0=512)
    assert _maxdiff(out.double(), want) <= HALF_ULPS * torch.finfo(torch.bfloat16).eps * float(want.abs().max())


def test_order_and_translation_invariance_and_layer_groups():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c = ref["inputs"]["features"], ref["inputs"]["coords"]
    perm = torch.randperm(37, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = m(x, c, patch_size_level0=512)
        assert _maxdiff(m(x[:, perm], c[:, perm] + 10_000, patch_size_level0=512), full) <= 1e-6
        s = m.embed(x, c, patch_size_level0=512)
        for a, b in [(0, 2), (2, 4), (4, 6)]:
            s = m.run_layers(s, a, b)
        assert torch.equal(m.pool(s), full)
    # token_patch_index maps tokens back to input rows
    tpi = s.context["token_patch_index"][0]
    assert 7 not in tpi.tolist() and sorted(tpi.tolist()) == [i for i in range(37) if i != 7]


def test_padded_batch_equals_separate_slides():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c = ref["inputs"]["features"][0], ref["inputs"]["coords"][0]
    xb = torch.zeros(2, 37, 768)
    cb = torch.zeros(2, 37, 2, dtype=torch.long)
    xb[0], cb[0] = x, c
    xb[1, :25], cb[1, :25] = x[5:30], c[5:30]
    xb[1, 25:] = 7.0  # junk padding
    mask = torch.ones(2, 37, dtype=torch.bool)  # True = valid patch
    mask[1, 25:] = False
    with torch.no_grad():
        out = m(xb, cb, mask=mask, patch_size_level0=512)
        a = m(x, c, patch_size_level0=512)
        b = m(x[5:30], c[5:30], patch_size_level0=512)
    assert _maxdiff(out[0], a[0]) <= 1e-5 and _maxdiff(out[1], b[0]) <= 1e-5


def test_long_sequence_tiling_matches_dense(monkeypatch):
    """Force tiny query tiles: streamed ALiBi attention equals the single-tile computation."""
    import modaltune.layers.attention as att

    torch.manual_seed(0)
    m = TitanSlideEncoder(embed_dim=48, depth=2, num_heads=12, attn_pooler_heads=8).eval()
    x = torch.randn(1, 60, 768)
    c = torch.stack(torch.meshgrid(torch.arange(10), torch.arange(6), indexing="ij"), -1).reshape(1, 60, 2) * 512
    with torch.no_grad():
        dense = m(x, c, patch_size_level0=512)
        monkeypatch.setattr(att, "_MAX_TILE_ELEMS", 12 * 61 * 7)
        tiled = m(x, c, patch_size_level0=512)
    assert _maxdiff(dense, tiled) <= 1e-6


def test_contract_errors():
    m = TitanSlideEncoder(embed_dim=48, depth=1, num_heads=12, attn_pooler_heads=8).eval()
    x = torch.randn(1, 4, 768)
    c = torch.tensor([[[0, 0], [512, 0], [0, 512], [512, 512]]])
    with pytest.raises(InputError, match="needs patch_size_level0"):
        m(x, c)
    with pytest.raises(InputError, match="expects 768-d patch features but got 1536-d"):
        m(torch.randn(1, 4, 1536), c, patch_size_level0=512)
    with pytest.raises(InputError, match="coords is None"):
        m(x, None, patch_size_level0=512)
    with pytest.raises(InputError, match="fractional"):
        m(x, c.float() + 0.5, patch_size_level0=512)
    with pytest.raises(InputError, match="all zeros"):
        m(torch.zeros(1, 4, 768), c, patch_size_level0=512)
    with pytest.raises(InputError, match=r"expects floating-point patch features .* got torch.int32"):
        m(torch.ones(1, 4, 768, dtype=torch.int32), c, patch_size_level0=512)
    nan = c.float()
    nan[0, 2, 0] = float("nan")
    with pytest.raises(InputError, match=r"expects finite level-0 \(x, y\) pixel coordinates.*slide 0, patch 2"):
        m(x, nan, patch_size_level0=512)
    for ps in (0, -512, 512.5, 0.5, float("nan"), float("inf"), True, "512", [512]):
        with pytest.raises(InputError, match=r"patch_size_level0: TITAN slide encoder needs patch_size_level0 as a positive whole number"):
            m(x, c, patch_size_level0=ps)
    with pytest.raises(ConfigError, match="positive whole number of level-0 pixels per patch"):
        TitanSlideEncoder(embed_dim=48, depth=1, num_heads=12, attn_pooler_heads=8, patch_size_level0=0)
    # whole-number float coords are accepted and equal the int64 result
    with torch.no_grad():
        assert torch.equal(m(x, c.float(), patch_size_level0=512), m(x, c, patch_size_level0=512))
        assert m(x, c, patch_size_lv0=512).shape == (1, 48)
        # whole-number float / NumPy / 0-d tensor patch sizes are the same as the int
        ref = m(x, c, patch_size_level0=512)
        for ps in (512.0, np.int64(512), torch.tensor(512)):
            assert torch.equal(m(x, c, patch_size_level0=ps), ref)
    m2 = TitanSlideEncoder(embed_dim=48, depth=1, num_heads=12, attn_pooler_heads=8, patch_size_level0=512).eval()
    assert m2(x, c).shape == (1, 48)


def test_gradient_checkpointing_same_grads():
    torch.manual_seed(0)
    m = TitanSlideEncoder(embed_dim=48, depth=2, num_heads=12)
    x = torch.randn(1, 30, 768)
    c = torch.stack(torch.meshgrid(torch.arange(6), torch.arange(5), indexing="ij"), -1).reshape(1, 30, 2) * 512
    m(x, c, patch_size_level0=512).sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    assert "blocks.modules_list.0.attn.qkv.weight" in grads and float(grads["patch_embed.0.weight"].abs().sum()) > 0
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m(x, c, patch_size_level0=512).sum().backward()
    for n, p in m.named_parameters():
        if n in grads:
            assert torch.allclose(grads[n], p.grad, atol=1e-6), n
