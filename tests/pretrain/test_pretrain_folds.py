"""`modaltune pretrain --folds`: one folder per fold, resumable; a benchmark's `checkpoint: DIR/fold{fold}`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modaltune.benchmark.fold_params import resolve_method
from modaltune.errors import ConfigError, InputError
from modaltune.testing.cohort import make_cohort
from modaltune.training.experiment_config import BenchmarkConfig, MethodConfig

SPLIT = {"kfold": 2, "stratify": "none", "seed": 0}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "cohort"
    make_cohort(root)
    return root


@pytest.fixture(scope="module")
def pre_dir(cohort_dir, tmp_path_factory) -> tuple[Path, str]:
    from modaltune.cli import app

    out = tmp_path_factory.mktemp("pre") / "pre"
    cfg = out.parent / "p.yaml"
    cfg.write_text(f"cohort: {cohort_dir}\nmodalities: [rna, clinical]\nobjective: clip\nsplit: {json.dumps(SPLIT)}\n"
                   "trainer: {epochs: 1, batch_size: 4}\nencoder: {embed_dim: 4, hidden: 8}\n")
    r = CliRunner().invoke(app, ["pretrain", str(cfg), "--out", str(out), "--folds", "all"])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_folds_all_writes_one_folder_per_fold_with_disjoint_held_out_patients(pre_dir, cohort_dir):
    out, text = pre_dir
    assert sorted(p.name for p in out.iterdir()) == ["fold0", "fold1"]
    metas = [json.loads((out / f"fold{k}" / "pretrain.json").read_text()) for k in (0, 1)]
    assert [m["fold"] for m in metas] == [0, 1]
    held = [set(m["eval_ids"]) for m in metas]
    assert held[0] and held[1] and not held[0] & held[1]
    for m in metas:  # 2 folds: a fold's training patients are the other fold's held-out ones
        assert not set(m["train_ids"]) & set(m["eval_ids"])
    assert set(metas[0]["train_ids"]) == held[1]
    assert "fold 0:" in text and "fold 1:" in text


def test_finished_folds_are_skipped(pre_dir, cohort_dir):
    from modaltune.pretrain.config import PretrainConfig
    from modaltune.pretrain.run import pretrain_folds

    out, _ = pre_dir
    before = {k: (out / f"fold{k}" / "encoders.safetensors").stat().st_mtime_ns for k in (0, 1)}
    cfg = PretrainConfig.model_validate({"cohort": str(cohort_dir), "modalities": ["rna", "clinical"], "split": SPLIT})
    assert pretrain_folds(cfg, out, "0,1") == {0: None, 1: None}
    assert before == {k: (out / f"fold{k}" / "encoders.safetensors").stat().st_mtime_ns for k in (0, 1)}
    with pytest.raises(InputError, match=r"fold 5 is not in the split \(folds \[0, 1\]\)"):
        pretrain_folds(cfg, out, "0,5")


def test_placeholder_resolution_and_errors():
    m = MethodConfig(name="pretrained_probe", params={"checkpoint": "runs/pre/fold{fold}", "freeze": True})
    assert resolve_method(m, 3).params == {"checkpoint": "runs/pre/fold3", "freeze": True}
    lit = MethodConfig(name="pretrained_probe", params={"checkpoint": "a{{b}}/fold{fold}"})
    assert resolve_method(lit, 1).params == {"checkpoint": "a{b}/fold1"}
    assert m.params["checkpoint"] == "runs/pre/fold{fold}"  # the config itself is not changed
    bad = MethodConfig(name="pretrained_probe", params={"checkpoint": "runs/pre/fold{k}"})
    with pytest.raises(ConfigError, match=r"params.checkpoint 'runs/pre/fold\{k\}' has the placeholder '\{k\}'; only \{fold\} is known") as e:
        resolve_method(bad, 0)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not a valid template"):
        resolve_method(MethodConfig(name="pretrained_probe", params={"checkpoint": "fold{fold"}), 0)


def _bench(cohort_dir, checkpoint: str) -> BenchmarkConfig:
    return BenchmarkConfig.model_validate({
        "name": "pre", "data": {"cohorts": [str(cohort_dir)]}, "split": SPLIT, "tasks": ["subtype"],
        "methods": [{"name": "pretrained_probe", "params": {"checkpoint": checkpoint}, "modalities": ["rna", "clinical"]}],
        "trainer": {"max_epochs": 1, "logger": "none"}, "evaluation": {"bootstrap": 10, "protocol": "test"}})


def test_benchmark_runs_every_fold_with_its_own_checkpoint(pre_dir, cohort_dir, tmp_path):
    from modaltune.benchmark.runner import run_benchmark

    out, _ = pre_dir
    res = run_benchmark(_bench(cohort_dir, str(out / "fold{fold}")), tmp_path / "run", progress=False)
    assert len(res.statuses) == 2 and not res.failed  # the leak guard passed on both folds
    assert set(__import__("pandas").read_csv(tmp_path / "run" / "results.csv")["fold"]) == {0, 1}
    # the same folder on both folds is refused by the leak guard on fold 1
    res2 = run_benchmark(_bench(cohort_dir, str(out / "fold0")), tmp_path / "run2", progress=False)
    assert len(res2.failed) == 1 and res2.failed[0].endswith("fold1__seed0")


def test_benchmark_with_a_wrong_placeholder_is_one_config_error(cohort_dir, tmp_path):
    from modaltune.benchmark.runner import run_benchmark

    with pytest.raises(ConfigError, match=r"only \{fold\} is known"):
        run_benchmark(_bench(cohort_dir, "pre/fold{fold_index}"), tmp_path / "run", progress=False)


def test_unit_hash_follows_the_resolved_checkpoint_content(pre_dir, cohort_dir, tmp_path):
    """Per fold the hash holds the resolved path and the sha256 of its pretrain.json: editing fold 1's
    pretrain.json changes fold 1's unit hash only."""
    import shutil

    from modaltune.benchmark.runner import plan_units
    from modaltune.benchmark.unit_config import config_hash, unit_config

    src, _ = pre_dir
    out = tmp_path / "pre"
    shutil.copytree(src, out)
    cfg = _bench(cohort_dir, str(out / "fold{fold}"))
    units = sorted(plan_units(cfg, [cohort_dir]), key=lambda u: u.fold)
    resolved = [unit_config(u, cfg, {}) for u in units]
    assert [r["method"]["params"]["checkpoint"] for r in resolved] == [str(out / "fold0"), str(out / "fold1")]
    before = [config_hash(r) for r in resolved]
    meta = out / "fold1" / "pretrain.json"
    meta.write_text(meta.read_text() + "\n")
    after = [config_hash(unit_config(u, cfg, {})) for u in units]
    assert after[0] == before[0] and after[1] != before[1]
