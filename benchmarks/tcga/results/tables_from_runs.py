"""The tables of one TCGA config (run_tcga's ``tables.md`` format) from several ``--methods`` / ``--cohorts`` subset runs.

A config re-run in pieces (e.g. the other methods in one run, gene_mixer in another) has no run folder that holds
every method, and a subset run whose comparison reference (``evaluation.compare``) is not among its methods writes
no paired rows. Every number of the tables is a function of the pieces' raw files alone: fold values
(results.csv), and the pooled bootstrap CIs and paired bootstraps of the pooled out-of-fold predictions
(predictions.parquet; seed 0 per method / pair, independent of the other methods of the run). This script pools
those files, recomputes the CIs and paired rows with the runner's own functions and the config's ``evaluation``
settings, and writes the tables with run_tcga's formatter, so ``compare_results_md.py`` checks the whole table.

    python benchmarks/tcga/results/tables_from_runs.py --config subtype --cohorts /work/runs/h22e/tcga/cohorts \\
        benchmarks/tcga/results/subtype_m-logistic-snn-clinical_mlp-late_fusion benchmarks/tcga/results/subtype_m-gene_mixer \\
        --out benchmarks/tcga/results/tables_subtype_merged.md

A run given as ``DIR=name1,name2`` contributes only those methods (registry names). ``--cohorts``: the folder the
cohorts were imported into (``<run_tcga --out>/cohorts``; only the manifests' task definitions are read).
A (method, cohort, task, metric, fold, seed) value present in two pieces is an error.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # benchmarks/, for run_tcga's table formatting


def main(argv: list[str] | None = None) -> int:
    import run_tcga

    from modaltune.benchmark import summary_parts
    from modaltune.benchmark.runner import _pooled_ci_lines, _SpecInfo
    from modaltune.config import load_config
    from modaltune.errors import ConfigError, InputError
    from modaltune.training import sources
    from modaltune.training.experiment_config import BenchmarkConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders (results.csv, predictions.parquet, failed_units.csv, summary.md), DIR or DIR=method,...")
    ap.add_argument("--config", required=True, help="config name under benchmarks/tcga (methods, evaluation.compare, bootstrap settings)")
    ap.add_argument("--cohorts", required=True, help="folder of the imported cohorts (tcga_<name> manifests)")
    ap.add_argument("--paper-bins", action="store_true", help="the pieces are --paper-bins runs (table name gets _paperbins)")
    ap.add_argument("--shared", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    cfg_path = HERE.parent / f"{args.config}.yaml"
    paths = run_tcga.cohort_paths(cfg_path, Path(args.cohorts))
    missing = [str(p) for p in paths if not (p / "cohort.yaml").exists()]
    if missing:
        raise SystemExit(str(InputError(f"cohort not imported: {missing[0]}", where="--cohorts",
                                        fix="pass the <out>/cohorts folder of a run_tcga run that imported every cohort of the config")))
    where = "data.cohorts=[" + ", ".join(str(p.resolve()) for p in paths) + "]"
    cfg = load_config(cfg_path, BenchmarkConfig, overrides=[where, *run_tcga.shared_overrides(cfg_path, args.shared)])
    label = {m.name: m.display for m in cfg.methods}
    order = {m.display: i for i, m in enumerate(cfg.methods)}

    res, preds, failed = [], [], []
    for spec in args.runs:
        run, _, names = spec.partition("=")
        keep = None
        if names:
            unknown = [n for n in names.split(",") if n not in label]
            if unknown:
                raise SystemExit(str(ConfigError(f"method '{unknown[0]}' is not in config {args.config}", where=spec,
                                                 fix=f"name registry names of the config: {', '.join(label)}")))
            keep = {label[n] for n in names.split(",")}
        r = pd.read_csv(Path(run) / "results.csv")
        p = pd.read_parquet(Path(run) / "predictions.parquet")
        f = pd.read_csv(Path(run) / "failed_units.csv") if (Path(run) / "failed_units.csv").exists() else pd.DataFrame()
        if keep is not None:
            r, p = r[r["method"].isin(keep)], p[p["method"].isin(keep)]
            f = f[f["method"].isin(keep)] if len(f) else f
        res.append(r)
        preds.append(p)
        failed.append(f)
    results = pd.concat(res, ignore_index=True)
    key = ["method", "cohort", "task", "metric", "fold", "seed"]
    dup = results[results.duplicated(key, keep=False)]
    if len(dup):
        raise SystemExit(str(InputError(f"{len(dup)} values appear in two runs (first: {dup.iloc[0][key].to_dict()})", where=" ".join(args.runs),
                                        fix="restrict a run to the methods it alone holds with DIR=method,...")))
    # config order of the methods, as in a full run (stable: fold and cohort order kept)
    results = results.sort_values("method", key=lambda s: s.map(order), kind="stable")
    predictions = pd.concat(preds, ignore_index=True)
    predictions = predictions.sort_values("method", key=lambda s: s.map(order), kind="stable")
    fails = pd.concat([f for f in failed if len(f)], ignore_index=True) if any(len(f) for f in failed) else pd.DataFrame()

    infos = {(c.name, t.name): _SpecInfo(t) for c in map(sources.load_cohort, paths) for t in c.tasks}
    summary = [run_tcga.protocol_line(Path(args.runs[0].partition("=")[0])), ""]
    summary += _pooled_ci_lines(cfg, predictions, infos) + summary_parts.comparison_lines(cfg, predictions, infos)
    name = f"{args.config}_m-merged" + ("_paperbins" if args.paper_bins else "")
    cmd = "python benchmarks/tcga/results/tables_from_runs.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / name
        d.mkdir()
        results.to_csv(d / "results.csv", index=False)
        if len(fails):
            fails.to_csv(d / "failed_units.csv", index=False)
        (d / "summary.md").write_text("\n".join(summary) + "\n")
        text = run_tcga.tables(Path(tmp), [name], cmd)
    # folder names only: compare_results_md reads the run name after the last "/" of this line
    pieces = ", ".join(f"`{Path(r).name}" + (f"={m}`" if m else "`") for r, _, m in (s.partition("=") for s in args.runs))
    text = "\n".join(f"Run folder: `{name}` (merged from the run folders {pieces}; CIs and paired rows recomputed from their predictions.parquet)."
                     if line.startswith("Run folder:") else line for line in text.splitlines()) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
