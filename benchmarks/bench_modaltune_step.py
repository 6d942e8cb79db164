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

``--compare`` (issue 19) runs the step *before* and *after* the issue-19 changes in one invocation,
alternating the variants round by round (each in its own process: a warm-up step, then one timed step):

* ``before``: float32, the per-branch LongNet merge (modaltune's GigaPath before issue 19, forced
  with ``MODALTUNE_PER_BRANCH_MERGE=1``), with and without checkpointing;
* ``after``: the fused merge, float32 or bfloat16 autocast (``torch.autocast("cpu", torch.bfloat16)``
  around forward + loss, what ``trainer.precision: bf16-mixed`` does on CPU), with and without checkpointing;
* ``after bf16 autocast + bf16-weights backbone``: the same autocast, with the frozen backbone's weights stored in
  bfloat16 (``precision="bf16-weights"`` applied to ``model.backbone``; the adapter's trainable parameters stay float32).

Writes benchmarks/modaltune_step_issue19.{json,md} (``--out PREFIX`` elsewhere).
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


def _child(n: int, ckpt: bool, steps: int, precision: str = "fp32", per_branch: bool = False) -> dict:
    import contextlib

    import numpy as np
    import torch

    if per_branch:  # the pre-issue-19 GigaPath merge (per-branch dense scatter, as in the official layout)
        import modaltune.encoders.slide.gigapath as gp

        gp._branch_rows = lambda *a: None

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
    if precision == "bf16w":  # frozen backbone stored in bf16 (cast once); adapter params stay float32
        from modaltune.encoders.slide.precision import apply_precision

        apply_precision(model.backbone, "bf16-weights")
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

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if precision in ("bf16", "bf16w") else contextlib.nullcontext()

    def step():
        with autocast():
            out = model(batch)
            loss, _ = model.loss(batch, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    step()  # warm-up (allocations, text encoder, optimizer state)
    Path("/proc/self/clear_refs").write_text("5")
    times, cpu, losses = [], [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"n_patches": n, "grad_checkpointing": ckpt, "precision": precision, "per_branch_merge": per_branch,
            "losses": losses, "cpu_seconds_per_step": float(np.median(cpu)), "seconds_per_step": float(np.median(times)), "all_seconds": times,
            "peak_rss_mib": _hwm_mib(), "trainable_params": trainable, "frozen_params": frozen, "weights": model.weights_source, "threads": 2}


VARIANTS = {  # name: (precision, grad checkpointing, per-branch merge)
    "before fp32": ("fp32", False, True),
    "before fp32 + ckpt": ("fp32", True, True),
    "after fp32": ("fp32", False, False),
    "after bf16 autocast": ("bf16", False, False),
    "after bf16 autocast + ckpt": ("bf16", True, False),
    "after bf16 autocast + bf16-weights backbone": ("bf16w", False, False),
}


def _run_child(n: int, variant: str, steps: int) -> dict:
    prec, ck, pb = VARIANTS[variant]
    p = subprocess.run([sys.executable, __file__, "--child", str(n), "1" if ck else "0", str(steps), prec, "1" if pb else "0"],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        print(p.stderr[-3000:])
        raise SystemExit(f"child {n} {variant} failed")
    return {"variant": variant, **json.loads(line[0][7:])}


def _compare(args: argparse.Namespace) -> None:
    import statistics

    load0 = f"{os.getloadavg()[0]:.1f}"
    plan = [(n, v) for n in args.sizes for v in (args.variants or list(VARIANTS))]
    runs = []
    log = Path(args.log) if args.log else None
    if log and log.exists():  # resume / report from the runs already recorded
        runs = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
        load0 = runs[0].get("load_1min", load0) if runs else load0
    for rnd in range(0 if args.report_only else args.rounds):
        for n in args.sizes:
            vs = [v for m, v in plan if m == n]
            vs = vs[rnd % len(vs):] + vs[: rnd % len(vs)]  # rotate who goes first
            for v in vs:
                if any(r["n_patches"] == n and r["variant"] == v and r.get("round") == rnd for r in runs):
                    continue
                r = _run_child(n, v, 1)
                r["round"] = rnd
                r["load_1min"] = f"{os.getloadavg()[0]:.1f}"
                runs.append(r)
                if log:
                    with log.open("a") as fh:
                        fh.write(json.dumps(r) + "\n")
                print(f"N={n} {v}: {r['seconds_per_step']:.1f} s/step ({r['cpu_seconds_per_step']:.1f} CPU s), peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    load1 = f"{os.getloadavg()[0]:.1f}"
    cmd = "python benchmarks/bench_modaltune_step.py " + " ".join(sys.argv[1:])
    lines = [f"Command: `{cmd}`", "",
             "Protocol: the ModalTune step of this script (GigaPath-size backbone, random_init, paper adapter, 331 pathway tokens, "
             "one survival task, batch 1, AdamW), CPU, 2 threads; every variant in its own process (warm-up step, then one timed "
             f"step; peak = VmHWM after the warm-up), variants alternated in rotating order for {args.rounds} round(s); medians. "
             f"1-min load average {load0} before, {load1} after. Slide features are random numbers (SIMULATED bags).", "",
             "| N patches | variant | wall s/step (median) | CPU s/step (median) | peak RSS MiB (median) | wall vs before fp32 | CPU vs before fp32 | peak vs before fp32 | rounds |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in args.sizes:
        med = {}
        for v in VARIANTS:
            rs = [r for r in runs if r["n_patches"] == n and r["variant"] == v]
            if rs:
                med[v] = (statistics.median(r["seconds_per_step"] for r in rs), statistics.median(r["cpu_seconds_per_step"] for r in rs),
                          statistics.median(r["peak_rss_mib"] for r in rs), len(rs))
        base = med.get("before fp32") or med.get("before fp32 + ckpt")
        for v, (t, c, m, k) in med.items():
            rel = f"{t / base[0]:.2f}x | {c / base[1]:.2f}x | {m / base[2]:.2f}x" if base else "- | - | -"
            lines.append(f"| {n} | {v} | {t:.1f} | {c:.1f} | {m:.0f} | {rel} | {k} |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out) if args.out else HERE / "modaltune_step_issue19"
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"command": cmd, "load_1min_before_after": [load0, load1], "runs": runs}, indent=1))
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--checkpointing-at", type=int, nargs="*", default=[4000])
    ap.add_argument("--compare", action="store_true", help="issue 19: before/after variants in one run (see the module docstring)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="with --compare: run only these variants")
    ap.add_argument("--rounds", type=int, default=1, help="with --compare: rounds of all variants")
    ap.add_argument("--log", help="with --compare: append every run to this JSON-lines file and skip runs already in it")
    ap.add_argument("--out", help="with --compare: output path without suffix (default benchmarks/modaltune_step_issue19)")
    ap.add_argument("--report-only", action="store_true", help="with --compare --log: only write the tables from the log")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        c = args.child
        extra = (c[3], c[4] == "1") if len(c) > 3 else ()
        print("RESULT " + json.dumps(_child(int(c[0]), c[1] == "1", int(c[2]), *extra)))
        return
    if args.compare:
        _compare(args)
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
