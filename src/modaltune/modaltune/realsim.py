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

__all__ = ["attach_simulated_bags", "small_cohort", "SIMULATED_ENCODER", "BACKBONE_TILES"]

SIMULATED_ENCODER = "SIMULATED-noise"

#: backbone -> (patch-feature width, level-0 tile pitch in px) of the features it was trained on:
#: Prov-GigaPath reads 1536-d tiles of 256 px, TITAN 768-d CONCH v1.5 tiles of 512 px (both at 20x).
BACKBONE_TILES: dict[str, tuple[int, int]] = {"gigapath": (1536, 256), "titan": (768, 512)}


def attach_simulated_bags(cohort_dir: str | Path, *, backbone: str | None = None, feature_dim: int | None = None, patches: tuple[int, int] = (64, 256),
                          seed: int = 0, patch_size_level0: int | None = None, overwrite: bool = False) -> int:
    """Write a noise bag for every listed slide whose file is missing; returns the number written.

    Args:
        cohort_dir: an imported cohort directory (``slides.csv`` with ``patient_id, path``).
        backbone: the slide encoder the bags are for (``gigapath`` | ``titan``); sets the defaults
            of ``feature_dim`` and ``patch_size_level0`` from :data:`BACKBONE_TILES` (TITAN's grid is
            ``coords // 512``, so 256-spaced coordinates would collide).
        feature_dim: patch-feature width (default: the backbone's, else 1536).
        patches: (min, max) patches per slide, uniform integers (seeded per slide).
        seed: base seed; slide ``i`` uses ``seed + i``.
        patch_size_level0: coordinate pitch in level-0 px (default: the backbone's, else 256).
        overwrite: rewrite existing files (never a real feature file: refused if its encoder differs).
    """
    import pandas as pd

    from modaltune.data.bags import write_bag_h5
    from modaltune.errors import ConfigError

    if backbone is not None and backbone not in BACKBONE_TILES:
        raise ConfigError(f"unknown backbone {backbone!r} for simulated bags", where="attach_simulated_bags(backbone=...)", fix=f"use one of {sorted(BACKBONE_TILES)} or None")
    dim0, pitch0 = BACKBONE_TILES.get(backbone or "gigapath")
    feature_dim = int(feature_dim or dim0)
    patch_size_level0 = int(patch_size_level0 or pitch0)
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


def small_cohort(cohort_dir: str | Path, out_dir: str | Path, *, split: str = "modaltune_paper", n: dict[str, int] | None = None,
                 seed: int = 0, overwrite: bool = False) -> Path:
    """A few-patient copy of an imported cohort for smoke runs of the paper configs.

    Keeps, per site and per partition of fold 0 of ``split``, ``n[partition]`` seeded random
    patients (default ``{"train": 24, "val": 6, "test": 12}``), drawn round-robin over the strata
    (survival event x every classification label) so that even a dozen patients hold events and
    every class where the partition has them; every table is restricted to the kept patients and
    ``splits/<split>.csv`` rewritten. Slide bags are *not* copied (attach simulated ones with
    :func:`attach_simulated_bags`). Returns ``out_dir``.
    """
    import shutil

    import numpy as np
    import pandas as pd

    from modaltune.data.cohort import Cohort

    n = {"train": 24, "val": 6, "test": 12, **dict(n or {})}
    src = Cohort.load(cohort_dir)
    sp_path = Path(cohort_dir) / "splits" / f"{split}.csv"
    if not sp_path.exists():
        raise InputError(f"split '{split}' not found", where=sp_path, fix="import the cohort with its paper split, or pass split=<name>")
    sp = pd.read_csv(sp_path)
    sp = sp[sp["fold"] == sp["fold"].min()]
    site = src.patients["site"].astype(str)
    strata = pd.Series("", index=src.patients.index)
    for t in src.tasks:
        cols = [t.event_column] if t.kind == "survival" else [t.label_column] if t.kind == "classification" else []
        for col in cols:
            if col and col in src.patients:
                strata = strata + "|" + src.patients[col].astype(str)
    rng = np.random.default_rng(seed)
    keep_rows = []
    for (part, _site), grp in sp.assign(site=sp["patient_id"].map(site)).groupby(["partition", "site"], sort=True):
        k = min(len(grp), int(n.get(part, 0)))
        pools = [list(rng.permutation(g.index.to_numpy())) for _, g in grp.groupby(grp["patient_id"].map(strata), sort=True)]
        rng.shuffle(pools)
        picked: list = []
        while len(picked) < k:
            for pool in pools:
                if pool and len(picked) < k:
                    picked.append(pool.pop())
        keep_rows.append(grp.loc[sorted(picked)])
    kept = pd.concat(keep_rows)[["fold", "partition", "patient_id"]]
    out = Path(out_dir)
    if out.exists():
        if not overwrite:
            raise InputError("output directory exists", where=out, fix="pass overwrite=True or choose another directory")
        shutil.rmtree(out)
    sub = src.subset(list(dict.fromkeys(kept["patient_id"].astype(str))), name=f"{src.name}_small")
    sub.save(out)
    (out / "splits").mkdir(parents=True, exist_ok=True)
    kept.to_csv(out / "splits" / f"{split}.csv", index=False)
    return out
