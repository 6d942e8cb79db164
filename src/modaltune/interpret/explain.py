"""``explain_patients``: attention heatmaps and input attributions of a fitted model, written to a folder.

For each patient (folder ``OUT/<patient>/``):

- ``heatmap_<source>_<slide>.png`` for each attention mechanism of the model (ABMIL, TransMIL,
  ModalTune's task token) and each slide of the patient: drawn over the slide thumbnail when the
  slide file is found (``slides_dir``; [wsi] extra), else over the patch grid from the h5 coords;
  ``attention_<source>_<slide>.csv`` (x, y, weight, rank per patch) and
  ``topk_<source>_<slide>.png`` (the top-k patches read from the slide, when it is available);
- ``attributions_<task>.csv`` (integrated gradients per omics gene / clinical field, captum),
  ``attributions_<task>.png`` (bar chart of the largest |attributions|) and, when the cohort
  declares pathways, ``pathways_<task>.csv`` / ``pathways_<task>.png``; for ModalTune with pathway
  tokens and a survival task, ``pathway_tokens_<task>.csv`` / ``.png`` (IG over the tokens).

``OUT/explain.json`` lists every file written and, per patient, what was skipped and why.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modaltune.errors import InputError

__all__ = ["explain_patients", "fold_patients"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "_"


def fold_patients(cohort: Any, fold: int, *, split: str | None = None, partition: str = "test") -> list[str]:
    """Patients of ``partition`` (train/val/test) of fold ``fold`` of a cohort split (default: its first split)."""
    from modaltune.data.splits import SplitSet
    from modaltune.training.sources import _split_path

    names = sorted(getattr(cohort, "splits", {}) or {})
    name = split or (names[0] if names else None)
    if name is None:
        raise InputError(f"cohort '{cohort.name}' has no split to take fold {fold} from", where="--fold",
                         fix="write one with `modaltune data split`, or pass --patients")
    folds = {f.index: f for f in SplitSet.load(_split_path(cohort, name)).folds}
    if fold not in folds:
        raise InputError(f"fold {fold} is not in split '{name}' (folds {sorted(folds)})", where="--fold", fix="pick an existing fold")
    return list(getattr(folds[fold], partition))


def _bar_chart(df: pd.DataFrame, label: str, value: str, title: str, path: Path, top: int = 20) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = df.reindex(df[value].abs().sort_values(ascending=False).index).head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(d) + 1.2))
    ax.barh(d[label].astype(str), d[value], color=np.where(d[value] >= 0, "#c0392b", "#2e6da4"))
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("integrated-gradients attribution")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _slide_parts(paths: list[Path], n: int, coords: np.ndarray) -> list[tuple[str, Path, np.ndarray, slice, int | None]]:
    """Split a patient's merged bag rows into its slides: ``(slide stem, h5 path, level-0 coords, rows, patch size)``.

    Merged bags translate the coords of slides after the first (:func:`modaltune.data.bags.merge_bags`);
    each slide's own coords are read back from its file so the map lands on the right slide.
    """
    from modaltune.data.bags import open_bag, read_bag

    handles = [open_bag(p) for p in paths]
    counts = [h.n_patches for h in handles]
    if sum(counts) != n:  # capped bag: one map over the merged coordinates
        return [(paths[0].stem if len(paths) == 1 else "merged", paths[0], coords, slice(0, n), handles[0].patch_size_level0)]
    out, start = [], 0
    for p, h, c in zip(paths, handles, counts):
        own = coords[start : start + c] if start == 0 else read_bag(p).coords
        out.append((p.stem, p, own if own is not None else coords[start : start + c], slice(start, start + c), h.patch_size_level0))
        start += c
    return out


def _pathway_token_files(net: Any, batch: dict, task: str, n_steps: int, pid: str, pdir: Path, out: Path) -> list[str]:
    """ModalTune: IG over its pathway tokens (:func:`~modaltune.interpret.pathway_attributions`), when it has them."""
    from modaltune.errors import ConfigError

    from .integrated_gradients import pathway_attributions

    try:
        df = pathway_attributions(net, batch, task, n_steps=n_steps)
    except ConfigError:  # no pathway tokens in this model
        return []
    if df.empty:
        return []
    cp = pdir / f"pathway_tokens_{_safe(task)}.csv"
    df.to_csv(cp, index=False)
    bp = _bar_chart(df, "pathway", "attribution", f"{pid}, {task}: IG over ModalTune pathway tokens", pdir / f"pathway_tokens_{_safe(task)}.png")
    return [str(cp.relative_to(out)), str(bp.relative_to(out))]


def explain_patients(model: Any, cohort: Any, patients: Sequence[str], out: str | Path, *, task: str | None = None,
                     slides_dir: str | Path | None = None, top_k: int = 8, n_steps: int = 64, max_patches: int | None = None,
                     attributions: bool = True) -> dict:
    """Write attention heatmaps and IG attributions of ``patients`` to ``out``; return the index (``explain.json``).

    Args:
        model: a ``FittedModel`` or the path of a saved model folder (``OUT/model`` of ``modaltune fit``).
        cohort: a ``Cohort`` or a cohort directory, with the model's modality names.
        patients: patient ids of the cohort.
        out: output folder.
        task: task to explain (default: the model's first task).
        slides_dir: folder of the whole-slide images (``<h5 stem>.svs`` etc.); heatmaps are drawn over
            their thumbnails and top-k tiles are cut from them. Without it, or for slides not found,
            heatmaps are drawn over the patch grid.
        top_k: number of highest-attention patches to list / cut.
        n_steps: integrated-gradients steps.
        max_patches: patch cap per patient (default: all patches).
        attributions: compute integrated gradients (needs captum, ``[interpret]`` extra).
    """
    from modaltune.data.cohort import Cohort
    from modaltune.training._prep import bind
    from modaltune.training.trainer import FittedModel

    from .attributions import attributable_blocks, input_attributions, pathway_totals
    from .batch import patient_batch
    from .heatmap import (
        find_slide,
        grid_cell_px,
        infer_patch_size,
        render_heatmap,
        slide_thumbnail,
        topk_tiles,
    )
    from .slide_attention import attention_sources, slide_attention

    fitted = model if isinstance(model, FittedModel) else FittedModel.load(model)
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    if fitted.kind != "torch":
        raise InputError(f"method '{fitted.method.name}' is tabular: no attention and no differentiable inputs to explain", where="MODEL",
                         fix="explain a torch method (abmil, transmil, modaltune, late_fusion, snn, ...)")
    task = task or fitted.tasks[0]
    if task not in fitted.tasks:
        raise InputError(f"unknown task '{task}'", where="--task", fix=f"use one of {fitted.tasks}")
    net = fitted.model
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pp = bind(fitted.preprocessor, cohort)
    spec = cohort.manifest.modality(fitted.info.slide_modality) if fitted.info.slide_modality else None
    index: dict[str, Any] = {"model": str(fitted.path) if fitted.path else fitted.method.name, "method": fitted.method.name, "task": task,
                             "attention_sources": attention_sources(net), "patients": {}}
    thumbs: dict[Path, tuple[np.ndarray, float]] = {}
    for pid in patients:
        pid = str(pid)
        pdir = out / _safe(pid)
        pdir.mkdir(parents=True, exist_ok=True)
        rec: dict[str, Any] = {"files": [], "skipped": []}
        batch = patient_batch(fitted, cohort, [pid], max_patches=max_patches)
        maps = slide_attention(net, batch, task)
        if index["attention_sources"] and not maps:
            rec["skipped"].append("no slide features for this patient: no heatmap")
        for m in maps:
            parts = _slide_parts(pp.slide_paths.get(pid, []), len(m.weights), m.coords)
            for stem, _h5, coords, rows, ps in parts:
                w = m.weights[rows]
                ps = int(ps or (spec.patch_size_level0 if spec and spec.patch_size_level0 else 0) or infer_patch_size(coords))
                slide = find_slide(stem, slides_dir)
                tag = f"{m.source}_{_safe(stem)}"
                if slide is not None:
                    if slide not in thumbs:
                        thumbs[slide] = slide_thumbnail(slide)
                    bg, ds = thumbs[slide]
                    img, _ = render_heatmap(w, coords, ps, background=bg, downsample=ds)
                else:
                    img, _ = render_heatmap(w, coords, ps, cell_px=grid_cell_px(coords, ps))
                    if slides_dir is not None:
                        rec["skipped"].append(f"slide file '{stem}.*' not found under {slides_dir}: heatmap over the patch grid")
                from PIL import Image

                hp = pdir / f"heatmap_{tag}.png"
                Image.fromarray(img).save(hp)
                rank = np.empty(len(w), dtype=np.int64)
                rank[np.argsort(-w, kind="stable")] = np.arange(1, len(w) + 1)
                cp = pdir / f"attention_{tag}.csv"
                pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "patch_size_level0": ps, "weight": w, "rank": rank}).to_csv(cp, index=False)
                rec["files"] += [str(hp.relative_to(out)), str(cp.relative_to(out))]
                if slide is not None and top_k > 0:
                    tp = topk_tiles(slide, coords, w, ps, top_k, pdir / f"topk_{tag}.png", title=f"{pid}: top {min(top_k, len(w))} patches ({m.source})")
                    rec["files"].append(str(tp.relative_to(out)))
        if attributions and attributable_blocks(net, batch):
            df = input_attributions(net, batch, task, n_steps=n_steps)
            if df.empty:
                rec["skipped"].append("no omics or clinical input present for this patient: no attributions")
            else:
                ap = pdir / f"attributions_{_safe(task)}.csv"
                df.to_csv(ap, index=False)
                lab = df.assign(label=df["block"] + ":" + df["feature"].astype(str))
                r0 = df.iloc[0]
                title = f"{pid}, {task} ({r0['target']}): F(x)={r0['output']:.3g}, F(0)={r0['baseline_output']:.3g}"
                bp = _bar_chart(lab, "label", "attribution", title, pdir / f"attributions_{_safe(task)}.png")
                rec["files"] += [str(ap.relative_to(out)), str(bp.relative_to(out))]
                pw = pathway_totals(df, fitted.info)
                if not pw.empty:
                    pp_ = pdir / f"pathways_{_safe(task)}.csv"
                    pw.to_csv(pp_, index=False)
                    pb = _bar_chart(pw, "pathway", "attribution", f"{pid}, {task}: gene attributions summed per pathway", pdir / f"pathways_{_safe(task)}.png")
                    rec["files"] += [str(pp_.relative_to(out)), str(pb.relative_to(out))]
        if attributions and hasattr(net, "tokenizer") and net.task_infos[task].spec.kind == "survival":
            rec["files"] += _pathway_token_files(net, batch, task, n_steps, pid, pdir, out)
        index["patients"][pid] = rec
    (out / "explain.json").write_text(json.dumps(index, indent=2))
    return index
