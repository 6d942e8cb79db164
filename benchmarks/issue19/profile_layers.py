"""Where does one encoder layer's time go? A measured lower bound for the issue-19 0.6x target.

For one GigaPath layer and one TITAN layer at ``--N`` patches (float32, batch 1, no_grad), splits the wall
and process-CPU time of each implementation into

* (a) ``linear``: the ``nn.Linear`` calls (QKV, out-proj, FFN), which every implementation runs with the
  same shapes;
* (b) ``attention``: the attention kernel calls (GigaPath: the 5 dilated branches' kernel; TITAN: SDPA);
* (c) ``bias``: building the ALiBi bias (TITAN; the stand-in builds its dense bias once per slide, so a
  sixth of that is charged to each of its 6 layers);
* (d) ``other``: everything else (norms, GELU, residual adds, pads, gathers, the branch merge, copies).

Timers are exclusive (a region's time excludes the regions nested in it) and are installed by wrapping
``nn.Linear.forward``, the attention kernels and the bias builders for the duration of the run; ops on CPU
are synchronous, so the wall clock around a call is that call's time. Implementations are interleaved in
one process (rotating order), ``--reps`` runs each, 2 threads in the timed region, 1 elsewhere.

The bound: if (b)-(d) cost nothing, an implementation still pays the official code's own ``linear`` time,
so no implementation with the same arithmetic can run faster than ``linear_official / total_official``
of the official time (and ``linear_modaltune / total_official`` with modaltune's GEMM timings).

Usage: ``nice -n 10 python benchmarks/issue19/profile_layers.py --N 4096 --reps 3 --out benchmarks/issue19/profile_layers.json``
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # official_compare.py

import official_compare as oc

import modaltune.encoders.slide.gigapath as gp_mod
import modaltune.encoders.slide.titan as titan_mod
import modaltune.layers.alibi as alibi_mod
import modaltune.layers.attention as attn_mod
from modaltune.encoders.slide import create_slide_encoder
from modaltune.encoders.slide.precision import apply_precision

CATEGORIES = ("linear", "attention", "bias", "other")


class Regions:
    """Exclusive wall / process-CPU seconds per label; unlabelled time of the root goes to ``other``."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []

    @contextmanager
    def region(self, label: str):
        t0w, t0c = time.perf_counter(), time.process_time()
        self.stack.append([label, 0.0, 0.0])
        try:
            yield
        finally:
            _, cw, cc = self.stack.pop()
            dw, dc = time.perf_counter() - t0w, time.process_time() - t0c
            self.wall[label] += dw - cw
            self.cpu[label] += dc - cc
            if self.stack:
                self.stack[-1][1] += dw
                self.stack[-1][2] += dc


REG = Regions()


def _wrap(fn, label):
    def wrapped(*a, **kw):
        with REG.region(label):
            return fn(*a, **kw)
    return wrapped


@contextmanager
def instrumented():
    """Install the region timers (Linear, attention kernels, bias builders, the attention glue)."""
    saved = [(nn.Linear, "forward", nn.Linear.forward), (F, "scaled_dot_product_attention", F.scaled_dot_product_attention),
             (gp_mod, "attention_with_lse", gp_mod.attention_with_lse), (gp_mod, "dilated_attention", gp_mod.dilated_attention),
             (titan_mod, "alibi_attention", titan_mod.alibi_attention), (attn_mod, "alibi_bias_tile", attn_mod.alibi_bias_tile),
             (alibi_mod.AlibiBiasTiles, "write", alibi_mod.AlibiBiasTiles.write)]
    lin = nn.Linear.forward
    nn.Linear.forward = lambda self, x: _wrap(lin, "linear")(self, x)
    F.scaled_dot_product_attention = _wrap(saved[1][2], "attention")
    gp_mod.attention_with_lse = _wrap(saved[2][2], "attention")
    gp_mod.dilated_attention = _wrap(saved[3][2], "other")  # pads, gathers, merge: category (d)
    titan_mod.alibi_attention = _wrap(saved[4][2], "other")  # tile loop, copies: category (d)
    attn_mod.alibi_bias_tile = _wrap(saved[5][2], "bias")
    alibi_mod.AlibiBiasTiles.write = _wrap(saved[6][2], "bias")
    try:
        yield
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)


# ---------------------------------------------------------------------------------------------
def gigapath_impls(N: int):
    torch.manual_seed(0)
    ours = create_slide_encoder("gigapath", random_init=True, depth=1).eval()
    x, c = oc._inputs("gigapath", N, ours.in_dim)
    with torch.no_grad():
        tokens = ours.embed(x, c).tokens
    layer = ours.encoder.layers[0]
    bf16 = copy.deepcopy(ours)
    apply_precision(bf16, "bf16-weights")
    layer16, tokens16 = bf16.encoder.layers[0], tokens.to(torch.bfloat16)

    def with_kernel(kernel):
        def run():
            # official per-branch layout (see official_compare._gigapath_standins) with the stand-in kernel;
            # the kernel is wrapped here because instrumented() wraps gp_mod.attention_with_lse only once
            saved = gp_mod.attention_with_lse, gp_mod._branch_rows
            gp_mod.attention_with_lse, gp_mod._branch_rows = _wrap(kernel, "attention"), lambda *a: None
            try:
                return layer(tokens)
            finally:
                gp_mod.attention_with_lse, gp_mod._branch_rows = saved
        return run

    return {"modaltune fp32": lambda: layer(tokens),
            "official stand-in (fused attention)": with_kernel(oc.fused_attention_with_lse),
            "official stand-in (plain attention)": with_kernel(oc.plain_attention_with_lse),
            "modaltune bf16-weights": lambda: layer16(tokens16)}, {}


def titan_impls(N: int):
    torch.manual_seed(0)
    ours = create_slide_encoder("titan", random_init=True, depth=1, patch_size_level0=512).eval()
    x, c = oc._inputs("titan", N, ours.in_dim)
    with torch.no_grad():
        state = ours.embed(x, c)
    tokens, grid, blk = state.tokens, state.context["grid"], ours.blocks.modules_list[0]
    bf16 = copy.deepcopy(ours)
    apply_precision(bf16, "bf16-weights")
    blk16, tokens16 = bf16.blocks.modules_list[0], tokens.to(torch.bfloat16)
    bias_seconds: dict[str, list[float]] = {"wall": [], "cpu": []}

    def standin():
        # official structure: dense bias once per slide (1/6 of it is this layer's share), SDPA with attn_mask
        w0, c0 = REG.wall["bias"], REG.cpu["bias"]
        with REG.region("bias"):
            g = grid[0, 1:].double()
            d = torch.cdist(g, g, compute_mode="donot_use_mm_for_euclid_dist").float()
            T, H = tokens.shape[1], ours.num_heads
            bias = torch.zeros(1, H, T, T)
            bias[0, :, 1:, 1:] = d[None] * ours.slopes[:, None, None] * -1
            del d
        bw, bc = REG.wall["bias"] - w0, REG.cpu["bias"] - c0
        bias_seconds["wall"].append(bw)
        bias_seconds["cpu"].append(bc)
        REG.wall["bias"] -= bw * 5 / 6  # charge one layer's share of the once-per-slide bias
        REG.cpu["bias"] -= bc * 5 / 6
        h = tokens
        q, k, v = blk.attn.split_heads(blk.norm1(h))
        h = h + blk.attn.merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
        return h + blk.mlp(blk.norm2(h))

    return {"modaltune fp32": lambda: blk(tokens, grid, ours.slopes, None),
            "official stand-in (dense ALiBi + SDPA)": standin,
            "modaltune bf16-weights": lambda: blk16(tokens16, grid, bf16.slopes, None)}, {"standin_bias_once_per_slide_s": bias_seconds}


def profile(model: str, N: int, reps: int) -> dict:
    torch.set_num_threads(1)
    impls, extra = (gigapath_impls if model == "gigapath" else titan_impls)(N)
    runs: dict[str, list[dict]] = {k: [] for k in impls}
    outs = {}
    with torch.no_grad(), instrumented():
        torch.set_num_threads(2)
        for r in range(reps):
            order = list(impls)[r % len(impls):] + list(impls)[: r % len(impls)]
            for k in order:
                REG.wall.clear()
                REG.cpu.clear()
                with REG.region("other"):
                    outs[k] = impls[k]()
                runs[k].append({"wall": {c: REG.wall.get(c, 0.0) for c in CATEGORIES},
                                "cpu": {c: REG.cpu.get(c, 0.0) for c in CATEGORIES}})
        torch.set_num_threads(1)
    ref = outs["modaltune fp32"]
    med = {k: {clock: {c: statistics.median(run[clock][c] for run in v) for c in CATEGORIES} for clock in ("wall", "cpu")}
           for k, v in runs.items()}
    for m in med.values():
        for clock in ("wall", "cpu"):
            m[clock]["total"] = sum(m[clock][c] for c in CATEGORIES)
    official = next(k for k in impls if "fused" in k or "ALiBi" in k)
    bound = {clock: {"official_linear_over_official_total": med[official][clock]["linear"] / med[official][clock]["total"],
                     "modaltune_linear_over_official_total": med["modaltune fp32"][clock]["linear"] / med[official][clock]["total"],
                     "modaltune_total_over_official_total": med["modaltune fp32"][clock]["total"] / med[official][clock]["total"],
                     "bf16_weights_total_over_official_total": med["modaltune bf16-weights"][clock]["total"] / med[official][clock]["total"]}
             for clock in ("wall", "cpu")}
    T = ref.shape[1]
    D, Fh = ref.shape[2], 4 * ref.shape[2]
    gemm_flop = 2 * T * (4 * D * D + 2 * D * Fh)  # q, k, v, out + fc1, fc2 per layer
    return {"model": model, "N": N, "tokens": T, "reps": reps, "fair_official": official,
            "linear_gflop_per_layer": gemm_flop / 1e9,
            "linear_gflops_per_wall_s": {k: gemm_flop / 1e9 / med[k]["wall"]["linear"] for k in impls},
            "median_seconds_per_layer": med, "runs": runs, "lower_bound_ratio": bound,
            "max_abs_diff_to_modaltune_fp32": {k: float((o.float() - ref).abs().max()) for k, o in outs.items()}, **extra}


def bounds(row: dict) -> dict:
    """Lower bounds on ``time / official time`` for one profiled model (per layer, medians), per clock:

    * ``linear_only``: (b)-(d) free, the Linear layers at the official code's own speed;
    * ``linear_plus_attention``: also the attention kernel at the official code's speed (the fused CPU flash
      kernel both sides call; the faster kernels tried were slower, docs/slide_encoders.md), only (c)-(d) free;
    * the same two with modaltune's own fp32 timings of those parts.
    """
    med, off = row["median_seconds_per_layer"], row["fair_official"]
    out = {}
    for clock in ("wall", "cpu"):
        o, m = med[off][clock], med["modaltune fp32"][clock]
        out[clock] = {"linear_only": o["linear"] / o["total"], "linear_plus_attention": (o["linear"] + o["attention"]) / o["total"],
                      "linear_only_modaltune_timings": m["linear"] / o["total"],
                      "linear_plus_attention_modaltune_timings": (m["linear"] + m["attention"]) / o["total"],
                      "modaltune_fp32_measured": m["total"] / o["total"],
                      "modaltune_bf16_weights_measured": med["modaltune bf16-weights"][clock]["total"] / o["total"]}
    return out


def report(path: Path) -> str:
    """Markdown tables (per-layer split and bounds) from a profile JSON written by :func:`main`."""
    data = json.loads(path.read_text())
    lines = [f"Command: `{data['command']}`; torch {data['torch']}; /proc/loadavg before `{data['loadavg_before']}`, after `{data['loadavg_after']}`.", ""]
    for r in data["rows"]:
        lines += [f"{r['model']}, N={r['N']} ({r['tokens']} tokens), one layer, median of {r['reps']} interleaved runs, seconds wall / process CPU:", "",
                  "| implementation | (a) linear | (b) attention | (c) bias | (d) other | total |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for k, m in r["median_seconds_per_layer"].items():
            lines.append(f"| {k} | " + " | ".join(f"{m['wall'][c]:.3f} / {m['cpu'][c]:.3f}" for c in (*CATEGORIES, "total")) + " |")
        b = bounds(r)
        lines += ["", "| bound / measured ratio to the official stand-in | wall | CPU |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {b['wall'][k]:.2f} | {b['cpu'][k]:.2f} |" for k in b["wall"]]
        lines.append("")
    return "\n".join(lines)


def _loadavg() -> str:
    p = Path("/proc/loadavg")
    return p.read_text().strip() if p.exists() else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--N", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["gigapath", "titan"])
    ap.add_argument("--out", type=Path, default=HERE / "profile_layers.json")
    ap.add_argument("--report", type=Path, metavar="JSON", help="only print the tables and bounds of a profile JSON (writes JSON's .md)")
    a = ap.parse_args()
    if a.report:
        text = report(a.report)
        a.report.with_suffix(".md").write_text(text)
        print(text)
        return
    load0 = _loadavg()
    rows = [profile(m, a.N, a.reps) for m in a.models]
    load1 = _loadavg()
    a.out.write_text(json.dumps({"command": " ".join(["python"] + sys.argv), "loadavg_before": load0, "loadavg_after": load1,
                                 "torch": torch.__version__, "rows": rows}, indent=1))
    for r in rows:
        print(f"== {r['model']} N={r['N']} (one layer, medians of {r['reps']}; seconds wall | cpu)")
        for k, m in r["median_seconds_per_layer"].items():
            cells = "  ".join(f"{c} {m['wall'][c]:.3f}|{m['cpu'][c]:.3f}" for c in (*CATEGORIES, "total"))
            print(f"  {k:42s} {cells}")
        print("  bound:", json.dumps(r["lower_bound_ratio"]))
    print("load", load0, "->", load1)


if __name__ == "__main__":
    main()
