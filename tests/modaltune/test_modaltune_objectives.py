"""ModalTune objectives and tokens on hand-made batches: text-similarity classification, ``cls_output:
text``, the Cox head, compressed pathway tokens, report-text tokens, description-driven task tokens
and zero-shot scoring of label names by a trained model."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sentence_transformers")
from modaltune.data.cohort import TaskSpec
from modaltune.data.dataset import TaskInfo
from modaltune.errors import ConfigError
from modaltune.methods import build_method
from modaltune.testing.batches import make_batch, make_info

SMALL = {"gene_mixer": {"token_dim": 8, "n_blocks": 1, "channel_hidden": 8}, "backbone_params": {"embed_dim": 16, "depth": 2, "num_heads": 2},
         "attn_dim": 8, "heads": 2, "ffn_dim": 8, "out_dim": 16, "drop_path": 0.0, "block_tokens": 2}
DUCT, LOBULAR = "infiltrating duct carcinoma", "infiltrating lobular carcinoma"


def _model(info, **kw):
    torch.manual_seed(0)
    return build_method("modaltune", info, **{**SMALL, **kw})


def _class_targets(m, site, names):
    """Hand computation of the projected class sentences (what text-similarity logits compare with)."""
    from modaltune.modaltune.text_targets import get_text_encoder

    sents = [f"Cancer location: {site}; Cancer diagnosis: {n}." for n in names]
    t = torch.from_numpy(get_text_encoder(None).model.encode(sents, normalize_embeddings=True)).float()
    z = t @ m.projector.weight.T
    return z / z.norm(dim=1, keepdim=True)


def _breast_info(tasks=("subtype", "os")):
    info = make_info(tasks=tasks)
    new = []
    for t in info.tasks:
        if t.spec.kind == "classification":
            spec = TaskSpec(name="subtype", kind="classification", label_column="st", classes=[DUCT, LOBULAR], description="Breast cancer histological subtype.")
            t = TaskInfo(spec, 2, [DUCT, LOBULAR], None, {DUCT: 10, LOBULAR: 10})
        new.append(t)
    return dataclasses.replace(info, tasks=new, sites=["BRCA"])


def _breast_batch(info, **kw):
    b = make_batch(info=info, **kw)
    b["site"] = ["BRCA"] * len(b["patient_id"])
    return b


def test_text_cls_objective_is_cross_entropy_of_similarity_logits():
    info = _breast_info()
    m = _model(info, kl=0.0, supervised=0.0, text_cls=1.0).eval()
    assert m.cls_output == "text"  # auto: no supervised head -> text-similarity outputs
    b = _breast_batch(info, B=6)
    with torch.no_grad():
        out = m(b)
        _, per = m.loss(b, out)
    s = F.normalize(out["task_embeddings"]["subtype"], dim=1)
    logits = s @ _class_targets(m, "breast", [DUCT, LOBULAR]).T / 0.07
    torch.testing.assert_close(out["outputs"]["subtype"], logits, rtol=1e-4, atol=1e-4)  # cls_output text: the outputs ARE these logits
    expect = F.cross_entropy(logits, b["targets"]["subtype"]["label"])
    assert float(per["subtype"]) == pytest.approx(float(expect), rel=1e-4)
    assert float(per["os"]) == 0.0  # text_cls has no survival term and the other weights are 0
    # it trains: the loss falls over a few steps
    m.train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for step in range(6):
        bb = _breast_batch(info, B=8, seed=step)
        loss, _ = m.loss(bb, m(bb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    # the text-similarity logits are trainable, so the loss can move: measured 1.35 -> 0.10 in 6 steps;
    # halving is a margin far above float noise (a bare '<' could pass by rounding alone)
    assert losses[-1] < 0.5 * losses[0], losses


def test_cls_output_head_vs_text():
    info = _breast_info()
    b = _breast_batch(info, B=4)
    head = _model(info).eval()  # supervised 1 -> auto = head
    text = _model(info, cls_output="text").eval()
    assert head.cls_output == "head" and text.cls_output == "text"
    with torch.no_grad():
        oh, ot = head(b), text(b)
        torch.testing.assert_close(oh["outputs"]["subtype"], head.heads["subtype"](oh["task_embeddings"]["subtype"]))
        torch.testing.assert_close(ot["outputs"]["subtype"], text.text_logits(ot["task_embeddings"]["subtype"], b["site"], "subtype"))
        # with cls_output text and supervised > 0 the CE head is still trained on the task output
        _, per = text.loss(b, ot)
        ce = F.cross_entropy(text.heads["subtype"](ot["task_embeddings"]["subtype"]), b["targets"]["subtype"]["label"])
        kl_only = _model(info, cls_output="text", supervised=0.0).eval()
        _, per_kl = kl_only.loss(b, kl_only(b))
    assert float(per["subtype"]) == pytest.approx(float(per_kl["subtype"]) + float(ce), rel=1e-4)
    with pytest.raises(ConfigError):
        _model(info, cls_output="logits")


def test_cox_head_inside_modaltune():
    from modaltune.losses.survival import cox_partial_likelihood

    info = make_info()
    m = _model(info, survival_head="cox", kl=0.0, supervised=1.0).eval()
    b = make_batch(B=6, info=info)
    b["targets"]["os"]["event"] = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    with torch.no_grad():
        out = m(b)
        _, per = m.loss(b, out)
    risk = out["outputs"]["os"]
    assert risk.shape == (6,)
    expect = cox_partial_likelihood(risk, b["targets"]["os"]["time"], b["targets"]["os"]["event"])
    assert float(per["os"]) == pytest.approx(float(expect), rel=1e-5)
    m.train()
    out = m(b)
    loss, _ = m.loss(b, out)
    loss.backward()
    g = m.heads["os"].parameters().__next__().grad
    assert g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0


def test_compressed_pathway_tokens():
    info = make_info()
    plain = _model(info)
    comp = _model(info, gene_mixer={**SMALL["gene_mixer"], "n_compress": 3}).eval()  # eval: no AlphaDropout
    pset = [s for s in plain.tokenizer.sets if s.name == "rna:pathways"][0]
    cset = [s for s in comp.tokenizer.sets if s.name == "rna:pathways"][0]
    assert pset.n_tokens == 6 and pset.token_names == [f"P{i}" for i in range(6)]  # one named pathway per token
    assert cset.n_tokens == 3 and cset.token_names == ["rna:compressed_0", "rna:compressed_1", "rna:compressed_2"]
    assert comp.tokenizer.n_tokens == plain.tokenizer.n_tokens - 3 and comp.modal_pos.shape[1] == 1 + comp.tokenizer.n_tokens
    b = make_batch(B=3, info=info)
    toks, present = cset(b)
    assert toks.shape == (3, 3, 16) and present.all()
    # the compression is a learned linear map over the pathway axis of the uncompressed tokens
    full = cset.proj(cset.mixer.pathway_tokens(b["omics"]["rna"]))
    torch.testing.assert_close(toks, torch.einsum("bpd,kp->bkd", full, cset.compress.weight) + cset.compress.bias[None, :, None])
    with torch.no_grad():
        assert torch.isfinite(comp(b)["embedding"]).all()


def test_report_text_tokens():
    info = dataclasses.replace(make_info(), text=True, text_modality="text", modalities=make_info().modalities + ["text"])
    m = _model(info).eval()
    assert [s.name for s in m.tokenizer.sets][-1] == "report"
    b = make_batch(B=3, info=info)
    b["text"] = ["Cancer location: breast; Overall stage: stage two.", "Cancer location: breast; Overall stage: stage four.", ""]
    b["modality_mask"]["text"] = torch.tensor([True, True, False])
    rep = m.tokenizer.slices()["report"].start + 1  # +1: the task token comes first
    with torch.no_grad():
        parts = m.task_forward(b, "subtype", return_parts=True)
        assert parts["mask"][:, rep].tolist() == [True, True, False]  # an empty report is masked out
        e1 = m(b)["embedding"]
        b2 = {**b, "text": ["Cancer location: breast; Overall stage: stage one.", b["text"][1], ""]}
        e2 = m(b2)["embedding"]
    assert not torch.allclose(e1[0], e2[0], atol=1e-6)  # patient 0's report reaches its output
    torch.testing.assert_close(e1[1:], e2[1:])  # and nobody else's


def test_task_tokens_follow_the_task_description():
    info = make_info()
    m1 = _model(info).eval()
    changed = []
    for t in info.tasks:
        if t.spec.name == "subtype":
            t = dataclasses.replace(t, spec=t.spec.model_copy(update={"description": "Predict the PAM50 molecular subtype."}))
        changed.append(t)
    m2 = _model(dataclasses.replace(info, tasks=changed)).eval()
    m2.load_state_dict(m1.state_dict())  # same weights: only the description text differs
    b = make_batch(B=3, info=info)
    with torch.no_grad():
        t1 = m1.task_tokens.forward_prompts(["Task: " + (info.tasks[0].spec.description or "predict subtype")])
        t2 = m2.task_tokens.forward_prompts(["Task: Predict the PAM50 molecular subtype."])
        o1, o2 = m1(b), m2(b)
    assert not torch.allclose(t1, t2)
    assert not torch.allclose(o1["task_embeddings"]["subtype"], o2["task_embeddings"]["subtype"], atol=1e-5)
    torch.testing.assert_close(o1["task_embeddings"]["os"], o2["task_embeddings"]["os"])  # the other task is untouched


def _accuracy(m, b, names, truth_to_col):
    with torch.no_grad():
        s = m(b)["task_embeddings"]["subtype"]
        pred = m.score_labels(s, b["site"], names).argmax(1)
    want = torch.tensor([truth_to_col[int(y)] for y in b["targets"]["subtype"]["label"]])
    return float((pred == want).float().mean())


def test_zero_shot_scoring_of_a_trained_model_with_an_unseen_label_name():
    """Known answer: a KL-only model trained on DUCT / LOBULAR sentences, scored on held-out patients
    against [DUCT, an unseen name, LOBULAR] and against unseen paraphrases of both classes."""
    info = _breast_info(tasks=("subtype",))
    kw = {"kl": 1.0, "supervised": 0.0, "out_dim": 64}  # 64-d projected text space: cosines of the 384-d sentence space survive
    untrained = _model(info, **kw).eval()
    m = _model(info, **kw)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    m.train()
    for step in range(40):
        b = _breast_batch(info, B=8, seed=step)
        loss, _ = m.loss(b, m(b))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    held = _breast_batch(info, B=32, seed=999)
    with_unseen = [DUCT, "mucinous carcinoma", LOBULAR]  # the middle name never appeared in training
    acc = _accuracy(m, held, with_unseen, {0: 0, 1: 2})
    acc0 = _accuracy(untrained, held, with_unseen, {0: 0, 1: 2})
    assert acc >= 0.9, acc
    assert acc0 <= 0.75, acc0  # the untrained model cannot do it: the test measures training
    paraphrases = ["ductal carcinoma of the breast", "lobular carcinoma of the breast"]  # neither seen in training
    assert _accuracy(m, held, paraphrases, {0: 0, 1: 1}) >= 0.8
