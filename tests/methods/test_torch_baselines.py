"""Torch baseline recipes: shapes, padding invariance, missing modalities, gradients, quick training."""
from __future__ import annotations

import pytest
import torch

from modaltune.errors import ConfigError, InputError
from modaltune.methods import build_method, get_method, list_methods
from modaltune.methods.base import MultiTaskModel
from modaltune.testing.batches import make_batch, make_info

TORCH_METHODS = ["abmil", "transmil", "snn", "omics_mlp", "gene_mixer", "clinical_mlp", "late_fusion"]
BASELINES = TORCH_METHODS + ["coxnet", "logistic"]
# which modality a single-modality method reads
# small widths keep the training test fast on 2 shared CPU cores
SMALL = {"abmil": {"embed_dim": 64, "attn_dim": 32}, "transmil": {"embed_dim": 64, "num_heads": 4}, "late_fusion": {"slide_params": {"embed_dim": 64}}}
MODALITY = {"abmil": "slide", "transmil": "slide", "snn": None, "omics_mlp": None, "gene_mixer": "rna", "clinical_mlp": "clinical"}


def _build(name, info=None, **params):
    torch.manual_seed(0)
    return build_method(name, info or make_info(), **params)


def test_registry_lists_baselines_and_rejects_unknown():
    names = set(list_methods())
    assert set(BASELINES) <= names
    for n in TORCH_METHODS:
        assert get_method(n).kind == "torch"
    assert get_method("coxnet").kind == "tabular" and get_method("logistic").kind == "tabular"
    with pytest.raises(InputError, match="unknown method 'abmill'.*did you mean 'abmil'"):
        get_method("abmill")


@pytest.mark.parametrize("name", TORCH_METHODS)
@pytest.mark.parametrize("B", [1, 5])
def test_forward_shapes(name, B):
    info = make_info()
    model = _build(name, info).eval()
    assert isinstance(model, MultiTaskModel)
    batch = make_batch(B=B, info=info, missing={"slide": [B - 1]} if B > 1 else None)
    out = model(batch)
    E = model.embed_dim
    assert out["embedding"].shape == (B, E)
    assert out["outputs"]["subtype"].shape == (B, 2)
    assert out["outputs"]["os"].shape == (B, 4)
    assert torch.isfinite(out["embedding"]).all()
    total, per_task = model.loss(batch, out)
    assert torch.isfinite(total) and set(per_task) == {"subtype", "os"}


@pytest.mark.parametrize("name", ["abmil", "transmil", "late_fusion"])
def test_slide_padding_invariance(name):
    """Appending padded patches (mask False, garbage features) never changes the output."""
    info = make_info()
    model = _build(name, info).eval()
    batch = make_batch(B=4, info=info)
    ref = model(batch)["embedding"]
    padded = make_batch(B=4, info=info)
    s = padded["slide"]
    extra = 7
    s["features"] = torch.cat([s["features"], 100 * torch.randn(4, extra, s["features"].shape[-1])], 1)
    s["coords"] = torch.cat([s["coords"], torch.zeros(4, extra, 2, dtype=torch.long)], 1)
    s["mask"] = torch.cat([s["mask"], torch.zeros(4, extra, dtype=torch.bool)], 1)
    torch.testing.assert_close(model(padded)["embedding"], ref, rtol=1e-5, atol=1e-5)
    # each patient alone (batch of 1) == the same patient in the padded batch
    for i in range(4):
        single = dict(batch)
        single["slide"] = {k: v[i : i + 1, : int(batch["slide"]["mask"][i].sum())] for k, v in batch["slide"].items()}
        single["omics"] = {k: v[i : i + 1] for k, v in batch["omics"].items()}
        single["clinical"] = batch["clinical"][i : i + 1]
        single["modality_mask"] = {k: v[i : i + 1] for k, v in batch["modality_mask"].items()}
        torch.testing.assert_close(model(single)["embedding"], ref[i : i + 1], rtol=1e-4, atol=1e-5)


def test_abmil_attention_ignores_non_contiguous_padding():
    """Padding in the middle of a bag (mask False) is compacted away before attention."""
    info = make_info(omics=(), clinical=False)
    model = _build("abmil", info).eval()
    batch = make_batch(B=2, info=info)
    ref = model(batch)["embedding"]
    s = batch["slide"]
    n = s["features"].shape[1]
    s["features"] = torch.cat([torch.randn(2, 3, s["features"].shape[-1]), s["features"]], 1)
    s["coords"] = torch.cat([torch.zeros(2, 3, 2, dtype=torch.long), s["coords"]], 1)
    s["mask"] = torch.cat([torch.zeros(2, 3, dtype=torch.bool), s["mask"]], 1)
    assert s["features"].shape[1] == n + 3
    torch.testing.assert_close(model(batch)["embedding"], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["abmil", "transmil", "snn", "omics_mlp", "gene_mixer", "clinical_mlp"])
def test_single_modality_method_keeps_patients_without_it(name):
    """A patient lacking the method's modality gets the learned missing embedding (same vector
    for all such patients, whatever their zero-filled inputs), and is kept in the output."""
    info = make_info()
    model = _build(name, info).eval()
    mods = [MODALITY[name]] if MODALITY[name] else list(info.omics_dims)
    batch = make_batch(B=6, info=info, missing={m: [1, 4] for m in mods})
    emb = model(batch)["embedding"]
    assert emb.shape[0] == 6
    branch = model.encoder.branch if name == "gene_mixer" else model.encoder
    torch.testing.assert_close(emb[1], branch.missing.missing)
    torch.testing.assert_close(emb[4], branch.missing.missing)
    assert not torch.allclose(emb[0], emb[1])
    # the (never read) inputs of the missing patients do not matter
    b2 = make_batch(B=6, info=info, missing={m: [1, 4] for m in mods})
    for m in mods:
        if m == "slide":
            b2["slide"]["features"][[1, 4]] = 50.0
        elif m == "clinical":
            b2["clinical"][[1, 4]] = 50.0
        else:
            b2["omics"][m][[1, 4]] = 50.0
    torch.testing.assert_close(model(b2)["embedding"], emb)


def test_late_fusion_missing_modality_uses_missing_embedding_and_blocks_gradients():
    info = make_info()
    model = _build("late_fusion", info, modalities=["slide", "rna", "clinical"], fusion_dim=None)
    model.eval()  # no dropout: exact comparisons
    fusion = model.encoder
    assert list(fusion.branches) == ["slide", "rna", "clinical"]
    batch = make_batch(B=4, info=info, missing={"slide": [2]})
    emb = fusion.modality_embeddings(batch)
    torch.testing.assert_close(emb["slide"][2], fusion.branches["slide"].missing.missing)
    assert not torch.allclose(emb["slide"][0], emb["slide"][2])
    # loss of the patient without a slide only: nothing reaches the slide encoder
    for t in batch["target_mask"]:
        batch["target_mask"][t][:] = False
        batch["target_mask"][t][2] = True
    out = model(batch)
    total, _ = model.loss(batch, out)
    model.zero_grad()
    total.backward()
    slide_enc = fusion.branches["slide"].encoder
    for p in slide_enc.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert torch.count_nonzero(fusion.branches["slide"].missing.missing.grad) > 0
    assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in fusion.branches["rna"].encoder.parameters())
    # a batch where nobody has a slide never runs the slide encoder
    calls = []
    h = slide_enc.register_forward_hook(lambda *a: calls.append(1))
    model(make_batch(B=3, info=info, missing={"slide": [0, 1, 2]}))
    h.remove()
    assert calls == []


def test_late_fusion_config():
    info = make_info()
    m = _build("late_fusion", info, modalities=["rna", "clinical"], omics_encoder="gene_mixer", omics_params={"token_dim": 32, "n_blocks": 1})
    assert list(m.encoder.branches) == ["rna", "clinical"]
    assert m(make_batch(B=3, info=info))["embedding"].shape == (3, 256)
    m = _build("late_fusion", info, modalities=["slide", "omics"], slide_encoder="mean", fusion_dim=None)
    assert list(m.encoder.branches) == ["slide", "rna+cnv"]
    assert m.embed_dim == 12 + 256
    m = _build("late_fusion", info)  # default: every modality of the cohort
    assert list(m.encoder.branches) == ["slide", "rna", "cnv", "clinical"]
    with pytest.raises(ConfigError, match="unknown or absent modality 'wsi'"):
        _build("late_fusion", info, modalities=["wsi"])
    with pytest.raises(ConfigError, match="unknown slide encoder"):
        _build("late_fusion", info, modalities=["slide"], slide_encoder="clam")
    with pytest.raises(ConfigError, match=r"method\.params\.modalites: unknown key \(did you mean 'modalities'\?"):
        _build("late_fusion", info, modalites=["slide"])
    with pytest.raises(ConfigError, match="gene_mixer encodes one omics block"):
        _build("late_fusion", info, modalities=["omics"], omics_encoder="gene_mixer")


def test_late_fusion_per_block_omics_encoders():
    from modaltune.encoders.omics import GeneMixer, SNNEncoder

    info = make_info()
    m = _build("late_fusion", info, modalities=["rna", "cnv", "clinical"], omics_encoder={"rna": "gene_mixer"},
               omics_params={"rna": {"token_dim": 16, "n_blocks": 1}, "cnv": {"hidden": [32, 32]}})
    assert isinstance(m.encoder.branches["rna"].encoder, GeneMixer)
    assert isinstance(m.encoder.branches["cnv"].encoder, SNNEncoder) and m.encoder.branches["cnv"].out_dim == 32
    assert m(make_batch(B=3, info=info))["embedding"].shape == (3, 256)
    # a flat params dict still applies to every omics branch
    m = _build("late_fusion", info, modalities=["rna", "cnv"], omics_params={"hidden": [16, 16]})
    assert m.encoder.branches["rna"].out_dim == m.encoder.branches["cnv"].out_dim == 16
    with pytest.raises(ConfigError, match=r"names omics block\(s\) \['mut'\]"):
        _build("late_fusion", info, modalities=["rna", "cnv"], omics_encoder={"mut": "snn"})


def test_methods_refuse_absent_modalities():
    no_slide = make_info(slide=False)
    with pytest.raises(ConfigError, match="slide"):
        _build("abmil", no_slide)
    with pytest.raises(ConfigError, match="pathway"):
        _build("gene_mixer", make_info(pathways=False))
    with pytest.raises(ConfigError, match="unknown omics block 'mrna'"):
        _build("snn", make_info(), omics="mrna")


def test_multi_block_omics_missing_one_block():
    """snn over rna+cnv: a patient missing only cnv is still encoded (cnv zeroed + indicator)."""
    info = make_info()
    model = _build("snn", info).eval()
    b = make_batch(B=3, info=info, missing={"cnv": [1]})
    emb = model(b)["embedding"]
    assert not torch.allclose(emb[1], model.encoder.missing.missing)
    b["omics"]["cnv"][1] = 9.0  # never read: masked
    torch.testing.assert_close(model(b)["embedding"], emb)


def test_gene_mixer_pathway_tokens():
    info = make_info()
    model = _build("gene_mixer", info).eval()
    b = make_batch(B=3, info=info, missing={"rna": [2]})
    tokens, present = model.encoder.pathway_tokens(b)
    assert tokens.shape == (3, 6, 256) and present.tolist() == [True, True, False]
    assert torch.all(tokens[2] == 0)
    assert model.encoder.pathway_names == [f"P{i}" for i in range(6)]


@pytest.mark.parametrize("name", TORCH_METHODS)
def test_quick_training_reduces_loss(name):
    torch.manual_seed(0)
    info = make_info()
    model = _build(name, info, **SMALL.get(name, {}))
    batch = make_batch(B=8, info=info, missing={"slide": [3], "rna": [5], "clinical": [6]})
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.eval()  # deterministic loss for the comparison
    with torch.no_grad():
        before = float(model.loss(batch, model(batch))[0])
    model.train()
    for _ in range(15):
        opt.zero_grad()
        loss, _ = model.loss(batch, model(batch))
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(model.loss(batch, model(batch))[0])
    assert after < 0.8 * before, (before, after)
