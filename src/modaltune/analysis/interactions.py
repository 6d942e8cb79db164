"""PID of two modalities of a cohort about one task ("will fusion help?").

Pipeline (all unsupervised except the last step):

1. each modality -> a patient x feature matrix: an omics table as is, the clinical fields through
   :class:`~modaltune.data.clinical.ClinicalEncoder`, slide bags as the mean patch feature;
2. standardise, PCA to ``n_components``, k-means to ``n_clusters`` ids, **fitted without labels**
   (as the paper discretises its features before the CVX estimator);
3. the task -> a discrete label: classification classes; survival -> **event by the horizon**
   (1 = event at or before ``horizon``, 0 = followed beyond it; censored before it: left out);
4. :func:`~modaltune.analysis.pid.pid_from_labels` on patients with both modalities and a label,
   a basic bootstrap interval over patients (clusters kept fixed) and a label-permutation null
   (the plug-in estimate's bias: what the same table gives when the label carries no information).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modaltune.errors import InputError

from .pid import PIDResult, joint_counts, pid_from_counts

__all__ = ["PARTS", "InteractionResult", "analyse_interactions", "bootstrap_pid", "discretise", "modality_matrix", "task_labels"]

PARTS = ("redundancy", "unique_1", "unique_2", "synergy", "total")


@dataclass
class InteractionResult:
    """PID of ``modalities[0]`` (1) and ``modalities[1]`` (2) about ``task``; values in bits.

    ``ci`` maps each part to its (low, high) basic bootstrap interval; ``null`` to the mean over label
    permutations. ``label_note`` says how the task became a discrete label.
    """

    cohort: str
    task: str
    modalities: tuple[str, str]
    estimate: PIDResult
    ci: dict[str, tuple[float, float]]
    null: dict[str, float]
    n_clusters: tuple[int, int]
    label_note: str
    n_boot: int
    n_permutations: int
    label_entropy: float
    settings: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per part: estimate, CI low/high, permutation null, estimate minus null, share of H(Y)."""
        m1, m2 = self.modalities
        names = {"redundancy": "redundancy", "unique_1": f"unique to {m1}", "unique_2": f"unique to {m2}", "synergy": "synergy", "total": f"I({m1},{m2}; Y)"}
        rows = []
        for p in PARTS:
            v = getattr(self.estimate, p)
            lo, hi = self.ci.get(p, (float("nan"), float("nan")))
            null = self.null.get(p, float("nan"))
            rows.append({"part": p, "name": names[p], "bits": v, "ci_low": lo, "ci_high": hi, "null_bits": null, "excess_bits": v - null,
                         "share_of_H(Y)": v / self.label_entropy if self.label_entropy > 0 else float("nan")})
        return pd.DataFrame(rows)

    def as_dict(self) -> dict[str, Any]:
        return {"cohort": self.cohort, "task": self.task, "modalities": list(self.modalities), "n_patients": self.estimate.n,
                "n_clusters": list(self.n_clusters), "label": self.label_note, "label_entropy_bits": self.label_entropy,
                "estimate": self.estimate.as_dict(), "ci": {k: list(v) for k, v in self.ci.items()}, "null": self.null,
                "n_boot": self.n_boot, "n_permutations": self.n_permutations, "settings": self.settings, "units": "bits"}


# ---------------------------------------------------------------------------- modality -> matrix
def modality_matrix(cohort, name: str) -> pd.DataFrame:
    """Patient x feature matrix (index ``patient_id``, float) of modality ``name`` for the patients that have it.

    Omics: the table itself. Clinical: the encoded declared fields (one-hot / scaled / missing flags).
    Slides: the mean patch feature over the patient's slides (a label-free patient summary).
    """
    kinds = {m.name: m.kind for m in cohort.modalities}
    if name not in kinds:
        raise InputError(f"cohort '{cohort.name}' has no modality '{name}'", where="--modality", fix=f"use two of {sorted(kinds)}")
    kind = kinds[name]
    if kind == "omics" or name in cohort.omics:
        df = cohort.omics[name]
        return df.apply(pd.to_numeric, errors="coerce").astype(float)
    if kind == "clinical":
        from modaltune.data.clinical import ClinicalEncoder

        clin = cohort.clinical
        enc = ClinicalEncoder(cohort.manifest.clinical_fields).fit(clin)
        return pd.DataFrame(enc.transform(clin), index=clin.index, columns=enc.feature_names).astype(float)
    if kind == "slide":
        from modaltune.data.bags import load_patient_bag

        rows = {}
        for pid, g in cohort.slides.groupby("patient_id"):
            bag = load_patient_bag([cohort.resolve_path(p) for p in g["path"]])
            rows[str(pid)] = np.asarray(bag.features, dtype=np.float64).mean(axis=0)
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("patient_id")
    raise InputError(f"modality '{name}' is of kind '{kind}', which the interaction analysis does not read", where="--modality",
                     fix="use omics, clinical or slide modalities")


def discretise(x: np.ndarray, n_clusters: int, n_components: int = 8, seed: int = 0) -> np.ndarray:
    """Cluster ids ``(N,)`` int of ``x (N, F)``: impute column means, z-score, PCA, k-means. No labels used.

    Columns without variance are dropped; ``n_components`` is capped at ``min(N - 1, F)``.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < n_clusters:
        raise InputError(f"need at least {n_clusters} patients to form {n_clusters} clusters, got {len(x)}", where="discretise", fix="lower --clusters")
    col_mean = np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0)
    x = np.where(np.isfinite(x), x, np.nan_to_num(col_mean))
    sd = x.std(axis=0)
    x = (x[:, sd > 0] - x[:, sd > 0].mean(axis=0)) / sd[sd > 0]
    if x.shape[1] == 0:
        raise InputError("the modality has no varying feature", where="discretise", fix="pick another modality")
    k = min(n_components, x.shape[1], len(x) - 1)
    z = PCA(n_components=k, random_state=seed).fit_transform(x) if k < x.shape[1] else x
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(z)


# ---------------------------------------------------------------------------- task -> label
def task_labels(cohort, task: str, horizon: float | None = None) -> tuple[pd.Series, str]:
    """Discrete label per patient (Series indexed by ``patient_id``, int) and a note saying how it was made.

    Classification: the class index. Survival: event by ``horizon`` (default: the median time of
    the observed events), 1 = event at or before it, 0 = still followed after it; patients censored
    before the horizon have no label and are left out.
    """
    t = cohort.targets(task)
    ids = np.asarray(t.patient_ids)
    if t.task.kind == "classification":
        keep = t.mask & (t.label >= 0)
        classes = list(t.task.classes)
        return pd.Series(t.label[keep], index=ids[keep]), f"classes {classes}"
    if t.task.kind == "survival":
        time, event, mask = t.time, t.event, t.mask & np.isfinite(t.time)
        if horizon is None:
            ev = time[mask & (event == 1)]
            if len(ev) == 0:
                raise InputError(f"task '{task}' has no observed event", where=f"task {task}", fix="pick another task")
            horizon = float(np.median(ev))
        y = np.where(mask & (event == 1) & (time <= horizon), 1, np.where(mask & (time > horizon), 0, -1))
        keep = y >= 0
        unit = getattr(t.task, "time_unit", "") or ""
        note = f"event by {horizon:.4g} {unit}".strip() + f" (1 = event at or before it; {int((~keep & mask).sum())} censored earlier: left out)"
        return pd.Series(y[keep], index=ids[keep]), note
    raise InputError(f"task '{task}' is a {t.task.kind} task; PID needs a classification or survival task", where=f"task {task}",
                     fix="pick a classification or survival task")


# ---------------------------------------------------------------------------- uncertainty
def bootstrap_pid(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, *, n_boot: int = 100, n_permutations: int = 10, level: float = 0.95,
                  seed: int = 0) -> tuple[PIDResult, dict[str, tuple[float, float]], dict[str, float]]:
    """PID of the aligned discrete vectors ``(N,)``, its basic bootstrap interval over patient resamples,
    and the mean over ``n_permutations`` label permutations (the plug-in bias when Y carries nothing).

    The shape of the table (number of clusters) is fixed by the full sample, so every resample is
    decomposed on the same cells.
    """
    x1, x2, y = (np.unique(np.asarray(a), return_inverse=True)[1] for a in (x1, x2, y))
    shape = (int(x1.max()) + 1, int(x2.max()) + 1, int(y.max()) + 1)

    def counts(i1, i2, iy) -> np.ndarray:
        c = np.zeros(shape)
        np.add.at(c, (i1, i2, iy), 1.0)
        return c

    est = pid_from_counts(joint_counts(x1, x2, y))
    rng = np.random.default_rng(seed)
    n = len(y)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        boots.append(pid_from_counts(counts(x1[i], x2[i], y[i])))
    alpha = (1 - level) / 2
    ci = {}
    for p in PARTS if boots else ():
        # basic (reverse-percentile) interval: a resample repeats patients, which inflates plug-in
        # information (more so the synergy, spread over k1 * k2 cells), so the plain percentile
        # interval sits above the estimate; reflecting the quantiles about it cancels that first-order
        # bias. Every part is >= 0, hence the clip.
        v = np.array([getattr(b, p) for b in boots])
        t = getattr(est, p)
        ci[p] = (max(0.0, float(2 * t - np.quantile(v, 1 - alpha))), max(0.0, float(2 * t - np.quantile(v, alpha))))
    perms = [pid_from_counts(counts(x1, x2, rng.permutation(y))) for _ in range(n_permutations)]
    null = {p: float(np.mean([getattr(r, p) for r in perms])) for p in PARTS} if perms else {}
    return est, ci, null


def analyse_interactions(cohort, modalities: tuple[str, str], task: str, *, n_clusters: int | tuple[int, int] = 6, n_components: int = 8,
                         horizon: float | None = None, n_boot: int = 100, n_permutations: int = 10, seed: int = 0) -> InteractionResult:
    """PID (bits) of two modalities of ``cohort`` about ``task``: redundancy, uniqueness of each, synergy.

    Args:
        cohort: a loaded :class:`~modaltune.data.cohort.Cohort`.
        modalities: two modality names, e.g. ``("rna", "clinical")``.
        task: a classification or survival task (survival: event by ``horizon``, see :func:`task_labels`).
        n_clusters: k-means clusters per modality (one int for both, or a pair).
        n_components: PCA components before k-means.
        n_boot / n_permutations: patient resamples for the interval; label permutations for the null.
    """
    m1, m2 = modalities
    if m1 == m2:
        raise InputError(f"both modalities are '{m1}'", where="--modality", fix="give two different modalities")
    k1, k2 = (n_clusters, n_clusters) if isinstance(n_clusters, int) else tuple(n_clusters)
    labels, note = task_labels(cohort, task, horizon)
    a, b = modality_matrix(cohort, m1), modality_matrix(cohort, m2)
    ids = [p for p in labels.index if p in a.index and p in b.index]
    if len(ids) < 2 * max(k1, k2):
        raise InputError(f"only {len(ids)} patients have '{m1}', '{m2}' and a '{task}' label", where=f"cohort {cohort.name}",
                         fix="lower --clusters or pick modalities more patients have")
    # clusters are fitted on every patient with the modality (labelled or not): no label is used
    c1 = pd.Series(discretise(a.to_numpy(), k1, n_components, seed), index=a.index).loc[ids].to_numpy()
    c2 = pd.Series(discretise(b.to_numpy(), k2, n_components, seed), index=b.index).loc[ids].to_numpy()
    y = labels.loc[ids].to_numpy()
    est, ci, null = bootstrap_pid(c1, c2, y, n_boot=n_boot, n_permutations=n_permutations, seed=seed)
    py = np.bincount(np.unique(y, return_inverse=True)[1]) / len(y)
    h = float(-(py * np.log2(py)).sum())
    return InteractionResult(cohort.name, task, (m1, m2), est, ci, null, (k1, k2), note, n_boot, n_permutations, h,
                             settings={"n_components": n_components, "horizon": horizon, "seed": seed})
