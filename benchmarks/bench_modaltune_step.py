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
  bfloat16 (``precision="bf16-weights"`` applied to ``model.backbone``; the adapter's trainable parameters stay float32);
* the same with checkpointing (``after fp32 + ckpt``, ``after bf16 autocast + bf16-weights backbone + ckpt``).

``--threads T`` sets the child's torch/OpenMP threads (default 2, the committed 4k protocol). ``--max-rss-mib CAP`` polls
each child's resident memory and kills it above CAP (a variant that does not fit on a shared machine is recorded as
"over CAP", not allowed to push the machine into swap or the OOM killer). Every run records ``/proc/loadavg`` before and
after it and the warm-up step's own time. The table gives medians and ranges, relative to the first of "before fp32",
"before fp32 + ckpt" that has a timed run (named in the header).

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


def _child(n: int, ckpt: bool, steps: int, precision: str = "fp32", per_branch: bool = False, threads: int = 2) -> dict:
    import contextlib

    import numpy as np
    import torch

    if per_branch:  # the pre-issue-19 GigaPath merge (per-branch dense scatter, as in the official layout)
        import modaltune.encoders.slide.gigapath as gp

        gp._branch_rows = lambda *a: None

    torch.set_num_threads(threads)
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

    w0, wc0 = time.perf_counter(), time.process_time()
    step()  # warm-up (allocations, text encoder, optimizer state)
    warm = (time.perf_counter() - w0, time.process_time() - wc0)
    build_and_warmup_peak = _hwm_mib()
    Path("/proc/self/clear_refs").write_text("5")
    times, cpu, losses = [], [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"n_patches": n, "grad_checkpointing": ckpt, "precision": precision, "per_branch_merge": per_branch,
            "losses": losses, "cpu_seconds_per_step": float(np.median(cpu)), "seconds_per_step": float(np.median(times)), "all_seconds": times,
            "peak_rss_mib": _hwm_mib(), "warmup_seconds": warm[0], "warmup_cpu_seconds": warm[1], "peak_rss_mib_build_and_warmup": build_and_warmup_peak,
            "trainable_params": trainable, "frozen_params": frozen, "weights": model.weights_source, "threads": threads}


VARIANTS = {  # name: (precision, grad checkpointing, per-branch merge)
    "before fp32": ("fp32", False, True),
    "before fp32 + ckpt": ("fp32", True, True),
    "after fp32": ("fp32", False, False),
    "after fp32 + ckpt": ("fp32", True, False),
    "after bf16 autocast": ("bf16", False, False),
    "after bf16 autocast + ckpt": ("bf16", True, False),
    "after bf16 autocast + bf16-weights backbone": ("bf16w", False, False),
    "after bf16 autocast + bf16-weights backbone + ckpt": ("bf16w", True, False),
}
BASELINES = ("before fp32", "before fp32 + ckpt")  # the ratio columns use the first of these that has a timed run


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def _watched(cmd: list[str], env: dict, cap_mib: float | None, poll_s: float = 0.5) -> tuple[int, str, str, float, bool]:
    """Run ``cmd``; if ``cap_mib`` is set, kill it once its resident memory exceeds ``cap_mib`` MiB.

    Returns (return code, stdout, stderr, largest RSS seen by the poll in MiB, killed for memory). Output goes to
    temporary files, not pipes, so a long child cannot block on a full pipe while we poll.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        seen, killed = 0.0, False
        while p.poll() is None:
            seen = max(seen, _rss_mib(p.pid))
            if cap_mib is not None and seen > cap_mib:
                p.kill()
                killed = True
                break
            time.sleep(poll_s)
        rc = p.wait()
        out.seek(0)
        err.seek(0)
        return rc, out.read(), err.read(), seen, killed


def _run_child(n: int, variant: str, steps: int, threads: int = 2, cap_mib: float | None = None) -> dict:
    prec, ck, pb = VARIANTS[variant]
    cmd = [sys.executable, __file__, "--child", str(n), "1" if ck else "0", str(steps), prec, "1" if pb else "0", str(threads)]
    load_before = _loadavg()
    rc, out, err, seen, killed = _watched(cmd, {**os.environ, "OMP_NUM_THREADS": str(threads)}, cap_mib)
    if killed:
        return {"variant": variant, "n_patches": n, "over_cap_mib": cap_mib, "rss_seen_mib": seen, "threads": threads,
                "loadavg_before": load_before, "loadavg_after": _loadavg()}
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if not line:
        print(err[-3000:])
        raise SystemExit(f"child {n} {variant} failed (exit {rc})")
    return {"variant": variant, **json.loads(line[0][7:]), "loadavg_before": load_before, "loadavg_after": _loadavg()}


def _rng(vals: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``vals``, or the single value when there is one run."""
    import statistics

    med = format(statistics.median(vals), fmt)
    return med if len(vals) == 1 else f"{med} ({format(min(vals), fmt)}-{format(max(vals), fmt)})"


def _report(runs: list[dict], sizes: list[int], cmd: str, rounds: int, threads: int, load0: str, load1: str) -> str:
    """The markdown table of ``--compare``: per (N, variant) medians and ranges over the timed runs, ratios of the
    medians to the first of ``BASELINES`` with a timed run at that N, and one row per run killed over the memory cap."""
    import statistics

    lines = [f"Command: `{cmd}`", "",
             "Protocol: the ModalTune step of this script (GigaPath-size backbone, random_init, paper adapter, 331 pathway tokens, "
             f"one survival task, batch 1, AdamW), CPU, {threads} thread(s); every variant in its own process (warm-up step, then one timed "
             f"step; peak = VmHWM after the warm-up), variants alternated in rotating order for {rounds} round(s); medians (range over rounds). "
             f"1-min load average {load0} before, {load1} after (per-run /proc/loadavg in the JSON). "
             "Slide features are random numbers (SIMULATED bags).", ""]
    for n in sizes:
        timed = {v: [r for r in runs if r["n_patches"] == n and r["variant"] == v and "seconds_per_step" in r] for v in VARIANTS}
        timed = {v: rs for v, rs in timed.items() if rs}
        base = next((b for b in BASELINES if b in timed), None)
        bname = base or "no baseline"
        lines += [f"| N patches | variant | wall s/step | CPU s/step | peak RSS MiB | wall vs {bname} | CPU vs {bname} | peak vs {bname} | rounds "
                  "| warm-up step wall s / CPU s |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        med = lambda rs, k: statistics.median(r[k] for r in rs)
        # the warm-up step (same process, just before the timed one) is reported as a second sample; older logs lack it
        warm = lambda rs: (f"{_rng([r['warmup_seconds'] for r in rs], '.1f')} / {_rng([r['warmup_cpu_seconds'] for r in rs], '.1f')}"
                           if all("warmup_seconds" in r for r in rs) else "-")
        for v, rs in timed.items():
            t, c, m = (med(rs, k) for k in ("seconds_per_step", "cpu_seconds_per_step", "peak_rss_mib"))
            if base:
                bt, bc, bm = (med(timed[base], k) for k in ("seconds_per_step", "cpu_seconds_per_step", "peak_rss_mib"))
                rel = f"{t / bt:.2f}x | {c / bc:.2f}x | {m / bm:.2f}x"
            else:
                rel = "- | - | -"
            lines.append(f"| {n} | {v} | {_rng([r['seconds_per_step'] for r in rs], '.1f')} | {_rng([r['cpu_seconds_per_step'] for r in rs], '.1f')} "
                         f"| {_rng([r['peak_rss_mib'] for r in rs], '.0f')} | {rel} | {len(rs)} | {warm(rs)} |")
        for r in runs:
            if r["n_patches"] == n and "over_cap_mib" in r:
                lines.append(f"| {n} | {r['variant']} | killed: RSS over the {r['over_cap_mib']:.0f} MiB cap | - | > {r['over_cap_mib']:.0f} | - | - | - | - | - |")
        lines.append("")
    return "\n".join(lines)


def _compare(args: argparse.Namespace) -> None:
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
                if any(r["n_patches"] == n and r["variant"] == v and "over_cap_mib" in r for r in runs):
                    continue  # it did not fit once; it will not fit in a later round
                r = _run_child(n, v, 1, args.threads, args.max_rss_mib)
                r["round"] = rnd
                r["load_1min"] = f"{os.getloadavg()[0]:.1f}"
                runs.append(r)
                if log:
                    with log.open("a") as fh:
                        fh.write(json.dumps(r) + "\n")
                if "over_cap_mib" in r:
                    print(f"N={n} {v}: killed, RSS {r['rss_seen_mib']:.0f} MiB over the {args.max_rss_mib:.0f} MiB cap", flush=True)
                else:
                    print(f"N={n} {v}: {r['seconds_per_step']:.1f} s/step ({r['cpu_seconds_per_step']:.1f} CPU s), peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    load1 = f"{os.getloadavg()[0]:.1f}"
    cmd = "python benchmarks/bench_modaltune_step.py " + " ".join(f'"{a}"' if " " in a else a for a in sys.argv[1:])
    text = _report(runs, args.sizes, cmd, args.rounds, args.threads, load0, load1)
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
    ap.add_argument("--threads", type=int, default=2, help="with --compare: torch/OpenMP threads of each child (default 2)")
    ap.add_argument("--max-rss-mib", type=float, help="with --compare: kill a child whose resident memory exceeds this and record it")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        c = args.child
        extra = (c[3], c[4] == "1", *(int(x) for x in c[5:6])) if len(c) > 3 else ()
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
