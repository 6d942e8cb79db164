"""Run folders: everything needed to know what a run did and to recompute its numbers.

A run folder holds the resolved config, package versions, the git commit, sha256 hashes of the
data tables it read, a log file, predictions and tables. Writes are atomic (through
:mod:`modaltune.fileio`: a process-unique temporary name in the same directory, fsync, then
``os.replace``) so a killed run never leaves half a file behind, and a full disk is one line.
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from modaltune.fileio import atomic_write, atomic_write_text

__all__ = [
    "atomic_write_parquet",
    "atomic_write_csv",
    "package_versions",
    "git_commit",
    "sha256_file",
    "cohort_hashes",
    "write_run_metadata",
    "attach_log_file",
    "detach_log_file",
]


def atomic_write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def atomic_write_csv(path: str | Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages whose behaviour changes numbers."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("modaltune", "torch", "lightning", "numpy", "pandas", "scikit-learn", "scikit-survival", "torchsurv", "ray"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> dict[str, Any]:
    """Commit of the modaltune source tree (and whether it had uncommitted changes), if known."""
    src = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "."], cwd=src, capture_output=True, text=True, timeout=10)
        return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cohort_hashes(cohort: Any, split_file: str | Path | None = None) -> dict[str, str]:
    """sha256 of a cohort's manifest and tables (not of the bag files: ``slides.csv`` lists them).

    In-memory cohorts (no ``root``) are hashed from their patient table instead.
    """
    out: dict[str, str] = {}
    root = getattr(cohort, "root", None)
    if root is not None and Path(root).exists():
        root = Path(root)
        names = ["cohort.yaml", "patients.csv", "slides.csv", "clinical.csv", "text.csv", "excluded.csv"]
        names += [str(p.relative_to(root)) for p in sorted((root / "omics").glob("*"))] if (root / "omics").exists() else []
        for name in names:
            p = root / name
            if p.is_file():
                out[name] = sha256_file(p)
    else:
        out["patients(in-memory)"] = hashlib.sha256(pd.util.hash_pandas_object(cohort.patients, index=True).values.tobytes()).hexdigest()
    if split_file is not None and Path(split_file).is_file():
        out[f"split:{Path(split_file).name}"] = sha256_file(split_file)
    return out


def write_run_metadata(out_dir: str | Path, config: Any = None, hashes: dict[str, Any] | None = None) -> None:
    """``config.yaml`` (resolved), ``versions.json``, ``git.json``, ``data_hashes.json``."""
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        data = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(data, sort_keys=False))
    atomic_write_text(out_dir / "versions.json", json.dumps(package_versions(), indent=2))
    atomic_write_text(out_dir / "git.json", json.dumps(git_commit(), indent=2))
    if hashes is not None:
        atomic_write_text(out_dir / "data_hashes.json", json.dumps(hashes, indent=2, sort_keys=True))


def attach_log_file(path: str | Path, level: int = logging.INFO) -> logging.Handler:
    """Send ``modaltune`` and ``lightning`` log records to ``path`` too (returns the handler to remove)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("modaltune", "lightning.pytorch"):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > level:
            lg.setLevel(level)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    for name in ("modaltune", "lightning.pytorch"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()
