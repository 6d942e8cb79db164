"""Symile, pairwise CLIP and MIRROR's loss parts against hand-computed values on tiny tensors."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.losses.contrastive import (
    LogitScale,
    clip_pair_loss,
    masked_reconstruction_loss,
    mip,
    pairwise_clip_loss,
    sinkhorn,
    swapped_prediction_loss,
    symile_logits,
    symile_loss,
)

# B = 2 patients, d = 3
A = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
B_ = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
C = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])


def _lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


def test_mip_hand_values():
    # row 0: 1*1*1 + 0*1*1 + 1*0*1 = 1; row 1: 0*1*0 + 1*0*1 + 0*1*1 = 0
    assert mip(A, B_, C).tolist() == [1.0, 0.0]
    assert mip(A, B_).tolist() == [1.0, 0.0]  # M = 2: the dot product


def test_symile_logits_n_squared_hand_values():
    # candidates: s=0 -> b0*c0=[1,1,0], b1*c1=[0,0,1]; s=1 -> b0*c1=[0,1,0], b1*c0=[1,0,1]
    logits = symile_logits(A, [B_, C], negative_sampling="n_squared")
    assert logits.tolist() == [[1.0, 1.0, 0.0, 2.0], [1.0, 0.0, 1.0, 0.0]]


def test_symile_logits_n_hand_values():
    # perm [1, 0] for b and c: shuffled products b1*c1=[0,0,1], b0*c0=[1,1,0]; diagonal = MIP positives [1, 0]
    swap = torch.tensor([1, 0])
    logits = symile_logits(A, [B_, C], negative_sampling="n", perms=[swap, swap])
    assert logits.tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_symile_loss_n_squared_matches_definition():
    """Loss = mean over anchors of CE of the positive among all B^2 (j, k) pairings, computed by hand loops."""
    scale = 2.0
    reps = [A, B_, C]
    expected = 0.0
    for m in range(3):
        o1, o2 = [reps[k] for k in range(3) if k != m]
        for i in range(2):
            cands = [scale * float((reps[m][i] * o1[j] * o2[k]).sum()) for j in range(2) for k in range(2)]
            pos = scale * float((reps[m][i] * o1[i] * o2[i]).sum())
            expected += (_lse(*cands) - pos) / 2
    expected /= 3
    got = symile_loss(reps, scale, negative_sampling="n_squared")
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_symile_anchor_a_first_terms_by_hand():
    # anchor a, n_squared, scale 1: row 0 -> lse(1,1,0,2) - 1; row 1 -> lse(1,0,1,0) - 0
    logits = symile_logits(A, [B_, C], negative_sampling="n_squared")
    ce = torch.nn.functional.cross_entropy(logits, torch.arange(2))
    assert ce.item() == pytest.approx(((_lse(1, 1, 0, 2) - 1) + _lse(1, 0, 1, 0)) / 2, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(0, 10_000))
def test_symile_n_squared_invariant_to_joint_row_permutation(b, seed):
    """Relabelling patients (the same permutation of every modality's rows) leaves the loss unchanged."""
    g = torch.Generator().manual_seed(seed)
    reps = [torch.randn(b, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    p = torch.randperm(b, generator=g)
    a = symile_loss(reps, 3.0, negative_sampling="n_squared")
    c = symile_loss([r[p] for r in reps], 3.0, negative_sampling="n_squared")
    assert a.item() == pytest.approx(c.item(), rel=1e-9, abs=1e-12)


def test_symile_rejects_bad_inputs():
    with pytest.raises(ValueError, match="unknown negative_sampling"):
        symile_loss([A, B_, C], 1.0, negative_sampling="all")
    with pytest.raises(ValueError, match="three modalities"):
        symile_loss([A, B_], 1.0, negative_sampling="n_squared")
    with pytest.raises(ValueError, match="same shape"):
        symile_loss([A, B_[:1], C], 1.0)


def test_clip_pair_hand_value():
    eye = torch.eye(2)
    # logits = I: each row CE = log(e + 1) - 1, both directions equal
    assert clip_pair_loss(eye, eye, 1.0).item() == pytest.approx(math.log(math.e + 1) - 1, rel=1e-6)
    # three identical modalities: three pairs
    assert pairwise_clip_loss([eye, eye, eye], 1.0).item() == pytest.approx(3 * (math.log(math.e + 1) - 1), rel=1e-6)


def test_clip_pair_asymmetric_hand_value():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # a b^T = [[1, 0], [1, 0]]; rows: lse(1,0)-1, lse(1,0)-0; columns (b a^T = [[1,1],[0,0]]): lse(1,1)-1, lse(0,0)-0
    rows = ((_lse(1, 0) - 1) + _lse(1, 0)) / 2
    cols = ((_lse(1, 1) - 1) + _lse(0, 0)) / 2
    assert clip_pair_loss(a, b, 1.0).item() == pytest.approx((rows + cols) / 2, rel=1e-6)


def test_logit_scale_starts_at_clip_value_and_clamps():
    assert LogitScale()().item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert LogitScale(init=10.0)().item() == pytest.approx(100.0)


def test_masked_reconstruction_hand_value():
    recon = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    mask = torch.tensor([[True, True], [False, True]])
    # masked errors: 1, 0, 16 -> mean 17/3 (the unmasked 0-error entry does not count)
    assert masked_reconstruction_loss(recon, target, mask).item() == pytest.approx(17 / 3)
    assert masked_reconstruction_loss(recon, target, torch.zeros_like(mask)).item() == 0.0


def test_sinkhorn_uniform_and_balanced():
    q = sinkhorn(torch.zeros(4, 2))
    assert torch.allclose(q, torch.full((4, 2), 0.5))
    q = sinkhorn(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), eps=0.5, n_iters=50)
    assert torch.allclose(q.sum(1), torch.ones(6), atol=1e-5)
    assert torch.allclose(q.sum(0), torch.full((3,), 2.0), atol=1e-3)


def test_swapped_prediction_hand_value():
    # uniform scores: q = 1/K everywhere, p = 1/K -> loss = log K
    s = torch.zeros(3, 4)
    assert swapped_prediction_loss(s, s).item() == pytest.approx(math.log(4), rel=1e-6)


def test_swapped_prediction_agreeing_assignments_cost_less():
    sharp = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    agree = swapped_prediction_loss(sharp, sharp)
    disagree = swapped_prediction_loss(sharp, sharp.flip(1))
    assert agree.item() < disagree.item()


def test_losses_have_gradients():
    reps = [torch.randn(4, 3, requires_grad=True) for _ in range(3)]
    for loss in (symile_loss(reps, 2.0), symile_loss(reps, 2.0, negative_sampling="n_squared"), pairwise_clip_loss(reps, 2.0)):
        grads = torch.autograd.grad(loss, reps)
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_n_sampling_candidates_are_products_of_shuffled_rows():
    """Every off-diagonal "n" logit is the anchor against b_{p(j)} * c_{q(j)} (itertools check of all cells)."""
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(3))
    p, q = torch.tensor([2, 0, 1]), torch.tensor([1, 2, 0])
    logits = symile_logits(a, [b, c], negative_sampling="n", perms=[p, q])
    for i, j in itertools.product(range(3), range(3)):
        want = (a[i] * b[i] * c[i]).sum() if i == j else (a[i] * b[p[j]] * c[q[j]]).sum()
        assert logits[i, j].item() == pytest.approx(want.item(), rel=1e-12)
