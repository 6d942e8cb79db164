"""explain: attention maps of ABMIL / TransMIL / late fusion, heatmaps placed at the h5 coords, files written."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from modaltune.data.bags import read_bag
from modaltune.interpret import explain_patients, patient_batch, slide_attention
from modaltune.interpret.heatmap import grid_cell_px
from modaltune.interpret.slide_attention import _fold_square


def _with_slide(cohort, n=2):
    have = set(cohort.slides["patient_id"])
    return [p for p in cohort.splits["kfold3"].folds[0].test if p in have][:n]


def test_fold_square_adds_repeated_tokens_back():
    # 5 patches -> 3 x 3 square: tokens 5..8 repeat patches 0..3
    w = torch.tensor([0.1, 0.2, 0.05, 0.05, 0.1, 0.1, 0.1, 0.2, 0.1])
    np.testing.assert_allclose(_fold_square(w, 5), [0.2, 0.3, 0.25, 0.15, 0.1], rtol=1e-6)


def test_abmil_map_is_the_pooling_softmax(tiny_cohort, fitted_models):
    from modaltune.encoders.slide.abmil import ABMILSlideEncoder

    fm = fitted_models["abmil"]
    pid = _with_slide(tiny_cohort, 1)[0]
    b = patient_batch(fm, tiny_cohort, [pid])
    (m,) = slide_attention(fm.model, b)
    enc = next(x for x in fm.model.modules() if isinstance(x, ABMILSlideEncoder))
    with torch.no_grad():
        ref = enc.attention(enc.embed(b["slide"]["features"].float()))[0].double().numpy()
    np.testing.assert_allclose(m.weights, ref, rtol=1e-5, atol=1e-9)
    bag = read_bag(tiny_cohort.slide_paths(pid)[0])
    np.testing.assert_array_equal(m.coords, bag.coords)  # weight j sits at the file's patch j
    assert m.source == "abmil" and m.patient_id == pid


@pytest.mark.parametrize("name,source", [("transmil", "transmil"), ("late_fusion", "abmil")])
def test_maps_are_distributions_over_the_bag(tiny_cohort, fitted_models, name, source):
    fm = fitted_models[name]
    ids = _with_slide(tiny_cohort, 2)
    maps = slide_attention(fm.model, patient_batch(fm, tiny_cohort, ids))
    assert [m.patient_id for m in maps] == ids and {m.source for m in maps} == {source}
    for m in maps:
        n = read_bag(tiny_cohort.slide_paths(m.patient_id)[0]).n_patches
        assert m.weights.shape == (n,) and (m.weights >= 0).all() and m.weights.sum() == pytest.approx(1.0, abs=1e-9)
        assert m.weights.std() > 0  # not a constant map


def test_transmil_map_matches_explicit_attention(tiny_cohort, fitted_models):
    """Recompute the CLS row of layer 2 by hand (softmax(q k^T / sqrt(d))) from the encoder's own tokens."""
    from modaltune.encoders.slide.transmil import TransMILSlideEncoder

    fm = fitted_models["transmil"]
    pid = _with_slide(tiny_cohort, 1)[0]
    b = patient_batch(fm, tiny_cohort, [pid])
    (m,) = slide_attention(fm.model, b)
    enc = next(x for x in fm.model.modules() if isinstance(x, TransMILSlideEncoder))
    with torch.no_grad():
        st = enc.embed(b["slide"]["features"].float())
        x = enc._run_layer(0, st)
        q, k, _ = enc.layer2.attn.split_heads(enc.layer2.norm(x))
        a = torch.softmax((q[0, :, :1] @ k[0].transpose(-1, -2))[:, 0] / q.shape[-1] ** 0.5, -1).mean(0)  # (T,)
    n = len(m.weights)
    s = int(np.ceil(np.sqrt(n)))
    sq = a[1 : 1 + s * s].double().numpy()
    want = np.zeros(n)
    for t, v in enumerate(sq):
        want[t if t < n else (t - n) % n] += v
    np.testing.assert_allclose(m.weights, want / want.sum(), rtol=1e-5)


def test_explain_writes_heatmaps_at_the_h5_coords(tiny_cohort, fitted_models, tmp_path):
    fm = fitted_models["late_fusion"]
    ids = _with_slide(tiny_cohort, 2)
    idx = explain_patients(fm, tiny_cohort, ids, tmp_path, task="survival", n_steps=8)
    assert json.loads((tmp_path / "explain.json").read_text()) == idx
    for pid in ids:
        h5 = tiny_cohort.slide_paths(pid)[0]
        bag = read_bag(h5)
        ps = int(bag.attrs["patch_size_level0"])
        img = np.asarray(Image.open(tmp_path / pid / f"heatmap_abmil_{h5.stem}.png").convert("RGB"))
        att = pd.read_csv(tmp_path / pid / f"attention_abmil_{h5.stem}.csv")
        np.testing.assert_array_equal(att[["x", "y"]].to_numpy(), bag.coords)
        # pixel box of patch j on the grid: coords / patch size * cell size (hand formula)
        g = grid_cell_px(bag.coords, ps)
        cells = np.concatenate([bag.coords * g // ps, bag.coords * g // ps + g], axis=1)
        assert img.shape[:2] == (cells[:, 3].max(), cells[:, 2].max()) and g > 4  # a readable cell size
        drawn = np.zeros(img.shape[:2], bool)
        for x0, y0, x1, y1 in cells:
            drawn[y0:y1, x0:x1] = True
        assert (img[~drawn] == 255).all() and not (img[drawn] == 255).all(-1).any()
        top = int(att["weight"].idxmax())
        x0, y0 = cells[top, :2]
        import matplotlib

        np.testing.assert_allclose(img[y0 + 1, x0 + 1], np.rint(np.asarray(matplotlib.colormaps["inferno"](1.0))[:3] * 255), atol=1)
        assert sorted(att["rank"]) == list(range(1, len(att) + 1)) and att.loc[top, "rank"] == 1
        assert f"{pid}/attributions_survival.csv" in idx["patients"][pid]["files"] or not bool(patient_batch(fm, tiny_cohort, [pid])["modality_mask"]["rna"][0])


def test_explain_refuses_unknown_patients_and_tasks(tiny_cohort, fitted_models, tmp_path):
    from modaltune.errors import InputError

    fm = fitted_models["abmil"]
    with pytest.raises(InputError, match="not in cohort"):
        explain_patients(fm, tiny_cohort, ["nobody"], tmp_path)
    with pytest.raises(InputError, match="unknown task 'grade'"):
        explain_patients(fm, tiny_cohort, _with_slide(tiny_cohort, 1), tmp_path, task="grade")


def test_explain_cli_fold(tiny_cohort, fitted_models, tmp_path, capsys):
    from modaltune.cli import main

    fm = fitted_models["abmil"]
    assert main(["explain", str(fm.path), "--cohort", str(tiny_cohort.root), "--fold", "0", "--out", str(tmp_path / "ex"), "--no-ig"]) == 0
    idx = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert sorted(idx["patients"]) == sorted(tiny_cohort.splits["kfold3"].folds[0].test) and idx["attention_sources"] == ["abmil"]
    assert main(["explain", str(fm.path), "--cohort", str(tiny_cohort.root), "--out", str(tmp_path / "ex2")]) == 2
    assert "give either --patients or --fold" in capsys.readouterr().err


def test_modaltune_task_token_map_and_pathway_tokens(tiny_cohort, tmp_path):
    """ModalTune: the heatmap CSV holds the last extractor's task-token row; pathway-token IG is written."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("captum")
    from modaltune.data.dataset import CohortPreprocessor
    from modaltune.interpret import attention_maps
    from modaltune.methods import build_method
    from modaltune.training import FittedModel
    from modaltune.training.experiment_config import MethodConfig, TrainerConfig

    small = {"pathways": "builtin", "gene_mixer": {"token_dim": 8, "n_blocks": 1, "channel_hidden": 8},
             "backbone_params": {"embed_dim": 32, "depth": 2, "num_heads": 2}, "attn_dim": 16, "heads": 2, "ffn_dim": 16, "out_dim": 16, "drop_path": 0.0}
    pp = CohortPreprocessor(tiny_cohort).fit(list(tiny_cohort.patient_ids))
    torch.manual_seed(0)
    net = build_method("modaltune", pp.info, **small).eval()
    fm = FittedModel(MethodConfig(name="modaltune", params=small), "torch", net, pp, ["subtype", "survival"], TrainerConfig())
    rna = set(tiny_cohort.omics["rna"].index)
    pid = next(p for p in _with_slide(tiny_cohort, 10) if p in rna)
    idx = explain_patients(fm, tiny_cohort, [pid], tmp_path, task="survival", n_steps=4)
    stem = tiny_cohort.slide_paths(pid)[0].stem
    assert idx["attention_sources"] == ["modaltune"]
    assert {f"{pid}/heatmap_modaltune_{stem}.png", f"{pid}/pathway_tokens_survival.csv", f"{pid}/attributions_survival.csv"} <= set(idx["patients"][pid]["files"])
    att = pd.read_csv(tmp_path / pid / f"attention_modaltune_{stem}.csv")
    ref = attention_maps(net, patient_batch(fm, tiny_cohort, [pid]), "survival")["extractor"][-1][0, 0].double().numpy()
    np.testing.assert_allclose(att["weight"], ref / ref.sum(), rtol=1e-5)
