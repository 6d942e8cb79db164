"""Nothing in a model or run folder is unpickled (issue 12, item 1).

Each attack plants a pickle whose ``__reduce__`` would create a marker file when unpickled, in the
places a model / run folder is read from: ``preprocessor.pkl`` / ``model.pkl`` of the old layout,
a torch pickle as ``model.pt`` or in place of a ``.safetensors`` file, a state JSON naming a
class outside the allow-list, and ``checkpoints/last.ckpt`` for resume. Every load must fail with
one line naming the file, and the marker must never appear. The round-trip test checks that every
registered method predicts the same after save + load.
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.errors import InputError
from modaltune.training._state import StateError, decode, encode
from modaltune.training.trainer import FORMAT_VERSION, FittedModel, embed, fit, predict

FAST = {"max_epochs": 1, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 4, "max_patches": 16}


class _Payload:
    """Unpickling this object calls ``open(marker, "w")``, i.e. creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _fold(cohort_dir: Path):
    return SplitSet.load(cohort_dir / "splits" / "kfold3.csv").folds[0]


@pytest.fixture(scope="module")
def saved(tiny_cohort_dir, tmp_path_factory):
    """{kind: saved model folder}: a torch (mean_pool) and a tabular (logistic) model."""
    torch.set_num_threads(1)
    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    root = tmp_path_factory.mktemp("saved")
    out = {}
    for kind, name in (("torch", "mean_pool"), ("tabular", "logistic")):
        fit(cohort, fold, name, trainer=FAST, out_dir=root / name, progress=False)
        out[kind] = root / name / "model"
    return out


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "PWNED"
    # the payload really runs when unpickled: the attacks below are live
    pickle.loads(pickle.dumps(_Payload(m))).close()
    assert m.exists()
    m.unlink()
    return m


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def _one_line_naming(exc: BaseException, name: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and name in msg, msg


def _old_layout(folder: Path, marker: Path, *, kind: str) -> None:
    """Turn ``folder`` into the format-1 layout (pickled preprocessor / model) with payloads."""
    for f in folder.glob("*.safetensors"):
        f.unlink()
    for f in ("preprocessor.json", "model.json"):
        (folder / f).unlink(missing_ok=True)
    meta = json.loads((folder / "fitted.json").read_text())
    meta["format_version"] = 1
    (folder / "fitted.json").write_text(json.dumps(meta))
    (folder / "preprocessor.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    if kind == "torch":
        torch.save({"w": _Payload(marker)}, folder / "model.pt")
    else:
        (folder / "model.pkl").write_bytes(pickle.dumps(_Payload(marker)))


# ---------------------------------------------------------------------------------------- model folder
@pytest.mark.parametrize("kind", ["torch", "tabular"])
def test_pickle_era_folder_is_refused_and_nothing_runs(saved, tmp_path, marker, kind):
    folder = _copy(saved[kind], tmp_path)
    _old_layout(folder, marker, kind=kind)
    with pytest.raises(InputError) as ei:
        FittedModel.load(folder)
    _one_line_naming(ei.value, "preprocessor.pkl")
    assert "older modaltune with pickle" in str(ei.value) and "re-fit" in str(ei.value)
    assert not marker.exists()


@pytest.mark.parametrize("planted", ["model.pkl", "preprocessor.pkl"])
def test_a_pkl_file_dropped_into_a_current_folder_is_refused(saved, tmp_path, marker, planted):
    folder = _copy(saved["tabular"], tmp_path)
    (folder / planted).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(InputError) as ei:
        FittedModel.load(folder)
    _one_line_naming(ei.value, planted)
    assert not marker.exists()


def test_format_1_without_pkl_files_is_refused(saved, tmp_path, marker):
    folder = _copy(saved["torch"], tmp_path)
    meta = json.loads((folder / "fitted.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 2
    meta["format_version"] = 1
    (folder / "fitted.json").write_text(json.dumps(meta))
    torch.save({"w": _Payload(marker)}, folder / "model.pt")
    with pytest.raises(InputError, match="format 1 was written by an older modaltune with pickle and must be re-fitted") as ei:
        FittedModel.load(folder)
    _one_line_naming(ei.value, "fitted.json")
    assert not marker.exists()


@pytest.mark.parametrize("kind,target", [("torch", "model.safetensors"), ("torch", "preprocessor.safetensors"), ("tabular", "model.safetensors")])
def test_a_torch_pickle_in_place_of_a_safetensors_file_is_refused(saved, tmp_path, marker, kind, target):
    folder = _copy(saved[kind], tmp_path)
    torch.save({"w": _Payload(marker)}, folder / target)
    with pytest.raises(InputError) as ei:
        FittedModel.load(folder)
    _one_line_naming(ei.value, target.split(".")[0])
    assert not marker.exists()


@pytest.mark.parametrize("bad", [
    {"__object__": "os.system", "state": {}},                       # a class outside the allow-list
    {"__object__": "OmicsScaler", "state": {"__reduce__": "x"}},    # an unknown tag inside a state
    {"__array__": "a999999"},                                       # an array the file does not hold
    {"__dtype__": "load"},                                          # torch.load is no dtype
])
def test_state_json_naming_anything_else_is_refused(saved, tmp_path, bad):
    folder = _copy(saved["tabular"], tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    doc["state"]["state"]["features"] = bad
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(InputError) as ei:
        FittedModel.load(folder)
    _one_line_naming(ei.value, "model.json")


def test_cli_predict_on_a_planted_folder_prints_one_line_and_runs_nothing(saved, tiny_cohort_dir, tmp_path, marker, capsys):
    from modaltune.cli import main

    folder = _copy(saved["tabular"], tmp_path)
    _old_layout(folder, marker, kind="tabular")
    rc = main(["predict", str(folder), str(tiny_cohort_dir), "--out", str(tmp_path / "p.csv")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and "preprocessor.pkl" in err[0], err
    assert not marker.exists() and not (tmp_path / "p.csv").exists()


# ---------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_planted_last_ckpt_is_refused_on_resume(tiny_cohort_dir, tmp_path, marker, how):
    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    ck = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ck.parent.mkdir(parents=True)
    payload = {"state_dict": {}, "epoch": 0, "loops": _Payload(marker)}
    torch.save(payload, ck) if how == "torch.save" else ck.write_bytes(pickle.dumps(payload))
    with pytest.raises(InputError) as ei:
        fit(cohort, fold, "mean_pool", trainer={**FAST, "checkpoint": True}, out_dir=tmp_path / "run", progress=False)
    _one_line_naming(ei.value, "last.ckpt")
    assert "--no-resume" in str(ei.value)
    assert not marker.exists() and not (tmp_path / "run" / "model").exists()


def test_cli_fit_resume_from_a_planted_checkpoint_prints_one_line(tiny_cohort_dir, tmp_path, marker, capsys):
    import yaml

    from modaltune.cli import main

    cfg = {"name": "f", "data": {"cohorts": [str(tiny_cohort_dir)]}, "split": {"file": "kfold3"}, "fold": 0,
           "method": {"name": "mean_pool"}, "trainer": {**FAST, "checkpoint": True}}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(cfg))
    ck = tmp_path / "m" / "checkpoints" / "last.ckpt"
    ck.parent.mkdir(parents=True)
    torch.save({"epoch": _Payload(marker)}, ck)
    rc = main(["fit", str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "m")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and ln.startswith("error:")]
    assert rc == 2 and len(err) == 1 and "last.ckpt" in err[0], err
    assert not marker.exists()


def test_a_genuine_checkpoint_passes_the_weights_only_check(tiny_cohort_dir, tmp_path):
    """The engine's own last.ckpt holds tensors and plain data only, so resume keeps working."""
    from modaltune.training.trainer import check_checkpoint

    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    fit(cohort, fold, "mean_pool", trainer={**FAST, "checkpoint": True}, out_dir=tmp_path / "run", progress=False)
    ck = tmp_path / "run" / "checkpoints" / "last.ckpt"
    check_checkpoint(ck)  # no error
    assert torch.load(ck, map_location="cpu", weights_only=True)["epoch"] == 0


# ---------------------------------------------------------------------------------------- round trip
SMALL = {
    "abmil": {"embed_dim": 16, "attn_dim": 8},
    "clinical_mlp": {"hidden": [8]},
    "coxnet": {"use_pca": True, "n_components": 4, "min_events": 2},
    "gene_mixer": {"token_dim": 8, "n_blocks": 1, "channel_hidden": 8},
    "late_fusion": {"slide_params": {"embed_dim": 16}, "omics_params": {"hidden": [16]}, "fusion_dim": 16},
    "logistic": {"C": "cv", "class_weight": "balanced"},
    "mean_pool": {"hidden": 8},
    "mm_lego": {"modality": "rna", "encoder_params": {"hidden": [16]}, "latent_channels": 4, "latent_dim": 8, "heads": 2},
    "modaltune": {"pathways": "builtin", "gene_mixer": {"token_dim": 8, "n_blocks": 1, "channel_hidden": 8},
                  "backbone_params": {"embed_dim": 16, "depth": 1, "num_heads": 2}, "attn_dim": 8, "heads": 2, "ffn_dim": 8, "out_dim": 16},
    "omics_mlp": {"hidden": [16]},
    "pathomic_fusion": {"path_dim": 8, "omic_dim": 8, "mmhid": 8},
    "porpoise": {"path_hidden": 16, "attn_dim": 16, "omic_hidden": [16, 16]},
    "slide_fm": {"backbone_params": {"embed_dim": 16, "depth": 1, "num_heads": 2}, "tune": True},
    "snn": {"hidden": [16, 16]},
    "survpath": {"wsi_projection_dim": 16},
    "transmil": {"embed_dim": 16, "num_heads": 2},
    "coxnet_ridge": {"penalty": "ridge", "min_events": 2},
    "mcat": {"fusion": "bilinear"},  # + signatures: six groups of the simulator's genes (below)
    "motcat": {"bs_micro": 16},
    "cmta": {"fusion": "bilinear", "align_weight": 1.0},  # + signatures, as mcat
    "embedding_fusion": {"fusion": "late", "head": "linear"},
    "dispro": {"n_ctx": 2, "dim": 8, "omics_hidden": [8], "topj": 3},  # stage unipro; stage multipro: tests/training/test_dispro.py
    "pretrained_probe": {},  # + checkpoint: a 1-epoch `modaltune pretrain` of the same fold (below)
}


def _pretrained(cohort_dir: Path, folder: Path) -> str:
    """A tiny Symile pretraining on fold 0's training patients of the kfold3 split; its output folder."""
    from modaltune.pretrain.config import PretrainConfig
    from modaltune.pretrain.run import pretrain

    mods = [m.name for m in Cohort.load(cohort_dir).modalities if m.kind in ("slide", "omics", "clinical")]
    cfg = PretrainConfig.model_validate({"cohort": str(cohort_dir), "split": {"file": "kfold3"}, "fold": 0, "modalities": mods,
                                         "trainer": {"epochs": 1, "batch_size": 8}, "encoder": {"embed_dim": 4, "hidden": 8, "max_patches": 16}})
    pretrain(cfg, folder / "pretrained")
    return str(folder / "pretrained")


def _sim_signatures(folder) -> str:
    """Six signature groups made of the simulator's pathway genes (MCAT/MOTCat/CMTA need a signature file)."""
    from modaltune.data.simulate import builtin_pathways

    pw = builtin_pathways()
    groups = {c: [str(g) for g in pw.index[pw[c] != 0]] for c in list(pw.columns)[:6]}
    n = max(map(len, groups.values()))
    path = folder / "signatures.csv"
    pd.DataFrame({k: v + [None] * (n - len(v)) for k, v in groups.items()}).to_csv(path, index=False)
    return str(path)


def test_every_registered_method_has_a_round_trip_case():
    from modaltune.methods.registry import list_methods

    assert set(list_methods()) <= set(SMALL)


@pytest.mark.parametrize("case", sorted(SMALL))
def test_predictions_after_load_equal_predictions_before_save(tiny_cohort_dir, tmp_path, case):
    name = case.split("_ridge")[0]
    if name in ("modaltune", "dispro"):
        pytest.importorskip("sentence_transformers")
    torch.set_num_threads(1)
    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    data = None
    if name in ("gene_mixer", "survpath"):
        from importlib import resources

        data = {"cohorts": [str(tiny_cohort_dir)], "pathways": {"rna": str(resources.files("modaltune") / "resources" / "sim_pathways.csv")}}
    params = {**SMALL[case], "signatures": _sim_signatures(tmp_path)} if name in ("mcat", "motcat", "cmta") else SMALL[case]
    if name == "pretrained_probe":
        params = {"checkpoint": _pretrained(tiny_cohort_dir, tmp_path)}
    fitted = fit(cohort, fold, name, params=params, trainer=FAST, data=data, out_dir=tmp_path / "run", progress=False)
    before = predict(fitted, cohort, fold.test)
    files = sorted(p.name for p in (tmp_path / "run" / "model").iterdir())
    assert not [f for f in files if f.endswith((".pkl", ".pt", ".pth"))], files
    loaded = FittedModel.load(tmp_path / "run" / "model")
    after = predict(loaded, Cohort.load(tiny_cohort_dir), fold.test)  # a freshly read cohort: nothing shared
    cols = [c for c in before.columns if c.startswith(("prob_", "surv_", "risk", "prediction"))]
    assert cols and list(after["patient_id"]) == list(before["patient_id"])
    # torch heads run in float32: a 1e-5 tolerance is far below any difference between two models
    np.testing.assert_allclose(after[cols].to_numpy(float), before[cols].to_numpy(float), rtol=1e-5, atol=1e-6)
    if fitted.kind == "tabular":
        np.testing.assert_allclose(embed(loaded, cohort, fold.test).to_numpy(), embed(fitted, cohort, fold.test).to_numpy(), rtol=1e-12, atol=1e-12)
    assert loaded.info.task("survival").bin_edges == pytest.approx(fitted.info.task("survival").bin_edges)


# ---------------------------------------------------------------------------------------- the codec
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.floats(allow_nan=False), st.text(max_size=5),
                  st.builds(lambda n, dt: np.arange(n).astype(dt), st.integers(0, 4), st.sampled_from(["float32", "float64", "int64", "bool"])))
_tree = st.recursive(_leaf, lambda c: st.one_of(st.lists(c, max_size=3), st.tuples(c, c),
                                                st.dictionaries(st.one_of(st.text(max_size=4), st.integers(), st.floats(allow_nan=False)), c, max_size=3)), max_leaves=12)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None)
@given(_tree)
def test_codec_round_trips_through_json(obj):
    from safetensors.numpy import load, save

    tree, arrays = encode(obj)
    back = decode(json.loads(json.dumps(tree)), load(save(arrays)))  # through the two file formats
    assert _same(obj, back)


def test_codec_refuses_what_it_does_not_know():
    with pytest.raises(TypeError, match="allow-list"):
        encode(_Payload(Path("x")))
    with pytest.raises(TypeError, match="dtype object"):
        encode(np.array([object()]))
    with pytest.raises(StateError, match="not one modaltune rebuilds"):
        decode({"__object__": "builtins.eval", "state": {}}, {})
    with pytest.raises(StateError, match="unknown tag"):
        decode({"__class__": "x"}, {})
