"""MCAT and MOTCat: official parameter counts and key layout, missing modalities, padding, the engine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from modaltune.data.cohort import TaskSpec
from modaltune.data.dataset import CohortInfo, TaskInfo
from modaltune.methods import build_method
from modaltune.methods._coattn import load_official_state_dict
from modaltune.testing.batches import make_batch, make_info

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_SIZES = [100, 200, 300, 400, 500, 600]  # MCAT_Surv / MOTCAT_Surv default omic_sizes


def _sig_csv(tmp_path, groups: dict[str, list[str]]) -> str:
    n = max(len(v) for v in groups.values())
    p = tmp_path / "signatures.csv"
    pd.DataFrame({k: list(v) + [None] * (n - len(v)) for k, v in groups.items()}).to_csv(p, index=False)
    return str(p)


def _official_setup(tmp_path):
    """1024-d patch features, one RNA block whose genes make six groups of the official default sizes,
    and one survival task with 4 bins (official n_classes = 4)."""
    genes = [f"G{i}" for i in range(sum(OFFICIAL_SIZES))]
    groups, start = {}, 0
    for k, n in enumerate(OFFICIAL_SIZES):
        groups[f"group{k}"] = genes[start:start + n]
        start += n
    spec = TaskSpec(name="os", kind="survival", time_column="t", event_column="e")
    info = CohortInfo(slide_dim=1024, slide_modality="slide", omics_dims={"rna": len(genes)}, omics_feature_names={"rna": genes},
                      pathways=None, clinical_dim=0, clinical_feature_names=[], text=False,
                      tasks=[TaskInfo(spec, 4, ["b0", "b1", "b2", "b3"], np.array([0.0, 1.0, 2.0, 3.0, 4.0]), {})],
                      modalities=["slide", "rna"], sites=["s0"])
    return info, _sig_csv(tmp_path, groups)


def _n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


# Official MCAT_Surv(fusion='concat', small sizes, n_classes=4), layer by layer (weights + biases):
#   wsi_net       Linear(1024, 256)                              1024*256 + 256             =   262,400
#   sig_networks  per group Linear(s, 256) + Linear(256, 256)    256*sum(s) + 6*256 + 6*65,792 = 256*2100 + 396,288 = 933,888
#   coattn        in_proj 768x256 + 768, out_proj 256x256 + 256                             =   263,168
#   2 transformers x 2 layers: self-attn 263,168 + linear1 131,584 + linear2 131,328 + 2 LayerNorms 1,024
#                 = 527,104 per layer                                                  x 4  = 2,108,416
#   2 gated attention heads: 2 * (65,792 + 65,792 + 257)                                    =   263,682
#   2 rho         2 * 65,792                                                                =   131,584
#   mm (concat)   Linear(512, 256) 131,328 + Linear(256, 256) 65,792                        =   197,120
#   classifier    Linear(256, 4)                                                            =     1,028
#   total                                                                                   = 4,161,286
# bilinear instead of concat: BilinearFusion(256, 256, scale 8, mmhid 256) =
#   2 * (Linear(256, 32) 8,224 + Linear(512, 32) 16,416 + Linear(32, 32) 1,056)
#   + encoder1 Linear(33*33, 256) 279,040 + encoder2 Linear(256, 256) 65,792 = 396,224  -> total 4,360,390
# MOTCat: the same without coattn (OT has no parameters): 4,161,286 - 263,168 = 3,898,118.
@pytest.mark.parametrize("name,fusion,expected", [("mcat", "concat", 4_161_286), ("mcat", "bilinear", 4_360_390),
                                                  ("motcat", "concat", 3_898_118), ("motcat", "bilinear", 4_097_222)])
def test_parameter_count_equals_the_official_model(tmp_path, name, fusion, expected):
    info, sig = _official_setup(tmp_path)
    m = build_method(name, info, signatures=sig, fusion=fusion)
    assert m.encoder.groups.sizes == OFFICIAL_SIZES
    assert _n_params(m) == expected


@pytest.mark.parametrize("name", ["mcat", "motcat"])
def test_official_state_dict_loads_strictly(tmp_path, name):
    doc = json.loads((FIXTURES / f"{name}_official_keys.json").read_text())
    assert doc["n_params"] == sum(int(np.prod(s)) for s in doc["keys"].values())
    info, sig = _official_setup(tmp_path)
    m = build_method(name, info, signatures=sig)
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(*shape, generator=g) for k, shape in doc["keys"].items()}
    load_official_state_dict(m, sd)  # strict: raises on any missing / unexpected key or shape
    torch.testing.assert_close(m.heads["os"].net[0].weight, sd["classifier.weight"])
    torch.testing.assert_close(m.encoder.sig_networks[5][1][0].weight, sd["sig_networks.5.1.0.weight"])
    # DataParallel checkpoints (official relocate()) carry "module." inside the names
    load_official_state_dict(m, {k.replace("wsi_net.", "wsi_net.module."): v for k, v in sd.items()})


def _toy(tmp_path):
    info = make_info(clinical=False, pathways=False)
    sig = _sig_csv(tmp_path, {"A": ["rna0", "rna1", "cnv0"], "B": ["rna2", "rna3"], "C": ["rna4", "cnv1", "cnv2"]})
    return info, sig


@pytest.mark.parametrize("name", ["mcat", "motcat"])
@pytest.mark.parametrize("fusion", ["concat", "bilinear"])
def test_missing_modalities_and_padding_do_not_leak(tmp_path, name, fusion):
    info, sig = _toy(tmp_path)
    torch.manual_seed(0)
    m = build_method(name, info, signatures=sig, fusion=fusion).eval()
    b = make_batch(B=4, n_max=6, info=info)
    b["modality_mask"]["slide"][1] = False
    for k in ("rna", "cnv"):
        b["modality_mask"][k][2] = False
    with torch.no_grad():
        out = m(b)["outputs"]["os"]
        b2 = make_batch(B=4, n_max=6, info=info, seed=5)  # other values everywhere ...
        b2["slide"]["mask"] = b["slide"]["mask"]
        b2["modality_mask"] = b["modality_mask"]
        for k in ("rna", "cnv"):  # ... but patient 1 keeps its omics, patient 2 its slide
            b2["omics"][k][1] = b["omics"][k][1]
        b2["slide"]["features"][2] = b["slide"]["features"][2]
        out2 = m(b2)["outputs"]["os"]
        # patient 1 has no slide: its patches are ignored; patient 2 has no omics: its values are ignored
        torch.testing.assert_close(out2[1], out[1])
        torch.testing.assert_close(out2[2], out[2])
        assert not torch.allclose(out2[0], out[0])  # a patient with both modalities does see the change
        # padding: extra padded patches change nothing
        b3 = {**b, "slide": {k: torch.cat([v, torch.randn_like(v[:, :3].float()).to(v.dtype) if k != "mask" else torch.zeros_like(v[:, :3])], 1)
                             for k, v in b["slide"].items()}}
        torch.testing.assert_close(m(b3)["outputs"]["os"], out, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all()


def test_mcat_without_signatures_is_a_config_error(tmp_path):
    from modaltune.errors import ConfigError

    with pytest.raises(ConfigError, match="signatures"):
        build_method("mcat", make_info(clinical=False, pathways=False))


@pytest.mark.parametrize("name", ["mcat", "motcat"])
def test_declares_slide_and_omics_as_required_and_refuses_a_slide_less_build(tmp_path, name):
    from modaltune.errors import ConfigError
    from modaltune.methods.registry import get_method

    assert get_method(name).requires == ("slide", "omics")  # config load refuses cohorts without them
    _, sig = _toy(tmp_path)
    with pytest.raises(ConfigError, match="need a slide modality"):
        build_method(name, make_info(slide=False, clinical=False, pathways=False), signatures=sig)


# ---------------------------------------------------------------------------------------- engine
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import builtin_pathways, simulate_cohort
    from modaltune.data.splits import SplitSet

    out = tmp_path_factory.mktemp("cohorts") / "tiny_coattn"
    simulate_cohort(out, preset="tiny", seed=1, n_patients=30, patches=(8, 24), slides_per_patient=(1, 1), n_folds=3,
                    missing_rates={"slide": 0.2, "rna": 0.2})
    pw = builtin_pathways()
    groups = {c: [str(g) for g in pw.index[pw[c] != 0]] for c in list(pw.columns)[:6]}
    groups[next(iter(groups))].append("NOT_A_GENE")  # partial coverage is reported, not an error
    sig = _sig_csv(out, groups)
    return Cohort.load(out), SplitSet.load(out / "splits" / "kfold3.csv").folds[0], sig


@pytest.mark.parametrize("name,params", [("mcat", {}), ("motcat", {"bs_micro": 8})])
def test_trains_and_predicts_every_patient_through_the_engine(sim, tmp_path, name, params):
    from modaltune.training.trainer import fit, predict

    cohort, fold, sig = sim
    fast = {"max_epochs": 1, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 4}
    fitted = fit(cohort, fold, name, params={"signatures": sig, **params}, trainer=fast, out_dir=tmp_path / "run")
    ids = list(fold.test)
    pred = predict(fitted, cohort, ids)
    assert sorted(pred["patient_id"].unique()) == sorted(ids)
    assert np.isfinite(pred.loc[pred["task"] == "survival", "risk"].to_numpy(float)).all()
    assert (~cohort.availability().loc[ids]).to_numpy().any()  # some test patients lack a slide or RNA
    cov = pd.read_csv(tmp_path / "run" / "signature_coverage.csv", index_col=0)
    assert len(cov) == 6 and cov["n_expected"].iloc[0] == cov["n_found"].iloc[0] + 1
