"""Pieces of a benchmark's ``summary.md`` that state what was run: feature sources (simulated
bags flagged automatically), the protocol and endpoint lines, slide-backbone weight sources,
dropped survival time points, and paired comparisons between methods."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modaltune.errors import ModaltuneError

__all__ = [
    "slide_feature_source",
    "feature_sources",
    "protocol_text",
    "endpoint_text",
    "weights_lines",
    "evaluation_note_lines",
    "comparison_lines",
    "POOLABLE_METRICS",
]

#: metrics that may be computed on pooled out-of-fold predictions (no training-fold statistics)
POOLABLE_METRICS = ("c_index", "balanced_accuracy", "macro_f1", "macro_auc", "accuracy", "mse", "mae", "r2")
#: patch-feature encoder names that mark simulated bags (data/simulate.py, modaltune.modaltune.realsim)
SIMULATED_ENCODERS = ("simulated", "SIMULATED-noise")
_MAX_BAGS_CHECKED = 20


def slide_feature_source(cohort: Any, modality: Any) -> tuple[str, bool]:
    """(description, simulated?) of a slide modality's patch features.

    Reads the ``encoder`` attribute of up to 20 listed bag files (evenly spaced over ``slides.csv``,
    metadata only): bags written by ``data/simulate.py`` (``simulated``) or by
    ``modaltune.modaltune.realsim`` (``SIMULATED-noise``, label-free noise) are reported as
    SIMULATED whatever encoder the cohort manifest names.
    """
    from modaltune.data.bags import open_bag

    declared = modality.encoder or "encoder not stated"
    seen: dict[str, int] = {}
    slides = getattr(cohort, "slides", None)
    checked = 0
    if slides is not None and len(slides):
        paths = slides["path"].tolist()
        idx = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), _MAX_BAGS_CHECKED)).round().astype(int))
        for i in idx:
            p = cohort.resolve_path(paths[i])
            if not p.exists():
                continue
            try:
                enc = open_bag(p).encoder
            except (ModaltuneError, OSError):  # unreadable bags are the data layer's to report
                continue
            checked += 1
            seen[str(enc)] = seen.get(str(enc), 0) + 1
    sim = {e: n for e, n in seen.items() if e in SIMULATED_ENCODERS}
    if sim or (modality.encoder in SIMULATED_ENCODERS) or (getattr(cohort.manifest, "synthetic", False) and not seen):
        kinds = ", ".join(f"'{e}'" for e in (sim or {modality.encoder or "simulated": 1}))
        what = "i.i.d. noise, no label signal" if "SIMULATED-noise" in sim else "synthetic"
        frac = f"{sum(sim.values())} of {checked} checked bags" if checked else "manifest"
        note = f"; the manifest names {declared}" if modality.encoder not in SIMULATED_ENCODERS else ""
        return f"SIMULATED slide features ({modality.name}: {kinds} bags, {what}; {frac}{note})", True
    return f"{modality.name} ({declared})", False


def feature_sources(features: str | None, cohorts: list[Any], used: dict[str, list[str]]) -> str:
    """The ``Features:`` text: the config's ``features`` (or the manifests' encoders), with simulated
    slide bags always stated first, so a table on noise bags never reads as real features."""
    parts, simulated = [], []
    for c in cohorts:
        for m in c.modalities:
            if m.name not in used.get(c.name, []):
                continue
            if m.kind == "slide":
                text, sim = slide_feature_source(c, m)
                (simulated if sim else parts).append(text)
            else:
                parts.append(m.name)
    parts, simulated = list(dict.fromkeys(parts)), list(dict.fromkeys(simulated))
    base = features or ", ".join(parts)
    if simulated:
        return "; ".join(simulated) + (f"; config says: {features}" if features else (f"; {base}" if base else ""))
    return base


def _method_kind(name: str) -> str:
    from modaltune.methods.registry import get_method

    return get_method(name).kind


def protocol_text(cfg: Any) -> str:
    """Split, training length (torch methods only; tabular methods are fitted once) and binning."""
    strat = cfg.split.stratify
    if strat == "auto":
        strat = "the first task"
    protocol = cfg.evaluation.protocol or (
        f"split file '{cfg.split.file}'" if cfg.split.file else f"patient-level {cfg.split.kfold}-fold CV (seed {cfg.split.seed}, stratified by {strat or 'nothing'})"
    )
    kinds = {_method_kind(m.name) for m in cfg.methods}
    t = cfg.trainer
    if "torch" in kinds:
        train = f"{t.max_epochs} epoch{'s' if t.max_epochs != 1 else ''}, " + ("early stopping on " + t.early_stopping.monitor if t.early_stopping else "last epoch reported, no early stopping")
        protocol += f"; {train}" if kinds == {"torch"} else f"; deep methods: {train}; tabular methods: fitted once (no epochs)"
    else:
        protocol += "; tabular methods fitted once (no epochs)"
    protocol += f"; survival bins '{cfg.data.bin_mode}'"
    return protocol


def endpoint_text(cohorts: list[Any], units: list[Any]) -> str:
    """Endpoints of the tasks that units of this benchmark actually ran (not every cohort task)."""
    ran = {(u.cohort, t) for u in units for t in u.tasks}
    out = []
    for c in cohorts:
        for t in c.tasks:
            if (c.name, t.name) not in ran:
                continue
            if t.kind == "survival":
                out.append(f"{t.name}: {t.endpoint} ({t.time_unit})")
            elif t.kind == "classification":
                out.append(f"{t.name}: {len(t.classes)}-class ({', '.join(t.classes)})")
            else:
                out.append(f"{t.name}: regression")
    return "; ".join(dict.fromkeys(out))


def _unit_infos(out_dir: Path, units: list[Any]) -> list[dict]:
    infos = []
    for u in units:
        p = out_dir / "units" / u.uid / "unit.json"
        if (out_dir / "units" / u.uid / "DONE").exists() and p.exists():
            infos.append(json.loads(p.read_text()))
    return infos


def weights_lines(out_dir: Path, units: list[Any]) -> list[str]:
    """One line per method whose model records a slide backbone ``weights_source``."""
    by_method: dict[str, set[str]] = {}
    for info in _unit_infos(out_dir, units):
        ws = info.get("weights_source")
        if ws:
            by_method.setdefault(info["unit"]["method"], set()).add(str(ws))
    lines = []
    for m, ws in by_method.items():
        flag = " (untrained backbone: slide numbers measure nothing pretrained)" if "random_init" in ws else ""
        lines.append(f"slide backbone weights of {m}: {', '.join(sorted(ws))}{flag}")
    return lines


def evaluation_note_lines(out_dir: Path, units: list[Any]) -> list[str]:
    """Requested survival time points dropped per fold (and why), and tau clipping, from unit.json."""
    dropped: dict[tuple, dict] = {}
    taus: dict[tuple, str] = {}
    for info in _unit_infos(out_dir, units):
        u = info["unit"]
        for task, tn in (info.get("tasks") or {}).items():
            notes = (tn or {}).get("notes") or {}
            key = (u["cohort"], task, u["fold"])
            if notes.get("time_grid_dropped"):
                dropped[key] = {"dropped": notes["time_grid_dropped"], "used": notes.get("time_grid", [])}
            tau = notes.get("tau") or {}
            if tau.get("reason") and tau.get("requested") is not None:
                taus[key] = tau["reason"]
    lines = []
    for (cohort, task, fold), d in sorted(dropped.items()):
        pts = "; ".join(f"{x['time']:g} ({x['reason']})" for x in d["dropped"])
        used = ", ".join(f"{t:g}" for t in d["used"]) or "none (IBS / C-D AUC undefined)"
        lines.append(f"evaluation.times on {cohort} / {task} / fold {fold}: dropped {pts}; used {used}")
    for (cohort, task, fold), why in sorted(taus.items()):
        lines.append(f"evaluation.tau on {cohort} / {task} / fold {fold}: {why}")
    return lines


def _metric_names(metrics: list[str] | None, kind: str) -> list[str]:
    from modaltune.evaluation import METRICS

    names = [m for m in (metrics or []) if METRICS[m].kind == kind]
    names = names or {"survival": ["c_index"], "classification": ["balanced_accuracy", "macro_auc"], "regression": ["mse"]}[kind]
    return [n for n in names if n in POOLABLE_METRICS]


def comparison_lines(cfg: Any, predictions: pd.DataFrame, infos: dict[tuple[str, str], Any]) -> list[str]:
    """Paired bootstrap comparisons (``evaluation.compare``) on pooled out-of-fold predictions.

    For each pair (A, B), cohort, task, seed and poolable metric: ``metric(A) - metric(B)`` on the
    patients both methods predicted, the percentile CI of the difference when the same resampled
    patients are scored for both, and the two-sided bootstrap p-value
    (:func:`modaltune.evaluation.paired_bootstrap`). A and B are matched on the same task set when
    both ran it, otherwise on their (single) task sets containing the task.
    """
    from modaltune.evaluation import paired_bootstrap
    from modaltune.evaluation.metrics import PooledMetric

    pairs = cfg.comparison_pairs()
    if not pairs or predictions.empty:
        return []
    level = cfg.evaluation.ci
    lines = [
        f"## Paired comparisons ({level:.0%} CI, paired bootstrap over patients)",
        "",
        f"Pooled out-of-fold predictions of both methods on the same patients; {cfg.evaluation.bootstrap} resamples draw the same "
        "patients for both methods; difference = A - B; p = two-sided bootstrap p-value.",
        "",
        "| A | B | cohort | task | seed | metric | A | B | difference | CI | p |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a, b in pairs:
        pa, pb = predictions[predictions["method"] == a], predictions[predictions["method"] == b]
        for (cohort, task, seed), ga in pa.groupby(["cohort", "task", "seed"], sort=False):
            gb = pb[(pb["cohort"] == cohort) & (pb["task"] == task) & (pb["seed"] == seed)]
            info = infos.get((cohort, task))
            if gb.empty or info is None:
                continue
            sets_a, sets_b = list(dict.fromkeys(ga["tasks"])), list(dict.fromkeys(gb["tasks"]))
            common = [s for s in sets_a if s in sets_b]
            combos = [(s, s) for s in common] or ([(sets_a[0], sets_b[0])] if len(sets_a) == len(sets_b) == 1 else [])
            for sa, sb in combos:
                da = ga[ga["tasks"] == sa].dropna(axis=1, how="all")
                db = gb[gb["tasks"] == sb].dropna(axis=1, how="all")
                label = task if sa == sb == task else f"{task} ({sa} vs {sb})"
                for name in _metric_names(cfg.evaluation.metrics, info.spec.kind):
                    try:
                        fn = PooledMetric(info, name)
                        r = paired_bootstrap(da, db, fn, n=cfg.evaluation.bootstrap, seed=0, level=level)
                        va, vb = fn(da), fn(db)
                        ci = f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if np.isfinite(r.ci[0]) else "n/a"
                        p = f"{r.p_value:.3g}" if np.isfinite(r.p_value) else "n/a"
                        lines.append(f"| {a} | {b} | {cohort} | {label} | {seed} | {name} | {va:.3f} | {vb:.3f} | {r.delta:+.3f} | {ci} | {p} |")
                    except ModaltuneError as exc:
                        lines.append(f"| {a} | {b} | {cohort} | {label} | {seed} | {name} | n/a | n/a | n/a | {str(exc)[:100].replace('|', '/')} | n/a |")
    lines.append("")
    return lines
