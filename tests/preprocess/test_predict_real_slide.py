"""Issue 18 item 4 on the real CMU-1-Small-Region slide: `extract` -> h5 -> `predict --features` / `--slides`,
the encoder/dimension check, and `explain` drawing the heatmap over the slide thumbnail."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from modaltune.data.bags import read_bag
from modaltune.preprocess import extract_features
from modaltune.training import predict

FAST = {"batch_size": 16, "progress": False, "save_qc": False}
TILING = {"patch_size": 256, "patch_size_level0": 256, "target_magnification": 20.0}


def _train_cohort(root, dim, encoder, extra_bags=None):
    """8 patients with random ``dim``-d bags of ``encoder`` (same tiling as the CMU extraction) + ``extra_bags``."""
    from modaltune.data.cohort import Cohort, CohortManifest, ModalitySpec, TaskSpec
    from modaltune.preprocess.h5writer import BagWriter

    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        path = root / "features" / f"P{i}.h5"
        n = 6 + i
        coords = np.stack([np.arange(n) * 256, np.zeros(n)], 1).astype(np.int64)
        with BagWriter(path, embedding_dim=dim, coords_attrs=TILING, encoder=encoder, mpp=0.5, n_rows=n) as w:
            w.append(rng.normal(size=(n, dim)).astype(np.float32) + (i % 2), coords)
            w.commit()
        rows.append((f"P{i}", f"P{i}", f"features/P{i}.h5", "ab"[i % 2]))
    for pid, rel in (extra_bags or {}).items():
        rows.append((pid, pid, rel, "a"))
    manifest = CohortManifest(name="cmu_predict", sites=["CMU"],
                              tasks=[TaskSpec(name="subtype", kind="classification", label_column="subtype", classes=["a", "b"])],
                              modalities=[ModalitySpec(name="wsi", kind="slide", feature_dim=dim, encoder=encoder)])
    patients = pd.DataFrame({"patient_id": [r[0] for r in rows], "site": "CMU", "subtype": [r[3] for r in rows]})
    slides = pd.DataFrame([r[:3] for r in rows], columns=["patient_id", "slide_id", "path"])
    Cohort(manifest, patients, slides=slides).save(root)
    return Cohort.load(root)


def _fit(cohort, out):
    from modaltune.data.splits import Fold
    from modaltune.training import fit

    torch.manual_seed(0)
    tr = {"max_epochs": 1, "progress_bar": False, "logger": "none", "batch_size": 1}
    return fit(cohort, Fold(0, list(cohort.patient_ids)), "abmil", params={"embed_dim": 8, "attn_dim": 4}, trainer=tr, out_dir=out, progress=False)


@pytest.fixture(scope="module")
def cmu_h5(cmu_slide, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmu_predict")
    s = extract_features([cmu_slide], root / "features", encoder="efficientnet_lite0", magnification=20, patch_size=256, **FAST)
    assert s.done == 1
    return root / "features" / "cmu_small_region.h5"


def test_predict_features_and_slides_on_the_extracted_h5(cmu_slide, cmu_h5, tmp_path, capsys):
    from modaltune.cli import main

    root = cmu_h5.parent.parent
    cohort = _train_cohort(root, 1280, "efficientnet_lite0", {"P_cmu": "features/cmu_small_region.h5"})
    fm = _fit(cohort, tmp_path / "m")
    rec = json.loads((tmp_path / "m" / "model" / "fitted.json").read_text())["slide_features"]
    assert rec == {"modality": "wsi", "encoder": "efficientnet_lite0", "feature_dim": 1280, **TILING}
    assert main(["predict", str(fm.path), "--features", str(cmu_h5), "--out", str(tmp_path / "f.csv")]) == 0
    f = pd.read_csv(tmp_path / "f.csv")
    assert f["patient_id"].tolist() == ["cmu_small_region"] and f["task"].tolist() == ["subtype"]
    assert f[["prob_a", "prob_b"]].sum(axis=1).iloc[0] == pytest.approx(1.0, abs=1e-6)
    # the same slide through the cohort gives the same prediction
    ref = predict(fm, cohort, ["P_cmu"], with_targets=False)
    np.testing.assert_allclose(f["prob_a"], ref["prob_a"], rtol=1e-5)
    # --slides re-extracts with the recorded encoder and tiling: the same features, the same prediction
    assert main(["predict", str(fm.path), "--slides", str(cmu_slide), "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "s.csv")]) == 0
    s = pd.read_csv(tmp_path / "s.csv")
    np.testing.assert_allclose(read_bag(tmp_path / "work" / "features" / "cmu_small_region.h5").features, read_bag(cmu_h5).features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s["prob_a"], f["prob_a"], rtol=1e-4)

    # a model trained on other features refuses the h5 in one line
    other = _train_cohort(tmp_path / "other", 64, "uni_v1")
    fo = _fit(other, tmp_path / "mo")
    capsys.readouterr()
    assert main(["predict", str(fo.path), "--features", str(cmu_h5), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {cmu_h5}: features are 1280-d (encoder 'efficientnet_lite0') but the model was trained on 64-d features of encoder 'uni_v1'")
    assert "fix: extract the slides with --encoder uni_v1" in err
    assert len(err.splitlines()) == 1

    # explain draws the attention over the slide thumbnail at the patches' level-0 positions
    from PIL import Image

    from modaltune.interpret import explain_patients
    from modaltune.interpret.heatmap import patch_cells, slide_thumbnail

    out = tmp_path / "explain"
    idx = explain_patients(fm, cohort, ["P_cmu"], out, slides_dir=cmu_slide.parent, top_k=4)
    files = idx["patients"]["P_cmu"]["files"]
    assert "P_cmu/topk_abmil_cmu_small_region.png" in files and not idx["patients"]["P_cmu"]["skipped"]
    img = np.asarray(Image.open(out / "P_cmu" / "heatmap_abmil_cmu_small_region.png").convert("RGB")).astype(int)
    thumb, ds = slide_thumbnail(cmu_slide)
    assert img.shape == thumb.shape
    bag = read_bag(cmu_h5)
    cells = patch_cells(bag.coords, 256, ds)
    drawn = np.zeros(img.shape[:2], bool)
    for x0, y0, x1, y1 in cells:
        drawn[y0:y1, x0:x1] = True
    assert (img[~drawn] == thumb[~drawn]).all()  # the thumbnail is untouched outside the patches
    assert (np.abs(img[drawn] - thumb[drawn]).sum(-1) > 0).mean() > 0.95  # and tinted on them
