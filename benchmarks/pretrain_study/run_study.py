"""Does multimodal pretraining on unlabelled patients help when labels are scarce? (issue 16, item 1-2)

SIMULATED cohort (``simulate_cohort``: 2,000 patients, slide + RNA + clinical; no real patients).
Protocol (``config.yaml`` next to this file holds the exact numbers):

- folds: the cohort's own ``splits/kfold5.csv`` (patient-level, stratified by subtype);
- per fold and seed, ``labelled_fraction`` of the fold's TRAINING patients keep their labels
  (:func:`modaltune.data.splits.labelled_subset`, stratified by subtype, drawn with the seed);
  the held-out fold is fully labelled and only ever evaluated;
- pretraining (Symile / pairwise CLIP / MIRROR, :func:`modaltune.pretrain.pretrain`) reads every
  training patient, labelled or not (never a held-out one); then linear probes on the frozen
  (B, 3 * E) embedding, fitted on the labelled training patients only: logistic (liblinear, C = 1)
  for ``subtype`` -> balanced accuracy; ridge Cox (penalizer 0.1) for ``survival`` -> Harrell's C;
- controls with the same probes and the same labelled patients: ``random_init`` (the same encoders,
  untrained), ``supervised`` (the same encoders trained end-to-end on the labelled patients with
  BCE(subtype) + Cox partial likelihood(survival), then probed), ``raw_linear`` (the probes on the
  raw inputs: masked-mean patch feature, z-scored RNA, encoded clinical fields, presence flags) and,
  as a reference ceiling, ``raw_linear_all_labels`` (raw inputs, every training patient labelled).

Commands::

    python benchmarks/pretrain_study/run_study.py simulate --work /work/runs/h20d/study
    python benchmarks/pretrain_study/run_study.py run --work /work/runs/h20d/study      # resumable per (fold, seed)
    python benchmarks/pretrain_study/run_study.py analyse --work /work/runs/h20d/study --out benchmarks/pretrain_study
    python benchmarks/pretrain_study/run_study.py cost --work /work/runs/h20d/study --out benchmarks/pretrain_study

TCGA mode (``--cohort-root``; ``config_tcga.yaml``): the same unit on each MCAT cohort imported by
``benchmarks/run_tcga.py`` (real RNA, CNV for UCEC, + clinical; slide bags SIMULATED), on the official
``porpoise_5fold`` folds, for every ``labelled_fractions`` entry (pretraining does not see labels, so it
is run once per fold and seed and probed at each fraction; ``supervised`` is retrained per fraction).
Subtype is probed only where the cohort's subtype task has >= 2 classes of >= ``min_class`` patients::

    python benchmarks/pretrain_study/run_study.py run --config benchmarks/pretrain_study/config_tcga.yaml \
        --cohort-root /work/runs/h20c/tcga --work /work/runs/h21a/tcga --seeds 0,1,2
    python benchmarks/pretrain_study/run_study.py analyse --config benchmarks/pretrain_study/config_tcga.yaml \
        --cohort-root /work/runs/h20c/tcga --work /work/runs/h21a/tcga --out benchmarks/pretrain_study/tcga

``cost`` runs each objective in a fresh subprocess (so VmHWM, the peak resident memory, is that
objective's) for ``cost_epochs`` epochs on fold 0 and records the seconds per epoch and the load average.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
SIMULATED = "SIMULATED (synthetic cohort, not real patients)"
MODALITIES = ["slide", "rna", "clinical"]
OBJECTIVES = ["symile", "clip", "mirror"]


def load_config(path: Path | None = None) -> dict:
    return yaml.safe_load((path or HERE / "config.yaml").read_text())


def cmd_simulate(work: Path, cfg: dict) -> None:
    from modaltune.data.simulate import simulate_cohort

    sim = dict(cfg["simulate"])
    for k in ("patches", "slides_per_patient"):
        sim[k] = tuple(sim[k])
    simulate_cohort(work / "cohort", overwrite=True, **sim)


# ------------------------------------------------------------------------------------ one unit
@dataclass(frozen=True)
class Ctx:
    """Where one study runs: the cohort folder, its modalities and split file, where units are written,
    and whether the cohort has a usable subtype task. The simulated study is ``Ctx.simulated(work)``;
    TCGA mode builds one per cohort (:func:`tcga_contexts`)."""

    name: str
    cohort_dir: Path
    modalities: tuple[str, ...]
    split_file: str
    unit_dir: Path
    subtype: bool = True

    @staticmethod
    def simulated(work: Path) -> Ctx:
        return Ctx("simulated", work / "cohort", tuple(MODALITIES), "kfold5", work / "units")


def tcga_contexts(root: Path, work: Path, cfg: dict, names: list[str] | None = None) -> list[Ctx]:
    """One context per MCAT cohort under ``root`` (``tcga_<name>/``, as imported by run_tcga.py with
    SIMULATED slide bags): slide + RNA (CNV where the cohort has no RNA table) + clinical, the official
    ``porpoise_5fold`` split; subtype where the task exists with >= 2 classes of >= ``min_class`` patients."""
    from modaltune.data.cohort import Cohort

    out = []
    for name in names or cfg["cohorts"]:
        c = Cohort.load(root / f"tcga_{name}")
        omics = "rna" if "rna" in c.omics else "cnv"
        sub = False
        if "subtype" in [t.name for t in c.tasks]:
            t = c.targets("subtype")
            counts = np.bincount(t.label[t.mask], minlength=2)
            sub = int((counts >= cfg.get("min_class", 10)).sum()) >= 2
        out.append(Ctx(name.upper(), root / f"tcga_{name}", ("slide", omics, "clinical"), cfg.get("split_file", "porpoise_5fold"),
                       work / "units" / name, sub))
    return out


def _pretrain_cfg(ctx: Ctx, cfg: dict, objective: str, fold: int, seed: int, epochs: int | None = None):
    from modaltune.pretrain.config import PretrainConfig

    p = cfg["pretrain"]
    return PretrainConfig(name=f"study_{objective}", cohort=str(ctx.cohort_dir), split={"file": ctx.split_file}, fold=fold,
                          modalities=list(ctx.modalities), objective=objective, negative_sampling=p["negative_sampling"],
                          encoder=p["encoder"], trainer={**p["trainer"], "epochs": epochs or p["trainer"]["epochs"], "seed": seed},
                          mirror=p.get("mirror", {}))


def _preload(cohort, ids: list[str], prep, pcfg) -> dict:
    """Every patient of ``ids`` preprocessed once (the fold's fitted preprocessor) into ONE batch dict of
    tensors: ``slide`` {features (N, P, D), mask (N, P)}, ``omics`` {name: (N, G)}, ``clinical`` (N, F),
    ``modality_mask`` {name: (N,) bool}, ``patient_id``. The study trains from these in-memory tensors
    instead of re-reading every h5 bag each epoch (that read was ~5 s CPU per epoch for 1,600 patients
    on this machine). Bags larger than ``max_patches`` keep the dataset's fixed seeded evaluation subset
    (the simulated cohort's bags all fit; TCGA's SIMULATED bags can be larger), so per-epoch patch
    resampling is the one thing lost."""
    import torch

    from modaltune.pretrain.run import _loader

    _, loader = _loader(cohort, ids, prep, pcfg, training=False)
    batches = list(loader)
    P = max(b["slide"]["features"].shape[1] for b in batches)

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, 0, 0, P - t.shape[1])) if t.dim() == 3 else torch.nn.functional.pad(t, (0, P - t.shape[1]))

    return {"patient_id": [p for b in batches for p in b["patient_id"]],
            "slide": {"features": torch.cat([pad(b["slide"]["features"].float()) for b in batches]),
                      "mask": torch.cat([pad(b["slide"]["mask"]) for b in batches])},
            "omics": {k: torch.cat([b["omics"][k] for b in batches]) for k in batches[0]["omics"]},
            "clinical": torch.cat([b["clinical"] for b in batches]),
            "modality_mask": {k: torch.cat([b["modality_mask"][k] for b in batches]) for k in batches[0]["modality_mask"]}}


def _take(mem: dict, idx) -> dict:
    """The batch of rows ``idx`` (LongTensor) of a preloaded dict."""
    return {"patient_id": [mem["patient_id"][i] for i in idx.tolist()],
            "slide": {k: v[idx] for k, v in mem["slide"].items()},
            "omics": {k: v[idx] for k, v in mem["omics"].items()},
            "clinical": mem["clinical"][idx],
            "modality_mask": {k: v[idx] for k, v in mem["modality_mask"].items()}}


def _train(model, params, mem: dict, rows: list[int], epochs: int, batch_size: int, lr: float, seed: int, loss_fn) -> list[float]:
    """AdamW, fixed lr, shuffled minibatches (drop_last as ``modaltune pretrain``); returns seconds per epoch."""
    import torch

    opt = torch.optim.AdamW(params, lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)  # permutations, negatives and MIRROR's masks
    rows_t = torch.tensor(rows)
    secs = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = rows_t[torch.randperm(len(rows_t), generator=gen)]
        n_b = len(perm) // batch_size if len(perm) > batch_size else 1
        for b in range(n_b):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            loss = loss_fn(_take(mem, idx), idx, gen)
            if loss is None:  # e.g. a supervised batch with neither a subtype label nor a survival event
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
        secs.append(time.perf_counter() - t0)
    model.eval()
    return secs


def _embed(model, mem: dict, rows: list[int]) -> pd.DataFrame:
    import torch

    model.eval()
    with torch.no_grad():
        idx = torch.tensor(rows)
        return pd.DataFrame(model.embed(_take(mem, idx)).numpy(), index=[mem["patient_id"][i] for i in rows])


def _raw(mem: dict, ctx: Ctx, kinds: dict[str, str]) -> pd.DataFrame:
    """(N, D_slide + 1 + G + 1 + F + 1) raw inputs: masked-mean patch feature, omics, clinical, each with a presence flag."""
    import torch

    from modaltune.encoders.pretrained_multimodal import modality_input

    parts = []
    for name in ctx.modalities:
        kind = kinds[name]
        x, present = modality_input(mem, name, kind)
        if kind == "slide":
            m = x["mask"].unsqueeze(-1).float()
            v = (x["features"] * m).sum(1) / m.sum(1).clamp_min(1)
        else:
            v = torch.nan_to_num(x.float())
        v = torch.where(present[:, None], v, torch.zeros_like(v))
        parts += [v, present[:, None].float()]
    return pd.DataFrame(torch.cat(parts, 1).numpy(), index=mem["patient_id"])


def _raw_reduced(raw: pd.DataFrame, train: list[str], n_components: int | None) -> pd.DataFrame:
    """``raw`` with its columns replaced by their first ``n_components`` principal components, fitted on
    the fold's TRAINING patients (labelled or not; never a held-out one). Used on TCGA, where the raw
    input has ~1,600 columns (1,554 RNA genes): a ridge Cox probe on that many columns costs minutes per
    fit on this CPU. None keeps the raw columns (the simulated study)."""
    if not n_components or raw.shape[1] <= n_components:
        return raw
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, random_state=0).fit(raw.loc[train].to_numpy(float))
    return pd.DataFrame(pca.transform(raw.to_numpy(float)), index=raw.index)


def _probe(E: pd.DataFrame, lab: list[str], test: list[str], targets: pd.DataFrame, subtype: bool) -> tuple[dict, pd.DataFrame]:
    """Probes fitted on the labelled patients that HAVE each task's label, scored on the held-out ones that have it
    (the simulated cohort labels everyone; a TCGA patient may lack a subtype label or survival follow-up)."""
    from modaltune.evaluation.probes import fit_probe

    out, preds = {}, pd.DataFrame({"patient_id": test, "prob": np.nan, "risk": np.nan}).set_index("patient_id")
    if subtype:
        tr = [p for p in lab if targets.at[p, "label"] >= 0]
        te = [p for p in test if targets.at[p, "label"] >= 0]
        clf = fit_probe("logistic", E.loc[tr].to_numpy(float), targets.loc[tr, "label"].to_numpy(int), E.loc[te].to_numpy(float),
                        targets.loc[te, "label"].to_numpy(int))
        out["subtype_balanced_accuracy"] = clf.value
        preds.loc[te, "prob"] = clf.predictions[:, 1]
    tr = [p for p in lab if np.isfinite(targets.at[p, "time"])]
    te = [p for p in test if np.isfinite(targets.at[p, "time"])]
    cox = fit_probe("cox", E.loc[tr].to_numpy(float), targets.loc[tr, ["time", "event"]], E.loc[te].to_numpy(float), targets.loc[te, ["time", "event"]])
    out["survival_c_index"] = cox.value
    preds.loc[te, "risk"] = cox.predictions
    return out, preds.join(targets[["label", "time", "event"]]).reset_index()


_FOLD_CACHE: dict = {}


def _targets(cohort, ids: list[str], subtype: bool) -> pd.DataFrame:
    """(N, 3) label (-1 = none), time and event (NaN = no usable survival label) per patient."""
    surv = cohort.targets("survival", ids)
    t = pd.DataFrame({"label": -1.0, "time": np.where(surv.mask, surv.time, np.nan), "event": np.where(surv.mask, surv.event, np.nan)}, index=ids)
    if subtype:
        sub = cohort.targets("subtype", ids)
        t["label"] = np.where(sub.mask, sub.label, -1).astype(float)
    return t


def _fold_data(ctx: Ctx, cfg: dict, fold: int):
    """(cohort, train ids, test ids, targets, preprocessor, preloaded tensors) of one fold, cached across seeds
    (five folds of 2,000 patients x 48 patches x 16 features: a few MB)."""
    from modaltune.data.cohort import Cohort
    from modaltune.data.dataset import CohortPreprocessor
    from modaltune.pretrain.run import _fold

    key = (str(ctx.cohort_dir), fold)
    if key not in _FOLD_CACHE:
        _FOLD_CACHE.clear()  # one fold at a time in memory (TCGA: five cohorts x five folds)
        cohort = Cohort.load(ctx.cohort_dir)
        pcfg = _pretrain_cfg(ctx, cfg, "symile", fold, 0)
        f = _fold(pcfg, cohort)
        train, test = list(f.train), list(f.test or f.val)
        targets = _targets(cohort, train + test, ctx.subtype)
        # as modaltune pretrain: the preprocessor is fitted on the fold's training patients only
        prep = CohortPreprocessor(cohort, modalities=list(ctx.modalities), tasks=[], omics_scaling=pcfg.omics_scaling).fit(train)
        _FOLD_CACHE[key] = (cohort, train, test, targets, prep, _preload(cohort, train + test, prep, pcfg))
    return _FOLD_CACHE[key]


def _strata(targets: pd.DataFrame, ids: list[str], subtype: bool) -> np.ndarray:
    """What the labelled subset is stratified by: the subtype where probed, else the survival event (-1 = unknown)."""
    col = targets.loc[ids, "label" if subtype else "event"]
    return col.fillna(-1).to_numpy(int)


def run_unit(ctx: Ctx, cfg: dict, fold: int, seed: int) -> None:
    import torch
    from torch import nn

    from modaltune.data.splits import labelled_subset
    from modaltune.encoders.pretrained_multimodal import MultimodalPretrainModel
    from modaltune.losses.survival import cox_partial_likelihood
    from modaltune.pretrain.run import _spec, retrieval_metrics
    from modaltune.training.callbacks import seed_all

    done = ctx.unit_dir / f"fold{fold}_seed{seed}"
    if (done / "metrics.csv").is_file():
        return
    done.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    cohort, train, test, targets, prep, mem = _fold_data(ctx, cfg, fold)
    row_of = {p: i for i, p in enumerate(mem["patient_id"])}
    tr_rows, te_rows = [row_of[p] for p in train], [row_of[p] for p in test]
    fractions = cfg.get("labelled_fractions", [cfg.get("labelled_fraction", 0.1)])
    labs = {fr: labelled_subset(train, fr, seed=seed, labels=_strata(targets, train, ctx.subtype)) for fr in fractions}
    multi = len(fractions) > 1  # TCGA mode writes the fraction into each row; the simulated study kept one
    tp = cfg["pretrain"]["trainer"]
    metrics, preds, timing = [], [], []

    def record(method: str, E: pd.DataFrame, seconds: float, only: list[float] | None = None, lab_ids: list[str] | None = None) -> None:
        for fr in only or fractions:
            lab = lab_ids or labs[fr]
            m, p = _probe(E, lab, test, targets, ctx.subtype)
            extra = {"cohort": ctx.name, "labelled_fraction": fr} if multi else {}
            metrics.extend({"method": method, "fold": fold, "seed": seed, "metric": k, "value": v, "n_labelled": len(lab),
                            "n_train": len(train), "n_test": len(test), "seconds": seconds, **extra} for k, v in m.items())
            preds.append(p.assign(method=method, fold=fold, seed=seed, **extra))

    def all_rows() -> list[int]:
        return sorted(set(tr_rows) | set(te_rows))

    for obj in OBJECTIVES:
        pcfg = _pretrain_cfg(ctx, cfg, obj, fold, seed)
        seed_all(seed)
        model = MultimodalPretrainModel(_spec(pcfg, cohort, prep.info))
        hist = []

        def ssl_loss(batch, idx, gen, model=model, hist=hist):
            loss, _ = model(batch, generator=gen)
            hist.append(float(loss.detach()))
            return loss

        t0 = time.perf_counter()
        # pretraining reads every TRAINING patient (labelled or not) and no held-out one
        secs = _train(model, model.parameters(), mem, tr_rows, tp["epochs"], tp["batch_size"], tp["lr"], seed, ssl_loss)
        record(obj, _embed(model, mem, all_rows()), time.perf_counter() - t0)
        ret = retrieval_metrics(model, [_take(mem, torch.tensor(te_rows))])
        n_b = len(hist) // tp["epochs"]
        timing.append({"objective": obj, "fold": fold, "seed": seed, "mean_epoch_s": float(np.mean(secs)), "first_loss": float(np.mean(hist[:n_b])),
                       "final_loss": float(np.mean(hist[-n_b:])), "retrieval_mean_top1": ret.get("mean_top1"), "retrieval_mean_top5": ret.get("mean_top5"),
                       "retrieval_n": ret.get("n_patients"), **({"cohort": ctx.name} if multi else {})})
    spec = model.spec
    seed_all(seed)
    record("random_init", _embed(MultimodalPretrainModel({**spec, "objective": "clip"}), mem, all_rows()), 0.0)
    # supervised: the same encoders + a 2-output linear head, BCE(subtype) + Cox PL(survival), labelled patients only
    s = cfg["supervised"]
    y = {k: torch.tensor(targets.loc[mem["patient_id"], k].to_numpy(), dtype=torch.float32) for k in ("label", "time", "event")}
    for fr in fractions:
        seed_all(seed)
        sup = MultimodalPretrainModel({**spec, "objective": "clip"})
        head = nn.Linear(sup.out_dim, 2)

        def sup_loss(batch, idx, gen, sup=sup, head=head):
            out = head(sup.embed(batch))
            lab_ok, surv_ok = y["label"][idx] >= 0, torch.isfinite(y["time"][idx])
            loss = None
            if ctx.subtype and lab_ok.any():
                loss = nn.functional.binary_cross_entropy_with_logits(out[lab_ok, 0], y["label"][idx][lab_ok])
            if (y["event"][idx][surv_ok] > 0).any():  # the Cox term needs an event in the batch
                cox = cox_partial_likelihood(out[surv_ok, 1], y["time"][idx][surv_ok], y["event"][idx][surv_ok])
                loss = cox if loss is None else loss + cox
            return loss

        t0 = time.perf_counter()
        lab_rows = [row_of[p] for p in labs[fr]]
        _train(sup, list(sup.parameters()) + list(head.parameters()), mem, lab_rows, s["epochs"], s["batch_size"], s["lr"], seed, sup_loss)
        record("supervised", _embed(sup, mem, all_rows()), time.perf_counter() - t0, only=[fr])
    kinds = {m["name"]: m["kind"] for m in spec["modalities"]}
    raw = _raw_reduced(_raw(mem, ctx, kinds), train, cfg.get("raw_pca"))
    record("raw_linear", raw, 0.0)
    if not multi:  # TCGA mode: raw_linear at labelled fraction 1.0 IS the all-labels ceiling
        record("raw_linear_all_labels", raw, 0.0, lab_ids=train)
    pd.concat(preds).to_csv(done / "predictions.csv", index=False)
    pd.DataFrame(timing).to_csv(done / "pretrain.csv", index=False)
    pd.DataFrame(metrics).to_csv(done / "metrics.csv", index=False)  # last: its presence marks the unit done


def cmd_run(ctxs: list[Ctx], cfg: dict, folds: list[int], seeds: list[int]) -> None:
    # the simulated study ran seed-major; TCGA runs fold-major so each fold's preloaded tensors serve its seeds
    order = [(c, f, s) for s in seeds for c in ctxs for f in folds] if len(ctxs) == 1 and ctxs[0].name == "simulated" else \
        [(c, f, s) for c in ctxs for f in folds for s in seeds]
    for ctx, fold, seed in order:
        t0 = time.perf_counter()
        run_unit(ctx, cfg, fold, seed)
        print(f"{ctx.name} fold {fold} seed {seed}: {time.perf_counter() - t0:.1f}s  load {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)


# ------------------------------------------------------------------------------------ analysis
def _harrell(df: pd.DataFrame) -> float:
    """Harrell's C over the pooled out-of-fold predictions, with pairs formed WITHIN a fold only (each
    fold's Cox probe has its own risk scale; the sum of per-fold concordant / comparable counts).
    Comparable: an event at t_i and t_i < t_j, or t_i == t_j with j censored; risk ties count 1/2 (as
    scikit-survival's ``concordance_index_censored``, checked on every point estimate in :func:`cmd_analyse`)."""
    num = den = 0.0
    for _, g in df.groupby("fold"):
        t, e, r = g["time"].to_numpy(float), g["event"].to_numpy(bool), g["risk"].to_numpy(float)
        comp = ((t[:, None] < t[None, :]) | ((t[:, None] == t[None, :]) & ~e[None, :])) & e[:, None]
        num += ((r[:, None] > r[None, :]) & comp).sum() + 0.5 * ((r[:, None] == r[None, :]) & comp).sum()
        den += comp.sum()
    return float(num / den) if den else float("nan")


def _bacc(df: pd.DataFrame) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(df["label"].astype(int), (df["prob"] > 0.5).astype(int)))


def _paired_rows(res: pd.DataFrame, preds: pd.DataFrame, against: dict, metrics: list[str], n_boot: int) -> list[dict]:
    """Per (method, baseline, metric): the unit-level differences and, per seed, the paired bootstrap on the
    pooled out-of-fold predictions (balanced accuracy over the patients with a subtype label; the C-index
    with pairs formed within a fold)."""
    from modaltune.evaluation.bootstrap import paired_bootstrap

    fns = {"subtype_balanced_accuracy": ("prob", _bacc), "survival_c_index": ("risk", _harrell)}
    rows = []
    for base, others in against.items():
        for m in others:
            for metric in metrics:
                col, fn = fns[metric]
                a = res[(res.method == m) & (res.metric == metric)].set_index(["fold", "seed"])["value"]
                b = res[(res.method == base) & (res.metric == metric)].set_index(["fold", "seed"])["value"]
                d = (a - b).dropna()
                row = {"method": m, "baseline": base, "metric": metric, "mean_unit_diff": float(d.mean()), "sd_unit_diff": float(d.std(ddof=1)),
                       "units_better": int((d > 0).sum()), "n_units": len(d)}
                for s in sorted(res["seed"].unique()):
                    pa = preds[(preds.method == m) & (preds.seed == s)].dropna(subset=[col]).sort_values(["fold", "patient_id"]).reset_index(drop=True)
                    pb = preds[(preds.method == base) & (preds.seed == s)].dropna(subset=[col]).sort_values(["fold", "patient_id"]).reset_index(drop=True)
                    assert pa["patient_id"].tolist() == pb["patient_id"].tolist(), (m, base, s)
                    r = paired_bootstrap(pa, pb, fn, n=n_boot, seed=int(s))
                    row.update({f"seed{s}_delta": r.delta, f"seed{s}_ci_low": r.ci[0], f"seed{s}_ci_high": r.ci[1], f"seed{s}_p": r.p_value})
                rows.append(row)
    return rows


def cmd_analyse_tcga(ctxs: list[Ctx], work: Path, out: Path, cfg: dict, n_boot: int) -> None:
    """TCGA mode: results.csv / paired_bootstrap.csv / pretrain_log.csv / summary.md per cohort x labelled fraction."""
    res, preds, pre = [], [], []
    for ctx in ctxs:
        for u in sorted(ctx.unit_dir.glob("*/metrics.csv")):
            res.append(pd.read_csv(u))
            preds.append(pd.read_csv(u.parent / "predictions.csv"))
            pre.append(pd.read_csv(u.parent / "pretrain.csv"))
    res, preds, pre = pd.concat(res), pd.concat(preds), pd.concat(pre)
    out.mkdir(parents=True, exist_ok=True)
    res.to_csv(out / "results.csv", index=False)
    pre.to_csv(out / "pretrain_log.csv", index=False)
    comps = []
    for (coh, fr), r in res.groupby(["cohort", "labelled_fraction"], sort=False):
        p = preds[(preds.cohort == coh) & (preds.labelled_fraction == fr)]
        methods = list(dict.fromkeys(r["method"]))
        against = {"supervised": [m for m in methods if m != "supervised"], "raw_linear": [*OBJECTIVES, "random_init"]}
        for row in _paired_rows(r, p, against, list(dict.fromkeys(r["metric"])), n_boot):
            comps.append({"cohort": coh, "labelled_fraction": fr, **row})
    pd.DataFrame(comps).to_csv(out / "paired_bootstrap.csv", index=False)
    summary_tcga(out, cfg, ctxs, n_boot)


def summary_tcga(out: Path, cfg: dict, ctxs: list[Ctx], n_boot: int) -> None:
    """summary.md of TCGA mode from the committed results.csv, paired_bootstrap.csv and pretrain_log.csv in ``out``."""
    res, comps, pre = (pd.read_csv(out / f) for f in ("results.csv", "paired_bootstrap.csv", "pretrain_log.csv"))
    seeds = sorted(int(x) for x in res["seed"].unique())
    methods = list(dict.fromkeys(res["method"]))
    cols = [(c.name, m) for c in ctxs for m in (["subtype_balanced_accuracy"] if c.subtype else []) + ["survival_c_index"]]
    short = {"subtype_balanced_accuracy": "bal. acc.", "survival_c_index": "C-index"}
    lines = ["# Pretraining on TCGA: real omics + clinical, SIMULATED slide bags", "",
             f"Protocol: MCAT cohorts {[c.name for c in ctxs]} imported with SIMULATED slide bags; modalities slide + RNA (CNV for UCEC) + clinical; "
             f"official {ctxs[0].split_file} folds {sorted(int(f) for f in res['fold'].unique())} x seeds {seeds}; labelled fractions "
             f"{cfg['labelled_fractions']} of each training fold (seeded; stratified by subtype where probed, else by event); pretraining on every "
             "training patient; linear probes (logistic C=1 -> balanced accuracy; ridge Cox penalizer 0.1 -> Harrell C) on the labelled training "
             f"patients that have the label, scored on the held-out fold; raw_linear = the same probes on the raw inputs reduced to {cfg.get('raw_pca')} "
             "principal components fitted on the training fold (at 100% labelled it is the all-labels raw ceiling). Subtype probed in: "
             f"{[c.name for c in ctxs if c.subtype]}. Config: {Path(str(cfg.get('_path'))).name}.", ""]
    mean = res.groupby(["labelled_fraction", "method", "cohort", "metric"])["value"].agg(["mean", "std", "count"])
    for fr in sorted(res["labelled_fraction"].unique()):
        lines += [f"Labelled fraction {fr:.0%}: mean +- sd over fold x seed units", "",
                  "| method | " + " | ".join(f"{c} {short[m]}" for c, m in cols) + " |", "|---|" + "---|" * len(cols)]
        for m in methods:
            cells = [f"{mean.loc[(fr, m, c, k), 'mean']:.3f} +- {mean.loc[(fr, m, c, k), 'std']:.3f}" if (fr, m, c, k) in mean.index else "-" for c, k in cols]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Paired differences, condensed: mean over units of (method - baseline) (units better / units; seeds whose 95% bootstrap CI "
              "is above 0 + / below 0 -):", ""]
    for fr in sorted(comps["labelled_fraction"].unique()):
        lines += [f"Labelled fraction {fr:.0%}", "", "| method | vs | " + " | ".join(f"{c} {short[m]}" for c, m in cols) + " |", "|---|---|" + "---|" * len(cols)]
        for (m, base), g in comps[comps["labelled_fraction"] == fr].groupby(["method", "baseline"], sort=False):
            cells = []
            for c, k in cols:
                r = g[(g["cohort"] == c) & (g["metric"] == k)].iloc[0]
                up = sum(r[f"seed{s}_ci_low"] > 0 for s in seeds)
                dn = sum(r[f"seed{s}_ci_high"] < 0 for s in seeds)
                cells.append(f"{r['mean_unit_diff']:+.3f} ({r['units_better']}/{r['n_units']}; {up}+/{dn}-)")
            lines.append(f"| {m} | {base} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"Paired comparisons (method minus baseline; unit = fold x seed; paired bootstrap per seed, {n_boot} resamples, 95% percentile CI):", "",
              "| cohort | labelled | method | vs | metric | mean diff | units better | " + " | ".join(f"seed {s}: delta [CI] p" for s in seeds) + " |",
              "|---|---|---|---|---|---|---|" + "---|" * len(seeds)]
    for _, r in comps.iterrows():
        cells = " | ".join(f"{r[f'seed{s}_delta']:+.3f} [{r[f'seed{s}_ci_low']:+.3f}, {r[f'seed{s}_ci_high']:+.3f}] {r[f'seed{s}_p']:.2f}" for s in seeds)
        lines.append(f"| {r['cohort']} | {r['labelled_fraction']:.0%} | {r['method']} | {r['baseline']} | {short[r['metric']]} | {r['mean_unit_diff']:+.3f} | "
                     f"{r['units_better']}/{r['n_units']} | {cells} |")
    lines += ["", "Pretraining (mean over units): s / epoch, loss first -> last epoch, held-out retrieval top-1 / top-5 (mean over target modalities):", "",
              "| cohort | objective | s / epoch | loss first -> last | top-1 | top-5 | retrieval n |", "|---|---|---|---|---|---|---|"]
    for (coh, obj), d in pre.groupby(["cohort", "objective"], sort=False):
        lines.append(f"| {coh} | {obj} | {d['mean_epoch_s'].mean():.2f} | {d['first_loss'].mean():.3f} -> {d['final_loss'].mean():.3f} | "
                     f"{d['retrieval_mean_top1'].mean():.3f} | {d['retrieval_mean_top5'].mean():.3f} | {d['retrieval_n'].mean():.0f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cmd_analyse(work: Path, out: Path, cfg: dict, n_boot: int) -> None:
    from modaltune.data.cohort import Cohort
    from modaltune.evaluation.bootstrap import paired_bootstrap

    units = sorted((work / "units").glob("*/metrics.csv"))
    res = pd.concat([pd.read_csv(u) for u in units])
    preds = pd.concat([pd.read_csv(u.parent / "predictions.csv") for u in units])
    pre = pd.concat([pd.read_csv(u.parent / "pretrain.csv") for u in units])
    out.mkdir(parents=True, exist_ok=True)
    res.to_csv(out / "results.csv", index=False)
    pre.to_csv(out / "pretrain_log.csv", index=False)
    cohort = Cohort.load(work / "cohort")
    ids = list(preds["patient_id"].unique())
    sub, surv = cohort.targets("subtype", ids), cohort.targets("survival", ids)
    tgt = pd.DataFrame({"patient_id": ids, "label": sub.label, "time": surv.time, "event": surv.event})
    # pooled out-of-fold predictions per (method, seed); the C-index pairs patients within a fold only (_harrell)
    preds = preds.drop(columns=["label", "time", "event"], errors="ignore").merge(tgt, on="patient_id")
    methods = list(dict.fromkeys(res["method"]))
    seeds = sorted(res["seed"].unique())
    table = res.groupby(["method", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    from sksurv.metrics import concordance_index_censored

    for (m, sd), g in preds.groupby(["method", "seed"]):  # the fast C-index equals scikit-survival's counts, fold by fold
        c = [concordance_index_censored(f["event"].astype(bool).to_numpy(), f["time"].to_numpy(float), f["risk"].to_numpy(float)) for _, f in g.groupby("fold")]
        ref = sum(x[1] + 0.5 * x[3] for x in c) / sum(x[1] + x[2] + x[3] for x in c)
        assert abs(ref - _harrell(g)) < 1e-9, (m, sd, ref, _harrell(g))
    comps = []
    against = {"supervised": [m for m in methods if m != "supervised"], "raw_linear": [*OBJECTIVES, "random_init"]}
    for base, others in against.items():
        for m in others:
            for metric, fn in (("subtype_balanced_accuracy", _bacc), ("survival_c_index", _harrell)):
                a = res[(res.method == m) & (res.metric == metric)].set_index(["fold", "seed"])["value"]
                b = res[(res.method == base) & (res.metric == metric)].set_index(["fold", "seed"])["value"]
                d = (a - b).dropna()
                row = {"method": m, "baseline": base, "metric": metric, "mean_unit_diff": float(d.mean()), "sd_unit_diff": float(d.std(ddof=1)),
                       "units_better": int((d > 0).sum()), "n_units": len(d)}
                for s in seeds:
                    pa = preds[(preds.method == m) & (preds.seed == s)]
                    pb = preds[(preds.method == base) & (preds.seed == s)]
                    r = paired_bootstrap(pa, pb, fn, n=n_boot, seed=int(s))
                    row.update({f"seed{s}_delta": r.delta, f"seed{s}_ci_low": r.ci[0], f"seed{s}_ci_high": r.ci[1], f"seed{s}_p": r.p_value})
                comps.append(row)
    comps = pd.DataFrame(comps)
    comps.to_csv(out / "paired_bootstrap.csv", index=False)
    _summary(out, cfg, table, comps, pre, seeds, res, n_boot)


def _summary(out: Path, cfg: dict, table: pd.DataFrame, comps: pd.DataFrame, pre: pd.DataFrame, seeds, res: pd.DataFrame, n_boot: int) -> None:
    n_folds = res["fold"].nunique()
    lines = [f"# Pretraining with scarce labels: {SIMULATED}", "",
             f"Protocol: simulated cohort ({cfg['simulate']['n_patients']} patients, slide + RNA + clinical, missing modalities as simulated, "
             f"signal {cfg['simulate'].get('signal', 'default (SignalSpec)')}), "
             f"{n_folds} folds (splits/kfold5.csv, stratified by subtype) x {len(seeds)} seeds {list(map(int, seeds))}; "
             f"{cfg['labelled_fraction']:.0%} of each fold's training patients labelled (seeded, stratified); pretraining on every training patient; "
             "linear probes (logistic C=1 -> balanced accuracy; ridge Cox penalizer 0.1 -> Harrell C) fitted on the labelled training patients, "
             f"scored on the held-out fold. Config: {Path(str(cfg.get('_path', 'config.yaml'))).name}.", "", "| method | subtype balanced accuracy (mean +- sd over units) | survival C-index | units |", "|---|---|---|---|"]
    for m in dict.fromkeys(res["method"]):
        t = table[table.method == m].set_index("metric")
        b, c = t.loc["subtype_balanced_accuracy"], t.loc["survival_c_index"]
        lines.append(f"| {m} | {b['mean']:.3f} +- {b['std']:.3f} | {c['mean']:.3f} +- {c['std']:.3f} | {int(b['count'])} |")
    lines += ["", "Paired comparisons (unit = fold x seed; paired bootstrap (`evaluation.bootstrap.paired_bootstrap`) over the pooled out-of-fold patients, per seed, "
              f"{n_boot} resamples, 95% percentile CI, two-sided p; C-index pairs formed within a fold):", "",
              "| method | baseline | metric | mean diff over units | units better | " + " | ".join(f"seed {int(s)}: delta [CI] p" for s in seeds) + " |",
              "|---|---|---|---|---|" + "---|" * len(seeds)]
    for _, r in comps.iterrows():
        cells = " | ".join(f"{r[f'seed{s}_delta']:+.3f} [{r[f'seed{s}_ci_low']:+.3f}, {r[f'seed{s}_ci_high']:+.3f}] {r[f'seed{s}_p']:.3f}" for s in seeds)
        lines.append(f"| {r['method']} | {r['baseline']} | {r['metric']} | {r['mean_unit_diff']:+.3f} | {r['units_better']}/{r['n_units']} | {cells} |")
    g = pre.groupby("objective")
    lines += ["", "Pretraining (mean over units): seconds per epoch, first -> last epoch loss, held-out retrieval (mean over target modalities; chance 1/n and 5/n):", "",
              "| objective | s / epoch | loss first -> last | retrieval top-1 | top-5 |", "|---|---|---|---|---|"]
    for obj, d in g:
        lines.append(f"| {obj} | {d['mean_epoch_s'].mean():.2f} | {d['first_loss'].mean():.3f} -> {d['final_loss'].mean():.3f} | "
                     f"{d.get('retrieval_mean_top1', pd.Series([np.nan])).mean():.3f} | {d.get('retrieval_mean_top5', pd.Series([np.nan])).mean():.3f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# ------------------------------------------------------------------------------------ cost
def _cost_child(work: Path, cfg: dict, objective: str, epochs: int) -> None:
    import torch

    from modaltune.data.cohort import Cohort
    from modaltune.pretrain.run import pretrain

    torch.set_num_threads(1)
    cohort = Cohort.load(work / "cohort")
    t0 = time.perf_counter()
    res = pretrain(_pretrain_cfg(Ctx.simulated(work), cfg, objective, 0, 0, epochs), cohort=cohort)
    hwm = next(int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    print(json.dumps({"objective": objective, "epochs": epochs, "seconds_per_epoch": res.history["seconds"].tolist(),
                      "mean_s_per_epoch": float(res.history["seconds"].mean()), "n_train": len(res.train_ids), "total_s": time.perf_counter() - t0,
                      "vmhwm_mib": hwm / 1024, "n_parameters": sum(p.numel() for p in res.model.parameters()),
                      "loadavg": Path("/proc/loadavg").read_text().split()[:3]}))


def cmd_cost(work: Path, out: Path, cfg: dict) -> None:
    rows = []
    for obj in OBJECTIVES:
        r = subprocess.run([sys.executable, __file__, "_cost_child", "--work", str(work), "--objective", obj, "--config", str(cfg["_path"])], capture_output=True, text=True, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    (out / "pretrain_cost.json").write_text(json.dumps({"label": SIMULATED, "encoder": cfg["pretrain"]["encoder"],
                                                        "batch_size": cfg["pretrain"]["trainer"]["batch_size"], "threads": 1, "rows": rows}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["simulate", "run", "analyse", "cost", "_cost_child"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--objective", default="symile")
    ap.add_argument("--config", type=Path, default=HERE / "config.yaml", help="study config (config_shared.yaml: the label signal shared by slide and RNA)")
    ap.add_argument("--cohort-root", type=Path, default=None, help="TCGA mode: the folder holding tcga_<name>/ cohorts with (SIMULATED) slide bags")
    ap.add_argument("--cohorts", default=None, help="TCGA mode: comma-separated subset of the config's cohorts")
    a = ap.parse_args()
    cfg = load_config(a.config)
    cfg["_path"] = a.config
    ctxs = (tcga_contexts(a.cohort_root, a.work, cfg, a.cohorts.split(",") if a.cohorts else None) if a.cohort_root
            else [Ctx.simulated(a.work)])
    if a.cmd == "simulate":
        cmd_simulate(a.work, cfg)
    elif a.cmd == "run":
        cmd_run(ctxs, cfg, [int(x) for x in a.folds.split(",")], [int(x) for x in a.seeds.split(",")])
    elif a.cmd == "analyse" and a.cohort_root:
        cmd_analyse_tcga(ctxs, a.work, a.out, cfg, a.n_boot)
    elif a.cmd == "analyse":
        cmd_analyse(a.work, a.out, cfg, a.n_boot)
    elif a.cmd == "cost":
        cmd_cost(a.work, a.out, cfg)
    else:
        _cost_child(a.work, cfg, a.objective, cfg["cost_epochs"])


if __name__ == "__main__":
    main()
