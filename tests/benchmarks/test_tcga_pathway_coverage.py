"""benchmarks/tcga/pathway_coverage.py: RNA pathway coverage per cohort and training fold."""
from __future__ import annotations

import pandas as pd
import pytest
from _scripts import load_bench_script


def _mod():
    return load_bench_script("tcga/pathway_coverage.py", "tcga_pathway_coverage")


def test_counts_of_a_known_pathway_file_on_each_training_fold(fake_shared, tmp_path):
    """The fake BLCA cohort's RNA genes are TP53, EGFR, KRAS (MYC is a CNV column only). P1 = {TP53, EGFR, MYC}
    finds 2 of 3, P2 = {EGFR, KRAS} 2 of 2, P3 = {BRCA1} none (dropped): 4 of 6 memberships, 3 genes used."""
    from modaltune.data.sources import import_cohort

    shared, _ = fake_shared
    cohort_dir = tmp_path / "tcga_blca"
    import_cohort("porpoise", "blca", shared_dir=shared, out_dir=cohort_dir)
    pathways = tmp_path / "pathways.csv"
    pathways.write_text("gene,P1,P2,P3\nTP53,1,0,0\nEGFR,1,1,0\nKRAS,0,1,0\nMYC,1,0,0\nBRCA1,0,0,1\n")
    out = tmp_path / "coverage.csv"
    assert _mod().main([str(cohort_dir), "--pathways", str(pathways), "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert df["fold"].tolist() == [0, 1, 2, 3, 4]
    assert df["n_train"].tolist() == [8] * 5  # 10 patients, 2 held out per fold
    for col, want in {"pathways_kept": 2, "pathways_total": 3, "pathways_dropped": 1, "genes_used": 3,
                      "memberships_found": 4, "memberships_expected": 6}.items():
        assert df[col].tolist() == [want] * 5, col
    assert df["fraction_found"].tolist() == pytest.approx([4 / 6] * 5, abs=1e-4)  # written with 4 decimals
