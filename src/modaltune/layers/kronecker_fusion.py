"""Gated Kronecker-product ("bilinear") fusion of two embeddings, and the SNN block of the same papers.

One block serves Pathomic Fusion (Chen et al., IEEE TMI 2020; mahmoodlab/PathomicFusion ``fusion.py``
``BilinearFusion``) and PORPOISE (Chen et al., Cancer Cell 2022; mahmoodlab/PORPOISE
``models/model_porpoise.py`` ``BilinearFusion``). For modality m in {1, 2} with input ``v_m``:

    h_m = ReLU(W_h,m v_m)                                   (linear_h{m}; width d_m = dim_m // scale_m)
    z_m = W_z,m [v_1; v_2]   or   v_1^T W_z,m v_2 (bilinear) (linear_z{m}; the gate sees both modalities)
    o_m = Dropout(ReLU(W_o,m (sigmoid(z_m) * h_m)))          (linear_o{m})
    f   = [o_1; 1] (x) [o_2; 1]                              (Kronecker product, (d_1+1)(d_2+1) values)
    out = encoder2([encoder1(Dropout(f)); skip])

Appending 1 to each embedding makes ``f`` contain o_1, o_2 and all products o_1i o_2j. The two
codebases differ in small ways, selected by arguments: the width of ``encoder1`` (PORPOISE 256,
Pathomic ``mmhid``), dropout after the encoders (Pathomic only), what the skip connection
concatenates (PORPOISE the raw inputs ``v_1, v_2``; Pathomic the augmented ``[o_m; 1]``), and what an
ungated branch does (PORPOISE ``o_m = W_o,m h_m``; Pathomic ``o_m = W_o,m v_m``, skipping linear_h).
Unused layers (linear_h/linear_z of an ungated branch) are still built, as in the official code, so
official checkpoints load strictly.

Missing modalities (not in the official code, which assumes both): a patient without modality m has
``v_m`` replaced by zeros before any layer reads it (so it does not drive the partner's gate) and
``o_m`` set to 0 after the gate. Then ``[o_m; 1] = e_last`` and the Kronecker product keeps exactly the
present modality's terms ``[o_other; 1]``: the missing branch is dropped from the fusion, with no
extra parameters. A patient with neither modality gets a constant fused vector (the heads' prior).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from modaltune.errors import ConfigError, InputError

__all__ = ["GatedKroneckerFusion", "init_max_weights_", "snn_block"]


def snn_block(in_dim: int, out_dim: int, dropout: float = 0.25) -> nn.Sequential:
    """``Linear -> ELU -> AlphaDropout``: the official ``SNN_Block`` (index 0 is the Linear)."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ELU(), nn.AlphaDropout(p=dropout))


def init_max_weights_(module: nn.Module) -> nn.Module:
    """The official ``init_max_weights``: every ``nn.Linear`` (exact type, not Bilinear) gets
    ``W ~ N(0, 1/fan_in)``, ``b = 0``."""
    for m in module.modules():
        if type(m) is nn.Linear:
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.weight.shape[1]))
            nn.init.zeros_(m.bias)
    return module


def _present(p: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    if p is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    p = torch.as_tensor(p, dtype=torch.bool, device=device)
    if p.shape != (n,):
        raise InputError(f"modality presence has shape {tuple(p.shape)}, expected ({n},)")
    return p


class GatedKroneckerFusion(nn.Module):
    """Gated Kronecker fusion ``(v_1 (B, dim1), v_2 (B, dim2)) -> (B, mmhid)``.

    Args:
        dim1, dim2: input widths.
        scale_dim1, scale_dim2: the gated embeddings have width ``dim // scale`` (PORPOISE 8, Pathomic 1).
        mmhid: output width.
        hidden1: width of ``encoder1`` (None: ``mmhid``; PORPOISE hard-codes 256).
        gate1, gate2: use the gate of each branch.
        use_bilinear: gate logits by ``nn.Bilinear(v_1, v_2)`` instead of a Linear on ``[v_1; v_2]``.
        skip: ``None``, ``"inputs"`` (PORPOISE: concatenate ``v_1, v_2`` before encoder2) or
            ``"gated"`` (Pathomic: concatenate ``[o_1; 1], [o_2; 1]``).
        dropout: dropout of linear_o, of the fused vector and (if ``encoder_dropout``) of the encoders.
        encoder_dropout: dropout after encoder1/encoder2 (Pathomic ``fusion.py``; PORPOISE has none).
        ungated: ``"h"`` (PORPOISE: ``o = linear_o(linear_h(v))``) or ``"direct"`` (Pathomic: ``o = linear_o(v)``).
        init_max: apply :func:`init_max_weights_` (Pathomic does; PORPOISE's call is commented out).
    """

    def __init__(self, dim1: int, dim2: int, *, scale_dim1: int = 1, scale_dim2: int = 1, mmhid: int = 64, hidden1: int | None = None,
                 gate1: bool = True, gate2: bool = True, use_bilinear: bool = False, skip: Literal["inputs", "gated"] | None = None,
                 dropout: float = 0.25, encoder_dropout: bool = False, ungated: Literal["h", "direct"] = "h", init_max: bool = False):
        super().__init__()
        if skip not in (None, "inputs", "gated"):
            raise ConfigError(f"skip must be None, 'inputs' or 'gated', got {skip!r}", where="method.params.skip")
        if ungated not in ("h", "direct"):
            raise ConfigError(f"ungated must be 'h' or 'direct', got {ungated!r}")
        d1, d2 = dim1 // scale_dim1, dim2 // scale_dim2
        if d1 < 1 or d2 < 1:
            raise ConfigError(f"dim // scale_dim must be >= 1, got {dim1}//{scale_dim1} and {dim2}//{scale_dim2}", where="method.params.scale_dim1")
        if ungated == "direct" and ((not gate1 and d1 != dim1) or (not gate2 and d2 != dim2)):
            raise ConfigError("an ungated branch that skips linear_h needs scale_dim 1", where="method.params.scale_dim1")
        self.gate1, self.gate2, self.use_bilinear, self.skip, self.ungated = bool(gate1), bool(gate2), bool(use_bilinear), skip, ungated
        self.dim1, self.dim2 = int(dim1), int(dim2)
        hidden1 = int(hidden1 or mmhid)
        skip_dim = {None: 0, "inputs": dim1 + dim2, "gated": d1 + d2 + 2}[skip]

        def gate(out: int) -> nn.Module:
            return nn.Bilinear(dim1, dim2, out) if use_bilinear else nn.Sequential(nn.Linear(dim1 + dim2, out))

        def enc(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(i, o), nn.ReLU(), *([nn.Dropout(dropout)] if encoder_dropout else []))

        self.linear_h1 = nn.Sequential(nn.Linear(dim1, d1), nn.ReLU())
        self.linear_z1 = gate(d1)
        self.linear_o1 = nn.Sequential(nn.Linear(d1, d1), nn.ReLU(), nn.Dropout(dropout))
        self.linear_h2 = nn.Sequential(nn.Linear(dim2, d2), nn.ReLU())
        self.linear_z2 = gate(d2)
        self.linear_o2 = nn.Sequential(nn.Linear(d2, d2), nn.ReLU(), nn.Dropout(dropout))
        self.post_fusion_dropout = nn.Dropout(dropout)
        self.encoder1 = enc((d1 + 1) * (d2 + 1), hidden1)
        self.encoder2 = enc(hidden1 + skip_dim, mmhid)
        self.out_dim = int(mmhid)
        if init_max:
            init_max_weights_(self)

    def _branch(self, v: torch.Tensor, gated: bool, lin_h: nn.Module, lin_z: nn.Module, lin_o: nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        if gated:
            z = lin_z(v1, v2) if self.use_bilinear else lin_z(torch.cat([v1, v2], dim=1))
            return lin_o(torch.sigmoid(z) * lin_h(v))
        return lin_o(lin_h(v) if self.ungated == "h" else v)

    def forward(self, vec1: torch.Tensor, vec2: torch.Tensor, present1: torch.Tensor | None = None, present2: torch.Tensor | None = None) -> torch.Tensor:
        """``vec1 (B, dim1)``, ``vec2 (B, dim2)``, presence ``(B,)`` bool (None = all present) -> ``(B, mmhid)``."""
        if vec1.ndim != 2 or vec2.ndim != 2 or vec1.shape[1] != self.dim1 or vec2.shape[1] != self.dim2 or vec1.shape[0] != vec2.shape[0]:
            raise InputError(f"gated fusion expects (B, {self.dim1}) and (B, {self.dim2}), got {tuple(vec1.shape)} and {tuple(vec2.shape)}")
        B = vec1.shape[0]
        p1, p2 = _present(present1, B, vec1.device), _present(present2, B, vec1.device)
        zero = vec1.new_zeros(())
        # torch.where (not multiplication) so NaN in an absent row never leaks into the output.
        v1 = torch.where(p1[:, None], vec1, zero)
        v2 = torch.where(p2[:, None], vec2, zero)
        o1 = torch.where(p1[:, None], self._branch(v1, self.gate1, self.linear_h1, self.linear_z1, self.linear_o1, v1, v2), zero)
        o2 = torch.where(p2[:, None], self._branch(v2, self.gate2, self.linear_h2, self.linear_z2, self.linear_o2, v1, v2), zero)
        one = o1.new_ones(B, 1)
        o1, o2 = torch.cat([o1, one], dim=1), torch.cat([o2, one], dim=1)
        fused = (o1[:, :, None] * o2[:, None, :]).flatten(start_dim=1)  # (B, (d1+1)(d2+1)), row-major as torch.bmm
        out = self.encoder1(self.post_fusion_dropout(fused))
        if self.skip == "inputs":
            out = torch.cat([out, v1, v2], dim=1)
        elif self.skip == "gated":
            out = torch.cat([out, o1, o2], dim=1)
        return self.encoder2(out)
