"""Issue 12, items 2, 3 and 10 (parts): crash-safe cohort writes, and "a cohort that validates is
exactly a cohort that trains": every bad input that ``data validate`` rejects, ``fit`` refuses
with the same where / message / fix, before any training."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.cohort import Cohort
from modaltune.data.omics import OmicsScaler
from modaltune.data.splits import kfold_split
from modaltune.data.validate import validate_cohort
from modaltune.errors import InputError
from modaltune.testing.cohort import D, make_cohort

SRC = str(Path(__file__).resolve().parents[2] / "src")
FAST = {"max_epochs": 1, "batch_size": 4, "accelerator": "cpu", "progress_bar": False}


# ------------------------------------------------------------------------------------ helpers
def _fit(root: Path, method: str, **kw):
    from modaltune.training.trainer import fit

    cohort = Cohort.load(root)
    fold = kfold_split(cohort.patient_ids, 2, seed=0).folds[0]
    return fit(cohort, fold, method, trainer=FAST, **kw)


def _first_error(root: Path):
    rep = validate_cohort(root)
    assert rep.errors, str(rep)
    return rep.errors[0]


def _assert_fit_refuses_like_validate(root: Path, needle: str, method: str = "mean_pool", **kw) -> str:
    """``data validate``'s first error mentions ``needle``; ``fit`` raises the same where/message/fix."""
    err = _first_error(root)
    assert needle in err.message, str(err)
    with pytest.raises(InputError) as exc:
        _fit(root, method, **kw)
    got = exc.value
    assert got.where == err.where and got.detail.startswith(err.message) and got.fix == err.fix, f"{got}\nvs\n{err}"
    return str(got)


def _slides(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "slides.csv", dtype=str)


def _rna(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "omics/rna.parquet")


@pytest.fixture
def toy(tmp_path) -> Path:
    root = tmp_path / "toy"
    make_cohort(root)
    return root


# ------------------------------------------------------------------------------------ the clean cohort trains
def test_clean_toy_cohort_validates_and_fit_runs_the_check_once(toy, monkeypatch):
    import modaltune.data.validate as v

    assert validate_cohort(toy).ok
    calls = []
    real = v.validate_cohort
    monkeypatch.setattr(v, "validate_cohort", lambda *a, **k: calls.append(k.get("modalities")) or real(*a, **k))
    from modaltune.training.trainer import fit

    cohort = Cohort.load(toy)
    folds = kfold_split(cohort.patient_ids, 2, seed=0).folds
    for f in folds:
        fit(cohort, f, "logistic", modalities=["rna"], tasks=["subtype"])
    assert calls == [["rna"]]  # one check per cohort object and modality set, not per fold


# ------------------------------------------------------------------------------------ omics
def test_inf_omics_cell_refused(toy):
    rna = _rna(toy)
    rna.loc["P05", "EGFR"] = np.inf
    rna.to_parquet(toy / "omics/rna.parquet")
    msg = _assert_fit_refuses_like_validate(toy, "NaN/inf value(s)", "logistic", modalities=["rna"], tasks=["subtype"])
    assert "'P05'" in msg and "'EGFR'" in msg


def test_word_in_omics_column_refused(toy):
    rna = _rna(toy)
    rna["MYC"] = rna["MYC"].astype(str)
    rna.loc["P05", "MYC"] = "high"
    rna.to_parquet(toy / "omics/rna.parquet")
    msg = _assert_fit_refuses_like_validate(toy, "non-numeric column", "logistic", modalities=["rna"], tasks=["subtype"])
    assert "'MYC'" in msg


@pytest.mark.parametrize("value", [1e300, -1e39])
def test_omics_value_beyond_float32_refused(toy, value):
    rna = _rna(toy)
    rna.loc["P05", "TP53"] = value
    rna.to_parquet(toy / "omics/rna.parquet")
    msg = _assert_fit_refuses_like_validate(toy, "beyond the float32 range", "logistic", modalities=["rna"], tasks=["subtype"])
    assert "'P05'" in msg and "'TP53'" in msg


def test_extreme_but_representable_value_is_a_warning_and_scales_without_flattening(toy):
    rna = _rna(toy)
    rna.loc["P05", "TP53"] = 3e38
    rna.to_parquet(toy / "omics/rna.parquet")
    rep = validate_cohort(toy)
    assert rep.ok and any("extreme value(s)" in w.message and "'TP53'" in w.message for w in rep.warnings), str(rep)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 60),
    exponent=st.floats(0, 308),
    sign=st.sampled_from([1.0, -1.0]),
    base=st.floats(-1e3, 1e3, allow_nan=False),
)
def test_zscore_of_one_outlier_has_the_known_value_whatever_its_size(n, exponent, sign, base):
    """Column = ``base`` (n-1 times) and one value ``v``: population z-scores are exactly
    ``sqrt(n-1)`` for v and ``-1/sqrt(n-1)`` for the rest (any finite v != base, even 1e308)."""
    v = sign * 10.0**exponent
    if not np.isfinite(v) or abs(v - base) < 1e-6 * max(abs(base), 1.0):
        return  # v == base (nearly): no outlier to speak of
    df = pd.DataFrame({"g": [base] * (n - 1) + [v]})
    z = OmicsScaler("zscore").fit_transform(df)["g"].to_numpy()
    s = np.sign(v - base)
    tol = 1e-5 * np.sqrt(n)  # float32 output
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z[-1], s * np.sqrt(n - 1), rtol=1e-5, atol=tol)
    np.testing.assert_allclose(z[:-1], -s / np.sqrt(n - 1), rtol=1e-5, atol=tol)


# ------------------------------------------------------------------------------------ slides
def test_duplicate_slides_row_refused(toy):
    s = _slides(toy)
    pd.concat([s, s.iloc[[3]]]).to_csv(toy / "slides.csv", index=False)
    _assert_fit_refuses_like_validate(toy, "duplicate slide id")
    s2 = pd.concat([s, s.iloc[[3]].assign(slide_id="copy")])  # same file under a new slide id
    s2.to_csv(toy / "slides.csv", index=False)
    msg = _assert_fit_refuses_like_validate(toy, "listed more than once for one patient")
    assert s.iloc[3]["patient_id"] in msg


def test_two_patients_sharing_one_bag_refused(toy):
    s = _slides(toy)
    s.loc[s.patient_id == "P05", "path"] = s.loc[s.patient_id == "P04", "path"].iloc[0]
    s.to_csv(toy / "slides.csv", index=False)
    msg = _assert_fit_refuses_like_validate(toy, "shared by several patients")
    assert "'P04'" in msg and "'P05'" in msg


def test_slides_of_unknown_patients_refused(toy):
    s = _slides(toy)
    s.loc[s.patient_id == "P05", "patient_id"] = "GHOST"
    s.to_csv(toy / "slides.csv", index=False)
    msg = _assert_fit_refuses_like_validate(toy, "not in patients.csv")
    assert "'GHOST'" in msg


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_or_bool_feature_tensor_refused(toy, dtype):
    s = _slides(toy)
    pt = toy / "bags/P05_0.pt"
    torch.save({"features": torch.ones((4, D), dtype=dtype), "coords": torch.zeros((4, 2), dtype=torch.int64)}, pt)
    s.loc[s.patient_id == "P05", "path"] = "bags/P05_0.pt"
    s.to_csv(toy / "slides.csv", index=False)
    msg = _assert_fit_refuses_like_validate(toy, "integer/bool dtype")
    assert "P05_0.pt" in msg


def test_list_inside_dict_pt_refused(toy):
    s = _slides(toy)
    torch.save({"features": [torch.zeros(D)] * 3}, toy / "bags/P05_0.pt")
    s.loc[s.patient_id == "P05", "path"] = "bags/P05_0.pt"
    s.to_csv(toy / "slides.csv", index=False)
    msg = _assert_fit_refuses_like_validate(toy, "'features' is a list, not a tensor")
    assert "torch.stack" in msg


def test_all_bags_missing_is_an_error_with_nonzero_exit(toy):
    s = _slides(toy)
    s["path"] = s["path"].str.replace("bags/", "nowhere/")
    s.to_csv(toy / "slides.csv", index=False)
    _assert_fit_refuses_like_validate(toy, "none of the 12 listed feature files exists")
    out = subprocess.run([sys.executable, "-m", "modaltune.cli", "data", "validate", str(toy)], check=False, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC}, timeout=120)
    assert out.returncode == 1 and "none of the 12 listed feature files exists" in out.stderr
    # an omics-only method does not read the slides: it trains
    assert _fit(toy, "logistic", modalities=["rna"], tasks=["subtype"]) is not None


@pytest.mark.timeout(120)
def test_fifo_bag_is_an_error_without_hanging(toy):
    fifo = toy / "bags/P05_0.h5"
    fifo.unlink()
    os.mkfifo(fifo)  # opening it for reading would block until a writer appears
    out = subprocess.run([sys.executable, "-m", "modaltune.cli", "data", "validate", str(toy)], check=False, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC}, timeout=60)
    assert out.returncode == 1 and "bag path is a FIFO (named pipe), not a feature file" in out.stderr
    msg = _assert_fit_refuses_like_validate(toy, "FIFO")
    assert "P05_0.h5" in msg


# ------------------------------------------------------------------------------------ crash-safe writes
def _same_cohort(a: Path, b: Path) -> None:
    ca, cb = Cohort.load(a), Cohort.load(b)
    pd.testing.assert_frame_equal(ca.patients, cb.patients)
    pd.testing.assert_frame_equal(ca.slides, cb.slides)
    assert set(ca.omics) == set(cb.omics)
    for k in ca.omics:
        pd.testing.assert_frame_equal(ca.omics[k], cb.omics[k])
    pd.testing.assert_frame_equal(ca.clinical, cb.clinical)
    pd.testing.assert_series_equal(ca.text, cb.text)
    assert sorted(ca.splits) == sorted(cb.splits)
    for k in ca.splits:
        pd.testing.assert_frame_equal(ca.splits[k].to_frame(), cb.splits[k].to_frame())
    assert ca.manifest.files == cb.manifest.files and "splits/kfold2.csv" in ca.manifest.files
    for p in ca.slides["path"]:
        if not (a / p).exists():  # the toy cohort lists one missing bag on purpose
            assert not (b / p).exists()
            continue
        with h5py.File(a / p) as x, h5py.File(b / p) as y:
            assert np.array_equal(x["features"][()], y["features"][()])


@pytest.mark.parametrize("fail_after,overwrite", [(1, False), (3, False), (6, False), (0, True), (4, True)])
def test_crash_inside_save_leaves_no_cohort_and_a_rerun_equals_the_uninterrupted_one(tmp_path, monkeypatch, fail_after, overwrite):
    """7 files are written (patients, slides, rna, clinical, text, excluded, split), then the manifest;
    a crash before file ``fail_after + 1`` (into a fresh folder or over a saved cohort) leaves a folder
    that load and validate refuse, and saving again gives the uninterrupted result."""
    import modaltune.fileio as atomic

    src = make_cohort(tmp_path / "src")
    src.splits["kfold2"] = kfold_split(src.patient_ids, 2, seed=0)
    ref = tmp_path / "ref"
    src.save(ref)
    out = tmp_path / "out"
    (out / "bags").mkdir(parents=True)
    for f in (tmp_path / "src/bags").iterdir():
        (out / "bags" / f.name).write_bytes(f.read_bytes())
    for f in (tmp_path / "src/bags").iterdir():
        (ref / "bags").mkdir(exist_ok=True)
        (ref / "bags" / f.name).write_bytes(f.read_bytes())
    if overwrite:
        src.save(out)
        assert Cohort.load(out).manifest.files
    real, n = atomic.atomic_file, {"k": 0}

    def crashing(path, *a, **k):
        if n["k"] >= fail_after:
            raise OSError("simulated crash")
        n["k"] += 1
        return real(path, *a, **k)

    monkeypatch.setattr(atomic, "atomic_file", crashing)
    with pytest.raises(OSError, match="simulated crash"):
        src.save(out)
    monkeypatch.setattr(atomic, "atomic_file", real)
    assert not (out / "cohort.yaml").exists()
    assert not list(out.rglob("*.partial-*")) and not list(out.rglob("*.tmp"))  # no temporary file left behind
    with pytest.raises(InputError, match="write was interrupted"):
        Cohort.load(out)
    rep = validate_cohort(out)
    assert not rep.ok and "write was interrupted" in rep.errors[0].message
    src.save(out)  # the rerun
    _same_cohort(out, ref)


def test_declared_file_deleted_is_refused_by_load_and_validate(toy):
    (toy / "text.csv").unlink()
    rep = validate_cohort(toy)
    assert [e.message for e in rep.errors] == ["1 file(s) that cohort.yaml declares are missing: 'text.csv'"]
    with pytest.raises(InputError, match="cohort.yaml declares are missing: 'text.csv'"):
        Cohort.load(toy)


_SLOW_SIM = textwrap.dedent(
    """
    import sys, time
    import modaltune.data.bags as bags
    real = bags.write_bag_h5
    def slow(*a, **k):
        time.sleep(0.05)
        return real(*a, **k)
    bags.write_bag_h5 = slow
    from modaltune.data.simulate import simulate_cohort
    simulate_cohort(sys.argv[1], preset="tiny", seed=3, n_folds=2)
    """
)


@pytest.mark.timeout(300)
def test_sigkill_during_simulate_then_rerun_equals_the_uninterrupted_run(tmp_path):
    from modaltune.data.simulate import simulate_cohort
    from modaltune.training.sources import resolve_cohort_paths

    work = tmp_path / "run"
    target = work / "cohorts" / "sim"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SIM, str(target)], env={**os.environ, "PYTHONPATH": SRC})
    t0 = time.time()
    while time.time() - t0 < 120:
        staged = list(target.parent.glob(".sim.partial-*/slides/*.h5")) if target.parent.exists() else []
        if len(staged) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the simulation ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (target / "cohort.yaml").exists()  # nothing at the target looks like a finished cohort
    assert list(target.parent.glob(".sim.partial-*"))  # kill -9 runs no cleanup ...
    cfg = SimpleNamespace(cohorts=[], simulate=[SimpleNamespace(name="sim", preset="tiny", seed=3, options={"n_folds": 2})])
    [path] = resolve_cohort_paths(cfg, work)  # the benchmark's simulate step, rerun
    assert path == target and not list(target.parent.glob(".sim.partial-*"))  # ... the rerun clears the stale folder
    ref = simulate_cohort(tmp_path / "ref", preset="tiny", seed=3, name="sim", n_folds=2).root
    _same_cohort(target, ref)
    assert validate_cohort(target).ok


def test_over_the_read_budget_bags_are_checked_from_headers_and_nan_is_caught_on_read(toy, monkeypatch):
    """``check_bags="auto"`` (the training gate) reads every bag up to $MODALTUNE_VALIDATE_READ_BYTES;
    above it, header checks still refuse an int bag, and a NaN bag fails when training reads it."""
    from modaltune.data.bags import load_patient_bag
    from modaltune.data.validate import check_trainable

    nan = np.zeros((3, D), np.float16)
    nan[1, 1] = np.nan
    with h5py.File(toy / "bags/P05_0.h5", "w") as h:
        h["features"], h["coords"] = nan, np.zeros((3, 2), np.int64)
    assert "features contain NaN/inf" in validate_cohort(toy, check_bags="auto").errors[0].message
    monkeypatch.setenv("MODALTUNE_VALIDATE_READ_BYTES", "100")
    rep = validate_cohort(toy, check_bags="auto")
    assert rep.ok and any("checked from their headers only" in w.message for w in rep.warnings)
    cohort = Cohort.load(toy)
    check_trainable(cohort)  # headers are fine
    with pytest.raises(InputError, match="features contain NaN/inf"):
        load_patient_bag(cohort.slide_paths("P05"))
    with h5py.File(toy / "bags/P06_0.h5", "w") as h:
        h["features"], h["coords"] = np.ones((3, D), np.int64), np.zeros((3, 2), np.int64)
    assert "integer/bool dtype" in validate_cohort(toy, check_bags="header").errors[0].message


def test_import_into_an_interrupted_cohort_folder_needs_overwrite_then_clears_it(tmp_path):
    from modaltune.data.sources.porpoise import prepare_out_dir

    out = tmp_path / "imp"
    (out / "features").mkdir(parents=True)
    (out / "features/a.h5").write_bytes(b"x")
    (out / "patients.csv").write_text("patient_id\nP0\n")  # a save killed before cohort.yaml
    with pytest.raises(InputError, match="interrupted cohort write"):
        prepare_out_dir(out)
    prepare_out_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["features"] and (out / "features/a.h5").exists()
