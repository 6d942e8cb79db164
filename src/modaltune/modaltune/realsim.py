"""Real TCGA labels / omics / clinical fields joined with SIMULATED slide bags, for end-to-end runs
of the paper-protocol configs where no patch features exist.

:func:`attach_simulated_bags` writes one bag per slide listed in an imported cohort's
``slides.csv`` at the path the cohort expects (TRIDENT h5 layout). The features are seeded i.i.d.
Gaussian noise (float16) with **no relation to any label**: a slide stream run on them can only
learn nothing, so every number produced this way measures the omics / clinical / text side and the
machinery, never slide performance. The bags (TRIDENT h5, or a dict ``.pt`` where the cohort lists ``.pt`` files) carry
``encoder = "SIMULATED-noise"`` and a ``simulated`` attribute, and the cohort manifest description is left untouched (the tables say it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from modaltune.errors import InputError

__all__ = ["attach_simulated_bags", "SIMULATED_ENCODER"]

SIMULATED_ENCODER = "SIMULATED-noise"


def attach_simulated_bags(cohort_dir: str | Path, *, feature_dim: int = 1536, patches: tuple[int, int] = (64, 256), seed: int = 0,
                          patch_size_level0: int = 256, overwrite: bool = False) -> int:
    """Write a noise bag for every listed slide whose file is missing; returns the number written.

    Args:
        cohort_dir: an imported cohort directory (``slides.csv`` with ``patient_id, path``).
        feature_dim: patch-feature width (1536 for Prov-GigaPath tiles, 768 for CONCH v1.5 / TITAN).
        patches: (min, max) patches per slide, uniform integers (seeded per slide).
        seed: base seed; slide ``i`` uses ``seed + i``.
        overwrite: rewrite existing files (never a real feature file: refused if its encoder differs).
    """
    import pandas as pd

    from modaltune.data.bags import write_bag_h5

    root = Path(cohort_dir)
    sl = root / "slides.csv"
    if not sl.exists():
        raise InputError("no slides.csv in the cohort directory", where=root, fix="import the cohort first (modaltune data import ...)")
    slides = pd.read_csv(sl)
    n_written = 0
    for i, row in enumerate(slides.itertuples(index=False)):
        path = root / str(row.path)
        if path.exists():
            if not overwrite:
                continue
            from modaltune.data.bags import read_bag

            enc = read_bag(path).attrs.get("encoder", "")
            if str(enc) != SIMULATED_ENCODER:
                raise InputError(f"refusing to overwrite a real feature file (encoder {enc!r})", where=path, fix="remove it yourself if you mean it")
        rng = np.random.default_rng(seed + i)
        n = int(rng.integers(patches[0], patches[1] + 1))
        side = int(np.ceil(np.sqrt(n)))
        grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:n]
        feats = rng.standard_normal((n, feature_dim)).astype(np.float16)
        note = "i.i.d. Gaussian noise, no label signal (modaltune.modaltune.realsim)"
        if path.suffix == ".pt":  # the cohort expects a CLAM-style .pt bag: write a dict .pt
            import torch

            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"features": torch.from_numpy(feats), "coords": torch.from_numpy(grid * patch_size_level0), "encoder": SIMULATED_ENCODER,
                        "patch_size_level0": patch_size_level0, "simulated": note}, path)
        else:
            write_bag_h5(path, feats, grid * patch_size_level0, patch_size_level0=patch_size_level0, encoder=SIMULATED_ENCODER, extra_attrs={"simulated": note})
        n_written += 1
    return n_written
