"""benchmarks/tcga/mcat5_table.py: the 11-method x 5-cohort MCAT-5 table merged from the committed raw files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _scripts import load_bench_script

REPO = Path(__file__).resolve().parents[2]
LF = "late_fusion (abmil slide + snn omics)"


def _mod():
    return load_bench_script("tcga/mcat5_table.py")


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
    # the UCEC cmta units failed because the cohort has no RNA (the cohort loader's wording)
    fails = [{"unit": f"cmta__porpoise_ucec__survival__fold{i}__seed0", "method": "cmta", "cohort": "porpoise_ucec", "task": "survival", "fold": i, "seed": 0,
              "reason": "cohort 'porpoise_ucec': unknown modality 'rna' (fix: use one of ['clinical', 'cnv', 'mut', 'slide'])"} for i in range(2)]
    pd.DataFrame(fails).to_csv(root / "failed_units.csv", index=False)


def test_fold_mean_and_ddof0_std_with_the_per_cohort_methods_appended(tmp_path):
    m = _mod()
    _write(tmp_path / "coattn", [0.5, 0.7])
    df = m.load(tmp_path / "coattn")
    t = m.table(df)
    cmta = t[(t.method == "cmta") & (t.cohort == "porpoise_brca")].iloc[0]
    # folds 0.55 and 0.65: mean 0.60, population std 0.05
    assert cmta["n_folds"] == 2 and cmta["mean"] == pytest.approx(0.60) and cmta["std"] == pytest.approx(0.05)
    assert len(df[df.method == LF]) == 2  # the reference is taken once, not from both files
    md = m.markdown(t, [LF, "snn (omics)", "cmta"], m.failure_labels(tmp_path / "coattn"))
    cmta_line = next(line for line in md.splitlines() if line.startswith("| cmta |"))
    # BRCA cell filled; BLCA/GBMLGG/LUAD not run; UCEC (no RNA) marked refused; mean over the one cohort run
    assert "0.600 ± 0.050" in cmta_line and cmta_line.count("not run") == 3 and "refused (no RNA)" in cmta_line
    assert cmta_line.endswith("| 0.600 (1/5) |")


def test_late_fusion_rows_that_differ_between_the_files_stop_the_merge(tmp_path):
    m = _mod()
    _write(tmp_path / "coattn", [0.5, 0.71])
    with pytest.raises(SystemExit, match="late-fusion rows differ"):
        m.load(tmp_path / "coattn")


def test_a_cell_without_a_result_is_labelled_from_its_failed_units(tmp_path):
    m = _mod()
    _write(tmp_path / "coattn", [0.5, 0.7])
    root = tmp_path / "coattn"
    extra = [{"unit": "u", "method": "snn (omics)", "cohort": "porpoise_luad", "task": "survival", "fold": 0, "seed": 0, "reason": "CUDA out of memory"},
             {"unit": "v", "method": "snn (omics)", "cohort": "porpoise_gbmlgg", "task": "*", "fold": "*", "seed": "*",
              "reason": "refused at config load: method 'snn' is given modality 'cnv' and cohort porpoise_gbmlgg has none (it has: slide, rna)"}]
    pd.DataFrame(extra).to_csv(root / "brca_cmta_modaltune" / "failed_units.csv", index=False)
    labels = m.failure_labels(root)
    assert labels == {("cmta", "porpoise_ucec"): "refused (no RNA)", ("snn (omics)", "porpoise_luad"): "failed",
                      ("snn (omics)", "porpoise_gbmlgg"): "refused (no CNV)"}
    md = m.markdown(m.table(m.load(root)), [LF, "snn (omics)", "cmta"], labels)
    snn = next(line for line in md.splitlines() if line.startswith("| snn (omics) |"))
    # BLCA: neither a result nor a failed unit; UCEC is "not run" too: the label comes from failed units, not the cohort's name
    assert snn == "| snn (omics) | not run | 0.600 ± 0.000 | refused (no CNV) | failed | not run | 0.600 (1/5) |"
    assert "refused" not in m.markdown(m.table(m.load(root)), ["cmta"])  # no failures given: every empty cell is "not run"


@pytest.mark.parametrize(("reason", "modality"), [
    ("cohort 'porpoise_ucec': unknown modality 'rna' (fix: use one of ['clinical', 'cnv', 'mut', 'slide'])", "rna"),
    ("data.pathways: survpath needs pathway gene lists for omics block 'rna' but the cohort has none (fix: set data.pathways: ...)", "rna"),
    ("method 'survpath' needs omics block 'rna' (pathway tokens) and cohort tcga_ucec has none (its omics blocks: cnv, mut)", "rna"),
    ("method 'gene_mixer' needs pathway gene lists for omics block 'rna' of cohort withrna and data.pathways has none for it", None),
    ("CUDA out of memory", None),
])
def test_missing_modality_reads_the_loader_and_config_check_wordings(reason, modality):
    assert _mod().missing_modality(reason) == modality


def test_the_committed_table_is_reproduced_from_the_committed_raw_files(tmp_path):
    m = _mod()
    assert m.main(["--out", str(tmp_path / "mcat5_table")]) == 0
    committed = REPO / "benchmarks" / "tcga" / "coattn" / "brca_cmta_modaltune" / "mcat5_table"
    assert (tmp_path / "mcat5_table.md").read_text() == committed.with_suffix(".md").read_text()
    assert (tmp_path / "mcat5_table.csv").read_text() == committed.with_suffix(".csv").read_text()
