"""``embedding_fusion``: early / late fusion of frozen per-modality embeddings on a CPU.

After "multimodal learning from frozen embeddings in low-resource settings" (a seed paper of the
project): every modality is one frozen vector per patient, fused by a light head.

Blocks (columns of the engine's design matrix, :func:`modaltune.training.trainer.design_matrix`
with ``slide_mean=True``): each omics modality (fold-scaled), the encoded clinical fields and the
slide embedding = mean of the patient's patch features (frozen encoder output, (D,)) followed by one
presence column. Report text is not read yet (see docs/methods.md).

Alignment (``align: true``, the paper's mean-shift): each block's mean over the *training*
patients that have that modality is fitted in :meth:`fit` and subtracted from every patient's
block (training and test alike), closing the offset ("modality gap") between blocks. A patient
missing a modality gets the block's aligned zero (= the training mean), i.e. no evidence.

Fusion:

- ``early``: the aligned blocks are concatenated, ``Z (N, sum_b D_b)``, standardised on the
  training patients, and one head per task is fitted on Z.
- ``late``: one head per block and task on the block alone, ``(N, D_b)``; a patient's output is
  the mean of the outputs of the blocks it has (class probabilities; Cox linear predictors
  z-scored on the training patients), so missing blocks are skipped, not imputed.

Heads: ``linear`` = L2 logistic regression (classification), ridge Cox (survival, scikit-survival
``CoxPHSurvivalAnalysis(alpha)``, fitted in the row space of Z when it has more columns than rows:
:func:`modaltune.evaluation.ridge_cox.fit_ridge_cox`, shared with ``coxnet`` and the Cox probe)
or ridge regression; ``mlp`` = scikit-learn's small MLP
(classification / regression; no survival MLP). Fitted heads are stored as weight arrays only, so
the saved model is plain arrays (no pickled estimator).
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from modaltune.errors import ConfigError, InputError
from modaltune.evaluation.ridge_cox import ridge_cox_coef  # re-exported: the shared exact ridge Cox
from modaltune.methods._tabular import design_layout, task_arrays
from modaltune.methods.base import MethodParams, TabularMethod
from modaltune.methods.registry import register_method

__all__ = ["EmbeddingFusionParams", "EmbeddingFusionMethod", "build_embedding_fusion", "fusion_layout", "ridge_cox_coef"]


class EmbeddingFusionParams(MethodParams):
    """Parameters of ``embedding_fusion``."""

    fusion: Literal["early", "late"] = Field("early", description="early: one head on the concatenated blocks; late: one head per block, outputs averaged over present blocks")
    align: bool = Field(True, description="mean-shift each block by its training-patient mean (fitted on training patients only)")
    head: Literal["linear", "mlp"] = Field("linear", description="linear: logistic / ridge Cox / ridge; mlp: scikit-learn MLP (classification, regression)")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic head")
    alpha: float = Field(1.0, gt=0, description="L2 penalty of the ridge Cox / ridge regression heads and of the MLP")
    hidden: int = Field(32, ge=1, description="MLP hidden width")
    max_iter: int = Field(500, ge=1, description="solver iterations (logistic, MLP)")
    seed: int = Field(0, description="MLP initialisation seed")


def fusion_layout(info: Any) -> dict[str, slice]:
    """``{block: column slice}`` of the design matrix with the slide block appended:
    omics blocks (sorted), ``clinical``, then ``slide`` (slide_dim mean-pooled features) and
    ``slide_present`` (1 column)."""
    layout = design_layout(info)
    start = max((s.stop for s in layout.values()), default=0)
    if getattr(info, "slide_modality", None) and info.slide_dim:
        layout["slide"] = slice(start, start + int(info.slide_dim))
        layout["slide_present"] = slice(start + int(info.slide_dim), start + int(info.slide_dim) + 1)
    return layout


class EmbeddingFusionMethod(TabularMethod):
    """See the module docstring. Shapes: ``X (N, F)`` as :func:`fusion_layout`; ``predict`` ->
    ``{task: (N, C) probabilities | (N,) risk | (N,) value}``."""

    name = "embedding_fusion"

    def __init__(self, info: Any, *, fusion: str = "early", align: bool = True, head: str = "linear", C: float = 1.0, alpha: float = 1.0,
                 hidden: int = 32, max_iter: int = 500, seed: int = 0):
        self.layout = fusion_layout(info)
        self.blocks = [b for b in self.layout if b != "slide_present"]
        if not self.blocks:
            raise ConfigError("embedding_fusion needs at least one of slide, omics or clinical and the cohort gives none", where="method.modalities")
        self.tasks = list(info.tasks)
        if head == "mlp" and any(t.spec.kind == "survival" for t in self.tasks):
            raise ConfigError("embedding_fusion has no MLP survival head", where="method.params.head", fix="use head: linear (ridge Cox) for survival tasks")
        self.fusion, self.align, self.head = fusion, bool(align), head
        self.C, self.alpha, self.hidden, self.max_iter, self.seed = float(C), float(alpha), int(hidden), int(max_iter), int(seed)
        self.width = max(s.stop for s in self.layout.values())
        self.shift: dict[str, np.ndarray] = {}
        self.mean_: dict[str, np.ndarray] = {}
        self.scale_: dict[str, np.ndarray] = {}
        self.heads: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ blocks
    def _present(self, X: np.ndarray, block: str) -> np.ndarray:
        """(N,) bool: the patient has the block's modality (slide: its presence column; omics /
        clinical: a non-zero row, as the engine writes zeros for an absent omics modality)."""
        if block == "slide":
            return X[:, self.layout["slide_present"]].reshape(-1) > 0.5
        return np.abs(X[:, self.layout[block]]).sum(1) > 0

    def _aligned(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """``{block: (N, D_b)}`` after the mean-shift; absent rows are set to the aligned zero."""
        out = {}
        for b in self.blocks:
            z = X[:, self.layout[b]] - self.shift[b]
            z[~self._present(X, b)] = 0.0
            out[b] = z
        return out

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.width:
            raise InputError(f"design matrix has shape {X.shape}, expected (N, {self.width}) = {list(self.layout)}", where="embedding_fusion X",
                             fix="build X with design_matrix(..., slide_mean=True) from the same preprocessor")
        if not np.isfinite(X).all():
            raise InputError(f"design matrix has non-finite values in rows {np.flatnonzero(~np.isfinite(X).all(1))[:5].tolist()}", where="embedding_fusion X")
        return X

    def _inputs(self, Zb: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Head inputs: ``{"early": (N, sum D_b)}`` or ``{block: (N, D_b)}`` (late)."""
        return {"early": np.concatenate([Zb[b] for b in self.blocks], 1)} if self.fusion == "early" else dict(Zb)

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X: np.ndarray, targets: dict[str, Any], info: Any = None) -> EmbeddingFusionMethod:
        X = self._check(X)
        for b in self.blocks:
            have = self._present(X, b)
            # fitted on the training patients (the rows given to fit) that have the modality, only
            self.shift[b] = X[have][:, self.layout[b]].mean(0) if (self.align and have.any()) else np.zeros(self.layout[b].stop - self.layout[b].start)
        inputs = self._inputs(self._aligned(X))
        for k, Z in inputs.items():
            sd = Z.std(0)
            self.mean_[k], self.scale_[k] = Z.mean(0), np.where(sd > 1e-12, sd, 1.0)
        for t in self.tasks:
            y = task_arrays(targets, t.spec.name)
            self.heads[t.spec.name] = {}
            for k, Z in inputs.items():
                rows = y["mask"] & (self._present(X, k) if k in self.blocks else True)
                if rows.sum() < 2:
                    continue  # a block no labelled training patient has cannot vote (late fusion)
                Zs = (Z[rows] - self.mean_[k]) / self.scale_[k]
                self.heads[t.spec.name][k] = self._fit_head(Zs, {n: v[rows[y["mask"]]] for n, v in y.items() if n != "mask"}, t)
            if not self.heads[t.spec.name]:
                raise InputError(f"task '{t.spec.name}': no block has two labelled training patients", where="embedding_fusion")
        return self

    def _fit_head(self, Z: np.ndarray, y: dict[str, np.ndarray], t: Any) -> dict[str, Any]:
        kind = t.spec.kind
        if kind == "classification":
            label = y["label"].astype(int)
            classes = np.unique(label)
            if len(classes) < 2:
                return {"const": np.bincount(label, minlength=int(t.n_classes or len(t.spec.classes))).astype(float)}
            if self.head == "mlp":
                from sklearn.neural_network import MLPClassifier

                m = MLPClassifier((self.hidden,), alpha=self.alpha, max_iter=self.max_iter, random_state=self.seed).fit(Z, label)
                return {"W": [w.copy() for w in m.coefs_], "b": [b.copy() for b in m.intercepts_], "classes": classes}
            from sklearn.linear_model import LogisticRegression

            m = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(Z, label)
            return {"W": [m.coef_.T.copy()], "b": [m.intercept_.copy()], "classes": classes}
        if kind == "survival":
            from sksurv.util import Surv

            s = Surv.from_arrays(event=y["event"].astype(bool), time=y["time"].astype(float))
            coef = ridge_cox_coef(Z, s, self.alpha)
            lp = Z @ coef
            sd = float(lp.std())
            return {"W": [coef.reshape(-1, 1)], "b": [np.zeros(1)], "lp_mean": float(lp.mean()), "lp_scale": sd if sd > 1e-12 else 1.0}
        if self.head == "mlp":
            from sklearn.neural_network import MLPRegressor

            m = MLPRegressor((self.hidden,), alpha=self.alpha, max_iter=self.max_iter, random_state=self.seed).fit(Z, y["value"])
            return {"W": [w.copy() for w in m.coefs_], "b": [b.copy() for b in m.intercepts_]}
        from sklearn.linear_model import Ridge

        m = Ridge(alpha=self.alpha).fit(Z, y["value"])
        return {"W": [m.coef_.reshape(-1, 1)], "b": [np.atleast_1d(m.intercept_).astype(float)]}

    @staticmethod
    def _forward(h: dict[str, Any], Z: np.ndarray) -> np.ndarray:
        """Stored weights -> raw output (N, K): ReLU between layers (sklearn's MLP), none after the last."""
        a = Z
        for i, (W, b) in enumerate(zip(h["W"], h["b"])):
            a = a @ W + b
            if i < len(h["W"]) - 1:
                a = np.maximum(a, 0.0)
        return a

    def _head_output(self, h: dict[str, Any], Z: np.ndarray, t: Any) -> np.ndarray:
        kind = t.spec.kind
        if kind == "classification":
            n_classes = int(t.n_classes or len(t.spec.classes))
            out = np.zeros((Z.shape[0], n_classes))
            if "const" in h:
                out[:] = h["const"] / h["const"].sum()
                return out
            a = self._forward(h, Z)
            if a.shape[1] == 1:  # binary: sigmoid of the one logit
                p1 = 1.0 / (1.0 + np.exp(-a[:, 0]))
                probs = np.stack([1 - p1, p1], 1)
            else:
                e = np.exp(a - a.max(1, keepdims=True))
                probs = e / e.sum(1, keepdims=True)
            out[:, np.asarray(h["classes"], dtype=int)] = probs
            return out
        a = self._forward(h, Z)[:, 0]
        return (a - h["lp_mean"]) / h["lp_scale"] if kind == "survival" else a

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        if not self.heads:
            raise RuntimeError("embedding_fusion.predict called before fit")
        X = self._check(X)
        inputs = self._inputs(self._aligned(X))
        out = {}
        for t in self.tasks:
            num, den = 0.0, np.zeros(X.shape[0])
            for k, h in self.heads[t.spec.name].items():
                o = self._head_output(h, (inputs[k] - self.mean_[k]) / self.scale_[k], t)
                w = (self._present(X, k) if k in self.blocks else np.ones(X.shape[0], bool)).astype(float)
                num = num + o * (w[:, None] if o.ndim == 2 else w)
                den += w
            den = np.where(den > 0, den, 1.0)  # a patient with none of the voting blocks gets the 0 output
            res = num / (den[:, None] if np.ndim(num) == 2 else den)
            if t.spec.kind == "classification" and np.ndim(res) == 2:
                empty = res.sum(1) == 0
                res[empty] = 1.0 / res.shape[1]
            out[t.spec.name] = np.asarray(res, dtype=float) if np.ndim(res) else np.zeros(X.shape[0])
        return out

    def embed(self, X: np.ndarray) -> np.ndarray:
        """The aligned, concatenated blocks (N, sum D_b)."""
        Zb = self._aligned(self._check(X))
        return np.concatenate([Zb[b] for b in self.blocks], 1)


@register_method("embedding_fusion", kind="tabular", modalities=("slide", "omics", "clinical"), params=EmbeddingFusionParams,
                 description="early / late fusion of frozen slide (mean-pooled), omics and clinical embeddings, mean-shift alignment")
def build_embedding_fusion(info: Any, **params: Any) -> EmbeddingFusionMethod:
    """Params: :class:`EmbeddingFusionParams` (validated, defaults filled)."""
    return EmbeddingFusionMethod(info, **params)
