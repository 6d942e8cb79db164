"""Step time and peak memory per patient of the slide + omics methods (issue 14), next to ABMIL, CPU.

One step = forward + loss (discrete-time survival NLL, one task) + backward + Adam update, batch of one
patient with N patches (the papers' batch size), float32. Every (method, N) runs in its own
subprocess; its peak memory is the process's ``VmHWM`` (``/proc/self/status``) after ``clear_refs``
once the model is built and a warm-up step ran, i.e. the step's own peak (weights + activations +
optimizer state), plus ``ru_maxrss`` for platforms without ``/proc``. The methods run at their
default (official) configuration; slide features are random 1024-d (ResNet50-size) vectors, RNA
random values over the genes of shared/data/pathways/combine_comps.csv (whose 331 pathways are given
to the methods that read pathways); pass ``--pathways none --rna-dim G`` for random genes and none.

Usage (do not run the full sizes on a shared machine without asking)::

    nice -n 10 python benchmarks/bench_coattention_step.py --methods porpoise pathomic_fusion mcat \\
        [--sizes 1000 4000 16000] [--out benchmarks/coattention_step]

``abmil`` is always included. Writes ``<out>.json`` and ``<out>.md`` (a markdown table). A method that
fails to build or step is recorded with its error, not dropped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PATHWAYS = HERE.parent.parent / "shared" / "data" / "pathways" / "combine_comps.csv"
#: MCAT's six genomic signature groups; the methods that read them (below) get this file
DEFAULT_SIGNATURES = HERE.parent.parent / "shared" / "data" / "tcga" / "porpoise" / "signatures.csv"
SIGNATURE_METHODS = ("mcat", "motcat", "cmta")


def _hwm_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _info(slide_dim: int, pathways: str, rna_dim: int):
    import numpy as np

    from modaltune.data.cohort import TaskSpec
    from modaltune.data.dataset import CohortInfo, TaskInfo

    pw = None
    if pathways != "none":
        import pandas as pd

        from modaltune.data.omics import tokenize_pathways

        genes = list(pd.read_csv(pathways, usecols=[0]).iloc[:, 0].astype(str))
        pw = {"rna": tokenize_pathways(pathways, genes)}
    else:
        genes = [f"g{i}" for i in range(rna_dim)]
    spec = TaskSpec(name="survival", kind="survival", time_column="t", event_column="e")
    return CohortInfo(slide_dim=slide_dim, slide_modality="slide", omics_dims={"rna": len(genes)}, omics_feature_names={"rna": genes}, pathways=pw,
                      clinical_dim=0, clinical_feature_names=[], text=False, tasks=[TaskInfo(spec, 4, ["a", "b", "c", "d"], np.array([0.0, 12.0, 24.0, 48.0, 200.0]), {})],
                      modalities=["slide", "rna"], sites=["S0"])


def child(method: str, n: int, steps: int, slide_dim: int, pathways: str, rna_dim: int, threads: int, signatures: str = str(DEFAULT_SIGNATURES)) -> dict:
    """One (method, N) measurement in this process."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from modaltune.methods import build_method

    info = _info(slide_dim, pathways, rna_dim)
    model = build_method(method, info, **({"signatures": signatures} if method in SIGNATURE_METHODS else {}))
    model.train()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=1e-5)
    g = torch.Generator().manual_seed(1)
    G = int(info.omics_dims["rna"])
    batch = {
        "patient_id": ["P0"], "site": ["S0"],
        "slide": {"features": torch.randn(1, n, slide_dim, generator=g), "coords": torch.zeros(1, n, 2, dtype=torch.long), "mask": torch.ones(1, n, dtype=torch.bool)},
        "omics": {"rna": torch.randn(1, G, generator=g)}, "clinical": torch.zeros(1, 0), "text": [""],
        "modality_mask": {"slide": torch.tensor([True]), "rna": torch.tensor([True])},
        "targets": {"survival": {"time": torch.tensor([30.0]), "event": torch.tensor([1.0]), "bin": torch.tensor([2])}},
        "target_mask": {"survival": torch.tensor([True])},
    }

    def step():
        out = model(batch)
        loss, _ = model.loss(batch, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: allocator, optimizer state
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: measure the step, not the model build
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"method": method, "n_patches": n, "seconds_per_step": float(np.median(times)), "all_seconds": times, "peak_rss_mib": _hwm_mib(),
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "trainable_params": int(params), "threads": threads}


def markdown(rows: list[dict], sizes: list[int]) -> str:
    """Table: one row per method, per N the step time (s) and peak RSS (MiB)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = "| method | params | " + " | ".join(f"N={n}: s/step | N={n}: peak MiB" for n in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(sizes))]
    for m in methods:
        by_n = {r["n_patches"]: r for r in rows if r["method"] == m}
        p = next((r.get("trainable_params") for r in by_n.values() if "trainable_params" in r), None)
        cells = []
        for n in sizes:
            r = by_n.get(n)
            if r is None or "error" in r:
                cells += ["error" if r else "-", "-"]
            else:
                cells += [f"{r['seconds_per_step']:.3f}", f"{r['peak_rss_mib']:.0f}"]
        lines.append(f"| {m} | {p if p is not None else '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", required=True, help="registered method names (abmil is always added)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--slide-dim", type=int, default=1024)
    ap.add_argument("--pathways", default=str(DEFAULT_PATHWAYS), help="pathway CSV giving the RNA genes, or 'none'")
    ap.add_argument("--rna-dim", type=int, default=2000, help="number of random genes with --pathways none")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--signatures", default=str(DEFAULT_SIGNATURES), help="signature CSV for mcat / motcat / cmta (MCAT's six groups)")
    ap.add_argument("--out", default=str(HERE / "coattention_step"), help="output path without suffix (.json and .md are written)")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        r = child(args.child[0], int(args.child[1]), args.steps, args.slide_dim, args.pathways, args.rna_dim, args.threads, args.signatures)
        print("RESULT " + json.dumps(r))
        return r
    methods = ["abmil"] + [m for m in args.methods if m != "abmil"]
    rows = []
    for m in methods:
        for n in args.sizes:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--methods", m, "--child", m, str(n), "--steps", str(args.steps), "--slide-dim", str(args.slide_dim),
                   "--pathways", args.pathways, "--rna-dim", str(args.rna_dim), "--threads", str(args.threads), "--signatures", args.signatures]
            p = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
            if p.returncode != 0 or not line:
                err = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
                rows.append({"method": m, "n_patches": n, "error": err})
                print(f"{m} N={n}: error: {err}", flush=True)
                continue
            r = json.loads(line[0][len("RESULT "):])
            rows.append(r)
            print(f"{m} N={n}: {r['seconds_per_step']:.3f} s/step, peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    import torch

    out = {"rows": rows, "sizes": args.sizes, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "threads": args.threads,
           "note": f"CPU float32, batch 1, forward + NLL loss + backward + Adam step; random {args.slide_dim}-d patch features; default method parameters"}
    base = Path(args.out)
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(json.dumps(out, indent=2))
    base.with_suffix(".md").write_text(markdown(rows, args.sizes))
    return out


if __name__ == "__main__":
    main()
