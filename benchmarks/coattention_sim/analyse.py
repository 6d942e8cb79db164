"""Oracle ceilings and interaction diagnostics for the issue-14 simulated regimes (benchmarks/coattention_sim).

For each benchmark run folder (``modaltune benchmark benchmarks/coattention_sim/<regime>.yaml --out RUN``):

* **Oracle ceilings** (no fitting: the simulator's true quantities from ``ground_truth.csv``), scored
  with Harrell's C on the same held-out folds as the methods (mean +- std over the 5 folds, ddof 0)
  and pooled over all patients with a 1000-resample percentile bootstrap CI:
  ``oracle (true log-hazard)`` = ``risk`` (incl. stage, age, site: inputs no method here sees);
  ``oracle slide+RNA`` = the part of the log-hazard carried by slide and RNA factors,
  ``b_s z_slide_2 + b_o z_omics_2 + b_so z_slide_1 z_omics_1 + b_sh z_shared``;
  ``oracle slide+RNA additive`` = the same without the product (the best any additive / late
  fusion of per-modality scores can do); ``oracle slide only`` = ``b_s z_slide_2 + b_sh z_shared``;
  ``oracle RNA only`` = ``b_o z_omics_2 + b_sh z_shared``. The paired bootstrap difference
  ``oracle slide+RNA - oracle slide+RNA additive`` is the headroom that learning the interaction can give.
* **Is the interaction learnable from the data?** A linear reference on the observed inputs, on the
  same folds: bag-mean slide features and pathway-mean RNA (``simulate._modality_matrices``), each
  reduced to its top ``k`` principal components (fitted on the training fold), then a ridge Cox model on
  the ``2k`` components (``cox_pca_additive``) or on them plus their ``k*k`` slide x RNA products
  (``cox_pca_products``). It shows what an explicit product term can recover at this sample size.
* **What each method's risk tracks**: per method and seed, Spearman correlations of its pooled
  out-of-fold risk with the true interaction term (``risk_interaction``) and with the additive
  slide+RNA part; a model that learnt the product correlates with the former.

Usage::

    python benchmarks/coattention_sim/analyse.py /work/runs/h20a/interaction /work/runs/h20a/additive \\
        --out benchmarks/coattention_sim/analysis.json

``--predictions`` gives each run's predictions file instead of its own (the committed files, which also hold
the CMTA rows appended after the runs).

Writes the JSON and prints markdown tables (also written next to it as ``<out>.md``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import spearmanr

from modaltune.data.simulate import SignalSpec
from modaltune.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
from modaltune.evaluation.metrics import harrell_c


def _c(d: pd.DataFrame) -> float:
    return harrell_c(d["time"], d["event"], d["risk"])


def oracle_scores(gt: pd.DataFrame, sig: SignalSpec) -> dict[str, np.ndarray]:
    """(N,) true risk scores of the oracles, rows of ``gt``."""
    s2, o2, s1, o1, sh = (gt[f"z_{k}"].to_numpy() for k in ("slide_2", "omics_2", "slide_1", "omics_1", "shared"))
    additive = sig.surv_slide * s2 + sig.surv_omics * o2 + sig.surv_shared * sh
    return {
        "oracle (true log-hazard)": gt["risk"].to_numpy(),
        "oracle slide+RNA": additive + sig.surv_interaction * s1 * o1,
        "oracle slide+RNA additive": additive,
        "oracle slide only": sig.surv_slide * s2 + sig.surv_shared * sh,
        "oracle RNA only": sig.surv_omics * o2 + sig.surv_shared * sh,
    }


def product_reference(cohort_dir: Path, base: pd.DataFrame, k: int = 4, alpha: float = 10.0) -> dict[str, np.ndarray]:
    """Out-of-fold risks (rows of ``base``) of the ridge Cox references described in the module docstring."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import _modality_matrices

    ids = list(base["patient_id"])
    X = _modality_matrices(Cohort.load(cohort_dir), ids)
    y = np.array(list(zip(base["event"].astype(bool), base["time"].astype(float))), dtype=[("event", bool), ("time", float)])
    out = {"cox_pca_additive": np.zeros(len(ids)), "cox_pca_products": np.zeros(len(ids))}
    for f in sorted(base["fold"].unique()):
        te = (base["fold"] == f).to_numpy()
        parts = []
        for key in ("slide", "omics"):
            sc = StandardScaler().fit(X[key][~te])
            pca = PCA(k, random_state=0).fit(sc.transform(X[key][~te]))
            parts.append(pca.transform(sc.transform(X[key])) / np.sqrt(pca.explained_variance_))
        prods = np.einsum("ni,nj->nij", parts[0], parts[1]).reshape(len(ids), -1)
        for name, M in (("cox_pca_additive", np.hstack(parts)), ("cox_pca_products", np.hstack(parts + [prods]))):
            cox = CoxPHSurvivalAnalysis(alpha=alpha).fit(M[~te], y[~te])
            out[name][te] = cox.predict(M[te])
    return out


def analyse(run: Path, n_boot: int = 1000, predictions: Path | None = None) -> dict:
    """Oracles, fitted references and risk correlations of one run folder; ``predictions`` (default
    ``run/predictions.parquet``) can be the committed file that also holds rows appended after the run (CMTA)."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    spec = cfg["data"]["simulate"][0]
    sig = SignalSpec.from_any((spec.get("options") or {}).get("signal"))
    cohort = run / "cohorts" / spec["name"]
    gt = pd.read_csv(cohort / "ground_truth.csv", index_col="patient_id")
    preds = pd.read_parquet(predictions or run / "predictions.parquet")
    preds = preds[(preds["task"] == "survival") & preds["labelled"].astype(bool)]
    # held-out patients and their fold, from any one method/seed (all share the split)
    first = preds[(preds["method"] == preds["method"].iloc[0]) & (preds["seed"] == preds["seed"].min())]
    base = first[["patient_id", "fold", "time", "event"]].reset_index(drop=True)
    g = gt.loc[base["patient_id"]]
    out: dict = {"run": str(run), "signal": {k: getattr(sig, k) for k in ("surv_slide", "surv_omics", "surv_interaction", "surv_shared", "surv_stage", "surv_age")},
                 "n_patients": len(base), "events": int(base["event"].sum()), "oracles": {}}
    tables = {}
    for name, score in oracle_scores(g, sig).items():
        d = base.assign(risk=score)
        folds = [_c(d[d["fold"] == f]) for f in sorted(d["fold"].unique())]
        b = bootstrap_ci(d, _c, n=n_boot, seed=0)
        out["oracles"][name] = {"fold_mean": float(np.mean(folds)), "fold_std": float(np.std(folds)), "folds": folds,
                                "pooled": b.estimate, "ci": [b.low, b.high]}
        tables[name] = d
    p = paired_bootstrap(tables["oracle slide+RNA"], tables["oracle slide+RNA additive"], _c, n=n_boot, seed=0)
    out["interaction_headroom"] = {"delta": p.delta, "ci": list(p.ci), "p": p.p_value}
    out["reference"] = {}
    ref = {name: base.assign(risk=r) for name, r in product_reference(cohort, base).items()}
    for name, d in ref.items():
        folds = [_c(d[d["fold"] == f]) for f in sorted(d["fold"].unique())]
        b = bootstrap_ci(d, _c, n=n_boot, seed=0)
        out["reference"][name] = {"fold_mean": float(np.mean(folds)), "fold_std": float(np.std(folds)), "folds": folds, "pooled": b.estimate, "ci": [b.low, b.high]}
    p = paired_bootstrap(ref["cox_pca_products"], ref["cox_pca_additive"], _c, n=n_boot, seed=0)
    out["reference_products_minus_additive"] = {"delta": p.delta, "ci": list(p.ci), "p": p.p_value}
    # what each method's out-of-fold risk tracks
    inter = gt["risk_interaction"]
    add = pd.Series(oracle_scores(gt, sig)["oracle slide+RNA additive"], index=gt.index)
    rows = []
    for (m, seed), d in preds.groupby(["method", "seed"]):
        ids = d["patient_id"].to_numpy()
        rows.append({"method": m, "seed": int(seed), "n": len(d),
                     "rho_interaction": float(spearmanr(d["risk"], inter.loc[ids])[0]) if sig.surv_interaction else float(spearmanr(d["risk"], (gt["z_slide_1"] * gt["z_omics_1"]).loc[ids])[0]),
                     "rho_additive": float(spearmanr(d["risk"], add.loc[ids])[0])})
    out["tracks"] = rows
    return out


def markdown(res: dict) -> str:
    lines = [f"### {Path(res['run']).name}: oracle ceilings (Harrell's C, {res['n_patients']} patients, {res['events']} events)", "",
             f"| oracle | mean ± std over {len(next(iter(res['oracles'].values()))['folds'])} folds | pooled [95% CI] |", "|---|---|---|"]
    for k, v in res["oracles"].items():
        lines.append(f"| {k} | {v['fold_mean']:.3f} ± {v['fold_std']:.3f} | {v['pooled']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] |")
    for k, v in res["reference"].items():
        lines.append(f"| {k} (fitted, observed inputs) | {v['fold_mean']:.3f} ± {v['fold_std']:.3f} | {v['pooled']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] |")
    h = res["interaction_headroom"]
    r = res["reference_products_minus_additive"]
    lines += ["", f"cox_pca_products - cox_pca_additive (paired bootstrap): {r['delta']:+.3f} [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}], p = {r['p']:.3f}"]
    lines += ["", f"Interaction headroom (oracle slide+RNA - additive, paired bootstrap): {h['delta']:+.3f} [{h['ci'][0]:+.3f}, {h['ci'][1]:+.3f}], p = {h['p']:.3f}", "",
              "| method | Spearman(risk, z_slide_1·z_omics_1 term) | Spearman(risk, additive slide+RNA part) |", "|---|---|---|"]
    t = pd.DataFrame(res["tracks"]).groupby("method")[["rho_interaction", "rho_additive"]].agg(["mean", "std"])
    for m, r in t.iterrows():
        sd = lambda v: "" if pd.isna(v) else f" ± {v:.2f}"  # one seed has no std
        lines.append(f"| {m} | {r[('rho_interaction', 'mean')]:+.2f}{sd(r[('rho_interaction', 'std')])} | {r[('rho_additive', 'mean')]:+.2f}{sd(r[('rho_additive', 'std')])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--predictions", nargs="+", type=Path, default=None,
                    help="one predictions.parquet per run, in the same order (default: each run's own)")
    a = ap.parse_args(argv)
    preds = a.predictions or [None] * len(a.runs)
    if len(preds) != len(a.runs):
        ap.error(f"--predictions: {len(preds)} files for {len(a.runs)} runs (give one per run, in the same order)")
    res = [analyse(r, a.bootstrap, p) for r, p in zip(a.runs, preds)]
    a.out.write_text(json.dumps(res, indent=2))
    md = "\n".join(markdown(r) for r in res)
    a.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
