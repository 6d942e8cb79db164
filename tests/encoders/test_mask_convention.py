"""One mask convention: ``mask`` True = valid patch everywhere; ``padding_mask=`` is a deprecated alias.

Known answers: the deprecated keyword is converted to ``mask = ~padding_mask`` and then runs the very
same code, so its output is bit-identical to ``mask=``; TokenState's deprecated fields are the exact
inverses of the new ones; masks that are not right-padded or have an empty row are refused.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.encoders.slide import (
    ABMILSlideEncoder,
    GigaPathSlideEncoder,
    SmallTransformerSlideEncoder,
    TitanSlideEncoder,
    TransMILSlideEncoder,
)
from modaltune.encoders.slide._contracts import check_mask
from modaltune.errors import InputError

ENCODERS = {
    "small_transformer": lambda: SmallTransformerSlideEncoder(in_dim=16, embed_dim=32, num_heads=4, depth=2),
    "abmil": lambda: ABMILSlideEncoder(in_dim=16, embed_dim=32, attn_dim=8),
    "transmil": lambda: TransMILSlideEncoder(in_dim=16, embed_dim=32, num_heads=4),
    "gigapath": lambda: GigaPathSlideEncoder(in_dim=16, embed_dim=32, depth=2, num_heads=16, ffn_dim=32),
    "titan": lambda: TitanSlideEncoder(in_dim=16, embed_dim=32, depth=2, num_heads=4, attn_pooler_queries=2,
                                       attn_pooler_heads=4, patch_size_level0=256),
}


def _padded_bag(lengths=(12, 9), D=16, seed=0):
    """Right-padded bag with junk in the padding; coords on distinct grid cells (TITAN refuses collisions)."""
    g = torch.Generator().manual_seed(seed)
    B, N = len(lengths), max(lengths)
    x = torch.randn(B, N, D, generator=g)
    cells = torch.stack([torch.randperm(64, generator=g)[:N] for _ in range(B)])
    c = torch.stack([cells // 8, cells % 8], -1) * 256
    mask = torch.arange(N)[None, :] < torch.tensor(lengths)[:, None]  # True = valid patch
    x[~mask] = 55.0
    return x, c, mask


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_deprecated_padding_mask_is_converted_with_a_warning(name):
    torch.manual_seed(0)
    m = ENCODERS[name]().eval()
    x, c, mask = _padded_bag()
    with torch.no_grad():
        new = m(x, c, mask=mask)
        with pytest.warns(DeprecationWarning, match=r"padding_mask= \(True = padding\) is deprecated.*mask=~padding_mask"):
            old = m(x, c, padding_mask=~mask)
        with pytest.warns(DeprecationWarning):
            state = m.embed(x, c, padding_mask=~mask)
    assert torch.equal(old, new)  # same code path after the conversion
    assert torch.equal(state.tokens, m.embed(x, c, mask=mask).tokens)
    with pytest.raises(InputError, match="both mask= and the deprecated padding_mask="), pytest.warns(DeprecationWarning):
        m(x, c, mask=mask, padding_mask=~mask)
    with pytest.raises(InputError, match="deprecated padding_mask as a bool tensor"), pytest.warns(DeprecationWarning):
        m(x, c, padding_mask=(~mask).float())


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_token_state_mask_is_true_on_valid_tokens(name):
    torch.manual_seed(0)
    m = ENCODERS[name]().eval()
    x, c, mask = _padded_bag()
    with torch.no_grad():
        s = m.embed(x, c, mask=mask)
        full = m.embed(x[:1], c[:1], mask=mask[:1])  # slide 0 has no padding
    # no padding: None (GigaPath keeps the given all-True mask, as it kept the all-False padding mask)
    assert full.mask is None or bool(full.mask.all())
    assert s.mask.dtype == torch.bool and s.mask.shape == s.tokens.shape[:2]
    assert bool(s.mask[:, : s.num_prefix].all())  # prefix (CLS) tokens are always valid
    # right padding: each row is True then False, slide 1 (9 patches) has fewer valid tokens than slide 0
    n = s.mask.sum(1)
    assert torch.equal(s.mask, torch.arange(s.mask.shape[1])[None, :] < n[:, None]) and n[1] < n[0]
    if name in ("small_transformer", "abmil", "gigapath"):  # input order and length kept
        assert torch.equal(s.patch_mask, mask)
    with pytest.warns(DeprecationWarning, match="TokenState.padding_mask"):
        assert torch.equal(s.padding_mask, ~s.mask)
    with pytest.warns(DeprecationWarning, match="TokenState.patch_padding_mask"):
        assert torch.equal(s.patch_padding_mask, ~s.patch_mask)


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4), shift=st.integers(1, 3))
def test_check_mask_accepts_right_padding_only(lengths, shift):
    N = max(lengths)
    feats = torch.zeros(len(lengths), N, 4)
    mask = torch.arange(N)[None, :] < torch.tensor(lengths)[:, None]
    assert torch.equal(check_mask(mask, feats, "m"), mask)
    with pytest.warns(DeprecationWarning):
        assert torch.equal(check_mask(None, feats, "m", padding_mask=~mask), mask)
    assert check_mask(None, feats, "m") is None
    # a row whose valid patches do not start at 0 (left padding) is refused
    short = [i for i, n in enumerate(lengths) if n < N]
    if short:
        bad = mask.clone()
        bad[short[0]] = torch.roll(mask[short[0]], min(shift, N - lengths[short[0]]))
        with pytest.raises(InputError, match="right padding"):
            check_mask(bad, feats, "m")
    # the old convention passed as mask= is refused (its first patch reads as padding)
    with pytest.raises(InputError, match="right padding|all padding"):
        check_mask(~mask, feats, "m")


def test_encoder_written_against_padding_mask_keeps_working():
    """A user encoder of the old convention (``embed(padding_mask=)``, ``TokenState(padding_mask=)``,
    ``state.padding_mask``) gets ``mask=`` from every caller converted; known answer: masked mean."""
    from modaltune.encoders.slide.base import SlideEncoder, TokenState

    with pytest.warns(DeprecationWarning, match="OldMean.embed takes padding_mask"):
        class OldMean(SlideEncoder):
            in_dim = embed_dim = 4

            def embed(self, features, coords=None, padding_mask=None, **kw):
                return TokenState(tokens=features, num_prefix=0, padding_mask=padding_mask)

            def pool(self, state):
                pm = state.padding_mask
                if pm is None:
                    return state.tokens.mean(1)
                valid = (~pm).to(state.tokens.dtype)[..., None]
                return (state.tokens * valid).sum(1) / valid.sum(1)

    x = torch.tensor([[[1.0, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8]], [[2.0, 0, 0, 2], [9, 9, 9, 9], [9, 9, 9, 9]]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    expect = torch.tensor([[3.0, 4, 5, 6], [2, 0, 0, 2]])
    m = OldMean()
    with pytest.warns(DeprecationWarning):
        assert torch.equal(m(x, mask=mask), expect)
        assert torch.equal(m(x, padding_mask=~mask), expect)
        state = m.embed(x, mask=mask)
    assert torch.equal(state.mask, mask)
    assert torch.equal(m(x), x.mean(1))
    with pytest.raises(InputError, match="both mask and padding_mask"):
        m.embed(x, mask=mask, padding_mask=~mask)
