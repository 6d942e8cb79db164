"""ModalTune method: frozen backbone, zero-gate identity, missing modalities, KL value, templates, zero-shot scoring."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from modaltune.data.dataset import CohortPreprocessor, PatientDataset, collate_patients
from modaltune.data.simulate import simulate_cohort
from modaltune.errors import ConfigError
from modaltune.methods import build_method

SMALL = {"pathways": "builtin", "gene_mixer": {"token_dim": 16, "n_blocks": 1, "channel_hidden": 8}, "backbone_params": {"embed_dim": 32, "depth": 2, "num_heads": 2},
         "attn_dim": 16, "heads": 2, "ffn_dim": 16, "out_dim": 32, "drop_path": 0.0}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    c = simulate_cohort(tmp_path_factory.mktemp("mt") / "tiny", preset="tiny", seed=1, n_patients=24)
    ids = list(c.patient_ids)
    pp = CohortPreprocessor(c).fit(ids[:18])
    ds = PatientDataset(c, ids, pp, training=False, max_patches=32)
    return c, pp, ds


def _batch(ds, idx):
    return collate_patients([ds[i] for i in idx])


def _model(pp, **kw):
    torch.manual_seed(0)
    return build_method("modaltune", pp.info, **{**SMALL, **kw})


def test_backbone_bit_identical_after_training(sim):
    _, pp, ds = sim
    m = _model(pp)
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=5e-4)
    m.train()
    for step in range(3):
        b = _batch(ds, [step, step + 5])
        out = m(b)
        loss, _ = m.loss(b, out)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not p.requires_grad for p in m.backbone.parameters())
    after = m.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the adapter did train: some injector gate moved away from zero
    assert any(float(inj.gamma.detach().abs().sum()) > 0 for inj in m.adapter.injectors)


def test_zero_gates_give_the_frozen_backbone_output(sim):
    _, pp, ds = sim
    m = _model(pp).eval()
    b = _batch(ds, [0])
    assert bool(b["slide"]["mask"].any())
    with torch.no_grad():
        parts = m.task_forward(b, "subtype", return_parts=True)
        s = b["slide"]
        ref = m.backbone(s["features"].float(), s["coords"])
    torch.testing.assert_close(parts["image"], ref, rtol=0, atol=1e-6)
    # with a non-zero gate the modal tokens do change the image stream
    with torch.no_grad():
        m.adapter.injectors[0].gamma.fill_(1.0)
        img = m.task_forward(b, "subtype", return_parts=True)["image"]
    assert not torch.allclose(img, ref, atol=1e-4)


def test_patient_without_rna_trains_and_predicts(sim):
    c, pp, ds = sim
    no_rna = [i for i, p in enumerate(ds.patient_ids) if p not in set(c.omics["rna"].index)]
    with_rna = [i for i, p in enumerate(ds.patient_ids) if p in set(c.omics["rna"].index)]
    assert no_rna, "the tiny cohort should have a patient without RNA"
    m = _model(pp)
    b = _batch(ds, [no_rna[0], with_rna[0]])
    assert not bool(b["modality_mask"]["rna"][0])
    m.train()
    out = m(b)
    loss, _ = m.loss(b, out)
    loss.backward()
    assert torch.isfinite(loss)
    m.eval()
    with torch.no_grad():
        o1 = m(b)["embedding"]
        b2 = {**b, "omics": {**b["omics"], "rna": b["omics"]["rna"].clone()}}
        b2["omics"]["rna"][0] = 1e3  # garbage in the missing patient's zero-filled row is never read
        o2 = m(b2)["embedding"]
    assert torch.isfinite(o1).all()
    torch.testing.assert_close(o1[0], o2[0])
    parts = m.task_forward(b, "subtype", return_parts=True)
    rna = m.tokenizer.slices()["rna:pathways"]
    assert not parts["mask"][0, 1:][rna].any() and parts["mask"][1, 1:][rna].all()


def test_kl_loss_matches_hand_computation(sim):
    from modaltune.modaltune.text_targets import get_text_encoder

    _, pp, ds = sim
    m = _model(pp, supervised=0.0, kl=1.0).eval()
    b = _batch(ds, [0, 1, 2])
    with torch.no_grad():
        out = m(b)
        total, _ = m.loss(b, out)
    enc = get_text_encoder(None)
    ti = {t.spec.name: t for t in pp.info.tasks}
    expect = 0.0
    for task in ("subtype", "survival"):
        s = out["task_embeddings"][task]
        for r in range(3):
            if not bool(b["target_mask"][task][r]):
                continue
            site = {"BRCA": "breast", "LUAD": "lung", "KIRC": "kidney"}[b["site"][r]]
            if task == "subtype":
                sent = f"Cancer location: {site}; Cancer diagnosis: {ti['subtype'].class_names[int(b['targets']['subtype']['label'][r])].lower()}."
            else:
                t, e = float(b["targets"]["survival"]["time"][r]), int(b["targets"]["survival"]["event"][r])
                edges = ti["survival"].bin_edges
                k = min(int(np.searchsorted(edges, t, side="right")) - 1, len(edges) - 2)
                rng = f"between {int(round(edges[k]))} and {int(round(edges[k + 1]))} months"
                # default survival template: site + stage (the simulator's clinical 'Stage I..IV'; no T/N/M there) + survival bin
                raw = b["records"][r].get("stage")
                stage = f"Overall stage: stage {['one', 'two', 'three', 'four'][['Stage I', 'Stage II', 'Stage III', 'Stage IV'].index(raw)]}; " if raw else ""
                sent = f"Cancer location: {site}; {stage}Survival status: " + (f"The patient died {rng}." if e else f"The patient was alive at last follow-up {rng}.")
            t_emb = torch.from_numpy(enc.model.encode([sent], normalize_embeddings=True)).float()[0]
            z = m.projector.weight @ t_emb
            z = z / z.norm()
            q = s[r] / s[r].norm()
            p_ = torch.softmax(z, 0)
            expect += float((p_ * (torch.log(p_) - torch.log_softmax(q, 0))).sum()) / int(b["target_mask"][task].sum())
    assert float(total) == pytest.approx(10.0 * expect, rel=1e-4)


def test_label_sentence_templates(sim):
    from modaltune.modaltune.text_targets import label_sentences

    _, pp, ds = sim
    b = _batch(ds, [0, 1])
    sents, usable = label_sentences(b, pp.info.tasks, "subtype", "diagnosis")
    loc = {"BRCA": "breast", "LUAD": "lung", "KIRC": "kidney"}
    names = pp.info.task("subtype").class_names
    for r in range(2):
        if usable[r]:
            assert sents[r] == f"Cancer location: {loc[b['site'][r]]}; Cancer diagnosis: {names[int(b['targets']['subtype']['label'][r])].lower()}."
    gen, _ = label_sentences(b, pp.info.tasks, "survival", "general")
    assert all(("Cancer diagnosis:" in g and "Survival status: The patient" in g) for g, u in zip(gen, usable) if u and g)
    with pytest.raises(ConfigError):
        label_sentences(b, pp.info.tasks, "subtype", "nonsense")


def test_saved_projector(sim):
    # (zero-shot scoring of label names by a trained model: tests/modaltune/test_modaltune_objectives.py)
    _, pp, _ = sim
    m = _model(pp, projector_seed=7).eval()
    assert int(m.state_dict()["projector.seed"]) == 7 and "projector.weight" in m.state_dict()
    # a rebuilt model with another seed has another projector; loading the state dict restores it
    m2 = _model(pp, projector_seed=8)
    assert not torch.equal(m2.projector.weight, m.projector.weight)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2.projector.weight, m.projector.weight) and int(m2.projector.seed) == 7


def test_eval_embed_cache_reuses_frozen_prefix(sim):
    _, pp, ds = sim
    m = _model(pp).eval()
    b = _batch(ds, [3])
    with torch.no_grad():
        a = m(b)["embedding"]
        hits = m.embed_cache_hits
        a2 = m(b)["embedding"]
    assert m.embed_cache_hits == hits + 1
    torch.testing.assert_close(a, a2)
    m.train()
    assert len(m._embed_cache) == 0
    tiny = _model(pp, cache_mb=1e-6).eval()  # a budget smaller than one state: nothing is kept
    with torch.no_grad():
        tiny(b)
        tiny(b)
    assert tiny.embed_cache_hits == 0 and len(tiny._embed_cache) == 0


def test_foundation_backbone_needs_checkpoint_or_explicit_random_init(sim):
    _, pp, _ = sim
    with pytest.raises(ConfigError):
        build_method("modaltune", pp.info, backbone="gigapath", pathways="builtin")
    m = build_method("modaltune", pp.info, backbone="gigapath", random_init=True, pathways="builtin",
                     backbone_params={"embed_dim": 32, "depth": 2, "num_heads": 2}, groups=[[0, 0], [1, 1]], attn_dim=16, heads=2, ffn_dim=16,
                     gene_mixer={"token_dim": 16, "n_blocks": 1})
    assert m.weights_source == "random_init" and m.backbone.weights_source == "random_init"


def test_slide_fm_frozen_probe_and_tuned(sim):
    _, pp, ds = sim
    b = _batch(ds, [0, 1])
    frozen = build_method("slide_fm", pp.info, backbone_params={"embed_dim": 32, "depth": 2, "num_heads": 2})
    tuned = build_method("slide_fm", pp.info, tune=True, backbone_params={"embed_dim": 32, "depth": 2, "num_heads": 2})
    bb = frozen.encoder.backbone
    assert all(not p.requires_grad for p in bb.parameters()) and all(p.requires_grad for p in tuned.encoder.backbone.parameters())
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    opt = torch.optim.Adam([p for p in frozen.parameters() if p.requires_grad], lr=1e-2)
    frozen.train()
    out = frozen(b)
    loss, _ = frozen.loss(b, out)
    loss.backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())
    with pytest.raises(ConfigError):
        build_method("slide_fm", pp.info, backbone="titan")


def test_clinical_fields_restrict_the_clinical_token(sim):
    _, pp, ds = sim
    names = pp.info.clinical_feature_names
    m = _model(pp, clinical_fields=["age", "stage"]).eval()
    cset = [s for s in m.tokenizer.sets if s.name == "clinical"][0]
    assert [names[i] for i in cset.columns.tolist()] == [n for n in names if n.split("__")[0] in ("age", "stage")]
    b = _batch(ds, [0, 1])
    other = [i for i, n in enumerate(names) if not n.startswith(("age", "stage"))]
    b2 = {**b, "clinical": b["clinical"].clone()}
    b2["clinical"][:, other] = 50.0  # fields left out never reach the model
    with torch.no_grad():
        torch.testing.assert_close(m(b)["embedding"], m(b2)["embedding"])
    with pytest.raises(ConfigError):
        _model(pp, clinical_fields=["primary_diagnosis"])


def test_frozen_prefix_groups_cached_at_evaluation_and_trained(sim):
    """groups starting at layer 1: layer 0 is the frozen prefix; cached eval output == uncached output."""
    _, pp, ds = sim
    kw = {"groups": [[1, 1]], "extra_extractors": 1}
    cached = _model(pp, **kw).eval()
    plain = _model(pp, **kw, cache_embed=False).eval()
    plain.load_state_dict(cached.state_dict())
    assert cached.adapter.prefix_layers == 1
    for inj in (cached.adapter.injectors[0], plain.adapter.injectors[0]):
        torch.nn.init.constant_(inj.gamma, 0.3)
    b = _batch(ds, [2, 4])
    with torch.no_grad():
        first = cached(b)["embedding"]
        hits = cached.embed_cache_hits
        second = cached(b)["embedding"]
        ref = plain(b)["embedding"]
    assert cached.embed_cache_hits == hits + 1 and plain.embed_cache_hits == 0
    assert torch.equal(first, second)
    torch.testing.assert_close(second, ref, rtol=0, atol=0)
    before = {k: v.clone() for k, v in cached.backbone.state_dict().items()}
    cached.train()
    opt = torch.optim.AdamW([p for p in cached.parameters() if p.requires_grad], lr=1e-2)
    loss, _ = cached.loss(b, cached(b))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(torch.equal(v, before[k]) for k, v in cached.backbone.state_dict().items())
    with pytest.raises(ConfigError, match="groups"):
        _model(pp, groups=[[0, 0], [2, 2]])


def test_pathway_sources_are_one_and_checked(sim, tmp_path):
    c, _, _ = sim
    from modaltune.data.dataset import CohortPreprocessor as CP

    ids = list(c.patient_ids)[:18]
    with_pw = CP(c, pathways={"rna": c.root / "pathways.csv"}).fit(ids)
    m = build_method("modaltune", with_pw.info, **{k: v for k, v in SMALL.items() if k != "pathways"})
    assert [s.name for s in m.tokenizer.sets][0] == "rna:pathways"  # data.pathways alone is enough
    with pytest.raises(ConfigError, match="given twice"):
        build_method("modaltune", with_pw.info, **SMALL)  # SMALL also sets pathways: builtin
    plain = CP(c).fit(ids)
    with pytest.raises(ConfigError, match="not found"):
        build_method("modaltune", plain.info, **{**SMALL, "pathways": str(tmp_path / "nope.csv")})
    m2 = build_method("modaltune", plain.info, **{**SMALL, "pathways": str(c.root / "pathways.csv")})  # an existing file
    assert m2.tokenizer.sets[0].n_tokens == m.tokenizer.sets[0].n_tokens
