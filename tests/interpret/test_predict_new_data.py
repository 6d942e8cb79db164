"""predict on new data: feature files without a cohort directory, and the encoder / dimension checks."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modaltune.errors import InputError
from modaltune.training import predict
from modaltune.training.new_data import predict_features, predict_slides


def _write_bag(path, dim, encoder, n=6):
    from modaltune.preprocess.h5writer import BagWriter

    coords = np.stack([np.arange(n) * 256, np.zeros(n)], 1).astype(np.int64)
    with BagWriter(path, embedding_dim=dim, coords_attrs={"patch_size": 256, "patch_size_level0": 256}, encoder=encoder, mpp=0.5, n_rows=n) as w:
        w.append(np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32), coords)
        w.commit()
    return path


def test_fitted_json_records_the_slide_features(fitted_models):
    meta = json.loads((fitted_models["abmil"].path / "fitted.json").read_text())
    rec = meta["slide_features"]
    assert rec["modality"] == "slide" and rec["encoder"] == "simulated" and rec["feature_dim"] == 16 and rec["patch_size_level0"] == 256
    assert fitted_models["abmil"].slide_features == rec


@pytest.mark.parametrize("name", ["abmil", "late_fusion"])
def test_features_folder_predicts_like_the_cohort(tiny_cohort, fitted_models, name):
    """One row per file x task; with the omics / clinical tables the rows equal the cohort's predictions."""
    fm = fitted_models[name]
    feats = tiny_cohort.root / "slides"
    extra = {"omics": {"rna": tiny_cohort.root / "omics" / "rna.parquet"}, "clinical": tiny_cohort.root / "clinical.csv"} if name == "late_fusion" else {}
    new = predict_features(fm, feats, **extra)
    files = sorted(p.stem for p in feats.glob("*.h5"))
    assert sorted(new["patient_id"].unique()) == files and len(new) == len(files) * len(fm.tasks)
    slides = tiny_cohort.slides.assign(stem=[p.rsplit("/", 1)[-1][:-3] for p in tiny_cohort.slides["path"]])
    ref = predict(fm, tiny_cohort, list(slides["patient_id"]), with_targets=False)
    ref["patient_id"] = ref["patient_id"].map(dict(zip(slides["patient_id"], slides["stem"])))
    m = new.merge(ref, on=["patient_id", "task"], suffixes=("", "_ref"))
    assert len(m) == len(new)
    for col in ("risk", "prob_A"):
        np.testing.assert_allclose(m[col].dropna(), m[col + "_ref"].dropna(), rtol=1e-5, atol=1e-6)


def test_mismatched_features_are_refused_in_one_line(tiny_cohort, fitted_models, tmp_path, capsys):
    from modaltune.cli import main

    fm = fitted_models["abmil"]
    wide = _write_bag(tmp_path / "wide" / "s1.h5", 32, "simulated")
    with pytest.raises(InputError, match=r"features are 32-d \(encoder 'simulated'\) but the model was trained on 16-d features of encoder 'simulated'"):
        predict_features(fm, wide.parent)
    other = _write_bag(tmp_path / "other" / "s2.h5", 16, "uni_v1")
    with pytest.raises(InputError, match="features come from encoder 'uni_v1' but the model was trained on encoder 'simulated' features"):
        predict_features(fm, other)
    assert main(["predict", str(fm.path), "--features", str(wide.parent), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "32-d" in err and "s1.h5" in err and "--encoder simulated" in err
    with pytest.raises(InputError, match="which `modaltune extract` cannot make"):
        predict_slides(fm, tmp_path, tmp_path / "work")
    assert main(["predict", str(fm.path), str(tiny_cohort.root), "--features", str(wide.parent), "--out", str(tmp_path / "p.csv")]) == 2
    assert "exactly one of COHORT_DIR, --features, --slides" in capsys.readouterr().err


def test_cli_features_writes_one_row_per_file(fitted_models, tiny_cohort, tmp_path):
    from modaltune.cli import main

    fm = fitted_models["transmil"]
    one = min((tiny_cohort.root / "slides").glob("*.h5"))
    assert main(["predict", str(fm.path), "--features", str(one), "--out", str(tmp_path / "p.csv")]) == 0
    p = pd.read_csv(tmp_path / "p.csv")
    assert p["patient_id"].tolist() == [one.stem] * 2 and set(p["task"]) == {"subtype", "survival"}
    assert np.isfinite(p["risk"].dropna()).all() and p["prob_A"].dropna().between(0, 1).all()
