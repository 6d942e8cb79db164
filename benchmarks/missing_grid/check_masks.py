"""Check a finished missing-modality grid run (issue 15): masks identical across methods and seeds,
and no patient dropped from any unit's predictions.

1. The masks are recomputed from the library (:func:`modaltune.evaluation.missing.setting_mask`,
   seeded by setting, fold and split seed only) and their counts compared with the run's
   ``masks.csv`` (written once per setting x fold, before any method ran); a SHA-256 of each
   recomputed mask is reported.
2. Every finished unit's prediction file holds exactly the fold's evaluation patients (the same set
   for every method and seed of a setting x fold), each once; a problem line names the unit
   (method, setting, fold, seed) and the patients predicted twice, not predicted or not in the fold.

Exit status 1 when any problem is found (listed in ``--out``), 0 otherwise.

Usage::

    python benchmarks/missing_grid/check_masks.py --run RUN --cohort COHORT [--split kfold5.csv] --out check.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.evaluation.missing import mask_cohort, mask_counts, parse_settings, setting_mask


def _few(ids: list, k: int = 5) -> str:
    """The first ``k`` patient ids, and how many more (keeps a problem line short)."""
    return ", ".join(map(str, ids[:k])) + (f" (+{len(ids) - k} more)" if len(ids) > k else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--split", default="kfold5.csv")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    run = Path(args.run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cohort = Cohort.load(args.cohort)
    folds = {f.index: f for f in SplitSet.load(Path(args.cohort) / "splits" / args.split).folds}
    res = pd.read_csv(run / "results.csv").drop_duplicates(["setting", "fold", "seed", "method"], keep="last")
    done = res[res["status"] == "done"]
    logged = pd.read_csv(run / "masks.csv")
    problems: list[str] = []
    sha: dict[str, str] = {}
    for s in parse_settings(cfg["settings"]):
        for fi in sorted(done[done["setting"] == s.name]["fold"].unique()):
            mask = setting_mask(s, folds[int(fi)], int(cfg.get("split_seed", 0)))
            sha[f"{s.name}/f{fi}"] = hashlib.sha256(pd.util.hash_pandas_object(mask.sort_index(), index=True).values.tobytes()).hexdigest()[:16]
            counts = mask_counts(cohort, mask_cohort(cohort, mask), mask)
            for part, c in counts.items():
                row = logged[(logged["setting"] == s.name) & (logged["fold"] == fi) & (logged["partition"] == part)]
                if len(row) != 1 or any(int(row.iloc[0][k]) != int(v) for k, v in c.items()):
                    problems.append(f"{s.name} fold {fi} {part}: recomputed mask counts {c} differ from masks.csv")
    n_units = 0
    for r in done.itertuples():
        cands = [p for p in (run / "preds").glob(f"{r.setting}__f{r.fold}__s{r.seed}__*.parquet")
                 if pd.read_parquet(p, columns=["method"])["method"].iloc[0] == r.method]
        if len(cands) != 1:
            problems.append(f"{r.method} {r.setting} fold {r.fold} seed {r.seed}: no prediction file")
            continue
        ids = pd.read_parquet(cands[0], columns=["patient_id"])["patient_id"]
        fold = folds[int(r.fold)]
        want = set(fold.test) or set(fold.val)
        twice, missing, extra = sorted(set(ids[ids.duplicated()])), sorted(want - set(ids)), sorted(set(ids) - want)
        if twice or missing or extra:
            # name the patients, so a reader can find them in the unit's prediction file
            problems.append(f"{r.method} {r.setting} fold {r.fold} seed {r.seed}: {ids.nunique()} patients predicted, {len(want)} in the fold"
                            + "".join(f"; {what}: {_few(got)}" for what, got in (("predicted more than once", twice), ("not predicted", missing),
                                                                                  ("not in the fold", extra)) if got))
        n_units += 1
    out = {"units_checked": n_units, "setting_folds": len(sha), "mask_sha256_16": sha, "problems": problems}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("units_checked", "setting_folds")} | {"problems": len(problems)}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
