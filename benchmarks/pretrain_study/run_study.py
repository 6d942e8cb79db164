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

``cost`` runs each objective in a fresh subprocess (so VmHWM, the peak resident memory, is that
objective's) for ``cost_epochs`` epochs on fold 0 and records the seconds per epoch and the load average.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
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
def _pretrain_cfg(work: Path, cfg: dict, objective: str, fold: int, seed: int, epochs: int | None = None):
    from modaltune.pretrain.config import PretrainConfig

    p = cfg["pretrain"]
    return PretrainConfig(name=f"study_{objective}", cohort=str(work / "cohort"), split={"file": "kfold5"}, fold=fold,
                          modalities=MODALITIES, objective=objective, negative_sampling=p["negative_sampling"],
                          encoder=p["encoder"], trainer={**p["trainer"], "epochs": epochs or p["trainer"]["epochs"], "seed": seed},
                          mirror=p.get("mirror", {}))


def _preload(cohort, ids: list[str], prep, pcfg) -> dict:
    """Every patient of ``ids`` preprocessed once (the fold's fitted preprocessor) into ONE batch dict of
    tensors: ``slide`` {features (N, P, D), mask (N, P)}, ``omics`` {rna: (N, G)}, ``clinical`` (N, F),
    ``modality_mask`` {name: (N,) bool}, ``patient_id``. The study trains from these in-memory tensors
    instead of re-reading every h5 bag each epoch (that read was ~5 s CPU per epoch for 1,600 patients
    on this machine); bags have at most ``max_patches`` patches, so no per-epoch patch sampling is lost."""
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


def _raw(mem: dict) -> pd.DataFrame:
    """(N, D_slide + 1 + G + 1 + F + 1) raw inputs: masked-mean patch feature, RNA, clinical, each with a presence flag."""
    import torch

    from modaltune.encoders.pretrained_multimodal import modality_input

    parts = []
    for name, kind in (("slide", "slide"), ("rna", "omics"), ("clinical", "clinical")):
        x, present = modality_input(mem, name, kind)
        if kind == "slide":
            m = x["mask"].unsqueeze(-1).float()
            v = (x["features"] * m).sum(1) / m.sum(1).clamp_min(1)
        else:
            v = torch.nan_to_num(x.float())
        v = torch.where(present[:, None], v, torch.zeros_like(v))
        parts += [v, present[:, None].float()]
    return pd.DataFrame(torch.cat(parts, 1).numpy(), index=mem["patient_id"])


def _probe(E: pd.DataFrame, lab: list[str], test: list[str], targets: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    from modaltune.evaluation.probes import fit_probe

    ytr, yte = targets.loc[lab], targets.loc[test]
    clf = fit_probe("logistic", E.loc[lab].to_numpy(float), ytr["label"].to_numpy(int), E.loc[test].to_numpy(float), yte["label"].to_numpy(int))
    cox = fit_probe("cox", E.loc[lab].to_numpy(float), ytr[["time", "event"]], E.loc[test].to_numpy(float), yte[["time", "event"]])
    preds = pd.DataFrame({"patient_id": test, "prob": clf.predictions[:, 1], "risk": cox.predictions})
    return {"subtype_balanced_accuracy": clf.value, "survival_c_index": cox.value}, preds


_FOLD_CACHE: dict = {}


def _fold_data(work: Path, cfg: dict, fold: int):
    """(cohort, train ids, test ids, targets, preprocessor, preloaded tensors) of one fold, cached across seeds
    (five folds of 2,000 patients x 48 patches x 16 features: a few MB)."""
    from modaltune.data.cohort import Cohort
    from modaltune.data.dataset import CohortPreprocessor
    from modaltune.pretrain.run import _fold

    if fold not in _FOLD_CACHE:
        cohort = Cohort.load(work / "cohort")
        pcfg = _pretrain_cfg(work, cfg, "symile", fold, 0)
        f = _fold(pcfg, cohort)
        train, test = list(f.train), list(f.test or f.val)
        sub, surv = cohort.targets("subtype", train + test), cohort.targets("survival", train + test)
        targets = pd.DataFrame({"label": sub.label, "time": surv.time, "event": surv.event}, index=train + test).astype(float)
        # as modaltune pretrain: the preprocessor is fitted on the fold's training patients only
        prep = CohortPreprocessor(cohort, modalities=MODALITIES, tasks=[], omics_scaling=pcfg.omics_scaling).fit(train)
        _FOLD_CACHE[fold] = (cohort, train, test, targets, prep, _preload(cohort, train + test, prep, pcfg))
    return _FOLD_CACHE[fold]


def run_unit(work: Path, cfg: dict, fold: int, seed: int) -> None:
    import torch
    from torch import nn

    from modaltune.data.splits import labelled_subset
    from modaltune.encoders.pretrained_multimodal import MultimodalPretrainModel
    from modaltune.losses.survival import cox_partial_likelihood
    from modaltune.pretrain.run import _spec, retrieval_metrics
    from modaltune.training.callbacks import seed_all

    done = work / "units" / f"fold{fold}_seed{seed}"
    if (done / "metrics.csv").is_file():
        return
    done.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    cohort, train, test, targets, prep, mem = _fold_data(work, cfg, fold)
    row_of = {p: i for i, p in enumerate(mem["patient_id"])}
    tr_rows, te_rows = [row_of[p] for p in train], [row_of[p] for p in test]
    lab = labelled_subset(train, cfg["labelled_fraction"], seed=seed, labels=targets.loc[train, "label"].to_numpy())
    lab_rows = [row_of[p] for p in lab]
    tp = cfg["pretrain"]["trainer"]
    metrics, preds, timing = [], [], []

    def record(method: str, E: pd.DataFrame, lab_ids: list[str], seconds: float) -> None:
        m, p = _probe(E, lab_ids, test, targets)
        metrics.extend({"method": method, "fold": fold, "seed": seed, "metric": k, "value": v, "n_labelled": len(lab_ids),
                        "n_train": len(train), "n_test": len(test), "seconds": seconds} for k, v in m.items())
        preds.append(p.assign(method=method, fold=fold, seed=seed))

    for obj in OBJECTIVES:
        pcfg = _pretrain_cfg(work, cfg, obj, fold, seed)
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
        record(obj, _embed(model, mem, lab_rows + te_rows), lab, time.perf_counter() - t0)
        ret = retrieval_metrics(model, [_take(mem, torch.tensor(te_rows))])
        n_b = len(hist) // tp["epochs"]
        timing.append({"objective": obj, "fold": fold, "seed": seed, "mean_epoch_s": float(np.mean(secs)), "first_loss": float(np.mean(hist[:n_b])),
                       "final_loss": float(np.mean(hist[-n_b:])), "retrieval_mean_top1": ret.get("mean_top1"), "retrieval_mean_top5": ret.get("mean_top5"),
                       "retrieval_n": ret.get("n_patients")})
    spec = model.spec
    seed_all(seed)
    record("random_init", _embed(MultimodalPretrainModel({**spec, "objective": "clip"}), mem, lab_rows + te_rows), lab, 0.0)
    # supervised: the same encoders + a 2-output linear head, BCE(subtype) + Cox PL(survival), labelled patients only
    s = cfg["supervised"]
    seed_all(seed)
    sup = MultimodalPretrainModel({**spec, "objective": "clip"})
    head = nn.Linear(sup.out_dim, 2)
    y = {k: torch.tensor(targets.loc[mem["patient_id"], k].to_numpy(), dtype=torch.float32) for k in ("label", "time", "event")}

    def sup_loss(batch, idx, gen):
        out = head(sup.embed(batch))
        return (nn.functional.binary_cross_entropy_with_logits(out[:, 0], y["label"][idx])
                + cox_partial_likelihood(out[:, 1], y["time"][idx], y["event"][idx]))

    t0 = time.perf_counter()
    _train(sup, list(sup.parameters()) + list(head.parameters()), mem, lab_rows, s["epochs"], s["batch_size"], s["lr"], seed, sup_loss)
    record("supervised", _embed(sup, mem, lab_rows + te_rows), lab, time.perf_counter() - t0)
    raw = _raw(mem)
    record("raw_linear", raw, lab, 0.0)
    record("raw_linear_all_labels", raw, train, 0.0)
    pd.concat(preds).to_csv(done / "predictions.csv", index=False)
    pd.DataFrame(timing).to_csv(done / "pretrain.csv", index=False)
    pd.DataFrame(metrics).to_csv(done / "metrics.csv", index=False)  # last: its presence marks the unit done


def cmd_run(work: Path, cfg: dict, folds: list[int], seeds: list[int]) -> None:
    for seed in seeds:
        for fold in folds:
            t0 = time.perf_counter()
            run_unit(work, cfg, fold, seed)
            print(f"fold {fold} seed {seed}: {time.perf_counter() - t0:.1f}s  load {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)


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
    preds = preds.merge(tgt, on="patient_id")
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
    res = pretrain(_pretrain_cfg(work, cfg, objective, 0, 0, epochs), cohort=cohort)
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
    a = ap.parse_args()
    cfg = load_config(a.config)
    cfg["_path"] = a.config
    if a.cmd == "simulate":
        cmd_simulate(a.work, cfg)
    elif a.cmd == "run":
        cmd_run(a.work, cfg, [int(x) for x in a.folds.split(",")], [int(x) for x in a.seeds.split(",")])
    elif a.cmd == "analyse":
        cmd_analyse(a.work, a.out, cfg, a.n_boot)
    elif a.cmd == "cost":
        cmd_cost(a.work, a.out, cfg)
    else:
        _cost_child(a.work, cfg, a.objective, cfg["cost_epochs"])


if __name__ == "__main__":
    main()
