"""``PatientDataset`` and ``collate_patients``: the sample / batch contract of docs/ARCHITECTURE.md.

Flow::

    prep = CohortPreprocessor(cohort, modalities=["slide", "rna", "clinical"], tasks=["os"]).fit(fold.train)
    info = prep.info                                   # CohortInfo: input dims, task specs, bins
    ds = PatientDataset(cohort, fold.train, prep, training=True, max_patches=4096)
    loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=collate_patients, num_workers=2)

Everything fitted (omics scaling, clinical encoding, survival bin edges) uses the training patients
passed to :meth:`CohortPreprocessor.fit` only (``bin_mode="paper"`` fits bins on the whole cohort,
as the published code did). Slide bags are read lazily in ``__getitem__`` so that DataLoader
workers do the I/O. Missing modalities become zeros with ``modality_mask`` False; missing labels
become ``target_mask`` False; nothing is dropped (see :func:`summarize_exclusions`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from modaltune.data.bags import Bag, cap_patient_bag, is_diagnostic_slide, is_no_tissue_bag, load_patient_bag, open_bag
from modaltune.data.clinical import ClinicalEncoder
from modaltune.data.cohort import Cohort, TaskSpec, TaskTargets
from modaltune.data.omics import OmicsScaler, PathwayTokens, tokenize_pathways
from modaltune.data.splits import assign_survival_bins, survival_bin_edges
from modaltune.errors import InputError

__all__ = [
    "TaskInfo",
    "CohortInfo",
    "CohortPreprocessor",
    "PatientDataset",
    "bag_cache_fits",
    "collate_patients",
    "patient_records",
    "ExclusionReport",
    "summarize_exclusions",
]


@dataclass
class TaskInfo:
    """What a head / loss needs to know about one task.

    Attributes:
        spec: the task's :class:`TaskSpec`.
        n_classes: classes (classification), survival bins (survival), None (regression).
        class_names: class names (classification) or bin labels ``"[a, b)"`` (survival).
        bin_edges: (n_bins + 1,) survival bin edges fitted per ``bin_mode``; None otherwise.
        class_counts: training-patient counts: per class (classification), per bin plus
            ``events``/``censored`` (survival), ``labelled`` (regression).
    """

    spec: TaskSpec
    n_classes: int | None
    class_names: list[str] = field(default_factory=list)
    bin_edges: np.ndarray | None = None
    class_counts: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind


@dataclass
class CohortInfo:
    """Input dimensions and task specs a method builder needs (``build(spec, info)``).

    Attributes:
        slide_dim: patch feature dim D of the slide modality (None when no slide modality is used).
        slide_modality: name of the slide modality used (key in ``modality_mask``), or None.
        omics_dims: omics modality name -> number of features G.
        omics_feature_names: omics modality name -> gene/feature names (column order of the tensor).
        pathways: omics modality name -> :class:`PathwayTokens` (only for modalities given pathways).
        clinical_dim: F, width of ``batch["clinical"]`` (0 when clinical is not used).
        clinical_feature_names: names of the F clinical columns.
        text: True when a text modality is used.
        tasks: one :class:`TaskInfo` per task, in order.
        modalities: names of the modalities used (keys of ``modality_mask``).
        sites: site names of the whole cohort (sorted).
        clinical_modality: name of the clinical modality used (key in ``modality_mask``), or None.
        text_modality: name of the text modality used (key in ``modality_mask``), or None.
    """

    slide_dim: int | None
    slide_modality: str | None
    omics_dims: dict[str, int]
    omics_feature_names: dict[str, list[str]]
    pathways: dict[str, PathwayTokens] | None
    clinical_dim: int
    clinical_feature_names: list[str]
    text: bool
    tasks: list[TaskInfo]
    modalities: list[str]
    sites: list[str]
    clinical_modality: str | None = None
    text_modality: str | None = None

    def task(self, name: str) -> TaskInfo:
        for t in self.tasks:
            if t.spec.name == name:
                return t
        raise KeyError(name)


def _py_scalar(v: Any) -> Any:
    """A numpy scalar as a plain int / float (JSON-friendly)."""
    return v.item() if hasattr(v, "item") else v


class CohortPreprocessor:
    """Fit everything that must be learned from training patients only, then serve encoded values.

    Args:
        cohort: the cohort.
        modalities: modality names to use (default: every modality in the manifest). At most one
            slide modality (the batch has one ``slide`` entry).
        tasks: task names to use (default: all).
        omics_scaling: ``zscore`` | ``minmax`` | ``none``, fitted on training patients.
        bin_mode: ``strict`` (survival bins from training patients) or ``paper`` (whole cohort).
        pathways: omics modality name -> pathway membership (CSV/GMT path, DataFrame or PathwaySet);
            tokenised against that modality's columns.
    """

    def __init__(
        self,
        cohort: Cohort,
        *,
        modalities: list[str] | None = None,
        tasks: list[str] | None = None,
        omics_scaling: str = "zscore",
        bin_mode: str = "strict",
        pathways: dict[str, Any] | None = None,
    ):
        self.cohort = cohort
        names = [m.name for m in cohort.modalities]
        self.modality_names = list(names if modalities is None else modalities)
        for m in self.modality_names:
            cohort.manifest.modality(m)  # raises InputError naming the valid ones
        self.task_specs = [cohort.manifest.task(t) for t in (tasks if tasks is not None else [t.name for t in cohort.tasks])]
        slides = [m for m in self.modality_names if cohort.manifest.modality(m).kind == "slide"]
        if len(slides) > 1:
            raise InputError(f"{len(slides)} slide modalities selected ({slides}); a batch holds one", fix="choose one slide modality in 'modalities'")
        self.slide_modality = slides[0] if slides else None
        self.omics_modalities = [m for m in self.modality_names if cohort.manifest.modality(m).kind == "omics"]
        clin = [m for m in self.modality_names if cohort.manifest.modality(m).kind == "clinical"]
        self.clinical_modality = clin[0] if clin else None
        txt = [m for m in self.modality_names if cohort.manifest.modality(m).kind == "text"]
        self.text_modality = txt[0] if txt else None
        if bin_mode not in ("strict", "paper"):
            raise InputError(f"unknown bin_mode '{bin_mode}'", fix="use 'strict' or 'paper'")
        self.omics_scaling = omics_scaling
        OmicsScaler(omics_scaling)  # validates the method name early
        self.bin_mode = bin_mode
        self.pathway_sources = dict(pathways or {})
        for k in self.pathway_sources:
            if k not in self.omics_modalities:
                raise InputError(f"pathways given for '{k}', which is not a selected omics modality", fix=f"use one of {self.omics_modalities}")
        self._info: CohortInfo | None = None
        self.train_ids: list[str] = []

    # ------------------------------------------------------------------ fit
    def fit(self, train_ids: list[str]) -> CohortPreprocessor:
        c = self.cohort
        train_ids = [str(p) for p in train_ids]
        unknown = [p for p in train_ids if p not in c.patients.index]
        if unknown:
            raise InputError(f"{len(unknown)} training patient(s) not in cohort '{c.name}', e.g. {unknown[:3]}", fix="check the split")
        if not train_ids:
            raise InputError("no training patients", fix="check the split")
        self.train_ids = train_ids
        train = set(train_ids)
        self.availability = c.availability(check_files=True)

        # omics: scaler fitted on training rows only; all patients transformed once (small tables)
        self.omics_scaled: dict[str, pd.DataFrame] = {}
        self.scalers: dict[str, OmicsScaler] = {}
        pathways: dict[str, PathwayTokens] = {}
        for m in self.omics_modalities:
            tab = c.omics.get(m)
            if tab is None:
                raise InputError(f"omics modality '{m}' has no table", where=c.root or c.name, fix="check the modality's 'path' in cohort.yaml")
            tr = tab[tab.index.isin(train)]
            if len(tr) == 0:
                raise InputError(f"no training patient has omics modality '{m}'", where=c.root or c.name, fix="drop the modality or use another split")
            self.scalers[m] = OmicsScaler(self.omics_scaling).fit(tr)
            self.omics_scaled[m] = self.scalers[m].transform(tab)
            if m in self.pathway_sources:
                pathways[m] = tokenize_pathways(self.pathway_sources[m], list(self.scalers[m].columns or []))

        # clinical
        fields = c.manifest.clinical_fields if self.clinical_modality else []
        self.clinical_encoder = ClinicalEncoder(fields)
        clin = c.clinical
        self.clinical_encoder.fit(clin[clin.index.isin(train)] if len(clin) else clin, where=str(c.root / "clinical.csv") if c.root else "clinical")
        ids = list(c.patients.index)
        self.clinical_matrix = (
            self.clinical_encoder.transform(clin.reindex(ids), where=str(c.root / "clinical.csv") if c.root else "clinical")
            if fields
            else np.zeros((len(ids), 0), dtype=np.float32)
        )
        self._row = {p: i for i, p in enumerate(ids)}

        # tasks: targets for the whole cohort, bins per bin_mode
        is_train = np.array([p in train for p in ids])
        self.targets: dict[str, TaskTargets] = {}
        self.bins: dict[str, np.ndarray] = {}
        task_infos = []
        for spec in self.task_specs:
            tt = c.targets(spec)
            self.targets[spec.name] = tt
            use = tt.mask & is_train
            if spec.kind == "classification":
                counts = {cl: int(((tt.label == i) & use).sum()) for i, cl in enumerate(spec.classes)}
                task_infos.append(TaskInfo(spec, len(spec.classes), list(spec.classes), None, counts))
            elif spec.kind == "survival":
                fit_mask = use if self.bin_mode == "strict" else tt.mask
                edges = survival_bin_edges(np.where(tt.mask, tt.time, np.nan), tt.event, spec.n_bins, mode="strict", train_mask=fit_mask)
                b = assign_survival_bins(np.where(tt.mask, tt.time, 0.0), edges)
                self.bins[spec.name] = b
                names = [f"[{edges[i]:.4g}, {edges[i + 1]:.4g})" for i in range(len(edges) - 1)]
                counts = {nm: int(((b == i) & use).sum()) for i, nm in enumerate(names)}
                counts["events"] = int((tt.event[use] == 1).sum())
                counts["censored"] = int((tt.event[use] == 0).sum())
                task_infos.append(TaskInfo(spec, len(edges) - 1, names, edges, counts))
            else:
                task_infos.append(TaskInfo(spec, None, [], None, {"labelled": int(use.sum())}))

        # slides: dim/encoder from the manifest, else from the first readable bag
        slide_dim = None
        self.slide_dtype = torch.float32
        self.slide_encoder: str | None = None
        self.slide_tiling: dict[str, float | int] = {}
        self.slide_paths: dict[str, list[Path]] = {}
        if self.slide_modality:
            spec = c.manifest.modality(self.slide_modality)
            slide_dim, self.slide_encoder = spec.feature_dim, spec.encoder
            for pid, grp in c.slides.groupby("patient_id", sort=False):
                existing = [
                    c.resolve_path(p)
                    for p in grp["path"]
                    if isinstance(p, str) and c.resolve_path(p).exists() and not is_no_tissue_bag(c.resolve_path(p))
                ]
                if existing:
                    self.slide_paths[str(pid)] = existing
            first = next(iter(self.slide_paths.values()), None)
            if first:
                h = open_bag(first[0])
                if slide_dim is None:
                    slide_dim = h.dim
                if self.slide_encoder is None:  # the cohort's encoder: the manifest's, else the first bag's
                    self.slide_encoder = h.encoder
                # tiling of the training bags, so new slides can be extracted the same way (FittedModel.slide_features)
                self.slide_tiling = {k: _py_scalar(h.attrs[k]) for k in ("patch_size", "patch_size_level0", "target_magnification") if h.attrs.get(k) is not None}
                if h.dtype in (np.float16, np.float32):
                    self.slide_dtype = torch.float16 if h.dtype == np.float16 else torch.float32
            if slide_dim is None:
                raise InputError(
                    f"cannot tell the feature dim of slide modality '{self.slide_modality}': no bag file exists and the manifest has no feature_dim",
                    where=c.root or c.name,
                    fix="set feature_dim in cohort.yaml or drop the slide modality",
                )

        self.sites = sorted(map(str, c.patients["site"].astype(str).unique()))
        self._info = CohortInfo(
            slide_dim=slide_dim,
            slide_modality=self.slide_modality,
            omics_dims={m: len(self.scalers[m].columns or []) for m in self.omics_modalities},
            omics_feature_names={m: list(self.scalers[m].columns or []) for m in self.omics_modalities},
            pathways=pathways or None,
            clinical_dim=self.clinical_encoder.n_features if fields else 0,
            clinical_feature_names=self.clinical_encoder.feature_names if fields else [],
            text=self.text_modality is not None,
            tasks=task_infos,
            modalities=list(self.modality_names),
            sites=self.sites,
            clinical_modality=self.clinical_modality,
            text_modality=self.text_modality,
        )
        return self

    @property
    def fitted(self) -> bool:
        return self._info is not None

    @property
    def info(self) -> CohortInfo:
        if self._info is None:
            raise RuntimeError("CohortPreprocessor.info read before fit(train_ids)")
        return self._info

    # ------------------------------------------------------------------ per-patient values
    def row(self, patient_id: str) -> int:
        return self._row[patient_id]


class PatientDataset(Dataset):
    """One item = one patient (a sample dict, see :func:`collate_patients` for the batch).

    Sample keys: ``patient_id`` (str), ``site`` (str), ``slide`` ({``features`` (N, D) as stored,
    ``coords`` (N, 2) int64} when a slide modality is used; N = 0 when missing), ``omics``
    ({name: float32 (G,)}), ``pathways`` (shared per-modality index lists, when configured),
    ``clinical`` (float32 (F,)), ``text`` (str), ``record`` (raw patient + clinical table values,
    label side only: see :func:`patient_records`), ``modality_mask`` ({name: bool}), ``targets``
    ({task: {...}}), ``target_mask`` ({task: bool}).

    Args:
        training: random patch sampling per epoch (call :meth:`set_epoch`); evaluation uses a fixed
            seeded subset. With ``persistent_workers=True`` workers keep their epoch; leave it False.
        max_patches: patch cap per patient (None = all patches).
        diagnostic_only: keep only DX1 slides (see :func:`modaltune.data.bags.load_patient_bag`).
        max_bag_bytes: memory budget of one patient bag in bytes (None: ``$MODALTUNE_MAX_BAG_BYTES``,
            else half the available RAM; see :func:`modaltune.data.bags.bag_memory_budget`).
        cache_bags: keep each patient's full (uncapped) bag in memory after its first read and cap
            it in memory on later reads (:func:`modaltune.data.bags.cap_patient_bag`: the same patches
            as reading from disk). Worth it for several epochs over small bags, where opening an h5
            file costs more than its data; each DataLoader worker process would hold its own copy, so
            use it with ``num_workers=0`` (see :func:`bag_cache_fits` for the automatic choice).
    """

    def __init__(
        self,
        cohort: Cohort,
        patient_ids: list[str],
        preprocessor: CohortPreprocessor,
        *,
        training: bool,
        max_patches: int | None = None,
        seed: int = 0,
        diagnostic_only: bool = False,
        max_bag_bytes: int | None = None,
        cache_bags: bool = False,
    ):
        if not preprocessor.fitted:
            raise RuntimeError("PatientDataset needs a fitted CohortPreprocessor (call .fit(train_ids))")
        self.cohort = cohort
        self.patient_ids = [str(p) for p in patient_ids]
        unknown = [p for p in self.patient_ids if p not in cohort.patients.index]
        if unknown:
            raise InputError(f"{len(unknown)} patient(s) not in cohort '{cohort.name}', e.g. {unknown[:3]}", fix="check the split file")
        self.prep = preprocessor
        self.training = training
        self.max_patches = max_patches
        self.seed = seed
        self.epoch = 0
        self.diagnostic_only = diagnostic_only
        self.max_bag_bytes = max_bag_bytes
        self.cache_bags = bool(cache_bags)
        self._bag_cache: dict[str, Any] = {}
        info = preprocessor.info
        self._sites = cohort.patients["site"].astype(str)
        avail = preprocessor.availability
        self._avail = {m: set(avail.index[avail[m].to_numpy(dtype=bool)]) for m in info.modalities}
        # omics rows as float32 arrays, looked up by patient
        self._omics_index = {m: {p: i for i, p in enumerate(preprocessor.omics_scaled[m].index)} for m in preprocessor.omics_modalities}
        self._omics_values = {m: preprocessor.omics_scaled[m].to_numpy(dtype=np.float32) for m in preprocessor.omics_modalities}
        self._pathways = {m: [torch.from_numpy(ix) for ix in tok.gene_index] for m, tok in (info.pathways or {}).items()}
        self._text = cohort.text.astype(str).to_dict() if len(cohort.text) else {}
        self._records = patient_records(cohort, self.patient_ids)

    def __len__(self) -> int:
        return len(self.patient_ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the training patch subset of this epoch (no effect at evaluation)."""
        self.epoch = int(epoch)

    def _load(self, paths: list[str], max_patches: int | None):
        info = self.prep.info
        return load_patient_bag(
            paths,
            max_patches=max_patches,
            training=self.training,
            seed=self.seed,
            epoch=self.epoch,
            diagnostic_only=self.diagnostic_only,
            expected_dim=info.slide_dim,
            expected_encoder=self.prep.slide_encoder,
            max_bag_bytes=self.max_bag_bytes,
        )

    def _slide(self, pid: str) -> tuple[dict[str, torch.Tensor], bool]:
        prep, info = self.prep, self.prep.info
        paths = prep.slide_paths.get(pid)
        if not paths:
            return {"features": torch.zeros((0, info.slide_dim or 0), dtype=prep.slide_dtype), "coords": torch.zeros((0, 2), dtype=torch.long)}, False
        if self.cache_bags:
            full = self._bag_cache.get(pid)
            if full is None:
                full = self._bag_cache[pid] = self._load(paths, None)
            bag = cap_patient_bag(full, self.max_patches, training=self.training, seed=self.seed, epoch=self.epoch)
            if bag is full:  # never hand out the cached arrays themselves (a model could write to them)
                bag = Bag(full.features.copy(), None if full.coords is None else full.coords.copy(), full.attrs, full.source)
        else:
            bag = self._load(paths, self.max_patches)
        feats = torch.from_numpy(np.ascontiguousarray(bag.features))
        coords = torch.from_numpy(bag.coords) if bag.coords is not None else torch.zeros((bag.n_patches, 2), dtype=torch.long)
        return {"features": feats, "coords": coords}, True

    def __getitem__(self, i: int) -> dict[str, Any]:
        pid = self.patient_ids[i]
        prep, info = self.prep, self.prep.info
        mm: dict[str, bool] = {}
        sample: dict[str, Any] = {"patient_id": pid, "site": str(self._sites.loc[pid])}
        if info.slide_modality:
            sample["slide"], mm[info.slide_modality] = self._slide(pid)
        omics = {}
        for m in prep.omics_modalities:
            j = self._omics_index[m].get(pid)
            omics[m] = torch.from_numpy(self._omics_values[m][j].copy()) if j is not None else torch.zeros(info.omics_dims[m])
            mm[m] = j is not None
        sample["omics"] = omics
        if self._pathways:
            sample["pathways"] = self._pathways
        sample["clinical"] = torch.from_numpy(prep.clinical_matrix[prep.row(pid)].copy())
        if prep.clinical_modality:
            mm[prep.clinical_modality] = pid in self._avail[prep.clinical_modality]
        text = self._text.get(pid, "") if prep.text_modality else ""
        text = "" if text in ("nan", "None") else text
        sample["text"] = text
        sample["record"] = self._records.get(pid, {})
        if prep.text_modality:
            mm[prep.text_modality] = bool(text)
        sample["modality_mask"] = mm
        sample["targets"], sample["target_mask"] = self._targets(pid)
        return sample

    def _targets(self, pid: str) -> tuple[dict[str, dict[str, Any]], dict[str, bool]]:
        """``(targets, target_mask)`` of one patient (the sample's label side)."""
        prep = self.prep
        targets, tmask = {}, {}
        r = prep.row(pid)
        for spec in prep.task_specs:
            tt = prep.targets[spec.name]
            ok = bool(tt.mask[r])
            tmask[spec.name] = ok
            if spec.kind == "classification":
                targets[spec.name] = {"label": int(tt.label[r]) if ok else -1}
            elif spec.kind == "survival":
                targets[spec.name] = {
                    "time": float(tt.time[r]) if ok else 0.0,
                    "event": float(tt.event[r]) if ok else 0.0,
                    "bin": int(prep.bins[spec.name][r]) if ok else 0,
                }
            else:
                targets[spec.name] = {"value": float(tt.value[r]) if ok else 0.0}
        return targets, tmask

    def label_batch(self) -> dict[str, Any]:
        """The label side of every patient as one batch, without reading any bag: ``patient_id``,
        ``site``, ``text`` (str, "" when absent or not used), ``records``, ``targets`` and
        ``target_mask`` as :func:`collate_patients` builds them (e.g. to audit text targets against
        the inputs before training)."""
        prep = self.prep
        texts = []
        for pid in self.patient_ids:
            t = self._text.get(pid, "") if prep.text_modality else ""
            texts.append("" if t in ("nan", "None") else t)
        side = [self._targets(pid) for pid in self.patient_ids]
        targets: dict[str, dict[str, torch.Tensor]] = {}
        for t, first in (side[0][0] if side else {}).items():
            targets[t] = {k: torch.tensor([s[0][t][k] for s in side], dtype=torch.long if k in ("label", "bin") else torch.float32) for k in first}
        tmask = {t: torch.tensor([s[1][t] for s in side], dtype=torch.bool) for t in (side[0][1] if side else {})}
        return {"patient_id": list(self.patient_ids), "site": [str(self._sites.loc[p]) for p in self.patient_ids], "text": texts,
                "records": [self._records.get(p, {}) for p in self.patient_ids], "targets": targets, "target_mask": tmask}


def patient_records(cohort: Cohort, patient_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Raw patient-table + clinical-table values per patient (``None`` when missing).

    These are label-side values (e.g. the AJCC stage strings that ModalTune writes into label
    sentences); models must not read them as inputs (the encoded ``clinical`` matrix is the input).
    """
    tab = cohort.patients
    if len(cohort.clinical.columns):
        tab = tab.join(cohort.clinical, how="left", rsuffix="_clinical")
    tab = tab.reindex([p for p in patient_ids if p in tab.index])
    tab = tab.astype(object).where(tab.notna(), None)
    return {str(p): rec for p, rec in zip(tab.index, tab.to_dict("records"))}


#: upper bound of the automatic in-memory bag cache of one dataset (bytes on disk)
BAG_CACHE_MAX_BYTES = 4 << 30


def bag_cache_fits(preprocessor: CohortPreprocessor, patient_ids: list[str], budget_bytes: int | None = None) -> bool:
    """Whether the bag files of ``patient_ids`` fit the automatic bag cache: their total size on disk
    is at most ``budget_bytes`` (default: the smaller of 4 GiB and 1/8 of the RAM available now).

    On-disk size stands for in-memory size (modaltune and TRIDENT write uncompressed features);
    False when no patient has a slide.
    """
    import os

    from modaltune.data.bags import _available_ram_bytes

    if budget_bytes is None:
        avail = _available_ram_bytes()
        budget_bytes = BAG_CACHE_MAX_BYTES if avail is None else min(BAG_CACHE_MAX_BYTES, avail // 8)
    files = {str(p) for pid in patient_ids for p in (preprocessor.slide_paths.get(str(pid)) or [])}
    if not files:
        return False
    total = 0
    for f in files:
        try:
            total += os.path.getsize(f)
        except OSError:  # reported by the reader with its own message
            continue
        if total > budget_bytes:
            return False
    return True


def collate_patients(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the batch of docs/ARCHITECTURE.md.

    Slide bags are right-padded with zeros to the longest bag (at least 1 row, so that a batch of
    patients without slides still has a well-formed (B, 1, D) tensor with ``mask`` all False).
    Features keep their stored dtype (float16 stays float16; mixed dtypes promote).
    """
    if not samples:
        raise ValueError("collate_patients got an empty list")
    batch: dict[str, Any] = {
        "patient_id": [s["patient_id"] for s in samples],
        "site": [s["site"] for s in samples],
    }
    B = len(samples)
    if "slide" in samples[0]:
        feats = [s["slide"]["features"] for s in samples]
        n = max(1, max(f.shape[0] for f in feats))
        d = feats[0].shape[1]
        dtype = feats[0].dtype
        for f in feats[1:]:
            dtype = torch.promote_types(dtype, f.dtype)
        out = torch.zeros((B, n, d), dtype=dtype)
        coords = torch.zeros((B, n, 2), dtype=torch.long)
        mask = torch.zeros((B, n), dtype=torch.bool)
        for b, s in enumerate(samples):
            k = s["slide"]["features"].shape[0]
            out[b, :k] = s["slide"]["features"]
            coords[b, :k] = s["slide"]["coords"]
            mask[b, :k] = True
        batch["slide"] = {"features": out, "coords": coords, "mask": mask}
    batch["omics"] = {m: torch.stack([s["omics"][m] for s in samples]).float() for m in samples[0]["omics"]}
    if "pathways" in samples[0]:
        batch["pathways"] = samples[0]["pathways"]
    batch["clinical"] = torch.stack([s["clinical"] for s in samples]).float()
    batch["text"] = [s["text"] for s in samples]
    batch["records"] = [s.get("record", {}) for s in samples]
    batch["modality_mask"] = {m: torch.tensor([s["modality_mask"][m] for s in samples], dtype=torch.bool) for m in samples[0]["modality_mask"]}
    targets: dict[str, dict[str, torch.Tensor]] = {}
    for t, first in samples[0]["targets"].items():
        targets[t] = {}
        for k in first:
            vals = [s["targets"][t][k] for s in samples]
            dtype = torch.long if k in ("label", "bin") else torch.float32
            targets[t][k] = torch.tensor(vals, dtype=dtype)
    batch["targets"] = targets
    batch["target_mask"] = {t: torch.tensor([s["target_mask"][t] for s in samples], dtype=torch.bool) for t in samples[0]["target_mask"]}
    return batch


# ------------------------------------------------------------------------------------ exclusions
@dataclass
class ExclusionReport:
    """Who lacks what, and why.

    ``patients``: one row per (patient, missing item): columns ``patient_id, what`` (``modality`` |
    ``task`` | ``cohort``), ``name``, ``reason``. ``counts``: the same grouped, with ``n_patients``.
    ``n_patients``: patients considered.
    """

    patients: pd.DataFrame
    counts: pd.DataFrame
    n_patients: int

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_patients": self.n_patients, "modality": {}, "task": {}, "cohort": {}}
        for r in self.counts.itertuples(index=False):
            out[r.what].setdefault(r.name, {})[r.reason] = int(r.n_patients)
        return out

    def __str__(self) -> str:
        if not len(self.counts):
            return f"{self.n_patients} patients: nothing missing"
        lines = [f"{self.n_patients} patients; missing items:"]
        for r in self.counts.itertuples(index=False):
            lines.append(f"  {r.what} {r.name}: {r.n_patients} ({r.reason})")
        return "\n".join(lines)


def summarize_exclusions(
    cohort: Cohort,
    patient_ids: list[str] | None = None,
    *,
    modalities: list[str] | None = None,
    tasks: list[str] | None = None,
    diagnostic_only: bool = False,
) -> ExclusionReport:
    """Count patients missing each modality and each task label, with reasons.

    Reasons: slides ``no slide listed`` / ``expected feature file missing`` (every listed file
    absent) / ``some slide files missing`` (partial: the rest is used) / ``no DX1 slide (first slide
    used)``; omics ``not in omics table``; clinical ``no clinical values``; text ``no text``; task
    labels per :meth:`Cohort.targets` (``missing``, ``excluded value '...'``). Patients excluded at
    import (``excluded.csv``) are listed with ``what = cohort``.
    """
    ids = list(cohort.patients.index) if patient_ids is None else [str(p) for p in patient_ids]
    idset = set(ids)
    rows: list[tuple[str, str, str, str]] = []
    mods = [cohort.manifest.modality(m) for m in (modalities if modalities is not None else [m.name for m in cohort.modalities])]
    for m in mods:
        if m.kind == "slide":
            s = cohort.slides
            listed: dict[str, list[str]] = {}
            for pid, p in zip(s["patient_id"].astype(str), s["path"]):
                if pid in idset:
                    listed.setdefault(pid, []).append(p)
            for pid in ids:
                paths = listed.get(pid, [])
                if not paths:
                    rows.append((pid, "modality", m.name, "no slide listed"))
                    continue
                resolved = [cohort.resolve_path(p) for p in paths if isinstance(p, str)]
                exist = [q.exists() for q in resolved]
                no_tissue = [q.exists() and is_no_tissue_bag(q) for q in resolved]
                if any(no_tissue):
                    rows.append((pid, "modality", m.name, "no tissue found in slide (empty bag flagged by extract)"))
                    exist = [e and not nt for e, nt in zip(exist, no_tissue)]
                if not any(exist):
                    rows.append((pid, "modality", m.name, "expected feature file missing" if not any(no_tissue) else "no usable slide"))
                elif not all(exist):
                    rows.append((pid, "modality", m.name, "some slide files missing (rest used)"))
                if diagnostic_only and not any(is_diagnostic_slide(p) for p in paths):
                    rows.append((pid, "modality", m.name, "no DX1 slide (first slide used)"))
        elif m.kind == "omics":
            tab = cohort.omics.get(m.name)
            have = set(tab.index) if tab is not None else set()
            rows += [(pid, "modality", m.name, "not in omics table") for pid in ids if pid not in have]
        elif m.kind == "clinical":
            cl = cohort.clinical
            have = set(cl.index[cl.notna().any(axis=1)]) if len(cl.columns) else set()
            rows += [(pid, "modality", m.name, "no clinical values") for pid in ids if pid not in have]
        elif m.kind == "text":
            t = cohort.text.dropna().astype(str)
            have = set(t.index[t.str.len() > 0])
            rows += [(pid, "modality", m.name, "no text") for pid in ids if pid not in have]
    for name in tasks if tasks is not None else [t.name for t in cohort.tasks]:
        spec = cohort.manifest.task(name)
        tt = cohort.targets(spec, ids)
        for j in np.flatnonzero(~tt.mask):
            rows.append((ids[j], "task", name, _label_reason(cohort, spec, ids[j])))
    ex = cohort.excluded
    if len(ex):
        for pid, reason in zip(ex["patient_id"].astype(str), ex["reason"].astype(str)):
            rows.append((pid, "cohort", "import", reason))
    patients = pd.DataFrame(rows, columns=["patient_id", "what", "name", "reason"])
    counts = (
        patients.groupby(["what", "name", "reason"], sort=False).size().rename("n_patients").reset_index()
        if len(patients)
        else pd.DataFrame(columns=["what", "name", "reason", "n_patients"])
    )
    return ExclusionReport(patients, counts, len(ids))


def _label_reason(cohort: Cohort, spec: TaskSpec, pid: str) -> str:
    row = cohort.patients.loc[pid]
    if spec.kind == "classification":
        v = row[spec.label_column]
        if pd.isna(v) or str(v).strip() == "":
            return "missing"
        sv = str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v).strip()
        return f"excluded value '{sv}'"
    if spec.kind == "survival":
        t, e = pd.to_numeric(pd.Series([row[spec.time_column]]), errors="coerce")[0], pd.to_numeric(pd.Series([row[spec.event_column]]), errors="coerce")[0]
        return "missing time" if pd.isna(t) else ("missing event" if pd.isna(e) else "missing")
    return "missing"
