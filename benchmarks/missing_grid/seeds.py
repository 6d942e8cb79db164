"""Pool the training seeds of a missing-modality grid (issue 15): one run folder per seed (run_grid.py).

    python benchmarks/missing_grid/seeds.py --runs /work/runs/h22f/sim_grid /work/runs/h23d/sim_grid_s1 \
        /work/runs/h23d/sim_grid_s2 --out benchmarks/missing_grid/sim_seeds --title "..." [--reference late_fusion] [--n 1000]

Per method x setting x seed the **pooled C** is Harrell's C on the held-out predictions of all the
folds pooled (every patient once). A (method, seed) counts only when it finished every fold of every
setting, so each pooled C is on the same patients; a method is pooled over the seeds it completed.

Writes to ``--out``:

- ``pooled_c.csv``: method, seed, setting, pooled C, n_patients (one row per pooled C);
- ``degradation.csv``: per method, the mean over seeds of the pooled C per setting, and the mean over
  seeds of the degradation ``mean(pooled C of the missing settings) - pooled C(W0_O0)`` with its
  min and max over seeds;
- ``paired.csv``: paired bootstrap against the reference of the **seed-mean** degradation difference
  ``mean_s {[C(m,W,s) - C(m,W0_O0,s)] - [C(ref,W,s) - C(ref,W0_O0,s)]}`` per setting W and for the
  mean over the missing settings (``mean(missing)``), over the seeds both methods completed. A
  resample draws patients once and uses the same draw for every seed, setting and both methods (the
  evaluated patients are the same in every unit: seeds change the training, masks change modalities);
- ``summary.md`` and ``analysis.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.errors import InputError

BASE = "W0_O0"
MEAN_MISSING = "mean(missing)"


def pair_matrices(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tied_tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """(N, D): (n, n) matrices with Harrell's pair rules (scikit-survival's, as
    :func:`modaltune.evaluation.metrics.harrell_c`): ``D[i, j] = 1`` when (i, j) is comparable (i had
    the event and ``t_j > t_i``, or ``t_j == t_i`` and j is censored), ``N[i, j]`` = 1 / 0.5 / 0 for a
    comparable pair ranked right / tied within ``tied_tol`` / wrong. ``D[i, i] = 0`` always (a
    patient is never comparable with itself or its bootstrap copy: same time, same event)."""
    t, e, r = np.asarray(time, float), np.asarray(event).astype(bool), np.asarray(risk, float)
    comp = e[:, None] & ((t[None, :] > t[:, None]) | ((t[None, :] == t[:, None]) & ~e[None, :]))
    diff = r[:, None] - r[None, :]
    tied = np.abs(diff) <= tied_tol
    num = comp & (diff > 0) & ~tied
    return num + 0.5 * (comp & tied), comp.astype(float)


def weighted_c(num: np.ndarray, den: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Harrell's C of bootstrap resamples given as patient counts.

    A resample with patient counts ``w`` (n,) holds ``w_i * w_j`` copies of pair (i, j), so its C is
    ``w^T N w / w^T D w``: one matrix product for all resamples at once instead of one O(n^2) C per
    resample and per (method, seed, setting) (the bootstrap needs ~10^5 of them).

    Args:
        num, den: (n, n) from :func:`pair_matrices`; weights: (B, n) counts (or (n,)).

    Returns:
        (B,) C-indices; NaN where a resample has no comparable pair.
    """
    return _ratio(weighted_pairs(num, weights), weighted_pairs(den, weights))


def weighted_pairs(mat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) ``w^T mat w`` for each row ``w`` of ``weights`` (B, n): the pair count of each resample."""
    w = np.atleast_2d(np.asarray(weights, float))
    return ((w @ mat) * w).sum(axis=1)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)


def load_runs(runs: list[str]) -> tuple[pd.DataFrame, dict]:
    """Every finished unit's predictions of the run folders (one per seed, or several seeds in one),
    and the folds of each (setting): (preds with method, setting, fold, seed, patient_id, time, event,
    risk; {setting: set of folds seen by any method})."""
    frames, folds = [], {}
    for run in map(Path, runs):
        res_path = run / "results.csv"
        if not res_path.exists():
            raise InputError("no results.csv in the run folder", where=run, fix="pass folders written by benchmarks/missing_grid/run_grid.py")
        res = pd.read_csv(res_path).drop_duplicates(["setting", "fold", "seed", "method"], keep="last")
        ok = res[res["status"] == "done"]
        for r in ok.itertuples():
            folds.setdefault(r.setting, set()).add(int(r.fold))
        pf = sorted((run / "preds").glob("*.parquet"))
        if not pf:
            continue
        p = pd.concat([pd.read_parquet(f) for f in pf], ignore_index=True)
        keep = set(zip(ok["setting"], ok["fold"].astype(int), ok["seed"].astype(int), ok["method"]))
        p = p[[k in keep for k in zip(p["setting"], p["fold"].astype(int), p["seed"].astype(int), p["method"])]]
        frames.append(p[["method", "setting", "fold", "seed", "patient_id", "time", "event", "risk"]])
    if not frames:
        raise InputError("no finished unit in any run folder", where=" ".join(runs), fix="run run_grid.py first")
    preds = pd.concat(frames, ignore_index=True).drop_duplicates(["method", "setting", "fold", "seed", "patient_id"], keep="last")
    return preds.dropna(subset=["time", "event"]), folds


def complete_units(preds: pd.DataFrame, settings: list[str], folds: dict) -> dict[str, list[int]]:
    """{method: seeds it finished on every fold of every setting} (methods with none are left out)."""
    have = preds.groupby(["method", "seed", "setting"])["fold"].apply(lambda f: set(f.astype(int))).to_dict()
    out = {}
    for m in dict.fromkeys(preds["method"]):
        seeds = [int(s) for s in sorted(preds.loc[preds["method"] == m, "seed"].unique())
                 if all(have.get((m, s, st), set()) >= folds[st] for st in settings)]
        if seeds:
            out[m] = seeds
    return out


def _p_two_sided(d: np.ndarray) -> float:
    """Two-sided bootstrap p as analyze.py computes it (add-one on each tail)."""
    return float(min(1.0, 2 * min((d <= 0).sum() + 1, (d >= 0).sum() + 1) / (len(d) + 1)))


def resample_weights(n_patients: int, n: int, boot_seed: int = 0) -> np.ndarray:
    """(n, n_patients) patient counts of ``n`` bootstrap resamples: ``default_rng(boot_seed)``,
    ``integers(0, n_patients, n_patients)`` per resample, the draws of ``paired_bootstrap``."""
    rng = np.random.default_rng(boot_seed)
    return np.stack([np.bincount(rng.integers(0, n_patients, n_patients), minlength=n_patients) for _ in range(n)])


def pool(preds: pd.DataFrame, folds: dict, reference: str, n: int, boot_seed: int = 0) -> dict:
    """Pooled C, seed-pooled degradation and the paired bootstrap (module docstring); returns
    {"settings", "seeds", "pooled", "degradation", "paired"} (lists of row dicts)."""
    settings = [BASE] + sorted(s for s in folds if s != BASE)
    if BASE not in folds:
        raise InputError(f"no {BASE} unit: the degradation needs the full-modality baseline", where="results.csv", fix=f"run the {BASE} setting")
    missing = settings[1:]
    seeds_of = complete_units(preds, settings, folds)
    if reference not in seeds_of:
        raise InputError(f"reference method {reference!r} has no seed finished on every fold and setting", where="--reference",
                         fix=f"pick one of {sorted(seeds_of)}")
    ids = np.array(sorted(preds["patient_id"].unique()))
    # one patient draw per resample, shared by every method, seed and setting (the paired design)
    weights = resample_weights(len(ids), n, boot_seed)
    full = np.ones((1, len(ids)))
    cpoint, cboot, pooled, den_cache = {}, {}, [], {}
    for m, seeds in seeds_of.items():
        for s in seeds:
            for st in settings:
                g = preds[(preds["method"] == m) & (preds["seed"] == s) & (preds["setting"] == st)].set_index("patient_id")
                if len(g) != len(ids) or set(g.index) != set(ids):
                    raise InputError(f"{m} seed {s} {st} predicted {len(g)} patients, the pooled runs have {len(ids)}",
                                     where=f"{m} seed {s} {st}", fix="pool runs of the same cohort and split (check_masks.py names the unit)")
                g = g.loc[ids]
                t, e = g["time"].to_numpy(float), g["event"].to_numpy(float)
                num, den = pair_matrices(t, e, g["risk"].to_numpy())
                # the comparable-pair counts depend on (time, event) only, the same in every unit: compute once
                key = (t.tobytes(), e.tobytes())
                if key not in den_cache:
                    den_cache[key] = (weighted_pairs(den, full), weighted_pairs(den, weights))
                dfull, dboot = den_cache[key]
                cpoint[m, s, st] = float(_ratio(weighted_pairs(num, full), dfull)[0])
                cboot[m, s, st] = _ratio(weighted_pairs(num, weights), dboot)
                pooled.append({"method": m, "seed": s, "setting": st, "pooled_c": cpoint[m, s, st], "n_patients": len(ids)})

    def degr(c, m, s, st):
        """C(m, st, s) - C(m, W0_O0, s), ``st`` may be mean(missing)."""
        if st == MEAN_MISSING:
            return np.mean([c[m, s, w] for w in missing], axis=0) - c[m, s, BASE]
        return c[m, s, st] - c[m, s, BASE]

    deg_rows = []
    for m, seeds in seeds_of.items():
        per_seed = [degr(cpoint, m, s, MEAN_MISSING) for s in seeds]
        row = {"method": m, "n_seeds": len(seeds), "seeds": " ".join(map(str, seeds))}
        row |= {st: float(np.mean([cpoint[m, s, st] for s in seeds])) for st in settings}
        row |= {"mean(missing) - W0_O0": float(np.mean(per_seed)), "min over seeds": float(np.min(per_seed)),
                "max over seeds": float(np.max(per_seed))}
        row |= {f"seed {s}": float(v) for s, v in zip(seeds, per_seed)}
        deg_rows.append(row)

    paired = []
    for m, seeds in seeds_of.items():
        if m == reference:
            continue
        both = [s for s in seeds if s in seeds_of[reference]]
        if not both:
            continue
        for st in missing + [MEAN_MISSING]:
            def dd(c, m=m, st=st, both=both):
                return np.mean([degr(c, m, s, st) - degr(c, reference, s, st) for s in both], axis=0)

            point, d = float(dd(cpoint)), dd(cboot)
            d = d[np.isfinite(d)]
            lo, hi = np.percentile(d, [2.5, 97.5])
            paired.append({"method": m, "reference": reference, "seeds": " ".join(map(str, both)), "setting": st, "delta": point,
                           "lo": float(lo), "hi": float(hi), "p": _p_two_sided(d), "n_patients": len(ids), "n_valid": int(len(d))})
    return {"settings": settings, "seeds": seeds_of, "pooled": pooled, "degradation": deg_rows, "paired": paired}


def summary_md(res: dict, title: str, reference: str, n: int) -> str:
    settings = res["settings"]
    lines = [f"# {title}", "", "Pooled C = Harrell's C on the held-out predictions of all folds pooled (each patient once), per training seed; "
             "a method counts a seed only when it finished every fold of every setting.", "",
             "## Mean over seeds of the pooled C, and the degradation mean(missing) - W0_O0 (mean over seeds [min, max])", "",
             "| method | seeds | " + " | ".join(settings) + " | mean(missing) - W0_O0 [min, max] |", "|---|---|" + "---|" * (len(settings) + 1)]
    for r in res["degradation"]:
        lines.append(f"| {r['method']} | {r['seeds']} | " + " | ".join(f"{r[s]:.3f}" for s in settings)
                     + f" | {r['mean(missing) - W0_O0']:+.3f} [{r['min over seeds']:+.3f}, {r['max over seeds']:+.3f}] |")
    cols = settings[1:] + [MEAN_MISSING]
    lines += ["", f"## Paired bootstrap of the seed-mean degradation difference against {reference} (positive = lost less than {reference})", "",
              f"{n} patient resamples, one draw shared by every seed, setting and both methods; 95% percentile CI, two-sided bootstrap p; "
              f"seeds = those both methods completed.", "",
              "| method | seeds | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    by = {}
    for r in res["paired"]:
        by.setdefault((r["method"], r["seeds"]), {})[r["setting"]] = r
    for (m, seeds), h in by.items():
        lines.append(f"| {m} | {seeds} | " + " | ".join(
            f"{h[c]['delta']:+.3f} [{h[c]['lo']:+.3f}, {h[c]['hi']:+.3f}] (p {h[c]['p']:.3g})" if c in h else "n/a" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders of run_grid.py (e.g. one per training seed)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", required=True)
    ap.add_argument("--reference", default="late_fusion")
    ap.add_argument("--n", type=int, default=1000, help="bootstrap resamples")
    args = ap.parse_args(argv)
    preds, folds = load_runs(args.runs)
    res = pool(preds, folds, args.reference, args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(res["pooled"]).to_csv(out / "pooled_c.csv", index=False)
    pd.DataFrame(res["degradation"]).to_csv(out / "degradation.csv", index=False)
    pd.DataFrame(res["paired"]).to_csv(out / "paired.csv", index=False)
    text = summary_md(res, args.title, args.reference, args.n)
    (out / "summary.md").write_text(text)
    with open(out / "analysis.json", "w") as fh:
        json.dump({"title": args.title, "runs": args.runs, "reference": args.reference, "n_boot": args.n, **res}, fh, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
