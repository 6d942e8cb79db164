"""Clinical MLP encoder."""
from __future__ import annotations

import pytest
import torch

from modaltune.encoders.clinical import ClinicalMLP
from modaltune.errors import ConfigError, InputError


def test_clinical_mlp_shapes_and_layers():
    enc = ClinicalMLP(5, hidden=(8, 4), dropout=0.5, layer_norm=True)
    assert enc.out_dim == 4
    assert [type(m).__name__ for m in enc.net] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "LayerNorm"]
    assert enc(torch.randn(1, 5)).shape == (1, 4)
    enc.eval()
    x = torch.randn(3, 5)
    assert torch.equal(enc(x), enc(x))  # dropout off in eval
    # LayerNorm output: zero mean / unit variance per row
    y = enc(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(3), atol=1e-5, rtol=0)


def test_clinical_mlp_errors():
    with pytest.raises(ConfigError, match="no encoded clinical fields"):
        ClinicalMLP(0)
    with pytest.raises(InputError, match=r"\(B, 5\)"):
        ClinicalMLP(5)(torch.randn(2, 6))
