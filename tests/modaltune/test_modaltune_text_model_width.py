"""ModalTune with a local text encoder of another width (e.g. all-mpnet-base-v2, 768-d, vs the
packaged MiniLM, 384-d): the KL targets, task tokens and projector follow the encoder's width."""
from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sentence_transformers")

from modaltune.data.dataset import CohortPreprocessor, PatientDataset, collate_patients
from modaltune.data.simulate import simulate_cohort
from modaltune.methods import build_method
from modaltune.modaltune import text_targets

SMALL = {"pathways": "builtin", "gene_mixer": {"token_dim": 8, "n_blocks": 1, "channel_hidden": 8}, "backbone_params": {"embed_dim": 16, "depth": 2, "num_heads": 2},
         "attn_dim": 8, "heads": 2, "ffn_dim": 8, "out_dim": 16, "drop_path": 0.0, "protocol": "paper"}
FAKE = "/no/such/dir/fake-sentence-encoder-768"


class Fake768:
    """Stands in for a local 768-d sentence-transformers model: one seeded unit vector per sentence."""

    dim = 768

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, sentences):
        self.seen += list(sentences)
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(int(hashlib.md5(s.encode()).hexdigest()[:8], 16))) for s in sentences]
        return F.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, self.dim)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    c = simulate_cohort(tmp_path_factory.mktemp("tw") / "tiny", preset="tiny", seed=2, n_patients=16)
    ids = list(c.patient_ids)
    pp = CohortPreprocessor(c).fit(ids[:12])
    ds = PatientDataset(c, ids, pp, training=False, max_patches=16)
    return pp, ds


def test_a_768d_local_encoder_flows_through_the_projector(sim, monkeypatch):
    pp, ds = sim
    fake = Fake768()
    monkeypatch.setitem(text_targets._ENCODERS, FAKE, fake)
    torch.manual_seed(0)
    m = build_method("modaltune", pp.info, text_model=FAKE, **SMALL)
    assert tuple(m.projector.weight.shape) == (16, 768)
    # the targets are normalise(P t) of the encoder's 768-d embeddings, unit norm in the 16-d task space
    sents = ["Cancer location: breast; Cancer diagnosis: a.", "Cancer location: breast; Cancer diagnosis: b."]
    z = m.text_targets(sents)
    want = F.normalize(fake.encode(sents) @ m.projector.weight.T, dim=-1)
    torch.testing.assert_close(z, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2), rtol=0, atol=1e-5)
    # a training step: the KL loss is finite, gradients reach the adapter, and the label sentences
    # (and task prompts) were embedded by this encoder, not by the packaged MiniLM
    b = collate_patients([ds[i] for i in range(4)])
    m.train()
    out = m(b)
    loss, _ = m.loss(b, out)
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in m.adapter.parameters() if p.requires_grad)
    assert any("Cancer diagnosis" in s for s in fake.seen) and any("Task:" in s for s in fake.seen)


def test_the_default_encoder_keeps_its_384d_projector(sim):
    pp, _ = sim
    torch.manual_seed(0)
    m = build_method("modaltune", pp.info, **SMALL)
    assert tuple(m.projector.weight.shape) == (16, 384)
