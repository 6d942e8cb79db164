"""Importers for the user's own files at any path: Xena matrices + label table, a wide table,
a PORPOISE-style CSV, PORPOISE split folders and ModalTune JSON folders."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modaltune.cli import main
from modaltune.data.cohort import Cohort
from modaltune.data.sources import import_cohort, importer_cohorts
from modaltune.data.validate import validate_cohort
from modaltune.data.workflows import import_porpoise_csv, import_table, import_xena, read_splits
from modaltune.errors import InputError

PIDS = [f"TCGA-AA-{i:04d}" for i in range(12)]
GENES = ["TP53", "EGFR", "KRAS", "MYC"]


@pytest.fixture
def xena(tmp_path):
    """rna matrix: 12 primary tumours, plus a normal sample of patient 0 (different values) and a
    recurrent tumour (02) of patient 1; one NaN in MYC; one sample of a patient without labels.
    labels: one row per sample; patient 0 also has its normal sample's row."""
    rng = np.random.default_rng(0)
    samples = [p + "-01A" for p in PIDS] + [PIDS[0] + "-11A", PIDS[1] + "-02A", "TCGA-ZZ-9999-01A"]
    m = pd.DataFrame(rng.normal(size=(4, len(samples))).round(3), index=pd.Index(GENES, name="sample"), columns=samples)
    m.loc["MYC", PIDS[3] + "-01A"] = np.nan
    m.to_csv(tmp_path / "rna.tsv", sep="\t")
    cnv = pd.DataFrame(rng.integers(-2, 3, size=(2, 6)), index=pd.Index(["TP53", "ERBB2"], name="gene"), columns=[p + "-01A" for p in PIDS[:6]])
    cnv.to_csv(tmp_path / "cnv.tsv", sep="\t")
    lab = pd.DataFrame({
        "sample": [p + "-01A" for p in PIDS] + [PIDS[0] + "-11A"],
        "OS.time": [10.0 * (i + 1) for i in range(12)] + [10.0],
        "OS": [1, 0] * 6 + [1],
        "PAM50": ["LumA", "Basal", "LumB"] * 4 + ["LumA"],
        "age": list(range(40, 52)) + [40],
        "stage": ["I", "II", "III", ""] * 3 + ["I"],
    })
    lab.loc[5, "PAM50"] = "Normal"  # not a declared class below: excluded, counted
    lab.to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    return tmp_path, m


def test_import_xena_rules(xena):
    d, m = xena
    c = import_xena("brca_x", d / "out", omics={"rna": d / "rna.tsv", "cnv": d / "cnv.tsv"}, labels=d / "labels.tsv",
                    classification=["pam50=PAM50:Basal,LumA,LumB"], survival=["os=OS.time,OS"], clinical=["age", "stage:ordinal=I,II,III"], n_folds=3)
    assert c.patient_ids == PIDS and c.name == "brca_x"
    # primary tumour sample kept (not the normal 11A, not the recurrence 02A)
    np.testing.assert_allclose(c.omics["rna"].loc[PIDS[0], "TP53"], m.loc["TP53", PIDS[0] + "-01A"], rtol=1e-6)
    np.testing.assert_allclose(c.omics["rna"].loc[PIDS[1], "EGFR"], m.loc["EGFR", PIDS[1] + "-01A"], rtol=1e-6)
    assert list(c.omics["rna"].columns) == ["TP53", "EGFR", "KRAS"]  # MYC had a NaN: dropped and recorded
    ex = c.manifest.extra
    assert ex["omics_genes_dropped_nan"]["rna"] == ["MYC"]
    assert {r["sample"] for r in ex["omics_samples_dropped"]["rna"]} == {PIDS[0] + "-11A", PIDS[1] + "-02A"}
    assert [r["sample"] for r in ex["label_rows_dropped"]] == [PIDS[0] + "-11A"]
    # a sample of a patient without labels: excluded with the reason, not silently dropped
    assert c.excluded.set_index("patient_id").loc["TCGA-ZZ-9999", "reason"].startswith("in omics 'rna'")
    # cnv for 6 patients: the others lack the modality (kept)
    assert c.availability()["cnv"].sum() == 6 and len(c) == 12
    t = c.targets("pam50")
    assert t.reasons == {"excluded value 'Normal'": 1} and t.mask.sum() == 11
    assert c.manifest.task("pam50").exclude_values == ["Normal"]
    s = c.targets("os")
    assert s.time.tolist() == [10.0 * (i + 1) for i in range(12)] and s.event.tolist() == [1, 0] * 6
    assert c.manifest.task("os").time_unit == "days"
    assert c.clinical["stage"].tolist()[:3] == ["I", "II", "III"] and pd.isna(c.clinical["stage"].iloc[3])
    back = Cohort.load(d / "out")
    assert validate_cohort(d / "out").ok
    assert back.splits["kfold3"].patients() == set(PIDS)
    assert "stratified by task 'pam50'" in back.manifest.extra["splits"]["kfold3"]


def test_xena_conflicting_rows_and_bad_labels_fail(xena):
    d, _ = xena
    lab = pd.read_csv(d / "labels.tsv", sep="\t")
    lab.loc[12, "OS.time"] = 99.0  # normal sample row of patient 0 disagrees on a declared column
    lab.to_csv(d / "l2.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match=r"l2.tsv:os_time: patient 'TCGA-AA-0000' has rows with different 'os_time' values"):
        import_xena("x", None, omics={"rna": d / "rna.tsv"}, labels=d / "l2.tsv", survival=["os=OS.time,OS"])
    lab = pd.read_csv(d / "labels.tsv", sep="\t").iloc[:12]
    lab.loc[2, "OS"] = 2
    lab.loc[4, "OS.time"] = -5
    lab.to_csv(d / "l3.tsv", sep="\t", index=False)
    with pytest.raises(InputError) as exc:
        import_xena("x", d / "never", omics={"rna": d / "rna.tsv"}, labels=d / "l3.tsv", survival=["os=OS.time,OS"])
    msg = str(exc.value)
    assert "l3.tsv" in msg and "negative survival time" in msg and "TCGA-AA-0004" in msg and "+1 more problems" in msg
    assert not (d / "never").exists()  # nothing written


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"classification": ["nope"]}, "no column 'nope' for --classification"),
        ({"classification": ["pam50"]}, "did you mean 'PAM50'?"),
        ({"survival": ["OS.time"]}, "needs a time and an event column"),
        ({"clinical": ["stage:ordinal"], "survival": ["OS.time,OS"]}, "an ordinal field needs its levels in order"),
        ({"clinical": ["stage:numeric"], "survival": ["OS.time,OS"]}, "non-numeric values"),
        ({}, "no task declared"),
        ({"survival": ["OS.time,OS"], "id_column": "barcode"}, "no id column 'barcode'"),
    ],
)
def test_xena_spec_errors(xena, kw, needle):
    d, _ = xena
    with pytest.raises(InputError, match=needle.replace("?", r"\?").replace("(", r"\(")):
        import_xena("x", None, omics={"rna": d / "rna.tsv"}, labels=d / "labels.tsv", **kw)


def test_xena_cli_and_registry(xena, capsys):
    d, _ = xena
    rc = main(["data", "import", "xena", "--out", str(d / "c"), "--omics", f"rna={d / 'rna.tsv'}", "--labels", str(d / "labels.tsv"),
               "--survival", "OS.time,OS", "--classification", "PAM50", "--folds", "0"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "12 patients" in out.out and "task survival: 12 labelled" in out.out
    c = Cohort.load(d / "c")
    assert c.manifest.task("PAM50").classes == ["Basal", "LumA", "LumB", "Normal"] and not c.splits
    assert importer_cohorts("xena") == []
    c2 = import_cohort("xena", "reg", omics={"rna": d / "rna.tsv"}, labels=d / "labels.tsv", regression=["age"])
    assert c2.manifest.task("age").kind == "regression"
    rc = main(["data", "import", "xena", "--out", str(d / "c3"), "--omics", "rna", "--labels", str(d / "labels.tsv"), "--survival", "OS.time,OS"])
    assert rc == 2 and "is not NAME=MATRIX" in capsys.readouterr().err


# ------------------------------------------------------------------------------ wide tables
def _wide(tmp_path, fake_table: pd.DataFrame):
    p = tmp_path / "mine.csv"
    fake_table.to_csv(p, index=False)
    return p


def test_import_table_with_slides(fake_shared, tmp_path):
    _, table = fake_shared
    p = _wide(tmp_path, table)
    c = import_table(p, "mine", tmp_path / "out", id_column="case_id", slide_column="slide_id", survival=["survival_months,censorship"],
                     event_is_censorship=True, clinical=["age", "is_female:categorical"], n_folds=2)
    assert len(c) == 10 and len(c.slides) == 12
    assert int(c.patients["survival_event"].sum()) == 4  # deaths P00, P03, P06, P09
    assert list(c.omics["rna"].columns) == ["TP53", "EGFR", "KRAS"] and set(c.omics) == {"rna", "cnv", "mut"}
    assert c.slides["path"].iloc[0].startswith("features/") and c.slides["path"].iloc[0].endswith(".h5")
    assert c.clinical["is_female"].dropna().isin(["0", "1"]).all()
    assert c.manifest.task("survival").time_unit == "months"
    # some missing bags are a warning; every listed bag missing (features not extracted yet) is an error (issue 12, item 10)
    errors = validate_cohort(tmp_path / "out").errors
    assert len(errors) == 1 and "none of the 12 listed feature files exists" in errors[0].message
    # a patient whose slide rows disagree is an error naming the patient
    bad = table.copy()
    bad.loc[10, "age"] = 99
    with pytest.raises(InputError, match=r"patient 'TCGA-A0-P00' has slide rows with different values of \['age'\]"):
        import_table(_wide(tmp_path, bad), "m", None, id_column="case_id", slide_column="slide_id", survival=["survival_months,censorship"], clinical=["age"])
    # without a slide column, two rows of one patient are an error
    with pytest.raises(InputError, match="appear on more than one row"):
        import_table(p, "m", None, id_column="case_id", survival=["survival_months,censorship"])


def test_import_table_custom_suffix_and_splits(fake_shared, tmp_path):
    _, table = fake_shared
    one = table.drop_duplicates("case_id").rename(columns=lambda c: c.replace("_rnaseq", ".expr"))
    p = _wide(tmp_path, one)
    pd.DataFrame({"fold": [0] * 10, "partition": ["train"] * 6 + ["test"] * 3 + ["train"], "patient_id": list(one["case_id"])[:9] + ["GHOST"]}).to_csv(tmp_path / "sp.csv", index=False)
    c = import_table(p, "m", None, id_column="case_id", omics_suffixes={"expr": ".expr"}, survival=["os=survival_months,censorship"],
                     event_is_censorship=True, splits=tmp_path / "sp.csv")
    assert set(c.omics) == {"expr"} and c.splits["sp"].folds[0].test == list(one["case_id"])[6:9]
    # split patients unknown to the cohort are removed and reported, as are cohort patients without a partition
    assert c.manifest.extra["split_report"]["sp"] == {"split_patients_not_in_cohort": ["GHOST"], "cohort_patients_not_in_split": [one["case_id"].iloc[9]]}


def test_import_porpoise_csv_any_path(fake_shared, tmp_path, capsys):
    shared, table = fake_shared
    src = shared / "data" / "tcga" / "porpoise" / "datasets_csv_mutsig" / "tcga_blca_all_clean.csv.zip"
    mine = tmp_path / "elsewhere" / "tcga_blca_all_clean.csv.zip"
    mine.parent.mkdir()
    mine.write_bytes(src.read_bytes())
    c = import_porpoise_csv(mine, out_dir=tmp_path / "a", n_folds=2)
    assert c.name == "porpoise_blca" and len(c) == 10 and set(c.splits) == {"kfold2"}
    assert int(c.patients["event"].sum()) == 4 and c.manifest.source == "porpoise-csv"
    # with an arbitrary splits folder: the published-fold logic
    folds = tmp_path / "my_splits"
    folds.mkdir()
    ids = sorted(set(table["case_id"]))
    for k in range(3):
        val = [p for i, p in enumerate(ids) if i % 3 == k]
        pd.DataFrame({"train": pd.Series([p for p in ids if p not in val]), "val": pd.Series(val)}).to_csv(folds / f"splits_{k}.csv")
    rc = main(["data", "import", "porpoise-csv", str(mine), "--out", str(tmp_path / "b"), "--name", "mycohort", "--splits-dir", str(folds)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    b = Cohort.load(tmp_path / "b")
    assert b.name == "porpoise_mycohort" and b.patients["site"].unique().tolist() == ["MYCOHORT"]
    s = read_splits(tmp_path / "b" / "splits" / "porpoise_3fold.csv")
    assert len(s) == 3 and all(len(f.val) > 0 for f in s.folds)
    # the shared-layout importer accepts an arbitrary split folder too
    c2 = import_cohort("porpoise", "blca", shared, splits_dir=folds)
    assert set(c2.splits) == {"porpoise_3fold"}


def test_modaltune_json_any_folder(tmp_path, fake_shared):
    shared, table = fake_shared
    recs = {"train": [], "val": [], "test": []}
    ids = sorted(set(table["case_id"]))
    for i, p in enumerate(ids):
        part = ["train", "train", "val", "test"][i % 4]
        recs[part].append({"case_submitter_id": p, "slide_submitter_id": f"{p}-01Z-00-DX1", "project_id": "TCGA-BRCA", "durations": 10.0 + i,
                           "vital_status": i % 2, "primary_class": i % 2, "age_at_index": 50 + i, "features_path": f"/x/{p}_featvec.pt"})
    d = tmp_path / "json"
    d.mkdir()
    for part, r in recs.items():
        (d / f"{part}.json").write_text(json.dumps({"data": r}))
    src = shared / "data" / "tcga" / "porpoise" / "datasets_csv_mutsig" / "tcga_blca_all_clean.csv.zip"
    c = import_cohort("modaltune-json", "brca", None, tmp_path / "mt", json_dir=d, omics_tables=[src])
    test_ids = [r["case_submitter_id"] for r in recs["test"]]
    assert len(c) == 10 and c.splits["modaltune_paper"].folds[0].test == sorted(test_ids) and len(test_ids) == 2
    assert c.availability()["rna"].sum() == 10
    assert c.manifest.extra["json_dir"] == str(d.resolve())
    s = read_splits(d)
    assert s.folds[0].val == [r["case_submitter_id"] for r in recs["val"]]
    with pytest.raises(InputError, match="--omics-table"):
        import_cohort("modaltune-json", "brca", tmp_path / "no_shared", None, json_dir=d)
    no = import_cohort("modaltune-json", "brca", tmp_path / "no_shared", None, json_dir=d, join_omics=False)
    assert not no.omics


# ------------------------------------------------------------------------------ splits from any path
def test_read_splits_layouts_and_errors(tmp_path):
    with pytest.raises(InputError, match="split file or folder not found"):
        read_splits(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither splits_0.csv nor train.json"):
        read_splits(tmp_path / "empty")
    pd.DataFrame({"fold": [0, 0], "partition": ["train", "test"], "patient_id": ["a", "a"]}).to_csv(tmp_path / "leak.csv", index=False)
    with pytest.raises(InputError, match="patient 'a' is in both 'train' and 'test'"):
        read_splits(tmp_path / "leak.csv")
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(InputError, match="split file has columns"):
        read_splits(tmp_path / "odd.csv")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(3, 25), k=st.integers(2, 5), seed=st.integers(0, 1000))
def test_porpoise_split_folder_roundtrip_property(tmp_path_factory, n, k, seed):
    """Folds written as ragged splits_{k}.csv come back identical, in order, for any sizes."""
    d = tmp_path_factory.mktemp("sp")
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in rng.permutation(n)]
    expected = []
    for j in range(k):
        va = [p for i, p in enumerate(ids) if i % k == j]
        tr = [p for p in ids if p not in va]
        pd.DataFrame({"train": pd.Series(tr), "val": pd.Series(va)}).to_csv(d / f"splits_{j}.csv")
        expected.append((tr, va))
    s = read_splits(d)
    assert [(f.train, f.val) for f in s.folds] == expected and all(not f.test for f in s.folds)
