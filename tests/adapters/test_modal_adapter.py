"""Modal Adapter: zero-gate identity, frozen backbone, masking of missing modal tokens."""
import copy

import pytest
import torch

from modaltune.adapters.modal_adapter import CrossAttention, ModalAdapter
from modaltune.encoders.slide.gigapath import GigaPathSlideEncoder


def _tiny_backbone(seed=0):
    torch.manual_seed(seed)
    return GigaPathSlideEncoder(in_dim=16, embed_dim=64, depth=4, num_heads=16, ffn_dim=64)


def _inputs(B=2, N=20, M=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, N, 16, generator=g)
    coords = torch.stack([torch.randint(0, 30, (B, N), generator=g) * 256, torch.randint(0, 30, (B, N), generator=g) * 256], -1).float()
    tokens = torch.randn(B, M, 64, generator=g)
    mask = torch.ones(B, M, dtype=torch.bool)
    return feats, coords, tokens, mask


def test_zero_gates_reproduce_frozen_backbone_exactly():
    bb = _tiny_backbone()
    ref = copy.deepcopy(bb).eval()
    ad = ModalAdapter(bb, [[0, 1], [2, 3]], attn_dim=24, heads=4, ffn_dim=24)
    ad.train()  # the backbone must stay in eval mode regardless
    feats, coords, tokens, mask = _inputs()
    slide, _ = ad(feats, coords, tokens, mask)
    with torch.no_grad():
        expect = ref(feats, coords)
    assert torch.equal(slide.detach(), expect)


def test_backbone_parameters_bit_identical_after_training():
    bb = _tiny_backbone()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    ad = ModalAdapter(bb, [[0, 1], [2, 3]], attn_dim=24, heads=4, ffn_dim=24)
    opt = torch.optim.AdamW(ad.trainable_parameters(), lr=1e-2, weight_decay=0.1)
    feats, coords, tokens, mask = _inputs()
    target = torch.randn(2, 64)
    losses = []
    for _ in range(5):
        slide, c = ad(feats, coords, tokens, mask)
        loss = ((slide - target) ** 2).mean() + c.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in bb.parameters())
    for k, v in bb.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the gates did move away from zero: the adapter is actually trained
    assert any(inj.gamma.abs().sum() > 0 for inj in ad.injectors)


def test_missing_modal_tokens_are_masked_out():
    bb = _tiny_backbone()
    ad = ModalAdapter(bb, [[0, 1], [2, 3]], attn_dim=24, heads=4, ffn_dim=24).eval()
    for inj in ad.injectors:
        torch.nn.init.normal_(inj.gamma, std=0.5)
    feats, coords, tokens, mask = _inputs(B=1, M=5)
    mask[0, 3:] = False  # tokens 3,4 belong to a missing modality
    out1, c1 = ad(feats, coords, tokens, mask)
    tokens2 = tokens.clone()
    tokens2[0, 3:] = 1000.0 * torch.randn(2, 64)  # garbage in the missing tokens changes nothing
    out2, c2 = ad(feats, coords, tokens2, mask)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(c1[0, :3], c2[0, :3])


def test_patient_without_any_modal_token_gets_frozen_output():
    bb = _tiny_backbone()
    ref = copy.deepcopy(bb).eval()
    ad = ModalAdapter(bb, [[0, 1], [2, 3]], attn_dim=24, heads=4, ffn_dim=24).eval()
    for inj in ad.injectors:
        torch.nn.init.normal_(inj.gamma, std=0.5)
    feats, coords, tokens, mask = _inputs(B=1)
    mask[:] = False
    out, c = ad(feats, coords, tokens, mask)
    assert torch.isfinite(c).all()
    torch.testing.assert_close(out, ref(feats, coords))


def test_groups_must_cover_backbone_layers():
    with pytest.raises(ValueError, match="cover"):
        ModalAdapter(_tiny_backbone(), [[0, 1], [2, 2]])
    with pytest.raises(ValueError, match="in order"):
        ModalAdapter(_tiny_backbone(), [[0, 1], [3, 3]])


def test_cross_attention_matches_manual_softmax():
    torch.manual_seed(0)
    ca = CrossAttention(8, attn_dim=4, heads=2)
    q = torch.randn(1, 3, 8)
    k = torch.randn(1, 5, 8)
    mask = torch.tensor([[True, True, False, True, False]])
    out = ca(q, k, mask)
    qn, kn = ca.norm_q(q), ca.norm_kv(k)
    Q, K, V = ca.q(qn).view(1, 3, 2, 2), ca.k(kn).view(1, 5, 2, 2), ca.v(kn).view(1, 5, 2, 2)
    heads = []
    for h in range(2):
        s = Q[0, :, h] @ K[0, :, h].T / (2 ** 0.5)
        s[:, ~mask[0]] = float("-inf")
        heads.append(torch.softmax(s, -1) @ V[0, :, h])
    expect = ca.out(torch.cat(heads, -1))[None]
    torch.testing.assert_close(out, expect)
