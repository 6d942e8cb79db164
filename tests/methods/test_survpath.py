"""SurvPath: the attention mask entry by entry, the memory-efficient attention against a dense
masked reference, missing modalities, the official parameter count and key layout, the engine."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.cohort import TaskSpec
from modaltune.data.dataset import TaskInfo
from modaltune.data.omics import PathwayTokens
from modaltune.errors import ConfigError, InputError
from modaltune.methods import build_method, list_methods
from modaltune.methods.survpath import (
    MMAttention,
    SurvPathNet,
    load_official_state_dict,
    survpath_attention_mask,
)
from modaltune.testing.batches import PATHWAYS, make_batch, make_info

FIXTURE = Path(__file__).parent / "fixtures" / "survpath_official_keys.json"
T, F = True, False


def _model(info=None, **params):
    torch.manual_seed(0)
    return build_method("survpath", info or make_info(), wsi_projection_dim=16, **params).eval()


# ------------------------------------------------------------------------------------ the mask
def test_attention_mask_entry_by_entry():
    """P = 2 pathways, N = 3 patch slots. Patient 0: 3 valid patches; patient 1: patch 2 is
    padding; patient 2: no slide (all patches invalid). Rows = queries, columns = keys, order
    [p0 p1 h0 h1 h2]."""
    patch_mask = torch.tensor([[T, T, T], [T, T, F], [F, F, F]])
    m = survpath_attention_mask(2, patch_mask)
    full = [  # pathways see everything valid; patches see pathways only; never patch -> patch
        [T, T, T, T, T],
        [T, T, T, T, T],
        [T, T, F, F, F],
        [T, T, F, F, F],
        [T, T, F, F, F],
    ]
    padded = [
        [T, T, T, T, F],
        [T, T, T, T, F],
        [T, T, F, F, F],
        [T, T, F, F, F],
        [F, F, F, F, F],  # a padded patch is no query
    ]
    no_slide = [
        [T, T, F, F, F],
        [T, T, F, F, F],
        [F, F, F, F, F],
        [F, F, F, F, F],
        [F, F, F, F, F],
    ]
    assert m.tolist() == [full, padded, no_slide]


def test_model_attention_weights_follow_the_mask_with_missing_omics_and_slide():
    """Patient 1 lacks RNA (learned pathway tokens, same mask), patient 2 lacks the slide, patient
    3 has padded patches: zero weight exactly where the mask forbids, positive elsewhere, rows of
    valid queries sum to 1."""
    info = make_info()
    model = _model(info)
    batch = make_batch(B=4, n_max=6, info=info, missing={"rna": [1], "slide": [2]})
    batch["slide"]["mask"][3, 4:] = False
    w, allowed = model.encoder.attention(batch)
    P = len(PATHWAYS)
    assert w.shape == allowed.shape == (4, P + 6, P + 6)
    assert torch.equal(allowed, survpath_attention_mask(P, batch["slide"]["mask"] & torch.tensor([T, T, F, T])[:, None]))
    assert (w[~allowed] == 0).all()
    assert (w[allowed] > 0).all()
    queries = allowed.any(-1)
    torch.testing.assert_close(w.sum(-1)[queries], torch.ones(int(queries.sum())))
    assert not allowed[2, :, P:].any() and not allowed[2, P:].any()  # no slide: pathway block only
    assert torch.equal(allowed[1, :P, :P], torch.ones(P, P, dtype=torch.bool))


def _dense_reference(att: MMAttention, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
    """The same attention with the full (P+N)x(P+N) score matrix and the explicit mask."""
    B, Tn, _ = x.shape
    h, dh = att.heads, att.dim_head
    q, k, v = (t.reshape(B, Tn, h, dh).transpose(1, 2) for t in att.to_qkv(x).chunk(3, dim=-1))
    allowed = survpath_attention_mask(att.n_pathways, patch_mask)[:, None]
    scores = (q * att.scale @ k.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    a = torch.nan_to_num(scores.softmax(-1))  # fully masked rows (padded queries) -> 0
    return (a @ v).transpose(1, 2).reshape(B, Tn, h * dh)


@settings(max_examples=25, deadline=None)
@given(P=st.integers(1, 4), lens=st.lists(st.integers(0, 5), min_size=1, max_size=3), heads=st.integers(1, 2), seed=st.integers(0, 99))
def test_memory_efficient_attention_equals_dense_masked_attention(P, lens, heads, seed):
    torch.manual_seed(seed)
    N = max(1, max(lens))
    att = MMAttention(dim=8, dim_head=4, heads=heads, n_pathways=P)
    x = torch.randn(len(lens), P + N, 8)
    patch_mask = torch.arange(N)[None, :] < torch.tensor(lens)[:, None]
    out = att(x, patch_mask)
    ref = _dense_reference(att, x, patch_mask)
    rows = torch.cat([torch.ones(len(lens), P, dtype=torch.bool), patch_mask], 1)  # valid queries
    torch.testing.assert_close(out[rows], ref[rows], rtol=1e-5, atol=1e-6)  # float32 tolerance


# ------------------------------------------------------------------------------------ invariances
def test_padding_and_absent_inputs_never_change_the_embedding():
    info = make_info()
    model = _model(info)
    batch = make_batch(B=4, n_max=6, info=info, missing={"rna": [1], "slide": [2]})
    batch["slide"]["mask"][3, 4:] = False
    ref = model(batch)["embedding"]
    g = torch.Generator().manual_seed(5)
    batch["slide"]["features"][3, 4:] = torch.randn(2, info.slide_dim, generator=g) * 100  # padding
    batch["slide"]["features"][2] = torch.randn(6, info.slide_dim, generator=g)  # absent slide
    batch["omics"]["rna"][1] = torch.randn(info.omics_dims["rna"], generator=g)  # absent RNA
    torch.testing.assert_close(model(batch)["embedding"], ref)
    # and the present inputs do matter
    batch["omics"]["rna"][0] += 1.0
    assert not torch.allclose(model(batch)["embedding"][0], ref[0])


def test_missing_modalities_use_the_learned_stand_ins():
    info = make_info()
    model = _model(info)
    enc = model.encoder
    batch = make_batch(B=3, info=info, missing={"rna": [1], "slide": [2]})
    tok, _, _, has_omics, has_slide = enc.tokens(batch)
    assert has_omics.tolist() == [T, F, T] and has_slide.tolist() == [T, T, F]
    torch.testing.assert_close(tok[1], enc.missing_pathway_tokens)
    emb = model(batch)["embedding"]
    half = enc.net.inner_dim
    torch.testing.assert_close(emb[2, half:], enc.missing_histology.missing)
    # gradients reach the stand-ins
    model.loss(batch, model(batch))[0].backward()
    assert enc.missing_pathway_tokens.grad.abs().sum() > 0 and enc.missing_histology.missing.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ official layout
def _official():
    return json.loads(FIXTURE.read_text())


def test_parameter_count_at_the_official_configuration():
    """331 combine_comps pathways (sum of genes per pathway 9745, every gene in the RNA table),
    1024-d patch features, wsi_projection_dim 256, 4 bins:

    sig_networks   331 x [(n_i*256 + 256) + (256*256 + 256)] = 256*9745 + 331*256 + 331*65792 = 24,356,608
    wsi_projection 1024*256 + 256                                                                =    262,400
    cross_attender LayerNorm(256) 512 + to_qkv 256*384 (no bias) 98,304                          =     98,816
    feed_forward   LayerNorm(128) 256 + 2 x (128*128 + 128)                                      =     33,280
    layer_norm     LayerNorm(128)                                                                =        256
    to_logits      (256*64 + 64) + (64*4 + 4)                                                    =     16,708
    total                                                                                          24,768,068
    """
    sizes = _official()["omic_sizes"]
    assert len(sizes) == 331 and sum(sizes) == 9745
    net = SurvPathNet(sizes, 1024, 256, num_classes=4)
    assert sum(p.numel() for p in net.parameters()) == 24_768_068


def _official_info(sizes):
    starts = np.cumsum([0] + sizes[:-1])
    index = [np.arange(s, s + n, dtype=np.int64) for s, n in zip(starts, sizes)]
    names = [f"P{i}" for i in range(len(sizes))]
    spec = TaskSpec(name="os", kind="survival", time_column="t", event_column="e")
    info = make_info(omics=("rna",), clinical=False, tasks=())
    info.tasks = [TaskInfo(spec, 4, ["b0", "b1", "b2", "b3"], np.array([0.0, 10.0, 20.0, 30.0, 1000.0]), {})]
    info.slide_dim = 1024
    info.omics_dims = {"rna": int(sum(sizes))}
    info.omics_feature_names = {"rna": [f"g{i}" for i in range(sum(sizes))]}
    info.pathways = {"rna": PathwayTokens(names, index, pd.DataFrame({"pathway": names}).set_index("pathway"))}
    return info


def test_official_state_dict_layout_loads_strictly():
    fx = _official()
    keys = {k: tuple(v) for k, v in fx["keys"].items()}
    assert sum(math.prod(s) for s in keys.values()) == fx["n_parameters"] == 24_768_068
    net = SurvPathNet(fx["omic_sizes"], 1024, 256, num_classes=4)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == keys
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s in keys.items()}
    net.load_state_dict(sd, strict=True)
    # the registered method (default params) takes the same checkpoint: body -> encoder.net, to_logits -> the os head
    model = build_method("survpath", _official_info(fx["omic_sizes"]))
    load_official_state_dict(model, sd, task="os")
    assert torch.equal(model.encoder.net.cross_attender.attn.to_qkv.weight, sd["cross_attender.attn.to_qkv.weight"])
    assert torch.equal(model.heads["os"].net[2].weight, sd["to_logits.2.weight"])
    extra = {k for k in model.state_dict() if not k.startswith(("encoder.net.", "heads.os.net."))}
    assert extra == {"encoder.missing_pathway_tokens", "encoder.missing_histology.missing"}


def test_method_with_official_weights_equals_the_official_forward():
    """Loaded into the method, an official-layout state dict gives the official logits (both modalities present)."""
    info = make_info(omics=("rna",), clinical=False, tasks=("os",))
    torch.manual_seed(1)
    net = SurvPathNet([len(ix) for ix in PATHWAYS], info.slide_dim, 16, num_classes=4).eval()
    model = _model(info, head_hidden=4)
    load_official_state_dict(model, net.state_dict(), task="os")
    batch = make_batch(B=3, n_max=5, info=info)
    x = batch["omics"]["rna"]
    ref = torch.stack([net([x[b : b + 1, ix] for ix in PATHWAYS], batch["slide"]["features"][b : b + 1, : int(batch["slide"]["mask"][b].sum())])[0] for b in range(3)])
    torch.testing.assert_close(model(batch)["outputs"]["os"], ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ config / engine
def test_registered_and_refused_without_pathways_or_slide():
    assert "survpath" in list_methods()
    with pytest.raises(ConfigError, match="survpath needs pathway gene lists for omics block 'rna'"):
        build_method("survpath", make_info(pathways=False))
    with pytest.raises(ConfigError, match="survpath needs the slide modality"):
        build_method("survpath", make_info(slide=False))
    with pytest.raises(ConfigError, match=r"method\.params\.wsi_projection: unknown key"):
        build_method("survpath", make_info(), wsi_projection=8)


def test_pathway_file_without_overlap_is_one_clear_error(tmp_path):
    from modaltune.data.omics import tokenize_pathways

    f = tmp_path / "pw.csv"
    pd.DataFrame({"gene": ["AAA", "BBB"], "P1": [1, 0], "P2": [1, 1]}).to_csv(f, index=False)
    with pytest.raises(InputError) as ei:
        tokenize_pathways(f, ["X1", "X2", "X3"])
    msg = str(ei.value)
    assert "\n" not in msg and str(f) in msg and "overlap 0 of 2 pathway genes" in msg


@pytest.mark.parametrize("drop", ["omics", "slide"])
def test_config_without_a_required_modality_is_refused_at_load(tmp_path, drop):
    import yaml

    from modaltune.config import load_config
    from modaltune.data.simulate import simulate_cohort
    from modaltune.training.experiment_config import BenchmarkConfig

    simulate_cohort(tmp_path / "c", preset="tiny", n_patients=8, patches=(4, 8), n_folds=0)
    man = yaml.safe_load((tmp_path / "c" / "cohort.yaml").read_text())
    man["modalities"] = [m for m in man["modalities"] if m["kind"] != drop]
    (tmp_path / "c" / "cohort.yaml").write_text(yaml.safe_dump(man))
    cfg = tmp_path / "b.yaml"
    cfg.write_text("data: {cohorts: [c]}\nmethods: [{name: survpath}]\n")
    with pytest.raises(ConfigError, match=f"method 'survpath' needs {drop} data and cohort c has none"):
        load_config(cfg, BenchmarkConfig)
