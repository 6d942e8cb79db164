"""Tests of the stage functions of the cohort simulator (modaltune.data.simulate), each run alone,
and a pin of simulate_cohort's output to digests computed from the single-function version."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm, spearmanr

from modaltune.data.simulate import (
    LATENT_FACTORS,
    TISSUE_TYPES,
    RandomStreams,
    SignalSpec,
    build_manifest,
    build_tables,
    builtin_pathways,
    resolve_settings,
    simulate_clinical_values,
    simulate_cohort,
    simulate_latent,
    simulate_missingness,
    simulate_omics,
    simulate_reports,
    simulate_slide_bags,
    simulate_slide_world,
    simulate_tasks,
    write_slide_bags,
)
from modaltune.errors import ConfigError

SITES = ["BRCA", "LUAD", "KIRC"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _latent(n: int, seed: int = 0, sites=SITES, dim: int = 8, signal: SignalSpec | None = None):
    return simulate_latent(n, sites, dim, signal or SignalSpec(), _rng(seed), _rng(seed + 1000))


# ------------------------------------------------------------------------------------------ pinned output
def _cohort_digest(root: Path) -> dict[str, str]:
    """sha256 per written file. csv/yaml: bytes. parquet: content (index, columns, dtypes, values),
    because parquet bytes carry the writer's library version. h5: datasets only (name, dtype, shape,
    values), because the attributes carry the absolute (staging) folder in ``savetodir`` and the
    package version (the layout's attributes are pinned by the h5layout tests)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        h = hashlib.sha256()
        if p.suffix == ".parquet":
            df = pd.read_parquet(p)
            h.update(repr((list(df.index), list(df.columns), [str(t) for t in df.dtypes])).encode())
            h.update(np.ascontiguousarray(df.to_numpy()).tobytes())
        elif p.suffix == ".h5":
            with h5py.File(p, "r") as f:
                def visit(name, o, h=h):
                    if isinstance(o, h5py.Dataset):
                        a = o[()]
                        h.update(repr((name, str(a.dtype), a.shape)).encode())
                        h.update(np.ascontiguousarray(a).tobytes())
                f.visititems(visit)
        else:
            h.update(p.read_bytes())
        out[str(p.relative_to(root))] = h.hexdigest()
    return out


# Digests computed with simulate_cohort as one function (main at 6b57e8a), before the split into
# stages. A change here means the same seed no longer gives the same cohort: bump GENERATOR_VERSION
# and recompute only when that is intended.
PINNED = [
    ({"preset": "tiny", "n_patients": 10, "seed": 21, "patches": (4, 12), "feature_dim": 8, "n_folds": 2},
     29, "a15c0a22c17f9462f245cad751c7d411841f4615f7b533d52cc8b58bccd8fc4f"),
    ({"preset": "tiny", "n_patients": 14, "seed": 9, "sites": ("BRCA", "XYZ"), "patches": (4, 12), "feature_dim": 8, "slides_per_patient": (1, 3),
          "include_stage_task": True, "world_seed": 2, "n_genes": 50, "float16": False, "missing_rates": {"slide": 0.3, "cnv": 0.2, "clinical_field": 0.2}},
     37, "9055754dcde29d7f7bb954368d68c50c75a8d28ab0401ba0f2f9e52bfcfb82ed"),
]


@pytest.mark.parametrize("kwargs, n_files, digest", PINNED, ids=["defaults", "world_stage_subset_f32"])
def test_output_pinned_to_single_function_version(tmp_path, kwargs, n_files, digest):
    c = simulate_cohort(tmp_path / "c", **kwargs)
    files = _cohort_digest(c.root)
    assert len(files) == n_files, sorted(files)
    assert hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest() == digest, json.dumps(files, indent=1, sort_keys=True)


# ------------------------------------------------------------------------------------------ settings, streams
def test_resolve_settings_preset_overrides_and_defaults():
    s = resolve_settings(preset="tiny", n_patients=7, missing_rates={"slide": 0.5}, seed=3)
    assert (s.n_patients, s.feature_dim, s.patches, s.slides_per_patient) == (7, 16, (16, 64), (1, 2))
    assert s.name == "sim_tiny_seed3"
    assert s.missing_rates == {"slide": 0.5, "rna": 0.2, "clinical": 0.05, "text": 0.1, "clinical_field": 0.05}
    assert s.signal == SignalSpec()
    with pytest.raises(ConfigError, match="n_patients=1 is too small"):
        resolve_settings(preset="tiny", n_patients=1)
    with pytest.raises(ConfigError, match="sites"):
        resolve_settings(sites=("BRCA", "BRCA"))


def test_random_streams_world_seed_replaces_only_the_world_streams():
    a, b, w = RandomStreams.from_seed(4), RandomStreams.from_seed(4, world_seed=9), RandomStreams.from_seed(9)
    assert a.latent.random() == b.latent.random()
    assert a.slide.random() == b.slide.random()
    assert b.site.random() == w.site.random() != a.site.random()
    assert b.proto.random() == w.proto.random() != a.proto.random()
    # world_seed equal to seed is the plain seed
    assert RandomStreams.from_seed(4, world_seed=4).site.random() == RandomStreams.from_seed(4).site.random()


# ------------------------------------------------------------------------------------------ latent state
def test_latent_shapes_sites_and_standard_normal_factors():
    n = 20000
    lat = _latent(n, dim=5)
    assert lat.Z.shape == (n, len(LATENT_FACTORS))
    assert lat.site_feature.shape == (3, 5) and lat.site_tissue.shape == (3, len(TISSUE_TYPES))
    assert lat.site_subtype.shape == lat.site_hazard.shape == (3,)
    counts = np.bincount(lat.site_idx)
    assert counts.max() - counts.min() <= 1  # even split
    assert len(set(lat.patient_ids)) == n
    assert all(p.startswith(f"SIM-{s}-") for p, s in zip(lat.patient_ids, lat.site_of_patient))
    # N(0, I): means within 5 standard errors of 0, sds within 2 %, factors uncorrelated
    assert np.abs(lat.Z.mean(0)).max() < 5 / np.sqrt(n)
    np.testing.assert_allclose(lat.Z.std(0), 1.0, atol=0.02)
    assert np.abs(np.corrcoef(lat.Z.T) - np.eye(6)).max() < 0.04
    np.testing.assert_array_equal(lat.factor("omics_2"), lat.Z[:, 3])


def test_latent_is_seeded():
    a, b, c = _latent(50, seed=1), _latent(50, seed=1), _latent(50, seed=2)
    np.testing.assert_array_equal(a.Z, b.Z)
    np.testing.assert_array_equal(a.patient_ids, b.patient_ids)
    np.testing.assert_array_equal(a.site_feature, b.site_feature)
    assert not np.array_equal(a.Z, c.Z)


# ------------------------------------------------------------------------------------------ clinical values
def test_clinical_values_stage_shares_age_and_sex():
    n = 20000
    lat = _latent(n)
    clin = simulate_clinical_values(lat, _rng(5))
    # stage latent 0.9 z + 0.436 e ~ N(0, 1) cut at (-0.67, 0.39, 1.04)
    expect = np.diff(norm.cdf([-np.inf, -0.67, 0.39, 1.04, np.inf]))
    np.testing.assert_allclose(np.bincount(clin.stage_idx, minlength=4) / n, expect, atol=0.015)
    assert clin.age.min() >= 20 and clin.age.max() <= 90 and (clin.age == np.round(clin.age)).all()
    assert abs(np.corrcoef(clin.age, lat.factor("clinical"))[0, 1] - 0.45) < 0.03
    assert set(np.unique(clin.grade_idx)) == {0, 1, 2}
    brca = lat.site_of_patient == "BRCA"
    assert (clin.sex_idx[brca] == 0).mean() > 0.97
    assert abs((clin.sex_idx[~brca] == 0).mean() - 0.5) < 0.02


# ------------------------------------------------------------------------------------------ tasks
def test_tasks_class_balance_censoring_and_positive_times():
    n = 20000
    lat = _latent(n)
    clin = simulate_clinical_values(lat, _rng(5))
    t = simulate_tasks(lat, clin, SignalSpec(), censoring_rate=0.3, max_follow_up_months=120.0, rng=_rng(6))
    # labels are Bernoulli(sigmoid(logit)): observed class share matches the mean probability
    assert abs(t.subtype.mean() - t.subtype_prob.mean()) < 0.015
    assert 0.35 < t.subtype.mean() < 0.65  # both classes well represented
    np.testing.assert_allclose(t.subtype_prob, 1 / (1 + np.exp(-t.subtype_logit)))
    assert (t.time > 0).all() and (t.event_time > 0).all() and t.time.max() <= 120.0
    assert abs((1 - t.event.mean()) - 0.3) <= 2 / n  # calibrated censoring, up to ties
    np.testing.assert_array_equal(t.event, (t.event_time <= t.censor_time).astype(int))
    # a higher true risk means an earlier event
    assert spearmanr(t.risk, t.event_time)[0] < -0.5


def test_tasks_risk_and_logit_are_the_documented_formulas():
    lat = _latent(300)
    clin = simulate_clinical_values(lat, _rng(5))
    zero = dict.fromkeys(("sub_slide", "sub_omics", "sub_interaction", "sub_shared", "surv_slide", "surv_omics", "surv_interaction", "surv_stage", "surv_age", "surv_shared"), 0.0)
    sig = SignalSpec.from_any({**zero, "sub_interaction": 2.0, "surv_interaction": 0.5, "surv_age": 0.3})
    t = simulate_tasks(lat, clin, sig, censoring_rate=0.0, max_follow_up_months=np.inf, rng=_rng(6))
    z = {f: lat.factor(f) for f in LATENT_FACTORS}
    np.testing.assert_allclose(t.subtype_logit, 2.0 * z["slide_2"] * z["omics_2"] + lat.site_subtype[lat.site_idx])
    np.testing.assert_allclose(t.risk, 0.5 * z["slide_1"] * z["omics_1"] + 0.3 * (clin.age - 60) / 10 + lat.site_hazard[lat.site_idx])
    assert t.event.all() and np.isinf(t.censor_time).all()  # no censoring at all


# ------------------------------------------------------------------------------------------ missingness
@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 400), slide=st.floats(0, 1), rna=st.floats(0, 1), field=st.floats(0, 1),
       mut=st.none() | st.floats(0, 1), seed=st.integers(0, 2**16))
def test_missingness_exact_counts(n, slide, rna, field, mut, seed):
    rates = {"slide": slide, "rna": rna, "clinical": 0.1, "text": 0.5, "clinical_field": field}
    if mut is not None:
        rates["mut"] = mut
    m = simulate_missingness(n, rates, _rng(seed))
    for k in ("slide", "rna", "clinical", "text"):
        assert m.modality[k].shape == (n,) and m.modality[k].sum() == round(rates[k] * n)
    for f in ("age", "stage", "sex", "grade"):
        assert m.fields[f].sum() == round(field * n)
    np.testing.assert_array_equal(m.modality["cnv"], m.modality["rna"])  # cnv not given: follows RNA
    if mut is None:
        np.testing.assert_array_equal(m.modality["mut"], m.modality["rna"])
    else:
        assert m.modality["mut"].sum() == round(mut * n)


def test_missingness_masks_are_independent_and_seeded():
    n = 10000
    rates = {"slide": 0.3, "rna": 0.2, "clinical": 0.1, "text": 0.5, "clinical_field": 0.1}
    m = simulate_missingness(n, rates, _rng(1))
    # independent draws: both missing about as often as the product of the rates (0.15)
    assert abs((m.modality["slide"] & m.modality["text"]).mean() - 0.15) < 0.015
    again = simulate_missingness(n, rates, _rng(1))
    for k in m.modality:
        np.testing.assert_array_equal(m.modality[k], again.modality[k])
    with pytest.raises(ConfigError, match="outside"):
        simulate_missingness(10, {**rates, "text": 1.5}, _rng(1))


# ------------------------------------------------------------------------------------------ slides
def test_slide_bags_shapes_counts_and_seeding():
    lat = _latent(12, dim=6)
    world = simulate_slide_world(6, _rng(3))
    assert world.prototypes.shape == (len(TISSUE_TYPES), 6) and world.directions.shape == (3, 6)
    bags = list(simulate_slide_bags(lat, world, (1, 3), (5, 20), SignalSpec(), _rng(4)))
    per_patient = np.bincount([b.patient for b in bags], minlength=12)
    assert per_patient.min() >= 1 and per_patient.max() <= 3
    for b in bags:
        m = len(b.grid)
        assert 5 <= m <= 20
        assert b.features.shape == (m, 6) and b.tissue.shape == (m,) and b.tissue.dtype == np.int8
        assert len(np.unique(b.grid, axis=0)) == m and b.grid.min() == 0
        assert b.tissue.max() < len(TISSUE_TYPES)
    again = list(simulate_slide_bags(lat, world, (1, 3), (5, 20), SignalSpec(), _rng(4)))
    assert len(again) == len(bags)
    for a, b in zip(again, bags):
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.grid, b.grid)


def test_slide_tumour_patches_carry_the_slide_factors():
    """Without patch noise, a patch is prototype + (site + slide shift, common to the slide) + the
    tumour term ``tumour_shift * (z_slide_1 v1 + z_slide_2 v2)`` on tumour patches only."""
    lat = _latent(20, dim=8)
    world = simulate_slide_world(8, _rng(3))
    sig = SignalSpec(slide_noise=0.0, tumour_shift=0.6)
    v1, v2, _ = world.directions
    checked = 0
    for b in simulate_slide_bags(lat, world, (1, 1), (40, 80), sig, _rng(4)):
        offset = b.features - world.prototypes[b.tissue]
        plain = np.isin(b.tissue, [1, 3, 4, 5])  # not tumour, not lymphocytes
        tum = b.tissue == 0
        if not plain.any() or not tum.any():
            continue
        common = offset[plain][0]
        np.testing.assert_allclose(offset[plain], np.broadcast_to(common, offset[plain].shape), atol=1e-12)
        i = b.patient
        expect = 0.6 * (lat.factor("slide_1")[i] * v1 + lat.factor("slide_2")[i] * v2)
        np.testing.assert_allclose(offset[tum] - common, np.broadcast_to(expect, offset[tum].shape), atol=1e-12)
        checked += 1
    assert checked >= 10


def test_write_slide_bags_skips_missing_patients(tmp_path):
    lat = _latent(6, dim=4)
    world = simulate_slide_world(4, _rng(3))
    bags = list(simulate_slide_bags(lat, world, (1, 2), (4, 10), SignalSpec(), _rng(4)))
    missing = np.array([False, True, False, False, True, False])
    slides = write_slide_bags(tmp_path, iter(bags), lat.patient_ids, missing, float16=True, patch_size_level0=128)
    kept = [b for b in bags if not missing[b.patient]]
    assert list(slides["slide_id"]) == [f"{lat.patient_ids[b.patient]}-DX{b.slide + 1}" for b in kept]
    assert not set(slides["patient_id"]) & set(lat.patient_ids[missing])
    with h5py.File(tmp_path / "ground_truth_patches.h5", "r") as gtp:
        assert set(gtp) == set(slides["slide_id"])
        for b, (sid, rel) in zip(kept, zip(slides["slide_id"], slides["path"])):
            np.testing.assert_array_equal(gtp[sid][:], b.tissue)
            with h5py.File(tmp_path / rel, "r") as f:
                np.testing.assert_array_equal(f["features"][:], b.features.astype(np.float16))
                np.testing.assert_array_equal(f["coords"][:], (b.grid + 2) * 128)


# ------------------------------------------------------------------------------------------ omics
@pytest.fixture(scope="module")
def omics_draw():
    lat = _latent(3000, dim=4)
    return lat, simulate_omics(lat, builtin_pathways(), None, SignalSpec(), _rng(7), _rng(8))


def test_omics_shapes_and_value_ranges(omics_draw):
    lat, om = omics_draw
    g, p = om.pathways.shape
    assert om.rna.shape == (3000, g) and om.loadings.shape == (p, len(LATENT_FACTORS))
    assert list(om.rna.index) == list(lat.patient_ids) and om.rna.dtypes.eq(np.float32).all()
    assert set(np.unique(om.cnv.to_numpy())) <= {-2, -1, 0, 1, 2}
    assert set(np.unique(om.mut.to_numpy())) <= {0, 1}
    # slide-only and clinical factors drive no pathway
    assert not om.loadings[:, [LATENT_FACTORS.index(f) for f in ("slide_1", "slide_2", "clinical")]].any()


@pytest.mark.parametrize("factor", ["omics_1", "omics_2", "shared"])
def test_omics_signal_follows_its_latent_factor(omics_draw, factor):
    lat, om = omics_draw
    j = LATENT_FACTORS.index(factor)
    rna = (om.rna - om.rna.mean()) / om.rna.std()
    M = om.pathways.to_numpy(float)
    pathway_mean = (rna.to_numpy() @ M) / M.sum(0)  # (n, P)
    signed = pathway_mean[:, om.loadings[:, j] != 0] @ np.sign(om.loadings[om.loadings[:, j] != 0, j])
    assert abs(np.corrcoef(signed, lat.factor(factor))[0, 1]) > 0.5
    # and not another factor's
    assert abs(np.corrcoef(signed, lat.factor("slide_1"))[0, 1]) < 0.1


def test_cnv_and_mutations_are_weakly_driven(omics_draw):
    lat, om = omics_draw
    mut_load = om.mut.to_numpy().sum(1)
    assert 0.15 < np.corrcoef(mut_load, lat.factor("omics_1"))[0, 1] < 0.6
    per_gene = [abs(np.corrcoef(om.cnv[g], lat.factor("omics_2"))[0, 1]) for g in om.cnv.columns]
    assert 0.15 < np.mean(per_gene) < 0.6


def test_omics_gene_subset_and_seeding():
    lat = _latent(20, dim=4)
    a = simulate_omics(lat, builtin_pathways(), 40, SignalSpec(), _rng(7), _rng(8))
    b = simulate_omics(lat, builtin_pathways(), 40, SignalSpec(), _rng(7), _rng(8))
    assert a.rna.shape == (20, 40) and (a.pathways.sum(0) > 0).all()
    pd.testing.assert_frame_equal(a.rna, b.rna)
    pd.testing.assert_frame_equal(a.cnv, b.cnv)
    with pytest.raises(ConfigError, match="n_genes=100000"):
        simulate_omics(lat, builtin_pathways(), 100000, SignalSpec(), _rng(7), _rng(8))


# ------------------------------------------------------------------------------------------ reports, tables
def test_reports_respect_missing_text_and_unknown_sites():
    n = 4000
    lat = _latent(n, sites=["BRCA", "XYZ"])
    clin = simulate_clinical_values(lat, _rng(5))
    missing = np.zeros(n, bool)
    missing[:100] = True
    text = simulate_reports(lat, clin, missing, _rng(9))
    assert len(text) == n - 100 and not set(text.index) & set(lat.patient_ids[:100])
    xyz = text[lat.site_of_patient[~missing] == "XYZ"]
    assert xyz.str.startswith("Cancer location: xyz; Cancer diagnosis: carcinoma of the xyz;").all()
    # each optional sentence is kept with probability 0.85
    assert abs(text.str.contains("Overall stage").mean() - 0.85) < 0.02
    assert not text.str.contains("subtype").any()


def test_build_tables_applies_missingness_and_draws_nothing():
    n = 30
    lat = _latent(n, dim=4)
    clin = simulate_clinical_values(lat, _rng(5))
    tasks = simulate_tasks(lat, clin, SignalSpec(), 0.4, 180.0, _rng(6))
    miss = simulate_missingness(n, {"slide": 0.2, "rna": 0.3, "clinical": 0.1, "text": 0.1, "clinical_field": 0.2}, _rng(1))
    om = simulate_omics(lat, builtin_pathways(), None, SignalSpec(), _rng(7), _rng(8))
    t = build_tables(lat, clin, tasks, miss, om, SignalSpec(), include_stage_task=True)
    again = build_tables(lat, clin, tasks, miss, om, SignalSpec(), include_stage_task=True)
    pd.testing.assert_frame_equal(t.ground_truth, again.ground_truth)
    assert len(t.patients) == len(t.clinical) == len(t.ground_truth) == n  # nobody dropped
    assert len(t.omics["rna"]) == n - 9 and not set(t.omics["rna"].index) & set(lat.patient_ids[miss.modality["rna"]])
    assert t.clinical.loc[miss.modality["clinical"]].isna().all(axis=None)
    assert t.clinical["age"].isna().sum() == len(set(np.flatnonzero(miss.fields["age"])) | set(np.flatnonzero(miss.modality["clinical"])))
    assert (t.patients["stage"] == t.ground_truth["stage_true"]).all()
    assert (t.patients["subtype"] == np.where(tasks.subtype == 1, "B", "A")).all()
    np.testing.assert_array_equal(t.ground_truth["missing_slide"], miss.modality["slide"].astype(int))


def test_build_manifest_records_settings():
    s = resolve_settings(preset="tiny", seed=2, include_stage_task=True, world_seed=5, max_follow_up_months=float("inf"))
    m = build_manifest(s, n_genes=40, n_pathways=7)
    assert [t.name for t in m.tasks] == ["subtype", "survival", "stage"]
    sim = m.extra["simulation"]
    assert (sim["n_genes"], sim["n_pathways"], sim["world_seed"], sim["max_follow_up_months"]) == (40, 7, 5, None)
    assert sim["signal"]["sub_slide"] == 3.0 and m.synthetic
    assert "world_seed" not in build_manifest(replace(s, world_seed=None), 40, 7).extra["simulation"]
