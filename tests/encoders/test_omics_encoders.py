"""Omics encoders: SNN init statistics, MLP, Gene Mixer pathway membership and equivalence."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from modaltune.encoders.omics import GeneMixer, MLPEncoder, SNNEncoder
from modaltune.errors import ConfigError, InputError


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; avoid oversubscribing the shared cores
    yield
    torch.set_num_threads(n)


PATHWAYS = [np.array(ix) for ix in ([0, 1, 2], [3, 4], [5], [6, 7, 8, 9, 10, 11, 12], [0, 13, 14, 15], list(range(16, 24)))]
OUTSIDE = [24, 25, 26, 27, 28, 29]


def _linear_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    acts = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: acts.append(o.detach())) for m in model.modules() if isinstance(m, (nn.SELU, nn.ELU))]
    model(x)
    for h in hooks:
        h.remove()
    return acts


def test_snn_init_is_lecun_normal():
    torch.manual_seed(0)
    enc = SNNEncoder(2000, hidden=(512, 256))
    lin = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    for m in lin:
        assert m.weight.std().item() == pytest.approx(1 / math.sqrt(m.in_features), rel=0.03)
        assert torch.all(m.bias == 0)


def test_snn_selu_is_self_normalising_at_init():
    """SELU + LeCun init: zero mean / unit variance kept through 8 layers (Klambauer et al. fixed point)."""
    torch.manual_seed(0)
    enc = SNNEncoder(400, hidden=(512,) * 8, activation="selu").eval()
    x = torch.randn(4096, 400)
    acts = _linear_outputs(enc, x)
    assert len(acts) == 8
    for a in acts:
        assert abs(a.mean().item()) < 0.1
        assert a.var().item() == pytest.approx(1.0, abs=0.15)
    # AlphaDropout keeps the statistics in training mode too
    enc.train()
    a = _linear_outputs(enc, x)[-1]
    assert abs(a.mean().item()) < 0.15 and a.var().item() == pytest.approx(1.0, abs=0.2)


def test_snn_elu_first_layer_moments_match_hand_computation():
    """MCAT's ELU SNN: pre-activations ~ N(0, 1) at init, so ELU outputs have the closed-form
    mean phi(0) + e^{1/2} Phi(-1) - 1/2 = 0.1605 and variance 0.619 (not a fixed point)."""
    torch.manual_seed(1)
    enc = SNNEncoder(1000, hidden=(2048,), activation="elu").eval()
    a = _linear_outputs(enc, torch.randn(2048, 1000))[0]
    from scipy.stats import norm

    mean = norm.pdf(0) + math.exp(0.5) * norm.cdf(-1) - 0.5
    second = 0.5 + math.exp(2) * norm.cdf(-2) - 2 * math.exp(0.5) * norm.cdf(-1) + norm.cdf(0)
    assert a.mean().item() == pytest.approx(mean, abs=0.01)
    assert a.var().item() == pytest.approx(second - mean**2, abs=0.02)
    assert mean == pytest.approx(0.1605, abs=1e-3)


def test_snn_structure_and_errors():
    enc = SNNEncoder(10, hidden=(16, 8), dropout=0.25)
    kinds = [type(m).__name__ for m in enc.net]
    assert kinds == ["Linear", "ELU", "AlphaDropout", "Linear", "ELU", "AlphaDropout"]
    assert enc.out_dim == 8 and enc(torch.randn(1, 10)).shape == (1, 8)
    with pytest.raises(InputError, match=r"\(B, 10\)"):
        enc(torch.randn(3, 11))
    with pytest.raises(ConfigError):
        SNNEncoder(10, activation="relu")
    with pytest.raises(ConfigError):
        SNNEncoder(10, hidden=())


def test_mlp_encoder_shapes():
    enc = MLPEncoder(7, hidden=(5, 3), dropout=0.0, layer_norm=True)
    assert enc(torch.randn(4, 7)).shape == (4, 3) and enc.out_dim == 3
    with pytest.raises(ConfigError):
        MLPEncoder(7, activation="swishy")


def _mixer(**kw) -> GeneMixer:
    torch.manual_seed(0)
    return GeneMixer(30, PATHWAYS, [f"P{i}" for i in range(len(PATHWAYS))], token_dim=16, channel_hidden=8, n_blocks=2, **kw).eval()


def test_gene_mixer_shapes_and_tokens():
    gm = _mixer()
    x = torch.randn(5, 30)
    assert gm(x).shape == (5, 16)
    assert gm(x[:1]).shape == (1, 16)
    assert gm.pathway_tokens(x).shape == (5, 6, 16)
    assert gm.pathway_embeddings(x).shape == (5, 6, 16)
    gm_c = _mixer(n_compress=3)
    assert gm_c(x).shape == (5, 16)


def test_gene_mixer_respects_pathway_membership():
    gm = _mixer()
    x = torch.randn(4, 30)
    out = gm(x)
    tokens = gm.pathway_embeddings(x)
    # a gene in no pathway changes nothing
    x2 = x.clone()
    x2[:, OUTSIDE] += 5.0
    assert torch.equal(gm(x2), out)
    # gene 14 is only in pathway 4: exactly that token changes
    x3 = x.clone()
    x3[:, 14] += 3.0
    t3 = gm.pathway_embeddings(x3)
    changed = (t3 - tokens).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [False, False, False, False, True, False]
    # gene 0 is in pathways 0 and 4
    x4 = x.clone()
    x4[:, 0] -= 3.0
    changed = (gm.pathway_embeddings(x4) - tokens).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [True, False, False, False, True, False]
    assert not torch.allclose(gm(x4), out)


def test_gene_mixer_buckets_equal_individual_pathway_networks():
    """The bucketed einsum equals one Linear(n_i -> d) -> ELU -> Linear(d -> d) -> ELU per pathway."""
    gm = _mixer()
    x = torch.randn(3, 30)
    got = gm.pathway_embeddings(x)
    ref = [None] * len(PATHWAYS)
    for b, members in zip(gm.buckets, gm.bucket_members):
        for r, p in enumerate(members):
            idx = PATHWAYS[p]
            assert b.index[r, : len(idx)].tolist() == list(idx) and bool((b.index[r, len(idx):] == 30).all())
            h = torch.nn.functional.elu(x[:, idx] @ b.w1[r, : len(idx)] + b.b1[r])
            ref[p] = torch.nn.functional.elu(h @ b.w2[r] + b.b2[r])
    assert len(ref) == len(PATHWAYS)
    torch.testing.assert_close(got, torch.stack(ref, 1), rtol=1e-5, atol=1e-6)


def test_gene_mixer_parameter_count_and_init():
    gm = _mixer()
    d = 16
    used_first = sum(len(i) * d + d for i in PATHWAYS)
    # padded first-layer weights exist but get no gradient
    x = torch.randn(6, 30)
    gm.train()
    gm(x).sum().backward()
    for b in gm.buckets:
        sizes = (b.index < 30).sum(1)
        for r, n in enumerate(sizes.tolist()):
            assert torch.all(b.w1.grad[r, n:] == 0)
    trainable_first = sum(int((b.index < 30).sum()) * d + b.b1.numel() for b in gm.buckets)
    assert trainable_first == used_first
    # bucket k holds sizes in (2^(k-1), 2^k]: max padding factor < 2
    for b in gm.buckets:
        sizes = (b.index < 30).sum(1)
        assert sizes.max() < 2 * sizes.min() or sizes.max() == 1
    # first-layer init uses each pathway's true fan-in
    big = GeneMixer(600, [np.arange(500), np.arange(100, 108)], token_dim=256)
    for b in big.buckets:
        n = int((b.index < 600).sum(1)[0])
        assert b.w1[0, :n].std().item() == pytest.approx(1 / math.sqrt(n), rel=0.1)


def test_gene_mixer_input_errors():
    with pytest.raises(InputError, match="indexes gene"):
        GeneMixer(10, [np.array([0, 12])])
    with pytest.raises(InputError, match="no genes"):
        GeneMixer(10, [np.array([], dtype=int)])
    with pytest.raises(InputError, match="no pathways"):
        GeneMixer(10, [])
    with pytest.raises(InputError):
        _mixer()(torch.randn(2, 29))
