"""Gated bilinear (Kronecker-product) fusion of two embeddings (Pathomic Fusion, Chen et al., IEEE TMI 2020).

Each modality is gated by the other: ``h_k = ReLU(W_h x_k)``, ``z_k = W_z [x_1; x_2]``,
``o_k = Dropout(ReLU(W_o (sigmoid(z_k) * h_k)))``; then ``o = vec([o_1; 1] (x) [o_2; 1])`` (the
appended 1 keeps the unimodal terms), ``out = enc2(enc1(Dropout(o)))``. Parameter names follow
``BilinearFusion`` of mahmoodlab/PathomicFusion, MCAT and PORPOISE so their checkpoints load.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["BilinearFusion"]


class BilinearFusion(nn.Module):
    """Gated Kronecker fusion.

    Args:
        dim1, dim2: input widths of the two modalities.
        scale_dim1, scale_dim2: each gated modality is reduced to ``dim // scale_dim`` before the
            outer product (MCAT: 256 // 8 = 32, so the product has 33 * 33 entries).
        mmhid: output width.
        dropout: dropout rate of every dropout layer (official 0.25).
        skip: concatenate the raw inputs before the last layer.
        use_bilinear: the gates ``z_k`` are ``nn.Bilinear(x_1, x_2)`` instead of a Linear of the concatenation.
        gate1, gate2: gate modality 1 / 2 (otherwise ``o_k = W_o h_k``).

    Shapes: ``(B, dim1), (B, dim2) -> (B, mmhid)``.
    """

    def __init__(self, dim1: int = 128, dim2: int = 128, scale_dim1: int = 1, scale_dim2: int = 1, mmhid: int = 256,
                 dropout: float = 0.25, skip: bool = False, use_bilinear: bool = False, gate1: bool = True, gate2: bool = True):
        super().__init__()
        self.skip, self.use_bilinear, self.gate1, self.gate2 = skip, use_bilinear, gate1, gate2
        d1, d2 = dim1 // scale_dim1, dim2 // scale_dim2
        self.linear_h1 = nn.Sequential(nn.Linear(dim1, d1), nn.ReLU())
        self.linear_z1 = nn.Bilinear(dim1, dim2, d1) if use_bilinear else nn.Sequential(nn.Linear(dim1 + dim2, d1))
        self.linear_o1 = nn.Sequential(nn.Linear(d1, d1), nn.ReLU(), nn.Dropout(dropout))
        self.linear_h2 = nn.Sequential(nn.Linear(dim2, d2), nn.ReLU())
        self.linear_z2 = nn.Bilinear(dim1, dim2, d2) if use_bilinear else nn.Sequential(nn.Linear(dim1 + dim2, d2))
        self.linear_o2 = nn.Sequential(nn.Linear(d2, d2), nn.ReLU(), nn.Dropout(dropout))
        self.post_fusion_dropout = nn.Dropout(dropout)
        self.encoder1 = nn.Sequential(nn.Linear((d1 + 1) * (d2 + 1), 256), nn.ReLU(), nn.Dropout(dropout))
        self.encoder2 = nn.Sequential(nn.Linear(256 + (dim1 + dim2 if skip else 0), mmhid), nn.ReLU(), nn.Dropout(dropout))
        self.out_dim = mmhid

    def _gate(self, k: int, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        h = getattr(self, f"linear_h{k}")(x1 if k == 1 else x2)
        if getattr(self, f"gate{k}"):
            lin_z = getattr(self, f"linear_z{k}")
            z = lin_z(x1, x2) if self.use_bilinear else lin_z(torch.cat((x1, x2), dim=1))
            h = torch.sigmoid(z) * h
        return getattr(self, f"linear_o{k}")(h)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        o1, o2 = self._gate(1, x1, x2), self._gate(2, x1, x2)
        one = o1.new_ones(o1.shape[0], 1)
        o1, o2 = torch.cat((o1, one), 1), torch.cat((o2, one), 1)
        o12 = torch.bmm(o1.unsqueeze(2), o2.unsqueeze(1)).flatten(start_dim=1)  # (B, (d1+1)(d2+1))
        out = self.encoder1(self.post_fusion_dropout(o12))
        if self.skip:
            out = torch.cat((out, x1, x2), 1)
        return self.encoder2(out)
