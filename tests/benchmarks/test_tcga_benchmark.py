"""The real-data TCGA benchmark (benchmarks/tcga/*.yaml, benchmarks/run_tcga.py): every config validates,
and a smoke run of the MCAT survival config on one cohort and one fold (needs ../shared)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _scripts import load_bench_script

from modaltune.config import load_config, load_yaml
from modaltune.methods.registry import get_method
from modaltune.training.experiment_config import BenchmarkConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "benchmarks" / "tcga"


def _run_tcga():
    return load_bench_script("run_tcga.py", "run_tcga")  # the name tables_from_runs.py imports it by


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
        if name.startswith(("survival", "coattn")):
            assert cfg.split.file == "porpoise_5fold", "survival configs use the published MCAT/PORPOISE folds"
        if name.startswith("coattn"):  # slide + omics methods on simulated bags: said everywhere, compared with late fusion
            assert run_tcga.needs_simulated_bags(path)
            assert "SIMULATED" in cfg.evaluation.protocol and "SIMULATED" in cfg.features and "SIMULATED" in cfg.name
            assert cfg.evaluation.compare == "late_fusion (abmil slide + snn omics)"
            assert {"mcat", "motcat", "survpath", "cmta", "porpoise", "pathomic_fusion", "abmil", "snn", "late_fusion", "coxnet", "modaltune"} == {m.name for m in cfg.methods}
        else:
            assert not run_tcga.needs_simulated_bags(path)


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


def _fake_reference_files(shared: Path) -> None:
    """Signature and pathway files over the fake cohort's genes (TP53, EGFR, KRAS, MYC, ERBB2, PIK3CA)."""
    (shared / "data" / "pathways").mkdir(parents=True, exist_ok=True)
    (shared / "data" / "pathways" / "combine_comps.csv").write_text("gene,P1,P2\nTP53,1,0\nEGFR,1,1\nKRAS,0,1\n")
    (shared / "data" / "tcga" / "porpoise" / "signatures.csv").write_text("Tumor Suppressor Genes,Oncogenes\nTP53,MYC\nPIK3CA,KRAS\n,ERBB2\n")


def test_shared_overrides_point_missing_shared_paths_at_the_shared_folder(fake_shared, tmp_path, monkeypatch):
    run_tcga = _run_tcga()
    shared, _ = fake_shared
    _fake_reference_files(shared)
    work = tmp_path / "elsewhere" / "cwd"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # no ../shared here: both paths of the config are missing as written
    ov = run_tcga.shared_overrides(CONFIG_DIR / "coattn_mcat5.yaml", str(shared))
    sig = str(shared / "data" / "tcga" / "porpoise" / "signatures.csv")
    assert f"methods.1.params.signatures={sig}" in ov and f"methods.4.params.signatures={sig}" in ov  # mcat, cmta
    if not (CONFIG_DIR / "../../../shared/data/pathways/combine_comps.csv").exists():
        assert f"data.pathways={{rna: {shared / 'data' / 'pathways' / 'combine_comps.csv'}}}" in ov
    # configs without shared paths get nothing
    assert run_tcga.shared_overrides(CONFIG_DIR / "multitask.yaml", str(shared)) == []


def test_coattention_configs_refuse_to_run_without_simulated_bags(tmp_path):
    run_tcga = _run_tcga()
    with pytest.raises(SystemExit, match=r"runs slide \+ omics methods on SIMULATED slide bags.*add --simulated-bags"):
        run_tcga.main(["--configs", "coattn_mcat5", "--out", str(tmp_path), "--workers", "1"])
    assert not (tmp_path / "cohorts").exists()  # refused before importing anything


def _tiny_porpoise(root: Path, write) -> Path:
    """A 30-patient PORPOISE-format BLCA (patients 0 and 1 with two slides; every second patient died),
    enough uncensored training patients for 4 strict survival bins; 5 folds of 24 train / 6 val."""
    import numpy as np

    rng = np.random.default_rng(1)
    ids = [f"TCGA-A{i % 3}-P{i:02d}" for i in range(30)]
    rows = ids + ids[:2]
    table = pd.DataFrame({
        "case_id": rows, "slide_id": [f"{p}-01Z-00-DX{1 + (j >= 30)}.UUID{j}.svs" for j, p in enumerate(rows)],
        "age": [40 + ids.index(p) for p in rows], "site": [p.split("-")[1] for p in rows],
        "survival_months": [float(ids.index(p) * 2 + 1) for p in rows], "censorship": [float(ids.index(p) % 2) for p in rows],
        "is_female": [float(ids.index(p) % 2) for p in rows], "oncotree_code": "BLCA", "train": 1.0,
    })
    vals = {p: rng.normal(size=9).round(4) for p in ids}
    for j, col in enumerate(["TP53_rnaseq", "EGFR_rnaseq", "KRAS_rnaseq", "TP53_cnv", "MYC_cnv", "ERBB2_cnv", "TP53_mut", "PIK3CA_mut", "KRAS_mut"]):
        table[col] = [vals[p][j] if col.endswith("rnaseq") else float(round(vals[p][j]) % 2) for p in rows]
    write(root, "blca", table, [([p for i, p in enumerate(ids) if i % 5 != k], [p for i, p in enumerate(ids) if i % 5 == k]) for k in range(5)])
    _fake_reference_files(root)
    return root


def test_simulated_bags_on_a_tiny_imported_cohort(write_fake_porpoise, tmp_path, monkeypatch):
    """--simulated-bags on a 30-patient fake PORPOISE BLCA: separate cohort folder with noise bags of the
    asked size, the manifest and run folder say SIMULATED, the slide + omics methods train and are scored,
    the published numbers are a separate target table; other settings into the same folder are refused."""
    import json

    from modaltune.data.bags import open_bag, read_bag
    from modaltune.data.cohort import Cohort
    from modaltune.errors import ConfigError
    from modaltune.modaltune.realsim import SIMULATED_ENCODER

    run_tcga = _run_tcga()
    shared = _tiny_porpoise(tmp_path / "shared", write_fake_porpoise)
    work = tmp_path / "elsewhere" / "cwd"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    out = tmp_path / "tcga"
    args = ["--configs", "coattn_mcat5", "--simulated-bags", "--sim-dim", "8", "--sim-patches", "3", "6", "--cohorts", "blca", "--folds", "0",
            "--methods", "mcat", "porpoise", "late_fusion", "--set", "trainer.max_epochs=1", "--set", "evaluation.bootstrap=20",
            "--out", str(out), "--shared", str(shared), "--workers", "1"]
    rc = run_tcga.main(args)
    assert rc == 0
    cdir = out / "cohorts_simbags" / "tcga_blca"
    assert not (out / "cohorts").exists()  # never mixed with the omics-only imports
    c = Cohort.load(cdir)
    assert len(c.slides) == 32  # 30 patients, two of them with two slides
    for p in c.slides["path"]:
        bag = read_bag(c.resolve_path(p))
        assert open_bag(c.resolve_path(p)).encoder == SIMULATED_ENCODER
        assert bag.features.shape[1] == 8 and 3 <= bag.features.shape[0] <= 6
    slide = next(m for m in c.modalities if m.kind == "slide")
    assert slide.encoder == SIMULATED_ENCODER and slide.feature_dim == 8 and "SIMULATED" in slide.description
    assert json.loads((cdir / "SIMULATED_SLIDE_BAGS.json").read_text())["patches_per_slide"] == [3, 6]

    run = out / "coattn_mcat5_m-mcat-porpoise-late_fusion_c-blca_f-0_max_epochs-1_bootstrap-20_simbags"
    assert "i.i.d. Gaussian noise (8-d, 3-6 patches per slide" in (run / "SIMULATED_SLIDE_BAGS.md").read_text()
    res = pd.read_csv(run / "results.csv")
    c_idx = res[res["metric"] == "c_index"]
    assert set(c_idx["method"]) == {"mcat (slide + omics signatures)", "porpoise (slide + omics)", "late_fusion (abmil slide + snn omics)"}
    assert c_idx["value"].between(0.0, 1.0).all()
    summary = (run / "summary.md").read_text()
    assert "**Features:** SIMULATED slide features (slide: 'SIMULATED-noise' bags, i.i.d. noise, no label signal" in summary
    tables = (out / "tables_m-mcat-porpoise-late_fusion_c-blca_f-0_max_epochs-1_bootstrap-20_simbags.md").read_text()
    assert "**SIMULATED slide bags.**" in tables.splitlines()[2]
    # the published MCAT numbers are a separate target table, never rows of the comparison
    comparison = tables.split("Published numbers (PROTOCOLS.md A)")[0]
    assert "MCAT paper" not in comparison
    assert "| MCAT (co-attention, WSI + omics), MCAT paper | 0.624 |" in tables
    # a subset without the comparison reference (late fusion) runs, without paired comparisons
    sub = [a for a in args if a not in ("mcat", "late_fusion")]
    assert run_tcga.main(sub) == 0
    sub_tables = (out / "tables_m-porpoise_c-blca_f-0_max_epochs-1_bootstrap-20_simbags.md").read_text()
    assert "| porpoise (slide + omics) |" in sub_tables and "Paired bootstrap" not in sub_tables
    # rerunning into the same folder with other bag settings is refused (the old bags would be kept silently)
    with pytest.raises(ConfigError, match="already holds simulated bags made with other settings"):
        run_tcga.main([a if a != "8" else "16" for a in args])


def test_a_method_refused_on_one_cohort_is_recorded_and_the_rest_runs(write_fake_porpoise, tmp_path, monkeypatch):
    """coattn_mcat5 on a fake BLCA (RNA) and a fake UCEC without RNA columns (as the real UCEC table):
    load_config would refuse survpath on UCEC, so the driver runs survpath on BLCA only and records the
    refused pair, with its one-line config-load reason, in failed_units.csv and tables.md."""
    run_tcga = _run_tcga()
    shared = _tiny_porpoise(tmp_path / "shared", write_fake_porpoise)
    blca = pd.read_csv(shared / "data" / "tcga" / "porpoise" / "datasets_csv_mutsig" / "tcga_blca_all_clean.csv.zip", index_col=0)
    ucec = blca.drop(columns=[c for c in blca.columns if c.endswith("_rnaseq")]).assign(oncotree_code="UCEC")
    ids = list(dict.fromkeys(ucec["case_id"]))
    write_fake_porpoise(shared, "ucec", ucec, [([p for i, p in enumerate(ids) if i % 5 != k], [p for i, p in enumerate(ids) if i % 5 == k]) for k in range(5)])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "tcga"
    args = ["--configs", "coattn_mcat5", "--simulated-bags", "--sim-dim", "8", "--sim-patches", "3", "6", "--cohorts", "blca", "ucec", "--folds", "0",
            "--methods", "survpath", "--set", "trainer.max_epochs=1", "--set", "evaluation.bootstrap=20", "--out", str(out), "--shared", str(shared), "--workers", "1"]
    assert run_tcga.main(args) == 0
    run = out / "coattn_mcat5_m-survpath_c-blca-ucec_f-0_max_epochs-1_bootstrap-20_simbags"
    res = pd.read_csv(run / "results.csv")
    assert set(res.loc[res["metric"] == "c_index", "cohort"]) == {"porpoise_blca"}  # survpath ran where it can
    failed = pd.read_csv(run / "failed_units.csv", dtype=str)
    assert len(failed) == 1
    row = failed.iloc[0]
    assert (row["method"], row["cohort"], row["fold"]) == ("survpath (slide + rna pathways)", "porpoise_ucec", "*")
    assert row["reason"].startswith("refused at config load: method 'survpath' needs omics block 'rna' (pathway tokens) and cohort tcga_ucec has none")
    tables = (out / "tables_m-survpath_c-blca-ucec_f-0_max_epochs-1_bootstrap-20_simbags.md").read_text()
    assert "Failed units: survpath (slide + rna pathways) / porpoise_ucec: all folds, refused at config load: method 'survpath'" in tables
    # resuming rewrites failed_units.csv once more: the refused pair is listed once, not twice
    assert run_tcga.main(args) == 0
    assert len(pd.read_csv(run / "failed_units.csv")) == 1
