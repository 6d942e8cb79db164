"""Peak memory of the ridge Cox fit that runs when p > n (thin SVD route of ``fit_ridge_cox``), to calibrate
``ridge_cox_fit_bytes``. Each (n, p) runs in its own process: growth of the process's peak RSS (``VmHWM`` of
/proc/self/status; Linux) during ``fit_ridge_cox`` after a small warm-up fit; random standard-normal features (the
input itself is not counted).

Usage: ``python benchmarks/coxnet_guard/calibrate_ridge_svd.py --out calibration.json`` (a few seconds of CPU).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import warnings

POINTS = [(50, 10_000), (100, 10_000), (200, 10_000), (400, 10_000), (200, 20_000), (200, 40_000), (400, 20_000), (800, 4_000), (100, 2_000)]

def _hwm() -> int:
    """This process's peak RSS in bytes (``VmHWM``; not ``ru_maxrss``, which after fork + exec starts at the parent's peak)."""
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmHWM:\s+(\d+) kB", fh.read()).group(1)) * 1024


def measure(n: int, p: int) -> dict:
    """Peak RSS growth of one ``fit_ridge_cox`` on ``(n, p)`` random features, beside the guard's estimate.

    Run it in a fresh process (``--child N P``): the growth is relative to that process's peak so far.
    """
    import numpy as np
    from sksurv.util import Surv

    from modaltune.evaluation.ridge_cox import fit_ridge_cox, ridge_cox_fit_bytes

    rng = np.random.default_rng(0)
    warnings.simplefilter("ignore")
    fit_ridge_cox(rng.standard_normal((20, 40)), Surv.from_arrays(event=rng.uniform(size=20) < .7, time=rng.exponential(size=20) + .1), 1.0)
    X = rng.standard_normal((n, p))
    y = Surv.from_arrays(event=rng.uniform(size=n) < .7, time=rng.exponential(size=n) + .1)
    before = _hwm()
    fit_ridge_cox(X, y, 10.0 * n)
    growth = _hwm() - before
    est = ridge_cox_fit_bytes(n, p)
    return {"n": n, "p": p, "growth_bytes": growth, "estimate_bytes": est, "growth_per_np_float64": round(growth / 8 / (n * p), 3),
            "estimate_over_growth": round(est / growth, 3),
            "old_guard_direct_estimate_bytes": 8 * (8 * p * p + 2 * n * p)}  # what the guard sized before (the p x p fit)


def measure_in_child(n: int, p: int, env: dict | None = None) -> dict:
    """:func:`measure` in a fresh Python process (this file with ``--child``)."""
    out = subprocess.run([sys.executable, __file__, "--child", str(n), str(p)], capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--child", nargs=2, type=int, metavar=("N", "P"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    if not args.out:
        ap.error("--out is required")
    rows = []
    for n, p in POINTS:
        rows.append(measure_in_child(n, p))
        print(rows[-1], flush=True)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
