"""Shared layers of the co-attention methods: gated attention pooling and gated bilinear fusion."""
from __future__ import annotations

import torch

from modaltune.layers import BilinearFusion, GatedAttention


def test_gated_attention_with_equal_scores_is_the_mean_of_the_valid_tokens():
    att = GatedAttention(4, 3, dropout=0.25).eval()
    torch.nn.init.zeros_(att.attention_c.weight)  # every token scores the same
    x = torch.randn(2, 5, 4)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    pooled, w = att(x, mask)
    torch.testing.assert_close(w[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]))
    torch.testing.assert_close(pooled[0], x[0, :3].mean(0))
    torch.testing.assert_close(pooled[1], x[1].mean(0))


def test_gated_attention_scores_are_tanh_times_sigmoid_gates():
    att = GatedAttention(2, 2)
    x = torch.randn(3, 2)
    a, b, c = att.attention_a[0], att.attention_b[0], att.attention_c
    expected = c(torch.tanh(a(x)) * torch.sigmoid(b(x)))
    torch.testing.assert_close(att.scores(x), expected)


def test_bilinear_fusion_keeps_the_unimodal_terms_through_the_appended_one():
    f = BilinearFusion(dim1=8, dim2=8, scale_dim1=4, scale_dim2=4, mmhid=5).eval()
    assert f.encoder1[0].in_features == 3 * 3  # (8 // 4 + 1) ** 2
    # silence modality 2: o2 = [0, 0, 1], so the product holds o1 (times 1) in its last-column entries
    for p in f.linear_o2.parameters():
        torch.nn.init.zeros_(p)
    x1, x2 = torch.randn(4, 8), torch.randn(4, 8)
    o1 = f._gate(1, x1, x2)
    o12 = torch.zeros(4, 3, 3)
    o12[:, :2, 2] = o1
    o12[:, 2, 2] = 1.0
    torch.testing.assert_close(f(x1, x2), f.encoder2(f.encoder1(o12.flatten(1))))
    assert f(x1, x2).shape == (4, 5)
