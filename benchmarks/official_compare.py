"""Interleaved forward-time comparison of modaltune's GigaPath / TITAN with the official code (or stand-ins).

Used by ``bench_slide_encoders.py --official SPEC`` (repeatable):

* ``gigapath=PATH``: a checkout of ``prov-gigapath/prov-gigapath``. Its model is built with
  ``gigapath.slide_encoder.create_model("", "gigapath_slide_enc12l768d", 1536)`` and given modaltune's
  weights; flash-attn (CUDA only) is replaced by two attention stand-ins, exactly as the issue measured:
  ``plain`` (materialised softmax + logsumexp, the reference pack's patch) and ``fused`` (PyTorch's CPU
  flash kernel that returns the lse, the fair analogue of flash-attn).
* ``titan=PATH``: a local snapshot of the Hugging Face repo ``MahmoodLab/TITAN`` loaded with
  ``transformers.AutoModel.from_pretrained(PATH, trust_remote_code=True)``; its ``vision_encoder`` gets
  modaltune's weights and is timed through ``encode_slide_from_patch_features``.
* ``standin`` (what this repository's machine can run: the official code is not installed here):
  STAND-INS of the official forwards, labelled as such in every output:
  - GigaPath: modaltune's GigaPath forced onto its per-branch path (the official LongNet sequence: per branch
    pad, segment, dilate, attend, scatter into a dense zero-filled copy; then the lse-weighted sum of the dense
    copies), with the attention call replaced by the same two stand-ins (``plain``: materialised logits and
    logsumexp; ``fused``: the CPU flash kernel). The ``fused`` stand-in is modaltune's GigaPath as it was before
    issue 19; the real official code does at least as much work (its ``diag_embed`` scatter builds r-times larger
    tensors), so the stand-in flatters the official side.
  - TITAN: the official forward's structure: the dense ``(1, H, T, T)`` ALiBi bias built once per slide
    (float64 distances -> float32, times the float32 slope, sign flipped) and
    ``F.scaled_dot_product_attention(q, k, v, attn_mask=bias)`` in every block, on modaltune's modules.

Every implementation runs the same weights and inputs; runs are interleaved in one process
(A, B, C, A, B, C, ...) so load changes hit all of them alike; medians and the ratio of medians are reported,
with the max abs difference of the outputs.
"""
from __future__ import annotations

import importlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# attention stand-ins for flash-attn (signature of flash_attn_func with return_attn_probs: lse)
def plain_attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None):
    """``(B, H, L, Dh)`` -> ``out, lse``: materialised logits, logsumexp and softmax (the reference pack's patch)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    lse = torch.logsumexp(s, dim=-1)
    return torch.matmul(torch.softmax(s, dim=-1), v), lse


def fused_attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None):
    """``(B, H, L, Dh)`` -> ``out, lse`` from PyTorch's fused CPU flash kernel (what SDPA runs on CPU)."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)
    return out, lse


def _flash_attn_func_standin(kernel: Callable) -> Callable:
    """A ``flash_attn_func(q, k, v, dropout, bias, softmax_scale, is_causal) -> (out, lse)`` on ``[b, s, h, d]``
    tensors (the wrapper signature of prov-gigapath's ``flash_attention.py``) computed with ``kernel``."""

    def flash_attn_func(q, k, v, dropout=0.0, bias=None, softmax_scale=None, is_causal=False, **kw):
        assert bias is None and not is_causal
        o, lse = kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale)
        return o.transpose(1, 2), lse

    return flash_attn_func


# ---------------------------------------------------------------------------------------------
# builders: each returns {label: callable(features, coords) -> (B, D) embedding}
def _gigapath_standins(ours: Any) -> dict[str, Callable]:
    import modaltune.encoders.slide.gigapath as gp_mod

    def with_kernel(kernel):
        def run(x, c):
            # the official per-branch layout (pad, segment, dilate, attend, scatter each branch into a dense
            # zero-filled copy, then sum the dense copies) with the given attention kernel
            saved = gp_mod.attention_with_lse, gp_mod._branch_rows
            gp_mod.attention_with_lse, gp_mod._branch_rows = kernel, lambda *a: None
            try:
                return ours(x, c)
            finally:
                gp_mod.attention_with_lse, gp_mod._branch_rows = saved
        return run

    return {"official stand-in (plain attention)": with_kernel(plain_attention_with_lse),
            "official stand-in (fused attention)": with_kernel(fused_attention_with_lse)}


def _gigapath_official(ours: Any, path: str) -> dict[str, Callable]:
    sys.path.insert(0, str(path))
    try:
        fa = importlib.import_module("gigapath.torchscale.component.flash_attention")
        slide_encoder = importlib.import_module("gigapath.slide_encoder")
    except ImportError as exc:
        raise SystemExit(f"--official gigapath={path}: cannot import gigapath.slide_encoder from it ({exc}); "
                         "pass a checkout of prov-gigapath/prov-gigapath") from exc
    model = slide_encoder.create_model("", "gigapath_slide_enc12l768d", ours.in_dim).eval()
    missing, unexpected = model.load_state_dict(ours.state_dict(), strict=False)
    if unexpected or [m for m in missing if "pos_embed" not in m]:
        raise SystemExit(f"--official gigapath={path}: weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
    users = [m for name, m in list(sys.modules.items()) if name.startswith("gigapath.torchscale") and hasattr(m, "flash_attn_func")]

    def with_kernel(kernel):
        func = _flash_attn_func_standin(kernel)

        def run(x, c):
            for m in users + [fa]:
                m.flash_attn_func = func
            return model(x, c)[0]
        return run

    return {"official (plain attention)": with_kernel(plain_attention_with_lse),
            "official (fused attention)": with_kernel(fused_attention_with_lse)}


def _titan_standin(ours: Any, ps: int) -> dict[str, Callable]:
    def run(x, c):
        state = ours.embed(x, c, patch_size_level0=ps)
        grid = state.context["grid"][0, 1:]
        T, H = state.tokens.shape[1], ours.num_heads
        # official get_alibi: float64 distances of every pair -> float32, * float32 slope * -1, CLS row/col 0
        d = torch.cdist(grid.double(), grid.double(), compute_mode="donot_use_mm_for_euclid_dist").float()
        bias = torch.zeros(1, H, T, T)
        bias[0, :, 1:, 1:] = d[None] * ours.slopes[:, None, None] * -1
        del d
        h = state.tokens
        for blk in ours.blocks.modules_list:
            q, k, v = blk.attn.split_heads(blk.norm1(h))
            h = h + blk.attn.merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
            h = h + blk.mlp(blk.norm2(h))
        return ours.pool(state.with_tokens(h))

    return {"official stand-in (dense ALiBi + SDPA)": run}


def _titan_official(ours: Any, path: str, ps: int) -> dict[str, Callable]:
    try:
        from transformers import AutoModel
    except ImportError as exc:
        raise SystemExit("--official titan=PATH needs transformers (pip install transformers)") from exc
    model = AutoModel.from_pretrained(str(path), trust_remote_code=True).eval()
    model.vision_encoder.load_state_dict(ours.state_dict(), strict=False)

    def run(x, c):
        return model.encode_slide_from_patch_features(x, c, ps)

    return {"official": run}


# ---------------------------------------------------------------------------------------------
def _inputs(model: str, N: int, in_dim: int):
    g = torch.Generator().manual_seed(0)
    side = math.ceil(math.sqrt(N / 0.7))  # tissue fills ~70% of a square grid, each cell used once
    cells = torch.randperm(side * side, generator=g)[:N]
    grid = torch.stack([cells // side, cells % side], dim=1)
    x = torch.randn(1, N, in_dim, generator=g)
    coords = (grid * 256 + 17).float()[None] if model == "gigapath" else (grid * 512 + 31)[None]
    return x, coords


def compare(model: str, N: int, official: dict[str, str], reps: int = 3, depth: int | None = None,
            bf16: bool = True, only: list[str] | None = None) -> dict:
    """Interleaved medians for one (model, N). ``official``: ``{"gigapath": PATH | "standin", ...}``.

    ``bf16`` adds two labelled fast paths: bf16 autocast of the float32 model, and the model with weights
    stored in bf16 (``precision="bf16-weights"``, cast once). ``only``: keep the implementations whose label
    contains one of these substrings (``"modaltune"`` is always kept: it is the reference output).

    ``depth`` (GigaPath only) runs the first layers of the full-size model and scales the time to 12 layers
    (embedding included in the measured part, so the extrapolation slightly overestimates every implementation alike).
    """
    from modaltune.encoders.slide import create_slide_encoder

    torch.manual_seed(0)
    if model == "gigapath":
        full = 12
        depth = depth or full
        ours = create_slide_encoder("gigapath", random_init=True, depth=depth).eval()
        impls = _gigapath_standins(ours) if official[model] == "standin" else _gigapath_official(ours, official[model])
        ours_run = ours
    else:
        full = depth = 6
        ours = create_slide_encoder("titan", random_init=True, patch_size_level0=512).eval()
        impls = _titan_standin(ours, 512) if official[model] == "standin" else _titan_official(ours, official[model], 512)

        def ours_run(x, c):
            return ours(x, c)
    fns: dict[str, Callable] = {"modaltune": ours_run, **impls}
    if bf16:
        def bf16_run(x, c, f=ours_run):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return f(x, c).float()
        fns["modaltune bf16 autocast (fast path)"] = bf16_run
        import copy

        from modaltune.encoders.slide.precision import apply_precision

        ours16 = apply_precision(copy.deepcopy(ours), "bf16-weights")  # weights cast once; forward returns float32
        fns["modaltune bf16-weights (fast path)"] = lambda x, c: ours16(x, c)
    if only:
        fns = {k: f for k, f in fns.items() if k == "modaltune" or any(o in k for o in only)}
    x, c = _inputs(model, N, ours.in_dim)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}  # process CPU seconds (all threads): less distorted by load
    outs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for f in fns.values():  # warm-up on a small bag
            f(x[:, :64], c[:, :64])
        for r in range(reps):
            order = list(fns)[r % len(fns):] + list(fns)[: r % len(fns)]  # rotate who goes first
            for k in order:
                t0, c0 = time.perf_counter(), time.process_time()
                outs[k] = fns[k](x, c)
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    scale = full / depth
    med = {k: statistics.median(v) * scale for k, v in times.items()}
    cmed = {k: statistics.median(v) * scale for k, v in cpu.items()}
    ref = outs["modaltune"]
    fair = [k for k in fns if "fused" in k] or [k for k in fns if k.startswith("official")] or ["modaltune"]
    return {
        "model": model, "N": N, "layers_run": depth, "full_depth": full, "reps": reps, "official": official[model],
        "seconds_full_depth_median": med, "all_seconds_layers_run": times,
        "ratio_to_fair_official": {k: med[k] / med[fair[0]] for k in fns},
        "cpu_seconds_full_depth_median": cmed, "cpu_ratio_to_fair_official": {k: cmed[k] / cmed[fair[0]] for k in fns},
        "fair_official": fair[0],
        "max_abs_diff_to_modaltune": {k: float((o.float() - ref.float()).abs().max()) for k, o in outs.items()},
        "load_before": load_before, "load_after": os.getloadavg()[0],
        "cpu_seconds_layers_run": cpu,
    }


def write_tables(rows: list[dict], json_path: Path, md_path: Path, command: str, load: tuple[str, str]) -> str:
    import json

    json_path.write_text(json.dumps({"command": command, "load_1min_before_after": load, "torch": torch.__version__,
                                     "threads": torch.get_num_threads(), "rows": rows}, indent=1))
    standin = any(r["official"] == "standin" for r in rows)
    lines = [f"Command: `{command}`", "",
             "Protocol: float32 CPU, `torch.set_num_threads(2)`, batch 1, no_grad, random weights shared by all "
             "implementations, one process, runs interleaved (rotating order), median of "
             f"{rows[0]['reps'] if rows else '?'} runs per implementation; GigaPath times of fewer layers are scaled to 12 layers. "
             f"1-min load average {load[0]} before, {load[1]} after."]
    if standin:
        lines.append("**Official code not installed here: 'official stand-in' rows are the stand-ins described in "
                     "benchmarks/official_compare.py (same weights and inputs), not the official code itself.**")
    lines += ["", "| model | N | layers run | implementation | wall s (full depth, median) | ratio to fair official | "
              "CPU s (full depth, median) | CPU ratio | max abs diff to modaltune fp32 |",
              "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cs, cr = r.get("cpu_seconds_full_depth_median", {}), r.get("cpu_ratio_to_fair_official", {})
        for k, s in r["seconds_full_depth_median"].items():
            cpu_cells = f"{cs[k]:.2f} | {cr[k]:.2f}" if k in cs else "- | -"
            lines.append(f"| {r['model']} | {r['N']} | {r['layers_run']}/{r['full_depth']} | {k} | {s:.2f} | "
                         f"{r['ratio_to_fair_official'][k]:.2f} | {cpu_cells} | {r['max_abs_diff_to_modaltune'][k]:.1e} |")
    text = "\n".join(lines) + "\n"
    md_path.write_text(text)
    return text

