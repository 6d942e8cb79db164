"""Training-step cost per patient of the issue-14 methods at the simulated-regime size (why CMTA is left out).

One step = forward + discrete-time NLL + backward + Adam step on a batch of B patients with N random
D-dim patch features and random RNA over the simulator's 244 genes (21 pathways for SurvPath; MCAT's
signatures for mcat/motcat/cmta), default (official) parameters, 1 thread; time = mean of the timed steps
after one warm-up step. Run on the shared machine: the load average is recorded, times are indicative.
``--padded-nystrom`` adds a ``cmta_padded_nystrom`` row: CMTA with every Nystrom layer running the
upstream padded computation (:func:`modaltune.layers.nystrom.nystrom_reference`, the code before issue 14's fix).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/coattention_sim/step_cost.py --padded-nystrom --out benchmarks/coattention_sim/step_cost.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import bench_coattention_step as b  # the sibling benchmark's input builder

from modaltune.methods import build_method


def step_seconds(method: str, B: int, N: int, D: int, steps: int) -> dict:
    info = b._info(D, str(HERE.parent.parent / "src/modaltune/resources/sim_pathways.csv"), 0)
    model = build_method(method, info, **({"signatures": str(b.DEFAULT_SIGNATURES)} if method in b.SIGNATURE_METHODS else {}))
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(1)
    G = int(info.omics_dims["rna"])
    ones = torch.ones(B, dtype=torch.bool)
    batch = {"patient_id": [f"P{i}" for i in range(B)], "site": ["S0"] * B,
             "slide": {"features": torch.randn(B, N, D, generator=g), "coords": torch.zeros(B, N, 2, dtype=torch.long), "mask": torch.ones(B, N, dtype=torch.bool)},
             "omics": {"rna": torch.randn(B, G, generator=g)}, "clinical": torch.zeros(B, 0), "text": [""] * B,
             "modality_mask": {"slide": ones, "rna": ones},
             "targets": {"survival": {"time": torch.full((B,), 30.0), "event": torch.ones(B), "bin": torch.full((B,), 2)}},
             "target_mask": {"survival": ones}}

    def step():
        out = model(batch)
        loss, _ = model.loss(batch, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    s = (time.perf_counter() - t0) / steps
    return {"method": method, "batch": B, "patches": N, "dim": D, "seconds_per_step": s, "ms_per_patient": 1000 * s / B}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=["abmil", "snn", "late_fusion", "porpoise", "pathomic_fusion", "survpath", "mcat", "motcat", "cmta"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patches", type=int, default=32)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--padded-nystrom", action="store_true", help="also time cmta with the upstream padded Nystrom code (before the fix)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    rows = []
    for m in a.methods:
        rows.append(step_seconds(m, a.batch, a.patches, a.dim, a.steps))
        print(json.dumps(rows[-1]), flush=True)
    if a.padded_nystrom:
        from modaltune.layers import nystrom
        fast = nystrom.NystromAttention.forward
        nystrom.NystromAttention.forward = nystrom.nystrom_reference
        try:
            rows.append({**step_seconds("cmta", a.batch, a.patches, a.dim, a.steps), "method": "cmta_padded_nystrom"})
        finally:
            nystrom.NystromAttention.forward = fast
        print(json.dumps(rows[-1]), flush=True)
    out = {"rows": rows, "loadavg_start": load0, "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
           "threads": 1, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__}
    a.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
