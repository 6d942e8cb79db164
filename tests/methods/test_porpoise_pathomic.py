"""PORPOISE and Pathomic Fusion: official parameter counts and key layouts, the shared gated Kronecker
fusion (known answers, missing-branch dropping), padding invariance, and training through the engine."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modaltune.layers.kronecker_fusion import GatedKroneckerFusion
from modaltune.methods import build_method
from modaltune.methods.registry import get_method
from modaltune.testing.batches import make_batch, make_info

FIX = Path(__file__).parent / "fixtures"


def _official(name: str) -> dict:
    return json.loads((FIX / f"{name}_official_keys.json").read_text())


def _info(slide_dim: int, rna_dim: int):
    """Survival-only cohort info with one omics block (the official single genomic vector)."""
    info = make_info(omics=("rna",), clinical=False, pathways=False, tasks=("os",))
    return dataclasses.replace(info, slide_dim=slide_dim, omics_dims={"rna": rna_dim}, omics_feature_names={"rna": [f"g{i}" for i in range(rna_dim)]})


def test_porpoise_parameter_count_equals_official():
    # PorpoiseMMF(omic_input_dim=2181 [TCGA-BLCA], path_input_dim=1024, fusion='bilinear', n_classes=4), defaults otherwise:
    #   attention_net.1 Linear(1024,512)      1024*512+512 = 524,800
    #   attention_a.0 / attention_b.0         2 * (512*256+256) = 262,656
    #   attention_c Linear(256,1)             257
    #   rho.0 Linear(512,256)                 131,328
    #   fc_omic.0.0 Linear(2181,256)          2181*256+256 = 558,592
    #   fc_omic.1.0 Linear(256,256)           65,792
    #   mm.linear_{h,z,o}{1,2} (256->32, 512->32, 32->32)   2 * (8,224 + 16,416 + 1,056) = 51,392
    #   mm.encoder1.0 Linear(33*33=1089,256)  279,040
    #   mm.encoder2.0 Linear(256+512,256)     196,864   (skip=True concatenates both 256-d inputs)
    #   classifier_mm Linear(256,4)           1,028
    #   total                                 2,071,749
    m = build_method("porpoise", _info(1024, 2181))
    assert sum(p.numel() for p in m.parameters()) == 2_071_749
    assert sum(int(np.prod(s)) for s in _official("porpoise")["keys"].values()) == 2_071_749


def test_pathomic_fusion_parameter_count_equals_official_plus_histology_branch():
    # PathomicNet (networks.py), published survival command: input_size_omic 320, path_dim = omic_dim = 32, mmhid 64,
    # use_bilinear 1, path_gate 1, omic_gate 0, skip 0, label_dim 1 (Cox):
    #   omic_net.encoder: 320*64+64 + 64*48+48 + 48*32+32 + 32*32+32 = 20,544 + 3,120 + 1,568 + 1,056 = 26,288
    #   omic_net.classifier.0 Linear(32,1) 33; omic_net.output_range/shift 2
    #   fusion.linear_h{1,2}.0 Linear(32,32) 2 * 1,056; linear_z{1,2} Bilinear(32,32,32) 2 * (32*32*32+32) = 65,600;
    #   fusion.linear_o{1,2}.0 2 * 1,056                           -> 69,824
    #   fusion.encoder1.0 Linear(1089,64) 69,760; encoder2.0 Linear(64,64) 4,160
    #   classifier.0 Linear(64,1) 65; output_range/shift 2
    #   total 170,134
    # + modaltune's histology branch (the official one is a separately trained VGG19):
    #   path_net.attention_net Linear(1024,512) 524,800 + gates 262,913; rho Linear(512,32) 16,416 -> 804,129
    m = build_method("pathomic_fusion", _info(1024, 320), survival_head="cox")
    path = sum(p.numel() for n, p in m.named_parameters() if n.startswith("encoder.path_net."))
    rest = sum(p.numel() for n, p in m.named_parameters() if not n.startswith("encoder.path_net."))
    assert (rest, path) == (170_134, 804_129)
    assert sum(int(np.prod(s)) for s in _official("pathomic_fusion")["keys"].values()) == 170_134


@pytest.mark.parametrize("name,dims,kw", [("porpoise", (1024, 2181), {}), ("pathomic_fusion", (1024, 320), {"survival_head": "cox"})])
def test_official_state_dict_loads_strictly(name, dims, kw):
    import importlib

    mod = importlib.import_module(f"modaltune.methods.{name}")
    m = build_method(name, _info(*dims), **kw)
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(*s, generator=g) for k, s in _official(name)["keys"].items()}
    res = m.load_state_dict(mod.official_state_dict(m, official, "os"), strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    head_key = "classifier_mm.weight" if name == "porpoise" else "classifier.0.weight"
    assert torch.equal(m.heads["os"].net[0].weight, official[head_key])
    assert torch.equal(dict(m.named_parameters())["encoder.fc_omic.0.0.weight" if name == "porpoise" else "encoder.fusion.linear_z1.weight"],
                       official["fc_omic.0.0.weight" if name == "porpoise" else "fusion.linear_z1.weight"])


def test_kronecker_product_layout_matches_bmm_and_missing_branch_is_dropped():
    torch.manual_seed(0)
    f = GatedKroneckerFusion(6, 4, mmhid=5, gate1=True, gate2=False, use_bilinear=True, ungated="direct").eval()
    v1, v2 = torch.randn(3, 6), torch.randn(3, 4)
    # reference: the official form, torch.bmm of the [o; 1]-augmented embeddings
    o1 = f.linear_o1(torch.sigmoid(f.linear_z1(v1, v2)) * f.linear_h1(v1))
    o2 = f.linear_o2(v2)
    a1, a2 = torch.cat([o1, torch.ones(3, 1)], 1), torch.cat([o2, torch.ones(3, 1)], 1)
    ref = f.encoder2(f.encoder1(torch.bmm(a1.unsqueeze(2), a2.unsqueeze(1)).flatten(1)))
    torch.testing.assert_close(f(v1, v2), ref, rtol=1e-5, atol=1e-6)
    # modality 2 absent in row 1: its input (even NaN) is never read, and the fused vector is [o1(v1, 0); 1] (x) e_last
    p2 = torch.tensor([True, False, True])
    v2_nan = v2.clone()
    v2_nan[1] = float("nan")
    out = f(v1, v2_nan, None, p2)
    assert torch.isfinite(out).all()
    z = torch.zeros(1, 4)
    o1_alone = f.linear_o1(torch.sigmoid(f.linear_z1(v1[1:2], z)) * f.linear_h1(v1[1:2]))
    fused = torch.zeros(1, 7, 5)
    fused[:, :, -1] = torch.cat([o1_alone, torch.ones(1, 1)], 1)
    torch.testing.assert_close(out[1:2], f.encoder2(f.encoder1(fused.flatten(1))), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[[0, 2]], f(v1[[0, 2]], v2[[0, 2]]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["porpoise", "pathomic_fusion"])
def test_padding_and_absent_modality_inputs_do_not_change_the_output(name):
    info = make_info(clinical=False)
    torch.manual_seed(0)
    m = build_method(name, info).eval()
    b = make_batch(B=4, n_max=6, info=info)
    b["modality_mask"]["slide"][1] = False
    b["modality_mask"]["rna"][2] = False
    with torch.no_grad():
        ref = m(b)["embedding"]
        # garbage in the absent slide / RNA rows, and extra padded patches everywhere
        b2 = {**b, "omics": {k: v.clone() for k, v in b["omics"].items()}}
        feats = torch.cat([b["slide"]["features"], torch.randn(4, 5, info.slide_dim)], 1)
        feats[1] = 1e3
        b2["slide"] = {"features": feats, "coords": torch.zeros(4, 11, 2), "mask": torch.cat([b["slide"]["mask"], torch.zeros(4, 5, dtype=torch.bool)], 1)}
        b2["omics"]["rna"][2] = 1e3
        out = m(b2)["embedding"]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ref[1], ref[0])


def test_registered_with_required_modalities_and_listed():
    from modaltune.methods.registry import method_table

    for name in ("porpoise", "pathomic_fusion"):
        assert get_method(name).requires == ("slide", "omics")
        assert name in method_table()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import simulate_cohort
    from modaltune.data.splits import SplitSet

    out = tmp_path_factory.mktemp("cohorts") / "tiny_pp"
    simulate_cohort(out, preset="tiny", seed=1, n_patients=36, patches=(8, 24), slides_per_patient=(1, 1), n_folds=3,
                    missing_rates={"slide": 0.2, "rna": 0.2, "clinical": 0.1})
    cohort = Cohort.load(out)
    return cohort, SplitSet.load(out / "splits" / "kfold3.csv").folds[0]


@pytest.mark.parametrize("name,params", [("porpoise", {"path_hidden": 32, "attn_dim": 16, "omic_hidden": [16, 16], "scale_dim1": 4, "scale_dim2": 4}),
                                         ("pathomic_fusion", {"path_hidden": 32, "attn_dim": 16, "omic_hidden": [16], "path_dim": 8, "omic_dim": 8, "mmhid": 16})])
def test_fits_and_predicts_every_patient_with_missing_modalities(sim, name, params):
    from modaltune.training.trainer import fit, predict

    torch.set_num_threads(1)
    cohort, fold = sim
    ids = list(fold.test)
    fitted = fit(cohort, fold, name, params=params, trainer={"max_epochs": 1, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 4})
    pred = predict(fitted, cohort, ids)
    assert sorted(pred["patient_id"].unique()) == sorted(ids)
    surv = pred[pred["task"] == "survival"]
    assert np.isfinite(surv["risk"].to_numpy(float)).all()
    assert (~cohort.availability().loc[ids]).to_numpy().any()  # some test patients lack a slide or RNA
