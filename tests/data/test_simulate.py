"""Tests of the synthetic cohort simulator (modaltune.data.simulate)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from modaltune.data.cohort import Cohort
from modaltune.data.simulate import LATENT_FACTORS, TISSUE_TYPES, simulate_cohort
from modaltune.errors import ConfigError, InputError

SHARED_PATHWAYS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pathways" / "combine_comps.csv"


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Cohort:
    return simulate_cohort(tmp_path_factory.mktemp("sim") / "tiny", preset="tiny", seed=3)


# ------------------------------------------------------------------------------------------ structure
def test_tiny_counts_manifest_and_round_trip(tiny: Cohort):
    c = tiny
    assert len(c) == 40
    assert c.manifest.synthetic is True
    assert "SYNTHETIC" in c.manifest.description
    assert {t.name for t in c.tasks} == {"subtype", "survival"}
    assert [m.name for m in c.modalities] == ["slide", "rna", "cnv", "mut", "clinical", "text"]
    assert c.manifest.modality("slide").feature_dim == 16
    assert c.manifest.modality("slide").encoder == "simulated"
    assert {f.name: f.kind for f in c.manifest.clinical_fields} == {"age": "numeric", "stage": "ordinal", "sex": "categorical", "grade": "ordinal"}
    # sites are balanced (40 patients over 3 sites: 14/13/13)
    assert sorted(c.patients["site"].value_counts().tolist()) == [13, 13, 14]
    assert set(c.patients["subtype"]) <= {"A", "B"}
    # a second load gives the same tables
    again = Cohort.load(c.root)
    pd.testing.assert_frame_equal(again.patients, c.patients)
    pd.testing.assert_frame_equal(again.omics["rna"], c.omics["rna"])
    pd.testing.assert_frame_equal(again.clinical, c.clinical)
    assert again.summary() == c.summary()


def test_missing_rates_are_exact_and_recorded(tmp_path):
    rates = {"slide": 0.1, "rna": 0.2, "clinical": 0.05, "text": 0.1, "clinical_field": 0.0}
    c = simulate_cohort(tmp_path / "c", preset="tiny", n_patients=100, missing_rates=rates, seed=1)
    av = c.availability()
    assert len(c) == 100  # nobody dropped
    assert int((~av["slide"]).sum()) == 10
    assert int((~av["rna"]).sum()) == 20
    assert int((~av["clinical"]).sum()) == 5
    assert int((~av["text"]).sum()) == 10
    # cnv/mut follow the RNA-missing patients by default
    assert (av["cnv"] == av["rna"]).all() and (av["mut"] == av["rna"]).all()
    # ground truth records the same missingness
    gt = c.ground_truth.loc[av.index]
    assert (gt["missing_slide"].astype(bool) == ~av["slide"]).all()
    assert (gt["missing_rna"].astype(bool) == ~av["rna"]).all()
    # missing clinical patients keep a row of empty cells; patients without slides have no slide rows
    assert c.clinical.loc[~av["clinical"].values].isna().all(axis=None)
    assert set(c.slides["patient_id"]) == set(av.index[av["slide"]])


def test_censoring_rate_and_survival_values(tmp_path):
    c = simulate_cohort(tmp_path / "c", preset="tiny", n_patients=200, censoring_rate=0.4, seed=2)
    tt = c.targets("survival")
    assert tt.mask.all()
    assert abs((1 - tt.event.mean()) - 0.4) <= 0.01  # calibrated exactly up to ties
    assert (tt.time > 0).all()
    gt = c.ground_truth.loc[c.patient_ids]
    # observed time = min(event time, censoring time), event = event time came first
    expect = np.maximum(np.round(np.minimum(gt["event_time"], gt["censor_time"]), 1), 0.1)
    np.testing.assert_allclose(tt.time, expect.to_numpy())
    np.testing.assert_array_equal(tt.event, (gt["event_time"] <= gt["censor_time"]).astype(int).to_numpy())


def test_bags_coords_and_sizes(tiny: Cohort):
    c = tiny
    assert len(c.slides) > 0
    n_slides = c.slides.groupby("patient_id").size()
    assert n_slides.min() >= 1 and n_slides.max() <= 2
    assert (n_slides == 2).any()  # multi-slide patients exist
    for path in c.slides["path"]:
        with h5py.File(c.resolve_path(path), "r") as f:
            feats, coords = f["features"], f["coords"][:]
            assert feats.dtype == np.float16 and feats.shape[1] == 16
            assert 16 <= feats.shape[0] <= 64
            assert coords.dtype == np.int64 and coords.shape == (feats.shape[0], 2)
            assert len(np.unique(coords, axis=0)) == len(coords)  # unique within a slide
            assert (coords % 256 == 0).all() and (coords >= 0).all()  # regular pitch, level-0 px
            assert f["coords"].attrs["patch_size_level0"] == 256
            assert f.attrs["encoder"] == "simulated"
            assert np.isfinite(feats[:].astype(np.float32)).all()


def test_tissue_regions_are_spatially_coherent(tiny: Cohort):
    """Neighbouring patches share a tissue type far more often than random pairs would."""
    same_nb, same_rand = [], []
    rng = np.random.default_rng(0)
    with h5py.File(tiny.root / "ground_truth_patches.h5", "r") as gtp:
        assert set(gtp.keys()) == set(tiny.slides["slide_id"])
        for sid, path in zip(tiny.slides["slide_id"], tiny.slides["path"]):
            types = gtp[sid][:]
            with h5py.File(tiny.resolve_path(path), "r") as f:
                coords = f["coords"][:] // 256
            assert len(types) == len(coords) and types.max() < len(TISSUE_TYPES)
            index = {tuple(xy): k for k, xy in enumerate(coords)}
            for k, (x, y) in enumerate(coords):
                j = index.get((x + 1, y))
                if j is not None:
                    same_nb.append(types[k] == types[j])
            perm = rng.permutation(len(types))
            same_rand.extend(types == types[perm])
    assert np.mean(same_nb) > np.mean(same_rand) + 0.2


def test_ground_truth_columns(tiny: Cohort):
    gt = tiny.ground_truth
    assert list(gt.index) == tiny.patient_ids
    for f in LATENT_FACTORS:
        assert f"z_{f}" in gt.columns
    np.testing.assert_allclose(gt["subtype_prob"], 1 / (1 + np.exp(-gt["subtype_logit"])), rtol=1e-6)
    assert {"risk", "event_time", "censor_time"} <= set(gt.columns)


def test_rna_uses_real_gene_symbols_with_pathway_structure(tiny: Cohort):
    rna = tiny.omics["rna"]
    for g in ("TP53", "MKI67", "ESR1", "VEGFA", "CD8A"):
        assert g in rna.columns
    pw = pd.read_csv(tiny.root / "pathways.csv", index_col=0)
    assert set(pw.index) == set(rna.columns)
    assert set(np.unique(tiny.omics["cnv"].to_numpy())) <= {-2, -1, 0, 1, 2}
    assert set(np.unique(tiny.omics["mut"].to_numpy())) <= {0, 1}


def test_text_reports(tiny: Cohort):
    t = tiny.text
    assert len(t) > 0
    pid = t.index[0]
    site = tiny.patients.loc[pid, "site"]
    loc = {"BRCA": "breast", "LUAD": "lung", "KIRC": "kidney"}[site]
    assert t[pid].startswith(f"Cancer location: {loc};")
    # the report never states the subtype label
    assert not t.str.contains("subtype").any()


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_identical_files_different_seed_differs(tmp_path):
    a = simulate_cohort(tmp_path / "a", preset="tiny", n_patients=12, seed=7)
    b = simulate_cohort(tmp_path / "b", preset="tiny", n_patients=12, seed=7)
    c = simulate_cohort(tmp_path / "c", preset="tiny", n_patients=12, seed=8)
    ha, hb, hc = _tree_hashes(a.root), _tree_hashes(b.root), _tree_hashes(c.root)
    assert ha == hb
    assert ha.keys() != hc.keys() or ha != hc
    assert not a.ground_truth["z_slide_1"].equals(c.ground_truth["z_slide_1"])


def test_missing_rates_do_not_change_latent_state(tmp_path):
    a = simulate_cohort(tmp_path / "a", preset="tiny", n_patients=20, seed=5)
    b = simulate_cohort(tmp_path / "b", preset="tiny", n_patients=20, seed=5, missing_rates={"slide": 0.5})
    pd.testing.assert_frame_equal(a.ground_truth.filter(like="z_"), b.ground_truth.filter(like="z_"))


# ------------------------------------------------------------------------------------------ errors
def test_refuses_to_overwrite_foreign_directory(tmp_path):
    d = tmp_path / "busy"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        simulate_cohort(d, preset="tiny", n_patients=5)
    assert (d / "notes.txt").exists()


def test_replaces_previous_simulation(tmp_path):
    d = tmp_path / "sim"
    simulate_cohort(d, preset="tiny", n_patients=6, seed=0)
    c = simulate_cohort(d, preset="tiny", n_patients=8, seed=1)
    assert len(Cohort.load(d)) == 8 == len(c)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"preset": "huge"}, "unknown preset"),
        ({"missing_rates": {"slides": 0.1}}, "unknown missing-rate"),
        ({"missing_rates": {"rna": 1.5}}, "outside"),
        ({"patches": (10, 5)}, "patches"),
        ({"signal": {"nonsense": 1.0}}, "unknown signal"),
        ({"n_genes": 10**6}, "n_genes"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        simulate_cohort(tmp_path / "x", **{"preset": "tiny", "n_patients": 6, **kwargs})


@pytest.mark.skipif(not SHARED_PATHWAYS.exists(), reason="../shared/data/pathways/combine_comps.csv not present")
def test_shared_pathway_file(tmp_path):
    c = simulate_cohort(tmp_path / "c", preset="tiny", n_patients=10, pathways_file=SHARED_PATHWAYS, n_genes=600, seed=0)
    assert c.omics["rna"].shape[1] == 600
    loadings = pd.read_csv(c.root / "pathway_loadings.csv", index_col=0)
    assert (loadings["z_omics_1"] != 0).sum() >= 2 and (loadings["z_omics_2"] != 0).sum() >= 2


# ------------------------------------------------------------------------------------------ signal split
@pytest.fixture(scope="module")
def signal_cohort(tmp_path_factory) -> Cohort:
    # 500 patients (about 340 with slide + RNA + clinical) with tiny bags and 16-d features: fast,
    # and enough patients that CV balanced accuracy is not dominated by sampling noise
    return simulate_cohort(tmp_path_factory.mktemp("sig") / "c", preset="tiny", n_patients=500, seed=0)


def test_fusion_beats_each_single_modality(signal_cohort: Cohort):
    from modaltune.data.simulate import signal_check

    res = signal_check(signal_cohort)
    singles = res.loc[["slide", "omics"]]
    # each imaging / omics modality alone is informative ...
    assert (singles["subtype_bacc"] > 0.55).all(), res
    assert (res.loc[["slide", "omics", "clinical"], "survival_cindex"] > 0.55).all(), res
    # ... but incomplete: early fusion is clearly better on both tasks
    assert res.loc["early_fusion", "subtype_bacc"] >= singles["subtype_bacc"].max() + 0.04, res
    assert res.loc["early_fusion", "survival_cindex"] >= res.loc[["slide", "omics", "clinical"], "survival_cindex"].max() + 0.04, res
    # clinical fields carry no subtype information by construction (only the site prevalence)
    assert res.loc["clinical", "subtype_bacc"] < 0.62, res
    # the cross-modal interaction leaves room above any additive model: the true factors used
    # additively fall clearly short of the true subtype probability / risk
    assert res.loc["oracle", "subtype_bacc"] >= res.loc["oracle_additive", "subtype_bacc"] + 0.05, res
    assert res.loc["oracle", "survival_cindex"] >= res.loc["oracle_additive", "survival_cindex"] + 0.02, res
    assert res.loc["oracle_additive", "subtype_bacc"] > res.loc["early_fusion", "subtype_bacc"]


def test_latent_factors_are_recoverable_from_their_modality_only(signal_cohort: Cohort):
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict

    from modaltune.data.simulate import _modality_matrices

    av = signal_cohort.availability()
    ids = list(av.index[av["slide"] & av["rna"] & av["clinical"]])
    X = _modality_matrices(signal_cohort, ids)
    gt = signal_cohort.ground_truth.loc[ids]

    def corr(M, col):
        pred = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 3, 12)), M, gt[col].to_numpy(), cv=5)
        return np.corrcoef(pred, gt[col])[0, 1]

    assert corr(X["slide"], "z_slide_1") > 0.7
    assert corr(X["omics"], "z_omics_1") > 0.8
    assert corr(X["omics"], "z_omics_2") > 0.8
    # the split: a modality does not see the other modality's private factor
    assert abs(corr(X["omics"], "z_slide_1")) < 0.3
    assert abs(corr(X["slide"], "z_omics_1")) < 0.3


def test_options_stage_task_float32_follow_up(tmp_path):
    c = simulate_cohort(tmp_path / "c", preset="tiny", n_patients=30, include_stage_task=True, float16=False,
                        max_follow_up_months=24.0, n_folds=3, seed=4)
    assert c.manifest.task("stage").classes == ["Stage I", "Stage II", "Stage III", "Stage IV"]
    tt = c.targets("stage")
    assert tt.mask.all()
    # the stage label is the true stage; the clinical field is the same value where not missing
    clin = c.clinical["stage"].dropna()
    assert (c.patients.loc[clin.index, "stage"] == clin).all()
    with h5py.File(c.resolve_path(c.slides["path"].iloc[0]), "r") as f:
        assert f["features"].dtype == np.float32
    assert c.targets("survival").time.max() <= 24.0
    assert (c.root / "splits" / "kfold3.csv").exists()
