"""What a benchmark unit's result depends on, as a hash, so a resumed run never reuses a unit that
was computed with different settings.

A unit id (``Unit.uid``) names only method label, cohort, tasks, fold and seed. Its *resolved
config* adds everything else that changes its numbers: the method's registry name, params and
modalities; the trainer settings (except display-only ones: progress bar, logger, log interval,
checkpointing, data-loader workers, the in-memory bag cache); the preprocessing (omics scaling, survival bin mode, sha256 of
the pathway files); the fold's patients (a hash of its train/val/test id lists, so any change of
split file, k, split seed, stratification or validation fraction is caught, while restricting
``split.folds`` is not a change) and the evaluated partition; the unit-level evaluation settings
(metrics, time grid, tau, embeddings, probes); and the sha256 of the cohort's tables
(``data_hashes.json``).
Table-level settings (bootstrap, CI level, comparisons, protocol text, ddof) are not part of it:
they are recomputed from the stored predictions on every run.

Values equal to a field's default are left out, so adding a new config field with a default does
not invalidate finished runs.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["unit_config", "config_hash", "config_diff", "fold_hash", "DISPLAY_ONLY_TRAINER_KEYS"]

#: trainer fields that do not change a unit's numbers
DISPLAY_ONLY_TRAINER_KEYS = ("progress_bar", "logger", "log_every_n_steps", "checkpoint", "num_workers", "cache_bags", "seed")


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fold_hash(fold: Any) -> str:
    """Hash of a fold's sorted train / val / test patient id lists."""
    return _sha({part: sorted(map(str, getattr(fold, part))) for part in ("train", "val", "test")})


def _file_sha(path: str) -> str:
    from modaltune.benchmark.run_folder import sha256_file

    try:
        return sha256_file(path)[:16]
    except OSError:
        return f"missing:{path}"


def unit_config(unit: Any, cfg: Any, data_hashes: dict[str, Any] | None, fold: Any = None) -> dict[str, Any]:
    """The resolved config of one unit (a JSON-able dict; see the module docstring).

    Args:
        unit: the :class:`~modaltune.benchmark.runner.Unit`.
        cfg: the :class:`~modaltune.training.experiment_config.BenchmarkConfig`.
        data_hashes: ``{file: sha256}`` of the unit's cohort (``cohort_hashes``), or None.
        fold: the unit's ``Fold`` (its patient lists are hashed).
    """
    from modaltune.benchmark.fold_params import artefact_hashes, resolve_method

    m = resolve_method(cfg.methods[unit.method_index], unit.fold)  # {fold} placeholders resolved
    data = cfg.data.model_dump(mode="json", exclude_defaults=True, include={"omics_scaling", "bin_mode"})
    if cfg.data.pathways:
        data["pathways"] = {k: _file_sha(v) for k, v in sorted(cfg.data.pathways.items())}
    trainer = cfg.trainer.model_dump(mode="json", exclude_defaults=True)
    for k in DISPLAY_ONLY_TRAINER_KEYS:
        trainer.pop(k, None)
    ev = cfg.evaluation.model_dump(mode="json", exclude_defaults=True, include={"metrics", "times", "tau", "save_embeddings", "probes"})
    out = {
        "method": m.model_dump(mode="json", exclude_defaults=True, include={"name", "params", "modalities"}) | {"name": m.name},
        "tasks": list(unit.tasks),
        "fold": unit.fold,
        "seed": unit.seed,
        "trainer": trainer,
        "data": data,
        "split": {"eval_partition": cfg.split.eval_partition, "fold_patients": fold_hash(fold) if fold is not None else None},
        "evaluation": ev,
        "cohort_data": dict(sorted((data_hashes or {}).items())),
    }
    if art := artefact_hashes(m.params):  # e.g. the pretraining folder's pretrain.json (absent otherwise: older hashes stay valid)
        out["method_artefacts"] = art
    if getattr(unit, "setting", ""):  # missing-modality setting (absent otherwise: older hashes stay valid)
        from modaltune.benchmark.missing_settings import identity

        out["missing"] = identity(cfg, unit.setting, unit.fold)
    return out


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of a resolved unit config."""
    return _sha(resolved)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: d}


def config_diff(old: dict[str, Any] | None, new: dict[str, Any], limit: int = 3) -> str:
    """Short text of the keys whose values differ, e.g. ``trainer.lr: 0.0002 -> 0.001``."""
    if not old:
        return "the stored unit has no resolved config to compare"
    a, b = _flat(old), _flat(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<default>") != b.get(k, "<default>"))
    if not keys:
        return "same settings, different hash (modaltune version changed the config format)"
    parts = [f"{k}: {json.dumps(a.get(k, '<default>'), default=str)[:40]} -> {json.dumps(b.get(k, '<default>'), default=str)[:40]}" for k in keys[:limit]]
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "; ".join(parts) + more
