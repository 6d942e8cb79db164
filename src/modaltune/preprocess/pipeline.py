"""Folder of slides -> one TRIDENT h5 of patch features per slide, QC pictures and a run summary.

Per slide: open (MPP from metadata or override) -> tissue mask -> patch grid -> multi-worker tile
reading (torch DataLoader) -> batched encoding -> rows streamed into ``<out>/<slide>.h5.tmp`` ->
atomic rename. Memory is bounded by ``batch_size x workers x prefetch`` tiles plus the tissue mask,
whatever the slide size. Each slide runs inside its own ``try`` so one unreadable slide is reported
and the others go on; ``resume`` skips slides whose h5 is already complete for the same encoder.

Outputs in ``out``: ``<slide>.h5``, ``qc/<slide>_thumbnail.png`` (tissue outline + kept patches),
``qc/<slide>_tissue.geojson`` (QuPath), ``summary.json`` and ``summary.md``.

Optional slide embeddings: with ``slide_encoder`` set, each slide's patch features and coords go
through that slide encoder (:func:`modaltune.encoders.slide.create_slide_encoder`) and the result is
stored in the same h5 as ``slide_embedding`` (1-D float32, attrs ``slide_encoder`` and
``slide_encoder_weights``), written before the atomic rename; a complete h5 skipped by resume that
lacks the embedding gets it through a temporary copy and ``os.replace``.
"""
from __future__ import annotations

import errno
import inspect
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from modaltune.data.h5layout import SLIDE_EMBEDDING
from modaltune.errors import ConfigError, InputError
from modaltune.fileio import OutputLock, atomic_write

__all__ = ["ExtractConfig", "SlideResult", "RunSummary", "extract_features", "process_slide", "find_slides", "compute_slide_embedding"]

# Files that look like images but that no backend reads: reported as failed, never silently ignored.
_IMAGE_LIKE = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".jp2", ".czi", ".isyntax", ".sdpc", ".kfb", ".vsi", ".qptiff", ".ome.zarr")


@dataclass
class ExtractConfig:
    """Settings of one extraction run (saved in ``summary.json``).

    ``magnification``/``target_mpp``: patch resolution (MPP wins when set); ``patch_size``: px at that
    resolution; ``overlap``: px shared by neighbours; ``min_tissue``: fraction 0-1; ``no_tissue``:
    'write' an empty h5 flagged ``status='no_tissue'`` or 'skip' writing it (both are reported).
    ``slide_encoder``: optional slide encoder name (``slide_embedding`` dataset per h5), built with
    ``slide_encoder_checkpoint`` or, explicitly, ``slide_encoder_random_init`` (seeded: same weights
    in every process).
    """

    encoder: str = "efficientnet_lite0"
    weights: str | None = None
    magnification: float | None = 20.0
    target_mpp: float | None = None
    patch_size: int = 256
    overlap: int = 0
    min_tissue: float = 0.25
    batch_size: int = 64
    workers: int = 0
    device: str = "auto"
    resume: bool = True
    backend: str = "auto"
    mpp_overrides: dict = field(default_factory=dict)
    no_tissue: str = "write"
    mask_long_side: int = 2048
    features_dtype: str = "float32"
    progress: bool = True
    save_qc: bool = True
    slide_encoder: str | None = None
    slide_encoder_checkpoint: str | None = None
    slide_encoder_random_init: bool = False
    encoder_config: dict | None = None  # a user encoder's config (see modaltune.preprocess.encoders.custom)
    strict_pairing: bool = False

    def validate(self) -> None:
        if self.no_tissue not in ("write", "skip"):
            raise ConfigError(f"no_tissue policy '{self.no_tissue}' is not 'write' or 'skip'")
        if self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size} must be ≥ 1")
        if self.workers < 0:
            raise ConfigError(f"workers {self.workers} must be ≥ 0")
        if self.features_dtype not in ("float32", "float16"):
            raise ConfigError(f"features dtype '{self.features_dtype}' must be float32 or float16")
        if self.mask_long_side < 64:
            raise ConfigError(f"mask long side {self.mask_long_side} px is too small to find tissue", fix="use 64 or more (default 2048)")


@dataclass
class SlideResult:
    """Outcome of one slide. ``status``: 'done' | 'no_tissue' | 'skipped' (already complete) | 'failed' |
    'not_processed' (the run stopped before it: the output disk is full)."""

    slide: str
    path: str
    status: str
    n_patches: int = 0
    seconds: float = 0.0
    h5: str | None = None
    error: str | None = None
    mpp: float | None = None
    read_wait_s: float = 0.0
    encode_s: float = 0.0
    slide_embedding_dim: int = 0  # width of the stored ``slide_embedding`` (0: none)
    errno: int | None = None  # OS error code of a failure, when there is one (ENOSPC stops the run)


@dataclass
class RunSummary:
    """All slides of a run, with totals; ``write(out)`` saves ``summary.json`` and ``summary.md``."""

    out_dir: str
    encoder: str
    embedding_dim: int
    pathology_encoder: bool
    config: dict
    slides: list[SlideResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.slides)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def no_tissue(self) -> int:
        return self.count("no_tissue")

    @property
    def not_processed(self) -> int:
        return self.count("not_processed")

    @property
    def patches(self) -> int:
        return sum(r.n_patches for r in self.slides)

    def totals(self) -> dict:
        return {"slides": len(self.slides), "done": self.done, "no_tissue": self.no_tissue, "skipped": self.skipped,
                "failed": self.failed, "not_processed": self.not_processed, "patches": self.patches, "seconds": round(self.seconds, 3)}

    def to_dict(self) -> dict:
        return {"out_dir": self.out_dir, "encoder": self.encoder, "embedding_dim": self.embedding_dim,
                "pathology_encoder": self.pathology_encoder, "config": self.config, "totals": self.totals(),
                "slides": [asdict(r) for r in self.slides]}

    def to_markdown(self) -> str:
        t = self.totals()
        lines = [
            "# Patch feature extraction",
            "",
            f"Encoder: `{self.encoder}` ({self.embedding_dim}-d)" + ("" if self.pathology_encoder else
                                                                   " - ImageNet weights, NOT a pathology encoder"),
            "",
            *([f"Slide encoder: `{self.config['slide_encoder']}` (weights: "
               f"{self.config.get('slide_encoder_checkpoint') or 'random_init'}); `slide_embedding` in each h5", ""]
              if self.config.get("slide_encoder") else []),
            f"Slides: {t['slides']} - done {t['done']}, no tissue {t['no_tissue']}, skipped (already complete) "
            f"{t['skipped']}, failed {t['failed']}, not processed {t['not_processed']}; patches {t['patches']}; time {t['seconds']:.1f} s",
            "",
            "| slide | status | patches | seconds | note |",
            "| --- | --- | ---: | ---: | --- |",
        ]
        for r in self.slides:
            note = (r.error or "").replace("|", "/")
            lines.append(f"| {r.slide} | {r.status} | {r.n_patches} | {r.seconds:.2f} | {note} |")
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path | None = None) -> tuple[Path, Path]:
        """Atomic writes; a full or read-only disk raises a one-line :class:`~modaltune.fileio.DiskError`."""
        from modaltune.fileio import atomic_write_json, atomic_write_text

        out = Path(out or self.out_dir)
        return (atomic_write_json(out / "summary.json", self.to_dict(), default=str),
                atomic_write_text(out / "summary.md", self.to_markdown()))


# ---------------------------------------------------------------------------------------------
# slide discovery
# ---------------------------------------------------------------------------------------------
def find_slides(slides: str | Path | Sequence[str | Path]) -> list[Path]:
    """Slides to process: every slide (or image-like) file in a folder, or the given paths.

    Raises :class:`ConfigError` when the folder does not exist or two slides share a name (they would
    write the same ``<name>.h5``).
    """
    from .slide import SLIDE_EXTENSIONS

    if isinstance(slides, (str, Path)):
        root = Path(slides)
        if root.is_dir():
            paths = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in SLIDE_EXTENSIONS + _IMAGE_LIKE)
        elif root.exists():
            paths = [root]
        else:
            raise ConfigError("slide folder not found", where=root, fix="pass --slides DIR with the slide files")
    else:
        paths = [Path(p) for p in slides]
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise ConfigError(f"two slides are named '{p.stem}': {seen[p.stem]} and {p}", fix="rename one; outputs are <name>.h5")
        seen[p.stem] = p
    return paths


# ---------------------------------------------------------------------------------------------
# reading tiles in workers
# ---------------------------------------------------------------------------------------------
class _TileDataset:
    """Map-style dataset of patches of one slide; each worker opens its own slide handle.

    Item: ``(uint8 tensor (patch_size, patch_size, 3), index)``.
    """

    def __init__(self, path: str, backend: str, mpp: float, coords: np.ndarray, level: int, read_size: int, patch_size: int):
        self.path, self.backend, self.mpp = path, backend, mpp
        self.coords, self.level, self.read_size, self.patch_size = coords, level, read_size, patch_size
        self._wsi = None

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int):
        import torch

        if self._wsi is None:
            from .slide import WSI

            self._wsi = WSI(self.path, backend=self.backend, mpp=self.mpp)
        x, y = self.coords[i]
        tile = self._wsi.read_region(int(x), int(y), self.level, self.read_size, self.read_size)
        if self.read_size != self.patch_size:
            import cv2

            interp = cv2.INTER_AREA if self.read_size > self.patch_size else cv2.INTER_CUBIC
            tile = cv2.resize(tile, (self.patch_size, self.patch_size), interpolation=interp)
        return torch.from_numpy(np.require(tile, requirements=["W", "C"])), i

    def __getstate__(self):  # slide handles do not pickle; workers re-open
        state = dict(self.__dict__)
        state["_wsi"] = None
        return state


def _loader(ds: _TileDataset, cfg: ExtractConfig, pin: bool):
    from torch.utils.data import DataLoader

    kw = dict(batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers, pin_memory=pin)
    if cfg.workers > 0:
        kw.update(prefetch_factor=2, persistent_workers=False)
    return DataLoader(ds, **kw)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


_ENCODER_CACHE: dict = {}


def _get_encoder(cfg: ExtractConfig, device: str):
    """Load (once per process) the configured encoder; Ray workers reuse it across slides."""
    from .encoders import load_patch_encoder

    _register_custom(cfg)
    key = (cfg.encoder, cfg.weights, device)
    if key not in _ENCODER_CACHE:
        _ENCODER_CACHE.clear()
        _ENCODER_CACHE[key] = load_patch_encoder(cfg.encoder, weights=cfg.weights, device=device)
    return _ENCODER_CACHE[key]


def _register_custom(cfg: ExtractConfig) -> None:
    """Register the run's user encoder (from ``cfg.encoder_config``) in this process: Ray workers too."""
    if cfg.encoder_config:
        from .encoders import custom_encoder_spec, register_patch_encoder

        register_patch_encoder(custom_encoder_spec(cfg.encoder_config), replace=True)


_SLIDE_ENCODER_CACHE: dict = {}
_SLIDE_INIT_SEED = 0  # random_init weights are drawn from this seed: identical in every worker / Ray task


def _get_slide_encoder(cfg: ExtractConfig, in_dim: int, device: str):
    """Build (once per process) the configured slide encoder in eval mode, or None when not asked for.

    ``in_dim`` (the patch features' width) is passed when the encoder's constructor takes it.
    Registry errors (unknown name; a foundation model with neither checkpoint nor random_init) are
    :class:`ConfigError` and surface before any slide is processed.
    """
    if not cfg.slide_encoder:
        return None
    key = (cfg.slide_encoder, cfg.slide_encoder_checkpoint, cfg.slide_encoder_random_init, int(in_dim), device)
    if key not in _SLIDE_ENCODER_CACHE:
        import torch

        from modaltune.encoders.slide.registry import _REGISTRY, create_slide_encoder

        entry = _REGISTRY.get(cfg.slide_encoder, None)
        kw = {}
        if entry is not None and "in_dim" in inspect.signature(entry.builder).parameters:
            kw["in_dim"] = int(in_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SLIDE_INIT_SEED)
            enc = create_slide_encoder(cfg.slide_encoder, checkpoint=cfg.slide_encoder_checkpoint,
                                       random_init=cfg.slide_encoder_random_init, **kw)
        _SLIDE_ENCODER_CACHE.clear()
        _SLIDE_ENCODER_CACHE[key] = enc.eval().to(device)
    return _SLIDE_ENCODER_CACHE[key]


def compute_slide_embedding(slide_encoder, features: np.ndarray, coords: np.ndarray, patch_size_level0: int | None) -> np.ndarray:
    """One slide's embedding: ``features (N, D)``, level-0 ``coords (N, 2)`` -> ``(embed_dim,)`` float32.

    The level-0 patch size goes to encoders whose ``embed`` takes it (GigaPath ``tile_size``, TITAN
    ``patch_size_level0``); the small transformer's position grid uses it as its cell size.
    """
    import torch

    params = inspect.signature(slide_encoder.embed).parameters
    kw = {}
    if patch_size_level0:
        if "tile_size" in params:
            kw["tile_size"] = int(patch_size_level0)
        elif "patch_size_level0" in params:
            kw["patch_size_level0"] = int(patch_size_level0)
        elif hasattr(slide_encoder, "patch_size_level0"):  # set at construction; the grid cell must match this slide
            slide_encoder.patch_size_level0 = int(patch_size_level0)
    dev = next(slide_encoder.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None].to(dev)
    c = torch.from_numpy(np.ascontiguousarray(coords, dtype=np.int64))[None].to(dev)
    with torch.inference_mode():
        out = slide_encoder(x, c, **kw)
    return out[0].float().cpu().numpy().astype(np.float32).reshape(-1)


def _embedding_attrs(slide_encoder, cfg: ExtractConfig) -> dict:
    attrs = {"slide_encoder": cfg.slide_encoder, "slide_encoder_weights": str(slide_encoder.weights_source)}
    if slide_encoder.weights_source == "random_init":
        attrs["init_seed"] = _SLIDE_INIT_SEED
    return attrs


def _add_embedding_to_finished(h5: Path, slide_encoder, cfg: ExtractConfig) -> int:
    """Give a complete h5 (skipped by resume) its ``slide_embedding`` unless it already holds one from the
    same encoder and weights: compute it, write a temporary copy, ``os.replace``. Returns the width."""
    import h5py

    want = _embedding_attrs(slide_encoder, cfg)
    with h5py.File(h5, "r") as f:
        if "slide_embedding" in f:
            have = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["slide_embedding"].attrs.items()}
            if all(have.get(k) == v for k, v in want.items()):
                return int(f["slide_embedding"].shape[0])
        if int(f["coords"].shape[0]) == 0:  # no-tissue bag: nothing to embed
            return 0
        feats, coords = f["features"][()], f["coords"][()]
        ps = f["coords"].attrs.get("patch_size_level0")
    emb = compute_slide_embedding(slide_encoder, feats, coords, ps)

    def _write(tmp: Path) -> None:
        shutil.copyfile(h5, tmp)
        with h5py.File(tmp, "r+") as f:
            if SLIDE_EMBEDDING in f:
                del f[SLIDE_EMBEDDING]
            ds = f.create_dataset(SLIDE_EMBEDDING, data=emb)
            for k, v in want.items():
                ds.attrs[k] = v

    atomic_write(h5, _write)
    return int(emb.shape[0])


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _describe(exc: BaseException) -> str:
    """One line for the summary: what failed and what to do. OS and HDF5 errors often carry no
    errno (h5py names it in the text only): :func:`~.h5writer.os_error_code` finds it anyway."""
    from modaltune.fileio import DiskError

    from .h5writer import BagWriteError, os_error_code

    text = " ".join(str(exc).split())
    if isinstance(exc, (InputError, ConfigError)):
        return text
    if isinstance(exc, DiskError):
        return f"{text}; no partial file was left; rerun after fixing it (finished slides are skipped)"
    code = os_error_code(exc)
    name = errno.errorcode.get(code, "") if code else ""
    writing = isinstance(exc, BagWriteError)
    if code in _DISK_FULL and (writing or isinstance(exc, OSError)):
        return (f"disk full while writing ({name}: {text}); no partial h5 was left; free space in the output folder "
                f"and rerun (finished slides are skipped)")
    if writing:
        return (f"cannot write the h5 ({name + ': ' if name else ''}{text}); no partial h5 was left; "
                f"check free space and write permission of the output folder")
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}{' ' + name if name else ''}: {text or 'no message (an I/O error with no errno)'}"
    return f"{type(exc).__name__}: {text or repr(exc)}"


# ---------------------------------------------------------------------------------------------
# one slide
# ---------------------------------------------------------------------------------------------
def process_slide(path: str | Path, out_dir: str | Path, cfg: ExtractConfig, encoder=None) -> SlideResult:
    """Extract one slide into ``out_dir/<name>.h5``; never raises for a bad slide (status 'failed')."""
    from tqdm.auto import tqdm

    from .h5writer import BagWriter, bag_is_complete
    from .slide import WSI
    from .tiling import plan_tiles
    from .tissue import detect_tissue, write_geojson

    path, out_dir = Path(path), Path(out_dir)
    t0 = time.perf_counter()
    h5 = out_dir / f"{path.stem}.h5"
    res = SlideResult(slide=path.stem, path=str(path), status="failed", h5=str(h5))
    device = _resolve_device(cfg.device)
    if encoder is None:
        encoder = _get_encoder(cfg, device)
    slide_enc = _get_slide_encoder(cfg, encoder.embedding_dim, device)
    same = {"patch_size": cfg.patch_size, "overlap": cfg.overlap}
    if cfg.target_mpp is None and cfg.magnification:
        same["target_magnification"] = cfg.magnification
    if cfg.resume and bag_is_complete(h5, encoder.name, same):
        import h5py

        with h5py.File(h5, "r") as f:
            res.n_patches = int(f["coords"].shape[0])
        res.status = "skipped"
        if slide_enc is not None:
            try:
                res.slide_embedding_dim = _add_embedding_to_finished(h5, slide_enc, cfg)
            except Exception as exc:  # noqa: BLE001 - the patch features stay valid; report the embedding problem
                res.status, res.error = "failed", f"slide embedding: {_describe(exc)}"
        res.seconds = time.perf_counter() - t0
        return res
    if cfg.resume and bag_is_complete(h5):
        # A finished bag of another encoder or tiling: never overwrite someone's features silently.
        res.h5 = None
        res.error = (f"{h5} already holds complete features from another encoder or patch size/magnification; "
                     f"write to another --out folder, or pass --no-resume to overwrite")
        res.seconds = time.perf_counter() - t0
        return res
    wsi = None
    try:
        wsi = WSI(path, backend=cfg.backend, mpp_overrides=cfg.mpp_overrides)
        res.mpp = wsi.mpp
        tissue = detect_tissue(wsi, mask_long_side=cfg.mask_long_side)
        plan = plan_tiles(wsi, tissue, patch_size=cfg.patch_size, magnification=cfg.magnification,
                          target_mpp=cfg.target_mpp, overlap=cfg.overlap, min_tissue=cfg.min_tissue)
        if cfg.save_qc:
            from .qc import draw_qc_thumbnail

            write_geojson(tissue.polygons, out_dir / "qc" / f"{wsi.name}_tissue.geojson", slide_name=wsi.name)
            draw_qc_thumbnail(tissue.rgb, tissue.downsample, tissue.polygons, plan.coords, plan.patch_size_level0,
                              out_dir / "qc" / f"{wsi.name}_thumbnail.png",
                              title=f"{wsi.name}: {len(plan)} patches @ {plan.attrs['target_magnification']}x")
        backend, mpp, mpp_source = wsi.backend, wsi.mpp, wsi.mpp_source
        wsi.close()
        wsi = None
        extra = {"mpp_source": mpp_source,
                 "tissue_threshold": float(tissue.threshold), "min_tissue": float(cfg.min_tissue),
                 "pathology_encoder": bool(encoder.spec.pathology)}
        writer_kw = dict(embedding_dim=encoder.embedding_dim, coords_attrs=plan.attrs, encoder=encoder.name, mpp=mpp,
                         dtype=cfg.features_dtype, extra_attrs=extra)
        if len(plan) == 0:
            if cfg.no_tissue == "write":
                with BagWriter(h5, n_rows=0, **writer_kw) as w:
                    w.commit(status="no_tissue")
            else:
                res.h5 = None
            res.status = "no_tissue"
            res.error = f"no tissue patch passed min_tissue={cfg.min_tissue}"
            return res
        ds = _TileDataset(str(path), backend, mpp, plan.coords, plan.read_level, plan.read_size, plan.patch_size)
        with BagWriter(h5, n_rows=len(plan), **writer_kw) as w:
            bar = tqdm(total=len(plan), desc=path.stem, unit="patch", leave=False, disable=not cfg.progress)
            t_wait = time.perf_counter()
            for tiles, idx in _loader(ds, cfg, pin=device.startswith("cuda")):
                t_got = time.perf_counter()
                res.read_wait_s += t_got - t_wait
                feats = encoder.encode(tiles)
                res.encode_s += time.perf_counter() - t_got
                w.append(feats.numpy(), plan.coords[idx.numpy()])
                bar.update(len(idx))
                t_wait = time.perf_counter()
            bar.close()
            if slide_enc is not None:  # before commit: the h5 appears complete with its embedding, or not at all
                feats_all, coords_all = w.rows()
                emb = compute_slide_embedding(slide_enc, feats_all, coords_all, plan.patch_size_level0)
                w.add_dataset("slide_embedding", emb, _embedding_attrs(slide_enc, cfg))
                res.slide_embedding_dim = int(emb.shape[0])
            w.commit(status="complete")
            res.n_patches = w.n
        res.status = "done"
    except Exception as exc:  # noqa: BLE001 - per-slide isolation: report and go on with the next slide
        from .h5writer import os_error_code

        res.status, res.error, res.errno = "failed", _describe(exc), os_error_code(exc)
        res.h5 = None
    finally:
        if wsi is not None:
            wsi.close()
        res.seconds = time.perf_counter() - t0
    return res


# ---------------------------------------------------------------------------------------------
# a run
# ---------------------------------------------------------------------------------------------
def extract_features(slides: str | Path | Iterable[str | Path], out: str | Path, *, encoder: str = "efficientnet_lite0",
                     weights: str | Path | None = None, magnification: float | None = None, target_mpp: float | None = None,
                     patch_size: int | None = None, overlap: int = 0, min_tissue: float = 0.25,
                     mpp_overrides: str | Path | dict | None = None, batch_size: int = 64, workers: int = 0,
                     device: str = "auto", resume: bool = True, backend: str = "auto", no_tissue: str = "write",
                     features_dtype: str = "float32", ray_address: str | None = None, progress: bool = True,
                     save_qc: bool = True, mask_long_side: int = 2048, slide_encoder: str | None = None,
                     slide_encoder_checkpoint: str | Path | None = None, random_init: bool = False,
                     encoder_config: str | Path | dict | None = None, strict_pairing: bool = False) -> RunSummary:
    """Extract patch features of every slide in ``slides`` (folder or list of paths) into ``out``.

    Returns the :class:`RunSummary` (also written to ``out/summary.json`` and ``out/summary.md``).
    ``features_dtype``: 'float32' or 'float16' (half the disk; the data layer keeps it as stored);
    ``save_qc``: write ``qc/`` thumbnails and GeoJSON; ``mask_long_side``: long side in px of the
    low-resolution image tissue is detected on (finer masks for tiny biopsies, coarser for speed).
    ``ray_address`` ('auto', 'local' or 'ray://host:port') runs slides as Ray tasks; see
    :mod:`modaltune.preprocess.distributed`. Configuration mistakes raise :class:`ConfigError`;
    problems with individual slides are reported in the summary, never raised.

    ``slide_encoder`` (e.g. ``'gigapath'``, ``'titan'``, ``'small_transformer'``): also store each slide's
    embedding as ``slide_embedding`` in its h5, with weights from ``slide_encoder_checkpoint`` (a local
    file) or ``random_init=True`` (explicit; for tests). Foundation models without either raise ConfigError.

    Tiling defaults to the encoder's training geometry: ``patch_size`` None takes ``spec.tile_px`` (256
    for encoders declaring none) and ``magnification`` None (with no ``target_mpp``) takes
    ``spec.magnification`` (20x when none); e.g. ``conch_v15`` tiles 512 px at 20x. Another pairing
    warns once (:class:`~.encoders.EncoderPairingWarning`), or raises ConfigError with ``strict_pairing``.
    ``encoder_config`` (a dict or JSON/YAML file: ``builder 'module:function'``, weights, mean/std,
    tile_px, magnification, ...; see :mod:`.encoders.custom`) registers a user encoder and uses it.
    """
    from .encoders import get_patch_encoder_spec
    from .slide import read_mpp_overrides

    if isinstance(mpp_overrides, (str, Path)):
        mpp_overrides = read_mpp_overrides(mpp_overrides)
    custom = None
    if encoder_config is not None:
        from .encoders import custom_encoder_spec, read_encoder_config, register_patch_encoder

        custom = read_encoder_config(encoder_config) if isinstance(encoder_config, (str, Path)) else dict(encoder_config)
        encoder = register_patch_encoder(custom_encoder_spec(custom), replace=True).name
    spec = get_patch_encoder_spec(encoder)
    if patch_size is None:
        patch_size = spec.tile_px or 256
    if magnification is None and target_mpp is None:
        magnification = spec.magnification or 20.0
    cfg = ExtractConfig(encoder=spec.name, weights=str(weights) if weights else None,
                        magnification=magnification, target_mpp=target_mpp, patch_size=patch_size, overlap=overlap,
                        min_tissue=min_tissue, batch_size=batch_size, workers=workers, device=device, resume=resume,
                        backend=backend, mpp_overrides=dict(mpp_overrides or {}), no_tissue=no_tissue,
                        features_dtype=features_dtype, progress=progress, save_qc=save_qc, mask_long_side=int(mask_long_side),
                        slide_encoder=slide_encoder or None,
                        slide_encoder_checkpoint=str(slide_encoder_checkpoint) if slide_encoder_checkpoint else None,
                        slide_encoder_random_init=bool(random_init), encoder_config=custom, strict_pairing=bool(strict_pairing))
    cfg.validate()
    from .encoders import check_pairing

    check_pairing(spec, cfg.patch_size, cfg.magnification, cfg.target_mpp, strict=cfg.strict_pairing)
    out = Path(out)
    paths = find_slides(slides)
    # one run per output folder: two runs would overwrite each other's bags and summary
    with OutputLock(out):
        return _extract_locked(paths, out, cfg, ray_address, progress)


def _extract_locked(paths: list[Path], out: Path, cfg: ExtractConfig, ray_address: str | None, progress: bool) -> RunSummary:
    from tqdm.auto import tqdm

    from modaltune.fileio import STOP_ERRNOS

    from .encoders import get_patch_encoder_spec

    spec = get_patch_encoder_spec(cfg.encoder)
    _get_slide_encoder(cfg, spec.embedding_dim, _resolve_device(cfg.device))  # slide-encoder config errors before any slide
    t0 = time.perf_counter()
    if ray_address:
        from .distributed import run_with_ray
        from .encoders import check_patch_encoder

        # Missing weights or packages: one ConfigError here, not one failed task per slide. The
        # driver checks without building the model (workers load it); the path must also exist on them.
        check_patch_encoder(cfg.encoder, cfg.weights)
        results = run_with_ray(paths, out, cfg, ray_address)
    else:
        enc = _get_encoder(cfg, _resolve_device(cfg.device))  # config errors (weights) surface before any slide
        results = []
        bar = tqdm(paths, desc="slides", unit="slide", disable=not progress)
        for i, p in enumerate(bar):
            r = process_slide(p, out, cfg, encoder=enc)
            results.append(r)
            if r.status == "failed" and r.errno in STOP_ERRNOS:
                # every later slide would fail the same way (after minutes of encoding each): stop
                why = f"not processed: an earlier slide hit '{os.strerror(r.errno).lower()}' in {out}; fix it and rerun"
                results += [SlideResult(slide=q.stem, path=str(q), status="not_processed", h5=None, error=why)
                            for q in paths[i + 1:]]
                break
            bar.set_postfix(done=sum(x.status == "done" for x in results), failed=sum(x.status == "failed" for x in results))
        bar.close()
    summary = RunSummary(out_dir=str(out), encoder=spec.name, embedding_dim=spec.embedding_dim,
                         pathology_encoder=spec.pathology, config=asdict(cfg), slides=results,
                         seconds=time.perf_counter() - t0)
    summary.write(out)
    return summary
