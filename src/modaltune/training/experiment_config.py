"""Pydantic configs of one experiment (``modaltune fit``) and of a benchmark (``modaltune benchmark``).

Sections (every key documented in docs/training.md; examples in ``configs/examples/*.yaml``)::

    data:       where the cohort(s) come from: cohort directories, or simulated presets
    split:      a split file (path, or name under <cohort>/splits/) or seeded k-fold parameters
    method(s):  {name, params, modalities, label}; ``name`` is a registry name (``modaltune methods``)
    tasks:      task names of the cohort manifest (None = all); a benchmark may give task *sets*
    trainer:    Lightning settings (epochs, optimiser, schedule, accumulation, devices, seeds, logger)
    evaluation: metrics, survival time grid and tau, bootstrap / comparisons, protocol name,
                ddof of the fold std, saved embeddings, linear probes

Relative paths are resolved against the directory of the YAML file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from modaltune.config import PATH_CHECK_CONTEXT, CohortDir, PathwayFile, StrictModel

__all__ = [
    "SimulateSpec",
    "DataConfig",
    "SplitConfig",
    "MethodConfig",
    "EarlyStoppingConfig",
    "AGMConfig",
    "TrainerConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "BenchmarkConfig",
    "data_refusals",
]


class SimulateSpec(StrictModel):
    """A simulated cohort (``modaltune.data.simulate.simulate_cohort``), written under the run folder.

    ``options`` are further keyword arguments of ``simulate_cohort`` (``n_patients``, ``patches``,
    ``feature_dim``, ``missing_rates``, ``signal``: effect sizes, keys of ``SignalSpec``, ...); they
    are checked when the config loads (unknown option or signal key, bad value: one line).
    """

    preset: str = "tiny"
    seed: int = 0
    name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _options_valid(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # checked here, not when the benchmark reaches the simulation: a typo in a signal key would
        # otherwise surface only after the run folder exists (resolve_settings draws nothing)
        import inspect

        from modaltune.data.simulate import resolve_settings, simulate_cohort
        from modaltune.errors import ConfigError

        allowed = sorted(set(inspect.signature(simulate_cohort).parameters) - {"out", "preset", "seed", "name"})
        unknown = sorted(set(v) - set(allowed))
        if unknown:
            raise PydanticCustomError("simulate_option", "unknown simulate option(s) {unknown} (allowed: {allowed})", {"unknown": str(unknown), "allowed": ", ".join(allowed)})
        given = {"preset": info.data.get("preset", "tiny"), "seed": info.data.get("seed", 0)}
        try:
            resolve_settings(**given, **{k: x for k, x in v.items() if k != "overwrite"})
        except ConfigError as exc:
            raise PydanticCustomError("simulate_option", "{detail}", {"detail": exc.detail + (f" (fix: {exc.fix})" if exc.fix else "")}) from None
        except (TypeError, ValueError) as exc:  # e.g. signal: {surv_slide: abc}
            raise PydanticCustomError("simulate_option", "bad simulate option value ({why})", {"why": str(exc)}) from None
        return v

    @field_validator("name")
    @classmethod
    def _inside_run_folder(cls, v: str | None) -> str | None:
        # the cohort is written to <run>/cohorts/<name>: a name with '..' or '/' would escape --out
        from modaltune.data._files import name_problem

        why = name_problem(v) if v is not None else None
        if why:
            raise ValueError(f"cohort name {why}; it must name one folder inside the run folder (no '/', no '..')")
        return v


class DataConfig(StrictModel):
    """Cohort sources. ``cohorts`` are cohort directories; ``simulate`` adds synthetic cohorts.

    ``omics_scaling`` and ``bin_mode`` configure the preprocessor that is fitted on each fold's
    training patients (``bin_mode='strict'``: survival bins from training patients only;
    ``'paper'``: whole cohort, as the published MCAT/PORPOISE code did).
    """

    cohorts: list[CohortDir] = Field(default_factory=list)  # must exist when read by load_config
    simulate: list[SimulateSpec] = Field(default_factory=list)
    omics_scaling: Literal["zscore", "minmax", "none"] = "zscore"
    bin_mode: Literal["strict", "paper"] = "strict"
    #: omics modality -> gene x pathway membership (CSV as in shared/data/pathways, or GMT);
    #: used by pathway-token methods (gene_mixer, modaltune). Paths relative to the config file.
    pathways: dict[str, PathwayFile] = Field(default_factory=dict)

    @field_validator("cohorts", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _some_source(self) -> DataConfig:
        if not self.cohorts and not self.simulate:
            raise ValueError("give at least one cohort directory in 'cohorts' or a 'simulate' preset")
        return self


class SplitConfig(StrictModel):
    """Which patients train and which are evaluated.

    ``file``: a split CSV (``fold,partition,patient_id``) as a path, or a name looked up as
    ``<cohort>/splits/<name>.csv``. Without ``file``, a seeded patient-level ``kfold`` split is
    made per cohort, stratified by the task ``stratify`` (``auto`` = the first task; ``none``).
    ``folds`` restricts the run to some fold indices. Metrics are computed on ``test`` when a fold
    has one, else on ``val`` (``eval_partition='auto'``).
    """

    file: str | None = None
    kfold: int = Field(5, ge=2)
    seed: int = 0
    stratify: str | None = "auto"
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    folds: list[int] | None = None
    eval_partition: Literal["auto", "val", "test"] = "auto"


class MethodConfig(StrictModel):
    """One method: registry ``name``, builder ``params``, input ``modalities`` (None = the method's
    declared modalities, else every cohort modality), a display ``label`` (default: name) and, in a
    benchmark, the ``tasks`` it runs on (None = every task set; e.g. a Cox model: ``[survival]``) and
    the ``cohorts`` it runs on (cohort names; None = every cohort)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    modalities: list[str] | None = None
    label: str | None = None
    tasks: list[str] | None = None  # benchmark only: run this method on task sets within these tasks
    cohorts: list[str] | None = None  # benchmark only: run this method on these cohorts (names; None = every cohort)

    @property
    def display(self) -> str:
        return self.label or self.name

    @field_validator("params")
    @classmethod
    def _typed_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Check ``params`` against the method's parameter model at load time (an unknown method
        name is left to the runner / fit, which name it with a did-you-mean). The dict is kept as
        written, so saved configs and ``fitted.json`` stay as the user gave them."""
        from modaltune.methods.registry import get_method, params_problems

        name = info.data.get("name")
        try:
            get_method(name)
        except Exception:  # noqa: BLE001 - an unknown or broken method is reported by the runner / fit
            return params
        problems = params_problems(name, params)
        if problems:
            raise PydanticCustomError("method_params", "{detail}", {"detail": "; ".join(problems), "problems": tuple(problems)})
        return params


class EarlyStoppingConfig(StrictModel):
    """Off unless given: the standard protocols report the last epoch.

    Stops when ``monitor`` (a logged epoch metric, e.g. ``val/loss``) has not improved by more
    than ``min_delta`` for ``patience`` validation epochs (``lightning`` ``EarlyStopping``)."""

    monitor: str = "val/loss"
    patience: int = Field(5, ge=1)
    mode: Literal["min", "max"] = "min"
    min_delta: float = Field(0.0, ge=0.0)


class AGMConfig(StrictModel):
    """Settings of ``trainer.modulation: agm`` (:mod:`modaltune.training.modulation`).

    ``alpha``: modulation strength in ``coeff_m = exp(alpha (target_m - ratio_m))`` (0: no
    modulation, scores still logged). ``start_epoch`` / ``end_epoch``: 0-based epochs (inclusive;
    None = to the end) in which gradients are scaled. ``baseline``: what replaces an absent branch's
    output in the Shapley passes, ``zero`` (as the official zero padding) or its batch ``mean``.
    """

    alpha: float = Field(1.0, ge=0.0)
    start_epoch: int = Field(0, ge=0)
    end_epoch: int | None = Field(None, ge=0)
    baseline: Literal["zero", "mean"] = "zero"

    @model_validator(mode="after")
    def _window(self) -> AGMConfig:
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch={self.end_epoch} is before start_epoch={self.start_epoch}")
        return self


#: values of ``trainer.precision`` that Lightning accepts (anything else fails deep inside it)
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "64", "16", "bf16",
              "transformer-engine", "transformer-engine-float16")
#: values of ``trainer.accelerator`` that Lightning knows
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")


class TrainerConfig(StrictModel):
    """Training settings. ``accelerator/devices/strategy/precision`` go straight to ``lightning.Trainer``.

    ``batch_size`` patients per step (1 = one bag per step, as in MCAT); ``accumulate_grad_batches``
    steps per optimiser update; ``max_patches`` caps patches per bag (random subset in training,
    deterministic in evaluation). ``warmup_epochs`` only applies with ``scheduler='cosine'``: the
    learning rate rises linearly to ``lr`` over that many epochs (from ``warmup_start_lr`` when
    given, e.g. the ModalTune paper's 5e-6 -> 1e-4 over 10 epochs; else from ``lr / warm-up steps``),
    then follows a cosine decay to 0 at the last step. ``cache_bags`` keeps each training/validation
    patient's bag in memory after its first read, so later epochs do not reopen the files (same
    patches, same numbers): ``auto`` turns it on when ``num_workers`` is 0 and the fold's bag files
    total at most min(4 GiB, 1/8 of available RAM).
    """

    max_epochs: int = Field(20, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    optimizer: Literal["adam", "adamw"] = "adam"
    scheduler: Literal["none", "cosine"] = "none"
    warmup_epochs: float = Field(0.0, ge=0)
    warmup_start_lr: float | None = Field(None, gt=0)
    batch_size: int = Field(1, ge=1)
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float | None = Field(None, ge=0)  # 0 or None: no clipping
    max_patches: int | None = Field(None, ge=1)
    modality_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    accelerator: str = "cpu"
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    precision: str | int = "32-true"
    seed: int = 0
    deterministic: bool = True
    early_stopping: EarlyStoppingConfig | None = None
    num_workers: int = Field(0, ge=0)
    cache_bags: bool | Literal["auto"] = "auto"
    logger: Literal["csv", "tensorboard", "mlflow", "wandb", "none"] = "csv"
    checkpoint: bool = True
    log_every_n_steps: int = Field(50, ge=1)
    progress_bar: bool = True
    modulation: Literal["none", "agm"] = "none"
    agm: AGMConfig = Field(default_factory=AGMConfig)

    @field_validator("precision")
    @classmethod
    def _precision(cls, v):
        if str(v) not in PRECISIONS:
            raise ValueError(f"precision {v!r} is not one of {', '.join(PRECISIONS)}")
        return v

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, v: str) -> str:
        if str(v).lower() not in ACCELERATORS:
            raise ValueError(f"accelerator {v!r} is not one of {', '.join(ACCELERATORS)}")
        return v

    @field_validator("devices")
    @classmethod
    def _devices(cls, v):
        allowed = "a count >= 1, -1 or 'auto' (all visible devices), a list of device indices like [0, 1], or '0,1'"
        if isinstance(v, list):
            ok = len(v) > 0 and all(int(i) >= 0 for i in v)
        elif isinstance(v, str):
            t = v.strip()
            ok = t in ("auto", "-1") or (t.isdigit() and int(t) >= 1) or (
                "," in t and all(x.strip().isdigit() for x in t.split(",") if x.strip()) and any(x.strip() for x in t.split(",")))
        else:
            ok = int(v) >= 1 or int(v) == -1
        if not ok:
            raise ValueError(f"devices {v!r} is not valid: use {allowed}")
        return v

    @model_validator(mode="after")
    def _warmup(self) -> TrainerConfig:
        if self.warmup_start_lr is not None:
            if self.scheduler != "cosine" or self.warmup_epochs <= 0:
                raise ValueError("warmup_start_lr needs scheduler: cosine and warmup_epochs > 0 (it is the lr of the first warm-up step)")
            if self.warmup_start_lr > self.lr:
                raise ValueError(f"warmup_start_lr={self.warmup_start_lr:g} is above lr={self.lr:g}; a warm-up rises from warmup_start_lr to lr")
        return self


class EvaluationConfig(StrictModel):
    """How units are scored and tables written (docs/training.md, "Evaluation options").

    - ``metrics``: names understood by ``modaltune.evaluation.compute_metrics`` (None = defaults
      per task kind).
    - ``times``: time points of the IBS / cumulative-dynamic AUC grid, in the survival task's time
      unit (None = automatic grid from each test fold's follow-up). Points outside a fold's
      follow-up are dropped for that fold and listed in ``unit.json`` and ``summary.md``.
    - ``tau``: truncation time of Uno's C (None = none); clipped to the training fold's largest
      time, which is recorded.
    - ``bootstrap``: resamples for percentile CIs and paired comparisons on pooled out-of-fold
      predictions (0 = off); ``ci``: their level.
    - ``compare``: paired bootstrap comparisons in ``summary.md``: a list of ``[method A, method B]``
      label pairs, or one method label (every other method against it).
    - ``protocol``: a name written into every table (e.g. ``MCAT/PORPOISE 5-fold``).
    - ``ddof``: 0 (population std over folds, as MCAT/PORPOISE) or 1 (sample std).
    - ``save_embeddings``: write each unit's (N, E) embeddings of its evaluated patients to
      ``units/<unit>/embeddings.parquet``.
    - ``probes``: after fitting each unit, fit linear probes on the training patients' embeddings
      (logistic regression, liblinear, C=1; ridge Cox, penalizer 0.1) and score them on the evaluated
      patients: metrics ``probe_balanced_accuracy``, ``probe_macro_auc``, ``probe_c_index``.
    - ``missing``: missing-modality settings (PROTOCOLS.md C; :mod:`modaltune.evaluation.missing`):
      ``W20_O40`` strings, ``{slide: 0.2, omics: 0.4}`` dicts or ``{dispro: FOLDER, setting: W20_O40}``
      (DisPro's per-fold files). Every method runs once per setting; tables per setting and a
      degradation table go into ``summary.md`` and ``missing_*.csv``.
    """

    metrics: list[str] | None = None
    times: list[float] | None = None
    tau: float | None = Field(None, gt=0)
    bootstrap: int = Field(1000, ge=0)
    ci: float = Field(0.95, gt=0, lt=1)
    compare: list[list[str]] | str | None = None
    protocol: str = ""
    ddof: Literal[0, 1] = 0
    save_embeddings: bool = False
    probes: bool = False
    missing: list[str | dict[str, Any]] | None = None

    @field_validator("missing")
    @classmethod
    def _missing_settings(cls, v: list | None) -> list | None:
        from modaltune.errors import ConfigError
        from modaltune.evaluation.missing import parse_settings

        try:
            parse_settings(v)
        except ConfigError as exc:
            raise ValueError(str(exc).split("\n")[0]) from None
        return v

    @field_validator("times")
    @classmethod
    def _times_positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if not v:
                raise ValueError("times must list at least one time point (or be left out for the automatic grid)")
            bad = [t for t in v if not (t > 0 and t < float("inf"))]
            if bad:
                raise ValueError(f"times must be finite and > 0, got {bad}")
        return v

    @field_validator("compare")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        if isinstance(v, list):
            for pair in v:
                if len(pair) != 2 or pair[0] == pair[1]:
                    raise ValueError(f"each compare item must be two different method labels [A, B], got {pair}")
        return v


class _PathsMixin:
    def _resolve_paths(self, base: Path) -> None:
        data: DataConfig = self.data  # type: ignore[attr-defined]
        data.cohorts = [str((base / c).resolve()) if not Path(c).is_absolute() else c for c in data.cohorts]
        data.pathways = {k: str((base / v).resolve()) if not Path(v).is_absolute() else v for k, v in data.pathways.items()}
        split: SplitConfig = self.split  # type: ignore[attr-defined]
        if split.file and ("/" in split.file or split.file.endswith(".csv")) and not Path(split.file).is_absolute():
            cand = (base / split.file).resolve()
            if cand.exists():
                split.file = str(cand)


def _cohort_view(path: str) -> tuple[str, list[tuple[str, str, str | None]]] | None:
    """``(name, [(modality name, kind, table path)]) `` declared by the cohort at ``path`` (None when
    unreadable or without modalities: the cohort loader reports that itself, with its own message)."""
    import yaml

    try:
        raw = yaml.safe_load((Path(path) / "cohort.yaml").read_text()) or {}
        mods = [(str(m["name"]), str(m["kind"]), m.get("path")) for m in raw.get("modalities") or []]
        return (str(raw.get("name") or Path(path).name), mods) if mods else None
    except Exception:  # noqa: BLE001 - an untrusted manifest: the cohort loader reports it itself
        return None


def _check_modulation(methods: list[MethodConfig], trainer: TrainerConfig) -> None:
    """Refuse ``trainer.modulation: agm`` with a method that cannot have two modality branches:
    one not marked ``branched`` in the registry, or given a single modality."""
    from modaltune.methods.registry import get_method
    from modaltune.training.modulation import NEEDS_BRANCHES

    if trainer.modulation != "agm":
        return
    for m in methods:
        try:
            entry = get_method(m.name)
        except Exception:  # noqa: BLE001 - any lookup failure is left to the runner / fit
            continue  # unknown names are reported by the runner / fit with a did-you-mean
        mods = m.params.get("modalities") or m.modalities
        if isinstance(mods, str):
            mods = [mods]
        if not entry.branched or (mods is not None and len(mods) < 2):
            why = f"{len(mods)} modality given" if entry.branched else "it fuses no separate modality encoders"
            raise PydanticCustomError("modulation", "{need}; method '{method}' has not ({why})", {"need": NEEDS_BRANCHES, "method": m.name, "why": why})


def data_refusals(methods: list[MethodConfig], data: DataConfig) -> list[tuple[int, str, str]]:
    """``(method index, cohort name (manifest), one-line reason naming the cohort folder)`` for each method that cannot run on a cohort of
    ``data.cohorts`` (absolute paths, as validated by ``load_config``): a modality it is given that the
    cohort lacks, a modality kind it requires (registry ``requires``) that its selected modalities
    lack, or what its registry ``check_data`` finds (an omics block with pathway lists, signature genes
    in the cohort; :mod:`modaltune.methods.requirements`). Methods whose ``cohorts`` leave a cohort out,
    unknown method names (reported by the runner / fit with a did-you-mean) and unreadable manifests
    (reported by the cohort loader) are skipped. Simulated cohorts have every modality."""
    from modaltune.methods.registry import MODALITY_KINDS, get_method
    from modaltune.methods.requirements import CohortData, check_method_data

    out: list[tuple[int, str, str]] = []
    for cohort in data.cohorts:
        view = _cohort_view(cohort)
        if view is None:
            continue
        name, mods = view
        shown = Path(cohort).name  # messages name the folder the config gives; the benchmark's tables use ``name``
        has = {n: k for n, k, _ in mods}
        for i, m in enumerate(methods):
            if m.cohorts is not None and name not in m.cohorts and Path(cohort).name not in m.cohorts:
                continue
            try:
                entry = get_method(m.name)
            except Exception:  # noqa: BLE001 - any lookup failure is left to the runner / fit
                continue
            requested = m.modalities or list(entry.modalities) or list(has)
            unknown = [r for r in requested if r not in has and r not in MODALITY_KINDS]
            if unknown:
                out.append((i, name, f"method '{m.name}' is given modality '{unknown[0]}' and cohort {shown} has none (it has: {', '.join(has)})"
                                     f" (fix: drop '{unknown[0]}' from the method's modalities, or run it on cohorts that have it)"))
                continue
            chosen = {n: k for n, k in has.items() if n in requested or k in requested}
            lacking = [k for k in entry.requires if k not in has.values()]
            if lacking:
                kinds = sorted(set(has.values()))
                out.append((i, name, f"method '{m.name}' needs {lacking[0]} data and cohort {shown} has none (it has: {', '.join(kinds) or 'none'})"))
                continue
            unselected = [k for k in entry.requires if k not in chosen.values()]
            if unselected:
                out.append((i, name, f"method '{m.name}' needs {unselected[0]} data and its modalities {requested} select none of cohort {shown}'s"))
                continue
            files = {n: Path(cohort) / (p or f"omics/{n}.parquet") for n, k, p in mods if k == "omics" and n in chosen}
            cd = CohortData(shown, chosen, files, {k: str(v) for k, v in data.pathways.items() if k in chosen})
            why = check_method_data(m.name, entry.check_data, m.params, entry.params, cd)
            if why:
                out.append((i, name, why))
    return out


def _check_required_modalities(methods: list[MethodConfig], data: DataConfig, info: ValidationInfo) -> None:
    """Refuse, at config load, a method that cannot run on one of the cohorts (:func:`data_refusals`;
    only when paths are checked, i.e. read by ``load_config``). The message is the first refusal."""
    if not (info.context or {}).get(PATH_CHECK_CONTEXT):
        return
    refused = data_refusals(methods, data)
    if refused:
        raise PydanticCustomError("method_modality", "{detail}", {"detail": refused[0][2] + (f" ({len(refused) - 1} more method/cohort pair(s) refused)" if len(refused) > 1 else "")})


class ExperimentConfig(_PathsMixin, StrictModel):
    """One method trained on one fold of one cohort (``modaltune fit``).

    ``fold`` is one fold index; the ``modaltune fit`` command also accepts a list of indices or
    ``all`` and then trains one model per fold (``OUT/fold<k>/``, with a progress bar over folds).
    The Python :func:`~modaltune.training.fit` trains one fold: call it per fold (:meth:`fold_list`).
    """

    name: str = "experiment"
    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    fold: int | list[int] | Literal["all"] = 0
    method: MethodConfig
    tasks: list[str] | None = None
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @model_validator(mode="after")
    def _modalities_present(self, info: ValidationInfo) -> ExperimentConfig:
        # ``cohorts`` restricts a method within a benchmark only: a fit always runs on its cohort
        _check_required_modalities([self.method.model_copy(update={"cohorts": None})], self.data, info)
        _check_modulation([self.method], self.trainer)
        return self

    @property
    def several_folds(self) -> bool:
        return not isinstance(self.fold, int)

    def fold_list(self, available: list[int]) -> list[int]:
        """Fold indices this config names, given the split's ``available`` indices."""
        if self.fold == "all":
            return list(available)
        return [self.fold] if isinstance(self.fold, int) else list(self.fold)


class BenchmarkConfig(_PathsMixin, StrictModel):
    """methods x cohorts x task sets x folds x seeds (``modaltune benchmark``).

    ``tasks`` is a list whose items are task names (each trained alone) or lists of names
    (trained jointly as one multi-task model); None = all cohort tasks jointly.
    ``seeds`` are training seeds (default: ``[trainer.seed]``). ``features`` describes the feature
    sources for the tables (default: the slide encoders named in the cohort manifests).
    """

    name: str = "benchmark"
    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    methods: list[MethodConfig] = Field(min_length=1)
    tasks: list[str | list[str]] | None = None
    seeds: list[int] = Field(default_factory=list)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    features: str | None = None

    @model_validator(mode="after")
    def _modalities_present(self, info: ValidationInfo) -> BenchmarkConfig:
        _check_required_modalities(self.methods, self.data, info)
        _check_modulation(self.methods, self.trainer)
        return self

    @model_validator(mode="after")
    def _unique_labels(self) -> BenchmarkConfig:
        labels = [m.display for m in self.methods]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"methods: duplicate method label(s) {dup}; give each a distinct 'label'")
        cmp = self.evaluation.compare
        if cmp is not None:
            named = [cmp] if isinstance(cmp, str) else [x for pair in cmp for x in pair]
            unknown = sorted({x for x in named if x not in labels})
            if unknown:
                raise ValueError(f"evaluation.compare names method(s) {unknown} that are not in methods (labels {labels})")
            if self.evaluation.bootstrap < 1:
                raise ValueError("evaluation.compare needs evaluation.bootstrap >= 1 resamples")
        return self

    def comparison_pairs(self) -> list[tuple[str, str]]:
        """(A, B) method labels of the paired comparisons (``evaluation.compare``)."""
        cmp = self.evaluation.compare
        if cmp is None:
            return []
        if isinstance(cmp, str):
            return [(m.display, cmp) for m in self.methods if m.display != cmp]
        return [(a, b) for a, b in cmp]

    def task_sets(self, cohort_tasks: list[str]) -> list[list[str]]:
        if self.tasks is None:
            return [list(cohort_tasks)]
        return [[t] if isinstance(t, str) else list(t) for t in self.tasks]

    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.trainer.seed]
