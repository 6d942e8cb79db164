"""Python API of the engine: :func:`fit`, :func:`predict`, :func:`embed` and :class:`FittedModel`.

Typical use::

    from modaltune.training import fit, predict
    fitted = fit(cohort, fold, "mean_pool", tasks=["subtype", "survival"], out_dir="runs/m0")
    preds = predict(fitted, cohort, fold.test)       # one row per patient x task
    fitted2 = FittedModel.load("runs/m0/model")      # the same model, from disk

``fit`` also accepts an :class:`~modaltune.training.experiment_config.ExperimentConfig` (or the
path of its YAML file), which names cohort, split, fold, method, tasks and trainer settings.

Torch methods train through Lightning (:class:`MultiTaskLightningModule`); tabular methods
(registry ``kind='tabular'``) are fitted on a design matrix made of the fold's scaled omics and
encoded clinical fields (same preprocessing as the torch methods).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from modaltune.errors import InputError
from modaltune.training.callbacks import seed_all
from modaltune.training.experiment_config import DataConfig, ExperimentConfig, MethodConfig, TrainerConfig

__all__ = ["FittedModel", "fit", "fit_folds", "predict", "evaluate", "embed", "design_matrix", "targets_frame", "cox_tasks"]

log = logging.getLogger("modaltune.training")


@dataclass
class FittedModel:
    """A trained method with everything needed to apply it to new patients.

    Attributes:
        method: the :class:`MethodConfig` (name, params, modalities as resolved for the cohort).
        kind: ``torch`` or ``tabular``.
        model: the ``MultiTaskModel`` (eval mode) or the fitted ``TabularMethod``.
        preprocessor: the ``CohortPreprocessor`` fitted on the training patients.
        tasks: task names the model predicts.
        trainer: the :class:`TrainerConfig` used.
        train_ids: training patients (kept so leakage can be audited).
        config: resolved experiment config (dict) when fitted from one.
    """

    method: MethodConfig
    kind: str
    model: Any
    preprocessor: Any
    tasks: list[str]
    trainer: TrainerConfig
    train_ids: list[str] = field(default_factory=list)
    config: dict | None = None
    path: Path | None = None

    @property
    def info(self):
        return self.preprocessor.info

    def task_embeddings(self, cohort: Any, ids: Sequence[str]) -> dict[str, pd.DataFrame]:
        """``{task: DataFrame (N, D) indexed by patient_id}`` of ``ids``: the columns of :func:`embed`
        that the model protocol's ``task_embedding_columns`` gives each task (tabular methods and
        shared embeddings: the whole embedding, the same frame for every task)."""
        return task_embeddings(self, cohort, ids)

    def targets(self, cohort: Any, ids: Sequence[str], tasks: Sequence[str] | None = None) -> pd.DataFrame:
        """:func:`targets_frame` of ``ids`` for ``tasks`` (default: the model's tasks)."""
        return targets_frame(cohort, ids, list(self.tasks if tasks is None else tasks))

    @property
    def slide_features(self) -> dict | None:
        """What the model's slide input was made with, or None without a slide modality:
        ``{"modality", "encoder" (patch encoder name or None), "feature_dim", "patch_size",
        "patch_size_level0", "target_magnification"}`` (tiling keys None when the bags did not say).
        Recorded in ``fitted.json`` so features of new slides can be checked (and extracted) alike."""
        return slide_feature_record(self.preprocessor)

    def save(self, out_dir: str | Path) -> Path:
        """Write the model folder without pickle (format :data:`FORMAT_VERSION`):

        ``fitted.json`` (method, tasks, trainer, training ids), ``preprocessor.json`` +
        ``preprocessor.safetensors`` (the fitted preprocessor with its ``CohortInfo``), the model
        (``model.safetensors`` state dict of a torch method, or ``model.json`` +
        ``model.safetensors`` for a tabular method) and ``config.yaml``. ``fitted.json`` is written
        last: its presence means the folder is complete. See docs/trust.md.
        """
        from modaltune.fileio import atomic_write_bytes, atomic_write_text
        from modaltune.training._prep import detach
        from modaltune.training._state import save_state

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "method": self.method.model_dump(mode="json"),
            "kind": self.kind,
            "tasks": self.tasks,
            "trainer": self.trainer.model_dump(mode="json"),
            "train_ids": self.train_ids,
            "slide_features": self.slide_features,
            "format_version": FORMAT_VERSION,
        }
        save_state(out, "preprocessor", detach(self.preprocessor))
        if self.kind == "torch":
            from safetensors.torch import save

            # clone: safetensors refuses tensors sharing storage (tied weights); load_state_dict re-ties them
            state = {k: v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()}
            atomic_write_bytes(out / "model.safetensors", save(state, metadata={"format": "pt"}))
        else:
            save_state(out, "model", self.model)
        if self.config is not None:
            import yaml

            atomic_write_text(out / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        atomic_write_text(out / "fitted.json", json.dumps(meta, indent=2))
        self.path = out
        return out

    @classmethod
    def load(cls, path: str | Path) -> FittedModel:
        """Load a model saved by :meth:`save` (rebuilds the method from the registry).

        Nothing is unpickled: JSON, YAML (``safe_load``) and safetensors only. A folder written by
        an older modaltune (``*.pkl`` files, ``format_version`` 1) is refused with an
        :class:`InputError` asking for a re-fit; so is any file that does not parse.

        Example::

            from modaltune.data.cohort import Cohort
            model = FittedModel.load("runs/fit/model")   # the OUT/model folder of `modaltune fit`
            preds = predict(model, Cohort.load("cohorts/brca"))  # one row per patient x task

        Raises:
            InputError: ``path`` holds no ``fitted.json`` (not a saved model folder).
        """
        from modaltune.methods.registry import build_method

        path = Path(path)
        if not (path / "fitted.json").exists():
            raise InputError("no fitted.json here: not a saved modaltune model", where=path, fix="point at the 'model' folder written by `modaltune fit`")
        meta = _read_meta(path)
        method = MethodConfig.model_validate(meta["method"])
        pp = _load_part(path, "preprocessor")
        if meta["kind"] == "torch":
            model = build_method(method.name, pp.info, **method.params)
            state = _load_tensors(path / "model.safetensors")
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise InputError(f"model.safetensors does not fit method '{method.name}': {str(exc).splitlines()[0]}", where=path / "model.safetensors",
                                 fix="the folder was edited or mixes two models: re-fit it") from None
            model.eval()
        else:
            model = _load_part(path, "model")
        config = None
        if (path / "config.yaml").exists():
            import yaml

            config = yaml.safe_load((path / "config.yaml").read_text())
        return cls(method, meta["kind"], model, pp, list(meta["tasks"]), TrainerConfig.model_validate(meta["trainer"]), list(meta.get("train_ids", [])), config, path)


#: version of the model-folder layout written by :meth:`FittedModel.save`. 1 = pickled
#: preprocessor / tabular model (refused since 2: loading it could run code), 2 = JSON + safetensors.
FORMAT_VERSION = 2

_REFIT = "re-fit the model with this modaltune (`modaltune fit ...`); never load a model folder you do not trust with an older modaltune"


def _read_meta(path: Path) -> dict:
    """``fitted.json`` of a model folder, refusing folders of the pickle era and newer formats."""
    pickles = sorted(p.name for p in path.glob("*.pkl"))
    if pickles:
        raise InputError(f"{', '.join(pickles)}: written by an older modaltune with pickle; modaltune never unpickles a model folder, so this model must be re-fitted",
                         where=path / pickles[0], fix=_REFIT)
    try:
        meta = json.loads((path / "fitted.json").read_text())
        version = int(meta.get("format_version", 1))
        missing = [k for k in ("method", "kind", "tasks", "trainer") if k not in meta]
        if missing:
            raise KeyError(missing[0])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(f"fitted.json is not a modaltune model description ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", where=path / "fitted.json", fix=_REFIT) from None
    if version < FORMAT_VERSION:
        raise InputError(f"model folder format {version} was written by an older modaltune with pickle and must be re-fitted (it is never unpickled)", where=path / "fitted.json", fix=_REFIT)
    if version > FORMAT_VERSION:
        raise InputError(f"model folder format {version} is newer than this modaltune reads ({FORMAT_VERSION})", where=path / "fitted.json", fix="upgrade modaltune")
    if meta["kind"] not in ("torch", "tabular"):
        raise InputError(f"unknown model kind {meta['kind']!r}", where=path / "fitted.json", fix=_REFIT)
    return meta


def _load_part(path: Path, stem: str) -> Any:
    """``<stem>.json`` + ``<stem>.safetensors`` of a model folder, with one-line errors naming the file."""
    from modaltune.training._state import load_state

    try:
        return load_state(path, stem)
    except FileNotFoundError as exc:
        raise InputError(f"{Path(exc.filename or stem).name} is missing from the model folder", where=path, fix=_REFIT) from None
    except Exception as exc:  # noqa: BLE001 - any parse failure of an untrusted file: one line, never a traceback
        raise InputError(f"cannot read {stem}.json / {stem}.safetensors ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", where=path / f"{stem}.json", fix=_REFIT) from None


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file (a JSON header and raw buffers; no pickle)."""
    from safetensors.torch import load

    try:
        return load(file.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{file.name} is missing from the model folder", where=file.parent, fix=_REFIT) from None
    except Exception as exc:  # noqa: BLE001 - an untrusted file: one line
        raise InputError(f"{file.name} is not a safetensors file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", where=file, fix=_REFIT) from None


# ---------------------------------------------------------------------------------------- helpers
_TILING_KEYS = ("patch_size", "patch_size_level0", "target_magnification")


def slide_feature_record(preprocessor: Any) -> dict | None:
    """The slide-feature contract of a fitted preprocessor (see :attr:`FittedModel.slide_features`)."""
    info = preprocessor.info
    if not getattr(info, "slide_modality", None):
        return None
    rec: dict[str, Any] = {"modality": info.slide_modality, "encoder": getattr(preprocessor, "slide_encoder", None),
                           "feature_dim": int(info.slide_dim) if info.slide_dim else None, **dict.fromkeys(_TILING_KEYS)}
    rec.update(getattr(preprocessor, "slide_tiling", None) or {})
    return rec


def _as_method(method: str | MethodConfig | dict | None, params: dict | None, modalities: list[str] | None) -> MethodConfig:
    if method is None:
        raise InputError("no method given", where="fit", fix="pass a method name (see `modaltune methods`)")
    if isinstance(method, MethodConfig):
        m = method
    elif isinstance(method, dict):
        m = MethodConfig.model_validate(method)
    else:
        m = MethodConfig(name=str(method))
    if params:
        m = m.model_copy(update={"params": {**m.params, **params}})
    if modalities is not None:
        m = m.model_copy(update={"modalities": list(modalities)})
    return m


def targets_frame(cohort: Any, ids: Sequence[str], tasks: Sequence[str]) -> pd.DataFrame:
    """Long table of targets: one row per patient x task with ``labelled`` and the label columns
    (``label`` class index, ``time``/``event``, ``value``); masked labels keep their row."""
    frames = []
    sites = cohort.patients["site"].reindex(list(ids)).astype(str).to_numpy()
    for t in tasks:
        tt = cohort.targets(t, list(ids))
        df = pd.DataFrame({"patient_id": list(ids), "site": sites, "task": t, "labelled": tt.mask})
        if tt.label is not None:
            df["label"] = tt.label
        if tt.time is not None:
            df["time"] = np.where(tt.mask, tt.time, np.nan)
            df["event"] = np.where(tt.mask, tt.event.astype(float), np.nan)
        if tt.value is not None:
            df["value"] = np.where(tt.mask, tt.value, np.nan)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _pred_frame(pids: list[str], cols_by_task: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    frames = []
    for task, cols in cols_by_task.items():
        df = pd.DataFrame({"patient_id": pids, "task": task})
        for k, v in cols.items():
            df[k] = np.asarray(v)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _slide_mean(method_name: str, preprocessor: Any) -> bool:
    """Whether a tabular method's design matrix gets the mean-pooled slide block: it declares the
    ``slide`` kind (e.g. ``embedding_fusion``) and the preprocessor has a slide modality."""
    from modaltune.methods.registry import get_method

    return "slide" in get_method(method_name).modalities and bool(getattr(preprocessor.info, "slide_modality", None))


def design_matrix(preprocessor: Any, cohort: Any, ids: Sequence[str], *, slide_mean: bool = False) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], list[str]]:
    """(X, targets, column names) of tabular methods.

    X (N, F) float64 = the fold-scaled omics modalities (sorted by name) then the encoded
    clinical fields; with ``slide_mean`` then the mean of each patient's patch features (D
    columns, zeros without a slide) and one slide-presence column (1 / 0); ``targets`` = ``{task: {"label"|"time"|"event"|"bin"|"value": (N,), "mask": (N,) bool}}``.
    """
    from modaltune.data.dataset import PatientDataset, collate_patients
    from modaltune.training._prep import bind

    ds = PatientDataset(cohort, list(ids), bind(preprocessor, cohort), training=False)
    batch = collate_patients([ds[i] for i in range(len(ds))])
    blocks, names = [], []
    for name in sorted(batch.get("omics") or {}):
        x = batch["omics"][name].float().numpy()
        blocks.append(x)
        names += [f"{name}:{j}" for j in range(x.shape[1])]
    if batch.get("clinical") is not None and batch["clinical"].numel():
        x = batch["clinical"].float().numpy()
        blocks.append(x)
        names += [f"clinical:{j}" for j in range(x.shape[1])]
    if slide_mean and "slide" in batch:
        feats, valid = batch["slide"]["features"].float(), batch["slide"]["mask"]
        n = valid.sum(1, keepdim=True).clamp(min=1).float()
        blocks.append(((feats * valid[..., None]).sum(1) / n).numpy())
        blocks.append(valid.any(1, keepdim=True).float().numpy())
        names += [f"slide_mean:{j}" for j in range(feats.shape[2])] + ["slide_present"]
    if not blocks:
        raise InputError("a tabular method needs omics or clinical inputs, and the cohort/method gives neither", where="method.modalities", fix="add an omics or clinical modality")
    X = np.concatenate(blocks, axis=1).astype(np.float64)
    targets = {}
    for task, d in batch["targets"].items():
        targets[task] = {k: v.numpy() for k, v in d.items()}
        targets[task]["mask"] = batch["target_mask"][task].numpy().astype(bool)
    return X, targets, names


def _tabular_columns(task_info: Any, out: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of a tabular method's output (same names as :func:`outputs_to_columns`)."""
    out = np.asarray(out, dtype=float)
    kind = task_info.spec.kind
    if kind == "classification":
        names = list(task_info.class_names or task_info.spec.classes)
        cols = {f"prob_{names[c]}": out[:, c] for c in range(out.shape[1])}
        cols["pred"] = out.argmax(axis=1)
        return cols
    if kind == "survival":
        if out.ndim == 2 and out.shape[1] > 1:  # a survival curve over bins
            cols = {f"surv_{k}": out[:, k] for k in range(out.shape[1])}
            cols["risk"] = -out.sum(axis=1)
            return cols
        return {"risk": out.reshape(-1)}
    return {"prediction": out.reshape(-1)}


class _quiet_lightning:
    """Silence Lightning's info chatter (device banners, tips, checkpoint notes) while a trainer is
    built and run, unless the user asked for it (``modaltune --verbose``: :func:`modaltune.quiet.is_verbose`).
    Lightning's child loggers inherit the WARNING level set here; warnings still show."""

    def __init__(self, enabled: bool = True):
        from modaltune.quiet import is_verbose

        self.enabled = enabled and not is_verbose()
        self.saved: list[tuple[logging.Logger, int]] = []

    def __enter__(self):
        if self.enabled:
            import warnings

            self._warn = warnings.catch_warnings()
            self._warn.__enter__()
            from modaltune.quiet import NOISE

            for pattern in NOISE:  # the same list the CLI hides (worker processes run fit too)
                warnings.filterwarnings("ignore", message=pattern)
            for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
                lg = logging.getLogger(name)
                self.saved.append((lg, lg.level))
                lg.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        for lg, level in self.saved:
            lg.setLevel(level)
        if self.enabled:
            self._warn.__exit__(*exc)
        return False


def _check_training_labels(info: Any, fold_index: int) -> None:
    """Refuse to train a classification task on a fold whose training patients have one class."""
    for t in info.tasks:
        if t.spec.kind == "classification":
            seen = [c for c, n in t.class_counts.items() if n > 0]
            if len(seen) < 2:
                raise InputError(
                    f"task '{t.spec.name}': the training patients of fold {fold_index} have only class(es) {seen}",
                    where="split",
                    fix="use a split stratified by this task, or merge rare classes",
                )


def cox_tasks(model: Any) -> list[str]:
    """Names of the tasks whose head outputs a Cox risk (``TaskHead.kind == "cox"``)."""
    heads = getattr(model, "heads", None)
    if isinstance(heads, torch.nn.ModuleDict):
        return [name for name, h in heads.items() if getattr(h, "kind", "") == "cox"]
    return []


def _check_cox_batch(model: Any, tcfg: TrainerConfig) -> None:
    """Refuse a Cox head with one patient per step: the partial likelihood of a single patient is
    log(e^r / e^r) = 0 whatever the risk r, so the survival head would never get a gradient.

    Gradient accumulation does not help (each step's loss is 0 before it is accumulated); pooling a
    risk set over accumulation steps would need every step's graph kept alive, i.e. the memory of a
    large batch anyway, so the engine asks for a real batch instead."""
    cox = cox_tasks(model)
    if cox and tcfg.batch_size < 2:
        from modaltune.errors import ConfigError

        raise ConfigError(
            f"task(s) {cox} use a Cox head but trainer.batch_size={tcfg.batch_size}: the Cox partial likelihood of one patient per step is always 0, so nothing is learned",
            where="trainer.batch_size",
            fix="set trainer.batch_size >= 2 (a risk set per step, e.g. 32 with a padded-batch method) or use survival_head: discrete (the discrete-time NLL head)",
        )


#: DDP launchers whose ``*_find_unused_parameters_true`` form Lightning registers
_DDP_LAUNCHERS = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


def lightning_strategy(strategy: str) -> str:
    """The Lightning strategy string for ``trainer.strategy``: plain DDP launchers become their
    ``*_find_unused_parameters_true`` form.

    Why: a batch whose patients all miss a modality, a task without labels in the batch, or ModalTune's
    General-task-only epochs leave parameters out of the loss; plain DDP then stops at the second step
    ("parameters that were not used in producing the loss"). Found on an H200 with ModalTune under
    ``strategy: ddp`` (benchmarks/gpu_check.py); the extra cost is one graph traversal per step.
    Any other value (``auto``, ``dp``, an explicit ``ddp_find_unused_parameters_false``) is passed as is.
    """
    s = str(strategy)
    return f"{s}_find_unused_parameters_true" if s.lower() in _DDP_LAUNCHERS else s


def _lightning_trainer(tcfg: TrainerConfig, *, out_dir: Path | None, callbacks: list, has_val: bool, progress: bool | None = None, **overrides):
    import lightning as L
    from lightning.pytorch.callbacks import Checkpoint

    from modaltune.training.callbacks import build_logger

    kw: dict[str, Any] = dict(
        max_epochs=tcfg.max_epochs,
        accelerator=tcfg.accelerator,
        devices=tcfg.devices,
        strategy=lightning_strategy(tcfg.strategy),
        precision=tcfg.precision,
        deterministic=tcfg.deterministic,
        accumulate_grad_batches=tcfg.accumulate_grad_batches,
        gradient_clip_val=tcfg.gradient_clip_val,
        logger=build_logger(tcfg.logger, out_dir) if out_dir is not None else False,
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=tcfg.progress_bar if progress is None else progress,
        enable_model_summary=False,
        default_root_dir=str(out_dir) if out_dir is not None else None,
        log_every_n_steps=tcfg.log_every_n_steps,
        num_sanity_val_steps=0,
        limit_val_batches=None if has_val else 0,
    )
    kw.update(overrides)
    return L.Trainer(**kw)


# ---------------------------------------------------------------------------------------- fit
def _record_input_coverage(model: Any, out: Path | None) -> None:
    """Coverage tables a method computed at build time (``encoder.input_coverage = {name: DataFrame}``,
    e.g. MCAT's signature groups vs the cohort's genes): logged, and written next to the pathway
    coverage as ``<name>_coverage.csv`` in the run folder."""
    tables = getattr(getattr(model, "encoder", None), "input_coverage", None) or {}
    for name, table in tables.items():
        log.info("%s coverage (genes found / expected):\n%s", name, table.to_string())
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            table.to_csv(out / f"{name}_coverage.csv")


def fit(
    source: Any,
    fold: Any = None,
    method: str | MethodConfig | dict | None = None,
    *,
    params: dict | None = None,
    modalities: list[str] | None = None,
    tasks: list[str] | None = None,
    trainer: TrainerConfig | dict | None = None,
    data: DataConfig | dict | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    ckpt_path: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    eval_partition: str = "auto",
    config: dict | None = None,
    progress: bool | None = None,
) -> FittedModel | None:
    """Train ``method`` on ``fold.train`` of ``source`` and return the :class:`FittedModel`.

    Args:
        source: a ``Cohort``, or an :class:`ExperimentConfig`, or the path of its YAML file (then
            cohort, fold, method, tasks and trainer settings come from the config).
        fold: a ``Fold`` (its ``val`` patients feed a validation loop only when they are not the
            evaluated partition; see :func:`~modaltune.training.sources.val_loop_ids`).
        method: registry name or :class:`MethodConfig`; ``params``/``modalities`` override it.
        tasks: task names (None = all cohort tasks).
        trainer: :class:`TrainerConfig` (or dict) for Lightning settings and the seed.
        data: preprocessing options (``omics_scaling``, ``bin_mode``) from a :class:`DataConfig`.
        out_dir: where checkpoints (``checkpoints/last.ckpt``) and logs go; ``None`` = nothing on disk.
        resume: continue from ``out_dir/checkpoints/last.ckpt`` when it exists (or ``ckpt_path``).
        callbacks: extra Lightning callbacks.

    Returns:
        The fitted model, or ``None`` on non-zero ranks of a multi-process (DDP) run.
    """
    from modaltune.methods.registry import build_method, get_method
    from modaltune.training import sources

    if isinstance(source, (str, Path, ExperimentConfig)):
        return _fit_from_config(source, out_dir=out_dir, resume=resume, callbacks=callbacks, progress=progress)

    cohort = source
    if fold is None:
        raise InputError("fit needs a fold (train/val/test patient lists)", where="fit", fix="pass a Fold, e.g. from kfold_split(...)")
    tcfg = trainer if isinstance(trainer, TrainerConfig) else TrainerConfig.model_validate(trainer or {})
    dcfg = data if isinstance(data, DataConfig) or data is None else DataConfig.model_validate({"cohorts": ["-"], **data})
    omics_scaling = dcfg.omics_scaling if dcfg is not None else "zscore"
    bin_mode = dcfg.bin_mode if dcfg is not None else "strict"
    mcfg = _as_method(method, params, modalities)
    entry = get_method(mcfg.name)
    task_names = sources.check_tasks(cohort, tasks)
    mods = sources.resolve_modalities(cohort, mcfg.modalities or list(entry.modalities) or None)
    mcfg = mcfg.model_copy(update={"modalities": mods})
    from modaltune.data.validate import check_trainable

    check_trainable(cohort, modalities=mods)  # what `data validate` rejects never trains (once per cohort object)
    train_ids = list(fold.train)
    if not train_ids:
        raise InputError(f"fold {fold.index} has no training patients", where="split", fix="check the split")
    out = Path(out_dir) if out_dir is not None else None

    seed_all(tcfg.seed)
    from modaltune.training.datamodule import CohortDataModule, fit_preprocessor

    pp = fit_preprocessor(
        cohort, train_ids, modalities=mods, tasks=task_names, omics_scaling=omics_scaling, bin_mode=bin_mode,
        pathways=dict(dcfg.pathways) if dcfg is not None else None,
    )
    if out is not None and pp.info.pathways:
        # the pathway coverage report (genes found / expected per pathway) goes with the run
        out.mkdir(parents=True, exist_ok=True)
        for name, tok in pp.info.pathways.items():
            tok.coverage.to_csv(out / f"pathway_coverage_{name}.csv")
    for name, tok in (pp.info.pathways or {}).items():
        cov = tok.coverage
        found, expected = int(cov["n_found"].sum()), int(cov["n_expected"].sum())
        log.info("pathway coverage of '%s': %s; %d of %d pathway memberships found (%.0f%%)", name, tok.summary(), found, expected, 100.0 * found / max(expected, 1))

    _check_training_labels(pp.info, fold.index)

    if entry.kind == "tabular":
        X, y, _ = design_matrix(pp, cohort, train_ids, slide_mean=_slide_mean(mcfg.name, pp))
        est = build_method(mcfg.name, pp.info, **mcfg.params)
        est.fit(X, y, pp.info)
        fitted = FittedModel(mcfg, "tabular", est, pp, task_names, tcfg, train_ids, config)
        if out is not None:
            fitted.save(out / "model")
        return fitted

    import lightning as L

    from modaltune.training.callbacks import LAST_CKPT, SeedEachEpoch, build_callbacks
    from modaltune.training.module import MultiTaskLightningModule

    L.seed_everything(tcfg.seed, workers=True, verbose=False)
    val_ids = sources.val_loop_ids(fold, eval_partition)
    dm = CohortDataModule(cohort, train_ids, val_ids, preprocessor=pp, modalities=mods, tasks=task_names, batch_size=tcfg.batch_size, max_patches=tcfg.max_patches, num_workers=tcfg.num_workers, seed=tcfg.seed, cache_bags=tcfg.cache_bags)
    model = build_method(mcfg.name, pp.info, **mcfg.params)
    _record_input_coverage(model, out)
    if hasattr(model, "audit_inputs"):  # e.g. ModalTune: no text target may reach an input (fold's patients)
        from modaltune.data.dataset import PatientDataset

        audit_ids = [p for p in dict.fromkeys([*fold.train, *(fold.val or []), *(fold.test or [])]) if p in cohort.patients.index]
        model.audit_inputs(PatientDataset(cohort, audit_ids, pp, training=False).label_batch(), out)
    if not getattr(model, "needs_training", True):
        # assembled from trained parts (e.g. an mm_lego merge): no optimiser step, no batch read
        fitted = FittedModel(mcfg, "torch", model.cpu().eval(), pp, task_names, tcfg, train_ids, config)
        if out is not None:
            fitted.save(out / "model")
        return fitted
    _check_cox_batch(model, tcfg)
    module = MultiTaskLightningModule(
        model,
        {t.spec.name: t for t in pp.info.tasks},
        optimizer=tcfg.optimizer,
        lr=tcfg.lr,
        weight_decay=tcfg.weight_decay,
        scheduler=tcfg.scheduler,
        warmup_epochs=tcfg.warmup_epochs,
        warmup_start_lr=tcfg.warmup_start_lr,
        modality_dropout=tcfg.modality_dropout,
    )
    ckpt_dir = out / "checkpoints" if out is not None else None
    cbs = build_callbacks(tcfg, ckpt_dir, has_val=bool(val_ids)) + [SeedEachEpoch(tcfg.seed)] + list(callbacks)
    if tcfg.modulation == "agm":
        from modaltune.training.modulation import AGM, AGMCallback

        AGM(model, alpha=0.0).remove()  # refuses a model with fewer than two modality branches now, before training
        cbs.append(AGMCallback(**tcfg.agm.model_dump(), out_dir=out))
    if hasattr(model, "training_callbacks"):  # a model's own monitors (e.g. ModalTune's gate diagnostics)
        cbs += list(model.training_callbacks(out))
    if ckpt_path is None and resume and ckpt_dir is not None and (ckpt_dir / LAST_CKPT).exists():
        ckpt_path = ckpt_dir / LAST_CKPT
        log.info("resuming from %s", ckpt_path)
    if ckpt_path is not None:
        check_checkpoint(ckpt_path)
    with _quiet_lightning():
        ltrainer = _lightning_trainer(tcfg, out_dir=out, callbacks=cbs, has_val=bool(val_ids), progress=progress)
        # weights_only=True: Lightning would otherwise let torch unpickle arbitrary objects from last.ckpt
        ltrainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    if ltrainer.interrupted:  # Lightning swallows some interrupts; never save a half-trained model as done
        raise KeyboardInterrupt(f"training was interrupted; rerun with the same out_dir to resume from {ckpt_dir}/last.ckpt")
    if not ltrainer.is_global_zero:
        return None
    model = module.model.cpu().eval()
    fitted = FittedModel(mcfg, "torch", model, pp, task_names, tcfg, train_ids, config)
    if out is not None:
        fitted.save(out / "model")
    return fitted


def check_checkpoint(path: str | Path) -> None:
    """Refuse a training checkpoint that does not load with ``torch.load(weights_only=True)``.

    Lightning resumes with the same restricted loader (``Trainer.fit(weights_only=True)``); this
    check runs first so that a planted or foreign ``last.ckpt`` fails with one line naming the file
    instead of a traceback from inside the training loop. ``weights_only`` loading only rebuilds
    tensors and plain containers (torch >= 2.6 is required: earlier versions had a bypass,
    CVE-2025-32434), so nothing in the file is executed.
    """
    p = Path(path)
    try:
        torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise InputError("checkpoint to resume from does not exist", where=p, fix="check ckpt_path, or rerun without resuming") from None
    except Exception as exc:  # noqa: BLE001 - an untrusted file: any failure is one line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"{p.name} is not a checkpoint modaltune resumes from (it does not load as tensors and plain data: {type(exc).__name__}: {msg[:200]})",
                         where=p, fix="delete the checkpoints folder (or rerun with --no-resume) to start this fit over") from None


def _load_experiment(source: Any, out_dir: str | Path | None):
    """(config, cohort, task names, {fold index: Fold}) of an experiment config or YAML path."""
    from modaltune.config import load_config
    from modaltune.training import sources

    cfg = source if isinstance(source, ExperimentConfig) else load_config(source, ExperimentConfig)
    work = Path(out_dir) if out_dir is not None else Path(".")
    paths = sources.resolve_cohort_paths(cfg.data, work)
    if len(paths) != 1:
        raise InputError(f"an experiment trains on one cohort, the config names {len(paths)}", where="data", fix="use `modaltune benchmark` for several cohorts")
    cohort = sources.load_cohort(paths[0])
    tasks = sources.check_tasks(cohort, cfg.tasks)
    splits, _ = sources.make_splits(cohort, cfg.split, tasks)
    folds = {f.index: f for f in splits.folds}
    bad = [k for k in cfg.fold_list(sorted(folds)) if k not in folds]
    if bad:
        raise InputError(f"fold(s) {bad} not in split '{splits.name}' (folds {sorted(folds)})", where="fold", fix="pick existing fold indices")
    return cfg, cohort, tasks, folds


def _fit_from_config(source: Any, *, out_dir: str | Path | None, resume: bool, callbacks: Sequence[Any], progress: bool | None) -> FittedModel | None:
    cfg, cohort, tasks, folds = _load_experiment(source, out_dir)
    if cfg.several_folds:
        from modaltune.errors import ConfigError

        raise ConfigError(f"fit() trains one fold but the config names fold={cfg.fold}", where="fold",
                          fix="use fit_folds(config, out_dir) (or `modaltune fit`), which trains one model per fold")
    return _fit_config_fold(cfg, cohort, tasks, folds[cfg.fold], out_dir=out_dir, resume=resume, callbacks=callbacks, progress=progress)


def _fit_config_fold(cfg: ExperimentConfig, cohort: Any, tasks: list[str], fold: Any, *, out_dir, resume, callbacks, progress) -> FittedModel | None:
    return fit(
        cohort,
        fold,
        cfg.method,
        tasks=tasks,
        trainer=cfg.trainer,
        data=cfg.data,
        out_dir=out_dir,
        resume=resume,
        callbacks=callbacks,
        eval_partition=cfg.split.eval_partition,
        config=cfg.model_copy(update={"fold": fold.index}).model_dump(mode="json"),
        progress=progress,
    )


def fit_folds(
    source: Any,
    out_dir: str | Path,
    *,
    resume: bool = True,
    callbacks: Sequence[Any] = (),
    progress: bool | None = None,
) -> dict[int, FittedModel | None]:
    """Train one model per fold named by the config's ``fold`` (an index, a list or ``all``).

    With one fold index the model goes to ``out_dir`` (as :func:`fit`); with a list or ``all``,
    fold ``k`` goes to ``out_dir/fold<k>`` and a progress bar counts the folds (``progress=None``
    follows ``trainer.progress_bar``). A rerun resumes: folds with a saved model are loaded, not
    retrained (unless ``resume=False``), and a killed fold resumes from its ``last.ckpt``.

    Returns:
        ``{fold index: FittedModel}`` (``None`` values on non-zero ranks of a DDP run).
    """
    from tqdm.auto import tqdm

    cfg, cohort, tasks, folds = _load_experiment(source, out_dir)
    out = Path(out_dir)
    if not cfg.several_folds:
        return {cfg.fold: _fit_config_fold(cfg, cohort, tasks, folds[cfg.fold], out_dir=out, resume=resume, callbacks=callbacks, progress=progress)}
    show = cfg.trainer.progress_bar if progress is None else progress
    is_rank0 = int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and int(os.environ.get("NODE_RANK", "0") or 0) == 0
    result: dict[int, FittedModel | None] = {}
    indices = cfg.fold_list(sorted(folds))
    with tqdm(indices, desc=f"{cfg.name}: folds", unit="fold", disable=not (show and is_rank0)) as bar:
        for k in bar:
            bar.set_postfix_str(f"fold {k}")
            fdir = out / f"fold{k}"
            if resume and (fdir / "model" / "fitted.json").exists():
                result[k] = FittedModel.load(fdir / "model")
                continue
            result[k] = _fit_config_fold(cfg, cohort, tasks, folds[k], out_dir=fdir, resume=resume, callbacks=callbacks, progress=progress)
    return result


# ---------------------------------------------------------------------------------------- predict
def _check_cohort_compatible(fitted: FittedModel, cohort: Any) -> None:
    have = {m.name for m in cohort.modalities}
    missing = [m for m in (fitted.method.modalities or []) if m not in have]
    if missing:
        raise InputError(f"the model reads modalities {missing} that cohort '{cohort.name}' does not declare", where="cohort.yaml", fix="apply the model to a cohort with the same modality names")


def _torch_outputs(fitted: FittedModel, cohort: Any, ids: list[str], *, embeddings: bool, batch_size: int = 1) -> tuple[list[str], dict[str, dict[str, np.ndarray]], np.ndarray | None]:
    import lightning as L

    from modaltune.training._prep import bind
    from modaltune.training.datamodule import CohortDataModule
    from modaltune.training.module import MultiTaskLightningModule

    pp = bind(fitted.preprocessor, cohort)
    dm = CohortDataModule(cohort, ids, None, preprocessor=pp, modalities=fitted.method.modalities, tasks=fitted.tasks, batch_size=batch_size, max_patches=fitted.trainer.max_patches, seed=fitted.trainer.seed)
    module = MultiTaskLightningModule(fitted.model, {t.spec.name: t for t in fitted.info.tasks}, return_embeddings=embeddings)
    t = fitted.trainer
    acc = t.accelerator
    with _quiet_lightning():
        trainer = L.Trainer(accelerator=acc, devices=1, precision=t.precision, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        records = trainer.predict(module, dataloaders=dm.predict_loader(ids, batch_size=batch_size))
    fitted.model.cpu().eval()
    pids: list[str] = []
    cols: dict[str, dict[str, list]] = {}
    embs = []
    for rec in records:
        pids += rec["patient_id"]
        for task, c in rec["outputs"].items():
            d = cols.setdefault(task, {})
            for k, v in c.items():
                d.setdefault(k, []).append(v)
        if embeddings:
            embs.append(rec["embedding"])
    merged = {task: {k: np.concatenate(v) for k, v in d.items()} for task, d in cols.items()}
    return pids, merged, (np.concatenate(embs) if embeddings and embs else None)


def predict(fitted: FittedModel, cohort: Any, ids: Sequence[str] | None = None, *, with_targets: bool = True) -> pd.DataFrame:
    """Per-patient predictions: one row per patient x task.

    Columns: ``patient_id, task`` + prediction columns (``prob_<class>``, ``pred`` | ``risk``,
    ``surv_<k>`` | ``prediction``) + when ``with_targets`` and the cohort has the label columns,
    the targets (``site``, ``labelled``, ``label`` (class index, -1 = none) | ``time``, ``event``
    (NaN = none) | ``value``). These are the columns ``evaluation.compute_metrics`` reads.
    """
    ids = list(cohort.patient_ids if ids is None else ids)
    if not ids:
        raise InputError("no patients to predict", where="predict", fix="pass a non-empty id list")
    _check_cohort_compatible(fitted, cohort)
    if fitted.kind == "tabular":
        X, _, _ = design_matrix(fitted.preprocessor, cohort, ids, slide_mean=_slide_mean(fitted.method.name, fitted.preprocessor))
        raw = fitted.model.predict(X)
        infos = {t.spec.name: t for t in fitted.info.tasks}
        cols = {task: _tabular_columns(infos[task], raw[task]) for task in fitted.tasks if task in raw}
        pids = ids
    else:
        pids, cols, _ = _torch_outputs(fitted, cohort, ids, embeddings=False)
    df = _pred_frame(pids, cols)
    if with_targets:
        have_cols = all(c in cohort.patients.columns for t in fitted.tasks for c in cohort.manifest.task(t).columns) if all(
            t in {x.name for x in cohort.tasks} for t in fitted.tasks
        ) else False
        if have_cols:
            tgt = targets_frame(cohort, ids, fitted.tasks)
            df = tgt.merge(df, on=["patient_id", "task"], how="right")
    return df


def evaluate(fitted: FittedModel, cohort: Any, ids: Sequence[str] | None = None, *, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Predict ``ids`` of ``cohort`` and score them against the cohort's labels: one row per task x
    metric (``task, metric, value, n_used, n_masked, reason``); C-index for survival, balanced
    accuracy and macro AUC for classification by default. See :func:`modaltune.training.scoring.evaluate`."""
    from modaltune.training.scoring import evaluate as _evaluate

    return _evaluate(fitted, cohort, ids, metrics=metrics)


def task_embeddings(fitted: FittedModel, cohort: Any, ids: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``{task: (N, D) DataFrame}``: see :meth:`FittedModel.task_embeddings`."""
    E = embed(fitted, cohort, list(ids))
    tasks = [t.spec.name for t in fitted.info.tasks]
    cols_of = getattr(fitted.model, "task_embedding_columns", None)
    cols = cols_of() if (fitted.kind == "torch" and cols_of is not None) else None
    if cols is None:
        return dict.fromkeys(tasks, E)
    return {t: E.iloc[:, cols[t]] for t in tasks}


def embed(fitted: FittedModel, cohort: Any, ids: Sequence[str] | None = None) -> pd.DataFrame:
    """(N, E) patient embeddings as a DataFrame indexed by ``patient_id`` (columns ``emb_0..``).

    Tabular methods return their design matrix (their "embedding" is their input)."""
    ids = list(cohort.patient_ids if ids is None else ids)
    _check_cohort_compatible(fitted, cohort)
    if fitted.kind == "tabular":
        X, _, _ = design_matrix(fitted.preprocessor, cohort, ids, slide_mean=_slide_mean(fitted.method.name, fitted.preprocessor))
        E, pids = fitted.model.embed(X), ids
    else:
        pids, _, E = _torch_outputs(fitted, cohort, ids, embeddings=True)
    E = np.asarray(E)
    return pd.DataFrame(E, index=pd.Index(pids, name="patient_id"), columns=[f"emb_{j}" for j in range(E.shape[1])])
