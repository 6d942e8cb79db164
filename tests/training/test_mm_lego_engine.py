"""MM-Lego through the engine (issue 15, item 1): blocks fitted by `fit`, merged with no optimiser
step and no batch read, a one-block merge predicting like its block, a two-modality merge
predicting on the tiny cohort, and LegoFuse training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.errors import ConfigError
from modaltune.training.trainer import FittedModel, fit, predict

FAST = {"max_epochs": 1, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 4, "max_patches": 16}
LATENT = {"latent_channels": 4, "latent_dim": 8, "heads": 2}
BLOCKS = {"rna": {"modality": "rna", "encoder_params": {"hidden": [16]}}, "slide": {"modality": "slide", "encoder_params": {"embed_dim": 16, "attn_dim": 8}}}


def _fold(cohort_dir):
    return SplitSet.load(cohort_dir / "splits" / "kfold3.csv").folds[0]


def _cols(df):
    return [c for c in df.columns if c.startswith(("prob_", "surv_", "risk"))]


@pytest.fixture(scope="module")
def blocks(tiny_cohort_dir, tmp_path_factory):
    """{modality: saved block folder}: an rna block and a slide block fitted on fold 0."""
    torch.set_num_threads(1)
    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    root = tmp_path_factory.mktemp("lego")
    for name, p in BLOCKS.items():
        fit(cohort, fold, "mm_lego", params={**p, **LATENT}, trainer=FAST, out_dir=root / name, progress=False)
    return {name: root / name / "model" for name in BLOCKS}


@pytest.fixture
def no_training(monkeypatch):
    """Any batch read or optimiser built fails the test."""
    from modaltune.training.datamodule import CohortDataModule
    from modaltune.training.module import MultiTaskLightningModule

    def boom(*a, **k):
        raise AssertionError("a merge must not read a batch or build an optimiser")

    for name in ("train_dataloader", "val_dataloader"):
        monkeypatch.setattr(CohortDataModule, name, boom)
    monkeypatch.setattr(MultiTaskLightningModule, "configure_optimizers", boom)


def _merge(cohort_dir, folders, out, seed=0, mode="merge", **extra):
    params = {"mode": mode, "blocks": [str(f) for f in folders], **LATENT, **extra}
    trainer = {**FAST, "seed": seed}
    return fit(Cohort.load(cohort_dir), _fold(cohort_dir), "mm_lego", params=params, trainer=trainer, out_dir=out, progress=False)


def test_merge_is_a_pure_function_of_the_blocks(tiny_cohort_dir, tmp_path, blocks, no_training):
    a = _merge(tiny_cohort_dir, [blocks["rna"], blocks["slide"]], tmp_path / "a", seed=0)
    b = _merge(tiny_cohort_dir, [blocks["rna"], blocks["slide"]], tmp_path / "b", seed=7)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)  # same code path, same inputs
    assert not (tmp_path / "a" / "checkpoints").exists()
    # the block weights are carried over untouched
    block = FittedModel.load(blocks["rna"]).model.state_dict()
    for k, v in block.items():
        if k.startswith("encoder."):
            assert torch.equal(sa["encoder.blocks.0." + k[len("encoder."):]], v), k


def test_one_block_merge_predicts_like_the_block(tiny_cohort_dir, tmp_path, blocks, no_training):
    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    merged = _merge(tiny_cohort_dir, [blocks["rna"]], tmp_path / "m")
    ref = predict(FittedModel.load(blocks["rna"]), cohort, fold.test)
    got = predict(merged, cohort, fold.test)
    cols = _cols(ref)
    assert cols and list(got["patient_id"]) == list(ref["patient_id"])
    np.testing.assert_allclose(got[cols].to_numpy(float), ref[cols].to_numpy(float), rtol=1e-5, atol=1e-6)


def test_two_modality_merge_predicts_and_round_trips(tiny_cohort_dir, tmp_path, blocks, no_training):
    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    merged = _merge(tiny_cohort_dir, [blocks["rna"], blocks["slide"]], tmp_path / "m", block_weights=[0.7, 0.3])
    got = predict(merged, cohort, fold.test)
    cols = _cols(got)
    vals = got[cols].to_numpy(float)
    assert set(got["patient_id"]) == set(fold.test) and np.isfinite(vals[~np.isnan(vals)]).all() and (~np.isnan(vals)).any()
    rna = predict(FittedModel.load(blocks["rna"]), cohort, fold.test)[cols].to_numpy(float)
    assert not np.allclose(np.nan_to_num(vals), np.nan_to_num(rna), atol=1e-4)  # the slide block contributes
    loaded = predict(FittedModel.load(tmp_path / "m" / "model"), cohort, fold.test)
    np.testing.assert_allclose(loaded[cols].to_numpy(float), vals, rtol=1e-5, atol=1e-6)


def test_fuse_trains_from_the_merge(tiny_cohort_dir, tmp_path, blocks):
    fused = _merge(tiny_cohort_dir, [blocks["rna"], blocks["slide"]], tmp_path / "f", mode="fuse")
    block = FittedModel.load(blocks["rna"]).model.state_dict()
    after = fused.model.state_dict()
    moved = [k for k in block if k.startswith("encoder.updates") and not torch.equal(after["encoder.blocks.0." + k[len("encoder."):]], block[k])]
    assert moved  # one epoch of fine-tuning changed the rna block's cross-attention
    assert getattr(fused.model, "needs_training", True) is True
    assert (tmp_path / "f" / "model" / "model.safetensors").exists()


def test_a_folder_that_is_not_a_block_is_refused(tiny_cohort_dir, tmp_path, blocks):
    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    fit(cohort, fold, "mean_pool", params={"hidden": 8}, trainer=FAST, out_dir=tmp_path / "mp", progress=False)
    with pytest.raises(ConfigError) as ei:
        _merge(tiny_cohort_dir, [blocks["rna"], tmp_path / "mp" / "model"], tmp_path / "m")
    msg = str(ei.value)
    assert "\n" not in msg and "not an mm_lego block" in msg and "mp/model" in msg
    with pytest.raises(ConfigError, match="not a saved model folder"):
        _merge(tiny_cohort_dir, [tmp_path / "nowhere"], tmp_path / "m2")
