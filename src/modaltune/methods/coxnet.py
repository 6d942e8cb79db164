"""``coxnet``: penalised Cox proportional-hazards model on tabular features (clinical + omics).

Elastic-net Cox (Simon, Friedman, Hastie & Tibshirani, "Regularization Paths for Cox's
Proportional Hazards Model via Coordinate Descent", J. Stat. Softw. 2011) via scikit-survival's
``CoxnetSurvivalAnalysis``, or ridge Cox via ``CoxPHSurvivalAnalysis(alpha)``. Features: the
fold-scaled omics (optionally reduced to principal components fitted on the training fold) and
encoded clinical fields, standardised on the training fold. The ridge fits (inner CV and final) go through
:func:`modaltune.evaluation.ridge_cox.fit_ridge_cox`, the package's one exact ridge Cox (fitted in the
row space of the features when they outnumber the patients; the same model). On TCGA omics this is the classical
baseline deep survival models must be reported next to (shared/docs/PROTOCOLS.md).

Penalty strength: when ``alpha`` is not given it is chosen by an inner K-fold cross-validation on
the training fold only (folds stratified by event status), maximising the mean Harrell C-index
on the inner validation folds over the regularisation path (ties go to the stronger penalty).
``l1_ratio`` may be a list (as scikit-learn's ``ElasticNetCV``): the mixing is then chosen jointly
with the penalty by the same inner CV (ties go to the first listed ratio), so the choice between
lasso-like and ridge-like fits is made on the training fold, never on the evaluated fold.

Failures are explicit: fewer events than ``min_events`` raises :class:`InputError` naming the
task; a numerically diverging fit raises :class:`InputError` suggesting a stronger penalty.

Memory guard: before any fit the peak memory of the solver is estimated (:func:`cox_fit_bytes`)
and compared with a budget (:func:`cox_memory_budget`: ``max_memory_gb`` and half the RAM available
now, shared by the parallel benchmark units). The estimate is of the route that will run: ridge Cox
with ``p <= n`` keeps dense ``p x p`` Hessians; with ``p > n`` it is fitted on the thin SVD (``n x min(n, p)``,
no ``p x p`` term: 12,793 genes x 92 patients needs about 37 MiB, not the 10 GiB of the direct fit); elastic
net keeps copies of ``X`` and the path. Over the budget, the fit is refused with a one-line :class:`ConfigError`
naming the settings to change, or, with ``on_memory: pca``, fitted on ``n_components`` principal components of the
omics columns (fitted on the training patients). The decision is logged (the run's log) and kept in ``memory_notes``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Literal

import numpy as np
from pydantic import Field

from modaltune.errors import ConfigError, InputError
from modaltune.evaluation.ridge_cox import fit_ridge_cox, ridge_cox_fit_bytes
from modaltune.methods._tabular import TabularParams, TaskTabularMethod
from modaltune.methods.registry import register_method

__all__ = ["CoxnetMethod", "CoxnetParams", "build_coxnet"]


class CoxnetParams(TabularParams):
    """Parameters of ``coxnet`` (+ the feature parameters of :class:`TabularParams`)."""

    penalty: str = Field("elasticnet", description="elasticnet (sksurv CoxnetSurvivalAnalysis) or ridge (CoxPHSurvivalAnalysis)")
    l1_ratio: float | list[float] = Field(0.5, description="elastic-net mixing in (0, 1], or a list chosen by inner CV")
    alpha: float | None = Field(None, description="penalty strength (None: chosen by inner CV)")
    n_alphas: int = Field(30, description="length of the elastic-net alpha path")
    alpha_min_ratio: float = Field(0.01, description="smallest alpha of the path / largest")
    inner_folds: int = Field(3, description="folds of the inner cross-validation")
    min_events: int = Field(5, description="fewest training events a fold may have")
    max_iter: int = Field(100_000, description="coordinate-descent iterations")
    max_memory_gb: float | None = Field(None, gt=0, description="cap (GiB) on one fit's estimated peak memory (None: half the available RAM / workers)")
    on_memory: Literal["refuse", "pca"] = Field("refuse", description="over the memory budget: refuse with a one-line error, or fit on n_components PCs")

log = logging.getLogger("modaltune.training")

_RIDGE_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)

#: benchmark worker processes sharing this machine's RAM (set by the local runner for its workers)
PARALLEL_UNITS_ENV = "MODALTUNE_PARALLEL_UNITS"
_RAM_FRACTION = 0.5  # one fit may take at most half the RAM available now (as the bag memory guard)
_GIB = float(1 << 30)


def cox_fit_bytes(n: int, p: int, penalty: str, n_alphas: int = 30) -> int:
    """Estimated peak memory (bytes) of one fit on an ``(n, p)`` float64 matrix, for the solver route that will run.

    * ``ridge``: :func:`~modaltune.evaluation.ridge_cox.ridge_cox_fit_bytes`, the route ``fit_ridge_cox``
      takes: the direct Newton fit with its ``p x p`` Hessians when ``p <= n`` (``(8 p^2 + 2 n p) x 8``), the
      thin SVD when ``p > n`` (``(4 n p + 16 n^2) x 8``, no ``p x p`` term).
    * ``elasticnet`` (``CoxnetSurvivalAnalysis``, coordinate descent in C++): copies of ``X`` and the
      coefficient path, no ``p x p`` term: peak ``~ (3 n p + p n_alphas) x 8`` bytes.

    Calibrated with ``resource.getrusage`` (peak RSS growth during ``fit``) on random data, scikit-survival
    0.28 (ridge: see ``ridge_cox_fit_bytes``); elastic net, p = 8000, n = 50 / 100 / 200: 9.4 / 18.5 / 36.9 MiB
    = 3.0 n p float64. For the 12,793 genes x 92 patients ridge fit of issue 12 the direct fit would need 9.8 GiB
    (11 GB seen before the SVD route); the SVD route that now runs needs about 37 MiB.

    >>> round(cox_fit_bytes(92, 12_793, "ridge") / 2**20, 1)
    37.0
    >>> round(cox_fit_bytes(2_000, 1_500, "ridge") / 2**20, 1)
    183.1
    >>> round(cox_fit_bytes(200, 20_000, "elasticnet") / 2**20, 1)
    96.1
    """
    n, p = int(n), int(p)
    if penalty == "ridge":
        return ridge_cox_fit_bytes(n, p)
    return 8 * (3 * n * p + p * int(n_alphas))


def _parallel_units() -> int:
    """Benchmark units running side by side on this machine (``$MODALTUNE_PARALLEL_UNITS``, else 1)."""
    try:
        return max(1, int(os.environ.get(PARALLEL_UNITS_ENV, "1")))
    except ValueError:
        return 1


def cox_memory_budget(max_memory_gb: float | None = None) -> tuple[float | None, str]:
    """(bytes one Cox fit may use, where that number comes from); ``(None, ...)`` = no known limit.

    The smaller of ``max_memory_gb`` (GiB) and half the RAM available now (``MemAvailable``) divided
    by the parallel benchmark units (:data:`PARALLEL_UNITS_ENV`): several units fitting at once
    each see the same free memory before any of them allocates.
    """
    from modaltune.data.bags import _available_ram_bytes

    limits: list[tuple[float, str]] = []
    if max_memory_gb is not None:
        limits.append((float(max_memory_gb) * _GIB, "method.params.max_memory_gb"))
    avail = _available_ram_bytes()
    if avail is not None:
        units = _parallel_units()
        share = f" / {units} parallel units" if units > 1 else ""
        limits.append((avail * _RAM_FRACTION / units, f"half the available RAM ({avail / _GIB:.3g} GiB){share}"))
    if not limits:
        return None, "no memory information"
    return min(limits, key=lambda t: t[0])


def _surv(time: np.ndarray, event: np.ndarray):
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, dtype=float))


def _cindex(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C (NaN when the fold has no comparable pair)."""
    from sksurv.metrics import concordance_index_censored

    try:
        return float(concordance_index_censored(event.astype(bool), time, risk)[0])
    except (ValueError, ZeroDivisionError):
        return float("nan")


class CoxnetMethod(TaskTabularMethod):
    """Penalised Cox on each survival task; ``predict`` returns the linear predictor (risk, higher = earlier event).

    Args (besides those of :class:`~modaltune.methods._tabular.TaskTabularMethod`):
        penalty: ``elasticnet`` (Coxnet) or ``ridge`` (CoxPH with an L2 penalty).
        l1_ratio: elastic-net mixing (1 = lasso) or a list of them to choose from by inner CV;
            only for ``elasticnet``.
        alpha: fixed penalty strength; None = choose by inner CV on the training fold.
        n_alphas, alpha_min_ratio: the Coxnet regularisation path searched by the inner CV.
        inner_folds: folds of the inner CV.
        min_events: fewest events a training fold may have (otherwise InputError).
        max_iter: coordinate-descent iterations of Coxnet.
        max_memory_gb: cap (GiB) on the estimated peak memory of one fit; None = half the RAM
            available, shared by parallel units (see :func:`cox_memory_budget`).
        on_memory: what to do when the estimate exceeds the budget: ``refuse`` (ConfigError naming
            the settings; default, so a result row always means the configured model) or ``pca``
            (fit on ``n_components`` principal components of the omics columns, logged).
    """

    name = "coxnet"
    kinds = ("survival",)

    def __init__(
        self,
        info: Any,
        *,
        penalty: str = "elasticnet",
        l1_ratio: float | list[float] = 0.5,
        alpha: float | None = None,
        n_alphas: int = 30,
        alpha_min_ratio: float = 0.01,
        inner_folds: int = 3,
        min_events: int = 5,
        max_iter: int = 100_000,
        max_memory_gb: float | None = None,
        on_memory: str = "refuse",
        **features: Any,
    ):
        super().__init__(info, **features)
        if on_memory not in ("refuse", "pca"):
            raise ConfigError(f"unknown on_memory '{on_memory}'", where="method.params.on_memory", fix="use 'refuse' or 'pca'")
        if max_memory_gb is not None and not float(max_memory_gb) > 0:
            raise ConfigError(f"max_memory_gb must be > 0, got {max_memory_gb}", where="method.params.max_memory_gb", fix="leave it unset for half the available RAM")
        self.max_memory_gb, self.on_memory = (None if max_memory_gb is None else float(max_memory_gb)), on_memory
        #: the memory guard's decision (estimate, budget, action), also written to the log
        self.memory_notes: str = ""
        if penalty not in ("elasticnet", "ridge"):
            raise ConfigError(f"unknown Cox penalty '{penalty}'", where="method.params.penalty", fix="use 'elasticnet' or 'ridge'")
        ratios = [float(r) for r in (l1_ratio if isinstance(l1_ratio, (list, tuple)) else [l1_ratio])]
        if not ratios or not all(0.0 < r <= 1.0 for r in ratios):
            raise ConfigError(f"l1_ratio must be in (0, 1] (or a non-empty list of such), got {l1_ratio}", where="method.params.l1_ratio", fix="use penalty: ridge for a pure L2 penalty")
        if inner_folds < 2:
            raise ConfigError(f"inner_folds must be >= 2, got {inner_folds}", where="method.params.inner_folds")
        self.penalty, self.l1_ratios, self.alpha = penalty, tuple(ratios), alpha
        self.l1_ratio = self.l1_ratios[0]
        if alpha is not None and len(ratios) > 1:
            raise ConfigError("a list of l1_ratio values is chosen by inner CV together with alpha", where="method.params.alpha", fix="leave alpha unset, or give one l1_ratio")
        self.n_alphas, self.alpha_min_ratio, self.inner_folds = int(n_alphas), float(alpha_min_ratio), int(inner_folds)
        self.min_events, self.max_iter = int(min_events), int(max_iter)
        self.chosen_alpha: dict[str, float] = {}
        self.chosen_l1_ratio: dict[str, float] = {}
        #: inner-CV mean C per penalty strength, for the chosen l1_ratio
        self.cv_scores: dict[str, dict[float, float]] = {}
        #: inner-CV mean C per l1_ratio and penalty strength (elastic net)
        self.cv_scores_by_l1: dict[str, dict[float, dict[float, float]]] = {}
        #: per task: how the regularisation path was shortened where weak penalties diverged
        self.path_notes: dict[str, str] = {}

    # -- memory guard -----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, targets: dict[str, Any], info: Any = None) -> CoxnetMethod:
        self._memory_guard(int(np.shape(X)[0]))
        return super().fit(X, targets, info)

    def _memory_guard(self, n: int) -> None:
        """Estimate the peak of one fit on ``n`` training rows and refuse or switch to PCA if over budget.

        Runs before any feature fitting or solver call, so a refused unit costs no time.
        """
        p = self.features.output_width(n)
        need = cox_fit_bytes(n, p, self.penalty, self.n_alphas)
        if self.penalty == "ridge" and self.alpha is None and p <= n:
            # the inner-CV fits train on fewer rows; below p rows they take the SVD route, whose cost grows with the
            # rows: bounded by the largest inner training fold (k <= inner_folds stratified folds: at most
            # n - floor(n / inner_folds) + 1 rows) or p - 1, whichever is smaller
            m = min(p - 1, n - n // self.inner_folds + 1)
            if m > 0:
                need = max(need, ridge_cox_fit_bytes(m, p))
        budget, source = cox_memory_budget(self.max_memory_gb)
        route = (" (thin-SVD route, p > n)" if p > n else " (direct fit, p x p Hessian)") if self.penalty == "ridge" else ""
        what = f"coxnet {self.penalty} on {p} features x {n} patients needs about {need / _GIB:.3g} GiB per fit{route}"
        if budget is None or need <= budget:
            self.memory_notes = what + (f" (budget {budget / _GIB:.3g} GiB: {source}): fitted as configured" if budget else ": no memory information, fitted as configured")
            log.info(self.memory_notes)
            return
        over = f"{what}, over the budget of {budget / _GIB:.3g} GiB ({source})"
        pca_p = self.features.output_width(n, use_pca=True)
        if self.on_memory == "pca" and not self.features.use_pca and pca_p < p:
            self.features.use_pca = True
            self.memory_notes = f"{over}: switched to PCA ({pca_p} features, method.params.n_components) as method.params.on_memory: pca asks"
            log.warning(self.memory_notes)
            return
        self.memory_notes = over + ": refused"
        log.warning(self.memory_notes)
        # offer elastic net only where its own estimate fits the budget (the fix names only what would change something)
        elastic = self.penalty == "ridge" and cox_fit_bytes(n, p, "elasticnet", self.n_alphas) <= budget
        raise ConfigError(
            over,
            where="method.params",
            fix=("set use_pca: true (n_components: 16) or on_memory: pca, " if not self.features.use_pca else "lower n_components, ")
            + "pick fewer columns with modalities"
            + (", or use penalty: elasticnet (no p x p matrix)" if elastic else "")
            + "; raise max_memory_gb only if the machine has that memory",
        )

    # -- estimators ------------------------------------------------------------------------------
    def _coxnet(self, alphas=None, l1_ratio: float | None = None):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        kw: dict[str, Any] = {"l1_ratio": self.l1_ratio if l1_ratio is None else l1_ratio, "max_iter": self.max_iter}
        if alphas is None:
            kw.update(n_alphas=self.n_alphas, alpha_min_ratio=self.alpha_min_ratio)
        else:
            kw["alphas"] = list(alphas)
        return CoxnetSurvivalAnalysis(**kw)

    @staticmethod
    def _ridge(alpha: float, Z: np.ndarray, time: np.ndarray, event: np.ndarray):
        """Fitted ridge Cox (``CoxPHSurvivalAnalysis(alpha, ties="breslow")``) through the shared exact
        helper, which fits in the row space of Z when there are more columns than patients."""
        return fit_ridge_cox(Z, _surv(time, event), float(alpha), ties="breslow")

    def _guard(self, fn, task: str):
        try:
            return fn()
        except ArithmeticError as exc:
            raise InputError(
                f"penalised Cox fit diverged on task '{task}' ({exc})",
                where="method coxnet",
                fix="raise alpha / alpha_min_ratio, use use_pca: true, or penalty: ridge",
            ) from exc

    def _inner_folds(self, time: np.ndarray, event: np.ndarray):
        from sklearn.model_selection import StratifiedKFold

        k = max(2, min(self.inner_folds, int(event.sum())))
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.seed)
        # stratify by event status when both groups can fill every fold
        strat = event.astype(int) if min(event.sum(), (1 - event).sum()) >= k else np.zeros(len(event), dtype=int)
        return list(skf.split(np.zeros((len(event), 1)), strat))

    def _fit_path(self, Z, time, event, task: str, l1_ratio: float, alphas=None):
        """Coxnet over a regularisation path, shortened at its weak-penalty end if the fit diverges there.

        Coordinate descent diverges when a weak penalty lets weights grow without bound (p close to or
        above the number of events); glmnet stops such a path early. Here the automatic path is refitted
        with a larger ``alpha_min_ratio`` (up to 0.5), an explicit one loses its weakest alphas; the
        shortened path is recorded in ``path_notes``. Raises InputError if even the strongest penalties diverge.
        """
        y = _surv(time, event)
        if alphas is None:
            ratios = [r for r in (self.alpha_min_ratio, 0.05, 0.1, 0.2, 0.5) if r >= self.alpha_min_ratio]
            for i, r in enumerate(ratios):
                try:
                    from sksurv.linear_model import CoxnetSurvivalAnalysis

                    m = CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, n_alphas=self.n_alphas, alpha_min_ratio=r, max_iter=self.max_iter).fit(Z, y)
                except ArithmeticError:
                    if i == len(ratios) - 1:
                        raise
                    continue
                if i:
                    self.path_notes[task] = f"path diverged below alpha_min_ratio {ratios[i - 1]}; searched down to {r}"
                    log.warning("coxnet task '%s': %s", task, self.path_notes[task])
                return m
        alphas = np.sort(np.asarray(alphas, dtype=float))[::-1]
        while True:
            try:
                return self._coxnet(alphas, l1_ratio).fit(Z, y)
            except ArithmeticError:
                if len(alphas) <= 1:
                    raise
                alphas = alphas[: max(1, int(len(alphas) * 0.8))]  # drop the weakest fifth

    def _path_scores(self, Z, time, event, folds, task: str, l1_ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """(path, mean inner-CV C per path entry; -inf where no inner fold gave a value)."""
        if self.penalty == "elasticnet":
            path = self._guard(lambda: self._fit_path(Z, time, event, task, l1_ratio), task).alphas_
        else:
            path = np.array(_RIDGE_GRID)
        scores = np.full((len(folds), len(path)), np.nan)
        for f, (tr, va) in enumerate(folds):
            if event[tr].sum() < 1:
                continue
            if self.penalty == "elasticnet":
                try:
                    m = self._fit_path(Z[tr], time[tr], event[tr], task, l1_ratio, alphas=path)
                except ArithmeticError:
                    continue
                fitted = set(np.round(m.alphas_, 12))
                for j, a in enumerate(path):
                    if round(float(a), 12) not in fitted:  # beyond the part of the path this inner fold converged on
                        continue
                    scores[f, j] = _cindex(time[va], event[va], m.predict(Z[va], alpha=a))
            else:
                for j, a in enumerate(path):
                    try:
                        m = self._ridge(a, Z[tr], time[tr], event[tr])
                        scores[f, j] = _cindex(time[va], event[va], m.predict(Z[va]))
                    except (ArithmeticError, ValueError, np.linalg.LinAlgError):
                        pass
        with np.errstate(all="ignore"):
            mean = np.nanmean(np.where(np.isnan(scores).all(0, keepdims=True), -np.inf, scores), axis=0)
        return np.asarray(path, dtype=float), mean

    def _inner_cv(self, Z: np.ndarray, time: np.ndarray, event: np.ndarray, task: str) -> tuple[float, float]:
        """Choose (alpha, l1_ratio) by inner CV on the training fold."""
        folds = self._inner_folds(time, event)
        ratios = self.l1_ratios if self.penalty == "elasticnet" else (self.l1_ratio,)
        best: tuple[float, float, float] | None = None  # (score, alpha, l1_ratio)
        by_l1: dict[float, dict[float, float]] = {}
        for r in ratios:
            path, mean = self._path_scores(Z, time, event, folds, task, r)
            by_l1[r] = {float(a): float(v) for a, v in zip(path, mean)}
            if not np.isfinite(mean).any():
                cand = (-np.inf, float(path[len(path) // 2]), r)
            else:
                top = np.flatnonzero(mean >= np.nanmax(mean) - 1e-12)
                cand = (float(np.nanmax(mean)), float(max(path[top])), r)  # ties: the stronger penalty
            if best is None or cand[0] > best[0] + 1e-12:  # ties across ratios: the first listed
                best = cand
        assert best is not None
        self.cv_scores_by_l1[task] = by_l1
        self.cv_scores[task] = by_l1[best[2]]
        return best[1], best[2]

    def _fit_task(self, Z: np.ndarray, y: dict[str, np.ndarray], task_info: Any) -> Any:
        task = task_info.spec.name
        time, event = y["time"].astype(float), y["event"].astype(float)
        n_events = int(event.sum())
        if n_events < self.min_events:
            raise InputError(
                f"task '{task}': the training fold has {n_events} events among {len(event)} labelled patients; penalised Cox needs at least {self.min_events}",
                where=f"task '{task}'",
                fix="use fewer folds, a cohort with more events, or lower method.params.min_events",
            )
        if self.alpha is not None:
            alpha, ratio = float(self.alpha), self.l1_ratio
        else:
            alpha, ratio = self._inner_cv(Z, time, event, task)
        self.chosen_alpha[task], self.chosen_l1_ratio[task] = alpha, ratio
        if self.penalty == "elasticnet":
            path = self.cv_scores_by_l1.get(task, {}).get(ratio)
            # a chosen alpha is fitted along its path, from the strongest penalty down (warm starts):
            # a cold start at a weak penalty can diverge where the path converged (last alpha = prediction)
            alphas = sorted((a for a in path if a >= alpha), reverse=True) if path else [alpha]
            return self._guard(lambda: self._coxnet(alphas, ratio).fit(Z, _surv(time, event)), task)
        return self._guard(lambda: self._ridge(alpha, Z, time, event), task)

    def _predict_task(self, model: Any, Z: np.ndarray, task_info: Any) -> np.ndarray:
        return np.asarray(model.predict(Z), dtype=float)


@register_method("coxnet", kind="tabular", modalities=("omics", "clinical"), params=CoxnetParams,
                 description="penalised (elastic-net / ridge) Cox on clinical + omics, optional PCA")
def build_coxnet(info: Any, **params: Any) -> CoxnetMethod:
    """Params: :class:`CoxnetParams` (validated, defaults filled; memory guard: ``max_memory_gb``, ``on_memory``)."""
    return CoxnetMethod(info, **params)
