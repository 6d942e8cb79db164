"""Missing-modality masks (evaluation.missing): determinism, rates, stratification, DisPro reader."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.splits import Fold
from modaltune.errors import ConfigError, InputError
from modaltune.evaluation.missing import (
    mask_cohort,
    mask_counts,
    parse_setting,
    parse_settings,
    read_dispro_fold,
    refusal,
    setting_mask,
    setting_seed,
)
from modaltune.methods.registry import get_method

DISPRO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tcga" / "dispro_splits"


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    """A 30-patient simulated cohort (slide, rna, clinical)."""
    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import simulate_cohort

    out = tmp_path_factory.mktemp("cohorts") / "tiny"
    simulate_cohort(out, preset="tiny", seed=0, n_patients=30, patches=(4, 8), slides_per_patient=(1, 1), n_folds=3)
    return Cohort.load(out)


def _fold(index: int, n_train: int, n_val: int) -> Fold:
    ids = [f"P{i:03d}" for i in range(n_train + n_val)]
    return Fold(index, ids[:n_train], ids[n_train:])


def test_parse_forms_and_errors():
    s = parse_setting("W20_O40")
    assert (s.name, s.slide, s.omics, s.dispro) == ("W20_O40", 0.2, 0.4, None)
    assert parse_setting({"slide": 0.3, "omics": 0.1}).name == "W30_O10"
    d = parse_setting({"dispro": "/x", "setting": "W0_O60"})
    assert (d.slide, d.omics, d.dispro) == (0.0, 0.6, "/x")
    with pytest.raises(ConfigError, match="W<slide %>_O<omics %>"):
        parse_setting("W20-O40")
    with pytest.raises(ConfigError, match="bad missing-modality setting"):
        parse_setting({"slide": 1.5})
    with pytest.raises(ConfigError, match="listed twice"):
        parse_settings(["W0_O0", {"slide": 0, "omics": 0}])


def test_seed_depends_on_setting_fold_and_split_seed_only():
    assert setting_seed("W20_O40", 1, 0) == setting_seed("W20_O40", 1, 0)
    assert len({setting_seed("W20_O40", 1, 0), setting_seed("W20_O40", 2, 0), setting_seed("W20_O40", 1, 1), setting_seed("W30_O30", 1, 0)}) == 4


def test_mask_is_the_same_for_every_call_and_independent_of_patient_order():
    f = _fold(0, 40, 10)
    a = setting_mask(parse_setting("W30_O30"), f, 7)
    shuffled = Fold(0, list(reversed(f.train)), list(reversed(f.val)))
    b = setting_mask(parse_setting("W30_O30"), shuffled, 7)
    pd.testing.assert_frame_equal(a.sort_index(), b.sort_index())
    c = setting_mask(parse_setting("W30_O30"), f, 8)
    assert not a.sort_index().equals(c.sort_index())


@settings(max_examples=40, deadline=None)
@given(n_train=st.integers(1, 80), n_val=st.integers(1, 30), w=st.integers(0, 100), o=st.integers(0, 100), fold=st.integers(0, 4))
def test_rates_per_partition_within_one_patient_and_disjoint_when_they_fit(n_train, n_val, w, o, fold):
    m = setting_mask(parse_setting(f"W{w}_O{o}"), _fold(fold, n_train, n_val), 0)
    assert len(m) == n_train + n_val  # nobody dropped from the mask
    for part, n in (("train", n_train), ("val", n_val)):
        g = m[m["partition"] == part]
        assert len(g) == n
        assert abs(g["drop_slide"].sum() - w / 100 * n) <= 1
        assert abs(g["drop_omics"].sum() - o / 100 * n) <= 1
        both = int((g["drop_slide"] & g["drop_omics"]).sum())
        assert both == max(0, math.floor(w / 100 * n + 0.5) + math.floor(o / 100 * n + 0.5) - n)


def test_mask_cohort_removes_modalities_not_patients(tiny_cohort):
    c = tiny_cohort
    ids = c.patient_ids
    f = Fold(0, ids[: len(ids) * 2 // 3], ids[len(ids) * 2 // 3:])
    m = setting_mask(parse_setting("W60_O60"), f, 0)  # 120 %: some patients lose both
    masked = mask_cohort(c, m)
    assert masked.patient_ids == c.patient_ids and len(masked.clinical) == len(c.clinical)
    av = masked.availability(check_files=False)
    slide = [x.name for x in c.modalities if x.kind == "slide"][0]
    omics = [x.name for x in c.modalities if x.kind == "omics"]
    assert not av.loc[m.index[m["drop_slide"]], slide].any()
    for o in omics:
        assert not av.loc[m.index[m["drop_omics"]], o].any()
    kept = m.index[~m["drop_slide"]]
    assert av.loc[kept, slide].equals(c.availability(check_files=False).loc[kept, slide])
    counts = mask_counts(c, masked, m)
    n_both = int((m["drop_slide"] & m["drop_omics"]).sum())
    assert n_both > 0
    assert sum(v["neither_slide_nor_omics"] for v in counts.values()) >= n_both
    assert sum(v["patients"] for v in counts.values()) == len(ids)


def test_refusal_only_when_a_read_kind_is_gone_for_everyone():
    assert refusal(get_method("porpoise"), parse_setting("W60_O0")) is None
    assert refusal(get_method("abmil"), parse_setting("W100_O0")) == "method 'abmil' requires slide data and setting W100_O0 drops it for every patient"
    assert refusal(get_method("late_fusion"), parse_setting("W0_O100")) == "method 'late_fusion' reads omics data and setting W0_O100 drops it for every patient"
    assert refusal(get_method("abmil"), parse_setting("W0_O100")) is None


def _write_dispro(folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = [("TCGA-A", "a.pt", "TCGA-A.csv", "train"), ("TCGA-B", "", "TCGA-B.csv", "train"), ("TCGA-C", "c.pt", "", "train"), ("TCGA-D", "d.pt", "TCGA-D.csv", "val")]
    df = pd.DataFrame([("TCGA-X", r[0], 3.1, 1.0, r[1], r[2], r[3]) for r in rows], columns=["Study", "ID", "Event", "Status", "WSI", "Omics", "Split"])
    df.to_csv(folder / "XYZ_fold_2_W20_O40.csv", index=False)


def test_dispro_reader_on_a_fixture(tmp_path):
    _write_dispro(tmp_path / "XYZ")
    m = read_dispro_fold(tmp_path / "XYZ", 2, "W20_O40")
    assert m.index.tolist() == ["TCGA-A", "TCGA-B", "TCGA-C", "TCGA-D"]
    assert m["drop_slide"].tolist() == [False, True, False, False]
    assert m["drop_omics"].tolist() == [False, False, True, False]
    assert m["partition"].tolist() == ["train", "train", "train", "val"]
    # through setting_mask: our fold's partitions, their flags; an unknown patient is not masked
    s = parse_setting({"dispro": str(tmp_path / "XYZ"), "setting": "W20_O40"})
    sm = setting_mask(s, Fold(2, ["TCGA-A", "TCGA-B", "TCGA-C"], ["TCGA-D", "TCGA-E"]), 0)
    assert sm.loc[["TCGA-B", "TCGA-C", "TCGA-E"], ["drop_slide", "drop_omics"]].to_numpy().tolist() == [[True, False], [False, True], [False, False]]
    with pytest.raises(InputError, match=r"no DisPro split file \*_fold_3_W20_O40.csv"):
        read_dispro_fold(tmp_path / "XYZ", 3, "W20_O40")


def test_dispro_reader_on_the_real_files():
    folder = DISPRO / "csv_missing_cleaned" / "BLCA"
    if not folder.is_dir():
        pytest.skip(f"DisPro split files not present at {folder}")
    m = read_dispro_fold(folder, 0, "W0_O60")
    tr = m[m["partition"] == "train"]
    # their fold-0 W0_O60 file: 301 training cases, 176 without omics, no slide dropped; val complete
    assert (len(m), len(tr), int(tr["drop_omics"].sum()), int(m["drop_slide"].sum())) == (372, 301, 176, 0)
    assert not m.loc[m["partition"] == "val", ["drop_slide", "drop_omics"]].any().any()
    both = read_dispro_fold(folder, 0, "W30_O30")
    assert int((both["drop_slide"] & both["drop_omics"]).sum()) == 0
