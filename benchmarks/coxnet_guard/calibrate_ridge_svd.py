"""Peak memory of the ridge Cox fit that runs when p > n (thin SVD route of ``fit_ridge_cox``), to calibrate
``ridge_cox_fit_bytes``. Each (n, p) runs in its own process: growth of the process's peak RSS (``VmHWM`` of
/proc/self/status; Linux) during ``fit_ridge_cox`` after a small warm-up fit; random standard-normal features (the
input itself is not counted).

Usage: ``python benchmarks/coxnet_guard/calibrate_ridge_svd.py --out calibration.json`` (a few seconds of CPU).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

POINTS = [(50, 10_000), (100, 10_000), (200, 10_000), (400, 10_000), (200, 20_000), (200, 40_000), (400, 20_000), (800, 4_000), (100, 2_000)]

_CHILD = r"""
import json, re, sys, warnings
import numpy as np
from sksurv.util import Surv
from modaltune.evaluation.ridge_cox import fit_ridge_cox, ridge_cox_fit_bytes
def hwm():
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
n, p = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
warnings.simplefilter("ignore")
fit_ridge_cox(rng.standard_normal((20, 40)), Surv.from_arrays(event=rng.uniform(size=20) < .7, time=rng.exponential(size=20) + .1), 1.0)
X = rng.standard_normal((n, p))
y = Surv.from_arrays(event=rng.uniform(size=n) < .7, time=rng.exponential(size=n) + .1)
before = hwm()
fit_ridge_cox(X, y, 10.0 * n)
growth = hwm() - before
est = ridge_cox_fit_bytes(n, p)
print(json.dumps({"n": n, "p": p, "growth_bytes": growth, "estimate_bytes": est, "growth_per_np_float64": round(growth / 8 / (n * p), 3),
                  "estimate_over_growth": round(est / growth, 3),
                  "old_guard_direct_estimate_bytes": 8 * (8 * p * p + 2 * n * p)}))  # what the guard sized before (the p x p fit)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    for n, p in POINTS:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(p)], capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
