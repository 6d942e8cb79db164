"""small_transformer, ABMIL and TransMIL slide encoders: interface, padding, known answers."""
from __future__ import annotations

import pytest
import torch

from modaltune.encoders.slide import ABMILSlideEncoder, SmallTransformerSlideEncoder, TransMILSlideEncoder, create_slide_encoder
from modaltune.errors import ConfigError, InputError


def _bag(B=2, N=12, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, D, generator=g)
    c = torch.randint(0, 20, (B, N, 2), generator=g) * 256 + 1000
    return x, c


@pytest.mark.parametrize("name", ["small_transformer", "abmil", "transmil"])
def test_padding_equals_separate_and_groups_equal_forward(name):
    torch.manual_seed(0)
    kw = {"embed_dim": 32} if name != "small_transformer" else {"embed_dim": 32, "num_heads": 4, "depth": 3}
    m = create_slide_encoder(name, in_dim=16, **kw).eval()
    x, c = _bag()
    xb, cb = x.clone(), c.clone()
    xb[1, 9:], cb[1, 9:] = 55.0, 10**7  # junk in the padding
    mask = torch.ones(2, 12, dtype=torch.bool)  # True = valid patch
    mask[1, 9:] = False
    with torch.no_grad():
        out = m(xb, cb, mask=mask)
        a = m(x[:1], c[:1])
        b = m(x[1:, :9], c[1:, :9])
        assert out.shape == (2, 32)
        assert torch.allclose(out[0], a[0], atol=1e-5) and torch.allclose(out[1], b[0], atol=1e-5)
        s = m.embed(x, c)
        for i in range(m.num_layers):
            s = m.run_layers(s, i, i + 1)
        assert torch.allclose(m.pool(s), m(x, c), atol=1e-6)


def test_abmil_known_answer_uniform_attention():
    """With zero attention weights the pooling is the plain mean of the projected patches."""
    m = ABMILSlideEncoder(in_dim=4, embed_dim=3, attn_dim=2).eval()
    torch.nn.init.zeros_(m.attention_w.weight)
    torch.nn.init.zeros_(m.attention_w.bias)
    x = torch.randn(1, 5, 4)
    with torch.no_grad():
        h = torch.relu(m.fc[0](x))
        assert torch.allclose(m(x), h.mean(1), atol=1e-6)
        s = m.embed(x)
        assert torch.allclose(m.attention(s), torch.full((1, 5), 0.2))


def test_transmil_square_padding_repeats_first_patches():
    m = TransMILSlideEncoder(in_dim=4, embed_dim=8, num_heads=2).eval()
    x = torch.randn(1, 7, 4)
    s = m.embed(x)
    assert s.context["side"] == [3] and s.tokens.shape == (1, 10, 8)
    assert torch.equal(s.tokens[0, 8:10], s.tokens[0, 1:3])  # patches 0,1 repeated to fill 3x3


def test_small_transformer_positions_and_errors():
    x, c = _bag(B=1)
    m = SmallTransformerSlideEncoder(in_dim=16, embed_dim=32, num_heads=4, depth=1).eval()
    with torch.no_grad():
        assert torch.allclose(m(x, c), m(x, c + 5 * 256), atol=1e-6)  # translation invariant grid
    with pytest.raises(InputError, match="coords is None"):
        m(x, None)
    with pytest.raises(InputError, match="expects 16-d patch features but got 8-d"):
        m(torch.randn(1, 3, 8), c[:, :3])
    ml = SmallTransformerSlideEncoder(in_dim=16, embed_dim=32, num_heads=4, depth=1, pos="learned", max_grid=8)
    with pytest.raises(InputError, match="learned positions cover 8"):
        ml(x, c)
    mn = SmallTransformerSlideEncoder(in_dim=16, embed_dim=32, num_heads=4, depth=1, pos="none")
    assert mn(x).shape == (1, 32)
    with pytest.raises(ConfigError):
        SmallTransformerSlideEncoder(pos="rope")


def test_mask_contract():
    m = ABMILSlideEncoder(in_dim=4, embed_dim=3)
    x = torch.randn(2, 5, 4)
    left = torch.tensor([[True] * 5, [False, True, True, True, True]])  # True = valid; row 1 left-padded
    with pytest.raises(InputError, match="right padding"):
        m(x, mask=left)
    with pytest.raises(InputError, match="all padding"):
        m(x, mask=torch.tensor([[True] * 5, [False] * 5]))
    with pytest.raises(InputError, match=r"bool mask of shape \(2, 5\)"):
        m(x, mask=torch.ones(2, 5))


def test_grad_checkpointing_small_transformer():
    torch.manual_seed(0)
    m = SmallTransformerSlideEncoder(in_dim=16, embed_dim=32, num_heads=4, depth=2, dropout=0.0)
    x, c = _bag(B=1)
    m(x, c).sum().backward()
    g = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.set_grad_checkpointing(True)(x, c).sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(g, m.parameters()))


def test_token_state_patch_injection_api():
    """The adapter hook: replace patch tokens between layer groups; CLS and layout are preserved."""
    torch.manual_seed(0)
    m = SmallTransformerSlideEncoder(in_dim=16, embed_dim=32, num_heads=4, depth=2, dropout=0.0).eval()
    x, c = _bag(B=1)
    with torch.no_grad():
        s = m.embed(x, c)
        assert s.patch_index == slice(1, None) and s.prefix_index == slice(0, 1)
        same = s.with_patch_tokens(s.patch_tokens + 0.0)
        assert torch.equal(m.pool(m.run_layers(same, 0, 2)), m(x, c))
        # A per-token constant shift would be removed by the pre-norm LayerNorms (the output then
        # differs only by float rounding), so move the patch tokens by a random direction instead.
        g = torch.Generator().manual_seed(1)
        moved = s.with_patch_tokens(s.patch_tokens + torch.randn(s.patch_tokens.shape, generator=g))
        assert torch.equal(moved.tokens[:, 0], s.tokens[:, 0])
        assert (m.pool(m.run_layers(moved, 0, 2)) - m(x, c)).abs().max() > 1e-2
    with pytest.raises(ValueError, match="token layout changed"):
        s.with_tokens(s.tokens[:, :-1])
