"""MM-Lego pieces with known answers: the harmonic merge, slerp, one-block merge = the block, and
the missing-modality skip (issue 15, item 1). Engine tests: tests/training/test_mm_lego_engine.py."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.errors import ConfigError
from modaltune.layers.lego import harmonic_merge, merge_tensors, slerp
from modaltune.methods import build_method
from modaltune.methods.mm_lego import merge_blocks
from modaltune.testing.batches import make_batch, make_info

SMALL = {"latent_channels": 4, "latent_dim": 8, "heads": 2}
SLIDE = {"encoder_params": {"embed_dim": 16, "attn_dim": 8}}
EPS32 = 1e-5  # float32: a few ulps over values of order 1


def _block(info, modality, seed=0, **extra):
    torch.manual_seed(seed)
    return build_method("mm_lego", info, modality=modality, **{**SMALL, **extra}).eval()


def test_harmonic_merge_known_answer():
    # |z| = 1 and 3 at phases 0 and pi/2: harmonic mean 2 / (1/1 + 1/3) = 1.5, phase pi/4
    z1, z2 = torch.tensor([[[1 + 0j]]]), torch.tensor([[[3j]]])
    out = harmonic_merge([z1, z2], torch.tensor([1.0, 1.0]))
    assert out.abs().item() == pytest.approx(1.5, rel=1e-6) and torch.angle(out).item() == pytest.approx(math.pi / 4, rel=1e-6)
    # weight alpha on the first block: the official magnitude without its constant 2 a (1 - a) factor
    a = 0.8
    out = harmonic_merge([z1, z2], torch.tensor([a, 1 - a]))
    official = 2 * a * (1 - a) * 1 * 3 / (a * 3 + (1 - a) * 1)
    assert out.abs().item() == pytest.approx(official / (2 * a * (1 - a)), rel=1e-6)
    # a patient without block 2 gets block 1's latent; a patient with neither gets both
    both = torch.cat([z1, z1]), torch.cat([z2, z2])
    out = harmonic_merge(both, torch.tensor([1.0, 1.0]), [torch.tensor([True, False]), torch.tensor([False, False])])
    assert out[0].abs().item() == pytest.approx(1.0) and out[1].abs().item() == pytest.approx(1.5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_one_latent_merges_to_itself_and_order_does_not_matter(seed, K):
    g = torch.Generator().manual_seed(seed)
    zs = [torch.complex(torch.randn(3, 2, 5, generator=g), torch.randn(3, 2, 5, generator=g)) for _ in range(K)]
    w = torch.rand(K, generator=g) + 0.1
    torch.testing.assert_close(harmonic_merge(zs[:1], w[:1]), zs[0], rtol=EPS32, atol=EPS32)
    perm = list(reversed(range(K)))
    torch.testing.assert_close(harmonic_merge([zs[i] for i in perm], w[perm]), harmonic_merge(zs, w), rtol=EPS32, atol=EPS32)


def test_slerp_known_answers():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(a, b, 0.5), torch.tensor([1.0, 1.0]) / math.sqrt(2))
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    # identical heads: the official formula divides 0 by 0; here the head comes back unchanged
    torch.testing.assert_close(slerp(a, a.clone(), 0.3), a)
    torch.testing.assert_close(merge_tensors([a, b], [1, 1], "linear"), torch.tensor([0.5, 0.5]), rtol=0, atol=1e-7)
    assert merge_tensors([a], [2.0]) is not a and torch.equal(merge_tensors([a], [2.0]), a)


@pytest.mark.parametrize("modality,extra", [("rna", {}), ("slide", SLIDE), ("clinical", {})])
def test_one_block_merge_equals_the_block(modality, extra):
    info = make_info()
    block = _block(info, modality, **extra)
    batch = make_batch(B=5, info=info, missing={modality: [1]})
    ref = block(batch)
    ref = {k: v.detach().clone() for k, v in ref["outputs"].items()}
    merged = merge_blocks(info, [block]).eval()
    out = merged(batch)["outputs"]
    for task in ref:
        torch.testing.assert_close(out[task], ref[task], rtol=EPS32, atol=EPS32)
    assert merged.needs_training is False and not any(p.requires_grad for p in merged.parameters())


def test_a_missing_modality_skips_the_block_update():
    """A patient flagged without rna gets the block's prior latent: its (garbage) rna values and the
    other patients never change its output, and it differs from a patient who has rna."""
    info = make_info()
    block = _block(info, "rna")
    batch = make_batch(B=4, info=info, missing={"rna": [2]})
    out = block(batch)["embedding"]
    batch["omics"]["rna"][2] = 1e3 * torch.randn_like(batch["omics"]["rna"][2])
    batch["omics"]["rna"][0] += 1.0
    out2 = block(batch)["embedding"]
    torch.testing.assert_close(out2[2], out[2])
    assert not torch.allclose(out2[0], out[0])
    # in a two-block merge, a patient without the slide reads only the rna block's latent
    slide = _block(info, "slide", seed=1, **SLIDE)
    merged = merge_blocks(info, [block, slide]).eval()
    b2 = make_batch(B=3, info=info, missing={"slide": [0]})
    e = merged(b2)["embedding"]
    b2["slide"]["features"][0] = 50.0
    torch.testing.assert_close(merged(b2)["embedding"][0], e[0])


def test_fuse_weaves_every_block_and_sends_gradient_to_both():
    info = make_info()
    blocks = [_block(info, "rna"), _block(info, "slide", seed=1, **SLIDE)]
    fused = merge_blocks(info, blocks, fuse=True).train()
    batch = make_batch(B=6, info=info)
    total, _ = fused.loss(batch, fused(batch))
    total.backward()
    for i in range(2):
        grads = [p.grad for p in fused.encoder.blocks[i].updates.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads), i
    assert fused.encoder.latent_init.grad is not None


def test_block_mode_errors_are_one_line():
    info = make_info()
    with pytest.raises(ConfigError, match=r"method\.params\.modality.*needs the block's modality"):
        build_method("mm_lego", info)
    with pytest.raises(ConfigError, match=r"not divisible by heads"):
        build_method("mm_lego", info, modality="rna", latent_dim=10, heads=4)
    with pytest.raises(ConfigError, match=r"needs trained blocks"):
        build_method("mm_lego", info, mode="merge")
    other = _block(info, "rna", latent_dim=4, heads=2)
    with pytest.raises(ConfigError, match=r"different latent shapes"):
        merge_blocks(info, [_block(info, "rna"), other])
