"""One exact ridge Cox fit, shared by every ridge Cox in the package.

Users: ``embedding_fusion``'s Cox head, ``coxnet`` with ``penalty: ridge`` (inner CV and final
fit) and :class:`modaltune.evaluation.probes.CoxProbe`. All three minimise scikit-survival's
``CoxPHSurvivalAnalysis(alpha)`` objective

.. math:: -\\log PL(Z\\beta) + \\tfrac{\\alpha}{2} \\lVert\\beta\\rVert^2

(Breslow or Efron partial likelihood, scalar ``alpha > 0``), so they share one solver path.

Why not call scikit-survival directly: its Newton solver forms a ``p x p`` Hessian per step; on the
MCAT folds (p = 1.4k-2.9k omics columns, n = 298-764 patients) one fold took 281-415 s CPU
(benchmarks/missing_grid/tcga_cost.csv). When ``p > n`` the same model is fitted on ``n`` columns
instead (exact, not an approximation): the partial likelihood depends on beta only through
``Z beta``; write beta = beta_row + beta_null (row space of Z / its orthogonal complement): then
``Z beta_null = 0`` and ``||beta||^2 = ||beta_row||^2 + ||beta_null||^2``, so the unique optimum
has beta_null = 0. With the thin SVD ``Z = U S V^T`` (rank r <= n, V (p, r) orthonormal) and
beta = V gamma, ``Z beta = (U S) gamma`` and ``||beta|| = ||gamma||``: the ridge Cox fitted on
``U S (n, r)`` with the same alpha gives gamma, and beta = V gamma. scikit-survival stays the
solver (same Newton iterations, same tolerance); for ``p <= n`` it is called on ``Z`` unchanged.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from modaltune.errors import ConfigError

__all__ = ["fit_ridge_cox", "ridge_cox_coef", "ridge_cox_fit_bytes", "row_space_rank"]


def ridge_cox_fit_bytes(n: int, p: int) -> int:
    """Estimated peak memory (bytes) of :func:`fit_ridge_cox` on an ``(n, p)`` float64 matrix, for the route it takes.

    * ``p <= n``, the direct scikit-survival fit (``CoxPHSurvivalAnalysis``, Newton-Raphson): ``update`` keeps
      the Hessian, the two risk-set ``p x p`` sums, the per-sample outer product and the ``a``, ``b``, ``a - b``
      temporaries, and ``scipy.linalg.solve`` copies the Hessian: ``(8 p^2 + 2 n p) x 8``. Calibrated with the
      peak RSS growth during ``fit`` (scikit-survival 0.28; n = 60, p = 500 / 1000 / 2000: 16.4 / 62.5 / 246 MiB
      = 8.1 p^2 float64; tracemalloc, numpy only: 7.0 p^2).
    * ``p > n``, the thin SVD route: numpy's ``svd`` holds a copy of ``Z`` and ``V^T`` twice (its work buffer and
      the output), LAPACK's workspace up to one more ``n x p``; then ``U``, ``U S`` and the direct fit on
      ``r <= n`` columns (``8 r^2 + 2 n r``): ``(4 n p + 16 n^2) x 8``. No ``p x p`` term. Calibrated with the
      peak RSS growth (``VmHWM``) of this function (benchmarks/coxnet_guard/calibration.json: 3.1-4.7 n p float64
      for n = 50-800, p = 2k-40k; the estimate covers every point, by 1.04-1.54x).

    >>> round(ridge_cox_fit_bytes(2_000, 1_500) / 2**20, 1)  # direct: p <= n
    183.1
    >>> round(ridge_cox_fit_bytes(92, 12_793) / 2**20, 1)  # SVD route: 37 MiB where the direct fit would need 9.8 GiB
    37.0
    """
    n, p = int(n), int(p)
    if p <= n:
        return 8 * (8 * p * p + 2 * n * p)
    return 8 * (4 * n * p + 16 * n * n)


def row_space_rank(S: np.ndarray, shape: tuple[int, int]) -> int:
    """Number of singular values ``S`` (descending) of an ``(n, p)`` matrix above numpy's rank tolerance.

    Directions with a zero singular value carry no data: their gamma is 0 at the ridge optimum.

    >>> row_space_rank(np.array([3.0, 1.0, 1e-20]), (3, 10))
    2
    """
    if not S.size or not S[0] > 0:
        return 0
    return int((S[0] * max(shape) * np.finfo(float).eps < S).sum())


def fit_ridge_cox(Z: np.ndarray, surv: Any, alpha: float, *, ties: str = "breslow", n_iter: int = 100, tol: float = 1e-9):
    """Fitted scikit-survival ``CoxPHSurvivalAnalysis(alpha, ties, n_iter, tol)`` on ``Z (n, p)`` float.

    ``surv``: structured survival array (``sksurv.util.Surv``), n rows. Returns the estimator with
    ``coef_ (p,)`` on Z's columns and ``n_features_in_ = p``, so ``predict(Z')`` and the Breslow
    baseline (fitted on the linear predictor ``Z beta``, identical in both paths) work as after a
    direct fit. When ``p > n`` it is fitted in the row space of Z (module docstring).

    Raises ConfigError for a non-scalar or non-positive ``alpha`` (the row-space reduction needs the
    isotropic penalty; ``alpha = 0`` has no unique optimum when ``p > n``).
    """
    # looked up at call time (not at import) so tests can substitute the solver
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    if np.ndim(alpha) != 0 or not float(alpha) > 0:
        raise ConfigError(f"ridge Cox alpha must be one number > 0, got {alpha}", where="ridge Cox alpha", fix="give a positive scalar penalty")
    if not isinstance(Z, np.ndarray):  # an ndarray is passed on as is (no copy for p <= n)
        Z = np.asarray(Z, dtype=float)
    n, p = Z.shape
    model = CoxPHSurvivalAnalysis(alpha=float(alpha), ties=ties, n_iter=n_iter, tol=tol)
    if p <= n:
        return model.fit(Z, surv)
    U, S, Vt = np.linalg.svd(Z, full_matrices=False)
    r = row_space_rank(S, (n, p))
    if r == 0:
        # Z = 0: every beta gives the same likelihood, the penalty picks beta = 0
        model.fit(np.zeros((n, 1)), surv)
        gamma, Vr = np.zeros(1), np.zeros((p, 1))
    else:
        model.fit(U[:, :r] * S[:r], surv)
        gamma, Vr = model.coef_, Vt[:r].T
    model.coef_ = Vr @ gamma
    model.n_features_in_ = p
    return model


def ridge_cox_coef(Z: np.ndarray, surv: Any, alpha: float, **kw: Any) -> np.ndarray:
    """Coefficients ``(p,)`` of :func:`fit_ridge_cox` (keyword arguments go to it)."""
    return np.asarray(fit_ridge_cox(Z, surv, alpha, **kw).coef_, dtype=float)
