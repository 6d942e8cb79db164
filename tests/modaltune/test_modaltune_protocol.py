"""ModalTune issue-17 machinery: per-group learning rates, gate init / diagnostics, KL temperature,
target separability and leakage checks, the paper-faithful protocol (validates and trains)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from modaltune.adapters.modal_adapter import Injector, gate_diagnostics, init_gates
from modaltune.data.dataset import CohortPreprocessor
from modaltune.data.simulate import simulate_cohort
from modaltune.errors import ConfigError, InputError
from modaltune.losses import kl_text_distillation
from modaltune.methods import build_method
from modaltune.methods.modaltune import ModalTuneParams, resolve_protocol
from modaltune.modaltune.target_checks import check_target_leakage, find_target_leakage, separability_report
from modaltune.training.module import MultiTaskLightningModule

SMALL = {"pathways": "builtin", "gene_mixer": {"token_dim": 16, "n_blocks": 1, "channel_hidden": 8}, "backbone_params": {"embed_dim": 32, "depth": 2, "num_heads": 2},
         "attn_dim": 16, "heads": 2, "ffn_dim": 16, "out_dim": 32, "drop_path": 0.0}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    c = simulate_cohort(tmp_path_factory.mktemp("mtp") / "tiny", preset="tiny", seed=1, n_patients=30)
    pp = CohortPreprocessor(c).fit(list(c.patient_ids)[:20])
    return c, pp


def test_per_group_learning_rates_reach_the_optimizer(sim):
    _, pp = sim
    torch.manual_seed(0)
    m = build_method("modaltune", pp.info, **SMALL, lr_mult={"gates": 100.0, "injectors": 10.0, "tokens": 0.5})
    opt = MultiTaskLightningModule(m, {t.spec.name: t for t in pp.info.tasks}, optimizer="adamw", lr=1e-4).configure_optimizers()
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"gates": 1e-2, "injectors": 1e-3, "extractors": 1e-4, "tokens": 5e-5, "other": 1e-4})
    gates = next(g for g in opt.param_groups if g["name"] == "gates")["params"]
    assert {id(p) for p in gates} == {id(i.gamma) for i in m.adapter.injectors}
    # every trainable parameter in exactly one group; the frozen backbone in none
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in m.parameters() if p.requires_grad)
    with pytest.raises(ConfigError, match="lr_mult"):
        build_method("modaltune", pp.info, **SMALL, lr_mult={"gate": 2.0})


def test_gate_initialisation_options():
    injs = [Injector(8, 8, 2) for _ in range(3)]
    init_gates(injs, "constant", 0.25)
    assert all(torch.equal(i.gamma.data, torch.full((8,), 0.25)) for i in injs)
    init_gates(injs, "normal", 0.1, seed=3)
    g = torch.cat([i.gamma.data for i in injs])
    assert g.std() > 0 and g.abs().max() < 1.0 and not torch.equal(injs[0].gamma.data, injs[1].gamma.data)
    init_gates(injs, "zero")
    assert all(not i.gamma.data.any() for i in injs)


def test_gate_diagnostics_on_hand_set_gammas():
    torch.manual_seed(0)

    class A(torch.nn.Module):
        pass

    a = A()
    a.injectors = torch.nn.ModuleList([Injector(4, 4, 1) for _ in range(2)])
    a.injectors[0].gamma.data = torch.tensor([0.5, -0.5, 1.0, 0.0])
    a.injectors[1].gamma.data = torch.tensor([-2.0, 2.0, 2.0, 2.0])
    # attention output = its out-projection bias b for every token (weights zeroed)
    inj = a.injectors[0]
    torch.nn.init.zeros_(inj.attn.out.weight)
    inj.attn.out.bias.data = torch.tensor([1.0, 2.0, 3.0, 4.0])
    x = torch.full((1, 5, 4), 2.0)  # ||x|| = sqrt(5 * 4 * 4) = sqrt(80)
    inj(x, torch.randn(1, 3, 4), None)
    d = gate_diagnostics(a)
    assert d["gate_abs_mean/g0"] == pytest.approx(0.5) and d["gate_abs_mean/g1"] == pytest.approx(2.0)
    # gamma * b = [0.5, -1, 3, 0] per token; ||.|| over 5 tokens = sqrt(5 * 10.25)
    assert d["update_ratio/g0"] == pytest.approx(math.sqrt(5 * 10.25) / math.sqrt(80), rel=1e-5)
    assert "update_ratio/g1" not in d  # no forward yet


def test_kl_temperature_matches_the_formula():
    s = torch.tensor([[3.0, 4.0, 0.0]])  # normalised: [0.6, 0.8, 0]
    z = torch.tensor([[0.0, 0.0, 1.0]])
    for T in (1.0, 0.5, 0.1):
        q = np.exp(np.array([0.6, 0.8, 0.0]) / T)
        q /= q.sum()
        p = np.exp(np.array([0.0, 0.0, 1.0]) / T)
        p /= p.sum()
        want = float(np.sum(p * (np.log(p) - np.log(q))))
        assert kl_text_distillation(s, z, T).item() == pytest.approx(want, rel=1e-5)
    # a lower temperature sharpens both distributions: the same pair diverges more
    assert kl_text_distillation(s, z, 0.1).item() > kl_text_distillation(s, z, 1.0).item()


def test_separability_report_on_a_toy_projector():
    Z = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    X = np.vstack([np.tile(Z[k], (6, 1)) + 0.01 * np.random.default_rng(k).normal(size=(6, 2)) for k in range(3)])
    y = np.repeat([0, 1, 2], 6)
    r = separability_report({"dx": (["a", "b", "c"], Z)}, {"dx": (X, y)})["dx"]
    c = np.array(r["cosine"])
    assert c[0, 1] == pytest.approx(0.0, abs=1e-6) and c[0, 2] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert np.diag(c) == pytest.approx(1.0) and r["max_offdiag_cosine"] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert r["mean_offdiag_cosine"] == pytest.approx((0 + 2 / math.sqrt(2)) / 3, abs=1e-6)
    assert r["probe_balanced_accuracy"] == pytest.approx(1.0)
    # identical targets for two classes: the probe cannot beat chance on them
    same = separability_report({}, {"dx": (np.zeros((12, 2)), np.repeat([0, 1], 6))})["dx"]
    assert same["probe_balanced_accuracy"] == pytest.approx(0.5)


def test_leakage_check_catches_a_planted_label_sentence():
    targets = {"p1": ["Cancer location: breast; Cancer diagnosis: invasive ductal carcinoma."], "p2": ["Cancer location: breast; Cancer diagnosis: invasive lobular carcinoma."]}
    labels = {"p1": ["IDC"], "p2": ["ILC"]}
    clean = {"p1": "Tumour 2 cm, margins clear.", "p2": "Discohesive cells, margins involved."}
    prompts = ["Cancer location: breast. Task: Classify invasive breast carcinoma as invasive ductal (IDC) or invasive lobular (ILC) carcinoma."]
    assert find_target_leakage(clean, targets, labels, prompts, ["IDC", "ILC"]) == []
    planted = dict(clean, p2="Discohesive cells. Cancer location: breast; Cancer diagnosis: invasive lobular carcinoma.")
    probs = find_target_leakage(planted, targets, labels, prompts, ["IDC", "ILC"])
    assert any("p2" in p and "target sentence" in p for p in probs) and any("p2" in p and "names its label" in p for p in probs)
    assert not any("p1" in p for p in probs)
    with pytest.raises(InputError, match="target text reaches"):
        check_target_leakage(planted, targets, labels, prompts, ["IDC", "ILC"])
    # the abbreviation alone leaks too; a prompt naming one class only is flagged
    assert find_target_leakage({"p1": "Final dx: IDC."}, targets, labels)
    assert find_target_leakage({}, {}, {}, ["Task: detect ILC."], ["IDC", "ILC"])


def test_paper_protocol_resolves_and_explicit_params_win():
    p = resolve_protocol(ModalTuneParams(protocol="paper", backbone="gigapath"))
    assert (p.kl, p.supervised, p.general_task, p.shared_fusion, p.prompt_attn_dim, p.select_epoch) == (1.0, 0.0, True, True, 192, "val_probe")
    assert resolve_protocol(ModalTuneParams(protocol="paper+sup", backbone="gigapath")).supervised == 1.0
    assert resolve_protocol(ModalTuneParams(protocol="paper", shared_fusion=False)).shared_fusion is False
    c = resolve_protocol(ModalTuneParams())
    assert (c.supervised, c.general_task, c.shared_fusion, c.prompt_attn_dim, c.select_epoch) == (1.0, False, False, 0, "last")
    # the registry fills every default in: resolution must still see the protocol (None = not given)
    full = ModalTuneParams(**ModalTuneParams(protocol="paper").model_dump())
    assert resolve_protocol(full).shared_fusion is True and resolve_protocol(full).prompt_attn_dim == 64


def test_paper_protocol_trains_one_epoch_and_writes_its_reports(sim, tmp_path):
    from modaltune.data.splits import Fold
    from modaltune.training.trainer import fit

    c, _ = sim
    f0 = c.split("kfold5").folds[0]
    fold = Fold(0, train=f0.train[:18], val=f0.train[18:], test=f0.test)  # validation patients drive the epoch selection
    trainer = {"max_epochs": 2, "max_patches": 32, "logger": "none", "checkpoint": False, "optimizer": "adamw", "lr": 1e-3}
    f = fit(c, fold, "modaltune", params={**SMALL, "protocol": "paper", "lr_mult": {"gates": 10.0}, "gate_init": "constant", "gate_init_value": 0.01},
            trainer=trainer, eval_partition="test", out_dir=tmp_path / "u", progress=False)
    m = f.model
    assert m.variant == "modaltune (paper: KL only)" and m.shared_fusion and m.general_task and list(m.fuse) == ["shared"]
    assert m.objectives.supervised == 0.0
    diag = [json.loads(line) for line in (tmp_path / "u" / "adapter_diagnostics.jsonl").read_text().splitlines()]
    assert [d["epoch"] for d in diag] == [0, 1] and all(d["gate_abs_mean/g0"] > 0 and d["update_ratio/g0"] > 0 for d in diag)
    sel = json.loads((tmp_path / "u" / "epoch_selection.json").read_text())
    assert [e["epoch"] for e in sel["epochs"]] == [0, 1] and sel["best_epoch"] in (0, 1) and sel["restored"]
    sep = json.loads((tmp_path / "u" / "text_targets_separability.json").read_text())["tasks"]
    assert len(sep["subtype"]["cosine"]) == 2 and -1 <= sep["subtype"]["max_offdiag_cosine"] < 1
    assert 0 <= sep["survival"]["probe_balanced_accuracy"] <= 1 or math.isnan(sep["survival"]["probe_balanced_accuracy"])


def test_fit_audits_text_targets_and_records_the_audit(sim, tmp_path):
    """Every ModalTune fit runs the leakage audit on the fold's patients before training: a clean
    cohort trains and the audit is in the run folder."""
    from modaltune.training.trainer import fit

    c, _ = sim
    fold = c.split("kfold5").folds[0]
    trainer = {"max_epochs": 1, "max_patches": 16, "logger": "none", "checkpoint": False}
    fit(c, fold, "modaltune", params=SMALL, trainer=trainer, out_dir=tmp_path / "u", progress=False)
    rep = json.loads((tmp_path / "u" / "target_leakage.json").read_text())
    assert rep["clean"] is True and rep["problems"] == []
    assert rep["n_patients"] == len(set(fold.train) | set(fold.val) | set(fold.test))
    assert rep["tasks"] == ["subtype", "survival"] and rep["inputs"][0] == "report text (modality 'text')"


def test_fit_refuses_a_planted_label_sentence_in_a_report(sim, tmp_path):
    """A test patient's report that states its own diagnosis sentence stops the fit with one line
    naming the task and the input field; the audit listing the patient is recorded."""
    import copy

    from modaltune.modaltune.text_targets import class_label_sentences
    from modaltune.training.trainer import fit

    c, _ = sim
    c = copy.deepcopy(c)
    fold = c.split("kfold5").folds[0]
    pid = fold.test[0]
    label = str(c.patients.loc[pid, "subtype"])
    site = str(c.patients.loc[pid, "site"])
    c.text.loc[pid] = "Margins clear. " + class_label_sentences(site, [label])[0]
    trainer = {"max_epochs": 1, "max_patches": 16, "logger": "none", "checkpoint": False}
    with pytest.raises(InputError) as e:
        fit(c, fold, "modaltune", params=SMALL, trainer=trainer, out_dir=tmp_path / "u", progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "task 'subtype'" in msg and "report text (modality 'text')" in msg and pid in msg
    rep = json.loads((tmp_path / "u" / "target_leakage.json").read_text())
    assert rep["clean"] is False and {p["task"] for p in rep["problems"]} == {"subtype"}
    assert all(pid in p["problem"] for p in rep["problems"])
    assert not (tmp_path / "u" / "adapter_diagnostics.jsonl").exists()  # refused before any training step
    # the same cohort without the report token reads no report: nothing leaks, the fit runs
    fit(c, fold, "modaltune", params={**SMALL, "use_report": False}, trainer=trainer, out_dir=tmp_path / "v", progress=False)
    assert json.loads((tmp_path / "v" / "target_leakage.json").read_text())["clean"] is True


def test_onehot_targets_are_one_fixed_direction_per_label():
    from modaltune.modaltune.text_targets import onehot_embeddings

    sents = [f"Cancer diagnosis: class {k}." for k in range(50)]
    a, b = onehot_embeddings(sents, 384), onehot_embeddings(list(reversed(sents)), 384)
    assert torch.equal(a, b.flip(0))  # the same label gets the same vector, whatever the batch
    assert torch.allclose(a.norm(dim=1), torch.ones(50))
    off = (a @ a.T)[~torch.eye(50, dtype=torch.bool)]
    assert off.abs().max() < 0.3  # near-orthogonal: sd of a random cosine in 384-d is 0.05


def test_onehot_and_no_extractor_options_reach_the_model(sim):
    _, pp = sim
    torch.manual_seed(0)
    m = build_method("modaltune", pp.info, **SMALL, targets="onehot", extractors=False)
    assert m.targets == "onehot" and len(m.adapter.extractors) == 0 and len(m.adapter.extra_extractors) == 0
    z = m.class_embeddings("BRCA", ["A", "B"])
    assert abs(float(z[0] @ z[1])) < 0.7  # text targets of A vs B are far more alike (cosine ~0.9)
    # without extractors the modal tokens never read the patches: other patches, same tokens out
    B, N, M = 2, 5, 3
    c = torch.randn(B, M, m.adapter.dim)
    f1, f2 = torch.randn(B, N, pp.info.slide_dim), torch.randn(B, N, pp.info.slide_dim)
    xy = torch.arange(2 * N).reshape(1, N, 2).expand(B, -1, -1) * 256
    m.eval()
    with torch.no_grad():
        s1, c1 = m.adapter(f1, xy, c)
        s2, c2 = m.adapter(f2, xy, c)
    assert torch.equal(c1, c2) and not torch.equal(s1, s2)
    with pytest.raises(Exception, match="targets"):
        build_method("modaltune", pp.info, **SMALL, targets="one-hot")


def test_benchmark_units_keep_the_audit_and_fail_a_leak_in_one_line(tmp_path):
    """In a benchmark, the audit runs in every ModalTune unit: a clean unit folder holds
    target_leakage.json (and the adapter diagnostics); a planted leak fails the unit with a reason
    naming the task and the input field."""
    import shutil

    import pandas as pd

    from modaltune.benchmark.runner import run_benchmark
    from modaltune.training.experiment_config import BenchmarkConfig

    simulate_cohort(tmp_path / "clean", preset="tiny", seed=2, n_patients=24)
    shutil.copytree(tmp_path / "clean", tmp_path / "leak")
    text = pd.read_csv(tmp_path / "leak" / "text.csv")
    pats = pd.read_csv(tmp_path / "leak" / "patients.csv").set_index("patient_id")
    pid = str(text["patient_id"].iloc[0])
    from modaltune.modaltune.text_targets import class_label_sentences

    text.loc[0, "text"] = class_label_sentences(str(pats.loc[pid, "site"]), [str(pats.loc[pid, "subtype"])])[0]
    text.to_csv(tmp_path / "leak" / "text.csv", index=False)
    for name in ("clean", "leak"):
        cfg = BenchmarkConfig.model_validate({
            "name": name, "data": {"cohorts": [str(tmp_path / name)]}, "split": {"kfold": 2, "seed": 0, "folds": [0]},
            "methods": [{"name": "modaltune", "params": SMALL}], "evaluation": {"bootstrap": 10},
            "trainer": {"max_epochs": 1, "max_patches": 16, "logger": "none", "checkpoint": False}})
        run_benchmark(cfg, tmp_path / f"run_{name}", progress=False)
    (unit,) = (tmp_path / "run_clean" / "units").iterdir()
    assert json.loads((unit / "target_leakage.json").read_text())["clean"] is True and (unit / "adapter_diagnostics.jsonl").exists()
    (unit,) = (tmp_path / "run_leak" / "units").iterdir()
    reason = json.loads((unit / "FAILED.json").read_text())["reason"]
    assert "task 'subtype'" in reason and "report text (modality 'text')" in reason and pid in reason
