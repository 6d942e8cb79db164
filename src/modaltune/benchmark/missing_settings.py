"""Benchmark glue of the missing-modality protocol (``evaluation.missing``).

The runner calls these few functions (its hooks are one line each, so they survive the runner's
move): which settings a method's units run in (:func:`unit_settings`), what a setting adds to a
unit's config hash (:func:`identity`), the masked cohort of a unit (:func:`apply`), the method
labels of the main tables (:func:`relabel`) and the per-setting / degradation tables
(:func:`summary_section`). The mask logic itself is :mod:`modaltune.evaluation.missing`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modaltune.evaluation.missing import MissingSetting, mask_cohort, mask_counts, parse_settings, refusal, setting_mask

__all__ = ["settings", "unit_settings", "refusal_lines", "identity", "apply", "relabel", "summary_section", "LABEL_SEP"]

#: separator of method label and setting in the main tables (``late_fusion @ W20_O40``)
LABEL_SEP = " @ "


def settings(cfg: Any) -> list[MissingSetting]:
    """The parsed settings of a benchmark config (empty: the protocol is off)."""
    return parse_settings(getattr(cfg.evaluation, "missing", None))


def _by_name(cfg: Any, name: str) -> MissingSetting:
    return next(s for s in settings(cfg) if s.name == name)


def unit_settings(cfg: Any, method_cfg: Any) -> list[str]:
    """Setting names the method's units run in: ``[""]`` when the protocol is off, else every
    setting the method is not refused in (:func:`refusal_lines` reports the others)."""
    from modaltune.methods.registry import get_method

    ss = settings(cfg)
    if not ss:
        return [""]
    entry = get_method(method_cfg.name)
    return [s.name for s in ss if refusal(entry, s) is None]


def refusal_lines(cfg: Any) -> list[str]:
    """One line per (method, setting) that does not run, with the reason."""
    from modaltune.methods.registry import get_method

    out = []
    for m in cfg.methods:
        for s in settings(cfg):
            why = refusal(get_method(m.name), s)
            if why:
                out.append(f"REFUSED {m.display} in {s.name}: {why}")
    return out


def identity(cfg: Any, name: str, fold: int) -> dict[str, Any]:
    """What a setting adds to a unit's resolved config: its rates, the split seed the mask is drawn
    from, and for DisPro settings the sha256 of the fold's file."""
    s = _by_name(cfg, name)
    out = s.model_dump(mode="json", exclude_none=True) | {"split_seed": cfg.split.seed}
    if s.dispro:
        from modaltune.benchmark.run_folder import sha256_file
        from modaltune.evaluation.missing import _dispro_file

        try:
            out["dispro_file_sha"] = sha256_file(_dispro_file(Path(s.dispro), fold, s.name))[:16]
        except Exception:  # noqa: BLE001 - the unit itself reports the missing file
            out["dispro_file_sha"] = "missing"
    return out


def apply(cohort: Any, cfg: Any, name: str, fold: Any) -> tuple[Any, dict[str, Any]]:
    """(masked cohort, record for ``unit.json``) of one unit in setting ``name``."""
    s = _by_name(cfg, name)
    mask = setting_mask(s, fold, cfg.split.seed)
    masked = mask_cohort(cohort, mask)
    ids = {k: sorted(mask.index[mask[f"drop_{k}"].to_numpy(bool)]) for k in ("slide", "omics")}
    rec = {"setting": s.name, "slide_rate": s.slide, "omics_rate": s.omics, "dispro": s.dispro, "counts": mask_counts(cohort, masked, mask),
           # sha256 of the masked patient ids: equal for every method and seed of a setting and fold (checked by the tests)
           "mask_sha": hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]}
    return masked, rec


def relabel(df: pd.DataFrame) -> pd.DataFrame:
    """Method labels ``<method> @ <setting>`` where a row has a setting (main tables keep settings apart)."""
    if df.empty or "setting" not in df:
        return df
    s = df["setting"].fillna("").astype(str)
    return df.assign(method=np.where(s != "", df["method"].astype(str) + LABEL_SEP + s, df["method"].astype(str)))


def _cell(v: pd.Series, ddof: int) -> str:
    v = v.dropna()
    if v.empty:
        return "n/a"
    sd = float(v.std(ddof=ddof)) if len(v) > ddof else float("nan")
    return f"{v.mean():.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{v.mean():.3f}"


def _counts_frame(out_dir: Path, units: list[Any]) -> pd.DataFrame:
    """Per (setting, cohort, fold, partition): patients, dropped counts, patients with neither
    slide nor omics, from each unit's ``unit.json`` (one unit per setting x cohort x fold suffices:
    the mask does not depend on the method or seed)."""
    rows, seen = [], set()
    for u in units:
        key = (u.setting, u.cohort, u.fold)
        if not u.setting or key in seen:
            continue
        p = out_dir / "units" / u.uid / "unit.json"
        if not p.exists():
            continue
        rec = json.loads(p.read_text()).get("missing") or {}
        for part, c in (rec.get("counts") or {}).items():
            rows.append({"setting": u.setting, "cohort": u.cohort, "fold": u.fold, "partition": part, **c})
        seen.add(key)
    return pd.DataFrame(rows)


def summary_section(cfg: Any, out_dir: str | Path, units: list[Any], metrics: pd.DataFrame) -> tuple[str, dict[str, pd.DataFrame]]:
    """Markdown of the protocol (one table per setting, the degradation table, the mask counts and
    the refusals) and the CSV frames ``missing_settings``, ``missing_degradation``, ``missing_counts``.

    ``metrics``: the units' metric rows with ``method`` (the plain label) and ``setting`` columns.
    Values are fold x seed means ± std (ddof of ``evaluation.ddof``).
    """
    ss = settings(cfg)
    if not ss:
        return "", {}
    ddof = cfg.evaluation.ddof
    order = [s.name for s in ss]
    m = metrics[metrics["setting"].isin(order)] if len(metrics) and "setting" in metrics else pd.DataFrame(columns=["method", "cohort", "task", "metric", "setting", "value", "fold", "seed"])
    keys = ["setting", "method", "cohort", "task", "metric"]
    per = (m.groupby(keys, sort=False)["value"].agg(mean="mean", std=lambda v: v.std(ddof=ddof), n="count").reset_index()
           if len(m) else pd.DataFrame(columns=[*keys, "mean", "std", "n"]))
    lines = ["## Missing-modality settings", "",
             "PROTOCOLS.md C (DisPro): in each setting a seeded random subset of each fold's training and evaluated patients loses its "
             "slide (W %) / omics (O %); the subset depends only on (setting, fold, split seed), so every method and seed sees the same "
             f"patients masked. Patients are never removed. Cells: mean ± std over folds x seeds (ddof={ddof}).", ""]
    for s in ss:
        g = m[m["setting"] == s.name]
        src = f"DisPro files {s.dispro}" if s.dispro else f"slide {s.slide:.0%}, omics {s.omics:.0%} missing"
        lines += [f"### {s.name} ({src})", ""]
        if g.empty:
            lines += ["(no finished unit)", ""]
            continue
        lines += ["| method | cohort | task | metric | value | units |", "|---|---|---|---|---|---|"]
        for (meth, coh, task, met), v in g.groupby(["method", "cohort", "task", "metric"], sort=False):
            lines.append(f"| {meth} | {coh} | {task} | {met} | {_cell(v['value'], ddof)} | {v['value'].notna().sum()} |")
        lines.append("")
    deg = pd.DataFrame()
    if len(per):
        deg = per.pivot_table(index=["method", "cohort", "task", "metric"], columns="setting", values="mean", sort=False)
        deg = deg[[c for c in order if c in deg.columns]]
        base = deg.columns[0]
        deg[f"worst minus {base}"] = deg.min(axis=1) - deg[base]
        deg = deg.reset_index()
        lines += ["### Degradation (mean metric per setting)", "",
                  f"Last column: the lowest setting mean minus the {base} mean (for error metrics such as IBS or MSE, lower is better and the sign reads the other way).", "",
                  "| method | cohort | task | metric | " + " | ".join(map(str, deg.columns[4:])) + " |",
                  "|---|---|---|---|" + "---|" * (len(deg.columns) - 4)]
        for r in deg.itertuples(index=False):
            vals = " | ".join("n/a" if not np.isfinite(x) else f"{x:.3f}" for x in r[4:])
            lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {vals} |")
        lines.append("")
    counts = _counts_frame(Path(out_dir), units)
    if len(counts):
        tot = counts.groupby(["setting", "cohort", "partition"], sort=False)[["patients", "slide_dropped", "omics_dropped", "neither_slide_nor_omics"]].sum().reset_index()
        lines += ["### Masked patients (summed over folds)", "",
                  "Patients with neither slide nor omics after masking stay in training and in every table above (their predictions use what is left: clinical / text, or the models' missing-modality embeddings).", "",
                  "| setting | cohort | partition | patients | slide dropped | omics dropped | neither slide nor omics |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.setting} | {r.cohort} | {r.partition} | {r.patients} | {r.slide_dropped} | {r.omics_dropped} | {r.neither_slide_nor_omics} |" for r in tot.itertuples()]
        lines.append("")
    ref = refusal_lines(cfg)
    if ref:
        lines += ["### Refused", ""] + [f"- {x}" for x in ref] + [""]
    return "\n".join(lines), {"missing_settings": per, "missing_degradation": deg, "missing_counts": counts}
