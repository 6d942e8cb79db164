"""Real-data TCGA benchmark (issue 4 item 3): import the PORPOISE cohorts, run benchmarks/tcga/*.yaml, write tables.

    nice python benchmarks/run_tcga.py                                   # every config
    nice python benchmarks/run_tcga.py --configs survival_mcat5 subtype  # some configs
    nice python benchmarks/run_tcga.py --configs survival_porpoise14 --methods coxnet snn
    python benchmarks/run_tcga.py --configs survival_mcat5 --cohorts blca --folds 0 --set trainer.max_epochs=1 --out /tmp/smoke

Cohorts are imported from ../shared (or $MODALTUNE_SHARED) into ``<out>/cohorts/tcga_<name>`` (the
configs' own cohort paths point at the default ``runs/tcga/cohorts``, so ``modaltune benchmark CONFIG``
works after one run of this script). Each config runs with the ordinary resumable
benchmark runner into ``<out>/<config>``; rerunning resumes. ``--methods`` keeps the methods whose
registry name is listed (a subset run, stated in the tables); ``--cohorts`` / ``--folds`` restrict the
cohorts and fold indices and ``--set key=value`` applies config overrides, as ``modaltune benchmark --set``
does (any of these makes a run folder of its own, so a changed setting never resumes into old units).
At the end ``<out>/tables.md`` holds the mean ± std (ddof=0) tables over folds, with the published MCAT
numbers (shared/docs/PROTOCOLS.md) beside the survival table, the bootstrap 95% CIs of the pooled
out-of-fold predictions (read from each run's summary.md), and each run's protocol line;
``<out>/pathway_coverage_<cohort>.csv`` is the Gene Mixer coverage report (genes of each pathway present
in the cohort's RNA table).

SIMULATED slide bags (``--simulated-bags``; the ``coattn_*`` configs of the slide + omics methods need it):
no TCGA patch features exist here, so the cohorts are imported into a separate folder
``<out>/cohorts_simbags/tcga_<name>`` and every listed slide gets a label-free i.i.d. Gaussian noise bag
(:func:`modaltune.modaltune.realsim.attach_simulated_bags`; ``--sim-dim`` features, ``--sim-patches LO HI``
patches per slide, encoder ``SIMULATED-noise``). The cohort manifest names that encoder, the cohort folder
holds ``SIMULATED_SLIDE_BAGS.json`` (the settings), each run folder is suffixed ``_simbags`` and holds
``SIMULATED_SLIDE_BAGS.md``, and tables.md and every summary.md say SIMULATED: no slide-side signal can be
learned from these bags, so the numbers measure the omics side and the machinery.

    nice python benchmarks/run_tcga.py --configs coattn_mcat5 --simulated-bags --workers 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
CONFIGS = (
    "survival_mcat5", "survival_mcat5_classical", "survival_mcat5_followup", "subtype", "subtype_brca_balanced",
    "multitask", "multitask_reference", "survival_porpoise14", "coattn_mcat5", "coattn_porpoise14",
)
#: cohort folder of the imports with SIMULATED slide bags (never mixed with the omics-only imports)
SIM_COHORTS = "cohorts_simbags"
SIM_NOTE = "SIMULATED_SLIDE_BAGS"

#: published validation C-index, mean over 5 folds (MCAT repository result files; PROTOCOLS.md A)
PUBLISHED = {
    "SNN (omics only), MCAT paper": {"BLCA": 0.541, "BRCA": 0.466, "GBMLGG": 0.598, "LUAD": 0.539, "UCEC": 0.493},
    "AMIL (WSI only), MCAT paper": {"BLCA": 0.536, "BRCA": 0.564, "GBMLGG": 0.787, "LUAD": 0.559, "UCEC": 0.625},
    "AMIL + omics concat, MCAT paper": {"BLCA": 0.605, "BRCA": 0.551, "GBMLGG": 0.816, "LUAD": 0.563, "UCEC": 0.614},
    "MCAT (co-attention, WSI + omics), MCAT paper": {"BLCA": 0.624, "BRCA": 0.580, "GBMLGG": 0.817, "LUAD": 0.620, "UCEC": 0.622},
}


def cohort_paths(cfg_path: Path, cohort_root: Path) -> list[Path]:
    """Where the config's cohorts live under ``cohort_root`` (the config's own paths name them: ``.../tcga_<name>``)."""
    from modaltune.config import load_yaml

    return [cohort_root / Path(rel).name for rel in load_yaml(cfg_path)["data"]["cohorts"]]


def needs_simulated_bags(cfg_path: Path) -> bool:
    """True when the config's cohorts live in the simulated-bag folder (``.../cohorts_simbags/tcga_<name>``)."""
    from modaltune.config import load_yaml

    return any(Path(rel).parent.name == SIM_COHORTS for rel in load_yaml(cfg_path)["data"]["cohorts"])


def shared_overrides(cfg_path: Path, shared: str | None) -> list[str]:
    """``--set`` overrides that point the config's ``../shared`` paths (``data.pathways`` and the methods'
    ``signatures`` params) at the resolved shared folder, for the paths that do not exist as written
    (relative to the config for data paths, to the working directory for method params): a worktree or a
    copy of the repository need not sit next to ``shared``. Paths that exist are left alone."""
    from modaltune.config import load_yaml
    from modaltune.data.sources._common import resolve_shared_dir

    raw = load_yaml(cfg_path)

    def rebase(p: str, base: Path) -> str | None:
        parts = Path(p).parts
        if Path(p).is_absolute() or (base / p).exists() or "shared" not in parts:
            return None
        i = len(parts) - 1 - parts[::-1].index("shared")
        return str(resolve_shared_dir(shared).joinpath(*parts[i + 1:]))

    out = []
    pw = (raw.get("data") or {}).get("pathways") or {}
    moved = {k: rebase(str(v), cfg_path.parent) for k, v in pw.items()}
    if any(moved.values()):
        out.append("data.pathways={" + ", ".join(f"{k}: {moved[k] or (cfg_path.parent / str(v)).resolve()}" for k, v in pw.items()) + "}")
    for i, m in enumerate(raw.get("methods") or []):
        sig = (m.get("params") or {}).get("signatures")
        new = rebase(str(sig), Path.cwd()) if sig else None
        if new:
            out.append(f"methods.{i}.params.signatures={new}")
    return out


def attach_bags(paths: list[Path], *, dim: int, patches: tuple[int, int], seed: int) -> list[str]:
    """Write SIMULATED noise bags for every slide of each imported cohort in ``paths`` (missing files
    only; resumable), name the encoder in the manifest, record the settings; returns one line per cohort.

    Raises ConfigError when a cohort folder already holds simulated bags made with other settings."""
    import json

    import yaml

    from modaltune.errors import ConfigError
    from modaltune.modaltune.realsim import SIMULATED_ENCODER, attach_simulated_bags

    settings = {"encoder": SIMULATED_ENCODER, "feature_dim": int(dim), "patches_per_slide": [int(patches[0]), int(patches[1])], "seed": int(seed),
                "what": "i.i.d. Gaussian noise (float16), no relation to any label (modaltune.modaltune.realsim.attach_simulated_bags)"}
    lines = []
    for path in paths:
        note = path / f"{SIM_NOTE}.json"
        if note.exists():
            old = json.loads(note.read_text())
            if {k: old.get(k) for k in settings} != settings:
                raise ConfigError(f"{path.name} already holds simulated bags made with other settings ({old.get('feature_dim')}-d, {old.get('patches_per_slide')} patches, seed {old.get('seed')})",
                                  where=path, fix="use the same --sim-dim/--sim-patches/--sim-seed, or another --out (or delete that cohort folder)")
        t0 = time.time()
        n = attach_simulated_bags(path, feature_dim=dim, patches=patches, seed=seed)
        man_path = path / "cohort.yaml"
        man = yaml.safe_load(man_path.read_text())
        for m in man.get("modalities") or []:
            if m.get("kind") == "slide":
                m["encoder"], m["feature_dim"] = SIMULATED_ENCODER, int(dim)
                m["description"] = f"SIMULATED slide bags: {settings['what']}; {dim}-d, {patches[0]}-{patches[1]} patches per slide"
        man_path.write_text(yaml.safe_dump(man, sort_keys=False))
        note.write_text(json.dumps(settings, indent=1) + "\n")
        lines.append(f"{path.name}: {n} simulated bags written ({time.time() - t0:.1f} s)")
        print(lines[-1], flush=True)
    return lines


def simulated_note(settings: dict[str, Any]) -> str:
    """The statement written at the top of tables.md and into each run folder of a simulated-bag run."""
    lo, hi = settings["patches_per_slide"]
    return (f"**SIMULATED slide bags.** No TCGA patch features exist here: every slide bag is i.i.d. Gaussian noise "
            f"({settings['feature_dim']}-d, {lo}-{hi} patches per slide, seed {settings['seed']}, encoder '{settings['encoder']}') "
            "with no relation to any label, so no slide-side signal can be learned. The numbers measure the omics side "
            "and the machinery (training, masking, evaluation), never slide performance; labels, omics and clinical "
            "fields are the real PORPOISE tables.")


def import_cohorts(paths: list[Path], shared: str | None) -> None:
    """Import every ``tcga_<name>`` cohort directory of ``paths`` that does not exist yet."""
    from modaltune.data.sources import import_cohort

    for path in paths:
        if (path / "cohort.yaml").exists():
            continue
        name = path.name.removeprefix("tcga_")
        t0 = time.time()
        c = import_cohort("porpoise", name, shared_dir=shared, out_dir=path)
        print(f"imported {name}: {len(c)} patients -> {path} ({time.time() - t0:.1f} s)", flush=True)


def refused_pairs(cfg_path: Path, overrides: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The (method, cohort) pairs that ``load_config`` would refuse (a method needing a modality, an RNA
    block with pathway lists or signature genes that a cohort lacks; ``data_refusals``), so that a
    multi-cohort config runs the rest instead of refusing everything. Returns ``--set`` overrides that
    restrict each refused method to the cohorts it can run on (``methods.<i>.cohorts``) and one
    failed_units.csv row per refused pair (fold/seed ``*``: no unit was planned, the reason is the
    config-load message)."""
    from modaltune.config import PATH_CHECK_CONTEXT, apply_overrides, load_yaml
    from modaltune.training.experiment_config import DataConfig, MethodConfig, _cohort_view, data_refusals

    raw = apply_overrides(load_yaml(cfg_path), overrides)
    data = DataConfig.model_validate(raw["data"], context={PATH_CHECK_CONTEXT: True, "base_dir": cfg_path.parent})
    methods = [MethodConfig.model_validate(m) for m in raw.get("methods") or []]
    refused = data_refusals(methods, data)
    names = [v[0] for c in data.cohorts if (v := _cohort_view(c)) is not None]
    extra, rows = [], []
    for i in sorted({r[0] for r in refused}):
        m = methods[i]
        out_of = {c for j, c, _ in refused if j == i}
        keep = [c for c in names if c not in out_of and (m.cohorts is None or c in m.cohorts)]
        extra.append(f"methods.{i}.cohorts=[{', '.join(keep)}]")
    for i, cohort, why in refused:
        label = methods[i].display
        rows.append({"unit": f"{label}__{cohort}__refused_at_config_load", "method": label, "cohort": cohort, "task": "*", "fold": "*", "seed": "*",
                     "reason": f"refused at config load: {why}", "name": methods[i].name})
    return extra, rows


def record_refused(run: Path, rows: list[dict[str, Any]]) -> None:
    """Append the refused (method, cohort) rows to the run's failed_units.csv (rewritten by each run)."""
    from modaltune.benchmark.run_folder import atomic_write_csv

    if not rows:
        return
    path = run / "failed_units.csv"
    old = pd.read_csv(path, dtype=str) if path.exists() else pd.DataFrame()
    new = pd.DataFrame(rows, dtype=str).drop(columns=["name"], errors="ignore")  # the registry name is for --methods only
    if len(old):
        old = old[~old["unit"].isin(new["unit"])]
    atomic_write_csv(path, pd.concat([old, new], ignore_index=True))


def coverage_reports(cfg, out: Path) -> list[str]:
    """Write the Gene Mixer pathway coverage report of each cohort with RNA; return summary lines."""
    from modaltune.training import sources
    from modaltune.training.datamodule import fit_preprocessor

    if not cfg.data.pathways:
        return []
    lines = []
    for p in cfg.data.cohorts:
        c = sources.load_cohort(p)
        if "rna" not in c.omics:
            lines.append(f"{c.name}: no RNA table (gene_mixer cannot run)")
            continue
        pp = fit_preprocessor(c, c.patient_ids, modalities=["rna"], tasks=[c.tasks[0].name], pathways=dict(cfg.data.pathways))
        tok = pp.info.pathways["rna"]
        cov = tok.coverage
        dest = out / f"pathway_coverage_{c.name}.csv"
        if not dest.exists():
            cov.to_csv(dest)
        n_tok = len(getattr(tok, "names", None) or getattr(tok, "pathway_names", None) or [])
        lines.append(f"{c.name}: coverage report {dest.name} ({len(cov)} pathways listed{f', {n_tok} used as tokens' if n_tok else ''})")
    return lines


def _fold_table(results: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    r = results[(results["task"] == task) & (results["metric"] == metric)]
    if r.empty:
        return pd.DataFrame()
    per_fold = r.groupby(["method", "cohort", "fold"], sort=False)["value"].mean().reset_index()
    g = per_fold.groupby(["method", "cohort"], sort=False)["value"]
    stats = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.count()}).reset_index()
    return stats


def _cohort_label(name: str) -> str:
    return name.removeprefix("porpoise_").upper()


def markdown_table(results: pd.DataFrame, task: str, metric: str, *, published: bool = False, n_folds: int = 5) -> str:
    """Rows = methods, columns = cohorts (mean ± std over folds, ddof 0) and the mean over cohorts."""
    s = _fold_table(results, task, metric)
    if s.empty:
        return f"(no {task} / {metric} results)\n"
    cohorts = list(dict.fromkeys(s["cohort"]))
    labels = [_cohort_label(c) for c in cohorts]
    lines = ["| method | " + " | ".join(labels) + " | mean |", "|---|" + "---|" * (len(cohorts) + 1)]
    for m in dict.fromkeys(s["method"]):
        cells, means = [], []
        for c in cohorts:
            row = s[(s["method"] == m) & (s["cohort"] == c)]
            if row.empty:
                cells.append("failed/not run")
                continue
            mu, sd, n = float(row["mean"].iloc[0]), float(row["std"].iloc[0]), int(row["n"].iloc[0])
            cells.append(f"{mu:.3f} ± {sd:.3f}" + (f" ({n} folds)" if n != n_folds else ""))
            means.append(mu)
        mean = f"{np.mean(means):.3f}" if len(means) == len(cohorts) else (f"{np.mean(means):.3f} ({len(means)}/{len(cohorts)} cohorts)" if means else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean} |")
    if published:
        for name, vals in PUBLISHED.items():
            cells = [f"{vals[lab]:.3f}" if lab in vals else "" for lab in labels]
            if all(lab in vals for lab in labels):
                lines.append(f"| *{name}* | " + " | ".join(cells) + f" | *{np.mean([vals[lab] for lab in labels]):.3f}* |")
            elif any(lab in vals for lab in labels):
                lines.append(f"| *{name}* | " + " | ".join(cells) + " | |")
    return "\n".join(lines) + "\n"


def published_target_table(cohorts: list[str]) -> str:
    """The published rows of PROTOCOLS.md A for the given cohort labels, as their own table (simulated-bag runs:
    a target for real features, never a row of the comparison). Empty when no cohort has a published number."""
    if not any(lab in vals for vals in PUBLISHED.values() for lab in cohorts):
        return ""
    lines = ["| published (real ResNet50-ImageNet WSI features) | " + " | ".join(cohorts) + " |", "|---|" + "---|" * len(cohorts)]
    for name, vals in PUBLISHED.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[lab]:.3f}" if lab in vals else "" for lab in cohorts) + " |")
    return "\n".join(lines) + "\n"


def protocol_line(run_dir: Path) -> str:
    s = run_dir / "summary.md"
    if s.exists():
        for line in s.read_text().splitlines():
            if line.startswith("**Protocol:**"):
                return line
    return ""


def _summary_table(run_dir: Path, first: list[str]) -> pd.DataFrame:
    """The markdown table of a run's summary.md whose header starts with ``first``, as a frame of strings."""
    s = run_dir / "summary.md"
    if not s.exists():
        return pd.DataFrame()
    header, rows = None, []
    for line in s.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            if header is not None and rows:
                break
            continue
        if header is None and cells[: len(first)] == first:
            header, rows = cells, []
        elif header is not None and len(cells) == len(header) and not set(line) <= set("|- "):
            rows.append(cells)
    if header is None:
        return pd.DataFrame()
    # duplicate header names (the paired table has A, B as labels and as values): make them unique
    cols = [f"{c}_value" if c in header[:i] else c for i, c in enumerate(header)]
    return pd.DataFrame(rows, columns=cols)


def pooled_cis(run_dir: Path) -> pd.DataFrame:
    """The bootstrap CI table of a run's summary.md as a frame (method, cohort, task, seed, metric, estimate, CI)."""
    t = _summary_table(run_dir, ["method", "cohort", "task", "seed", "metric", "estimate"])
    return t if "CI" in t else pd.DataFrame()


def paired_comparisons(run_dir: Path) -> pd.DataFrame:
    """The paired-comparison table of a run's summary.md (A, B, cohort, task, seed, metric, A_value, B_value, difference, CI, p)."""
    return _summary_table(run_dir, ["A", "B", "cohort", "task"])


def _cohort_grid(df: pd.DataFrame, task: str, metric: str, keys: list[str], head: str, label, cell) -> str:
    """Markdown table of one task and metric: one row per ``keys`` group (first-appearance order,
    labelled ``label(key tuple)``), one column per cohort, cells ``cell(row)``; seed 0 when several seeds."""
    if df.empty:
        return ""
    r = df[(df["task"] == task) & (df["metric"] == metric)]
    if r.empty:
        return ""
    r = r[r["seed"] == r["seed"].iloc[0]]
    cohorts = list(dict.fromkeys(r["cohort"]))
    lines = [f"| {head} | " + " | ".join(_cohort_label(c) for c in cohorts) + " |", "|---|" + "---|" * len(cohorts)]
    for key, g in r.groupby(keys, sort=False):
        cells = [cell(g[g["cohort"] == c].iloc[0]) if (g["cohort"] == c).any() else "" for c in cohorts]
        lines.append(f"| {label(key)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_table(pairs: pd.DataFrame, task: str, metric: str) -> str:
    """Rows = method A (vs B), columns = cohorts: difference A - B [95% CI] (p), seed 0 when several seeds."""
    return _cohort_grid(pairs, task, metric, ["A", "B"], "A vs B", lambda k: f"{k[0]} vs {k[1]}",
                        lambda row: f"{row['difference']} {row['CI']} (p {row['p']})")


def ci_table(cis: pd.DataFrame, task: str, metric: str) -> str:
    """Rows = methods, columns = cohorts: pooled estimate [95% CI] (seed 0 when several seeds)."""
    return _cohort_grid(cis, task, metric, ["method"], "method", lambda k: k[0], lambda row: f"{row['estimate']} {row['CI']}")


def tables(out: Path, names: list[str], cmd: str, simulated: dict[str, Any] | None = None) -> str:
    """tables.md of the runs ``names`` under ``out``; ``simulated``: the simulated-bag settings (the text then
    starts with that statement and the published numbers are a separate target table, not comparison rows)."""
    parts = [f"Command: `{cmd}`", ""]
    if simulated:
        parts += [simulated_note(simulated), ""]
    for name in names:
        run = out / name
        if not (run / "results.csv").exists():
            continue
        res = pd.read_csv(run / "results.csv")
        failed = pd.read_csv(run / "failed_units.csv") if (run / "failed_units.csv").exists() else pd.DataFrame()
        parts += [f"### {name}", "", protocol_line(run), ""]
        cis, pairs = pooled_cis(run), paired_comparisons(run)
        for task, metric, pub in (("survival", "c_index", name.startswith("survival")), ("subtype", "balanced_accuracy", False), ("subtype", "macro_auc", False)):
            if ((res["task"] == task) & (res["metric"] == metric)).any():
                sim = " — SIMULATED slide bags (noise)" if simulated else ""
                parts += [f"**{task} · {metric}** (mean ± std over folds, ddof=0){sim}", "", markdown_table(res, task, metric, published=pub and not simulated)]
                target = published_target_table([_cohort_label(c) for c in dict.fromkeys(res["cohort"])]) if simulated and task == "survival" else ""
                if target:
                    parts += ["Published numbers (PROTOCOLS.md A), shown only as the target a user with real slide features should "
                              "reproduce with this config; they are NOT comparable with the rows above (those slides are noise):", "", target]
                ci = ci_table(cis, task, metric)
                if ci:
                    parts += [f"Bootstrap 95% CIs, {task} · {metric} (patients resampled from the pooled out-of-fold predictions; pooled estimates differ from fold means):", "", ci]
                pt = paired_table(pairs, task, metric)
                if pt:
                    parts += [f"Paired bootstrap, {task} · {metric}: difference A - B on the pooled out-of-fold predictions of the same patients [95% CI] (two-sided p):", "", pt]
        if len(failed):
            per = failed.groupby(["method", "cohort"], sort=False).agg(n=("fold", "count"), every=("fold", lambda f: (f.astype(str) == "*").any()),
                                                                       reason=("reason", "first")).reset_index()
            parts += ["Failed units: " + "; ".join(f"{r.method} / {r.cohort}: {'all folds' if r.every else f'{r.n} fold(s)'}, {str(r.reason)[:110]}"
                                                   for r in per.itertuples()), ""]
        parts += [f"Run folder: `{run}` (summary.md with bootstrap 95% CIs on pooled out-of-fold predictions, results.csv, predictions.parquet).", ""]
    return "\n".join(parts)


def run_suffix(args: argparse.Namespace) -> str:
    """Run-folder suffix for subset and override runs, so that they never resume into the full runs' units."""
    if args.tag:
        return "_" + args.tag
    parts = []
    if args.methods:
        parts.append("m-" + "-".join(args.methods))
    if args.cohorts:
        parts.append("c-" + "-".join(args.cohorts))
    if args.folds is not None:
        parts.append("f-" + "".join(map(str, args.folds)))
    for o in args.overrides:
        key, _, val = o.partition("=")
        parts.append(key.split(".")[-1] + "-" + "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in val))
    return ("_" + "_".join(parts)) if parts else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), help=f"config names under benchmarks/tcga ({', '.join(CONFIGS)})")
    ap.add_argument("--out", default=str(HERE.parent / "runs" / "tcga"), help="run root; cohorts are imported into <out>/cohorts (the configs' own paths point at runs/tcga/cohorts, for `modaltune benchmark`)")
    ap.add_argument("--shared", default=None, help="folder holding data/tcga (default $MODALTUNE_SHARED or ../shared)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--methods", nargs="*", default=None, help="keep only these registry names (subset run)")
    ap.add_argument("--cohorts", nargs="*", default=None, help="keep only these cohorts (e.g. blca), a subset run")
    ap.add_argument("--folds", nargs="*", type=int, default=None, help="keep only these fold indices (e.g. 0), a subset run")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override as in `modaltune benchmark --set` (repeatable); the run folder gets a suffix")
    ap.add_argument("--tag", default=None, help="suffix of the run folders and tables file (default: derived from --set)")
    ap.add_argument("--batch1", action="store_true", help="literal PROTOCOLS.md A batching: batch 1 x gradient accumulation 32 (run folder <config>_batch1)")
    ap.add_argument("--paper-bins", action="store_true", help="survival bins fitted on the whole cohort as the published code did (run folder <config>_paperbins)")
    ap.add_argument("--tables-only", action="store_true", help="only rewrite tables.md from finished runs")
    ap.add_argument("--simulated-bags", action="store_true",
                    help=f"import into <out>/{SIM_COHORTS} and attach SIMULATED noise slide bags (run folders <config>_simbags); needed by the coattn_* configs")
    ap.add_argument("--sim-dim", type=int, default=64, help="feature width of the simulated bags (default 64)")
    ap.add_argument("--sim-patches", type=int, nargs=2, default=(32, 128), metavar=("LO", "HI"), help="patches per simulated slide, uniform in [LO, HI] (default 32 128)")
    ap.add_argument("--sim-seed", type=int, default=0, help="base seed of the simulated bags (slide i uses seed + i)")
    args = ap.parse_args(argv)
    from modaltune.benchmark.runner import run_benchmark
    from modaltune.config import load_config
    from modaltune.errors import ConfigError
    from modaltune.training.experiment_config import BenchmarkConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/run_tcga.py " + " ".join(sys.argv[1:] if argv is None else argv)
    suffix = run_suffix(args) + ("_simbags" if args.simulated_bags else "")
    sim = None
    if args.simulated_bags:
        from modaltune.modaltune.realsim import SIMULATED_ENCODER

        lo, hi = args.sim_patches
        if not (1 <= lo <= hi) or args.sim_dim < 1:
            raise SystemExit(str(ConfigError(f"bad simulated-bag size: {args.sim_dim}-d, {lo}-{hi} patches", where="--sim-dim/--sim-patches",
                                             fix="give --sim-dim >= 1 and --sim-patches LO HI with 1 <= LO <= HI")))
        sim = {"encoder": SIMULATED_ENCODER, "feature_dim": args.sim_dim, "patches_per_slide": [lo, hi], "seed": args.sim_seed}
    cov_lines: list[str] = []
    for name in args.configs:
        path = HERE / "tcga" / f"{name}.yaml"
        if args.tables_only:
            continue
        if needs_simulated_bags(path) and not args.simulated_bags:
            raise SystemExit(str(ConfigError(f"config '{name}' runs slide + omics methods on SIMULATED slide bags", where=path,
                                             fix="add --simulated-bags (no real TCGA patch features exist here)")))
        paths = cohort_paths(path, out / (SIM_COHORTS if args.simulated_bags else "cohorts"))
        if args.cohorts:
            paths = [p for p in paths if p.name.removeprefix("tcga_") in set(args.cohorts)]
        import_cohorts(paths, args.shared)
        if sim:
            attach_bags(paths, dim=sim["feature_dim"], patches=tuple(sim["patches_per_slide"]), seed=sim["seed"])
        # the imported cohorts replace the config's own paths before validation (they may not exist)
        where = "data.cohorts=[" + ", ".join(str(p.resolve()) for p in paths) + "]"
        ov = [where, *shared_overrides(path, args.shared), *args.overrides]
        # a method that cannot run on some cohorts (survpath on a cohort without RNA) is left out of those
        # cohorts and recorded, instead of the config being refused as a whole
        restrict, refused = refused_pairs(path, ov)
        if args.methods:
            refused = [r for r in refused if r["name"] in set(args.methods)]
        for r in refused:
            print(f"{name}: {r['method']} / {r['cohort']} {r['reason']}", flush=True)
        cfg = load_config(path, BenchmarkConfig, overrides=[*ov, *restrict])
        if args.methods:
            kept = [m for m in cfg.methods if m.name in set(args.methods)]
            # the comparison reference may be left out of the subset: drop the comparisons first
            # (the config validates on assignment, and a compare naming no kept method is an error)
            cmp = cfg.evaluation.compare
            named = {cmp} if isinstance(cmp, str) else {x for pair in (cmp or []) for x in pair}
            if named and not named <= {m.label or m.name for m in kept}:
                print(f"{name}: the comparison reference {cmp!r} is not in this subset: no paired comparisons", flush=True)
                cfg.evaluation.compare = None
            cfg.methods = kept
            cfg.name += "_subset_" + "_".join(args.methods)
        if args.cohorts:
            cfg.name += "_" + "_".join(args.cohorts)
        if args.folds is not None:
            cfg.split.folds = list(args.folds)
            cfg.name += "_folds" + "".join(map(str, args.folds))
        run_name = name + suffix
        if args.batch1:
            cfg.trainer.batch_size, cfg.trainer.accumulate_grad_batches = 1, 32
            cfg.name += "_batch1"
            run_name = f"{run_name}_batch1"
        if args.paper_bins:
            cfg.data.bin_mode = "paper"
            cfg.name += "_paperbins"
            run_name = f"{run_name}_paperbins"
        if sim:
            cfg.name += "_SIMULATED_bags" if "SIMULATED" not in cfg.name else ""
            (out / run_name).mkdir(parents=True, exist_ok=True)
            (out / run_name / f"{SIM_NOTE}.md").write_text(simulated_note(sim) + "\n")
        if any(m.name == "gene_mixer" for m in cfg.methods):
            cov_lines += coverage_reports(cfg, out)
        t0 = time.time()
        res = run_benchmark(cfg, out / run_name, workers=args.workers, progress=False)
        record_refused(out / run_name, refused)
        print(f"{run_name}: {len(res.statuses)} units, {len(res.failed)} failed, {time.time() - t0:.0f} s -> {out / run_name}", flush=True)
    names = [n + suffix for n in args.configs]
    names = [f"{n}_batch1" if args.batch1 else n for n in names]
    names = [f"{n}_paperbins" if args.paper_bins else n for n in names]
    text = tables(out, names, cmd, simulated=sim)
    if cov_lines:
        text += "\nGene Mixer pathway coverage (shared/data/pathways/combine_comps.csv):\n\n" + "\n".join(f"- {line}" for line in cov_lines) + "\n"
    stem = "tables" + suffix + ("_batch1" if args.batch1 else "") + ("_paperbins" if args.paper_bins else "")
    (out / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
