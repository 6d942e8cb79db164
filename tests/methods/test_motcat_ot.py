"""MOTCat's optimal-transport co-attention: the plan against POT and closed forms, gradients, micro-batches."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

ot = pytest.importorskip("ot")

from modaltune.layers.optimal_transport import OTCoAttention, unbalanced_plan  # noqa: E402 - after importorskip: skip the module without POT


def test_one_by_one_plan_has_the_closed_form_mass():
    # 1x1 problem, a = b = 1, cost c: the fixed point u = (1/(K v))^f, v = (1/(K u))^f with
    # K = exp(-c/reg), f = tau/(tau+reg) gives P = uKv = K^((1-f)/(1+f)) = exp(-c / (reg + 2 tau)).
    p = unbalanced_plan(torch.tensor([[1.0]], dtype=torch.float64), reg=0.1, tau=0.5)
    assert p.item() == pytest.approx(math.exp(-1.0 / 1.1), rel=1e-6)


def test_hand_set_plan_matches_pot_and_the_scaling_fixed_point():
    M = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]])  # hand-set cost
    a, b, reg, tau = np.array([0.6, 0.4]), np.array([0.2, 0.3, 0.5]), 0.2, 0.5
    with pytest.warns(UserWarning, match="entropy"):
        ref = ot.unbalanced.sinkhorn_knopp_unbalanced(a, b, M, reg, tau, reg_type="entropy", stopThr=1e-12, numItermax=10_000)
    p = unbalanced_plan(torch.from_numpy(M), reg, tau, torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-9)  # POT's default stopThr 1e-6 in our call
    # optimality of the entropic UOT plan: P = diag(u) K diag(v) with u = (a / K v)^f, v = (b / K^T u)^f
    K, f = np.exp(-M / reg), tau / (tau + reg)
    R = p / K  # must be rank one: u_i v_j
    u1, v1 = R[:, 0], R[0] / R[0, 0]
    np.testing.assert_allclose(R, np.outer(u1, v1), rtol=1e-6)
    # the scale c of (c u1, v1 / c) is fixed by the u-equation: c^(1-f) = (a / K v1)^f / u1, the same for every row
    c = ((a / (K @ v1)) ** f / u1) ** (1 / (1 - f))
    np.testing.assert_allclose(c, c[0], rtol=1e-4)
    u, v = c[0] * u1, v1 / c[0]
    np.testing.assert_allclose(v, (b / (K.T @ u)) ** f, rtol=1e-4)
    # unbalanced: the marginals are only approximately a and b (a balanced plan would match them exactly)
    assert np.abs(p.sum(1) - a).max() > 1e-2


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 12), s=st.integers(1, 6), seed=st.integers(0, 1000))
def test_layer_plan_is_pot_on_the_official_normalised_cost(n, s, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 8, generator=g), torch.randn(s, 8, generator=g)
    layer = OTCoAttention(reg=0.1, tau=0.5)
    out, p = layer(x, y)
    xs, ys = x - x.min(1, keepdim=True).values, y - y.min(1, keepdim=True).values
    c = (torch.cdist(xs.double(), ys.double()) ** 2).numpy()
    with pytest.warns(UserWarning, match="entropy"):
        ref = ot.unbalanced.sinkhorn_knopp_unbalanced(np.full(n, 1 / n), np.full(s, 1 / s), c / c.max(), 0.1, 0.5, reg_type="entropy")
    np.testing.assert_allclose(p.numpy(), ref, rtol=1e-5, atol=1e-7)  # float32 plan
    torch.testing.assert_close(out, p.T @ x)
    assert p.shape == (n, s) and (p >= 0).all()


def test_gradients_reach_the_patches_only_through_the_value_path():
    torch.manual_seed(0)
    x = torch.randn(7, 4, requires_grad=True)
    y = torch.randn(3, 4, requires_grad=True)
    out, p = OTCoAttention()(x, y)
    assert not p.requires_grad  # official: plan from the detached cost, a constant
    out.sum().backward()
    assert y.grad is None  # no gradient through the cost into the genomic tokens
    # d(sum P^T x)/dx_i = sum_j P_ij (each feature), the plan's row mass
    torch.testing.assert_close(x.grad, p.sum(1, keepdim=True).expand(-1, 4))


def test_micro_batches_follow_the_official_split(tmp_path):
    import pandas as pd

    from modaltune.methods import build_method
    from modaltune.testing.batches import make_batch, make_info

    info = make_info(clinical=False, pathways=False)
    sig = tmp_path / "sig.csv"
    pd.DataFrame({"A": ["rna0", "cnv0"], "B": ["rna1", "rna2"]}).to_csv(sig, index=False)
    sig = str(sig)
    m = build_method("motcat", info, signatures=sig, bs_micro=4)
    valid = torch.arange(10)
    assert [c.numel() for c in m.encoder.chunks(valid)] == [4, 3, 3]  # 10 // 4 + 1 = 3 near-equal chunks
    m.train()
    assert sorted(torch.cat(m.encoder.chunks(valid)).tolist()) == list(range(10))  # shuffled, every patch once
    m.eval()
    b = make_batch(B=3, n_max=10, info=info)
    with torch.no_grad():
        small = m(b)["embedding"]
        m.encoder.bs_micro = 10_000  # one chunk: the plain official forward
        whole = m(b)["embedding"]
    assert torch.isfinite(small).all() and not torch.allclose(small[0], whole[0])  # patient 0 has 10 patches: 3 chunks vs 1
