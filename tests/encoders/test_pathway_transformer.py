"""The pathway-token RNA backbone: layer-group contract, known-answer token embedding, the Modal
Adapter on it (starts as the frozen model; frozen weights stay bit-identical), and pretraining that
refuses evaluated-cohort patients."""
from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.adapters.modal_adapter import ModalAdapter
from modaltune.encoders.slide import create_slide_encoder, pathway_rows
from modaltune.encoders.slide.pathway_transformer import padded_gene_index
from modaltune.errors import ConfigError, InputError
from modaltune.modaltune.rna_backbone import (
    EVAL_COHORTS,
    PRETRAIN_COHORTS,
    load_backbone,
    pretrain_rna_backbone,
    pretraining_set,
    save_backbone,
)

GENE_INDEX = [[0, 1, 2], [2, 3], [4, 5, 6, 7], [1]]  # 4 pathways over 8 genes; gene 2 and 1 shared
TOL = 1e-5  # float32 paths that differ only in operation order


def _enc(depth: int = 3, **kw):
    torch.manual_seed(0)
    return create_slide_encoder("pathway_transformer", gene_index=GENE_INDEX, n_genes=8, embed_dim=16, depth=depth, num_heads=2, dropout=0.0, **kw).eval()


def test_pathway_rows_known_answer():
    x = np.arange(1, 9, dtype=np.float32)[None]  # genes 0..7 hold 1..8
    r = pathway_rows(x, padded_gene_index(GENE_INDEX, 8))
    assert r.shape == (1, 4, 4)
    assert r[0].tolist() == [[1, 2, 3, 0], [3, 4, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0]]


def test_token_is_scaled_sum_of_gene_embeddings():
    enc = _enc()
    x = torch.randn(2, 8)
    tok = enc.pathway_tokens(enc.rows(x))
    E = enc.gene_embed.weight.detach()
    want = (x[:, 2, None] * E[2] + x[:, 3, None] * E[3]) / math.sqrt(2)  # pathway 1 = genes {2, 3}
    assert torch.allclose(tok[:, 1], want, atol=TOL)
    assert torch.count_nonzero(E[8]) == 0  # the padding row stays zero


def test_stage_api_equals_forward_and_layout():
    enc = _enc()
    rows = enc.rows(torch.randn(3, 8))
    state = enc.embed(rows)
    assert state.tokens.shape == (3, 1 + 4, 16) and state.num_prefix == 1 and state.mask is None
    staged = enc.pool(enc.run_layers(state, 0, enc.num_layers))
    assert torch.allclose(staged, enc(rows), atol=TOL)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3).filter(lambda s: len(s) == len(set(s))))
def test_any_consecutive_groups_chain_to_the_full_stack(cuts):
    enc = _enc(depth=4)
    rows = enc.rows(torch.randn(2, 8))
    bounds = [0, *sorted(cuts), 4]
    s = enc.embed(rows)
    for a, b in itertools.pairwise(bounds):
        s = enc.run_layers(s, a, b)
    assert torch.allclose(enc.pool(s), enc(rows), atol=TOL)


def test_wrong_bag_shape_and_partial_mask_refused():
    enc = _enc()
    with pytest.raises(InputError, match="one row per pathway"):
        enc.embed(torch.randn(2, 5, enc.in_dim))
    rows = enc.rows(torch.randn(2, 8))
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[0, 3] = False  # right padding: a valid layout for slides, refused here
    with pytest.raises(InputError, match="every pathway row is a token"):
        enc.embed(rows, mask=mask)
    with pytest.raises(ConfigError, match="pathway 1 has no gene"):
        padded_gene_index([[0], []], 3)


def test_adapter_starts_as_frozen_backbone_and_backbone_stays_frozen():
    enc = _enc()
    ad = ModalAdapter(enc, [[0, 0], [1, 1], [2, 2]], attn_dim=16, heads=2, ffn_dim=16, extra_extractors=1, drop_path=0.0)
    rows = enc.rows(torch.randn(4, 8))
    c = torch.randn(4, 3, 16)
    with torch.no_grad():
        img, _ = ad(rows, None, c, None)
        assert torch.allclose(img, enc(rows), atol=TOL)  # zero gates: exactly the frozen model
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    opt = torch.optim.SGD(ad.trainable_parameters(), lr=0.5)
    gate0 = ad.injectors[0].gamma.detach().clone()
    for _ in range(3):
        img, cc = ad(rows, None, c, None)
        loss = (img ** 2).sum() + (cc ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not p.requires_grad for p in enc.parameters())
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    assert not torch.equal(gate0, ad.injectors[0].gamma.detach())  # the adapter did move
    ad.train()
    assert not enc.training  # frozen backbone kept in eval mode


def _fake_cohort(name, ids, genes=("g0", "g1", "g2")):
    rng = np.random.default_rng(len(name))
    rna = pd.DataFrame(rng.standard_normal((len(ids), len(genes))), index=ids, columns=list(genes))
    return SimpleNamespace(name=name, omics={"rna": rna}, patients=pd.DataFrame(index=ids))


def test_pretraining_refuses_evaluated_patients_and_cohorts():
    pre = [_fake_cohort("blca", ["A", "B"]), _fake_cohort("hnsc", ["C", "D"])]
    ds = pretraining_set(pre, [_fake_cohort("brca", ["E", "F"])])
    assert ds.patient_ids == ["A", "B", "C", "D"] and ds.site.tolist() == [0, 0, 1, 1] and ds.x.shape == (4, 3)
    with pytest.raises(InputError, match="patient D of an evaluated cohort"):
        pretraining_set(pre, [_fake_cohort("brca", ["D", "E"])])
    with pytest.raises(ConfigError, match="both pretrained on and evaluated"):
        pretraining_set(pre, [_fake_cohort("hnsc", ["X"])])


def test_registered_cohort_lists_share_no_patient(shared_dir):
    """The real tables: no TCGA case of an evaluated cohort appears in a pretraining cohort."""
    root = shared_dir / "data" / "tcga" / "porpoise" / "datasets_csv_mutsig"
    src = {"nsclc": ("luad", "lusc"), "rcc": ("kirc", "kirp")}

    def ids(c):
        return set(pd.read_csv(root / f"tcga_{c}_all_clean.csv.zip", compression="zip", usecols=["case_id"])["case_id"])

    pre = set().union(*(ids(c) for c in PRETRAIN_COHORTS))
    ev = set().union(*(ids(s) for c in EVAL_COHORTS for s in src.get(c, (c,))))
    assert len(pre) > 2000 and len(ev) > 2500
    assert not pre & ev
    assert not set(PRETRAIN_COHORTS) & set(EVAL_COHORTS)


def test_pretrain_save_load_roundtrip(tmp_path):
    pre = [_fake_cohort("blca", [f"a{i}" for i in range(24)], genes=[f"g{k}" for k in range(8)]),
           _fake_cohort("hnsc", [f"b{i}" for i in range(24)], genes=[f"g{k}" for k in range(8)])]
    ds = pretraining_set(pre, [])
    enc, hist = pretrain_rna_backbone(ds, GENE_INDEX, encoder_params={"embed_dim": 16, "depth": 2, "num_heads": 2}, epochs=2, batch_size=16)
    assert len(hist) == 2 and all(np.isfinite(h["val_recon_mse"]) for h in hist)
    assert not enc.training and all(not p.requires_grad for p in enc.parameters())
    save_backbone(enc, tmp_path, genes=ds.genes, pathway_names=["p0", "p1", "p2", "p3"], info={"history": hist})
    enc2, meta = load_backbone(tmp_path)
    rows = enc.rows(torch.from_numpy(ds.x[:5]))
    assert torch.equal(enc(rows), enc2(rows))  # same code path, same weights
    assert meta["genes"] == ds.genes and enc2.weights_source.endswith("backbone.pt")
    with pytest.raises(InputError, match="no backbone.json"):
        load_backbone(tmp_path / "nothing")
