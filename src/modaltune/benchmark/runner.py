"""Resumable benchmark runner: methods x cohorts x task sets x folds x seeds.

Every combination is a *unit*. A unit trains one method on one fold with one seed, predicts the
fold's evaluation partition and computes its metrics (and, when asked, linear-probe metrics and
its embeddings). It writes ``units/<unit_id>/`` (``predictions.parquet``, ``metrics.csv``,
``unit.json``, ``DONE``, optionally ``embeddings.parquet``) by building the folder under a
temporary name and renaming it, so a unit folder either is complete or does not exist. Training
checkpoints live in ``work/<unit_id>/`` until the unit is done, so a killed unit resumes from its
last epoch. A rerun skips units whose ``DONE`` marker exists and whose stored config hash
(:mod:`modaltune.benchmark.unit_config`) matches the current config; a finished unit computed with
different settings stops the run with a one-line error (use a new run folder, or ``force=True`` /
``--force`` to recompute such units). Failed units (``FAILED.json`` with a one-line reason) are
retried.

Units whose trainer needs several processes (``strategy: ddp`` with ``devices > 1``) train in a
``modaltune fit`` subprocess (:mod:`modaltune.benchmark.launch`); Ray tasks request the trainer's
GPUs.

At the end the run folder gets::

    results.csv          long table: method, cohort, task, metric, fold, seed, value
    predictions.parquet  per-patient out-of-fold predictions of every unit
    summary.md           mean ± std tables (ddof stated), protocol/endpoint/folds/seeds/features,
                         bootstrap 95% CIs on pooled OOF predictions, collapse flags, failed units,
                         exclusions
    failed_units.csv     unit, reason
    exclusions.csv       patients missing modalities / labels, with reasons (never dropped silently)
    config.yaml, versions.json, git.json, data_hashes.json, run.log

Units run in this process (``workers=1``; epoch progress bars with ``epoch_progress=True``), in
spawned worker processes (``workers>1``) or as Ray tasks (``ray_address`` given; needs the
``[distributed]`` extra).
"""
from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from modaltune.benchmark import fold_params, launch, missing_settings, summary_parts
from modaltune.benchmark.interrupt import ignore_sigint, kill_tree, stop_signals
from modaltune.benchmark.probes import probe_rows
from modaltune.benchmark.run_folder import (
    atomic_write_csv,
    atomic_write_parquet,
    attach_log_file,
    cohort_hashes,
    detach_log_file,
    write_run_metadata,
)
from modaltune.benchmark.split_notes import split_summary_lines
from modaltune.benchmark.summary_parts import POOLABLE_METRICS
from modaltune.benchmark.unit_config import config_diff, config_hash, unit_config
from modaltune.config import load_config
from modaltune.errors import ConfigError, InputError, ModaltuneError, require
from modaltune.evaluation import METRICS, bootstrap_ci, compute_metrics, detect_collapse, get_metric, summary_table
from modaltune.evaluation.metrics import PooledMetric
from modaltune.fileio import (
    STOP_ERRNOS,
    DiskError,
    OutputLock,
    atomic_dir,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    disk_error_from,
    disk_errors,
)
from modaltune.methods.registry import get_method
from modaltune.quiet import is_verbose
from modaltune.training import sources
from modaltune.training.experiment_config import BenchmarkConfig

__all__ = ["Unit", "plan_units", "run_unit", "run_benchmark", "aggregate", "BenchmarkResult"]

log = logging.getLogger("modaltune.benchmark")


@dataclass(frozen=True)
class Unit:
    """One (method, cohort, task set, fold, seed) combination."""
    method_index: int
    method: str
    cohort: str
    cohort_path: str
    tasks: tuple[str, ...]
    fold: int
    seed: int
    setting: str = ""  # missing-modality setting (evaluation.missing), "" = none

    @property
    def uid(self) -> str:
        raw = f"{self.method}__{self.cohort}__{'+'.join(self.tasks)}__fold{self.fold}__seed{self.seed}" + (f"__{self.setting}" if self.setting else "")
        return re.sub(r"[^A-Za-z0-9_.+=-]", "-", raw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Unit:
        return cls(**{**d, "tasks": tuple(d["tasks"])})


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns: the run folder, the long results and unit statuses."""
    out_dir: Path
    results: pd.DataFrame
    statuses: dict[str, str]

    @property
    def failed(self) -> list[str]:
        return [u for u, s in self.statuses.items() if s == "failed"]


# ---------------------------------------------------------------------------------------- planning
def _validate(cfg: BenchmarkConfig) -> None:
    """Fail fast, with one-line errors, on names that no unit could ever use."""
    for m in cfg.methods:
        get_method(m.name)
        fold_params.check_placeholders(m)
    for name in cfg.evaluation.metrics or []:
        get_metric(name)


def plan_units(cfg: BenchmarkConfig, cohort_paths: list[Path]) -> list[Unit]:
    """Every unit of the benchmark, after checking tasks (names and columns) and splits."""
    units = []
    for path in cohort_paths:
        cohort = sources.load_cohort(path)
        task_sets = cfg.task_sets([t.name for t in cohort.tasks])
        for ts in task_sets:
            sources.check_tasks(cohort, ts)
        all_tasks = list(dict.fromkeys(t for ts in task_sets for t in ts))
        splits, _ = sources.make_splits(cohort, cfg.split, all_tasks)
        for mi, m in enumerate(cfg.methods):
            if m.cohorts is not None and cohort.name not in m.cohorts and Path(path).name not in m.cohorts:
                continue  # e.g. a (method, cohort) pair refused at config load (benchmarks/run_tcga.py)
            for ts in task_sets:
                if m.tasks is not None and not set(ts) <= set(m.tasks):
                    continue
                for setting in missing_settings.unit_settings(cfg, m):
                    for f in splits.folds:
                        for seed in cfg.seed_list():
                            units.append(Unit(mi, m.display, cohort.name, str(path), tuple(ts), f.index, seed, setting))
    named = {c for m in cfg.methods for c in (m.cohorts or [])}
    known = {n for p in cohort_paths for n in (sources.load_cohort(p).name, Path(p).name)}
    if named - known:
        raise InputError(f"methods[].cohorts names cohort(s) {sorted(named - known)} that the benchmark does not have",
                         where="methods.cohorts", fix=f"use some of {sorted(known)}")
    _check_cox_batch_size(cfg, units, cohort_paths)
    uids = [u.uid for u in units]
    dup = sorted({u for u in uids if uids.count(u) > 1})
    if dup:
        raise InputError(f"two units share the id {dup[0]} (two cohorts with the same name?)", where="data", fix="give cohorts distinct names")
    return units


def _check_cox_batch_size(cfg: BenchmarkConfig, units: list[Unit], cohort_paths: list[Path]) -> None:
    """Fail before any unit runs when a method asks for a Cox head with one patient per step
    (``fit`` refuses it too: the partial likelihood of one patient is always 0)."""
    if cfg.trainer.batch_size >= 2:
        return

    kinds = {}
    for path in cohort_paths:
        c = sources.load_cohort(path)
        kinds.update({(c.name, t.name): t.kind for t in c.tasks})
    for u in units:
        m = cfg.methods[u.method_index]
        if m.params.get("survival_head") == "cox" and any(kinds.get((u.cohort, t)) == "survival" for t in u.tasks):
            raise ConfigError(
                f"method '{m.display}' uses survival_head: cox but trainer.batch_size={cfg.trainer.batch_size}: the Cox partial likelihood of one patient per step is always 0, so nothing is learned",
                where="trainer.batch_size",
                fix="set trainer.batch_size >= 2 or use survival_head: discrete (the discrete-time NLL head)",
            )


# ---------------------------------------------------------------------------------------- one unit
class UnitFailure(ModaltuneError):
    """A unit could not produce a usable result (the reason is recorded, others continue)."""


def _metrics_for(metrics: list[str] | None, kind: str) -> list[str] | None:
    """The configured metric names (``evaluation.metrics``) of one task kind; None = the defaults."""
    if metrics is None:
        return None
    names = [m for m in metrics if METRICS[m].kind == kind]
    return names or None


def _check_eval_fold(task_info: Any, p: pd.DataFrame, fold: int) -> None:
    """A fold whose evaluation patients have one class, or no event, gives no meaningful metric."""
    name, kind = task_info.spec.name, task_info.spec.kind
    if kind == "classification":
        lab = p["label"][p["label"] >= 0].astype(int) if "label" in p else pd.Series([], dtype=int)
        present = sorted(set(lab.tolist()))
        if len(present) < 2:
            names = [task_info.class_names[i] for i in present]
            raise UnitFailure(f"task '{name}': the evaluation patients of fold {fold} have {len(lab)} labels and only class(es) {names}", fix="use a split stratified by this task")
    elif kind == "survival":
        ev = p["event"].dropna() if "event" in p else pd.Series([], dtype=float)
        if not (ev == 1).any():
            raise UnitFailure(f"task '{name}': the evaluation patients of fold {fold} have no events ({len(ev)} labelled, all censored)", fix="use a split stratified by event, or fewer folds")


def _evaluate_unit(cfg: BenchmarkConfig, fitted: Any, cohort: Any, fold: Any, preds: pd.DataFrame) -> tuple[list[dict], dict[str, Any]]:
    """Metric rows of one unit; raises :class:`UnitFailure` when a task has no defined metric."""
    from modaltune.training.trainer import targets_frame

    rows, notes = [], {}
    train_tgt = targets_frame(cohort, fold.train, fitted.tasks)
    predicted = set(preds["task"]) if "task" in preds else set()
    for t in fitted.info.tasks:
        name = t.spec.name
        if name not in predicted:
            # a tabular method that fits only some task kinds (e.g. coxnet in a survival + subtype
            # task set) predicts nothing for the others: no metric, recorded in unit.json
            notes[name] = {"skipped": "the method does not predict this task"}
            continue
        p = preds[preds["task"] == name].dropna(axis=1, how="all")
        if t.spec.kind == "classification" and "label" not in p:
            p = p.assign(label=-1)
        tr = train_tgt[train_tgt["task"] == name]
        _check_eval_fold(t, p, fold.index)
        mv = compute_metrics(t, p, tr if t.spec.kind == "survival" else None, _metrics_for(cfg.evaluation.metrics, t.spec.kind),
                             times=cfg.evaluation.times, tau=cfg.evaluation.tau)
        if len(mv) and all(not np.isfinite(v) for v in mv.values()):
            why = "; ".join(f"{k}: {r}" for k, r in mv.reasons.items()) or "no metric defined"
            raise UnitFailure(f"task '{name}': every metric is undefined on fold {fold.index} ({why})")
        for metric, value in mv.items():
            rows.append({"task": name, "metric": metric, "value": float(value), "reason": mv.reasons.get(metric, ""), "n_used": mv.n_used, "n_masked": mv.n_masked})
        notes[name] = {"n_used": mv.n_used, "n_masked": mv.n_masked, "reasons": dict(mv.reasons), "notes": dict(mv.notes)}
    return rows, notes


def _data_hashes(out_dir: Path, cohort: Any, split_file: str | None) -> dict[str, str]:
    """sha256 of the cohort's tables (``data_hashes.json`` of the run, else computed)."""
    p = out_dir / "data_hashes.json"
    if p.exists():
        stored = json.loads(p.read_text())
        if cohort.name in stored:
            return stored[cohort.name]
    return cohort_hashes(cohort, sources._split_path(cohort, split_file) if split_file else None)


def _note_parallel_units(n: int) -> None:
    """Worker initializer: ``$MODALTUNE_PARALLEL_UNITS`` = how many units share this machine's RAM
    (read by memory guards such as coxnet's, which divide the free RAM by it)."""
    os.environ["MODALTUNE_PARALLEL_UNITS"] = str(int(n))


def _init_worker(n: int, verbose: bool = False) -> None:
    """Pool-worker initializer: ignore SIGINT (see :func:`~modaltune.benchmark.interrupt.ignore_sigint`),
    note the number of parallel units (:func:`_note_parallel_units`) and hide Lightning's start-up
    noise as the main process does unless ``--verbose`` (:func:`modaltune.quiet.quiet_startup`)."""
    from modaltune.quiet import quiet_startup

    ignore_sigint()
    _note_parallel_units(n)
    quiet_startup(verbose)


#: files a model writes into its fit folder that the unit folder keeps
MODEL_REPORTS = ("target_leakage.json", "adapter_diagnostics.jsonl", "epoch_selection.json", "text_targets_separability.json")


def run_unit(unit: Unit | dict, cfg: BenchmarkConfig | dict, out_dir: str | Path, *, threads: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Run one unit (or skip it when its ``DONE`` marker exists). Never raises for unit-level
    problems: they are written to ``units/<uid>/FAILED.json`` and returned as ``status='failed'``.

    ``progress=True`` shows Lightning's epoch bars (serial runs only); otherwise Lightning's
    console output is silenced.

    Returns ``{"uid", "status": "done"|"skipped"|"failed", "reason", "seconds"}``.
    """
    import torch

    from modaltune.training.trainer import embed, fit, predict

    unit = unit if isinstance(unit, Unit) else Unit.from_dict(unit)
    cfg = cfg if isinstance(cfg, BenchmarkConfig) else BenchmarkConfig.model_validate(cfg)
    out_dir = Path(out_dir)
    udir = out_dir / "units" / unit.uid
    if (udir / "DONE").exists():
        return {"uid": unit.uid, "status": "skipped", "reason": "", "seconds": 0.0}
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    work = out_dir / "work" / unit.uid
    try:
        cohort = sources.load_cohort(unit.cohort_path)
        tasks = list(unit.tasks)
        all_tasks = list(dict.fromkeys(t for ts in cfg.task_sets([t.name for t in cohort.tasks]) for t in ts))
        splits, _ = sources.make_splits(cohort, cfg.split, all_tasks)
        fold = next(f for f in splits.folds if f.index == unit.fold)
        resolved = unit_config(unit, cfg, _data_hashes(out_dir, cohort, cfg.split.file), fold)
        missing_rec = None
        if unit.setting:  # missing-modality protocol: the slide / omics of the setting's patients are masked
            cohort, missing_rec = missing_settings.apply(cohort, cfg, unit.setting, fold)
        chash = config_hash(resolved)
        marker = work / "config_hash"
        if work.exists() and (not marker.exists() or marker.read_text().strip() != chash):
            # checkpoints of an earlier attempt with other settings must not be resumed
            log.info("unit %s: discarding checkpoints made with a different config", unit.uid)
            shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        marker.write_text(chash)
        method = fold_params.resolve_method(cfg.methods[unit.method_index], unit.fold)  # {fold} in params
        tcfg = cfg.trainer.model_copy(update={"seed": unit.seed, "progress_bar": bool(progress)})
        if launch.needs_launch(tcfg):
            if unit.setting:  # the subprocess reloads the cohort from disk: it would train unmasked
                raise UnitFailure(f"missing-modality setting {unit.setting} is not supported with multi-process training", fix="use devices: 1 for evaluation.missing runs")
            fitted = launch.fit_in_subprocess(unit, fold, tcfg.model_copy(update={"progress_bar": False}), work,
                                                 method=method, data=cfg.data,
                                                 eval_partition=cfg.split.eval_partition)
        else:
            fitted = fit(cohort, fold, method, tasks=tasks, trainer=tcfg, data=cfg.data, out_dir=work, resume=True,
                         eval_partition=cfg.split.eval_partition, progress=bool(progress))
        part, ids = sources.eval_ids(fold, cfg.split.eval_partition)
        preds = predict(fitted, cohort, ids)
        rows, notes = _evaluate_unit(cfg, fitted, cohort, fold, preds)
        emb, probe_notes = None, None
        if cfg.evaluation.probes:
            if fitted.kind == "torch":
                prow, probe_notes, emb = probe_rows(fitted, cohort, fold, ids)
                rows += prow
            else:
                probe_notes = "not probed: a tabular method has no learned embedding (its embedding is its input)"
        if cfg.evaluation.save_embeddings and emb is None:
            emb = embed(fitted, cohort, ids)
        meta = {"method": unit.method, "cohort": unit.cohort, "fold": unit.fold, "seed": unit.seed}
        preds = preds.assign(**meta, partition=part)
        metrics = pd.DataFrame(rows).assign(**meta)
        # the unit folder is built under a temporary name and renamed: complete (with DONE) or absent
        with atomic_dir(udir) as tmp:
            _write_unit_folder(tmp, cfg, preds, metrics, emb, meta, part, work, unit, t0, chash, resolved, fold, ids, fitted, tcfg, notes, probe_notes, missing_rec)
        shutil.rmtree(work, ignore_errors=True)
        return {"uid": unit.uid, "status": "done", "reason": "", "seconds": round(time.time() - t0, 3)}
    except Exception as exc:
        stop = disk_error_from(exc, out_dir, STOP_ERRNOS)
        if stop is not None:  # a full / read-only disk fails every later unit too: stop the run
            raise stop from exc
        if work.exists() and not any(p.name != "config_hash" for p in work.iterdir()):
            shutil.rmtree(work, ignore_errors=True)  # nothing to resume from
        reason = str(exc).replace("\n", " ") or type(exc).__name__
        if not isinstance(exc, ModaltuneError):
            reason = f"{type(exc).__name__}: {reason}"
        udir.mkdir(parents=True, exist_ok=True)
        rec = {"unit": unit.to_dict(), "uid": unit.uid, "status": "failed", "reason": reason, "traceback": traceback.format_exc(limit=8)}
        atomic_write_text(udir / "FAILED.json", json.dumps(rec, indent=2, default=str))
        log.warning("unit %s failed: %s", unit.uid, reason)
        return {"uid": unit.uid, "status": "failed", "reason": reason, "seconds": round(time.time() - t0, 3)}


def _write_unit_folder(tmp: Path, cfg, preds, metrics, emb, meta, part, work: Path, unit: Unit, t0: float, chash: str,
                       resolved, fold, ids, fitted, tcfg, notes, probe_notes, missing_rec=None) -> None:
    """Files of a finished unit into the (temporary) folder ``tmp``; ``DONE`` last."""
    atomic_write_parquet(tmp / "predictions.parquet", preds)
    atomic_write_csv(tmp / "metrics.csv", metrics)
    if cfg.evaluation.save_embeddings:
        atomic_write_parquet(tmp / "embeddings.parquet", emb.reset_index().assign(**meta, partition=part))
    if (work / "train" / "metrics.csv").exists():
        shutil.copy(work / "train" / "metrics.csv", tmp / "train_log.csv")
    if (work / "fit.log").exists():
        shutil.copy(work / "fit.log", tmp / "fit.log")
    if (work / "agm.csv").exists():  # trainer.modulation: agm, per-epoch competition strength
        shutil.copy(work / "agm.csv", tmp / "agm.csv")
    for name in MODEL_REPORTS:  # a model's own reports (ModalTune: leakage audit, gates, epoch selection)
        if (work / name).exists():
            shutil.copy(work / name, tmp / name)
    info = {
        "unit": unit.to_dict(),
        "uid": unit.uid,
        "status": "done",
        "seconds": round(time.time() - t0, 3),
        "config_hash": chash,
        "config": resolved,
        "partition": part,
        "n_train": len(fold.train),
        "n_eval": len(ids),
        "modalities": fitted.method.modalities,
        "weights_source": getattr(fitted.model, "weights_source", None) if fitted.kind == "torch" else None,
        "processes": launch.num_processes(tcfg),
        "tasks": notes,
    }
    if probe_notes is not None:
        info["probes"] = probe_notes
    if missing_rec is not None:
        info["missing"] = missing_rec
    atomic_write_text(tmp / "unit.json", json.dumps(info, indent=2, default=str))
    (tmp / "DONE").write_text("")


def _unit_entry(unit: dict, cfg: dict, out_dir: str, threads: int | None) -> dict[str, Any]:
    """Top-level function for worker processes / Ray tasks (picklable by reference)."""
    return run_unit(unit, cfg, out_dir, threads=threads)


# ---------------------------------------------------------------------------------------- execution
def _progress(total: int, enabled: bool, desc: str):

    return tqdm(total=total, desc=desc, unit="unit", disable=not enabled)


def _execute(units: list[Unit], cfg: BenchmarkConfig, out_dir: Path, workers: int, ray_address: str | None, progress: bool,
             epoch_progress: bool = False) -> dict[str, dict]:
    todo = [u for u in units if not (out_dir / "units" / u.uid / "DONE").exists()]
    results: dict[str, dict] = {u.uid: {"uid": u.uid, "status": "skipped", "reason": ""} for u in units if u not in todo}
    if not todo:
        return results
    cfg_d = cfg.model_dump(mode="json")
    bar = _progress(len(todo), progress, f"benchmark {cfg.name}")
    try:
        if ray_address:

            ray = require("ray", "distributed", "running benchmark units as Ray tasks")
            started_here = False
            if not ray.is_initialized():
                addr = None if ray_address == "local" else ray_address
                ray.init(address=addr, num_cpus=max(workers, 1) if addr is None else None, ignore_reinit_error=True, log_to_driver=False)
                started_here = True
            try:

                opts = launch.ray_task_options(cfg.trainer)
                log.info("ray tasks request %s each", opts)
                remote = ray.remote(_unit_entry).options(**opts)
                pending = {remote.remote(u.to_dict(), cfg_d, str(out_dir), opts["num_cpus"]): u for u in todo}
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        u = pending.pop(ref)
                        try:
                            results[u.uid] = ray.get(ref)
                        except Exception as exc:  # noqa: BLE001 - a crashed ray worker: record the unit as failed, go on
                            results[u.uid] = {"uid": u.uid, "status": "failed", "reason": f"ray task crashed: {type(exc).__name__}: {exc}".replace("\n", " ")}
                        bar.update(1)
            finally:
                if started_here:
                    ray.shutdown()
        elif workers > 1:


            threads = max(1, (os.cpu_count() or 1) // workers)
            # the workers ignore Ctrl-C (the main process stops them) and learn how many of them
            # share the RAM (memory guards divide the free RAM by it)
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                       initializer=_init_worker, initargs=(workers, is_verbose()))
            try:
                futs = {pool.submit(_unit_entry, u.to_dict(), cfg_d, str(out_dir), threads): u for u in todo}
                for fut in as_completed(futs):
                    u = futs[fut]
                    try:
                        results[u.uid] = fut.result()
                    except DiskError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a crashed worker (e.g. killed by the OOM killer): record, go on
                        results[u.uid] = {"uid": u.uid, "status": "failed", "reason": f"worker crashed: {type(exc).__name__}: {exc}".replace("\n", " ")}
                    bar.update(1)
            except BaseException:
                # SIGINT/SIGTERM (RunInterrupted) or a full disk: the running units cannot finish; kill
                # the workers and their children now instead of waiting for them (their unit folders
                # are only renamed into place when complete, so the run resumes cleanly)
                procs = dict(getattr(pool, "_processes", None) or {})
                pool.shutdown(wait=False, cancel_futures=True)
                kill_tree(procs)
                _clean_stale_temporaries(Path(out_dir))  # what the killed workers left half-written
                raise
            pool.shutdown(wait=True)
        else:
            for u in todo:
                bar.set_postfix_str(u.uid[:60])
                results[u.uid] = run_unit(u, cfg, out_dir, progress=epoch_progress)
                bar.update(1)
    finally:
        bar.close()
    return results


# ---------------------------------------------------------------------------------------- tables
def _read_units(out_dir: Path, units: list[Unit]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    mets, preds, failed = [], [], []
    for u in units:
        d = out_dir / "units" / u.uid
        if (d / "DONE").exists():
            m = pd.read_csv(d / "metrics.csv", keep_default_na=True)
            m["tasks"] = "+".join(u.tasks)
            m["setting"] = u.setting
            mets.append(m)
            p = pd.read_parquet(d / "predictions.parquet")
            p["tasks"] = "+".join(u.tasks)
            p["setting"] = u.setting
            preds.append(p)
        elif (d / "FAILED.json").exists():
            rec = json.loads((d / "FAILED.json").read_text())
            failed.append({"unit": u.uid, "method": u.method + (f" @ {u.setting}" if u.setting else ""), "cohort": u.cohort, "task": "+".join(u.tasks), "fold": u.fold, "seed": u.seed, "reason": rec.get("reason", "")})
        else:
            failed.append({"unit": u.uid, "method": u.method + (f" @ {u.setting}" if u.setting else ""), "cohort": u.cohort, "task": "+".join(u.tasks), "fold": u.fold, "seed": u.seed, "reason": "not run (interrupted?)"})
    metrics = pd.concat(mets, ignore_index=True) if mets else pd.DataFrame(columns=["method", "cohort", "task", "metric", "fold", "seed", "value", "tasks"])
    predictions = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    return metrics, predictions, pd.DataFrame(failed, columns=["unit", "method", "cohort", "task", "fold", "seed", "reason"])


def _pooled_ci_lines(cfg: BenchmarkConfig, predictions: pd.DataFrame, infos: dict[tuple[str, str], Any]) -> list[str]:
    """Bootstrap 95% CIs (patients resampled) of each metric on pooled out-of-fold predictions."""
    if cfg.evaluation.bootstrap <= 0 or predictions.empty:
        return []
    level = cfg.evaluation.ci
    lines = [
        f"## Bootstrap {level:.0%} CIs on pooled out-of-fold predictions",
        "",
        f"Each patient is predicted once per seed by the fold model that held it out; the predictions of all folds are pooled and "
        f"patients are resampled {cfg.evaluation.bootstrap} times (percentile intervals). Risk scales of different fold models are "
        "pooled as they are, so pooled values can differ from the fold means above.",
        "",
        "| method | cohort | task | seed | metric | estimate | CI |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, cohort, _tasks, task, seed), g in predictions.groupby(["method", "cohort", "tasks", "task", "seed"], sort=False):
        info = infos.get((cohort, task))
        if info is None:
            continue
        g = g.dropna(axis=1, how="all")
        if info.spec.kind == "classification" and "label" not in g:
            continue
        names = _metrics_for(cfg.evaluation.metrics, info.spec.kind) or ({"survival": ["c_index"], "classification": ["balanced_accuracy", "macro_auc"], "regression": ["mse"]}[info.spec.kind])

        names = [n for n in names if n in POOLABLE_METRICS]  # no train-fold metrics when pooling
        for name in names:
            try:
                fn = PooledMetric(info, name)
                r = bootstrap_ci(g, fn, n=cfg.evaluation.bootstrap, seed=0, level=level)
                ci = f"[{r.low:.3f}, {r.high:.3f}]" if np.isfinite(r.low) else "n/a"
                lines.append(f"| {method} | {cohort} | {task} | {seed} | {name} | {r.estimate:.3f} | {ci} |")
            except ModaltuneError as exc:
                lines.append(f"| {method} | {cohort} | {task} | {seed} | {name} | n/a | {str(exc)[:80]} |")
    lines.append("")
    return lines


def _collapse_notes(predictions: pd.DataFrame, infos: dict[tuple[str, str], Any]) -> list[str]:

    notes = []
    if predictions.empty:
        return notes
    for (method, cohort, _tasks, task, fold, seed), g in predictions.groupby(["method", "cohort", "tasks", "task", "fold", "seed"], sort=False):
        info = infos.get((cohort, task))
        if info is None:
            continue
        kind = info.spec.kind
        if kind == "survival":
            lab = g[g["time"].notna() & g["event"].notna()] if {"time", "event"} <= set(g.columns) else g.iloc[:0]
            if len(lab):
                rep = detect_collapse(lab["risk"].to_numpy(float), lab["event"].to_numpy(float), time=lab["time"].to_numpy(float))
            else:
                rep = detect_collapse(g["risk"].to_numpy(float))
        elif kind == "classification":
            cols = [f"prob_{c}" for c in (info.class_names or info.spec.classes)]
            rep = detect_collapse(g[cols].to_numpy(float))
        else:
            rep = detect_collapse(g["prediction"].to_numpy(float))
        if rep.collapsed:
            notes.append(f"COLLAPSE {method} / {cohort} / {task} / fold {fold} / seed {seed}: {'; '.join(rep.reasons)}")
    return notes


def _used_modalities(cfg: BenchmarkConfig, cohort: Any) -> list[str]:
    """Modality names of ``cohort`` read by at least one method of the benchmark.

    A method asking for a modality the cohort lacks (ModalTune's ``[slide, rna]`` on a cohort without
    RNA) reads nothing here: its units were refused with that one-line reason in failed_units.csv, so
    it is skipped rather than failing the aggregation of every other method's results.
    """
    mods: list[str] = []
    for m in cfg.methods:
        try:
            picked = sources.resolve_modalities(cohort, m.modalities or list(get_method(m.name).modalities) or None)
        except InputError:
            continue
        for x in picked or [mm.name for mm in cohort.modalities]:
            if x not in mods:
                mods.append(x)
    return mods


def _exclusions(cfg: BenchmarkConfig, cohort_paths: list[Path]) -> pd.DataFrame:
    from modaltune.data.dataset import summarize_exclusions

    frames = []
    for path in cohort_paths:
        cohort = sources.load_cohort(path)
        tasks = list(dict.fromkeys(t for ts in cfg.task_sets([t.name for t in cohort.tasks]) for t in ts))
        rep = summarize_exclusions(cohort, modalities=_used_modalities(cfg, cohort), tasks=tasks)
        if len(rep.patients):
            frames.append(rep.patients.assign(cohort=cohort.name))
    cols = ["cohort", "patient_id", "what", "name", "reason"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def aggregate(cfg: BenchmarkConfig, out_dir: str | Path, units: list[Unit], cohort_paths: list[Path], *, extra_notes: list[str] | None = None) -> pd.DataFrame:
    """Write results.csv, predictions.parquet, failed_units.csv, exclusions.csv and summary.md."""
    out_dir = Path(out_dir)
    metrics, predictions, failed = _read_units(out_dir, units)
    # missing-modality protocol: its own tables from the plain labels, then "<method> @ <setting>" labels everywhere else
    missing_text, missing_frames = missing_settings.summary_section(cfg, out_dir, units, metrics)
    metrics, predictions = missing_settings.relabel(metrics), missing_settings.relabel(predictions)
    for name, frame in missing_frames.items():
        atomic_write_csv(out_dir / f"{name}.csv", frame)
    results = metrics[["method", "cohort", "task", "metric", "fold", "seed", "value"]].copy() if len(metrics) else pd.DataFrame(columns=["method", "cohort", "task", "metric", "fold", "seed", "value"])
    atomic_write_csv(out_dir / "results.csv", results)
    if len(predictions):
        atomic_write_parquet(out_dir / "predictions.parquet", predictions)
    atomic_write_csv(out_dir / "failed_units.csv", failed)
    excl = _exclusions(cfg, cohort_paths)
    atomic_write_csv(out_dir / "exclusions.csv", excl)

    # task infos (class names, kinds) per cohort, from the manifests
    infos: dict[tuple[str, str], Any] = {}
    cohorts = [sources.load_cohort(path) for path in cohort_paths]
    for c in cohorts:
        for t in c.tasks:
            infos[(c.name, t.name)] = _SpecInfo(t)
    used = {c.name: _used_modalities(cfg, c) for c in cohorts}
    feature_text = summary_parts.feature_sources(cfg.features, cohorts, used)
    protocol = summary_parts.protocol_text(cfg)
    split_protocol, split_notes = split_summary_lines(cfg, cohorts)
    protocol += split_protocol
    if feature_text.startswith("SIMULATED"):
        protocol += "; SIMULATED slide features (see Features)"
    notes = _collapse_notes(predictions, infos)
    masked = []
    if len(metrics) and "n_masked" in metrics:
        for (m, c, t), g in metrics.groupby(["method", "cohort", "task"], sort=False):
            nm = int(g.drop_duplicates(["fold", "seed"])["n_masked"].sum())
            if nm:
                masked.append(f"{m} / {c} / {t}: {nm} evaluated patient-predictions had no label and were left out of the metrics (summed over folds and seeds)")
    method_lines = [f"method {m.display}: registry name '{m.name}', params {json.dumps(m.params, sort_keys=True)}, modalities {m.modalities or 'as declared by the method'}" for m in cfg.methods]
    if cfg.evaluation.probes:
        method_lines.append("probe_* metrics: linear probes on each unit's frozen embeddings, fitted on its training patients (logistic regression, liblinear, C=1; ridge Cox, penalizer 0.1) and scored on its evaluated patients")
    text = summary_table(
        results,
        protocol=protocol,
        endpoint=summary_parts.endpoint_text(cohorts, units),
        feature_sources=feature_text,
        ddof=cfg.evaluation.ddof,
        failures=failed if len(failed) else None,
        notes=notes + split_notes + masked + summary_parts.weights_lines(out_dir, units) + summary_parts.evaluation_note_lines(out_dir, units) + list(extra_notes or []) + method_lines,
        title=f"Benchmark {cfg.name}",
    )
    if missing_text:
        text += "\n" + missing_text
    text += "\n" + "\n".join(_pooled_ci_lines(cfg, predictions, infos))
    cmp_lines = summary_parts.comparison_lines(cfg, predictions, infos)
    if cmp_lines:
        text += "\n" + "\n".join(cmp_lines)
    if len(excl):
        counts = excl.groupby(["cohort", "what", "name", "reason"]).size().rename("patients").reset_index()
        text += "\n## Missing modalities and labels\n\nPatients are kept (missing modalities are masked, missing labels are left out of that task only). Full list: exclusions.csv.\n\n"
        text += "| cohort | what | name | reason | patients |\n|---|---|---|---|---|\n"
        text += "\n".join(f"| {r.cohort} | {r.what} | {r.name} | {r.reason} | {r.patients} |" for r in counts.itertuples()) + "\n"
    atomic_write_text(out_dir / "summary.md", text)
    return results


@dataclass
class _SpecInfo:
    """TaskInfo-like view of a manifest TaskSpec (enough for classification/regression metrics)."""
    spec: Any

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.classes)

    bin_edges = None


# ---------------------------------------------------------------------------------------- entry
def _unit_folds(cfg: BenchmarkConfig, cohort_paths: list[Path]) -> dict[tuple[str, int], Any]:
    """(cohort name, fold index) -> Fold, made exactly as :func:`run_unit` makes them."""
    out = {}
    for path in cohort_paths:
        c = sources.load_cohort(path)
        all_tasks = list(dict.fromkeys(t for ts in cfg.task_sets([t.name for t in c.tasks]) for t in ts))
        for f in sources.make_splits(c, cfg.split, all_tasks)[0].folds:
            out[(c.name, f.index)] = f
    return out


def _check_finished_units(cfg: BenchmarkConfig, out: Path, units: list[Unit], hashes: dict[str, dict], force: bool, folds: dict) -> list[str]:
    """Compare each finished unit's stored config hash with the current config.

    Returns the ids of finished units that stored no hash (made by an older version; reused and
    reported). A finished unit with a different hash raises :class:`ConfigError` unless ``force``,
    which deletes it so it is recomputed.
    """

    stale: list[tuple[Unit, str]] = []
    legacy: list[str] = []
    for u in units:
        d = out / "units" / u.uid
        if not (d / "DONE").exists():
            continue
        try:
            stored = json.loads((d / "unit.json").read_text())
        except (OSError, ValueError):
            stored = {}
        resolved = unit_config(u, cfg, hashes.get(u.cohort), folds.get((u.cohort, u.fold)))
        if "config_hash" not in stored:
            legacy.append(u.uid)
        elif stored["config_hash"] != config_hash(resolved):
            stale.append((u, config_diff(stored.get("config"), resolved)))
    if stale and not force:
        u, diff = stale[0]
        raise ConfigError(
            f"{len(stale)} finished unit(s) in this run folder were computed with a different config (e.g. {u.uid}: {diff})",
            where=out,
            fix="use a new --out folder, or pass --force (run_benchmark(force=True)) to recompute those units",
        )
    for u, diff in stale:
        log.info("recomputing %s (config changed: %s)", u.uid, diff)
        shutil.rmtree(out / "units" / u.uid, ignore_errors=True)
    return legacy


def run_benchmark(
    config: BenchmarkConfig | str | Path,
    out_dir: str | Path | None = None,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    resume: bool = True,
    overrides: list[str] | None = None,
    progress: bool = True,
    force: bool = False,
    epoch_progress: bool = False,
) -> BenchmarkResult:
    """Run (or resume) a benchmark and write its tables; see the module docstring.

    Args:
        config: a :class:`BenchmarkConfig` or the path of its YAML file.
        out_dir: run folder (default ``runs/<config name>``).
        workers: parallel local worker processes (spawned); ignored with ``ray_address``.
        ray_address: ``"auto"``, ``"local"`` (start a local Ray with ``workers`` CPUs) or an address.
        resume: skip units already done (``False`` deletes the old unit folders first).
        overrides: ``key.sub=value`` overrides applied to a YAML config.
        progress: a progress bar over units.
        force: recompute finished units whose stored config hash differs from the current config
            (without it such units stop the run with a :class:`ConfigError`).
        epoch_progress: Lightning's epoch bars inside each unit (serial runs only: ``workers=1``
            and no Ray; otherwise ignored with a warning in run.log).
    """

    cfg = config if isinstance(config, BenchmarkConfig) else load_config(config, BenchmarkConfig, overrides=overrides)
    if isinstance(config, BenchmarkConfig) and overrides:
        cfg = load_config(None, BenchmarkConfig, overrides=overrides, base=config.model_dump(mode="json"))
    out = Path(out_dir) if out_dir is not None else Path("runs") / cfg.name

    # one run per folder (two runs would delete each other's units); SIGINT/SIGTERM stop the
    # workers; a full or read-only disk is one line (DiskError)
    with OutputLock(out), stop_signals(), disk_errors(out):
        return _run_locked(cfg, out, workers=workers, ray_address=ray_address, resume=resume, progress=progress,
                           force=force, epoch_progress=epoch_progress)


def _clean_stale_temporaries(out: Path) -> None:
    """Remove unit folders half-built by a killed run (we hold the lock: nobody else is writing)."""
    units = out / "units"
    if units.is_dir():
        for p in units.iterdir():
            if p.name.startswith(".") and (p.name.endswith(".tmpdir") or p.name.startswith(".tmp-")):
                shutil.rmtree(p, ignore_errors=True)


def _copy_splits(cfg: BenchmarkConfig, out: Path, paths: list[Path]) -> None:
    """``splits/<cohort>.csv``: the folds every unit used (a copy of the split file, or the generated
    folds), so the run folder alone says which patient was in which fold."""

    for p in paths:
        c = sources.load_cohort(p)
        dest = out / "splits" / f"{c.name}.csv"
        split_file = sources._split_path(c, cfg.split.file) if cfg.split.file else None
        if split_file is not None and Path(split_file).is_file():
            atomic_write_bytes(dest, Path(split_file).read_bytes())
        else:
            all_tasks = list(dict.fromkeys(t for ts in cfg.task_sets([t.name for t in c.tasks]) for t in ts))
            splits = sources.make_splits(c, cfg.split, all_tasks)[0]
            atomic_write(dest, lambda tmp, s=splits: s.save(tmp))


def _run_locked(cfg: BenchmarkConfig, out: Path, *, workers: int, ray_address: str | None, resume: bool, progress: bool,
                force: bool, epoch_progress: bool) -> BenchmarkResult:

    out.mkdir(parents=True, exist_ok=True)
    _clean_stale_temporaries(out)
    handler = attach_log_file(out / "run.log")
    try:
        _validate(cfg)

        paths = sources.resolve_cohort_paths(cfg.data, out)
        units = plan_units(cfg, paths)
        if not resume:
            shutil.rmtree(out / "units", ignore_errors=True)
            shutil.rmtree(out / "work", ignore_errors=True)
        hashes = {}
        for p in paths:
            c = sources.load_cohort(p)
            split_file = None
            if cfg.split.file:
                split_file = sources._split_path(c, cfg.split.file)
            hashes[c.name] = cohort_hashes(c, split_file)
        # before config.yaml is rewritten: a refused run must leave the folder describing its results
        legacy = _check_finished_units(cfg, out, units, hashes, force, _unit_folds(cfg, paths))
        write_run_metadata(out, cfg, hashes)
        _copy_splits(cfg, out, paths)
        log.info("benchmark %s: %d units (%d done already)", cfg.name, len(units), sum((out / "units" / u.uid / "DONE").exists() for u in units))
        serial = workers <= 1 and not ray_address
        if epoch_progress and not serial:
            log.warning("epoch progress bars are shown only in serial runs (workers=1, no Ray); ignored")
        statuses = _execute(units, cfg, out, workers, ray_address, progress, epoch_progress=epoch_progress and serial)
        extra = []
        if legacy:
            extra.append(f"{len(legacy)} unit(s) were finished by an older modaltune that stored no config hash and were reused unverified (e.g. {legacy[0]}); "
                         "rerun with a new run folder to be sure they match this config")
        results = aggregate(cfg, out, units, paths, extra_notes=extra)
        with contextlib.suppress(OSError):  # the scratch folder of finished units: gone once empty
            (out / "work").rmdir()
        st = {uid: r["status"] for uid, r in statuses.items()}
        n_failed = sum(s == "failed" for s in st.values())
        log.info("benchmark %s finished: %d units, %d failed", cfg.name, len(units), n_failed)
        return BenchmarkResult(out, results, st)
    finally:
        detach_log_file(handler)
