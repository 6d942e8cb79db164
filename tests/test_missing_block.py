"""Missing-modality building blocks: learned missing embedding, masked mean, key mask, modality dropout."""
from __future__ import annotations

import pytest
import torch

from modaltune.errors import ConfigError, InputError
from modaltune.layers.missing import MissingModalityEmbedding, ModalityDropout, masked_mean, modality_key_mask


def test_missing_embedding_replaces_only_missing_rows_and_ignores_garbage():
    block = MissingModalityEmbedding(4)
    emb = torch.tensor([[1.0, 2, 3, 4], [float("nan")] * 4, [5.0, 6, 7, 8]], requires_grad=True)
    present = torch.tensor([True, False, True])
    out = block(emb, present)
    assert torch.equal(out[0], emb[0].detach()) and torch.equal(out[2], emb[2].detach())
    assert torch.equal(out[1], block.missing.detach())
    out.sum().backward()
    # gradients: present rows -> input, missing row -> learned vector only, never NaN
    assert torch.equal(emb.grad[1], torch.zeros(4)) and torch.equal(emb.grad[0], torch.ones(4))
    assert torch.equal(block.missing.grad, torch.ones(4))
    with pytest.raises(InputError, match="mask shape"):
        block(emb, torch.tensor([True, False]))


def test_masked_mean_hand_computed_and_empty_rows():
    t = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [float("nan"), 0.0]], [[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]]])
    m = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_mean(t, m)
    assert out.tolist() == [[2.0, 20.0], [0.0, 0.0]]
    with pytest.raises(InputError):
        masked_mean(t, m[:, :2])


def test_modality_key_mask():
    mm = {"wsi": torch.tensor([True, False]), "rna": torch.tensor([True, True])}
    assert modality_key_mask(mm, ["rna", "wsi"]).tolist() == [[True, True], [True, False]]
    with pytest.raises(InputError, match="rows \\[1\\]"):
        modality_key_mask({"wsi": torch.tensor([True, False])}, ["wsi"])
    with pytest.raises(InputError, match="no modality mask"):
        modality_key_mask(mm, ["cnv"])


def test_modality_dropout_never_drops_all_present_and_never_adds():
    torch.manual_seed(0)
    drop = ModalityDropout(p=0.9, min_keep=1).train()
    n = 2000
    mm = {
        "wsi": torch.rand(n) < 0.7,
        "rna": torch.rand(n) < 0.7,
        "cnv": torch.rand(n) < 0.5,
    }
    out = drop(mm)
    before = torch.stack(list(mm.values()), 1)
    after = torch.stack([out[k] for k in mm], 1)
    assert not bool((after & ~before).any())  # never switches a missing modality on
    has_any = before.any(1)
    assert bool(after[has_any].any(1).all())  # everybody with data keeps >= 1 modality
    assert bool((after.sum(1) <= before.sum(1)).all())
    # with p = 0.9 nearly every multi-modality patient is cut down to exactly one modality
    multi = before.sum(1) >= 2
    assert (after[multi].sum(1) == 1).float().mean() > 0.8
    # min_keep = 2 keeps two whenever two were present
    out2 = ModalityDropout(p=0.9, min_keep=2).train()(mm)
    after2 = torch.stack([out2[k] for k in mm], 1)
    assert bool((after2.sum(1) >= before.sum(1).clamp(max=2)).all())
    # eval mode: identity
    assert all(torch.equal(drop.eval()(mm)[k], mm[k]) for k in mm)


def test_modality_dropout_rate_and_config_errors():
    torch.manual_seed(1)
    drop = ModalityDropout(p=0.3).train()
    mm = {"a": torch.ones(5000, dtype=torch.bool), "b": torch.ones(5000, dtype=torch.bool)}
    out = drop(mm)
    # drop rate of each modality: p minus the cases restored because both were dropped (p^2 / 2)
    rate = 1 - out["a"].float().mean().item()
    assert rate == pytest.approx(0.3 - 0.09 / 2, abs=0.03)
    with pytest.raises(ConfigError):
        ModalityDropout(p=1.0)
    with pytest.raises(ConfigError):
        ModalityDropout(p=0.1, min_keep=0)
