"""`modaltune pretrain`: no leakage of held-out patients, retrieval metric, save -> probe round trip, config errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modaltune.data.cohort import Cohort
from modaltune.errors import ConfigError, InputError
from modaltune.evaluation.retrieval import retrieval_scores, topk_accuracy
from modaltune.pretrain.config import PretrainConfig
from modaltune.pretrain.run import _fold, pretrain
from modaltune.testing.cohort import make_cohort

MODS = ["wsi", "rna", "clinical"]


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "cohort"
    make_cohort(root)
    return root


def _cfg(cohort_dir: Path, **kw) -> PretrainConfig:
    base = {"cohort": str(cohort_dir), "modalities": MODS, "split": {"kfold": 3, "stratify": "none"},
            "trainer": {"epochs": 2, "batch_size": 4, "lr": 1e-2}, "encoder": {"embed_dim": 4, "hidden": 8, "max_patches": 8}}
    base.update(kw)
    return PretrainConfig.model_validate(base)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------- leakage
@pytest.mark.parametrize("objective", ["symile", "clip", "mirror"])
def test_held_out_patients_never_reach_training(cohort_dir, objective, monkeypatch):
    """Garbage in every held-out patient's omics and clinical values leaves the weights unchanged,
    and the patients whose batches reach the objective are exactly the fold's training patients."""
    from modaltune.encoders.pretrained_multimodal import MultimodalPretrainModel

    cfg = _cfg(cohort_dir, objective=objective)
    clean = Cohort.load(cohort_dir)
    fold = _fold(cfg, clean)
    seen: set[str] = set()
    orig = MultimodalPretrainModel.forward

    def spy(self, batch, generator=None):
        seen.update(batch["patient_id"])
        return orig(self, batch, generator)

    monkeypatch.setattr(MultimodalPretrainModel, "forward", spy)
    a = pretrain(cfg, cohort=clean)
    assert seen == set(fold.train)  # every training patient (labelled or not, missing modalities or not)
    assert a.train_ids == list(fold.train) and a.preprocessor.train_ids == list(fold.train)
    assert not seen & set(fold.test)

    dirty = Cohort.load(cohort_dir)
    held = [p for p in fold.test if p in dirty.omics["rna"].index]
    assert held, "the fold must hold out a patient with RNA for this test to mean anything"
    dirty.omics["rna"].loc[held] = 1e6
    dirty.clinical.loc[list(fold.test), "age"] = 119.0  # in the schema (0..120), far from the training ages
    b = pretrain(cfg, cohort=dirty)
    wa, wb = _weights(a.model), _weights(b.model)
    assert wa.keys() == wb.keys()
    for k in wa:  # same inputs through the same code path: identical
        assert torch.equal(wa[k], wb[k]), k
    # the held-out patients are embedded for retrieval, so the garbage does show there
    assert a.metrics["n_eval"] == len(fold.test)


# ------------------------------------------------------------------------------- retrieval
def test_topk_accuracy_known_answers():
    n = 6
    eye = torch.eye(n)
    assert topk_accuracy(retrieval_scores([eye], eye, "sum_dot"), 1) == 1.0
    # patients 0 and 1 prefer each other's candidate, their own second: 4 of 6 right at top-1, all within top-2
    s = 2 * eye
    s[0, 1] = s[1, 0] = 3.0
    assert topk_accuracy(s, 1) == pytest.approx(4 / 6)
    assert topk_accuracy(s, 2) == 1.0
    # swapped candidates with every other score tied at 0: the two queries' own candidates rank last
    swapped = retrieval_scores([eye], eye[[1, 0, 2, 3, 4, 5]], "sum_dot")
    assert topk_accuracy(swapped, 5) == pytest.approx(4 / 6)
    assert topk_accuracy(swapped, 6) == 1.0
    # a constant score ranks nothing: ties count against the true candidate
    assert topk_accuracy(torch.zeros(n, n), 1) == 0.0
    assert topk_accuracy(torch.zeros(n, n), 5) == 0.0
    assert topk_accuracy(torch.zeros(n, n), 6) == 1.0


def test_mip_retrieval_needs_both_query_modalities():
    """Symile's third-from-two: the candidate matches only the product of the two queries."""
    a = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # a*b = e0, e2, e1
    c = torch.eye(3)[[0, 2, 1]]
    s = retrieval_scores([a, b], c, "mip")
    assert torch.equal(s, torch.eye(3))
    assert topk_accuracy(s, 1) == 1.0


def test_metrics_json_on_held_out_patients(cohort_dir, tmp_path):
    cfg = _cfg(cohort_dir)
    res = pretrain(cfg, tmp_path / "pre")
    m = json.loads((tmp_path / "pre" / "metrics.json").read_text())
    r = m["retrieval"]
    fold = _fold(cfg, Cohort.load(cohort_dir))
    assert m["n_eval"] == len(fold.test) and m["n_train"] == len(fold.train)
    assert set(r["targets"]) == set(MODS)
    assert 2 <= r["n_patients"] <= len(fold.test)
    assert r["chance"]["top1"] == pytest.approx(1 / r["n_patients"])
    for v in r["targets"].values():
        assert 0.0 <= v["top1"] <= v["top5"] <= 1.0
    meta = json.loads((tmp_path / "pre" / "pretrain.json").read_text())
    assert meta["train_ids"] == res.train_ids and not set(meta["train_ids"]) & set(meta["eval_ids"])
    assert not list((tmp_path / "pre").glob("*.pkl")) and (tmp_path / "pre" / "encoders.safetensors").exists()


# ------------------------------------------------------------------------------- round trip
def test_pretrain_then_probe_round_trip(cohort_dir, tmp_path):
    """Pretrained encoders load into `pretrained_probe`, stay frozen while its heads train, embed
    like the pretrained model, and feed the linear probes of evaluation/probes.py."""
    from modaltune.encoders.pretrained_multimodal import load_pretrained
    from modaltune.evaluation.probes import LogisticProbe
    from modaltune.training.trainer import FittedModel, fit

    cfg = _cfg(cohort_dir, objective="symile")
    pretrain(cfg, tmp_path / "pre")
    cohort = Cohort.load(cohort_dir)
    fold = _fold(cfg, cohort)
    fitted = fit(cohort, fold, "pretrained_probe", params={"checkpoint": str(tmp_path / "pre")}, modalities=MODS, tasks=["subtype"],
                 trainer={"max_epochs": 2, "batch_size": 4, "accelerator": "cpu", "logger": "none", "seed": 0})
    pre, _ = load_pretrained(tmp_path / "pre")
    after = fitted.model.encoder.pretrained.state_dict()
    for k, v in pre.state_dict().items():  # frozen: the encoders did not move during the heads' training
        assert torch.equal(v, after[k]), k
    emb = fitted.task_embeddings(cohort, fold.train)["subtype"]
    assert emb.shape == (len(fold.train), 3 * 4)
    np.testing.assert_allclose(np.linalg.norm(emb.to_numpy().reshape(len(fold.train), 3, 4), axis=2), 1.0, rtol=1e-5)
    tgt = fitted.targets(cohort, fold.train)
    lab = tgt[tgt["labelled"].astype(bool)].set_index("patient_id")
    y = lab.loc[[p for p in emb.index if p in lab.index], "label"].astype(int).to_numpy()
    probe = LogisticProbe().fit(emb.loc[[p for p in emb.index if p in lab.index]].to_numpy(), y)
    assert probe.predict_proba(emb.to_numpy()).shape == (len(fold.train), 2)
    # the fitted model saves and reloads like any other (safetensors, no pickle)
    folder = fitted.save(tmp_path / "model")
    again = FittedModel.load(folder)
    emb2 = again.task_embeddings(cohort, fold.train)["subtype"]
    np.testing.assert_allclose(emb2.to_numpy(), emb.to_numpy(), rtol=1e-5, atol=1e-6)


def test_unfrozen_probe_fine_tunes_from_the_pretrained_weights(cohort_dir, tmp_path, monkeypatch):
    """freeze: false round trip: the encoders start as the checkpoint's weights, every encoder weight
    is trainable, fitting moves them, and the saved model reloads the FINE-TUNED weights (not the
    checkpoint it was built from)."""
    from modaltune.encoders.pretrained_multimodal import load_pretrained
    from modaltune.methods.pretrained_probe import PretrainedEmbedder
    from modaltune.training.trainer import FittedModel, fit

    cfg = _cfg(cohort_dir, trainer={"epochs": 1, "batch_size": 4})
    pretrain(cfg, tmp_path / "pre")
    cohort = Cohort.load(cohort_dir)
    built: list[dict[str, torch.Tensor]] = []
    orig_init = PretrainedEmbedder.__init__

    def spy(self, pretrained, freeze, *a, **kw):
        built.append(_weights(pretrained))  # the weights fine-tuning starts from
        assert all(p.requires_grad for p in pretrained.parameters())
        orig_init(self, pretrained, freeze, *a, **kw)

    monkeypatch.setattr(PretrainedEmbedder, "__init__", spy)
    fitted = fit(cohort, _fold(cfg, cohort), "pretrained_probe", params={"checkpoint": str(tmp_path / "pre"), "freeze": False}, modalities=MODS,
                 tasks=["subtype"], trainer={"max_epochs": 2, "batch_size": 4, "lr": 1e-2, "accelerator": "cpu", "logger": "none"})
    pre, _ = load_pretrained(tmp_path / "pre")
    ckpt = pre.state_dict()
    assert built and set(built[0]) == set(ckpt)
    for k, v in ckpt.items():  # start == checkpoint, exactly (a copy, no arithmetic)
        assert torch.equal(built[0][k], v), k
    after = _weights(fitted.model.encoder.pretrained)
    assert all(p.requires_grad for p in fitted.model.encoder.pretrained.parameters())
    moved = [k for k, v in ckpt.items() if k.startswith("encoders.rna") and not torch.allclose(v, after[k])]
    assert moved  # the RNA encoder (every training patient but one has RNA) was trained further
    # save -> load: the reloaded encoders are the fine-tuned ones, not the checkpoint re-read at rebuild
    again = FittedModel.load(fitted.save(tmp_path / "model"))
    reloaded = again.model.encoder.pretrained.state_dict()
    for k in moved:
        assert torch.equal(reloaded[k], after[k]), k


def test_probe_refuses_a_missing_modality(cohort_dir, tmp_path):
    from modaltune.training.trainer import fit

    cfg = _cfg(cohort_dir, trainer={"epochs": 1, "batch_size": 4})
    pretrain(cfg, tmp_path / "pre")
    cohort = Cohort.load(cohort_dir)
    with pytest.raises(ConfigError, match="modality 'clinical'.*does not get"):
        fit(cohort, _fold(cfg, cohort), "pretrained_probe", params={"checkpoint": str(tmp_path / "pre")}, modalities=["wsi", "rna"], tasks=["subtype"],
            trainer={"max_epochs": 1, "accelerator": "cpu", "logger": "none"})


def test_probe_on_another_fold_is_refused(cohort_dir, tmp_path):
    """A checkpoint pretrained on fold 0 has seen fold 1's held-out patients: training on fold 1 stops."""
    from modaltune.training.trainer import fit

    cfg = _cfg(cohort_dir, trainer={"epochs": 1, "batch_size": 4})
    pretrain(cfg, tmp_path / "pre")
    cohort = Cohort.load(cohort_dir)
    other = _fold(_cfg(cohort_dir, fold=1), cohort)
    with pytest.raises(InputError, match="held out of the pretraining"):
        fit(cohort, other, "pretrained_probe", params={"checkpoint": str(tmp_path / "pre")}, modalities=MODS, tasks=["subtype"],
            trainer={"max_epochs": 1, "batch_size": 4, "accelerator": "cpu", "logger": "none"})


# ------------------------------------------------------------------------------- errors
def test_config_errors_are_one_line(cohort_dir, tmp_path):
    from modaltune.config import load_config
    from modaltune.encoders.pretrained_multimodal import load_pretrained

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"cohort: {cohort_dir}\nmodalities: [wsi, rna]\nobjective: symile\nnegative_sampling: n_squared\n")
    with pytest.raises(ConfigError, match="n_squared' needs exactly 3 modalities") as e:
        load_config(bad, PretrainConfig)
    assert "\n" not in str(e.value)
    bad.write_text(f"cohort: {cohort_dir}\nmodalities: [wsi, rna]\nobjectiv: clip\n")
    with pytest.raises(ConfigError, match="objectiv"):
        load_config(bad, PretrainConfig)
    with pytest.raises(InputError, match="'report' is of kind 'text'"):
        pretrain(_cfg(cohort_dir, modalities=["rna", "report"]))
    with pytest.raises(InputError, match="no pretrain.json"):
        load_pretrained(tmp_path)
    from modaltune.methods.registry import build_method

    with pytest.raises(ConfigError, match="needs params.checkpoint"):
        build_method("pretrained_probe", None)


def test_cli_pretrain(cohort_dir, tmp_path):
    from modaltune.cli import app

    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"cohort: {cohort_dir}\nmodalities: [rna, clinical]\nobjective: clip\nsplit: {{kfold: 3, stratify: none}}\n"
                   "trainer: {epochs: 1, batch_size: 4}\nencoder: {embed_dim: 4, hidden: 8}\n")
    r = CliRunner().invoke(app, ["pretrain", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "pretrained clip encoders of rna, clinical" in r.output and (tmp_path / "o" / "metrics.json").exists()

def test_cli_config_error_is_one_line(cohort_dir, tmp_path, capsys):
    from modaltune.cli import EXIT_USER, main

    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"cohort: {cohort_dir}\nmodalities: [rna, clinical]\n")
    assert main(["pretrain", str(cfg), "--out", str(tmp_path / "o"), "--set", "objective=byol"]) == EXIT_USER
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "objective: Input should be 'symile', 'clip' or 'mirror', got 'byol'" in err
