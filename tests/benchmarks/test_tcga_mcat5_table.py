"""benchmarks/tcga/mcat5_table.py: the 11-method x 5-cohort MCAT-5 table merged from the committed raw files."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
LF = "late_fusion (abmil slide + snn omics)"


def _mod():
    spec = importlib.util.spec_from_file_location("tcga_mcat5_table", REPO / "benchmarks" / "tcga" / "mcat5_table.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tcga_mcat5_table"] = mod
    spec.loader.exec_module(mod)
    return mod


def _rows(method: str, cohort: str, values: list[float]) -> list[dict]:
    return [{"method": method, "cohort": cohort, "task": "survival", "metric": "c_index", "fold": i, "seed": 0, "value": v}
            for i, v in enumerate(values)]


def _write(root: Path, lf_brca_in_sub: list[float]) -> None:
    root.mkdir(parents=True)
    main = _rows(LF, "porpoise_brca", [0.5, 0.7]) + _rows("snn (omics)", "porpoise_brca", [0.6, 0.6])
    pd.DataFrame(main).to_csv(root / "results.csv", index=False)
    (root / "brca_cmta_modaltune").mkdir()
    sub = _rows(LF, "porpoise_brca", lf_brca_in_sub) + _rows("cmta", "porpoise_brca", [0.55, 0.65])
    pd.DataFrame(sub).to_csv(root / "brca_cmta_modaltune" / "results.csv", index=False)


def test_fold_mean_and_ddof0_std_with_the_per_cohort_methods_appended(tmp_path):
    m = _mod()
    _write(tmp_path / "coattn", [0.5, 0.7])
    df = m.load(tmp_path / "coattn")
    t = m.table(df)
    cmta = t[(t.method == "cmta") & (t.cohort == "porpoise_brca")].iloc[0]
    # folds 0.55 and 0.65: mean 0.60, population std 0.05
    assert cmta["n_folds"] == 2 and cmta["mean"] == pytest.approx(0.60) and cmta["std"] == pytest.approx(0.05)
    assert len(df[df.method == LF]) == 2  # the reference is taken once, not from both files
    md = m.markdown(t, [LF, "snn (omics)", "cmta"])
    cmta_line = next(line for line in md.splitlines() if line.startswith("| cmta |"))
    # BRCA cell filled; BLCA/GBMLGG/LUAD not run; UCEC (no RNA) marked refused; mean over the one cohort run
    assert "0.600 ± 0.050" in cmta_line and cmta_line.count("not run") == 3 and "refused (no RNA)" in cmta_line
    assert cmta_line.endswith("| 0.600 (1/5) |")


def test_late_fusion_rows_that_differ_between_the_files_stop_the_merge(tmp_path):
    m = _mod()
    _write(tmp_path / "coattn", [0.5, 0.71])
    with pytest.raises(SystemExit, match="late-fusion rows differ"):
        m.load(tmp_path / "coattn")
