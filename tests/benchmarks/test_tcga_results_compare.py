"""benchmarks/tcga/results/compare_results_md.py: the cell-by-cell check of RESULTS.md against re-run tables,
when one config was re-run as two ``--methods`` subset runs whose tables must be merged row by row."""
from __future__ import annotations

import sys

import pandas as pd
import pytest
from _scripts import load_bench_script


def _compare():
    return load_bench_script("tcga/results/compare_results_md.py")


RESULTS = """# notes

## TCGA benchmark (issue 4)

**subtype · balanced_accuracy** (mean ± std over folds, ddof=0)

| method | NSCLC | mean |
|---|---|---|
| logistic | 0.966 ± 0.011 | 0.966 |
| gene_mixer | 0.967 ± 0.011 | 0.967 |

Run folder: `runs/tcga/subtype` (summary.md).

## Next section

| method | NSCLC |
|---|---|
| logistic | 0.100 |
"""


def _tables(run: str, rows: dict[str, str]) -> str:
    body = "\n".join(f"| {m} | {v} | {v.split(' ')[0]} |" for m, v in rows.items())
    return (f"### {run}\n\n**subtype · balanced_accuracy** (mean ± std over folds, ddof=0)\n\n"
            f"| method | NSCLC | mean |\n|---|---|---|\n{body}\n\nRun folder: `/tmp/x/{run}` (summary.md).\n")


def test_two_subset_runs_of_one_config_are_merged_row_by_row(tmp_path):
    mod = _compare()
    (tmp_path / "RESULTS.md").write_text(RESULTS)
    (tmp_path / "a.md").write_text(_tables("subtype_m-logistic", {"logistic": "0.966 ± 0.011"}))
    (tmp_path / "b.md").write_text(_tables("subtype_m-gene_mixer", {"gene_mixer": "0.968 ± 0.011"}))
    out = tmp_path / "cmp.csv"
    sys.argv = ["compare", str(tmp_path / "RESULTS.md"), str(tmp_path / "a.md"), str(tmp_path / "b.md"), "--out", str(out)]
    assert mod.main() == 0
    df = pd.read_csv(out, dtype=str).set_index(["row", "column"])
    # both subset runs stand for the config "subtype"; the next section's table is not read
    assert set(pd.read_csv(out)["run"]) == {"subtype"} and len(df) == 4
    assert df.loc[("logistic", "NSCLC"), "status"] == "same"
    assert df.loc[("gene_mixer", "NSCLC"), "status"] == "differs"
    assert (df.loc[("gene_mixer", "NSCLC"), "old"], df.loc[("gene_mixer", "NSCLC"), "new"]) == ("0.967 ± 0.011", "0.968 ± 0.011")
    assert df.loc[("gene_mixer", "mean"), "new"] == "0.968"


def test_one_file_alone_leaves_the_other_rows_missing(tmp_path):
    mod = _compare()
    (tmp_path / "RESULTS.md").write_text(RESULTS)
    (tmp_path / "b.md").write_text(_tables("subtype_m-gene_mixer", {"gene_mixer": "0.967 ± 0.011"}))
    out = tmp_path / "cmp.csv"
    sys.argv = ["compare", str(tmp_path / "RESULTS.md"), str(tmp_path / "b.md"), "--out", str(out)]
    assert mod.main() == 0
    status = pd.read_csv(out).groupby("row")["status"].agg(set).to_dict()
    assert status == {"gene_mixer": {"same"}, "logistic": {"missing in re-run"}}


def test_a_row_that_two_files_report_differently_is_refused():
    mod = _compare()
    a = pd.DataFrame({"NSCLC": ["0.966 ± 0.011"]}, index=pd.Index(["logistic"], name="method"))
    b = pd.DataFrame({"NSCLC": ["0.965 ± 0.011"]}, index=pd.Index(["logistic"], name="method"))
    with pytest.raises(SystemExit, match="row 'logistic' differs between two tables files"):
        mod.merge_rows(a, b, "subtype / t")
    # the same row in both (e.g. a published row printed by both subset runs) is kept once
    assert mod.merge_rows(a, a.copy(), "subtype / t").index.tolist() == ["logistic"]
