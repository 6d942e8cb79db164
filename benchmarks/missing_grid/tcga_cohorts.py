"""Import the five MCAT TCGA cohorts (real omics + clinical) and give every listed slide a SIMULATED
noise bag (:func:`modaltune.modaltune.realsim.attach_simulated_bags`): no real TCGA slide features
exist here, so the slide modality carries no signal; it exists so that the missing-modality grid and
the mean-pooled slide block of embedding_fusion have something to drop / pool.

    python benchmarks/missing_grid/tcga_cohorts.py --out /work/runs/h20c/tcga [--cohorts blca brca]

Bags: ``--feature-dim`` (64) wide, ``--patches`` (32, 128) per slide, seed 0 (small, to keep the disk
and the bag reads cheap on a shared 2-core machine; the real UNI/CONCH bags would be 1024-1536 wide).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

COHORTS = ("blca", "brca", "gbmlgg", "luad", "ucec")


def main(argv: list[str] | None = None) -> int:
    from modaltune.data.sources import import_cohort
    from modaltune.modaltune.realsim import attach_simulated_bags

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", default=None, help="shared data folder (default: ../shared / $MODALTUNE_SHARED)")
    ap.add_argument("--cohorts", nargs="*", default=list(COHORTS))
    ap.add_argument("--feature-dim", type=int, default=64)
    ap.add_argument("--patches", type=int, nargs=2, default=(32, 128))
    args = ap.parse_args(argv)
    for name in args.cohorts:
        path = Path(args.out) / f"tcga_{name}"
        t0 = time.time()
        if not (path / "cohort.yaml").exists():
            import_cohort("porpoise", name, shared_dir=args.shared, out_dir=path)
        n = attach_simulated_bags(path, feature_dim=args.feature_dim, patches=tuple(args.patches), seed=0)
        print(f"{name}: {path} ({n} SIMULATED bags written, {time.time() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
