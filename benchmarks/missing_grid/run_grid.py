"""Missing-modality degradation grid (issue 15): every method x setting x fold x seed on one cohort.

Why a driver of its own and not ``modaltune benchmark``: two of the methods are two-stage
(``mm_lego`` merge needs per-fold, per-setting block fits; ``dispro`` multipro needs the same
fold's unipro fit), and a benchmark config can only name one fit per unit. This script chains them
inside one unit; every mask comes from the library (:func:`modaltune.evaluation.missing.setting_mask`,
seeded by setting, fold and split seed only, so every method and seed sees the same patients
masked) and every fit / prediction goes through the engine (:func:`modaltune.training.trainer.fit`
/ ``predict``), as the benchmark runner does.

Usage (resumable: a finished (setting, fold, seed, method) is skipped)::

    python benchmarks/missing_grid/run_grid.py --config benchmarks/missing_grid/sim_grid.yaml \
        --cohort /work/runs/h20c/sim_demo --out /work/runs/h20c/sim_grid [--seeds 0 1 2] [--folds 0 1]

Writes under ``--out``: ``preds/<setting>__f<fold>__s<seed>__<method>.parquet`` (eval-partition
predictions with targets), ``results.csv`` (one row per unit: C-index, fit seconds, peak RSS,
status), ``masks.csv`` (the mask counts per setting x fold) and ``config.yaml`` (the exact config).
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
import yaml

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.evaluation.metrics import harrell_c
from modaltune.evaluation.missing import mask_cohort, mask_counts, parse_settings, setting_mask
from modaltune.training.trainer import fit, predict

RESULT_COLUMNS = ["setting", "fold", "seed", "method", "status", "c_index", "n_eval", "n_events", "fit_s", "peak_rss_mib", "reason"]


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB; Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spec_data(spec: dict, cohort_dir: str) -> dict | None:
    """The spec's ``data:`` options for the engine's preprocessor (e.g. ``pathways: {rna: ...}`` for
    survpath), with ``{cohort}`` in a pathway path replaced by the cohort directory, so a spec can name
    the cohort's own gene lists (the simulator writes ``pathways.csv``); ``None`` when the spec has none."""
    data = spec.get("data")
    if not data:
        return None
    data = dict(data)
    if data.get("pathways"):
        data["pathways"] = {k: str(v).replace("{cohort}", str(cohort_dir)) for k, v in data["pathways"].items()}
    return data


def fit_method(spec: dict, cohort, fold, trainer: dict, task: str, work: Path, data: dict | None = None):
    """Fit one method spec on ``fold.train`` of ``cohort`` (already masked); two-stage specs
    (``chain: lego_merge | lego_fuse | dispro``) fit their first stage(s) into ``work`` first.
    ``data``: preprocessor options (:func:`spec_data`), the same for every stage."""
    chain = spec.get("chain")
    mods = spec.get("modalities")
    params = dict(spec.get("params") or {})
    common = dict(tasks=[task], trainer=trainer, progress=False, data=data)
    if chain in ("lego_merge", "lego_fuse"):
        folders = []
        for b in spec["blocks"]:
            out = work / f"block_{b['modality']}"
            fit(cohort, fold, "mm_lego", params={**params, "mode": "block", **b}, out_dir=out, **common)
            folders.append(str(out / "model"))
        mode = "merge" if chain == "lego_merge" else "fuse"
        return fit(cohort, fold, "mm_lego", params={**params, "mode": mode, "blocks": folders}, out_dir=work / mode, **common)
    if chain == "dispro":
        fit(cohort, fold, "dispro", params={**params, "stage": "unipro"}, modalities=mods, out_dir=work / "uni", **common)
        return fit(cohort, fold, "dispro", params={**params, "stage": "multipro", "unipro_from": str(work / "uni" / "model")},
                   modalities=mods, out_dir=work / "multi", **common)
    return fit(cohort, fold, spec["name"], params=params, modalities=mods, out_dir=work / "fit", **common)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="kfold5.csv", help="split file under <cohort>/splits/")
    ap.add_argument("--seeds", type=int, nargs="*")
    ap.add_argument("--folds", type=int, nargs="*")
    ap.add_argument("--settings", nargs="*")
    ap.add_argument("--methods", nargs="*", help="method labels (default: all in the config)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text())
    out = Path(args.out)
    (out / "preds").mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cohort = Cohort.load(args.cohort)
    folds = SplitSet.load(Path(args.cohort) / "splits" / args.split).folds
    split_seed = int(cfg.get("split_seed", 0))
    settings = parse_settings(args.settings or cfg["settings"])
    seeds = args.seeds if args.seeds is not None else cfg["seeds"]
    fold_ids = args.folds if args.folds is not None else [f.index for f in folds]
    methods = [m for m in cfg["methods"] if not args.methods or m["label"] in args.methods]
    task = cfg.get("task", "survival")
    res_path, mask_path = out / "results.csv", out / "masks.csv"
    done = set()
    if res_path.exists():
        prev = pd.read_csv(res_path)
        done = {(r.setting, int(r.fold), int(r.seed), r.method) for r in prev.itertuples() if r.status == "done"}
    mask_rows = pd.read_csv(mask_path).to_dict("records") if mask_path.exists() else []
    mask_seen = {(r["setting"], int(r["fold"])) for r in mask_rows}

    # folds outer, settings inner: a run stopped early still holds every setting of its first folds
    for fi in fold_ids:
        fold = next(f for f in folds if f.index == fi)
        for s in settings:
            mask = setting_mask(s, fold, split_seed)
            masked = mask_cohort(cohort, mask)
            eval_ids = list(fold.test) or list(fold.val)
            if (s.name, fi) not in mask_seen:
                for part, c in mask_counts(cohort, masked, mask).items():
                    mask_rows.append({"setting": s.name, "fold": fi, "partition": part, **c})
                pd.DataFrame(mask_rows).to_csv(mask_path, index=False)
                mask_seen.add((s.name, fi))
            for seed in seeds:
                trainer = {**cfg["trainer"], "seed": int(seed), "progress_bar": False, "logger": "none", "checkpoint": False}
                for spec in methods:
                    label = spec["label"]
                    if (s.name, fi, int(seed), label) in done:
                        continue
                    work = out / "work" / f"{s.name}__f{fi}__s{seed}__{_safe(label)}"
                    shutil.rmtree(work, ignore_errors=True)
                    row = {"setting": s.name, "fold": fi, "seed": seed, "method": label}
                    t0 = time.perf_counter()
                    try:
                        fitted = fit_method(spec, masked, fold, trainer, task, work, spec_data(spec, args.cohort))
                        fit_s = time.perf_counter() - t0
                        p = predict(fitted, masked, eval_ids)
                        p = p[p["task"] == task].dropna(axis=1, how="all")
                        p.assign(setting=s.name, fold=fi, seed=seed, method=label).to_parquet(
                            out / "preds" / f"{s.name}__f{fi}__s{seed}__{_safe(label)}.parquet")
                        lab = p.dropna(subset=["time", "event"])
                        c = harrell_c(lab["time"], lab["event"], lab["risk"])
                        row |= {"status": "done", "c_index": c, "n_eval": len(lab), "n_events": int(lab["event"].sum()),
                                "fit_s": round(fit_s, 2), "peak_rss_mib": round(_peak_rss_mib(), 1), "reason": ""}
                    except Exception as exc:  # noqa: BLE001 - a failed unit is recorded, the grid goes on
                        row |= {"status": "failed", "reason": f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300],
                                "fit_s": round(time.perf_counter() - t0, 2)}
                        (out / "failures.log").open("a").write(f"{row}\n{traceback.format_exc()}\n")
                    shutil.rmtree(work, ignore_errors=True)
                    pd.DataFrame([row], columns=RESULT_COLUMNS).to_csv(res_path, mode="a", header=not res_path.exists(), index=False)
                    print(json.dumps({k: row.get(k) for k in ("setting", "fold", "seed", "method", "status", "c_index", "fit_s")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
