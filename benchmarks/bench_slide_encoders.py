"""Forward time and peak memory of the full-size Prov-GigaPath and TITAN slide encoders vs bag size.

Each (model, N) runs in its own subprocess (float32, CPU, ``torch.set_num_threads(2)``, no_grad,
random weights, full-depth model) so peak memory is that process's ``VmHWM`` from ``/proc/self/status``: the whole
process (Python + torch + all weights + inputs + forward), reset with ``/proc/self/clear_refs`` after
the model is built. Large N may run only the first layers of the full-depth model (through the
layer-group API; peak memory does not grow with the number of layers run under no_grad); their time
is then scaled to the full depth (every layer does the same work) and marked "extrapolated". Achieved GFLOP/s divides the analytic FLOP count (below) by the time
and is compared with a plain 4096^3 float32 matmul in the same setting.

FLOPs per layer (multiply-add = 2), T tokens, D width:
* GigaPath: ``2T(4D^2 + 2DF)`` projections/FFN + ``sum_i 4 * n_i * H * m_i^2 * Dh`` for the dilated
  branches (``s_i = min(seg_i, T)``, ``n_i = ceil(T/s_i)`` segments, ``m_i = ceil(s_i/r_i)`` rows per head);
* TITAN: ``2T * 12D^2`` + ``4 T^2 D`` (full attention).

Usage: ``nice -n 10 python benchmarks/bench_slide_encoders.py``; writes the section
"## Slide encoders (issue 5)" of benchmarks/RESULTS.md and benchmarks/slide_encoders.json.
``--quick`` (N = 256 and 1024, one layer of each full-size model; about a minute) and
``--only gigapath:1024:12 --only gigapath:4096:12`` (selected rows) only print their table and never
write either file.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # official_compare.py lives next to this script
SECTION = "## Slide encoders (issue 5)"

GP = dict(D=768, F=3072, H=16, Dh=48, depth=12, in_dim=1536, seg=(1024, 5792, 32768, 185363, 1048576), ratio=(1, 2, 4, 8, 16))
TI = dict(D=768, F=3072, H=12, depth=6, in_dim=768)


def gigapath_layer_flops(N: int) -> float:
    T = N + 1
    D, F, H, Dh = GP["D"], GP["F"], GP["H"], GP["Dh"]
    att = 0.0
    for s_len, r in zip(GP["seg"], GP["ratio"]):
        s = min(s_len, T)
        n = math.ceil(T / s)
        m = math.ceil(s / r)
        att += 4.0 * n * H * m * m * Dh
    return 2.0 * T * (4 * D * D + 2 * D * F) + att


def gigapath_attention_linear_ratio(N: int) -> float:
    """Dilated-attention FLOPs over projection + FFN FLOPs of one GigaPath layer (formulas above)."""
    T = N + 1
    linear = 2.0 * T * (4 * GP["D"] ** 2 + 2 * GP["D"] * GP["F"])
    return (gigapath_layer_flops(N) - linear) / linear


def gigapath_attention_crossover(lo: int = 1, hi: int = 1 << 20) -> int:
    """Smallest N from which the dilated attention costs at least as much as the linear layers
    (the ratio is not monotonic in N, so this scans rather than bisects)."""
    last_below = max(n for n in range(lo, hi, 16) if gigapath_attention_linear_ratio(n) < 1)
    return next(n for n in range(last_below, hi) if gigapath_attention_linear_ratio(n) >= 1)


def titan_layer_flops(N: int) -> float:
    T = N + 1
    D = TI["D"]
    return 2.0 * T * 12 * D * D + 4.0 * T * T * D


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return -1


def _worker(model: str, N: int, depth: int) -> dict:
    import torch

    torch.set_num_threads(2)
    from modaltune.encoders.slide import create_slide_encoder

    g = torch.Generator().manual_seed(0)
    side = math.ceil(math.sqrt(N / 0.7))  # tissue fills ~70% of a square grid, each cell used once
    cells = torch.randperm(side * side, generator=g)[:N]
    grid = torch.stack([cells // side, cells % side], dim=1)
    if model == "gigapath":
        enc = create_slide_encoder("gigapath", random_init=True).eval()
        x = torch.randn(1, N, GP["in_dim"], generator=g)
        coords = (grid * 256 + 17).float()[None]
        kw = {}
    else:
        enc = create_slide_encoder("titan", random_init=True).eval()
        x = torch.randn(1, N, TI["in_dim"], generator=g)
        coords = (grid * 512 + 31)[None]
        kw = {"patch_size_level0": 512}
    def run(xx, cc):  # the full-depth model, running only the first `depth` layers (layer-group API)
        return enc.pool(enc.run_layers(enc.embed(xx, cc, **kw), 0, depth))

    with torch.no_grad():  # warm-up on a small bag (allocator, kernels)
        run(x[:, :64], coords[:, :64])
    base = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        out = run(x, coords)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    assert torch.isfinite(out).all()
    return {"model": model, "N": N, "depth_run": depth, "seconds": dt, "cpu_seconds": dc, "rss_before_bytes": base,
            "peak_bytes": _status("VmHWM"), "hwm_reset": reset}


def _matmul_gflops() -> dict:
    import torch

    torch.set_num_threads(2)
    a = torch.randn(4096, 4096)
    b = torch.randn(4096, 4096)
    a @ b
    best, best_cpu = float("inf"), float("inf")
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return {"gflops": 2 * 4096**3 / best / 1e9, "gflop_per_cpu_s": 2 * 4096**3 / best_cpu / 1e9}


def _run_sub(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _fit_exponent(ns: list[float], ys: list[float]) -> float:
    lx = [math.log(n) for n in ns]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def _write_results(rows: list[dict], mm: dict, notes: list[str]) -> str:
    gib = 1024**3
    lines = [SECTION, "", f"Generated by `benchmarks/bench_slide_encoders.py` on {time.strftime('%Y-%m-%d')}: float32, CPU, "
             f"`torch.set_num_threads(2)`, batch 1, no_grad, random weights, full-size architectures, one subprocess per row. "
             f"The 2-core machine was shared with other jobs (1-min load average {mm.get('load', '?')} before and "
             f"{mm.get('load_end', '?')} after the run), so wall times are upper bounds; CPU seconds (process time, both threads) are less sensitive to the sharing. Plain 4096^3 float32 "
             f"matmul in the same setting: {mm['gflops']:.0f} GFLOP/s wall, {mm['gflop_per_cpu_s']:.0f} GFLOP per CPU-second; "
             f"'% of matmul' compares GFLOP per CPU-second.", "",
             "| model | patches N | layers run | wall s (full depth) | CPU s (full depth) | GFLOP (full depth) | GFLOP/s wall | % of matmul | peak RSS GiB (process) | RSS before forward GiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        full = GP["depth"] if r["model"] == "gigapath" else TI["depth"]
        scale = full / r["depth_run"]
        t_full, c_full = r["seconds"] * scale, r["cpu_seconds"] * scale
        fl = (gigapath_layer_flops(r["N"]) if r["model"] == "gigapath" else titan_layer_flops(r["N"])) * full / 1e9
        mark = "" if r["depth_run"] == full else " (extrapolated)"
        lines.append(f"| {r['model']} | {r['N']} | {r['depth_run']}/{full} | {t_full:.1f}{mark} | {c_full:.1f} | {fl:.0f} | {fl / t_full:.0f} | "
                     f"{100 * (fl / c_full) / mm['gflop_per_cpu_s']:.0f}% | {r['peak_bytes'] / gib:.2f} | {r['rss_before_bytes'] / gib:.2f} |")
    lines.append("")
    for model, fn in (("gigapath", gigapath_layer_flops), ("titan", titan_layer_flops)):
        rs = [r for r in rows if r["model"] == model]
        if len(rs) >= 2:
            ns = [r["N"] for r in rs]
            t_exp = _fit_exponent(ns, [r["seconds"] / r["depth_run"] for r in rs])
            c_exp = _fit_exponent(ns, [r["cpu_seconds"] / r["depth_run"] for r in rs])
            f_exp = _fit_exponent(ns, [fn(n) for n in ns])
            f_att = _fit_exponent([1024, 65536], [fn(1024), fn(65536)])
            m_exp = _fit_exponent(ns, [r["peak_bytes"] - r["rss_before_bytes"] for r in rs])
            lines.append(f"* {model}: fitted growth over N = {ns}: wall time **N^{t_exp:.2f}**, CPU time **N^{c_exp:.2f}**; "
                         f"analytic FLOPs over the same N: N^{f_exp:.2f} (1k -> 64k: N^{f_att:.2f}); forward memory "
                         f"increment N^{m_exp:.2f}.")
    lines += [f"* {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _update_results_md(section: str) -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(section.rstrip("\n") + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def _official_mode(a: argparse.Namespace) -> None:
    import torch
    from official_compare import compare, write_tables

    torch.set_num_threads(2)
    official: dict[str, str] = {}
    for spec in a.official:
        if spec == "standin":
            official.setdefault("gigapath", "standin")
            official.setdefault("titan", "standin")
            continue
        model, sep, path = spec.partition("=")
        if not sep or model not in ("gigapath", "titan") or not (path == "standin" or Path(path).is_dir()):
            raise SystemExit(f"--official {spec!r}: expected gigapath=DIR, titan=DIR (an existing folder), MODEL=standin or standin")
        official[model] = path
    load0 = f"{os.getloadavg()[0]:.1f}"
    rows = []
    for model in official:
        for n in a.official_sizes:
            r = compare(model, n, official, reps=a.official_reps, depth=a.official_gigapath_layers if model == "gigapath" else None,
                        only=a.official_impls)
            print(json.dumps({k: r[k] for k in ("model", "N", "seconds_full_depth_median", "ratio_to_fair_official", "max_abs_diff_to_modaltune")}), flush=True)
            rows.append(r)
    cmd = "python benchmarks/bench_slide_encoders.py " + " ".join(sys.argv[1:])
    out = Path(a.official_out) if a.official_out else HERE / "slide_encoders_official"
    print(write_tables(rows, out.with_suffix(".json"), out.with_suffix(".md"), cmd,
                       (load0, f"{os.getloadavg()[0]:.1f}")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "N", "DEPTH"))
    ap.add_argument("--matmul", action="store_true")
    ap.add_argument("--quick", action="store_true", help="N=256 and 1024, one layer each (smoke test; prints only)")
    ap.add_argument("--only", action="append", metavar="MODEL:N:DEPTH", help="run only these rows (repeatable; prints only)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--official", action="append", metavar="SPEC",
                    help="interleaved comparison with the official code instead of the scaling table: 'gigapath=PATH' (prov-gigapath "
                         "checkout), 'titan=PATH' (MahmoodLab/TITAN snapshot) or 'standin' (labelled stand-ins for both; see "
                         "benchmarks/official_compare.py); writes benchmarks/slide_encoders_official.{json,md}")
    ap.add_argument("--official-sizes", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--official-out", help="output path without suffix (default benchmarks/slide_encoders_official)")
    ap.add_argument("--official-reps", type=int, default=3)
    ap.add_argument("--official-impls", nargs="+", metavar="SUBSTRING",
                    help="time only the implementations whose label contains one of these (modaltune fp32 always runs), "
                         "e.g. 'fused' 'ALiBi' 'bf16-weights' to skip the plain-attention stand-in and autocast")
    ap.add_argument("--official-gigapath-layers", type=int, default=2, help="GigaPath layers run (time scaled to 12)")
    a = ap.parse_args()
    if a.official:
        _official_mode(a)
        return
    if a.worker:
        print(json.dumps(_worker(a.worker[0], int(a.worker[1]), int(a.worker[2]))))
        return
    if a.matmul:
        print(json.dumps(_matmul_gflops()))
        return
    if a.only:
        plan = [(m, int(n), int(d)) for m, n, d in (spec.split(":") for spec in a.only)]
    elif a.quick:
        plan = [("gigapath", 256, 1), ("gigapath", 1024, 1), ("titan", 256, 1), ("titan", 1024, 1)]
    else:
        plan = [("gigapath", 1024, 12), ("gigapath", 4096, 12), ("gigapath", 16384, 2), ("gigapath", 65536, 1),
                ("titan", 1024, 6), ("titan", 4096, 6), ("titan", 16384, 1), ("titan", 32768, 1)]
    mm = _run_sub(["--matmul"], 300)
    mm["load"] = f"{os.getloadavg()[0]:.1f}"
    peak = mm["gflops"]
    rows = []
    for model, n, depth in plan:
        r = _run_sub(["--worker", model, str(n), str(depth)], 900)
        print(f"{model:9s} N={n:6d} layers={depth:2d} {r['seconds']:7.1f}s peak {r['peak_bytes'] / 2**30:.2f} GiB", flush=True)
        rows.append(r)
    mm["load_end"] = f"{os.getloadavg()[0]:.1f}"
    notes = [
        "Targets (issue 5): GigaPath < 2 GB peak at 4k patches, TITAN < 4 GB at 16k. For comparison the official code peaks "
        "at 15.7 GB for GigaPath on any input (float64 1,000,001 x 768 position table) and 8.5 GB for TITAN at 8k patches "
        "(dense float64 ALiBi); official TITAN at 16k does not fit in 24 GB.",
        "Extrapolated rows scale the measured time (which includes the one-off patch embedding) by depth / layers run, "
        "so they slightly overestimate.",
        "Peak memory is per process and includes the Python/torch runtime and all weights (GigaPath 345 MB, TITAN 194 MB): "
        "rows with fewer layers run use the full-depth model, and activations are freed layer by layer under no_grad, so "
        "their peak is the full-depth peak.",
        "TITAN at 64k patches was not run: its 6 layers need about "
        f"{titan_layer_flops(65536) * 6 / 1e9:.0f} GFLOP (full N^2 attention), roughly "
        f"{titan_layer_flops(65536) * 6 / 1e9 / max(1, peak * 0.5):.0f} s here, beyond this benchmark's 10-minute budget; "
        "memory stays linear (ALiBi bias tiles hold at most 2^25 values, attention never materialises N x N logits), "
        "so the 32k row shows the trend. GigaPath runs every dilated branch through the fused attention kernel (no N x N "
        "logits either); at 64k its peak is dominated by per-token activations (FFN hidden states, q/k/v and the five "
        "per-branch outputs held until the log-sum-exp merge).",
        "Dilated-attention cost: head h of branch i only computes the tokens of its head group (1/r_i of them), each against "
        "min(s_i, N)/r_i keys, so the attention FLOPs are 4 N H Dh sum_i min(s_i, N)/r_i^2 (the issue text's "
        "sum_i min(s_i, N)/r_i counts every (token, head) pair in every branch). The linear layers (projections and FFN, "
        "2T(4D^2 + 2DF)) cost more than the dilated attention up to about "
        f"{gigapath_attention_crossover() / 1000:.1f}k patches: attention/linear FLOPs = "
        + ", ".join(f"{gigapath_attention_linear_ratio(n):.2f} at {n // 1024}k" for n in (1024, 4096, 8192, 16384, 65536))
        + ". So the analytic growth is N^"
        + "-".join(f"{_fit_exponent([a, b], [gigapath_layer_flops(a), gigapath_layer_flops(b)]):.2f}"
                   for a, b in ((1024, 4096), (16384, 65536)))
        + " (1k-4k, 16k-64k), not N^1.5; TITAN's full attention approaches N^2 once the 4 N^2 D term dominates the "
        "24 N D^2 linear term (N >> 4.6k).",
    ]
    if a.quick or a.only:  # partial runs never overwrite the recorded results
        print(_write_results(rows, mm, []))
        return
    section = _write_results(rows, mm, notes)
    print(section)
    (HERE / "slide_encoders.json").write_text(json.dumps({"matmul": mm, "runs": rows}, indent=1))
    if not a.no_write:
        _update_results_md(section)


if __name__ == "__main__":
    main()
