"""ModalTune with a PRETRAINED frozen slide backbone on the simulated comparison (issue 6).

Pre-registered protocol: ``configs/modaltune/sim_pretrained.yaml`` (read its header). Two stages
around the benchmark run::

    nice -n 10 python benchmarks/modaltune_pretrained_sim.py pretrain --out runs/mt_sim_pre
    nice -n 10 modaltune benchmark configs/modaltune/sim_pretrained.yaml --out runs/mt_sim_pre/bench --workers 2
    nice -n 10 python benchmarks/modaltune_pretrained_sim.py analyse --out runs/mt_sim_pre \
        --random-bench benchmarks/modaltune_results/sim_comparison_results.csv --contrast-config configs/modaltune/sim_comparison.yaml

``pretrain``: simulates the DISJOINT pretraining cohort (``simulate_cohort(preset="demo", seed=100,
world_seed=0, n_patients=600)``: new patients in the slide world of the evaluated ``demo`` seed-0
cohort), checks that no patient's latent state is shared with the evaluated cohort, pretrains the
small transformer (:func:`modaltune.modaltune.pretrain.pretrain_slide_encoder`, regression on the
slide-visible ground-truth factors) and writes ``<out>/slide_encoder_pretrained.pt`` (+ ``.json``).

``analyse``: on the evaluated cohort and the benchmark's folds, (1) the simulator's oracle ceiling
(subtype: the true probability; survival: the true log-hazard; per fold and pooled with bootstrap
CIs), (2) how well the frozen pretrained embedding carries the slide factors of the EVALUATED cohort
(5-fold ridge R^2: transfer check), (3) gate magnitudes: ModalTune is refitted on fold 0 with the
benchmark's exact settings (the refit's fold-0 metrics are compared with the benchmark unit's),
|gamma| per injector and the injected update's size relative to the patch tokens, (4) paired
per-fold differences ModalTune - baselines. Writes ``<out>/analysis.md`` and ``analysis.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "modaltune" / "sim_pretrained.yaml"
SLIDE_FACTORS = ["z_slide_1", "z_slide_2", "z_shared"]
PRETRAIN = {"preset": "demo", "seed": 100, "world_seed": 0, "n_patients": 600}
ENCODER = {"embed_dim": 64, "depth": 3, "num_heads": 4}


def _eval_cohort(work: Path):
    """The evaluated cohort exactly as the benchmark simulates it (same preset/seed -> same files)."""
    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import simulate_cohort

    d = work / "eval_cohort"
    return Cohort.load(d) if (d / "cohort.yaml").exists() else simulate_cohort(d, preset="demo", seed=0)


def cmd_pretrain(out: Path, epochs: int, threads: int) -> None:
    import torch

    from modaltune.data.simulate import simulate_cohort
    from modaltune.modaltune.pretrain import pretrain_slide_encoder

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pre = simulate_cohort(out / "pretrain_cohort", **PRETRAIN)
    ev = _eval_cohort(out)
    # disjoint patients: no latent value of any evaluated patient reappears in the pretraining cohort
    a = np.round(ev.ground_truth[[f"z_{f}" for f in ("slide_1", "slide_2", "omics_1", "omics_2", "clinical", "shared")]].to_numpy().ravel(), 9)
    b = np.round(pre.ground_truth[[f"z_{f}" for f in ("slide_1", "slide_2", "omics_1", "omics_2", "clinical", "shared")]].to_numpy().ravel(), 9)
    shared = int(np.intersect1d(a, b).size)
    if shared:
        raise SystemExit(f"pretraining cohort shares {shared} latent values with the evaluated cohort: not disjoint")
    res = pretrain_slide_encoder(pre, targets=pre.ground_truth[SLIDE_FACTORS], encoder="small_transformer", encoder_params=ENCODER,
                                 epochs=epochs, lr=1e-3, weight_decay=1e-4, batch_size=16, max_patches=256, seed=0, progress=True)
    res.config.update({"pretrain_cohort": PRETRAIN, "shared_latent_values_with_eval_cohort": shared})
    path = res.save(out / "slide_encoder_pretrained.pt")
    print(res.history.tail(3).to_string(index=False))
    print(f"wrote {path} in {time.time() - t0:.0f} s")


def _oracle(cohort, folds) -> tuple[pd.DataFrame, dict]:
    from modaltune.evaluation.bootstrap import bootstrap_ci
    from modaltune.evaluation.metrics import harrell_c, macro_ovr_auc

    gt = cohort.ground_truth
    sub = cohort.targets(cohort.manifest.task("subtype"))
    srv = cohort.targets(cohort.manifest.task("survival"))
    ids = list(cohort.patients.index)
    df = pd.DataFrame({"patient_id": ids, "label": np.where(sub.mask, sub.label, -1), "p": gt.loc[ids, "subtype_prob"].to_numpy(),
                       "time": srv.time, "event": srv.event, "risk": gt.loc[ids, "risk"].to_numpy(), "smask": srv.mask})

    def bal(d):
        d = d[d.label >= 0]
        pred = (d.p > 0.5).astype(int)
        return float(np.mean([np.mean(pred[d.label == k] == k) for k in (0, 1)]))

    def auc(d):
        d = d[d.label >= 0]
        return macro_ovr_auc(d.label.to_numpy(), np.stack([1 - d.p, d.p], 1))

    def cidx(d):
        d = d[d.smask]
        return harrell_c(d.time.to_numpy(), d.event.to_numpy(), d.risk.to_numpy())

    rows = []
    for f in folds:
        ev = list(list(f.test) or list(f.val))
        d = df.set_index("patient_id").loc[ev].reset_index()
        rows.append({"fold": f.index, "balanced_accuracy": bal(d), "macro_auc": auc(d), "c_index": cidx(d)})
    pooled = {m: bootstrap_ci(df, fn, n=1000, seed=0) for m, fn in (("balanced_accuracy", bal), ("macro_auc", auc), ("c_index", cidx))}
    return pd.DataFrame(rows), {m: (r.estimate, r.low, r.high) for m, r in pooled.items()}


def _frozen_embedding(cohort, ckpt: Path) -> pd.DataFrame:
    """(patients with a slide) x 64 frozen pretrained slide embeddings of ``cohort`` (deterministic 256-patch view)."""
    import torch

    from modaltune.encoders.slide import create_slide_encoder
    from modaltune.modaltune.pretrain import _bags

    enc = create_slide_encoder("small_transformer", checkpoint=ckpt, in_dim=int(cohort.manifest.modality("slide").feature_dim), **ENCODER).eval()
    ids = [str(p) for p in cohort.patients.index]
    bags = _bags(cohort, ids, 256)
    ids = [p for p in ids if p in bags]
    with torch.no_grad():
        E = torch.cat([enc(bags[p][0][None], bags[p][1][None]) for p in ids]).numpy()
    return pd.DataFrame(E, index=ids)


def _embedding_probes(cohort, E: pd.DataFrame, folds) -> pd.DataFrame:
    """POST-HOC diagnostic: the paper's linear probes (logistic C=1 / ridge Cox 0.1) on the frozen
    pretrained slide embedding, per fold (patients without a slide are left out here)."""
    from modaltune.evaluation.probes import probe_task_metrics
    from modaltune.training.trainer import targets_frame

    tasks = [cohort.manifest.task("subtype"), cohort.manifest.task("survival")]
    from modaltune.data.dataset import TaskInfo

    infos = [TaskInfo(t, 2 if t.kind == "classification" else 4, list(t.classes or []), None, {}) for t in tasks]
    rows = []
    for f in folds:
        ev = list(f.test) or list(f.val)
        tgt = targets_frame(cohort, list(f.train) + ev, [t.name for t in tasks])
        for ti in infos:
            g = tgt[(tgt["task"] == ti.spec.name) & tgt["labelled"].astype(bool)].set_index("patient_id")
            tr = [p for p in f.train if p in g.index and p in E.index]
            te = [p for p in ev if p in g.index and p in E.index]
            for metric, (v, _why) in probe_task_metrics(ti, E.loc[tr].to_numpy(), g.loc[tr], E.loc[te].to_numpy(), g.loc[te]).items():
                rows.append({"fold": f.index, "task": ti.spec.name, "metric": metric, "value": v, "n_eval": len(te)})
    return pd.DataFrame(rows)


def _what_was_learned(cohort, preds: pd.DataFrame) -> pd.DataFrame:
    """POST-HOC diagnostic: regress each method's out-of-fold subtype logit / survival risk on the
    simulator's standardised ground-truth components; the coefficient of the slide x RNA
    interaction term says whether a method uses the joint effect only a joint model can learn."""
    gt = cohort.ground_truth.copy()
    comps = {
        "subtype": {"slide": gt["subtype_logit_slide"], "omics": gt["subtype_logit_omics"], "interaction": gt["subtype_logit_interaction"]},
        "survival": {"slide": gt["z_slide_2"], "omics": gt["z_omics_2"], "interaction": gt["risk_interaction"], "clinical": gt["z_clinical"]},
    }
    rows = []
    for (method, task), p in preds.groupby(["method", "task"]):
        p = p.set_index("patient_id")
        y = np.log(p["prob_B"].clip(1e-6, 1 - 1e-6) / p["prob_A"].clip(1e-6, 1 - 1e-6)) if task == "subtype" else p["risk"]
        X = pd.DataFrame({k: v.loc[p.index] for k, v in comps[task].items()})
        Xs = (X - X.mean()) / X.std()
        ys = (y - y.mean()) / y.std()
        A = np.column_stack([np.ones(len(Xs)), Xs.to_numpy()])
        beta, *_ = np.linalg.lstsq(A, ys.to_numpy(), rcond=None)
        r2 = 1 - ((ys.to_numpy() - A @ beta) ** 2).sum() / (ys.to_numpy() ** 2).sum()
        rows.append({"method": method, "task": task, **{f"beta_{k}": float(b) for k, b in zip(X.columns, beta[1:])}, "r2": float(r2), "n": len(ys)})
    return pd.DataFrame(rows)


def _transfer_r2(cohort, E: pd.DataFrame) -> dict[str, float]:
    """5-fold ridge R^2 of the evaluated cohort's slide factors from the frozen pretrained embedding
    ``E`` (:func:`_frozen_embedding`)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict

    ids = list(E.index)
    out = {}
    for f in SLIDE_FACTORS:
        y = cohort.ground_truth.loc[ids, f].to_numpy()
        pred = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 3, 13)), E.to_numpy(), y, cv=5)
        out[f] = float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    return out


def _gates(cohort, cfg, fold, bench_metrics: pd.DataFrame, label: str, save_dir: Path) -> dict:
    """Refit ModalTune on ``fold`` with the benchmark's settings (saved in ``save_dir`` and reused);
    gate magnitudes and the relative size of the injected update."""
    import torch

    from modaltune.data.dataset import collate_patients
    from modaltune.evaluation import compute_metrics
    from modaltune.evaluation.metrics import metric_names
    from modaltune.training.trainer import FittedModel, fit, predict, targets_frame

    method = next(m for m in cfg.methods if m.display == label)
    tasks = cfg.task_sets([t.name for t in cohort.tasks])[0]
    tcfg = cfg.trainer.model_copy(update={"seed": 0, "progress_bar": False, "logger": "none"})
    t0 = time.time()
    if (save_dir / "model").exists():
        fitted = FittedModel.load(save_dir / "model")
    else:
        fitted = fit(cohort, fold, method, tasks=tasks, trainer=tcfg, data=cfg.data, out_dir=save_dir, progress=False)
    seconds = time.time() - t0
    ids = list(fold.test) or list(fold.val)
    preds = predict(fitted, cohort, ids)
    train_tgt = targets_frame(cohort, fold.train, fitted.tasks)
    refit = {}
    for t in fitted.info.tasks:
        p = preds[preds["task"] == t.spec.name].dropna(axis=1, how="all")
        wanted = [x for x in (cfg.evaluation.metrics or []) if x in metric_names(t.spec.kind)] or None
        mv = compute_metrics(t, p, train_tgt[train_tgt["task"] == t.spec.name] if t.spec.kind == "survival" else None, wanted)
        refit.update({f"{t.spec.name}/{k}": float(v) for k, v in mv.items()})
    bm = bench_metrics[(bench_metrics["method"] == label) & (bench_metrics["fold"] == fold.index)]
    bench = {f"{r.task}/{r.metric}": float(r.value) for r in bm.itertuples()}
    m = fitted.model.eval()
    gam = [inj.gamma.detach() for inj in m.adapter.injectors]
    # size of the injected update relative to the patch tokens, on evaluation patients
    ds_ids = ids[:32]
    from modaltune.data.dataset import PatientDataset
    from modaltune.training._prep import bind

    ds = PatientDataset(cohort, ds_ids, bind(fitted.preprocessor, cohort), training=False, max_patches=cfg.trainer.max_patches)
    rel = [[] for _ in gam]
    hooks = []
    for gi, inj in enumerate(m.adapter.injectors):
        def hook(mod, args, out, gi=gi):
            x = args[0]
            rel[gi].append(float((out - x).norm() / x.norm().clamp_min(1e-12)))
        hooks.append(inj.register_forward_hook(hook))
    with torch.no_grad():
        for i in range(0, len(ds_ids), 4):
            m(collate_patients([ds[j] for j in range(i, min(i + 4, len(ds_ids)))]))
    for h in hooks:
        h.remove()
    return {
        "label": label, "fold": fold.index, "refit_seconds": round(seconds, 1), "refit_metrics": refit, "benchmark_metrics": bench,
        "gamma_mean_abs": [float(g.abs().mean()) for g in gam], "gamma_max_abs": [float(g.abs().max()) for g in gam],
        "injection_relative_norm": [float(np.mean(r)) if r else float("nan") for r in rel],
        "weights_source": getattr(m, "weights_source", None),
    }


def _summary_table(results: pd.DataFrame, ddof: int) -> pd.DataFrame:
    r = results[results["metric"].isin(["balanced_accuracy", "macro_auc", "c_index"])]
    g = r.groupby(["method", "task", "metric"])["value"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=ddof), "n": g.count()}).reset_index()


def cmd_analyse(out: Path, random_bench: Path | None, threads: int, skip_gates: bool, contrast_config: Path | None = None) -> None:
    import torch

    from modaltune.config import load_config
    from modaltune.training import sources
    from modaltune.training.experiment_config import BenchmarkConfig

    torch.set_num_threads(threads)
    cfg = load_config(CONFIG, BenchmarkConfig)
    bench = out / "bench"
    results = pd.read_csv(bench / "results.csv")
    cohort = sources.load_cohort(bench / "cohorts" / "sim_demo_seed0")
    splits, _ = sources.make_splits(cohort, cfg.split, ["subtype", "survival"])
    report: dict = {"config": str(CONFIG.relative_to(REPO)), "pretrain": json.loads((out / "slide_encoder_pretrained.pt.json").read_text())["config"]}
    report["pretrain_history_last"] = json.loads((out / "slide_encoder_pretrained.pt.json").read_text())["history"][-1]
    oracle_folds, oracle_pooled = _oracle(cohort, splits.folds)
    report["oracle_folds"] = oracle_folds.to_dict("records")
    report["oracle_pooled"] = oracle_pooled
    E = _frozen_embedding(cohort, out / "slide_encoder_pretrained.pt")
    report["transfer_r2"] = _transfer_r2(cohort, E)
    ep = _embedding_probes(cohort, E, splits.folds)
    g = ep.groupby(["task", "metric"])["value"]
    report["posthoc_embedding_probes"] = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=cfg.evaluation.ddof)}).reset_index().to_dict("records")
    report["posthoc_embedding_probes_folds"] = ep.to_dict("records")
    preds = pd.read_parquet(bench / "predictions.parquet")
    extra = []
    if random_bench is not None:
        rp = (random_bench.parent if random_bench.suffix == ".csv" else random_bench) / "predictions.parquet"
        if rp.exists():
            extra.append(pd.read_parquet(rp).assign(method=lambda d: d["method"] + " [random backbone]"))
    report["posthoc_what_was_learned"] = _what_was_learned(cohort, pd.concat([preds] + extra, ignore_index=True)).to_dict("records")
    table = _summary_table(results, cfg.evaluation.ddof)
    report["table"] = table.to_dict("records")
    # paired per-fold differences ModalTune - each other method
    mt = "modaltune (pretrained frozen backbone)"
    piv = results[results["metric"].isin(["balanced_accuracy", "macro_auc", "c_index"])].pivot_table(index=["task", "metric", "fold"], columns="method", values="value")
    diffs = {}
    for other in piv.columns:
        if other == mt:
            continue
        d = (piv[mt] - piv[other]).groupby(level=["task", "metric"])
        diffs[other] = {f"{t}/{m}": {"mean": float(v.mean()), "wins": int((v > 0).sum()), "folds": int(v.notna().sum())} for (t, m), v in d}
    report["paired_vs"] = diffs
    if random_bench is not None:
        rr = pd.read_csv(random_bench if random_bench.suffix == ".csv" else random_bench / "results.csv")
        rr = rr[rr["method"] == "modaltune"]
        report["random_backbone_modaltune"] = _summary_table(rr, cfg.evaluation.ddof).to_dict("records")
        both = piv[mt].reset_index().merge(rr.rename(columns={"value": "random"})[["task", "metric", "fold", "random"]], on=["task", "metric", "fold"])
        report["pretrained_minus_random"] = {f"{t}/{m}": float((g[mt] - g["random"]).mean()) for (t, m), g in both.groupby(["task", "metric"])}
    if not skip_gates:
        fold0 = next(f for f in splits.folds if f.index == 0)
        report["gates"] = [_gates(cohort, cfg, fold0, results, mt, out / "gates_fold0")]
        if contrast_config is not None:  # the same refit for the RANDOM frozen backbone (sim_comparison.yaml)
            ccfg = load_config(contrast_config, BenchmarkConfig)
            rres = pd.read_csv(random_bench) if random_bench is not None and random_bench.suffix == ".csv" else pd.DataFrame(columns=["method", "fold", "task", "metric", "value"])
            report["gates"].append(_gates(cohort, ccfg, fold0, rres, "modaltune", out / "gates_fold0_random_backbone"))
    (out / "analysis.json").write_text(json.dumps(report, indent=2, default=str))
    _write_md(out / "analysis.md", report)
    print((out / "analysis.md").read_text())


def _write_md(path: Path, r: dict) -> None:
    lines = ["SYNTHETIC data (simulate_cohort); pre-registered config " + r["config"], ""]
    lines += ["| method | task | metric | mean ± std over folds | folds |", "|---|---|---|---|---|"]
    for row in r["table"]:
        lines.append(f"| {row['method']} | {row['task']} | {row['metric']} | {row['mean']:.3f} ± {row['std']:.3f} | {row['n']} |")
    o = pd.DataFrame(r["oracle_folds"])
    lines += ["", "Oracle (simulator ground truth: true subtype probability > 0.5, true log-hazard), same evaluation folds:", ""]
    for m in ("balanced_accuracy", "macro_auc", "c_index"):
        est, lo, hi = r["oracle_pooled"][m]
        lines.append(f"- {m}: {o[m].mean():.3f} ± {o[m].std(ddof=0):.3f} over folds; pooled {est:.3f} [{lo:.3f}, {hi:.3f}]")
    lines += ["", "Transfer: 5-fold ridge R^2 of the EVALUATED cohort's slide factors from the frozen pretrained embedding: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["transfer_r2"].items())]
    h = r["pretrain_history_last"]
    lines.append("Pretraining (last epoch, held-out pretraining patients): " + ", ".join(f"{k} {v:.3f}" for k, v in h.items() if k != "epoch"))
    lines += ["", "POST-HOC (not pre-registered): the paper's linear probes (logistic C=1 / ridge Cox 0.1) on the frozen pretrained "
              "slide embedding, per fold (patients with a slide): "
              + "; ".join(f"{r['task']}/{r['metric']} {r['mean']:.3f} ± {r['std']:.3f}" for r in r["posthoc_embedding_probes"])]
    lines += ["", "POST-HOC: standardised OLS coefficients of each method's out-of-fold subtype logit / survival risk on the simulator's "
              "ground-truth components (interaction = the slide x RNA product only a joint model can use):", "",
              "| method | task | slide | omics | interaction | clinical | R^2 |", "|---|---|---|---|---|---|---|"]
    for w in r["posthoc_what_was_learned"]:
        lines.append(f"| {w['method']} | {w['task']} | {w['beta_slide']:+.3f} | {w['beta_omics']:+.3f} | {w['beta_interaction']:+.3f} | "
                     f"{w.get('beta_clinical', float('nan')):+.3f} | {w['r2']:.3f} |")
    lines += ["", "Paired per-fold differences, ModalTune (pretrained) minus:", ""]
    for other, d in r["paired_vs"].items():
        lines.append(f"- {other}: " + "; ".join(f"{k} {v['mean']:+.3f} ({v['wins']}/{v['folds']} folds better)" for k, v in d.items()))
    if "pretrained_minus_random" in r:
        lines.append("- ModalTune with the random frozen backbone (sim_comparison run): " + "; ".join(f"{k} {v:+.3f}" for k, v in r["pretrained_minus_random"].items()))
    for g in r.get("gates", []):
        lines += ["", f"Gates after training, {g['label']} (fold {g['fold']} refit, {g['refit_seconds']} s, backbone {g['weights_source']}): mean |gamma| per group "
                  + ", ".join(f"{v:.4f}" for v in g["gamma_mean_abs"]) + "; max |gamma| " + ", ".join(f"{v:.4f}" for v in g["gamma_max_abs"])
                  + "; ||gamma * CrossAttn|| / ||x|| " + ", ".join(f"{v:.4f}" for v in g["injection_relative_norm"]),
                  "refit fold metrics " + json.dumps({k: round(v, 4) for k, v in g["refit_metrics"].items()})
                  + " vs benchmark unit " + json.dumps({k: round(v, 4) for k, v in g["benchmark_metrics"].items()})]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    a = sub.add_parser("analyse")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--random-bench", type=Path, default=None,
                   help="results.csv (or its run folder) of sim_comparison.yaml (random frozen backbone), for the paired contrast, "
                        "e.g. benchmarks/modaltune_results/sim_comparison_results.csv")
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--skip-gates", action="store_true")
    a.add_argument("--contrast-config", type=Path, default=None,
                   help="also refit fold 0 of this config's 'modaltune' row (e.g. configs/modaltune/sim_comparison.yaml: random backbone) for its gates")
    args = ap.parse_args()
    if args.cmd == "pretrain":
        cmd_pretrain(args.out, args.epochs, args.threads)
    else:
        cmd_analyse(args.out, args.random_bench, args.threads, args.skip_gates, args.contrast_config)


if __name__ == "__main__":
    main()
