"""The real-data TCGA benchmark (benchmarks/tcga/*.yaml, benchmarks/run_tcga.py): every config validates,
and a smoke run of the MCAT survival config on one cohort and one fold (needs ../shared)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from modaltune.config import load_config, load_yaml
from modaltune.methods.registry import get_method
from modaltune.training.experiment_config import BenchmarkConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "benchmarks" / "tcga"


def _run_tcga():
    spec = importlib.util.spec_from_file_location("run_tcga", REPO / "benchmarks" / "run_tcga.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["run_tcga"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_config_is_listed_and_validates(tmp_path):
    run_tcga = _run_tcga()
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert names == sorted(run_tcga.CONFIGS)
    for name in names:
        path = CONFIG_DIR / f"{name}.yaml"
        # the configs' cohorts are imported by run_tcga.py, and their pathway files live in ../shared:
        # point both at stand-ins so that the rest of each config is validated without ../shared
        stand_in = tmp_path / "pathways.csv"
        stand_in.write_text("gene,P1\nTP53,1\n")
        overrides = [f"data.cohorts=[{tmp_path}]"]
        if "pathways" in (load_yaml(path).get("data") or {}):
            overrides.append(f"data.pathways={{rna: {stand_in}}}")
        cfg = load_config(path, BenchmarkConfig, overrides=overrides)
        assert cfg.methods, name
        for m in cfg.methods:
            get_method(m.name)  # a registered method name (raises otherwise)
        assert cfg.evaluation.protocol and cfg.features, f"{name}: protocol and features must be stated"
        assert cfg.evaluation.ddof == 0, "PROTOCOLS.md A reports std with ddof=0"
        if name.startswith("survival"):
            assert cfg.split.file == "porpoise_5fold", "survival configs use the published MCAT/PORPOISE folds"


def test_run_suffix_keeps_subset_and_override_runs_apart():
    run_tcga = _run_tcga()
    import argparse

    def parse(given):
        return argparse.Namespace(**{"tag": None, "methods": None, "cohorts": None, "folds": None, "overrides": [], **given})

    assert run_tcga.run_suffix(parse({})) == ""
    s = run_tcga.run_suffix(parse({"cohorts": ["blca"], "folds": [0], "overrides": ["methods.1.params.alpha=0.5"]}))
    assert s == "_c-blca_f-0_alpha-0.5"


def test_pooled_ci_table_is_read_from_summary(tmp_path):
    run_tcga = _run_tcga()
    (tmp_path / "summary.md").write_text(
        "# x\n\n| method | cohort | task | metric | mean |\n|---|---|---|---|---|\n| a | b | c | d | 1 |\n\n"
        "## Bootstrap 95% CIs\n\n| method | cohort | task | seed | metric | estimate | CI |\n|---|---|---|---|---|---|---|\n"
        "| snn | porpoise_blca | survival | 0 | c_index | 0.565 | [0.515, 0.616] |\n"
        "| snn | porpoise_brca | survival | 0 | c_index | 0.542 | [0.480, 0.604] |\n\nafter\n")
    with (tmp_path / "summary.md").open("a") as f:
        f.write("\n## Paired comparisons\n\n| A | B | cohort | task | seed | metric | A | B | difference | CI | p |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|\n"
                "| snn | coxnet | porpoise_blca | survival | 0 | c_index | 0.565 | 0.631 | -0.066 | [-0.110, -0.020] | 0.004 |\n")
    pairs = run_tcga.paired_comparisons(tmp_path)
    assert pairs[["A_value", "B_value", "difference"]].iloc[0].tolist() == ["0.565", "0.631", "-0.066"]
    assert "| snn vs coxnet | -0.066 [-0.110, -0.020] (p 0.004) |" in run_tcga.paired_table(pairs, "survival", "c_index")
    cis = run_tcga.pooled_cis(tmp_path)
    assert list(cis["cohort"]) == ["porpoise_blca", "porpoise_brca"]
    table = run_tcga.ci_table(cis, "survival", "c_index")
    assert "| snn | 0.565 [0.515, 0.616] | 0.542 [0.480, 0.604] |" in table
    assert "| method | BLCA | BRCA |" in table


@pytest.mark.shared
def test_smoke_mcat_survival_one_cohort_one_fold(shared_dir, tmp_path):
    """survival_mcat5 on BLCA, fold 0, 1 epoch, two methods: real import, real folds, tables written."""
    run_tcga = _run_tcga()
    out = tmp_path / "tcga"
    rc = run_tcga.main([
        "--configs", "survival_mcat5", "--cohorts", "blca", "--folds", "0", "--methods", "coxnet", "snn",
        "--set", "trainer.max_epochs=1", "--set", "evaluation.bootstrap=20",
        "--out", str(out), "--shared", str(shared_dir), "--workers", "1",
    ])
    assert rc == 0
    run = out / "survival_mcat5_m-coxnet-snn_c-blca_f-0_max_epochs-1_bootstrap-20"
    res = pd.read_csv(run / "results.csv")
    c = res[(res["metric"] == "c_index")]
    assert set(c["method"]) == {"coxnet (omics PCA8 + clinical)", "snn (omics)"}
    assert set(c["fold"]) == {0} and c["value"].between(0.3, 0.9).all()
    # the held-out fold is the published PORPOISE val fold 0 of BLCA
    folds = pd.read_csv(shared_dir / "data/tcga/porpoise/splits/5foldcv/tcga_blca/splits_0.csv")
    preds = pd.read_parquet(run / "predictions.parquet")
    held_out = set(preds.loc[preds["method"] == "snn (omics)", "patient_id"])
    assert held_out == set(folds["val"].dropna())
    tables = (out / "tables_m-coxnet-snn_c-blca_f-0_max_epochs-1_bootstrap-20.md").read_text()
    assert "MCAT paper" in tables and "Bootstrap 95% CIs" in tables and "**Protocol:**" in tables
