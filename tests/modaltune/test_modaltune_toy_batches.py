"""ModalTune on hand-made ragged batches: patients without a slide, padding invariance, every modality missing."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("sentence_transformers")
from modaltune.methods import build_method
from modaltune.testing.batches import make_batch, make_info

SMALL = {"gene_mixer": {"token_dim": 8, "n_blocks": 1, "channel_hidden": 8}, "backbone_params": {"embed_dim": 16, "depth": 2, "num_heads": 2},
         "attn_dim": 8, "heads": 2, "ffn_dim": 8, "out_dim": 16, "drop_path": 0.0, "block_tokens": 2}


def test_missing_slide_padding_and_all_missing():
    info = make_info()
    torch.manual_seed(0)
    m = build_method("modaltune", info, **SMALL).eval()
    assert [s.name for s in m.tokenizer.sets] == ["rna:pathways", "cnv:block", "clinical"]
    batch = make_batch(B=5, info=info, missing={"slide": [4], "rna": [3], "cnv": [3], "clinical": [3, 4]})
    with torch.no_grad():
        out = m(batch)
    assert out["embedding"].shape == (5, 32) and torch.isfinite(out["embedding"]).all()
    assert out["outputs"]["subtype"].shape == (5, 2) and out["outputs"]["os"].shape == (5, 4)
    # patient 4 has no slide: its image part is the learned missing vector, independent of its (garbage) bag
    b2 = {**batch, "slide": {**batch["slide"], "features": batch["slide"]["features"].clone()}}
    b2["slide"]["features"][4] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(m(b2)["embedding"][4], out["embedding"][4])
    # padding: appending padded patches with garbage features changes nothing
    s = batch["slide"]
    pad = {**batch, "slide": {"features": torch.cat([s["features"], torch.full_like(s["features"][:, :3], 7.0)], 1),
                              "coords": torch.cat([s["coords"], s["coords"][:, :3]], 1), "mask": torch.cat([s["mask"], torch.zeros_like(s["mask"][:, :3])], 1)}}
    with torch.no_grad():
        torch.testing.assert_close(m(pad)["embedding"], out["embedding"], rtol=1e-4, atol=1e-5)
    # losses stay finite with a patient missing everything but the slide, and gradients reach the adapter
    m.train()
    out = m(batch)
    loss, per = m.loss(batch, out)
    loss.backward()
    assert torch.isfinite(loss) and set(per) == {"subtype", "os"}


def test_task_embeddings_protocol_modaltune_overrides_the_shared_default():
    info = make_info()
    torch.manual_seed(0)
    m = build_method("modaltune", info, **SMALL).eval()
    base = build_method("mean_pool", info).eval()
    batch = make_batch(B=3, info=info)
    with torch.no_grad():
        own, out = m.task_embeddings(batch), m(batch)
        shared = base.task_embeddings(batch)
    cols = m.task_embedding_columns()
    assert list(own) == list(cols) == ["subtype", "os"]
    for t, sl in cols.items():  # each task's columns of the concatenated embedding are its own embedding
        assert own[t].shape == (3, 16)
        torch.testing.assert_close(out["embedding"][:, sl], own[t])
    assert base.task_embedding_columns() is None
    assert shared["subtype"] is shared["os"] and shared["os"].shape == (3, base.embed_dim)
