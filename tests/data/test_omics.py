"""Omics readers, pathway tokenisation and train-only scaling."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.omics import (
    OmicsScaler,
    PathwaySet,
    read_gmt,
    read_pathways,
    read_xena_matrix,
    resolve_duplicate_samples,
    split_porpoise_columns,
    tcga_patient_id,
    tcga_sample_type,
    tokenize_pathways,
)
from modaltune.errors import InputError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


# ------------------------------------------------------------------ barcodes and Xena
def test_barcode_parsing():
    assert tcga_patient_id("TCGA-3C-AALI-01A-11R-A41B-07") == "TCGA-3C-AALI"
    assert tcga_sample_type("TCGA-3C-AALI-11A") == 11 and tcga_sample_type("TCGA-3C-AALI") is None
    assert tcga_patient_id("sample_7") == "sample_7"


def test_duplicate_rule_prefers_primary_then_tumour_then_lexicographic():
    kept, dropped = resolve_duplicate_samples(
        ["TCGA-AA-0001-11A", "TCGA-AA-0001-01B", "TCGA-AA-0001-01A", "TCGA-AA-0002-11A", "TCGA-AA-0002-06A", "TCGA-AA-0003-01A"]
    )
    assert kept == {"TCGA-AA-0001": "TCGA-AA-0001-01A", "TCGA-AA-0002": "TCGA-AA-0002-06A", "TCGA-AA-0003": "TCGA-AA-0003-01A"}
    assert sorted(dropped["sample"]) == ["TCGA-AA-0001-01B", "TCGA-AA-0001-11A", "TCGA-AA-0002-11A"]
    row = dropped.set_index("sample").loc["TCGA-AA-0001-01B"]
    assert row.kept_sample == "TCGA-AA-0001-01A" and "lexicographically" in row.reason


def test_read_xena_matrix(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text(
        "sample\tTCGA-AA-0001-11\tTCGA-AA-0001-01\tTCGA-AA-0002-01\n"
        "TP53\t1\t2\t3\n"
        "EGFR\t4\t5\t6\n"
        "TP53\t0\t4\t5\n"  # duplicate gene row: averaged
    )
    df = read_xena_matrix(p)
    assert list(df.index) == ["TCGA-AA-0001", "TCGA-AA-0002"] and df.index.name == "patient_id"
    assert df.loc["TCGA-AA-0001", "TP53"] == 3.0 and df.loc["TCGA-AA-0001", "EGFR"] == 5.0  # primary tumour column
    assert df.loc["TCGA-AA-0002", "TP53"] == 4.0 and df.dtypes.iloc[0] == np.float32
    assert list(df.attrs["dropped_samples"]["sample"]) == ["TCGA-AA-0001-11"]
    assert df.attrs["duplicate_genes"] == ["TP53"]


def test_read_xena_errors(tmp_path):
    with pytest.raises(InputError, match="nope.tsv.*not found"):
        read_xena_matrix(tmp_path / "nope.tsv")
    p = tmp_path / "bad.tsv"
    p.write_text("gene\tTCGA-AA-0001-01\nTP53\tabc\n")
    with pytest.raises(InputError, match="bad.tsv.*non-numeric"):
        read_xena_matrix(p)


def test_split_porpoise_columns():
    df = pd.DataFrame({"case_id": ["a"], "age": [3], "TP53_rnaseq": [0.1], "TP53_cnv": [1], "KRAS_mut": [0], "MYC_rnaseq": [2.0]})
    out = split_porpoise_columns(df)
    assert set(out) == {"rna", "cnv", "mut"}
    assert list(out["rna"].columns) == ["TP53", "MYC"] and list(out["cnv"].columns) == ["TP53"]
    assert split_porpoise_columns(df.drop(columns=["TP53_rnaseq", "MYC_rnaseq"])).keys() == {"cnv", "mut"}


# ------------------------------------------------------------------ pathways
def test_pathway_matrix_formats_and_gmt(tmp_path):
    named = tmp_path / "named.csv"
    named.write_text("gene,P1,P2,P3\nA,1,0,0\nB,1,1,0\nC,0,1,0\nZ,0,0,1\n")
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text(",P1,P2,P3\nA,1,0,0\nB,1,1,0\nC,0,1,0\nZ,0,0,1\n")
    gmt = tmp_path / "p.gmt"
    gmt.write_text("P1\tdesc\tA\tB\nP2\t\tB\tC\nP3\tx\tZ\n")
    genes = ["C", "B", "A", "Q"]
    for src in (named, unnamed, gmt, pd.read_csv(named)):
        tok = tokenize_pathways(src, genes)
        assert tok.names == ["P1", "P2"] and tok.dropped == ["P3"]
        assert [ix.tolist() for ix in tok.gene_index] == [[1, 2], [0, 1]]
        cov = tok.coverage
        assert cov.loc["P1"].tolist() == [2, 2, 1.0] and cov.loc["P3", "n_found"] == 0 and len(cov) == 3
    assert read_gmt(gmt).members["P2"] == ["B", "C"]
    assert read_pathways(PathwaySet({"x": ["A"]})).names == ["x"]


def test_min_genes_and_empty_pathways_reported(tmp_path, caplog):
    ps = PathwaySet({"big": ["A", "B", "C"], "small": ["A", "X"], "none": ["Y"]})
    with caplog.at_level(logging.WARNING):
        tok = tokenize_pathways(ps, ["A", "B", "C"], min_genes=2)
    assert tok.names == ["big"] and tok.dropped == ["small", "none"]
    assert "2 of 3 pathways dropped" in caplog.text
    assert tok.coverage.loc["small", "fraction"] == 0.5
    with pytest.raises(InputError, match="none of the 3 pathways"):
        tokenize_pathways(ps, ["Q"])


def test_bad_pathway_files(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("gene,P1\nA,2\n")
    with pytest.raises(InputError, match=r"bad.csv.*gene 'A', pathway 'P1' is not 0/1"):
        read_pathways(p)
    g = tmp_path / "dup.gmt"
    g.write_text("P\td\tA\nP\td\tB\n")
    with pytest.raises(InputError, match=r"dup.gmt.*'P' appears twice"):
        read_gmt(g)
    with pytest.raises(InputError, match="missing.gmt.*not found"):
        read_pathways(tmp_path / "missing.gmt")


@pytest.mark.shared
def test_shared_pathways_against_porpoise_rna_columns():
    table = SHARED / "tcga" / "porpoise" / "datasets_csv_mutsig" / "tcga_blca_all_clean.csv.zip"
    if not table.exists():
        pytest.skip("../shared data not present")
    header = pd.read_csv(table, compression="zip", nrows=0)
    rna_genes = list(split_porpoise_columns(header)["rna"].columns)
    tok = tokenize_pathways(SHARED / "pathways" / "combine_comps.csv", rna_genes)
    # shared/docs/DATA.md: the PORPOISE RNA columns cover 769 of the 4,999 genes, touching 182 of 331 pathways
    assert len(tok.coverage) == 331 and len(tok.names) == 182 and len(tok.dropped) == 149
    assert np.unique(np.concatenate(tok.gene_index)).size == 769
    hall = tokenize_pathways(SHARED / "pathways" / "hallmarks_comps.csv", rna_genes)  # unnamed first column
    assert len(hall.names) == 50 and not hall.dropped


# ------------------------------------------------------------------ scaling
def test_scaler_known_values():
    train = pd.DataFrame({"a": [1.0, 3.0], "b": [2.0, 2.0], "c": [0.0, np.nan]}, index=["p1", "p2"])
    test = pd.DataFrame({"a": [5.0, np.nan], "b": [7.0, 1.0], "c": [4.0, 1.0]}, index=["t1", "t2"])
    z = OmicsScaler("zscore").fit(train)
    out = z.transform(test)
    assert out.loc["t1", "a"] == pytest.approx(3.0)  # (5 - 2) / 1
    assert out.loc["t2", "a"] == 0.0  # NaN -> training mean
    assert (out["b"] == 0).all()  # constant in training -> 0
    assert (out["c"] == 0).all()  # single training value: std 0 -> 0
    mm = OmicsScaler("minmax").fit(train).transform(test)
    assert mm.loc["t1", "a"] == pytest.approx(2.0)  # (5 - 1) / 2, not clipped
    assert OmicsScaler("none").fit(train).transform(test).loc["t1", "b"] == 7.0
    assert out.dtypes.unique().tolist() == [np.float32]
    with pytest.raises(InputError, match="unknown omics scaling 'robust'"):
        OmicsScaler("robust")
    with pytest.raises(InputError, match="lacks 1 fitted gene"):
        z.transform(test.drop(columns=["c"]))


@settings(max_examples=30, deadline=None)
@given(
    n_train=st.integers(2, 12),
    n_test=st.integers(1, 6),
    g=st.integers(1, 6),
    seed=st.integers(0, 10**6),
    method=st.sampled_from(["zscore", "minmax"]),
)
def test_property_scaler_fitted_on_train_only(n_train, n_test, g, seed, method):
    rng = np.random.default_rng(seed)
    train = pd.DataFrame(rng.standard_normal((n_train, g)), columns=[f"g{i}" for i in range(g)])
    test = pd.DataFrame(rng.standard_normal((n_test, g)), columns=train.columns)
    allrows = pd.concat([train, test], ignore_index=True)
    a = OmicsScaler(method).fit(train).transform(allrows)
    test2 = test * 1000 + 7  # changing evaluation patients' values...
    b = OmicsScaler(method).fit(train).transform(pd.concat([train, test2], ignore_index=True))
    pd.testing.assert_frame_equal(a.iloc[:n_train], b.iloc[:n_train])  # ...does not change the training transform
    assert np.isfinite(b.to_numpy()).all()
    if method == "zscore":
        np.testing.assert_allclose(a.iloc[:n_train].mean().to_numpy(), 0, atol=1e-5)
