"""torch.profiler table of one CMTA training step (forward + NLL/alignment loss + backward; one patient,
32 patches of 32-d features, the simulator's RNA, MCAT's signatures, official defaults, 1 thread), with
the current Nystrom layer or, with ``--padded``, the upstream padded computation (the code before issue 14's fix).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/coattention_sim/cmta_profile.py [--padded] > OUT.txt
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import bench_coattention_step as b  # the sibling benchmark's input builder

from modaltune.layers import nystrom
from modaltune.methods import build_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--padded", action="store_true")
    ap.add_argument("--patches", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.padded:
        nystrom.NystromAttention.forward = nystrom.nystrom_reference
    info = b._info(32, str(HERE.parent.parent / "src/modaltune/resources/sim_pathways.csv"), 0)
    model = build_method("cmta", info, signatures=str(b.DEFAULT_SIGNATURES)).train()
    g = torch.Generator().manual_seed(1)
    one = torch.ones(1, dtype=torch.bool)
    batch = {"patient_id": ["P0"], "site": ["S0"],
             "slide": {"features": torch.randn(1, a.patches, 32, generator=g), "coords": torch.zeros(1, a.patches, 2, dtype=torch.long), "mask": torch.ones(1, a.patches, dtype=torch.bool)},
             "omics": {"rna": torch.randn(1, int(info.omics_dims["rna"]), generator=g)}, "clinical": torch.zeros(1, 0), "text": [""],
             "modality_mask": {"slide": one, "rna": one},
             "targets": {"survival": {"time": torch.full((1,), 30.0), "event": torch.ones(1), "bin": torch.full((1,), 2)}}, "target_mask": {"survival": one}}

    def step():
        out = model(batch)
        loss, _ = model.loss(batch, out)
        loss.backward()

    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        step()
        wall = time.perf_counter() - t0
    print(f"nystrom: {'padded (before)' if a.padded else 'reduced (after)'}; patches {a.patches}; step wall {wall:.3f} s (profiled); "
          f"loadavg {Path('/proc/loadavg').read_text().split()[:3]}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
