"""Importers of the real data (PORPOISE tables, ModalTune JSON splits) and their helpers.

The real-data tests assert the counts of shared/docs/DATA.md and are skipped when ../shared is
absent; the helper tests use a tiny PORPOISE-format folder built in tmp_path.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.cohort import Cohort
from modaltune.data.sources import PORPOISE_COHORTS, get_importer, import_cohort, importer_cohorts, resolve_shared_dir
from modaltune.data.sources._common import collapse_slides, feature_path, pool_omics
from modaltune.data.sources.modaltune_json import build_text, import_modaltune_json, normalise_stage, normalise_tnm
from modaltune.data.sources.porpoise import import_porpoise
from modaltune.data.splits import SplitSet
from modaltune.errors import InputError

# ----------------------------------------------------------------------------- DATA.md numbers
PORPOISE_COUNTS = {  # slides / patients / deaths
    "blca": (437, 373, 169), "brca": (1022, 956, 130), "coadread": (345, 340, 81),
    "gbmlgg": (1011, 569, 187), "hnsc": (437, 416, 197), "kirc": (350, 345, 92),
    "kirp": (284, 260, 40), "lihc": (347, 333, 115), "luad": (515, 453, 158),
    "lusc": (484, 450, 192), "paad": (180, 166, 90), "skcm": (268, 230, 89),
    "stad": (374, 349, 140), "ucec": (538, 480, 75),
}  # fmt: skip
SUBTYPE_COUNTS = {
    "nsclc": {"LUAD": 453, "LUSC": 450},
    "rcc": {"CCRCC": 345, "PRCC": 260},
    "brca": {"IDC": 737, "ILC": 158},
    "gbmlgg": {"GBM": 90, "LGG": 479},
    "coadread": {"COAD": 221, "READ": 82},
}
MODALTUNE_SPLITS = {  # train / val / test patients
    "brca": (749, 113, 188), "gbmlgg": (688, 71, 118), "nsclc": (674, 100, 167),
    "rcc": (621, 102, 170), "coadread": (497, 38, 64), "blca": (263, 46, 76),
}  # fmt: skip


@pytest.fixture(scope="session")
def table_cache():
    """Parsed PORPOISE tables shared by every import in the session (the zip reads dominate)."""
    return {}


@pytest.fixture(scope="session")
def porpoise(shared_dir, table_cache):
    made: dict[str, Cohort] = {}

    def get(name: str) -> Cohort:
        if name not in made:
            made[name] = import_porpoise(name, shared_dir, table_cache=table_cache)
        return made[name]

    return get


@pytest.fixture(scope="session")
def modaltune(shared_dir, table_cache):
    made: dict[str, Cohort] = {}

    def get(name: str) -> Cohort:
        if name not in made:
            made[name] = import_modaltune_json(name, shared_dir, table_cache=table_cache)
        return made[name]

    return get


def _assert_fold_integrity(split: SplitSet, patients: set[str]) -> None:
    for f in split.folds:
        parts = [set(f.train), set(f.val), set(f.test)]
        assert sum(len(p) for p in parts) == len(f.train) + len(f.val) + len(f.test), "duplicate inside a partition"
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert parts[0] | parts[1] | parts[2] <= patients


# ----------------------------------------------------------------------------- real data: PORPOISE
@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(PORPOISE_COUNTS))
def test_porpoise_counts_match_data_md(porpoise, name):
    c = porpoise(name)
    n_slides, n_patients, n_deaths = PORPOISE_COUNTS[name]
    assert len(c.slides) == n_slides
    assert len(c) == n_patients and c.patients.index.is_unique
    surv = c.targets("survival")
    assert int(surv.event[surv.mask].sum()) == n_deaths
    assert surv.mask.all()
    assert set(c.patients["site"]) == {name.upper()}
    # every slide row belongs to an imported patient, and every patient has a slide row
    assert set(c.slides["patient_id"]) == set(c.patient_ids)
    assert c.slides["path"].str.startswith("features/").all() and c.slides["path"].str.endswith(".h5").all()
    # omics: modalities present have one row per patient; absent ones are recorded with a reason
    for m in ("rna", "cnv", "mut"):
        if m in c.omics:
            assert c.omics[m].shape[0] == n_patients and not c.omics[m].isna().any().any()
        else:
            assert m in c.manifest.extra["absent_modalities"]


@pytest.mark.shared
def test_porpoise_absent_modalities_are_recorded(porpoise):
    assert "rna" not in porpoise("ucec").omics and "rna" in porpoise("ucec").manifest.extra["absent_modalities"]
    for name in ("kirp", "lusc", "skcm"):
        assert "cnv" in porpoise(name).manifest.extra["absent_modalities"]
    assert 1500 < porpoise("blca").omics["rna"].shape[1] < 1650


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(PORPOISE_COUNTS))
def test_porpoise_published_folds(porpoise, name):
    c = porpoise(name)
    s = c.splits["porpoise_5fold"]
    patients = set(c.patient_ids)
    assert len(s) == 5
    _assert_fold_integrity(s, patients)
    held_out = [p for f in s.folds for p in f.val]
    # the 5 held-out folds partition the cohort: every patient held out exactly once
    assert sorted(held_out) == sorted(patients)
    assert all(not f.test for f in s.folds)
    assert all(set(f.train) | set(f.val) == patients for f in s.folds)
    assert c.manifest.extra["split_report"]["porpoise_5fold"]["split_patients_not_in_table"] == {}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SUBTYPE_COUNTS))
def test_porpoise_subtype_tasks(porpoise, name):
    c = porpoise(name)
    t = c.targets("subtype")
    counts = {cls: int((t.label == i).sum()) for i, cls in enumerate(t.task.classes)}
    assert counts == SUBTYPE_COUNTS[name]
    # patients outside the two classes stay in the cohort, masked and counted
    assert int((~t.mask).sum()) == len(c) - sum(SUBTYPE_COUNTS[name].values()) == sum(t.reasons.values())
    s = c.splits["subtype_5fold"]
    _assert_fold_integrity(s, set(c.patient_ids))
    assert sorted(p for f in s.folds for p in f.test) == sorted(c.patient_ids)
    # stratified: each held-out fold has about a fifth of each class
    lab = pd.Series(t.label, index=t.patient_ids)
    for f in s.folds:
        for i, n in enumerate(SUBTYPE_COUNTS[name].values()):
            assert abs(int((lab[f.test] == i).sum()) - n / 5) <= 1


@pytest.mark.shared
def test_porpoise_subtype_exclusions_named(porpoise):
    assert porpoise("coadread").targets("subtype").reasons == {"excluded value 'MACR'": 37}
    brca = porpoise("brca").targets("subtype").reasons
    assert sum(brca.values()) == 956 - 737 - 158 and brca["excluded value 'MDLC'"] == 25


@pytest.mark.shared
def test_porpoise_pooled_cohorts(porpoise):
    nsclc = porpoise("nsclc")
    assert len(nsclc) == 453 + 450 and set(nsclc.patients["source_cohort"]) == {"luad", "lusc"}
    # LUSC has no CNV columns: CNV is a missing modality of the LUSC patients, not a reason to drop them
    assert nsclc.omics["cnv"].shape[0] == 453
    assert set(nsclc.omics["cnv"].index) == set(nsclc.patients.index[nsclc.patients["source_cohort"] == "luad"])
    assert "approximate" in nsclc.manifest.description
    # pooled folds: fold k of LUAD + fold k of LUSC
    _assert_fold_integrity(nsclc.splits["porpoise_5fold"], set(nsclc.patient_ids))
    assert len(nsclc.splits["porpoise_5fold"].folds[0].val) == len(porpoise("luad").splits["porpoise_5fold"].folds[0].val) + len(
        porpoise("lusc").splits["porpoise_5fold"].folds[0].val
    )
    rcc = porpoise("rcc")
    assert rcc.omics["rna"].shape == (605, rcc.manifest.extra["omics_pooling"]["rna"]["columns"])


# ----------------------------------------------------------------------------- real data: ModalTune JSON
@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(MODALTUNE_SPLITS))
def test_modaltune_split_counts(modaltune, name):
    c = modaltune(name)
    s = c.splits["modaltune_paper"]
    f = s.folds[0]
    assert (len(f.train), len(f.val), len(f.test)) == MODALTUNE_SPLITS[name]
    _assert_fold_integrity(s, set(c.patient_ids))
    assert set(f.train) | set(f.val) | set(f.test) == set(c.patient_ids)
    assert c.patients.index.is_unique and len(c.excluded) == 0
    # subtype: -1 is kept in the cohort, masked and counted
    t = c.targets("subtype")
    assert set(t.reasons) <= {"excluded value '-1'"}
    assert int((~t.mask).sum()) == c.manifest.extra["tasks"]["subtype"]["excluded_-1"]
    assert len(c.text) == len(c) and c.text.str.startswith("Cancer location: ").all()


@pytest.mark.shared
def test_modaltune_known_numbers(modaltune):
    def test_deaths(name):
        c = modaltune(name)
        ids = c.splits["modaltune_paper"].folds[0].test
        return int(c.patients.loc[ids, "event"].sum())

    assert test_deaths("brca") == 21 and test_deaths("coadread") == 14  # DATA.md
    g = modaltune("gbmlgg")
    train = g.splits["modaltune_paper"].folds[0].train
    frac = np.isin(train, g.omics["rna"].index).mean()
    assert 0.5 < frac < 0.6  # "GBMLGG train about 55%"
    rcc = modaltune("rcc")
    kich = rcc.patients.index[rcc.patients["project_id"] == "TCGA-KICH"]
    assert len(kich) > 0 and not set(kich) & set(rcc.omics["rna"].index)  # "RCC KICH has none"
    assert rcc.availability()["rna"].sum() == len(rcc.omics["rna"]) < len(rcc)  # missing recorded, not dropped
    assert rcc.manifest.task("subtype").classes == ["KIRP", "KIRC", "KICH"]


@pytest.mark.shared
def test_modaltune_pancancer_is_union(modaltune):
    pan = modaltune("pancancer")
    f = pan.splits["modaltune_paper"].folds[0]
    for part, i in (("train", 0), ("val", 1), ("test", 2)):
        assert len(getattr(f, part)) == sum(MODALTUNE_SPLITS[c][i] for c in ("brca", "gbmlgg", "nsclc", "rcc"))
    assert {t.name for t in pan.tasks} == {"subtype_brca", "subtype_gbmlgg", "subtype_nsclc", "subtype_rcc", "survival"}
    # a BRCA patient has no GBMLGG subtype label: masked as missing, not mislabelled
    t = pan.targets("subtype_gbmlgg")
    assert t.mask.sum() == (pan.patients["site"] == "GBMLGG").sum()
    assert "cnv" in pan.manifest.extra["absent_modalities"]


@pytest.mark.shared
def test_real_cohorts_save_load_validate(porpoise, modaltune, tmp_path):
    from modaltune.data.workflows import validate_dir

    for c, name in ((porpoise("blca"), "blca"), (modaltune("coadread"), "coadread")):
        from modaltune.data.sources.porpoise import save_with_splits

        root = save_with_splits(c, tmp_path / name)
        back = Cohort.load(root)
        assert back.summary()["tasks"] == c.summary()["tasks"]
        for m, tab in c.omics.items():
            pd.testing.assert_frame_equal(back.omics[m].sort_index(), tab.sort_index(), check_names=False)
        for sname, s in c.splits.items():
            loaded = SplitSet.load(root / "splits" / f"{sname}.csv")
            assert [sorted(f.val) for f in loaded.folds] == [sorted(f.val) for f in s.folds]
        report = validate_dir(root)
        # the slide feature files do not exist here: with none of them present that is an error
        # (issue 12, item 10), and the omics, clinical and text parts validate (what omics methods train on)
        assert [("none of the" in e.message and "listed feature files exists" in e.message) for e in report.errors] == [True], str(report)
        from modaltune.data.validate import validate_cohort

        assert validate_cohort(root, modalities=[m.name for m in back.modalities if m.kind != "slide"]).ok


# ----------------------------------------------------------------------------- helpers (no real data needed)
def test_import_fake_porpoise(fake_shared, tmp_path):
    shared, table = fake_shared
    c = import_porpoise("blca", shared, tmp_path / "out")
    assert len(c) == 10 and len(c.slides) == 12
    assert int(c.patients["event"].sum()) == 4
    assert c.clinical.loc["TCGA-A0-P00", "age"] == 50 and c.clinical.loc["TCGA-A1-P01", "is_female"] == "1"
    assert c.patients.loc["TCGA-A2-P02", "tissue_source_site"] == "A2"
    assert list(c.omics["rna"].columns) == ["TP53", "EGFR", "KRAS"]
    np.testing.assert_allclose(c.omics["rna"].loc["TCGA-A0-P00"].to_numpy(), table.loc[0, ["TP53_rnaseq", "EGFR_rnaseq", "KRAS_rnaseq"]].to_numpy(float), rtol=1e-6)
    assert (tmp_path / "out" / "splits" / "porpoise_5fold.csv").exists()
    assert c.slide_paths("TCGA-A0-P00")[0].name == "TCGA-A0-P00-01Z-00-DX1.UUID0.h5"


def test_conflicting_slide_rows_name_the_patient(fake_shared, write_fake_porpoise, tmp_path):
    shared, table = fake_shared
    bad = table.copy()
    bad.loc[10, "survival_months"] = 99.0  # second slide of P00 disagrees
    write_fake_porpoise(shared, "blca", bad, [([], [])] * 5)
    with pytest.raises(InputError, match=r"TCGA-A0-P00.*survival_months"):
        import_porpoise("blca", shared)
    c = import_porpoise("blca", shared, on_conflict="first")
    assert c.patients.loc["TCGA-A0-P00", "survival_months"] == 1.0
    assert c.manifest.extra["slide_conflicts"] == {"blca": {"TCGA-A0-P00": ["survival_months"]}}


def test_split_patient_missing_from_table_is_reported(fake_shared, write_fake_porpoise):
    shared, table = fake_shared
    ids = sorted(set(table["case_id"]))
    folds = [(ids[2:] + ["TCGA-ZZ-GONE"], ids[:2])] + [(ids, [])] * 4
    write_fake_porpoise(shared, "blca", table, folds)
    c = import_porpoise("blca", shared)
    rep = c.manifest.extra["split_report"]["porpoise_5fold"]
    assert rep["split_patients_not_in_table"] == {"blca": ["TCGA-ZZ-GONE"]}
    assert rep["table_patients_never_held_out"] == ids[2:]
    assert "TCGA-ZZ-GONE" not in c.splits["porpoise_5fold"].patients()


def test_bad_censorship_is_an_error(fake_shared, write_fake_porpoise):
    shared, table = fake_shared
    bad = table.copy()
    bad.loc[bad["case_id"] == "TCGA-A1-P04", "censorship"] = 2.0
    write_fake_porpoise(shared, "blca", bad, [([], [])] * 5)
    with pytest.raises(InputError, match="TCGA-A1-P04.*censorship"):
        import_porpoise("blca", shared)


def test_unknown_cohort_and_missing_shared(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="unknown PORPOISE cohort 'xyz'"):
        import_porpoise("xyz", tmp_path)
    with pytest.raises(InputError, match="shared data folder not found"):
        import_porpoise("blca", tmp_path / "nowhere")
    with pytest.raises(InputError, match="unknown ModalTune cohort"):
        import_modaltune_json("hnsc", tmp_path)
    with pytest.raises(InputError, match="unknown data source"):
        get_importer("xena-magic")
    monkeypatch.setenv("MODALTUNE_SHARED", str(tmp_path))
    assert resolve_shared_dir(must_exist=False) == tmp_path


def test_registry_lists_cohorts(fake_shared):
    assert set(PORPOISE_COHORTS) < set(importer_cohorts("porpoise")) and "nsclc" in importer_cohorts("porpoise")
    assert importer_cohorts("modaltune_json")[-1] == "pancancer"
    shared, _ = fake_shared
    assert len(import_cohort("porpoise", "blca", shared)) == 10


@pytest.mark.parametrize(
    "raw,expected",
    [("Stage IIA", "stage II"), ("Stage IV", "stage IV"), ("Stage IIIC", "stage III"), ("Stage I", "stage I"),
     ("Stage IB", "stage I"), ("Stage X", None), (None, None), (float("nan"), None), ("weird", None)],
)  # fmt: skip
def test_normalise_stage(raw, expected):
    got = normalise_stage(raw)
    assert (got is np.nan or pd.isna(got)) if expected is None else got == expected


@pytest.mark.parametrize(
    "raw,axis,expected",
    [("T2a", "t", "T2"), ("Tis", "t", "Tis"), ("T4d", "t", "T4"), ("TX", "t", None), ("N0 (i-)", "n", "N0"),
     ("N1mi", "n", "N1"), ("N3c", "n", "N3"), ("NX", "n", None), ("cM0 (i+)", "m", "M0"), ("M1b", "m", "M1"), ("MX", "m", None)],
)  # fmt: skip
def test_normalise_tnm(raw, axis, expected):
    got = normalise_tnm(raw, axis)
    assert pd.isna(got) if expected is None else got == expected


def test_build_text_skips_missing_and_orders_fields():
    row = {"project_id": "TCGA-BRCA", "primary_diagnosis": "lobular carcinoma", "stage": "stage III", "t_stage": "T3",
           "n_stage": np.nan, "m_stage": "M0", "age_at_index": 61.6}  # fmt: skip
    assert build_text(row) == (
        "Cancer location: breast; Cancer diagnosis: lobular carcinoma; Overall stage: stage three; "
        "Tumour stage: T3; Metastasis stage: M0; Age at diagnosis: 62 years."
    )
    assert build_text(row, ("location", "stage")) == "Cancer location: breast; Overall stage: stage three."
    with pytest.raises(InputError, match="unknown text field"):
        build_text(row, ("nope",))


def test_feature_path():
    assert feature_path("features", "TCGA-3C-AALI-01Z-00-DX1.ABC.svs") == "features/TCGA-3C-AALI-01Z-00-DX1.ABC.h5"
    assert feature_path("/abs/f/", "x_featvec.pt", ext="") == "/abs/f/x_featvec.pt"


def test_pool_omics_keeps_shared_genes_and_records_missing():
    a = pd.DataFrame([[1.0, 2.0, 3.0]], index=["p1"], columns=["G1", "G2", "G3"])
    b = pd.DataFrame([[4.0, 5.0]], index=["p2"], columns=["G3", "G1"])
    tables, report, absent = pool_omics({"x": {"rna": a, "cnv": a}, "y": {"rna": b}})
    assert list(tables["rna"].columns) == ["G1", "G3"]
    assert tables["rna"].loc["p2"].tolist() == [5.0, 4.0]
    assert list(tables["cnv"].index) == ["p1"] and report["cnv"]["sources_without"] == ["y"]
    assert "mut" in absent and "rna" not in absent
    _, _, absent2 = pool_omics({"x": {"mut": a[["G2"]]}, "y": {"mut": b}})
    assert "share no" in absent2["mut"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=12), st.integers(0, 10**6))
def test_collapse_slides_one_row_per_patient(slides_per_patient, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i, k in enumerate(slides_per_patient):
        value = float(rng.normal())
        rows += [{"pid": f"P{i}", "slide": f"S{i}_{j}", "v": value} for j in range(k)]
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)
    patients, slides, conflicts = collapse_slides(df, "pid", ["slide"], source="t")
    assert len(patients) == len(slides_per_patient) and len(slides) == sum(slides_per_patient)
    assert conflicts == {}
    if max(slides_per_patient) > 1:
        i = int(np.argmax(slides_per_patient))
        df.loc[df.index[df["pid"] == f"P{i}"][0], "v"] += 1.0
        assert collapse_slides(df, "pid", ["slide"], source="t")[2] == {f"P{i}": ["v"]}
