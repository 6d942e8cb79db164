"""Time and peak memory of one ModalTune *training step* vs number of patches, Prov-GigaPath-size model, CPU.

Model: the ``modaltune`` method with ``backbone: gigapath`` at full size (1536 -> 768, 12 LongNet
layers, 16 heads) built with ``random_init: true`` (no checkpoint here; the timing does not depend
on the weights' values), paper adapter (groups [[0,3],[4,7],[8,11]], 192-d attention, 12 heads,
2 extra extractors), the paper's Gene Mixer on the 331 ModalTune pathways (shared/data/pathways/
combine_comps.csv; RNA values are random numbers), one clinical token and one survival task.
One step = forward + KL + discrete-NLL loss + backward + AdamW update, batch of one patient
(the paper's batch size), float32, ``torch.set_num_threads(2)``.

Each (N, checkpointing) runs in its own subprocess; peak memory is that process's ``VmHWM``
(``/proc/self/status``) after ``clear_refs`` once the model is built, i.e. the step's own peak
(weights + activations + optimizer state). The frozen ``backbone.embed`` is outside the autograd
graph; activations of the frozen layers are kept because gradients flow through them to the
earlier injectors (gradient checkpointing recomputes them instead).

Usage: ``nice -n 10 python benchmarks/bench_modaltune_step.py [--sizes 1000 2000 4000]``; writes
benchmarks/modaltune_step.json and the table of the "## ModalTune (issue 6)" section (step part).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _child(n: int, ckpt: bool, steps: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)

    from modaltune.data.cohort import TaskSpec
    from modaltune.data.dataset import CohortInfo, TaskInfo
    from modaltune.data.omics import tokenize_pathways
    from modaltune.methods import build_method

    pw_file = HERE.parent.parent / "shared" / "data" / "pathways" / "combine_comps.csv"
    import pandas as pd

    genes = list(pd.read_csv(pw_file, usecols=[0]).iloc[:, 0].astype(str))
    pw = tokenize_pathways(pw_file, genes)
    edges = np.array([0.0, 12.0, 24.0, 48.0, 200.0])
    spec = TaskSpec(name="survival", kind="survival", time_column="t", event_column="e", description="Overall survival of the patient in months.")
    info = CohortInfo(slide_dim=1536, slide_modality="slide", omics_dims={"rna": len(genes)}, omics_feature_names={"rna": genes}, pathways={"rna": pw},
                      clinical_dim=5, clinical_feature_names=[f"c{i}" for i in range(5)], text=False,
                      tasks=[TaskInfo(spec, 4, ["a", "b", "c", "d"], edges, {})], modalities=["slide", "rna", "clinical"], sites=["BRCA"], clinical_modality="clinical")
    model = build_method("modaltune", info, backbone="gigapath", random_init=True, grad_checkpointing=ckpt, gene_mixer={"n_compress": 64}, kl=1.0, supervised=1.0)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    side = int(np.ceil(np.sqrt(n)))
    coords = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2)[:n] * 256
    batch = {
        "patient_id": ["P0"], "site": ["BRCA"],
        "slide": {"features": torch.randn(1, n, 1536, generator=g), "coords": coords[None].long(), "mask": torch.ones(1, n, dtype=torch.bool)},
        "omics": {"rna": torch.randn(1, len(genes), generator=g)},
        "clinical": torch.randn(1, 5, generator=g), "text": [""],
        "modality_mask": {"slide": torch.tensor([True]), "rna": torch.tensor([True]), "clinical": torch.tensor([True])},
        "targets": {"survival": {"time": torch.tensor([30.0]), "event": torch.tensor([1.0]), "bin": torch.tensor([2])}},
        "target_mask": {"survival": torch.tensor([True])},
    }

    def step():
        out = model(batch)
        loss, _ = model.loss(batch, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, text encoder, optimizer state)
    Path("/proc/self/clear_refs").write_text("5")
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"n_patches": n, "grad_checkpointing": ckpt, "seconds_per_step": float(np.median(times)), "all_seconds": times,
            "peak_rss_mib": _hwm_mib(), "trainable_params": trainable, "frozen_params": frozen, "weights": model.weights_source, "threads": 2}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--checkpointing-at", type=int, nargs="*", default=[4000])
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(_child(int(args.child[0]), args.child[1] == "1", int(args.child[2]))))
        return
    runs = [(n, False) for n in args.sizes] + [(n, True) for n in args.checkpointing_at]
    rows = []
    for n, ck in runs:
        t0 = time.time()
        p = subprocess.run([sys.executable, __file__, "--child", str(n), "1" if ck else "0", str(args.steps)], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "2"})
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(p.stderr[-3000:])
            raise SystemExit(f"child {n} failed")
        r = json.loads(line[0][7:])
        rows.append(r)
        print(f"N={n} ckpt={ck}: {r['seconds_per_step']:.2f} s/step, peak {r['peak_rss_mib']:.0f} MiB (wall {time.time() - t0:.0f} s)", flush=True)
    import platform

    import torch

    out = {"rows": rows, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "note": "random_init GigaPath-size backbone (no checkpoint); CPU float32; 2 threads; batch 1; one survival task"}
    (HERE / "modaltune_step.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
