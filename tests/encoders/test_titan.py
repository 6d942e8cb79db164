"""TITAN slide encoder against the official reference outputs (shared/reference)."""
from __future__ import annotations

import pytest
import torch

from modaltune.encoders.slide.titan import TitanSlideEncoder
from modaltune.errors import ConfigError, InputError
from modaltune.layers.alibi import alibi_bias_tile, alibi_slopes, distance_table

from slide_refs import load_ref

TOL = 1e-5
REDUCED = "ref_titan_p37_reduced_20x.pt"
FULL = "ref_titan_p300_full_20x.pt"


def _reduced_model() -> TitanSlideEncoder:
    ref = load_ref(REDUCED)
    m = TitanSlideEncoder(embed_dim=192).eval()
    m.load_state_dict(ref["state_dict"], strict=True)
    return m


def _maxdiff(a, b) -> float:
    return float((a - b).abs().max())


def test_slopes_match_spec():
    expect = [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625, 0.70710678, 0.35355339, 0.17677670, 0.08838835]
    assert torch.allclose(alibi_slopes(12), torch.tensor(expect), atol=1e-7)


def test_reduced_all_stages_fp32_and_alibi():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, c, ps, o = ref["inputs"]["features"], ref["inputs"]["coords"], ref["inputs"]["patch_size_lv0"], ref["outputs"]["fp32"]
    with torch.no_grad():
        s = m.embed(x, c, patch_size_level0=ps)
        H, W = o["grid_shape_HW"]
        grid = s.context["grid"][0, 1:]
        assert torch.equal(grid[:, 0] * W + grid[:, 1], o["token_cell_index"])
        assert s.context["n_background"] == [1]  # feature row 7 is all zeros
        assert _maxdiff(s.tokens, o["blocks_input"]) <= TOL
        g = s.context["grid"][0]
        cls = torch.arange(len(g)) < 1
        assert torch.equal(alibi_bias_tile(g, g, m.slopes, cls, cls), o["alibi_bias"][0])  # bit-exact
        # tiled evaluation gives the same bias rows
        tab = distance_table(g)
        assert torch.equal(alibi_bias_tile(g[5:9], g, m.slopes, cls[5:9], cls, dist_table=tab), o["alibi_bias"][0, :, 5:9])
        for i in range(6):
            s = m.run_layers(s, i, i + 1)
            assert _maxdiff(s.tokens, o["block_outputs"][i]) <= TOL, i
        assert _maxdiff(m.norm(s.tokens), o["tokens_final"]) <= TOL
        assert _maxdiff(m.pool(s), o["slide_embedding"]) <= TOL
        assert _maxdiff(m.pool(s, proj=True), o["slide_embedding_proj"]) <= 1e-4
        assert _maxdiff(m.pool_tokens(s), o["attn_pool_tokens"]) <= TOL


def test_reduced_fp64_matches_official_fp64():
    ref = load_ref(REDUCED)
    m = _reduced_model().double()
    x, c, o = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp64"]
    with torch.no_grad():
        assert _maxdiff(m(x.double(), c, patch_size_level0=512), o["slide_embedding"]) <= 1e-12
        assert _maxdiff(m(x.double(), c, patch_size_level0=512, proj=True), o["slide_embedding_proj"]) <= 1e-12


def test_duplicate_cell_error_by_default_and_official_sum_on_request():
    ref = load_ref(REDUCED)
    m = _reduced_model()
    x, cd = ref["inputs"]["features"], ref["inputs"]["coords_duplicate_cell_case"]
    od = ref["outputs"]["fp32_duplicate_cell_case"]
    with pytest.raises(InputError, match=r"grid collision.*patches 20 and 21.*on_collision='sum'"):
        m(x, cd, patch_size_level0=512)
    with torch.no_grad():
        out = m(x, cd, patch_size_level0=512, on_collision="sum")
        assert _maxdiff(out, od["slide_embedding"]) <= TOL
        s = m.embed(x, cd, patch_size_level0=512, on_collision="sum")
        W = od["grid_shape_HW"][1]
        assert torch.equal(s.context["grid"][0, 1:, 0] * W + s.context["grid"][0, 1:, 1], od["token_cell_index"])
    with pytest.raises(ConfigError):
        TitanSlideEncoder(embed_dim=192, on_collision="mean")


def test_full_size_recipe_weights(titan_full_sd):
    ref = load_ref(FULL)
    m = TitanSlideEncoder().eval()
    m.load_state_dict(titan_full_sd, strict=True)
    x, c, o = ref["inputs"]["features"], ref["inputs"]["coords"], ref["outputs"]["fp32"]
    with torch.no_grad():
        s = m.embed(x, c, patch_size_level0=ref["inputs"]["patch_size_lv0"])
        W = o["grid_shape_HW"][1]
        assert torch.equal(s.context["grid"][0, 1:, 0] * W + s.context["grid"][0, 1:, 1], o["token_cell_index"])
        s = m.run_layers(s)
        assert _maxdiff(s.tokens, o["block_outputs"][5]) <= TOL
        assert _maxdiff(m.pool(s), o["slide_embedding"]) <= TOL
        assert _maxdiff(m.pool(s, proj=True), o["slide_embedding_proj"]) <= 1e-4
        assert _maxdiff(m.pool_tokens(s), o["attn_pool_tokens"]) <= TOL


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
    mask = torch.zeros(2, 37, dtype=torch.bool)
    mask[1, 25:] = True
    with torch.no_grad():
        out = m(xb, cb, padding_mask=mask, patch_size_level0=512)
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
    # whole-number float coords are accepted and equal the int64 result
    with torch.no_grad():
        assert torch.equal(m(x, c.float(), patch_size_level0=512), m(x, c, patch_size_level0=512))
        assert m(x, c, patch_size_lv0=512).shape == (1, 48)
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
