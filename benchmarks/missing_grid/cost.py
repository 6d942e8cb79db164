"""Cost of embedding_fusion next to the deep methods on the MCAT TCGA folds (issue 15, item 5).

Each (method, cohort) runs in a fresh child process that fits the method on every listed fold of
the official 5-fold split (``splits/porpoise_5fold.csv``; the held-out fold is ``val``) and
predicts the held-out fold; the child reports per-fold fit seconds (``fit`` = preprocessing +
training; wall clock ``fit_s`` and this process's CPU time ``fit_cpu_s``, which a loaded machine
inflates less), Harrell's C, and its peak resident memory ``VmHWM`` (/proc/self/status,
the whole process: Python, torch and the cohort included). All methods read the same cohort and
are measured the same way.

    python benchmarks/missing_grid/cost.py --cohorts /work/runs/h20c/tcga --out benchmarks/missing_grid/tcga_cost.csv

Slide bags are SIMULATED noise (benchmarks/missing_grid/tcga_cohorts.py): they cost reads and
compute like real bags of their size (64-d, 32-128 patches), but carry no signal.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

#: method label -> (registry name, modalities, params); deep trainer = survival_mcat5.yaml's
METHODS = {
    "embedding_fusion (early, slide mean + omics + clinical)": ("embedding_fusion", ["slide", "omics", "clinical"], {"fusion": "early"}),
    "embedding_fusion (late, slide mean + omics + clinical)": ("embedding_fusion", ["slide", "omics", "clinical"], {"fusion": "late"}),
    "snn (omics)": ("snn", ["omics"], {"alpha": 0.0}),
    "late_fusion (abmil slide + omics + clinical)": ("late_fusion", ["slide", "omics", "clinical"], {"alpha": 0.0}),
}
TRAINER = {"max_epochs": 20, "optimizer": "adam", "lr": 2.0e-4, "weight_decay": 1.0e-5, "batch_size": 32, "max_patches": 128,
           "seed": 0, "logger": "none", "checkpoint": False, "progress_bar": False}


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(label: str, cohort_dir: str, folds: list[int], work: str) -> dict:
    import torch

    from modaltune.data.cohort import Cohort
    from modaltune.data.splits import SplitSet
    from modaltune.evaluation.metrics import harrell_c
    from modaltune.training.trainer import fit, predict

    torch.set_num_threads(1)
    name, mods, params = METHODS[label]
    t_load = time.perf_counter()
    cohort = Cohort.load(cohort_dir)
    load_s = time.perf_counter() - t_load
    split = SplitSet.load(Path(cohort_dir) / "splits" / "porpoise_5fold.csv")
    rows = []
    for f in split.folds:
        if f.index not in folds:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        fitted = fit(cohort, f, name, params=params, modalities=mods, tasks=["survival"], trainer=TRAINER, out_dir=Path(work) / f"f{f.index}", progress=False)
        fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        ids = list(f.test) or list(f.val)
        t1 = time.perf_counter()
        p = predict(fitted, cohort, ids)
        pred_s = time.perf_counter() - t1
        p = p[p["task"] == "survival"].dropna(subset=["time", "event"])
        rows.append({"fold": f.index, "fit_s": round(fit_s, 2), "fit_cpu_s": round(fit_cpu_s, 2), "predict_s": round(pred_s, 2), "c_index": harrell_c(p["time"], p["event"], p["risk"]),
                     "n_train": len(f.train), "n_eval": len(p), "omics_features": int(sum((getattr(fitted.info, "omics_dims", None) or {}).values())),
                     "load_s": round(load_s, 2), "vm_hwm_mib": round(_vm_hwm_mib(), 1)})
        print("FOLD " + json.dumps(rows[-1]), flush=True)  # per fold, so a child stopped by --child-timeout keeps its finished folds
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohorts", help="folder holding tcga_<name> cohorts")
    ap.add_argument("--names", nargs="*", default=["blca", "brca", "gbmlgg", "luad", "ucec"])
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--deep-folds", type=int, nargs="*", default=None, help="folds of the torch methods (default: --folds)")
    ap.add_argument("--out", help="CSV of per-fold rows (appended; a finished (method, cohort) is skipped)")
    ap.add_argument("--work", default="/tmp/modaltune_cost")
    ap.add_argument("--child-timeout", type=float, default=None, help="seconds after which a (method, cohort) child is stopped; its finished folds are kept")
    ap.add_argument("--child", nargs=2, metavar=("LABEL", "COHORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.folds, args.work)
        return 0
    out = Path(args.out)
    done = set()
    if out.exists():
        prev = pd.read_csv(out)
        done = set(zip(prev["method"], prev["cohort"]))
    for label in args.methods:
        for name in args.names:
            if (label, name) in done:
                continue
            cdir = str(Path(args.cohorts) / f"tcga_{name}")
            work = f"{args.work}/{name}_{abs(hash(label))}"
            t0 = time.perf_counter()
            folds = args.folds if METHODS[label][0] == "embedding_fusion" or args.deep_folds is None else args.deep_folds
            cmd = [sys.executable, __file__, "--child", label, cdir, "--work", work, "--folds", *map(str, folds)]
            try:
                stdout, timed_out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout).stdout, False
            except subprocess.TimeoutExpired as e:
                stdout, timed_out = (e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""), True
            rows = [json.loads(x[5:]) for x in stdout.splitlines() if x.startswith("FOLD ")]
            if not rows:
                print(f"NO FOLD FINISHED {label} {name} (timed out: {timed_out})", flush=True)
                continue
            wall = time.perf_counter() - t0
            load = Path("/proc/loadavg").read_text().split()[0]
            df = pd.DataFrame(rows).assign(method=label, cohort=name, folds_asked=len(folds), stopped_at_timeout=timed_out,
                                           process_wall_s=round(wall, 1), loadavg_1min_at_end=load)
            df.to_csv(out, mode="a", header=not out.exists(), index=False)
            print(f"{label} {name}: fit {df['fit_s'].sum():.1f} s wall / {df['fit_cpu_s'].sum():.1f} s CPU over {len(df)} folds, C {df['c_index'].mean():.3f}, VmHWM {df['vm_hwm_mib'].max()} MiB, load {load}", flush=True)
            subprocess.run(["rm", "-rf", work])
    return 0


if __name__ == "__main__":
    sys.exit(main())
