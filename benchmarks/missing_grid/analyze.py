"""Tables of a missing-modality grid run (run_grid.py): degradation table and paired bootstraps.

    python benchmarks/missing_grid/analyze.py --run /work/runs/h20c/sim_grid --out benchmarks/missing_grid/sim \
        --title "SIMULATED cohort ..." [--reference late_fusion] [--n 1000]

Writes to ``--out``: ``results.csv`` (copy of the run's per-unit rows), ``masks.csv``,
``degradation.csv`` (mean C-index per method x setting over the folds x seeds it ran),
``paired.csv`` and ``analysis.json`` (paired bootstraps against the reference method), ``summary.md``.

Paired bootstraps use the pooled held-out predictions of the folds *both* methods finished (one
seed at a time; several seeds: the seed's deltas are reported per seed). Two comparisons per
setting W:

- ``C(m, W) - C(ref, W)``: the method against the reference on the same patients and masks;
- degradation difference ``[C(m, W) - C(m, W0_O0)] - [C(ref, W) - C(ref, W0_O0)]``: each
  resample draws the same patients for all four C-indices (the evaluated patients are the same in
  every setting: only their modalities differ), so a positive value = the method lost less than the
  reference when modalities went missing.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.evaluation.metrics import harrell_c

BASE = "W0_O0"


def _pooled(preds: pd.DataFrame, method: str, setting: str, seed: int, folds: list[int]) -> pd.DataFrame:
    g = preds[(preds["method"] == method) & (preds["setting"] == setting) & (preds["seed"] == seed) & preds["fold"].isin(folds)]
    return g.dropna(subset=["time", "event"]).set_index("patient_id").sort_index()


def _boot(frames: list[pd.DataFrame], combine, n: int, seed: int = 0) -> dict:
    """Percentile 95% CI and two-sided p of ``combine([C(frame_i)])`` over patient resamples (same
    patients for every frame)."""
    ids = frames[0].index
    arrays = [tuple(f.loc[ids, c].to_numpy(float) for c in ("time", "event", "risk")) for f in frames]

    def cs(idx):
        out = []
        for t, e, r in arrays:
            try:
                out.append(harrell_c(t[idx], e[idx], r[idx]))
            except Exception:  # noqa: BLE001 - a resample without a comparable pair has no C
                out.append(float("nan"))
        return out

    point = combine(cs(np.arange(len(ids))))
    rng = np.random.default_rng(seed)
    d = []
    for _ in range(n):
        d.append(combine(cs(rng.integers(0, len(ids), len(ids)))))
    d = np.asarray(d)
    d = d[np.isfinite(d)]
    lo, hi = np.percentile(d, [2.5, 97.5])
    p = min(1.0, 2 * min((d <= 0).sum() + 1, (d >= 0).sum() + 1) / (len(d) + 1))
    return {"delta": float(point), "lo": float(lo), "hi": float(hi), "p": float(p), "n_patients": int(len(ids)), "n_valid": int(len(d))}


def degradation_table(ok: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Mean C-index per method x setting over the (fold, seed) units a grid finished.

    Args:
        ok: finished rows of a run's ``results.csv`` (columns method, setting, c_index; one row per unit).

    Returns:
        ``(deg, cnt, order)``: ``deg`` (methods x settings, in first-seen order, ``W0_O0`` first) of mean
        C-indices plus, when ``W0_O0`` ran, ``mean of missing settings - W0_O0`` (mean over the other
        settings minus ``W0_O0``) and ``worst - W0_O0`` (lowest other setting minus ``W0_O0``); ``cnt``
        the number of units behind each mean; ``order`` the setting columns.
    """
    settings = list(dict.fromkeys(ok["setting"]))
    order = [BASE] + [s for s in settings if s != BASE] if BASE in settings else settings
    methods = list(dict.fromkeys(ok["method"]))
    agg = ok.groupby(["method", "setting"])["c_index"].agg(["mean", "count"]).reset_index()
    deg = agg.pivot(index="method", columns="setting", values="mean").reindex(index=methods, columns=order)
    cnt = agg.pivot(index="method", columns="setting", values="count").reindex(index=methods, columns=order)
    missing = [s for s in order if s != BASE]
    if BASE in deg:
        deg["mean of missing settings - W0_O0"] = deg[missing].mean(axis=1) - deg[BASE]
        deg["worst - W0_O0"] = deg[missing].min(axis=1) - deg[BASE]
    return deg, cnt, order


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", required=True)
    ap.add_argument("--reference", default="late_fusion")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--group", default=None, help="column that splits the run into separate tables (e.g. cohort)")
    args = ap.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = pd.read_csv(run / "results.csv")
    res = res.drop_duplicates(["setting", "fold", "seed", "method"], keep="last")
    for f in ("results.csv", "masks.csv", "config.yaml"):
        if (run / f).exists():
            shutil.copy(run / f, out / f)
    ok = res[res["status"] == "done"]
    preds = pd.concat([pd.read_parquet(p) for p in sorted((run / "preds").glob("*.parquet"))], ignore_index=True)
    deg, cnt, order = degradation_table(ok)
    methods = list(deg.index)
    folds_of = {m: sorted(ok[ok["method"] == m]["fold"].unique().tolist()) for m in methods}
    deg.to_csv(out / "degradation.csv")

    # paired bootstraps against the reference, on the folds both finished in every setting compared
    rows = []
    ref = args.reference
    for m in methods:
        if m == ref:
            continue
        for seed in sorted(ok["seed"].unique()):
            both = sorted(set(ok[(ok["method"] == m) & (ok["seed"] == seed)]["fold"]) & set(ok[(ok["method"] == ref) & (ok["seed"] == seed)]["fold"]))
            for s in order:
                def have(meth, st, seed=seed):
                    return set(ok[(ok["method"] == meth) & (ok["setting"] == st) & (ok["seed"] == seed)]["fold"])

                fl = sorted(set(both) & have(m, s) & have(ref, s) & (have(m, BASE) & have(ref, BASE) if s != BASE else set(both)))
                if not fl:
                    continue
                a, b = _pooled(preds, m, s, seed, fl), _pooled(preds, ref, s, seed, fl)
                r = _boot([a, b], lambda c: c[0] - c[1], args.n)
                rows.append({"method": m, "reference": ref, "seed": int(seed), "setting": s, "comparison": "C(m) - C(ref)", "folds": " ".join(map(str, fl)), **r})
                if s != BASE:
                    a0, b0 = _pooled(preds, m, BASE, seed, fl), _pooled(preds, ref, BASE, seed, fl)
                    r = _boot([a, a0, b, b0], lambda c: (c[0] - c[1]) - (c[2] - c[3]), args.n)
                    rows.append({"method": m, "reference": ref, "seed": int(seed), "setting": s, "comparison": "degradation difference", "folds": " ".join(map(str, fl)), **r})
    paired = pd.DataFrame(rows)
    paired.to_csv(out / "paired.csv", index=False)

    lines = [f"# {args.title}", "", f"Units finished: {len(ok)} of {len(res)} attempted; failed: {int((res['status'] != 'done').sum())}.", "",
             "## C-index per setting (mean over the folds x seeds each method ran; units in brackets)", "",
             "| method | folds | " + " | ".join(order) + " | mean(missing) - W0_O0 | worst - W0_O0 |",
             "|---|---|" + "---|" * (len(order) + 2)]
    for m in methods:
        cells = [("n/a" if not np.isfinite(deg.loc[m, s]) else f"{deg.loc[m, s]:.3f} ({int(cnt.loc[m, s])})") for s in order]
        tail = [f"{deg.loc[m, c]:+.3f}" if c in deg and np.isfinite(deg.loc[m, c]) else "n/a" for c in ("mean of missing settings - W0_O0", "worst - W0_O0")]
        lines.append(f"| {m} | {','.join(map(str, folds_of[m]))} | " + " | ".join(cells) + " | " + " | ".join(tail) + " |")
    lines.append("")
    for comp, head in (("C(m) - C(ref)", f"Paired bootstrap C(method) - C({ref}) per setting"),
                       ("degradation difference", f"Paired bootstrap of the degradation difference [C(m,W) - C(m,W0_O0)] - [C({ref},W) - C({ref},W0_O0)] (positive = the method lost less than {ref})")):
        g = paired[paired["comparison"] == comp] if len(paired) else paired
        if g.empty:
            continue
        cols = [s for s in order if s in set(g["setting"])]
        lines += [f"## {head}", "", f"Pooled held-out predictions of the folds both methods finished; {args.n} patient resamples, 95% percentile CI, two-sided bootstrap p.", "",
                  "| method | seed | folds | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
        for (m, seed), h in g.groupby(["method", "seed"], sort=False):
            h = h.set_index("setting")
            cells = [f"{h.loc[s, 'delta']:+.3f} [{h.loc[s, 'lo']:+.3f}, {h.loc[s, 'hi']:+.3f}] (p {h.loc[s, 'p']:.3g})" if s in h.index else "n/a" for s in cols]
            lines.append(f"| {m} | {seed} | {h['folds'].iloc[0]} | " + " | ".join(cells) + " |")
        lines.append("")
    fails = res[res["status"] != "done"]
    if len(fails):
        lines += ["## Failed units", ""] + [f"- {r.method} {r.setting} fold {r.fold} seed {r.seed}: {r.reason}" for r in fails.itertuples()] + [""]
    (out / "summary.md").write_text("\n".join(lines))
    with open(out / "analysis.json", "w") as fh:
        json.dump({"title": args.title, "reference": ref, "degradation": json.loads(deg.to_json(orient="index")),
                   "units": json.loads(cnt.to_json(orient="index")), "folds": folds_of, "paired": rows}, fh, indent=1, default=float)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
