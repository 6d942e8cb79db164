"""Importer inputs: repeated columns recorded, declared missing-value codes, survival endpoint
labels, and the bag format found on disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from modaltune.cli import main
from modaltune.data.cohort import Cohort
from modaltune.data.sources._common import endpoint_from_columns, resolve_bag_suffixes
from modaltune.data.validate import validate_cohort
from modaltune.data.workflows import import_table, import_xena

N = 8


def _table(tmp_path: Path, *, time_col: str = "time", event_col: str = "status") -> Path:
    """8 patients; TP53_rnaseq written twice with different values; grade uses 'na' for missing."""
    rows = [f"patient_id,{time_col},{event_col},TP53_rnaseq,EGFR_rnaseq,TP53_rnaseq,grade,slide_id"]
    for i in range(N):
        grade = "na" if i in (2, 5) else "AB"[i % 2]
        rows.append(f"P{i},{10 + i},{i % 2},{i * 1.5},{-i},{100 + i},{grade},P{i}-DX1.svs")
    p = tmp_path / "wide.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_duplicate_column_kept_first_and_recorded(tmp_path, capsys):
    p = _table(tmp_path)
    rc = main(["data", "import", "table", str(p), "--out", str(tmp_path / "c"), "--survival", "time,status", "--folds", "0"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "duplicate column TP53_rnaseq (2 copies, DIFFERENT values): kept the first" in out.out
    c = Cohort.load(tmp_path / "c")
    assert c.manifest.extra["duplicate_columns"] == [
        {"column": "TP53_rnaseq", "copies": 2, "kept": "first", "dropped": ["TP53_rnaseq.1"], "identical": False}
    ]
    np.testing.assert_allclose(c.omics["rna"].loc[[f"P{i}" for i in range(N)], "TP53"].to_numpy(), [i * 1.5 for i in range(N)])


def test_na_values_are_missing_not_a_category(tmp_path):
    p = _table(tmp_path)
    plain = import_table(p, "m", None, survival=["time,status"], clinical=["grade"], n_folds=0)
    assert plain.manifest.clinical_fields[0].categories == ["A", "B", "na"]  # the reported bug, without the flag
    c = import_table(p, "m", None, survival=["time,status"], clinical=["grade"], na_values=["na"], n_folds=0)
    assert c.manifest.clinical_fields[0].categories == ["A", "B"]
    assert c.clinical["grade"].isna().tolist() == [i in (2, 5) for i in range(N)]
    assert c.manifest.extra["na_values"] == ["na"]


def test_na_values_cli_masks_a_class(tmp_path, capsys):
    p = _table(tmp_path)
    rc = main(["data", "import", "table", str(p), "--out", str(tmp_path / "c"), "--survival", "time,status", "--classification", "grade",
               "--na-values", "na,[Not Available]", "--folds", "0"])
    assert rc == 0, capsys.readouterr().err
    c = Cohort.load(tmp_path / "c")
    assert c.manifest.task("grade").classes == ["A", "B"]
    assert c.targets("grade").reasons == {"missing": 2}


@pytest.mark.parametrize(
    "cols,expected",
    [
        (("OS.time", "OS"), "overall survival"),
        (("PFI.time", "PFI"), "progression-free interval"),
        (("DSS_days", "DSS_event"), "disease-specific survival"),
        (("t.dmfs", "e.dmfs"), "distant metastasis-free survival"),
        (("time", "status"), "survival"),
        (("cost", "boss"), "survival"),  # 'os' inside a word is not an endpoint
    ],
)
def test_endpoint_from_columns(cols, expected):
    assert endpoint_from_columns(*cols) == expected


def test_endpoint_reaches_cohort_yaml(tmp_path, capsys):
    p = _table(tmp_path, time_col="PFI.time", event_col="PFI")
    c = import_table(p, "m", tmp_path / "auto", survival=["PFI.time,PFI"], n_folds=0)
    assert c.manifest.task("survival").endpoint == "progression-free interval"
    assert Cohort.load(tmp_path / "auto").manifest.task("survival").description == "Predict progression-free interval (months)."
    rc = main(["data", "import", "table", str(p), "--out", str(tmp_path / "given"), "--survival", "pfi=PFI.time,PFI",
               "--endpoint", "pfi=disease-free interval", "--folds", "0"])
    assert rc == 0, capsys.readouterr().err
    back = Cohort.load(tmp_path / "given")
    assert back.manifest.task("pfi").endpoint == "disease-free interval"
    assert "disease-free interval" in (tmp_path / "given" / "cohort.yaml").read_text()
    assert back.manifest.extra["tasks"]["pfi"]["endpoint_from"] == "--endpoint"
    (tmp_path / "x").mkdir()
    plain = import_table(_table(tmp_path / "x"), "m", None, survival=["time,status"], n_folds=0)
    assert plain.manifest.task("survival").endpoint == "survival"  # no longer "overall survival" by default


def test_xena_endpoint_and_na_values(tmp_path):
    samples = [f"TCGA-AA-{i:04d}-01A" for i in range(6)]
    pd.DataFrame(np.arange(12.0).reshape(2, 6), index=pd.Index(["TP53", "EGFR"], name="gene"), columns=samples).to_csv(tmp_path / "rna.tsv", sep="\t")
    pd.DataFrame({"sample": samples, "DSS.time": [5, 6, 7, 8, 9, 10], "DSS": [1, 0, 1, 0, 1, 0], "sub": ["a", "b", "na", "a", "b", "a"]}).to_csv(
        tmp_path / "lab.tsv", sep="\t", index=False)
    c = import_xena("x", None, omics={"rna": tmp_path / "rna.tsv"}, labels=tmp_path / "lab.tsv", survival=["DSS.time,DSS"],
                    classification=["sub"], na_values=["na"], n_folds=0)
    assert c.manifest.task("survival").endpoint == "disease-specific survival"
    assert c.manifest.task("sub").classes == ["a", "b"]


def test_pt_bags_are_detected(tmp_path):
    p = _table(tmp_path)
    feats = tmp_path / "c" / "features"
    feats.mkdir(parents=True)
    for i in range(N - 1):  # CLAM bags: a (n, d) tensor per slide; P7's bag is not there yet
        torch.save(torch.ones(3, 4), feats / f"P{i}-DX1.pt")
    c = import_table(p, "m", tmp_path / "c", survival=["time,status"], slide_column="slide_id", n_folds=0)
    assert c.slides["path"].tolist() == [f"features/P{i}-DX1.pt" for i in range(N)]
    assert c.manifest.extra["bag_files"] == {"found": {".pt": 7}, "assumed": {".pt": 1}}
    rep = validate_cohort(tmp_path / "c")
    assert rep.ok and [w.message.split(", e.g.")[0] for w in rep.warnings] == [
        "slide modality 'slide': expected feature file missing for 1 slide(s) of 1 patient(s) (1 with no bag at all, masked as missing)"]
    assert rep.warnings[0].message.endswith("features/P7-DX1.pt'")


def test_resolve_bag_suffixes_without_folder_keeps_h5(tmp_path):
    paths, rep = resolve_bag_suffixes(["features/a.h5", "/abs/none/b.h5"], tmp_path)
    assert paths == ["features/a.h5", "/abs/none/b.h5"] and rep == {"found": {}, "assumed": {}}
