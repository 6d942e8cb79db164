"""The paper's epoch selection (``select_epoch: val_probe``) on validation patients carved out of the
TRAINING part by ``split.val_fraction``: the held-out patients never reach the probe, each epoch's
probe is fitted on the training patients and scored on exactly the validation patients, and a
fold without validation patients keeps the last epoch and says so."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from modaltune.data.simulate import simulate_cohort
from modaltune.training.experiment_config import SplitConfig
from modaltune.training.sources import make_splits
from modaltune.training.trainer import fit

SMALL = {"pathways": "builtin", "gene_mixer": {"token_dim": 16, "n_blocks": 1, "channel_hidden": 8}, "backbone_params": {"embed_dim": 32, "depth": 2, "num_heads": 2},
         "attn_dim": 16, "heads": 2, "ffn_dim": 16, "out_dim": 32, "drop_path": 0.0, "protocol": "paper"}
TRAINER = {"max_epochs": 2, "max_patches": 16, "logger": "none", "checkpoint": False, "optimizer": "adamw", "lr": 1e-3, "batch_size": 4}
TASKS = ["subtype", "survival"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return simulate_cohort(tmp_path_factory.mktemp("mtv") / "tiny", preset="tiny", seed=3, n_patients=40)


def _labelled(c, task: str, ids: list[str]) -> int:
    return int(np.asarray(c.targets(task, ids).mask, bool).sum())


@pytest.mark.parametrize("frac", [0.2, 0.3])
def test_validation_patients_come_from_the_training_part_only(cohort, frac):
    plain = make_splits(cohort, SplitConfig(kfold=5, seed=0), TASKS)[0].folds
    carved = make_splits(cohort, SplitConfig(kfold=5, seed=0, val_fraction=frac), TASKS)[0].folds
    for a, b in zip(plain, carved):
        assert b.test == a.test  # the held-out fold is untouched
        assert sorted(b.train + b.val) == sorted(a.train)  # validation = part of the old training part
        assert b.val and not set(b.val) & set(b.test) and not set(b.val) & set(b.train)
        assert len(b.val) == int(np.ceil(frac * len(a.train)))  # sklearn's test_size rounds up


def test_val_probe_selects_on_the_validation_patients_only(cohort, tmp_path):
    f = make_splits(cohort, SplitConfig(kfold=5, seed=0, val_fraction=0.2), TASKS)[0].folds[1]
    assert len(f.val) != len(f.test)  # so a count tells the two partitions apart
    fit(cohort, f, "modaltune", params={**SMALL}, tasks=TASKS, trainer=TRAINER, out_dir=tmp_path / "u", progress=False)
    sel = json.loads((tmp_path / "u" / "epoch_selection.json").read_text())
    assert [e["epoch"] for e in sel["epochs"]] == [0, 1]
    for e in sel["epochs"]:
        # the probe is fitted on every labelled training patient once per epoch and scored on
        # exactly the labelled validation patients: never a held-out one
        assert e["n_train"] == {"subtype": _labelled(cohort, "subtype", f.train)}
        assert e["n_val"] == {"subtype": _labelled(cohort, "subtype", f.val)}
        assert 0.0 <= e["val_probe_balanced_accuracy"] <= 1.0
    scores = [e["val_probe_balanced_accuracy"] for e in sel["epochs"]]
    assert sel["restored"] is True and sel["best_epoch"] == int(np.argmax(scores))  # first best epoch wins ties
    assert "note" not in sel


def test_no_validation_patients_keeps_the_last_epoch_and_says_so(cohort, tmp_path):
    f = make_splits(cohort, SplitConfig(kfold=5, seed=0), TASKS)[0].folds[0]
    assert not f.val
    fit(cohort, f, "modaltune", params={**SMALL}, tasks=TASKS, trainer={**TRAINER, "max_epochs": 1}, out_dir=tmp_path / "u", progress=False)
    sel = json.loads((tmp_path / "u" / "epoch_selection.json").read_text())
    assert sel["restored"] is False and sel["best_epoch"] is None and "val_fraction" in sel["note"]
    assert sel["epochs"][0]["n_val"] == {} and np.isnan(sel["epochs"][0]["val_probe_balanced_accuracy"])
