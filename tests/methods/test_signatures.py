"""Genomic-signature groups mapped onto the cohort's omics blocks (MCAT's ``omic1..omic6``)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from modaltune.encoders.signatures import SignatureSNNs, concat_omics, read_signatures, signature_groups
from modaltune.errors import InputError


def _csv(tmp_path, groups: dict) -> str:
    n = max(len(v) for v in groups.values())
    df = pd.DataFrame({k: list(v) + [None] * (n - len(v)) for k, v in groups.items()})
    p = tmp_path / "sig.csv"
    df.to_csv(p, index=False)
    return str(p)


BLOCKS = {"rna": ["TP53", "MYC", "EGFR", "ABL1"], "cnv": ["MYC", "TP53"], "mut": ["TP53"]}


def test_groups_follow_the_official_column_order_and_report_coverage(tmp_path):
    # official: features <GENE>_mut/_cnv/_rnaseq of the group's genes that exist, sorted by that name
    path = _csv(tmp_path, {"Suppressors": ["TP53", "RB1"], "Oncogenes": ["MYC", "EGFR", "MYC"]})
    g = signature_groups(path, BLOCKS)
    assert g.names == ["Suppressors", "Oncogenes"]
    assert g.labels[0] == ["TP53_cnv", "TP53_mut", "TP53_rnaseq"]
    assert g.labels[1] == ["EGFR_rnaseq", "MYC_cnv", "MYC_rnaseq"]
    # concatenation rna(0..3) | cnv(4..5) | mut(6): TP53_cnv = 5, TP53_mut = 6, TP53_rnaseq = 0
    assert g.index[0].tolist() == [5, 6, 0]
    assert g.index[1].tolist() == [2, 4, 1]
    cov = g.coverage
    assert cov.loc["Suppressors", ["n_expected", "n_found", "n_features", "n_rna", "n_cnv", "n_mut"]].tolist() == [2, 1, 3, 1, 1, 1]
    assert cov.loc["Suppressors", "fraction"] == pytest.approx(0.5)
    assert cov.loc["Oncogenes", ["n_expected", "n_found", "n_features"]].tolist() == [2, 2, 3]  # duplicate MYC read once
    assert "Suppressors 1/2 genes (3 features)" in g.summary()


def test_no_overlap_is_one_line_error_naming_the_file(tmp_path):
    path = _csv(tmp_path, {"A": ["FOO1", "FOO2"], "B": ["BAR"]})
    with pytest.raises(InputError) as e:
        signature_groups(path, BLOCKS)
    msg = str(e.value)
    assert "sig.csv" in msg and "overlap 0/3 genes" in msg and "\n" not in msg


def test_a_group_without_any_gene_is_an_error_naming_it(tmp_path):
    path = _csv(tmp_path, {"A": ["TP53"], "Empty": ["FOO"]})
    with pytest.raises(InputError, match=r"sig\.csv: signature group .Empty. has no gene"):
        signature_groups(path, BLOCKS)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="signature file not found"):
        read_signatures(tmp_path / "nope.csv")


def test_snns_gather_the_group_columns_and_keep_only_official_keys(tmp_path):
    g = signature_groups(_csv(tmp_path, {"A": ["TP53"], "B": ["EGFR"]}), BLOCKS)
    nets = SignatureSNNs(g, hidden=[4, 4], dropout=0.0)
    assert sorted(nets.state_dict()) == sorted(f"{i}.{j}.0.{p}" for i in range(2) for j in range(2) for p in ("weight", "bias"))
    x = torch.randn(3, 7)
    out = nets(x)
    assert out.shape == (3, 2, 4)
    torch.testing.assert_close(out[:, 1], nets[1](x[:, [2]]))  # group B = EGFR_rnaseq = column 2 only


def test_concat_zero_fills_absent_blocks():
    batch = {"omics": {"rna": torch.ones(2, 3), "cnv": torch.full((2, 2), 5.0)},
             "modality_mask": {"rna": torch.tensor([True, False]), "cnv": torch.tensor([False, False])}}
    x, present = concat_omics(batch, ["rna", "cnv"])
    assert x.tolist() == [[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert present.tolist() == [True, False]


@pytest.mark.shared
@pytest.mark.parametrize("cohort", ["blca", "ucec"])
def test_groups_equal_the_official_dataset_code_on_the_porpoise_tables(shared_dir, cohort):
    """The official MCAT dataset code builds omic1..omic6 as sorted(set(gene + suffix) & table columns)
    on the wide table; the block-wise mapping must give the same columns in the same order."""
    from modaltune.data.omics import split_porpoise_columns

    table = pd.read_csv(shared_dir / "data" / "tcga" / "porpoise" / "datasets_csv_mutsig" / f"tcga_{cohort}_all_clean.csv.zip", nrows=1, low_memory=False)
    path = shared_dir / "data" / "tcga" / "porpoise" / "signatures.csv"
    sigs = pd.read_csv(path)
    official = [sorted({f"{g}{s}" for g in sigs[c].dropna().unique() for s in ("_mut", "_cnv", "_rnaseq")} & set(table.columns)) for c in sigs.columns]
    blocks = {k: list(v.columns) for k, v in split_porpoise_columns(table).items()}
    g = signature_groups(path, blocks)
    assert g.labels == official
    assert g.sizes == [len(o) for o in official] and min(g.sizes) > 0
