"""CMTA: official parameter count and key layout, the Nystrom layer, the alignment loss reaching the
engine, missing modalities, padding and batch independence, fit/predict through the engine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.cohort import TaskSpec
from modaltune.data.dataset import CohortInfo, TaskInfo
from modaltune.layers import nystrom
from modaltune.layers.nystrom import NystromAttention, moore_penrose_pinv, nystrom_reference
from modaltune.methods import build_method
from modaltune.methods._coattn import load_official_state_dict
from modaltune.testing.batches import make_batch, make_info

FIXTURE = Path(__file__).parent / "fixtures" / "cmta_official_keys.json"
OFFICIAL_SIZES = [100, 200, 300, 400, 500, 600]  # CMTA default omic_sizes


def _sig_csv(folder, groups: dict[str, list[str]]) -> str:
    n = max(len(v) for v in groups.values())
    p = Path(folder) / "signatures.csv"
    pd.DataFrame({k: list(v) + [None] * (n - len(v)) for k, v in groups.items()}).to_csv(p, index=False)
    return str(p)


def _official_setup(tmp_path):
    """1024-d patch features, six signature groups of the official default sizes, 4 survival bins."""
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


# Official CMTA(omic_sizes=[100..600], n_classes=4, fusion="concat", model_size="small"), weights + biases:
#   pathomics_fc  Linear(1024, 256) 262,400 + Linear(256, 256) 65,792                        =   328,192
#   genomics_fc   per group SNN_Block(s, 1024) + SNN_Block(1024, 256):
#                 1024 * 2100 + 6 * 1024 + 6 * (1024 * 256 + 256)                            = 3,730,944
#   TransLayer    LayerNorm 512 + to_qkv 256 * 768 (no bias) 196,608 + to_out 65,792
#                 + res_conv 8 * 33 (depth-wise, no bias) 264                                 =   263,176
#   PPEG          (49 + 1) * 256 + (25 + 1) * 256 + (9 + 1) * 256                            =    22,016
#   Transformer_P cls 256 + PPEG 22,016 + 2 TransLayers 526,352 + LayerNorm 512               =   549,136  x 2 (encoder, decoder)
#   Transformer_G cls 256 + 2 TransLayers 526,352 + LayerNorm 512                             =   527,120  x 2
#   P_in_G_Att, G_in_P_Att  2 * (768 * 256 + 768 + 256 * 256 + 256)                           =   526,336
#   mm (concat)   Linear(512, 256) 131,328 + Linear(256, 256) 65,792                         =   197,120
#   classifier    Linear(256, 4)                                                              =     1,028
#   total  328,192 + 3,730,944 + 1,098,272 + 1,054,240 + 526,336 + 197,120 + 1,028            = 6,936,132
# bilinear: BilinearFusion(256, 256, scale 8, mmhid 256) = 396,224 instead of 197,120        -> 7,135,236
@pytest.mark.parametrize("fusion,expected", [("concat", 6_936_132), ("bilinear", 7_135_236)])
def test_parameter_count_equals_the_official_model(tmp_path, fusion, expected):
    info, sig = _official_setup(tmp_path)
    m = build_method("cmta", info, signatures=sig, fusion=fusion)
    assert m.encoder.groups.sizes == OFFICIAL_SIZES
    assert sum(p.numel() for p in m.parameters()) == expected


def test_official_state_dict_loads_strictly(tmp_path):
    doc = json.loads(FIXTURE.read_text())
    assert doc["n_params"] == sum(int(np.prod(s)) for s in doc["keys"].values()) == 6_936_132
    info, sig = _official_setup(tmp_path)
    m = build_method("cmta", info, signatures=sig)
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(*shape, generator=g) for k, shape in doc["keys"].items()}
    load_official_state_dict(m, sd)  # strict: raises on any missing / unexpected key or shape
    torch.testing.assert_close(m.heads["os"].net[0].weight, sd["classifier.weight"])
    torch.testing.assert_close(m.encoder.genomics_decoder.layer2.attn.res_conv.weight, sd["genomics_decoder.layer2.attn.res_conv.weight"])
    torch.testing.assert_close(m.encoder.genomics_fc[3][0][0].weight, sd["genomics_fc.3.0.0.weight"])


# ---------------------------------------------------------------------------------------- Nystrom layer
def test_pinv_iteration_converges_to_the_pseudo_inverse():
    g = torch.Generator().manual_seed(0)
    x = torch.softmax(torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64), -1)
    z = moore_penrose_pinv(x, iters=40)
    torch.testing.assert_close(z, torch.linalg.pinv(x), rtol=1e-6, atol=1e-6)


def test_nystrom_with_one_row_per_landmark_is_softmax_attention():
    # m = n landmarks (l = 1): q~ = q, k~ = k, so S pinv(S) S = S = softmax(q k^T) exactly (up to the pinv)
    torch.manual_seed(0)
    att = NystromAttention(16, dim_head=4, heads=4, num_landmarks=8, pinv_iterations=40, residual=False).double().eval()
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    q, k, v = att.to_qkv(x).chunk(3, -1)
    q, k, v = (t.reshape(2, 8, 4, 4).transpose(1, 2) for t in (q, k, v))
    ref = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1) @ v
    ref = att.to_out(ref.transpose(1, 2).reshape(2, 8, 16))
    torch.testing.assert_close(att(x), ref, rtol=1e-6, atol=1e-6)


def test_nystrom_pads_in_front_and_keeps_the_last_rows():
    torch.manual_seed(0)
    att = NystromAttention(16, dim_head=4, heads=4, num_landmarks=8).eval()
    x = torch.randn(3, 13, 16)
    out = att(x)
    assert out.shape == (3, 13, 16) and torch.isfinite(out).all()
    # batch elements are independent (per-element pinv scaling)
    torch.testing.assert_close(att(x[1:2]), out[1:2], rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 15), m=st.integers(2, 16), heads=st.sampled_from([1, 2, 4]), scale=st.sampled_from([0.1, 1.0, 5.0]),
       seed=st.integers(0, 2**16), residual=st.booleans())
def test_short_sequence_form_is_the_padded_upstream_computation(n, m, heads, scale, seed, residual):
    # n < m: the reduced (n+1)-row form must be the same function as padding to m rows (float64: to rounding);
    # n >= m goes through the padded code itself
    torch.manual_seed(seed)
    att = NystromAttention(8, dim_head=4, heads=heads, num_landmarks=m, residual=residual, residual_conv_kernel=5).double().eval()
    x = (scale * torch.randn(2, n, 8, dtype=torch.float64)).requires_grad_()
    out, ref = att(x), nystrom_reference(att, x)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
    g_out, g_ref = (torch.autograd.grad(y.square().sum(), x)[0] for y in (out, ref))
    torch.testing.assert_close(g_out, g_ref, rtol=1e-8, atol=1e-10)


def test_cmta_sized_layer_matches_upstream_in_float32():
    # the official layer (256 wide, 8 heads, 128 landmarks) on CMTA's token counts: 7 genomic, 33 and 50 pathology
    torch.manual_seed(0)
    att = NystromAttention(256, dim_head=32, heads=8, num_landmarks=128, pinv_iterations=6, dropout=0.1).eval()
    for n in (7, 33, 50, 127):
        x = 3 * torch.randn(2, n, 256)
        torch.testing.assert_close(att(x), nystrom_reference(att, x), rtol=1e-4, atol=1e-5)


def test_cmta_outputs_and_gradients_equal_the_padded_code(tmp_path, monkeypatch):
    # the whole model (official sizes: 256 wide, 128 landmarks) on a fixed batch: fast path vs the upstream padded computation
    info, model = _toy(tmp_path)
    batch = _batch(info, seed=3)

    def run():
        model.zero_grad()
        emb, aux = model.encoder.forward_with_aux(batch)
        (emb.square().sum() + aux["align"]).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        return emb.detach(), aux["align"].detach(), grads

    fast = run()
    monkeypatch.setattr(nystrom.NystromAttention, "forward", nystrom_reference)
    slow = run()
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-4, atol=1e-6)
    assert fast[2].keys() == slow[2].keys() and len(fast[2]) > 0
    for k in fast[2]:
        torch.testing.assert_close(fast[2][k], slow[2][k], rtol=1e-3, atol=1e-5, msg=k)


# ---------------------------------------------------------------------------------------- the method
def _toy(tmp_path, **params):
    info = make_info(clinical=False, pathways=False, tasks=("os",))
    sig = _sig_csv(tmp_path, {"A": ["rna0", "rna1", "cnv0"], "B": ["rna2", "rna3"], "C": ["rna4", "cnv1", "cnv2"]})
    torch.manual_seed(0)
    return info, build_method("cmta", info, signatures=sig, **params).eval()


def _batch(info, seed=0):
    b = make_batch(B=4, n_max=7, info=info, seed=seed)
    b["modality_mask"]["slide"][1] = False  # patient 1: no slide
    for k in ("rna", "cnv"):
        b["modality_mask"][k][2] = False  # patient 2: no omics
    return b


@pytest.mark.parametrize("fusion", ["concat", "bilinear"])
def test_missing_modalities_padding_and_batch_do_not_leak(tmp_path, fusion):
    info, m = _toy(tmp_path, fusion=fusion)
    b = _batch(info)
    with torch.no_grad():
        out = m(b)["outputs"]["os"]
        b2 = make_batch(B=4, n_max=7, info=info, seed=5)  # other values everywhere ...
        b2["slide"]["mask"], b2["modality_mask"] = b["slide"]["mask"], b["modality_mask"]
        for k in ("rna", "cnv"):  # ... but patient 1 keeps its omics, patient 2 its slide
            b2["omics"][k][1] = b["omics"][k][1]
        b2["slide"]["features"][2] = b["slide"]["features"][2]
        out2 = m(b2)["outputs"]["os"]
        torch.testing.assert_close(out2[1], out[1])  # no slide: its patches are ignored
        torch.testing.assert_close(out2[2], out[2])  # no omics: its values are ignored
        assert not torch.allclose(out2[0], out[0])
        # extra padded patches change nothing
        b3 = {**b, "slide": {k: torch.cat([v, torch.randn_like(v[:, :3].float()).to(v.dtype) if k != "mask" else torch.zeros_like(v[:, :3])], 1)
                             for k, v in b["slide"].items()}}
        torch.testing.assert_close(m(b3)["outputs"]["os"], out, rtol=1e-5, atol=1e-5)
        # a patient alone gives what it gives inside the batch
        one = {**b, "patient_id": b["patient_id"][3:], "slide": {k: v[3:] for k, v in b["slide"].items()},
               "omics": {k: v[3:] for k, v in b["omics"].items()}, "modality_mask": {k: v[3:] for k, v in b["modality_mask"].items()}}
        torch.testing.assert_close(m(one)["outputs"]["os"][0], out[3], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all()


def test_alignment_loss_is_the_l1_between_encoder_and_translated_cls_over_complete_patients(tmp_path):
    info, m = _toy(tmp_path, align_weight=2.0)
    enc = m.encoder
    seen: dict[str, list] = {}
    for name in ("pathomics_encoder", "pathomics_decoder", "genomics_encoder", "genomics_decoder"):
        getattr(enc, name).register_forward_hook(lambda mod, inp, out, name=name: seen.setdefault(name, []).append(out[0].detach()))
    b = _batch(info)
    with torch.no_grad():
        out = m(b)
    # pathology encoder: patients 0, 2, 3 (1 has no slide); decoders: patients 0 and 3 (both modalities)
    p = torch.cat(seen["pathomics_encoder"])[[0, 2]]
    p_hat, g_hat = torch.cat(seen["pathomics_decoder"]), torch.cat(seen["genomics_decoder"])
    g = seen["genomics_encoder"][0][[0, 3]]
    assert len(seen["pathomics_decoder"]) == 2
    expected = 2.0 * ((p - p_hat).abs().mean(1) + (g - g_hat).abs().mean(1)).mean()
    torch.testing.assert_close(out["aux_losses"]["align"], expected)
    # the alignment loss is part of the training loss
    total, per_task = m.loss(b, out)
    torch.testing.assert_close(total, per_task["os"] + expected)


def test_alignment_loss_is_zero_without_complete_patients_and_still_backpropagates(tmp_path):
    info, m = _toy(tmp_path)
    b = make_batch(B=2, n_max=5, info=info)
    b["modality_mask"]["slide"][0] = False
    for k in ("rna", "cnv"):
        b["modality_mask"][k][1] = False
    out = m.train()(b)
    assert float(out["aux_losses"]["align"]) == 0.0
    m.loss(b, out)[0].backward()
    assert m.encoder.pathomics_fc[0].weight.grad is not None


def test_training_module_logs_the_alignment_loss(tmp_path):
    from modaltune.training.module import MultiTaskLightningModule

    info, m = _toy(tmp_path)
    lm = MultiTaskLightningModule(m.train(), {t.spec.name: t for t in info.tasks})
    b = _batch(info)
    total = lm._step_loss(b, "train")
    align_sum, n = lm._sums["train"]["loss_align"]
    assert n == 4 and float(align_sum) > 0 and torch.isfinite(total)


def test_declares_slide_and_omics_and_needs_signatures(tmp_path):
    from modaltune.errors import ConfigError
    from modaltune.methods.registry import get_method

    assert get_method("cmta").requires == ("slide", "omics")
    with pytest.raises(ConfigError, match="signatures"):
        build_method("cmta", make_info(clinical=False, pathways=False))
    with pytest.raises(ConfigError, match="cmta needs a slide modality"):
        build_method("cmta", make_info(slide=False, clinical=False, pathways=False), signatures=_sig_csv(tmp_path, {"A": ["rna0"]}))


def test_signature_file_without_overlap_is_a_one_line_error_naming_the_file(tmp_path):
    from modaltune.errors import InputError

    sig = _sig_csv(tmp_path, {"A": ["NOPE1"], "B": ["NOPE2"]})
    with pytest.raises(InputError, match=r"overlap 0/2") as err:
        build_method("cmta", make_info(clinical=False, pathways=False), signatures=sig)
    assert sig in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------- engine
def test_trains_and_predicts_every_patient_through_the_engine(tmp_path):
    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import builtin_pathways, simulate_cohort
    from modaltune.data.splits import SplitSet
    from modaltune.training.trainer import fit, predict

    out = tmp_path / "cohort"
    simulate_cohort(out, preset="tiny", seed=1, n_patients=24, patches=(8, 20), slides_per_patient=(1, 1), n_folds=3,
                    missing_rates={"slide": 0.2, "rna": 0.2})
    pw = builtin_pathways()
    groups = {c: [str(g) for g in pw.index[pw[c] != 0]] for c in list(pw.columns)[:6]}
    groups[next(iter(groups))].append("NOT_A_GENE")  # partial coverage is recorded, not an error
    sig = _sig_csv(out, groups)
    cohort, fold = Cohort.load(out), SplitSet.load(out / "splits" / "kfold3.csv").folds[0]
    fast = {"max_epochs": 1, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 4}
    fitted = fit(cohort, fold, "cmta", params={"signatures": sig}, trainer=fast, out_dir=tmp_path / "run")
    ids = list(fold.test)
    pred = predict(fitted, cohort, ids)
    assert sorted(pred["patient_id"].unique()) == sorted(ids)
    assert np.isfinite(pred.loc[pred["task"] == "survival", "risk"].to_numpy(float)).all()
    assert (~cohort.availability().loc[ids]).to_numpy().any()  # some test patients lack a slide or RNA
    cov = pd.read_csv(tmp_path / "run" / "signature_coverage.csv", index_col=0)
    assert len(cov) == 6 and cov["n_expected"].iloc[0] == cov["n_found"].iloc[0] + 1
