"""Synthetic multi-site, multi-modal cohorts with known ground truth.

**Everything this module writes is synthetic.** No patient, slide or gene measurement in a
simulated cohort is real; only the gene *symbols* and pathway *names* are real, so that the
omics readers and pathway tokenisers run on realistic identifiers.

The generative model (equations in ``docs/simulation.md``) in one paragraph: each patient has a
latent state ``z`` of six standard-normal factors. Two are visible only in the slide bags
(``slide_1`` drives tumour vs stroma content and tumour-cell appearance, ``slide_2`` drives necrosis
and a second tumour-cell direction), two only in RNA through pathway activities (``omics_1``,
``omics_2``), one only in the clinical fields (``clinical`` drives stage and age) and one
(``shared``, immune infiltration) in both slides and RNA. The binary ``subtype`` depends on
``slide_1`` and ``omics_1`` (main effects) **and on the product** ``slide_2 * omics_2``; the survival
hazard on ``slide_2``, ``omics_2``, the product ``slide_1 * omics_1``, stage and age. A product of two
independent factors has no marginal effect, so no single modality and no late fusion of
single-modality models can use it, while a model reading slide and omics jointly can. Each
modality alone is informative but incomplete, and fusion helps.

Public entry point: :func:`simulate_cohort`. It writes a cohort directory (see
:mod:`modaltune.data.cohort`) and returns the loaded :class:`~modaltune.data.cohort.Cohort`.
It is a short pipeline of stage functions, each usable and testable alone (typed dataclass inputs
and outputs; ``docs/simulation.md``, "Stages"): :func:`resolve_settings` ->
:func:`simulate_latent` -> :func:`simulate_clinical_values` -> :func:`simulate_tasks` ->
:func:`simulate_missingness` -> :func:`simulate_slide_world` / :func:`simulate_slide_bags` /
:func:`write_slide_bags` -> :func:`simulate_omics` -> :func:`simulate_reports` ->
:func:`build_tables` -> :func:`write_tables` (with :func:`build_manifest`).
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modaltune.errors import ConfigError, InputError
from modaltune.fileio import publish_dir, removes_staging_on_error, staging_dir

if TYPE_CHECKING:  # pragma: no cover
    from modaltune.data.cohort import Cohort, CohortManifest

__all__ = [
    "DEFAULT_MISSING_RATES",
    "LATENT_FACTORS",
    "PRESETS",
    "TISSUE_TYPES",
    "ClinicalValues",
    "CohortTables",
    "LatentState",
    "Missingness",
    "OmicsData",
    "RandomStreams",
    "SignalSpec",
    "SimSettings",
    "SlideBag",
    "SlideWorld",
    "TaskOutcomes",
    "build_manifest",
    "build_tables",
    "builtin_pathways",
    "load_pathway_matrix",
    "resolve_settings",
    "signal_check",
    "simulate_clinical_values",
    "simulate_cohort",
    "simulate_latent",
    "simulate_missingness",
    "simulate_omics",
    "simulate_reports",
    "simulate_slide_bags",
    "simulate_slide_world",
    "simulate_tasks",
    "tissue_logits",
    "write_slide_bags",
    "write_tables",
]

#: the label every table, figure and protocol line carries for a cohort made by this module
SIMULATED_LABEL = "SIMULATED (synthetic cohort, not real patients)"

#: Bumped whenever the same arguments + seed would give different data.
GENERATOR_VERSION = 2

#: Latent factor names, in column order of ``ground_truth.csv`` (``z_<name>``).
LATENT_FACTORS = ("slide_1", "slide_2", "omics_1", "omics_2", "clinical", "shared")

#: Prototype tissue types of the simulated patch encoder (index = ``tissue_type`` value).
TISSUE_TYPES = ("tumour", "stroma", "lymphocytes", "necrosis", "normal", "adipose")

#: Fraction of patients lacking each modality. ``cnv``/``mut`` default to the RNA-missing patients
#: (omics come from the same sample); ``clinical_field`` is extra per-field missingness.
DEFAULT_MISSING_RATES: dict[str, float] = {"slide": 0.1, "rna": 0.2, "clinical": 0.05, "text": 0.1, "clinical_field": 0.05}

#: Size presets. Explicit arguments to :func:`simulate_cohort` override them.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_patients": 40, "feature_dim": 16, "patches": (16, 64), "slides_per_patient": (1, 2)},
    "demo": {"n_patients": 300, "feature_dim": 64, "patches": (64, 512), "slides_per_patient": (1, 2)},
    "large": {"n_patients": 1000, "feature_dim": 128, "patches": (256, 4096), "slides_per_patient": (1, 3)},
}

_SITE_INFO = {  # site -> (location, site-level diagnosis phrase). Deliberately NOT subtype-specific.
    "BRCA": ("breast", "carcinoma of the breast"),
    "LUAD": ("lung", "carcinoma of the lung"),
    "LUSC": ("lung", "carcinoma of the lung"),
    "NSCLC": ("lung", "non-small cell carcinoma of the lung"),
    "KIRC": ("kidney", "renal cell carcinoma"),
    "KIRP": ("kidney", "renal cell carcinoma"),
    "RCC": ("kidney", "renal cell carcinoma"),
    "BLCA": ("bladder", "urothelial carcinoma"),
    "COADREAD": ("colon and rectum", "adenocarcinoma of the large bowel"),
    "GBMLGG": ("brain", "glioma"),
    "HNSC": ("head and neck", "squamous cell carcinoma"),
    "LIHC": ("liver", "hepatocellular carcinoma"),
    "PAAD": ("pancreas", "adenocarcinoma of the pancreas"),
    "SKCM": ("skin", "melanoma"),
    "STAD": ("stomach", "adenocarcinoma of the stomach"),
    "UCEC": ("uterus", "endometrial carcinoma"),
}
_STAGES = ("Stage I", "Stage II", "Stage III", "Stage IV")
_STAGE_WORDS = ("one", "two", "three", "four")
_GRADES = ("G1", "G2", "G3")
_SEXES = ("female", "male")

# Pathway-name keywords selecting which pathways carry which omics factor (sign = direction).
# Matches both the built-in list and MSigDB Hallmark names (HALLMARK_E2F_TARGETS, ...).
_PATHWAY_FACTORS: dict[str, list[tuple[str, float]]] = {
    "omics_1": [("E2F", 1.0), ("G2M", 1.0), ("MYC_TARGETS", 1.0), ("DNA_REPAIR", 0.7),
                ("ESTROGEN_RESPONSE", -1.0), ("FATTY_ACID", -0.7), ("OXIDATIVE_PHOSPHORYLATION", -0.7)],
    "omics_2": [("HYPOXIA", 1.0), ("GLYCOLYSIS", 1.0), ("MESENCHYMAL", 1.0), ("TGF_BETA", 0.8), ("ANGIOGENESIS", 0.8)],
    "shared": [("INTERFERON_GAMMA", 1.0), ("T_CELL", 1.0), ("INFLAMMATORY_RESPONSE", 0.8), ("ALLOGRAFT", 1.0)],
}
_MAX_PATHWAYS_PER_FACTOR = 8

# Genes used for the CNV and mutation blocks (those present in the RNA gene list are used).
_CNV_GENES = ("MYC", "CCND1", "CDK4", "MDM2", "ERBB2", "EGFR", "KRAS", "PIK3CA", "AKT1", "CCNE1", "TP53", "PTEN",
              "CDKN2A", "RB1", "SMAD4", "BRCA1", "BRCA2", "ATM", "VEGFA", "ESR1", "AR", "MCL1", "BCL2L1", "TERT",
              "SOX2", "FGFR1", "MET", "NKX2-1", "GATA3", "FOXA1")
_MUT_GENES = ("TP53", "PIK3CA", "KRAS", "PTEN", "CTNNB1", "BRCA1", "BRCA2", "ATM", "AKT1", "CDKN2A", "RB1",
              "SMAD4", "NOTCH1", "ARID1A", "KMT2D", "EGFR", "BRAF", "NRAS", "APC", "VHL")


@dataclass
class SignalSpec:
    """Effect sizes of the generative model (see ``docs/simulation.md`` for the equations).

    Subtype logit: ``sub_slide*z_slide_1 + sub_omics*z_omics_1 + sub_interaction*z_slide_2*z_omics_2
    + sub_shared*z_shared + site offset``. Survival log-hazard: ``surv_slide*z_slide_2 +
    surv_omics*z_omics_2 + surv_interaction*z_slide_1*z_omics_1 + surv_stage*(stage-1.5) +
    surv_age*(age-60)/10 + surv_shared*z_shared + site log-baseline``. Each task's main effects come
    from one slide/omics factor pair and its interaction from the product of the *other* pair: the
    product has no marginal effect, so single modalities and any additive or late fusion miss it,
    while a model that combines slide and omics jointly can learn it.
    ``slide_noise`` (per-dimension patch noise sd), ``rna_noise`` (per-gene noise sd) and
    ``pathway_noise`` (per-pathway activity noise sd) set how well each modality measures its factors.
    """

    sub_slide: float = 3.0
    sub_omics: float = 3.0
    sub_interaction: float = 2.5
    sub_shared: float = 0.2
    sub_site_sd: float = 0.3
    surv_slide: float = 0.9
    surv_omics: float = 0.9
    surv_interaction: float = 0.6
    surv_stage: float = 0.45
    surv_age: float = 0.2
    surv_shared: float = -0.2
    surv_site_sd: float = 0.3
    weibull_shape: float = 1.2
    baseline_scale_months: float = 60.0
    slide_noise: float = 1.0
    tumour_shift: float = 0.6
    rna_noise: float = 0.8
    pathway_noise: float = 0.4

    @classmethod
    def from_any(cls, value: SignalSpec | Mapping[str, float] | None) -> SignalSpec:
        if value is None:
            return cls()
        if isinstance(value, SignalSpec):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"unknown signal setting(s) {unknown}", where="simulate_cohort(signal=...)", fix=f"use keys from {sorted(known)}")
        return cls(**{k: float(v) for k, v in value.items()})


# ------------------------------------------------------------------------------------------ pathways
def load_pathway_matrix(path: str | Path) -> pd.DataFrame:
    """Read a gene x pathway 0/1 matrix (shared/data/pathways format: first column = gene symbol,
    named ``gene`` or unnamed). Returns an int8 DataFrame indexed by gene, pathways with no gene dropped."""
    path = Path(path)
    if not path.exists():
        raise InputError("pathway file not found", where=path, fix="pass an existing gene x pathway CSV or omit pathways_file to use the built-in list")
    try:
        df = pd.read_csv(path, index_col=0)
    except Exception as exc:
        raise InputError(f"cannot read pathway matrix ({type(exc).__name__})", where=path, fix="use a CSV with genes in the first column and 0/1 pathway columns") from exc
    df.index = df.index.astype(str)
    df.index.name = "gene"
    df = df[~df.index.duplicated(keep="first")]
    try:
        df = df.fillna(0).astype(np.int8)
    except (TypeError, ValueError) as exc:
        raise InputError("pathway matrix has non-numeric cells", where=path, fix="cells must be 0 or 1") from exc
    if not set(np.unique(df.to_numpy())) <= {0, 1}:
        raise InputError("pathway matrix cells must be 0 or 1", where=path, fix="binarise the membership matrix")
    df = df.loc[:, df.sum(axis=0) > 0]
    if df.shape[1] == 0:
        raise InputError("pathway matrix has no pathway with any gene", where=path, fix="check the file format")
    return df


def builtin_pathways() -> pd.DataFrame:
    """The built-in ~240-gene x 21-pathway matrix (real gene symbols in small hallmark-like
    groups, curated for simulation; not the MSigDB gene sets)."""
    ref = resources.files("modaltune") / "resources" / "sim_pathways.csv"
    with resources.as_file(ref) as p:
        return load_pathway_matrix(p)


def _factor_loadings(pathways: list[str], rng: np.random.Generator) -> np.ndarray:
    """(P, n_factors) loadings of pathway activity on the latent factors, chosen by pathway name
    keywords; factors with fewer than 2 matches get 4 random unused pathways (seeded)."""
    L = np.zeros((len(pathways), len(LATENT_FACTORS)))
    used: set[int] = set()
    upper = [p.upper() for p in pathways]
    for factor, keys in _PATHWAY_FACTORS.items():
        j = LATENT_FACTORS.index(factor)
        hits: list[tuple[int, float]] = []
        for key, sign in keys:
            for i, name in enumerate(upper):
                if key in name and i not in used and all(i != h for h, _ in hits):
                    hits.append((i, sign))
        hits = hits[:_MAX_PATHWAYS_PER_FACTOR]
        if len(hits) < 2:
            free = [i for i in range(len(pathways)) if i not in used and all(i != h for h, _ in hits)]
            extra = rng.choice(free, size=min(4, len(free)), replace=False) if free else []
            hits += [(int(i), float(rng.choice([-1.0, 1.0]))) for i in extra]
        for i, sign in hits:
            L[i, j] = sign
            used.add(i)
    return L


# ------------------------------------------------------------------------------------------ slides
def _tissue_grid(rng: np.random.Generator, n_target: int, n_min: int, n_max: int) -> np.ndarray:
    """Integer grid cells (M, 2) (col, row) of a tissue-like region: a union of 1-3 rotated
    ellipses (separate fragments possible) minus 0-2 elliptic holes, scaled so that M is close to
    ``n_target`` and always within [n_min, n_max]. Returned in raster order (row, then col)."""
    n_ell = int(rng.integers(1, 4))
    w = rng.dirichlet(np.full(n_ell, 2.0))
    aspect = rng.uniform(0.45, 1.0, n_ell)
    theta = rng.uniform(0, np.pi, n_ell)
    area = w * n_target * 1.1
    a = np.sqrt(area / (np.pi * aspect))
    b = a * aspect
    centres = np.zeros((n_ell, 2))
    for j in range(1, n_ell):
        ang = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.6, 1.3) * (a[0] + a[j])
        centres[j] = centres[0] + dist * np.array([np.cos(ang), np.sin(ang)])
    n_holes = int(rng.integers(0, 3))
    host = rng.integers(0, n_ell, n_holes)
    hole_c = centres[host] + rng.uniform(-0.4, 0.4, (n_holes, 2)) * a[host, None]
    hole_r = np.sqrt(n_target * rng.uniform(0.01, 0.04, n_holes) / np.pi)

    def cells(scale: float) -> np.ndarray:
        ext = (np.abs(centres) + a[:, None]).max() * scale + 2
        r = np.arange(-int(np.ceil(ext)), int(np.ceil(ext)) + 1)
        gx, gy = np.meshgrid(r, r)
        pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(float)
        inside = np.zeros(len(pts), bool)
        for j in range(n_ell):
            d = (pts - centres[j] * scale) @ np.array([[np.cos(theta[j]), -np.sin(theta[j])], [np.sin(theta[j]), np.cos(theta[j])]])
            inside |= (d[:, 0] / (a[j] * scale)) ** 2 + (d[:, 1] / (b[j] * scale)) ** 2 <= 1.0
        for c, rad in zip(hole_c, hole_r):
            inside &= ((pts - c * scale) ** 2).sum(1) > (rad * scale) ** 2
        return pts[inside].astype(np.int64)

    scale = 1.0
    pts = cells(scale)
    for _ in range(8):  # converge the area on n_target (area scales with scale**2)
        if abs(len(pts) - n_target) <= 0.05 * n_target and n_min <= len(pts) <= n_max:
            break
        scale *= np.sqrt(n_target / max(len(pts), 1))
        pts = cells(scale)
    while len(pts) < n_min:  # rare: tiny shapes dominated by rounding
        scale *= 1.15
        pts = cells(scale)
    if len(pts) > n_max:  # trim the cells farthest from the centroid: keeps the region contiguous
        d = ((pts - pts.mean(0)) ** 2).sum(1)
        pts = pts[np.sort(np.argsort(d, kind="stable")[:n_max])]
    pts = pts - pts.min(0)
    order = np.lexsort((pts[:, 0], pts[:, 1]))
    return pts[order]


def _tissue_types(rng: np.random.Generator, grid: np.ndarray, props: np.ndarray) -> np.ndarray:
    """Spatially coherent tissue-type map: Voronoi regions around random seed patches whose types
    are drawn from ``props`` (K,). Returns int8 (M,)."""
    m = len(grid)
    n_seeds = int(np.clip(m // 12, 4, 64))
    n_seeds = min(n_seeds, m)
    seeds = rng.choice(m, size=n_seeds, replace=False)
    seed_type = rng.choice(len(props), size=n_seeds, p=props)
    d = ((grid[:, None, :] - grid[seeds][None, :, :]) ** 2).sum(-1)
    return seed_type[np.argmin(d, axis=1)].astype(np.int8)


# ------------------------------------------------------------------------------------------ helpers
def _resolve(preset: str, **explicit: Any) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'", where="simulate_cohort(preset=...)", fix=f"use one of {sorted(PRESETS)}")
    out = dict(PRESETS[preset])
    out.update({k: v for k, v in explicit.items() if v is not None})
    return out


def _pick(rng: np.random.Generator, n: int, rate: float, what: str) -> np.ndarray:
    """Boolean (n,) with exactly round(rate * n) True entries (seeded)."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"missing rate for '{what}' is {rate}, outside [0, 1]", where="simulate_cohort(missing_rates=...)", fix="use a fraction between 0 and 1")
    mask = np.zeros(n, bool)
    mask[rng.choice(n, size=int(round(rate * n)), replace=False)] = True
    return mask


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate_censoring(t_event: np.ndarray, e_cens: np.ndarray, target: float, follow_up: float = np.inf) -> float:
    """Rate r of exponential censoring C = min(e_cens / r, follow_up) such that mean(C < T) ==
    target (bisection on log r; if administrative censoring alone exceeds the target, r -> 0). The
    censoring draw stays independent of the event times; only its scale is cohort-level."""
    if target <= 0:
        return 0.0
    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        frac = np.mean(np.minimum(e_cens / np.exp(mid), follow_up) < t_event)
        lo, hi = (mid, hi) if frac < target else (lo, mid)
    return float(np.exp((lo + hi) / 2))


def _prepare_out(out: str | Path | None, overwrite: bool | None) -> Path:
    if out is None:
        return Path(tempfile.mkdtemp(prefix="modaltune-sim-"))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        manifest = out / "cohort.yaml"
        previous_sim = False
        if manifest.exists():
            import yaml

            try:
                raw = yaml.safe_load(manifest.read_text()) or {}
                previous_sim = bool(raw.get("synthetic")) and "simulation" in (raw.get("extra") or {})
            except Exception:  # noqa: BLE001 - an unreadable manifest just means not a previous simulation
                previous_sim = False
        allowed = overwrite if overwrite is not None else previous_sim
        if not allowed or not manifest.exists():
            raise InputError(
                "output directory is not empty" + ("" if manifest.exists() else " and is not a cohort"),
                where=out,
                fix="choose a new --out directory" + (" or pass overwrite=True" if manifest.exists() else ""),
            )
        # the old cohort stays until the new one is complete (publish_dir swaps them)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


# ------------------------------------------------------------------------------------------ stage types
# simulate_cohort is a pipeline of stages, each a function of typed inputs that can be run and tested
# alone. Draw order is part of the output: every stage draws only from its own stream(s) of
# RandomStreams, so the files stay byte-identical to the single-function version (GENERATOR_VERSION 2).
@dataclass(frozen=True)
class SimSettings:
    """Validated arguments of :func:`simulate_cohort` with the preset resolved.

    Values the user passed are kept as given (not re-cast) because they are echoed into
    ``cohort.yaml`` (``extra.simulation``), whose bytes must not change.
    """

    preset: str
    seed: int
    n_patients: int
    sites: list[str]
    feature_dim: int
    patches: tuple[int, int]
    slides_per_patient: tuple[int, int]
    n_genes: int | None
    pathways_file: str | Path | None
    missing_rates: dict[str, float]
    censoring_rate: float
    max_follow_up_months: float
    signal: SignalSpec
    float16: bool
    patch_size_level0: int
    include_stage_task: bool
    n_folds: int
    name: str
    world_seed: int | None


@dataclass
class RandomStreams:
    """One seeded generator per block of draws (``SeedSequence(seed).spawn(10)``, in this order).

    Independent streams make the blocks independent: changing e.g. the missing rates does not change
    the latent state. With a ``world_seed`` different from ``seed``, ``site`` and ``proto`` (the slide
    *world*: site effects, tissue prototypes, tumour directions) come from ``world_seed`` instead.
    """

    latent: np.random.Generator
    site: np.random.Generator
    slide: np.random.Generator
    rna: np.random.Generator
    cnv_mut: np.random.Generator
    clinical: np.random.Generator
    survival: np.random.Generator
    missing: np.random.Generator
    text: np.random.Generator
    proto: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int, world_seed: int | None = None) -> RandomStreams:
        gens = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(10)]
        if world_seed is not None and int(world_seed) != int(seed):
            world = np.random.SeedSequence(int(world_seed)).spawn(10)
            gens[1], gens[9] = np.random.default_rng(world[1]), np.random.default_rng(world[9])
        return cls(*gens)


@dataclass
class LatentState:
    """Patients, their sites and latent factors, and the site effects.

    ``sites`` (S,) site names; ``site_idx`` (n,) int index into ``sites``; ``site_of_patient`` (n,)
    str; ``patient_ids`` (n,) str ``SIM-<site>-<number>``; ``Z`` (n, 6) float standard-normal
    factors in :data:`LATENT_FACTORS` order; site effects: ``site_subtype`` (S,) subtype-logit
    offset, ``site_hazard`` (S,) log-hazard offset, ``site_feature`` (S, D) patch-feature shift,
    ``site_tissue`` (S, K) tissue-composition logit offsets (K = len(TISSUE_TYPES)).
    """

    sites: list[str]
    site_idx: np.ndarray
    site_of_patient: np.ndarray
    patient_ids: np.ndarray
    Z: np.ndarray
    site_subtype: np.ndarray
    site_hazard: np.ndarray
    site_feature: np.ndarray
    site_tissue: np.ndarray

    @property
    def n(self) -> int:
        return len(self.patient_ids)

    def factor(self, name: str) -> np.ndarray:
        """(n,) values of one latent factor (a name of :data:`LATENT_FACTORS`)."""
        return self.Z[:, LATENT_FACTORS.index(name)]


@dataclass
class ClinicalValues:
    """True clinical values (before missingness): ``stage_idx`` (n,) int 0..3 (index into stages
    I-IV), ``age`` (n,) float years (whole, 20-90), ``grade_idx`` (n,) int 0..2 (G1-G3),
    ``sex_idx`` (n,) int 0/1 (female/male)."""

    stage_idx: np.ndarray
    age: np.ndarray
    grade_idx: np.ndarray
    sex_idx: np.ndarray


@dataclass
class TaskOutcomes:
    """Labels and their generative quantities, all (n,): ``subtype_logit`` / ``subtype_prob``
    (P(subtype B)), ``subtype`` int 0 = A / 1 = B; ``risk`` true log-hazard; ``event_time`` and
    ``censor_time`` months (censor time may be inf); ``event`` int 0/1; ``time`` observed months
    (rounded to 0.1, at least 0.1)."""

    subtype_logit: np.ndarray
    subtype_prob: np.ndarray
    subtype: np.ndarray
    risk: np.ndarray
    event_time: np.ndarray
    censor_time: np.ndarray
    event: np.ndarray
    time: np.ndarray


@dataclass
class Missingness:
    """Which patients lack what, boolean (n,) arrays (True = missing): ``modality`` keyed by
    ``slide, rna, clinical, text, cnv, mut``; ``fields`` keyed by clinical field
    (``age, stage, sex, grade``: a single empty cell)."""

    modality: dict[str, np.ndarray]
    fields: dict[str, np.ndarray]


@dataclass
class SlideWorld:
    """The simulated patch encoder's feature space: ``prototypes`` (K, D) one mean feature vector
    per tissue type, ``directions`` (3, D) the tumour-appearance directions v1, v2 (``slide_1``,
    ``slide_2``) and the lymphocyte direction v3 (``shared``)."""

    prototypes: np.ndarray
    directions: np.ndarray


@dataclass
class SlideBag:
    """One simulated slide: patient ``patient`` (row index), slide number ``slide`` (0-based),
    ``features`` (M, D) float64 (cast to float16/32 when written), ``grid`` (M, 2) int64 patch
    cells (col, row) in raster order (level-0 px = (grid + 2) * patch_size_level0), ``tissue`` (M,)
    int8 tissue-type index."""

    patient: int
    slide: int
    features: np.ndarray
    grid: np.ndarray
    tissue: np.ndarray


@dataclass
class OmicsData:
    """Omics of every patient (before missingness): ``pathways`` the gene x pathway 0/1 matrix used
    (G, P) int8 DataFrame; ``loadings`` (P, 6) float pathway activity on each latent factor;
    ``rna`` (n, G) float32 log2-expression-like; ``cnv`` (n, G_cnv) float32 in -2..2; ``mut``
    (n, G_mut) float32 0/1; tables indexed by ``patient_id``."""

    pathways: pd.DataFrame
    loadings: np.ndarray
    rna: pd.DataFrame
    cnv: pd.DataFrame
    mut: pd.DataFrame


@dataclass
class CohortTables:
    """The cohort tables with missingness applied: ``patients`` (n rows: site, subtype, survival,
    optional stage), ``clinical`` (n rows, empty cells where missing), ``omics`` (rows of patients
    that have each omics modality), ``ground_truth`` (n rows: latent factors, true logits/risk,
    event/censor times, missing_* flags)."""

    patients: pd.DataFrame
    clinical: pd.DataFrame
    omics: dict[str, pd.DataFrame]
    ground_truth: pd.DataFrame


# ------------------------------------------------------------------------------------------ stages
def resolve_settings(
    *,
    preset: str = "demo",
    n_patients: int | None = None,
    sites: Sequence[str] = ("BRCA", "LUAD", "KIRC"),
    seed: int = 0,
    feature_dim: int | None = None,
    patches: tuple[int, int] | None = None,
    slides_per_patient: tuple[int, int] | None = None,
    n_genes: int | None = None,
    pathways_file: str | Path | None = None,
    missing_rates: Mapping[str, float] | None = None,
    censoring_rate: float = 0.4,
    max_follow_up_months: float = 180.0,
    signal: SignalSpec | Mapping[str, float] | None = None,
    float16: bool = True,
    patch_size_level0: int = 256,
    include_stage_task: bool = False,
    n_folds: int = 5,
    name: str | None = None,
    world_seed: int | None = None,
) -> SimSettings:
    """Check :func:`simulate_cohort`'s arguments (one-line :class:`ConfigError` on a bad one) and
    resolve the preset. Draws nothing."""
    cfg = _resolve(preset, n_patients=n_patients, feature_dim=feature_dim, patches=patches, slides_per_patient=slides_per_patient)
    n = int(cfg["n_patients"])
    dim = int(cfg["feature_dim"])
    pmin, pmax = (int(v) for v in cfg["patches"])
    smin, smax = (int(v) for v in cfg["slides_per_patient"])
    sites = [str(s) for s in sites]
    if n < 2:
        raise ConfigError(f"n_patients={n} is too small", where="simulate_cohort(n_patients=...)", fix="use at least 2 patients")
    if not sites or len(set(sites)) != len(sites):
        raise ConfigError(f"sites {sites} must be a non-empty list of distinct names", where="simulate_cohort(sites=...)", fix="e.g. sites=('BRCA', 'LUAD')")
    if not (1 <= pmin <= pmax):
        raise ConfigError(f"patches={cfg['patches']} must satisfy 1 <= min <= max", where="simulate_cohort(patches=...)", fix="e.g. patches=(64, 512)")
    if not (1 <= smin <= smax):
        raise ConfigError(f"slides_per_patient={cfg['slides_per_patient']} must satisfy 1 <= min <= max", where="simulate_cohort(slides_per_patient=...)", fix="e.g. (1, 2)")
    if dim < 4:
        raise ConfigError(f"feature_dim={dim} is too small", where="simulate_cohort(feature_dim=...)", fix="use feature_dim >= 4")
    if not 0.0 <= censoring_rate < 1.0:
        raise ConfigError(f"censoring_rate={censoring_rate} outside [0, 1)", where="simulate_cohort(censoring_rate=...)", fix="e.g. 0.4")
    if not max_follow_up_months > 0:
        raise ConfigError(f"max_follow_up_months={max_follow_up_months} must be > 0", where="simulate_cohort(max_follow_up_months=...)", fix="e.g. 180 (or inf for none)")
    rates = dict(DEFAULT_MISSING_RATES)
    if missing_rates:
        unknown = sorted(set(missing_rates) - {"slide", "rna", "cnv", "mut", "clinical", "text", "clinical_field"})
        if unknown:
            raise ConfigError(f"unknown missing-rate key(s) {unknown}", where="simulate_cohort(missing_rates=...)", fix="use slide, rna, cnv, mut, clinical, text, clinical_field")
        rates.update({k: float(v) for k, v in missing_rates.items()})
    return SimSettings(
        preset=preset, seed=seed, n_patients=n, sites=sites, feature_dim=dim, patches=(pmin, pmax), slides_per_patient=(smin, smax),
        n_genes=n_genes, pathways_file=pathways_file, missing_rates=rates, censoring_rate=censoring_rate,
        max_follow_up_months=max_follow_up_months, signal=SignalSpec.from_any(signal), float16=float16,
        patch_size_level0=patch_size_level0, include_stage_task=include_stage_task, n_folds=n_folds,
        name=name or f"sim_{preset}_seed{seed}", world_seed=world_seed,
    )


def simulate_latent(n: int, sites: Sequence[str], feature_dim: int, signal: SignalSpec,
                    latent_rng: np.random.Generator, site_rng: np.random.Generator) -> LatentState:
    """Stage 1: patients split evenly over ``sites`` (shuffled), their latent factors
    ``Z ~ N(0, I_6)`` (n, 6), and the site effects (subtype offset sd ``signal.sub_site_sd``,
    log-hazard offset sd ``signal.surv_site_sd``, feature shift (S, ``feature_dim``) sd 0.3, tissue
    logit offsets (S, K) sd 0.25). Draws: ``latent_rng`` (shuffle, then Z), ``site_rng``."""
    sites = [str(s) for s in sites]
    site_idx = np.sort(np.arange(n) % len(sites))
    latent_rng.shuffle(site_idx)
    site_arr = np.array(sites)[site_idx]
    width = max(4, len(str(n)))
    pids = np.array([f"SIM-{s}-{i:0{width}d}" for i, s in enumerate(site_arr)])
    Z = latent_rng.standard_normal((n, len(LATENT_FACTORS)))
    S = len(sites)
    site_sub = site_rng.normal(0, signal.sub_site_sd, S)
    site_haz = site_rng.normal(0, signal.surv_site_sd, S)
    site_feat = site_rng.normal(0, 0.3, (S, feature_dim))
    site_props = site_rng.normal(0, 0.25, (S, len(TISSUE_TYPES)))
    return LatentState(sites=sites, site_idx=site_idx, site_of_patient=site_arr, patient_ids=pids, Z=Z, site_subtype=site_sub,
                       site_hazard=site_haz, site_feature=site_feat, site_tissue=site_props)


def simulate_clinical_values(latent: LatentState, rng: np.random.Generator) -> ClinicalValues:
    """Stage 2: true stage (from ``clinical``, corr 0.9; cut to about 25/40/20/15 %), age in years
    (``60 + 11 * (0.45 z_clinical + noise)``, clipped to 20-90), grade (weakly ``slide_2``) and sex
    (BRCA 99 % female, else 50 %). Draws: ``rng`` (the clinical stream)."""
    n = latent.n
    z_clin = latent.factor("clinical")
    stage_latent = 0.9 * z_clin + np.sqrt(1 - 0.81) * rng.standard_normal(n)
    stage_idx = np.digitize(stage_latent, [-0.67, 0.39, 1.04])  # ~25/40/20/15 % (normal cdf at the cut points)
    age = np.clip(np.round(60 + 11 * (0.45 * z_clin + np.sqrt(1 - 0.45**2) * rng.standard_normal(n))), 20, 90)
    grade_latent = 0.4 * latent.factor("slide_2") + np.sqrt(1 - 0.16) * rng.standard_normal(n)
    grade_idx = np.digitize(grade_latent, [-0.5, 0.6])
    p_female = np.where(latent.site_of_patient == "BRCA", 0.99, 0.5)
    sex_idx = (rng.random(n) >= p_female).astype(int)
    return ClinicalValues(stage_idx=stage_idx, age=age, grade_idx=grade_idx, sex_idx=sex_idx)


def simulate_tasks(latent: LatentState, clinical: ClinicalValues, signal: SignalSpec, censoring_rate: float,
                   max_follow_up_months: float, rng: np.random.Generator) -> TaskOutcomes:
    """Stage 3: the subtype (Bernoulli of the logit in :class:`SignalSpec`) and Weibull survival
    (months) with independent exponential censoring whose scale is calibrated so that the censored
    fraction is ``censoring_rate``, capped at ``max_follow_up_months``. Draws: ``rng`` (the
    survival stream: subtype uniforms, event exponentials, censoring exponentials)."""
    n = latent.n
    zi = {f: latent.factor(f) for f in LATENT_FACTORS}
    sig = signal
    # main effects from one slide/omics factor pair, interaction from the other pair (see SignalSpec)
    sub_logit = (sig.sub_slide * zi["slide_1"] + sig.sub_omics * zi["omics_1"] + sig.sub_interaction * zi["slide_2"] * zi["omics_2"]
                 + sig.sub_shared * zi["shared"] + latent.site_subtype[latent.site_idx])
    sub_prob = _sigmoid(sub_logit)
    subtype = (rng.random(n) < sub_prob).astype(int)
    risk = (sig.surv_slide * zi["slide_2"] + sig.surv_omics * zi["omics_2"] + sig.surv_interaction * zi["slide_1"] * zi["omics_1"]
            + sig.surv_stage * (clinical.stage_idx - 1.5) + sig.surv_age * (clinical.age - 60) / 10 + sig.surv_shared * zi["shared"]
            + latent.site_hazard[latent.site_idx])
    # Weibull proportional hazards: S(t) = exp(-(t/scale)^k * exp(risk))
    t_event = sig.baseline_scale_months * (rng.exponential(1.0, n) / np.exp(risk)) ** (1 / sig.weibull_shape)
    e_cens = rng.exponential(1.0, n)
    rate = _calibrate_censoring(t_event, e_cens, censoring_rate, max_follow_up_months)
    t_cens = np.minimum(e_cens / rate if rate > 0 else np.full(n, np.inf), max_follow_up_months)
    event = (t_event <= t_cens).astype(int)
    time = np.maximum(np.round(np.minimum(t_event, t_cens), 1), 0.1)
    return TaskOutcomes(subtype_logit=sub_logit, subtype_prob=sub_prob, subtype=subtype, risk=risk, event_time=t_event,
                        censor_time=t_cens, event=event, time=time)


def simulate_missingness(n: int, rates: Mapping[str, float], rng: np.random.Generator) -> Missingness:
    """Stage 4: exactly ``round(rate * n)`` missing patients per modality (``slide, rna, clinical,
    text``; ``cnv``/``mut`` drawn only when in ``rates``, else a copy of the RNA mask) and per
    clinical field (``clinical_field`` rate each). ``rates`` needs ``slide, rna, clinical, text,
    clinical_field``. Draws: ``rng`` (the missingness stream), in that order."""
    miss = {k: _pick(rng, n, rates[k], k) for k in ("slide", "rna", "clinical", "text")}
    for k in ("cnv", "mut"):
        miss[k] = _pick(rng, n, rates[k], k) if k in rates else miss["rna"].copy()
    field_miss = {f: _pick(rng, n, rates["clinical_field"], f"clinical_field:{f}") for f in ("age", "stage", "sex", "grade")}
    return Missingness(modality=miss, fields=field_miss)


def simulate_slide_world(feature_dim: int, rng: np.random.Generator) -> SlideWorld:
    """Stage 5a: tissue prototypes (K, D) ~ N(0, 1.5^2) and three unit-variance directions (3, D).
    Draws: ``rng`` (the prototype stream, from ``world_seed`` when given)."""
    protos = rng.normal(0, 1.5, (len(TISSUE_TYPES), feature_dim))
    directions = rng.standard_normal((3, feature_dim))
    return SlideWorld(prototypes=protos, directions=directions)


# Tissue-composition logits: baseline per type, and the effect of each latent factor on each type.
_TISSUE_BASE_LOGITS = np.array([1.2, 0.8, 0.0, -1.2, -0.2, -0.8])
_TISSUE_EFFECTS = np.zeros((len(TISSUE_TYPES), len(LATENT_FACTORS)))
_TISSUE_EFFECTS[0, 0], _TISSUE_EFFECTS[1, 0] = 0.8, -0.8  # slide_1: tumour vs stroma
_TISSUE_EFFECTS[3, 1] = 1.0                                # slide_2: necrosis
_TISSUE_EFFECTS[2, 5] = 1.0                                # shared: lymphocytes


def tissue_logits(latent: LatentState) -> np.ndarray:
    """(n, K) patient tissue-composition logits ``beta + E z_i + gamma_site`` (softmax = proportions)."""
    return _TISSUE_BASE_LOGITS + latent.Z @ _TISSUE_EFFECTS.T + latent.site_tissue[latent.site_idx]


def simulate_slide_bags(latent: LatentState, world: SlideWorld, slides_per_patient: tuple[int, int], patches: tuple[int, int],
                        signal: SignalSpec, rng: np.random.Generator) -> Iterator[SlideBag]:
    """Stage 5b: every slide of every patient, in patient then slide order (lazily: a large cohort
    is never held in memory). Missing-slide patients get bags too, so that missingness never shifts
    another patient's draws; the writer drops them. Patch count ~ log-uniform in ``patches``; see
    :class:`SlideBag`. Draws: ``rng`` (the slide stream: slide counts first, then per slide)."""
    smin, smax = slides_per_patient
    pmin, pmax = patches
    K, dim = world.prototypes.shape
    v1, v2, v3 = world.directions
    logits = tissue_logits(latent)
    z1, z2, zsh = latent.factor("slide_1"), latent.factor("slide_2"), latent.factor("shared")
    n_slides = rng.integers(smin, smax + 1, latent.n)
    for i in range(latent.n):
        for j in range(int(n_slides[i])):
            n_target = int(np.round(np.exp(rng.uniform(np.log(pmin), np.log(pmax)))))
            grid = _tissue_grid(rng, n_target, pmin, pmax)
            lg = logits[i] + rng.normal(0, 0.2, K)
            props = np.exp(lg - lg.max())
            props /= props.sum()
            ttype = _tissue_types(rng, grid, props)
            m = len(grid)
            feats = world.prototypes[ttype] + latent.site_feature[latent.site_idx[i]] + rng.normal(0, 0.15, dim)
            tum = ttype == 0
            feats[tum] += signal.tumour_shift * (z1[i] * v1 + z2[i] * v2)
            feats[ttype == 2] += 0.3 * zsh[i] * v3
            feats += rng.normal(0, signal.slide_noise, (m, dim))
            yield SlideBag(patient=i, slide=j, features=feats, grid=grid, tissue=ttype)


def write_slide_bags(out_dir: Path, bags: Iterable[SlideBag], patient_ids: Sequence[str], missing: np.ndarray, *,
                     float16: bool = True, patch_size_level0: int = 256) -> pd.DataFrame:
    """Write each bag of a patient with a slide (``missing`` (n,) bool False) as
    ``slides/<patient>-DX<j+1>.h5`` (TRIDENT layout, float16 or float32 features, int64 level-0
    coords) and its tissue types into ``ground_truth_patches.h5``. Consumes every bag (the draws of
    missing patients happen too). The bags' ``savetodir`` attribute is ``slides``, relative to the
    cohort folder: a cohort is built in a staging folder and may be moved, and same-seed cohorts are
    byte-identical wherever they are written. Returns the ``slides`` table (patient_id, slide_id, path)."""
    import h5py

    from modaltune.data.bags import write_bag_h5

    slide_rows = []
    (out_dir / "slides").mkdir(exist_ok=True)
    with h5py.File(out_dir / "ground_truth_patches.h5", "w") as gtp:
        gtp.attrs["tissue_types"] = json.dumps(list(TISSUE_TYPES))
        for bag in bags:
            if missing[bag.patient]:
                continue
            sid = f"{patient_ids[bag.patient]}-DX{bag.slide + 1}"
            coords = (bag.grid + 2) * patch_size_level0
            rel = f"slides/{sid}.h5"
            write_bag_h5(
                out_dir / rel,
                bag.features.astype(np.float16 if float16 else np.float32),
                coords.astype(np.int64),
                patch_size_level0=patch_size_level0,
                encoder="simulated",
                level0_magnification=20.0,
                target_magnification=20.0,
                patch_size=patch_size_level0,
                extra_attrs={"synthetic": True},
                savetodir="slides",
            )
            gtp.create_dataset(sid, data=bag.tissue, track_times=False)
            slide_rows.append((patient_ids[bag.patient], sid, rel))
    return pd.DataFrame(slide_rows, columns=["patient_id", "slide_id", "path"])


def _check_n_genes(n_genes: int | None, n_available: int) -> None:
    if n_genes is not None and not 1 <= n_genes <= n_available:
        raise ConfigError(f"n_genes={n_genes} but the pathway matrix has {n_available} genes", where="simulate_cohort(n_genes=...)", fix=f"use 1..{n_available} or None")


def simulate_omics(latent: LatentState, pathways: pd.DataFrame, n_genes: int | None, signal: SignalSpec,
                   rna_rng: np.random.Generator, cnv_mut_rng: np.random.Generator) -> OmicsData:
    """Stage 6: RNA from pathway activities (``A = Z L^T + site + noise``, genes average the
    activities of their pathways, see ``docs/simulation.md``), CNV driven weakly by ``omics_2`` and
    mutations weakly by ``omics_1``, for every patient. ``n_genes`` keeps a seeded subset of the
    ``pathways`` genes (pathways left without a gene are dropped). Draws: ``rna_rng`` (gene subset,
    loadings fallback, activities, gene parameters, noise), ``cnv_mut_rng``. See :class:`OmicsData`."""
    n, S = latent.n, len(latent.sites)
    site_idx = latent.site_idx
    pw = pathways
    _check_n_genes(n_genes, len(pw))
    if n_genes is not None:
        keep = np.sort(rna_rng.choice(len(pw), size=n_genes, replace=False))
        pw = pw.iloc[keep]
        pw = pw.loc[:, pw.sum(axis=0) > 0]
    genes = list(pw.index)
    M = pw.to_numpy(dtype=float)  # (G, P)
    L = _factor_loadings(list(pw.columns), rna_rng)  # (P, F)
    P = M.shape[1]
    activity = latent.Z @ L.T + rna_rng.normal(0, 0.3, (S, P))[site_idx] + rna_rng.normal(0, signal.pathway_noise, (n, P))
    n_memb = M.sum(1)
    gene_signal = (activity @ M.T) / np.maximum(n_memb, 1)  # genes in several pathways average them
    load = rna_rng.uniform(0.6, 1.2, len(genes)) * np.where(rna_rng.random(len(genes)) < 0.9, 1.0, -1.0)
    mu = rna_rng.uniform(2.0, 10.0, len(genes))
    sd = rna_rng.uniform(0.5, 1.5, len(genes))
    gene_site = rna_rng.normal(0, 0.2, (S, len(genes)))
    expr = mu + sd * (gene_signal * load + gene_site[site_idx] + rna_rng.normal(0, signal.rna_noise, (n, len(genes))))
    rna = pd.DataFrame(expr.astype(np.float32), index=pd.Index(latent.patient_ids, name="patient_id"), columns=genes)

    # CNV (-2..2) and mutations (0/1): weakly informative (omics_2 / omics_1), their own modalities.
    cnv_genes = [g for g in _CNV_GENES if g in set(genes)] or genes[: min(30, len(genes))]
    instab = 0.5 * latent.factor("omics_2") + np.sqrt(0.75) * cnv_mut_rng.standard_normal(n)
    cnv_sign = np.where(cnv_mut_rng.random(len(cnv_genes)) < 0.5, -1.0, 1.0)
    cnv_val = np.clip(np.round(0.7 * instab[:, None] * cnv_sign + cnv_mut_rng.normal(0, 0.7, (n, len(cnv_genes)))), -2, 2)
    cnv = pd.DataFrame(cnv_val.astype(np.float32), index=rna.index, columns=cnv_genes)
    mut_genes = [g for g in _MUT_GENES if g in set(genes)] or genes[: min(20, len(genes))]
    mut_p = _sigmoid(cnv_mut_rng.uniform(-3.0, -1.2, len(mut_genes)) + 0.6 * latent.factor("omics_1")[:, None])
    mut = pd.DataFrame((cnv_mut_rng.random((n, len(mut_genes))) < mut_p).astype(np.float32), index=rna.index, columns=mut_genes)
    return OmicsData(pathways=pw, loadings=L, rna=rna, cnv=cnv, mut=mut)


def simulate_reports(latent: LatentState, clinical: ClinicalValues, missing_text: np.ndarray, rng: np.random.Generator) -> pd.Series:
    """Stage 7: one report per patient without missing text (``missing_text`` (n,) bool): site
    location and diagnosis, then stage, grade and age, each dropped with probability 0.15; never
    the subtype. Returns a ``text`` Series indexed by ``patient_id``. Draws: ``rng`` (the text
    stream; 3 uniforms for every patient, so missingness does not shift other reports)."""
    texts = {}
    for i in range(latent.n):
        site = latent.sites[latent.site_idx[i]]
        loc, diag = _SITE_INFO.get(site.upper(), (site.lower(), f"carcinoma of the {site.lower()}"))
        parts = [f"Cancer location: {loc};", f"Cancer diagnosis: {diag};"]
        keep = rng.random(3) >= 0.15
        if keep[0]:
            parts.append(f"Overall stage: stage {_STAGE_WORDS[clinical.stage_idx[i]]};")
        if keep[1]:
            parts.append(f"Histologic grade: grade {clinical.grade_idx[i] + 1};")
        if keep[2]:
            parts.append(f"Age at diagnosis: {int(clinical.age[i])} years;")
        if not missing_text[i]:
            texts[latent.patient_ids[i]] = " ".join(parts)
    text = pd.Series(texts, name="text", dtype=object)
    text.index.name = "patient_id"
    return text


def build_tables(latent: LatentState, clinical: ClinicalValues, tasks: TaskOutcomes, missing: Missingness, omics: OmicsData,
                 signal: SignalSpec, *, include_stage_task: bool = False) -> CohortTables:
    """Stage 8: assemble the patient, clinical, omics and ground-truth tables with missingness
    applied (missing data are recorded as absent rows or empty cells, never dropped patients).
    Draws nothing. See :class:`CohortTables`."""
    pids = latent.patient_ids
    miss, sig = missing.modality, signal
    zi = {f: latent.factor(f) for f in LATENT_FACTORS}
    omics_tables = {"rna": omics.rna[~miss["rna"]], "cnv": omics.cnv[~miss["cnv"]], "mut": omics.mut[~miss["mut"]]}
    clin = pd.DataFrame(
        {
            "age": clinical.age.astype(float),
            "stage": np.array(_STAGES, dtype=object)[clinical.stage_idx],
            "sex": np.array(_SEXES, dtype=object)[clinical.sex_idx],
            "grade": np.array(_GRADES, dtype=object)[clinical.grade_idx],
        },
        index=pd.Index(pids, name="patient_id"),
    )
    for f, mk in missing.fields.items():
        clin.loc[mk, f] = np.nan
    clin.loc[miss["clinical"], :] = np.nan

    patients = pd.DataFrame(
        {"site": latent.site_of_patient, "subtype": np.array(["A", "B"])[tasks.subtype], "survival_months": tasks.time, "event": tasks.event},
        index=pd.Index(pids, name="patient_id"),
    )
    if include_stage_task:
        patients["stage"] = np.array(_STAGES, dtype=object)[clinical.stage_idx]
    gt = pd.DataFrame({f"z_{f}": latent.Z[:, j] for j, f in enumerate(LATENT_FACTORS)}, index=pd.Index(pids, name="patient_id"))
    gt["subtype_logit"] = tasks.subtype_logit
    gt["subtype_logit_slide"] = sig.sub_slide * zi["slide_1"]
    gt["subtype_logit_omics"] = sig.sub_omics * zi["omics_1"]
    gt["subtype_logit_interaction"] = sig.sub_interaction * zi["slide_2"] * zi["omics_2"]
    gt["risk_interaction"] = sig.surv_interaction * zi["slide_1"] * zi["omics_1"]
    gt["subtype_prob"] = tasks.subtype_prob
    gt["risk"] = tasks.risk
    gt["event_time"] = tasks.event_time
    gt["censor_time"] = tasks.censor_time
    gt["stage_true"] = np.array(_STAGES, dtype=object)[clinical.stage_idx]
    for k in ("slide", "rna", "cnv", "mut", "clinical", "text"):
        gt[f"missing_{k}"] = miss[k].astype(int)
    return CohortTables(patients=patients, clinical=clin, omics=omics_tables, ground_truth=gt)


def build_manifest(settings: SimSettings, n_genes: int, n_pathways: int) -> CohortManifest:
    """Stage 9: the cohort manifest (tasks, modalities, clinical fields; ``extra.simulation`` records
    every setting, so the cohort can be regenerated). ``n_genes``/``n_pathways``: RNA genes and
    pathways actually used (after any gene subset)."""
    from modaltune.data.cohort import (
        ClinicalField,
        CohortManifest,
        ModalitySpec,
        TaskSpec,
    )

    s = settings
    tasks = [
        TaskSpec(name="subtype", kind="classification", label_column="subtype", classes=["A", "B"],
                 description="Simulated binary tumour subtype (A or B), shared by all sites; depends on slide and RNA factors and their interaction."),
        TaskSpec(name="survival", kind="survival", time_column="survival_months", event_column="event", endpoint="overall survival",
                 time_unit="months", n_bins=4, description="Simulated overall survival in months with independent censoring."),
    ]
    if s.include_stage_task:
        tasks.append(TaskSpec(name="stage", kind="classification", label_column="stage", classes=list(_STAGES),
                              description="Simulated AJCC overall stage (I-IV); also a clinical input field."))
    modalities = [
        ModalitySpec(name="slide", kind="slide", feature_dim=s.feature_dim, encoder="simulated", patch_size_level0=s.patch_size_level0,
                     description=f"Simulated patch-feature bags: {len(TISSUE_TYPES)} prototype tissue types in spatially coherent regions."),
        ModalitySpec(name="rna", kind="omics", path="omics/rna.parquet", omics_type="rna",
                     description=f"Simulated log2 expression of {n_genes} real gene symbols with pathway structure (pathways.csv)."),
        ModalitySpec(name="cnv", kind="omics", path="omics/cnv.parquet", omics_type="cnv", description="Simulated copy-number calls (-2..2)."),
        ModalitySpec(name="mut", kind="omics", path="omics/mut.parquet", omics_type="mut", description="Simulated mutation indicators (0/1)."),
        ModalitySpec(name="clinical", kind="clinical", description="Simulated age, stage, sex and grade."),
        ModalitySpec(name="text", kind="text", description="Simulated report sentences built from site, stage, grade and age."),
    ]
    clinical_fields = [
        ClinicalField(name="age", kind="numeric", min=0, max=120, unit="years", description="Age at diagnosis."),
        ClinicalField(name="stage", kind="ordinal", categories=list(_STAGES), description="AJCC overall pathologic stage."),
        ClinicalField(name="sex", kind="categorical", categories=list(_SEXES), description="Sex."),
        ClinicalField(name="grade", kind="ordinal", categories=list(_GRADES), description="Histologic grade."),
    ]
    follow_up = s.max_follow_up_months
    sim = {
        "preset": s.preset, "seed": s.seed, "generator_version": GENERATOR_VERSION, "n_patients": s.n_patients, "sites": s.sites,
        "feature_dim": s.feature_dim, "patches": list(s.patches), "slides_per_patient": list(s.slides_per_patient), "n_genes": n_genes,
        "n_pathways": int(n_pathways),
        "pathways_source": str(s.pathways_file) if s.pathways_file is not None else "builtin:sim_pathways.csv",
        **({"world_seed": int(s.world_seed)} if s.world_seed is not None else {}),
        "missing_rates": s.missing_rates, "censoring_rate": s.censoring_rate,
        "max_follow_up_months": float(follow_up) if np.isfinite(follow_up) else None, "float16": s.float16,
        "patch_size_level0": s.patch_size_level0, "signal": asdict(s.signal),
    }
    return CohortManifest(
        name=s.name,
        description=(
            "SYNTHETIC cohort generated by modaltune.data.simulate (no real patients, slides or measurements; only gene "
            "symbols and pathway names are real). Signal is split across modalities so fusion helps: see docs/simulation.md."
        ),
        synthetic=True,
        source="modaltune.data.simulate.simulate_cohort",
        sites=s.sites,
        tasks=tasks,
        modalities=modalities,
        clinical_fields=clinical_fields,
        extra={
            "simulation": sim,
            "pathways_file": "pathways.csv",
            "pathway_loadings_file": "pathway_loadings.csv",
            "patch_ground_truth_file": "ground_truth_patches.h5",
            "tissue_types": list(TISSUE_TYPES),
            "latent_factors": list(LATENT_FACTORS),
        },
    )


def write_tables(out_dir: Path, settings: SimSettings, latent: LatentState, tasks: TaskOutcomes, omics: OmicsData,
                 tables: CohortTables, slides: pd.DataFrame, text: pd.Series) -> None:
    """Stage 10: write into ``out_dir`` (the staging folder) ``pathways.csv``,
    ``pathway_loadings.csv`` and the cohort (tables, then the manifest last: :meth:`Cohort.save`)
    with, when ``settings.n_folds >= 2`` and there are enough patients, ``splits/kfold<k>.csv``
    stratified by the subtype."""
    from modaltune.data.cohort import Cohort

    pw = omics.pathways
    pw.astype(int).to_csv(out_dir / "pathways.csv")
    loadings = pd.DataFrame(omics.loadings, index=pw.columns, columns=[f"z_{f}" for f in LATENT_FACTORS])
    loadings.index.name = "pathway"
    loadings.to_csv(out_dir / "pathway_loadings.csv")
    manifest = build_manifest(settings, n_genes=len(pw.index), n_pathways=pw.shape[1])
    cohort = Cohort(manifest, tables.patients, slides=slides, omics=tables.omics, clinical=tables.clinical, text=text,
                    ground_truth=tables.ground_truth, root=out_dir)
    n, k = settings.n_patients, settings.n_folds
    if k and k >= 2 and n >= k:
        from modaltune.data.splits import kfold_split

        # written by save, before the manifest (a split written after it could be lost to a crash)
        cohort.splits[f"kfold{k}"] = kfold_split(list(latent.patient_ids), k, seed=settings.seed, labels=tasks.subtype, name=f"kfold{k}")
    cohort.save(out_dir)


# ------------------------------------------------------------------------------------------ main
@removes_staging_on_error
def simulate_cohort(
    out: str | Path | None = None,
    *,
    preset: str = "demo",
    n_patients: int | None = None,
    sites: Sequence[str] = ("BRCA", "LUAD", "KIRC"),
    seed: int = 0,
    feature_dim: int | None = None,
    patches: tuple[int, int] | None = None,
    slides_per_patient: tuple[int, int] | None = None,
    n_genes: int | None = None,
    pathways_file: str | Path | None = None,
    missing_rates: Mapping[str, float] | None = None,
    censoring_rate: float = 0.4,
    max_follow_up_months: float = 180.0,
    signal: SignalSpec | Mapping[str, float] | None = None,
    float16: bool = True,
    patch_size_level0: int = 256,
    include_stage_task: bool = False,
    n_folds: int = 5,
    name: str | None = None,
    overwrite: bool | None = None,
    world_seed: int | None = None,
) -> Cohort:
    """Simulate a seeded synthetic multi-site cohort and write it to ``out``.

    Args:
        out: cohort directory to write. ``None`` writes to a fresh temporary directory. An existing
            non-empty directory is replaced only if it holds a previous simulated cohort (or
            ``overwrite=True`` and it holds a cohort); anything else raises :class:`InputError`.
        preset: ``tiny`` (40 patients, 16-d features, 16-64 patches: for tests), ``demo``
            (300 patients, 64-d, 64-512 patches) or ``large`` (1,000 patients, 128-d, 256-4,096
            patches). Explicit ``n_patients``/``feature_dim``/``patches``/``slides_per_patient`` win.
        sites: cancer-site names; patients are split evenly across them. Known TCGA codes get real
            locations in the report text; sites shift features, pathway activity, subtype
            prevalence and baseline hazard.
        seed: every random draw derives from it; same arguments + seed give byte-identical files.
        feature_dim: patch feature dimension D.
        patches: (min, max) patches per slide (log-uniform in between).
        slides_per_patient: (min, max) slides per patient (uniform integers).
        n_genes: keep a seeded random subset of this many genes of the pathway matrix (None: all).
        pathways_file: gene x pathway 0/1 CSV (e.g. ``shared/data/pathways/combine_comps.csv``);
            None uses the built-in list (``modaltune/resources/sim_pathways.csv``).
        missing_rates: fraction of patients lacking ``slide``, ``rna``, ``cnv``, ``mut``,
            ``clinical`` (whole row empty), ``text``; ``clinical_field`` is extra per-field
            missingness. ``cnv``/``mut`` default to the RNA-missing patients. Missing data are
            recorded (no slide row, no omics row, empty clinical cells, no text row), never dropped.
        censoring_rate: fraction of censored patients (independent exponential censoring, scale
            calibrated to hit the rate exactly), on top of administrative censoring at
            ``max_follow_up_months`` (end of follow-up; ``inf`` for none).
        signal: effect sizes, a :class:`SignalSpec` or a dict of its fields.
        float16: store patch features as float16 (else float32).
        patch_size_level0: patch side in level-0 pixels (coordinate pitch).
        include_stage_task: also add a ``stage`` classification task (note: stage is then also a
            clinical input; methods must not use the clinical stage field for it).
        n_folds: also write ``splits/kfold{n_folds}.csv`` (stratified by subtype, seeded); 0 = none.
        name: cohort name (default ``sim_<preset>_seed<seed>``).
        world_seed: seed of the slide *world* (tissue prototypes, tumour-appearance directions,
            site effects); None = ``seed``. Two cohorts with the same ``world_seed`` and different
            ``seed`` have independent patients whose patch features live in the same feature space,
            e.g. to pretrain a slide encoder on a cohort disjoint from the evaluated one.

    Returns:
        The cohort, loaded back from ``out`` (so it is exactly what is on disk).

    Shapes/units: bags ``features`` (N, D), ``coords`` (N, 2) int64 level-0 px on a regular pitch;
    survival in months; age in years.
    """
    from modaltune.data.cohort import Cohort

    s = resolve_settings(
        preset=preset, n_patients=n_patients, sites=sites, seed=seed, feature_dim=feature_dim, patches=patches,
        slides_per_patient=slides_per_patient, n_genes=n_genes, pathways_file=pathways_file, missing_rates=missing_rates,
        censoring_rate=censoring_rate, max_follow_up_months=max_follow_up_months, signal=signal, float16=float16,
        patch_size_level0=patch_size_level0, include_stage_task=include_stage_task, n_folds=n_folds, name=name, world_seed=world_seed,
    )
    rng = RandomStreams.from_seed(seed, world_seed)
    # read and check the pathway matrix before anything is written (loading it draws nothing)
    pathways = load_pathway_matrix(pathways_file) if pathways_file is not None else builtin_pathways()
    _check_n_genes(n_genes, len(pathways))

    latent = simulate_latent(s.n_patients, s.sites, s.feature_dim, s.signal, rng.latent, rng.site)
    clinical = simulate_clinical_values(latent, rng.clinical)
    tasks = simulate_tasks(latent, clinical, s.signal, s.censoring_rate, s.max_follow_up_months, rng.survival)
    missing = simulate_missingness(s.n_patients, s.missing_rates, rng.missing)

    final_dir = _prepare_out(out, overwrite)
    # crash safety: the cohort is built in a process-unique sibling folder and renamed into place
    # when complete, so a killed run leaves no folder at `out` that a rerun would take as done
    out_dir = staging_dir(final_dir)  # removed again if this call raises (@removes_staging_on_error)
    world = simulate_slide_world(s.feature_dim, rng.proto)
    bags = simulate_slide_bags(latent, world, s.slides_per_patient, s.patches, s.signal, rng.slide)
    slides = write_slide_bags(out_dir, bags, latent.patient_ids, missing.modality["slide"], float16=s.float16,
                              patch_size_level0=s.patch_size_level0)
    omics = simulate_omics(latent, pathways, s.n_genes, s.signal, rng.rna, rng.cnv_mut)
    text = simulate_reports(latent, clinical, missing.modality["text"], rng.text)
    tables = build_tables(latent, clinical, tasks, missing, omics, s.signal, include_stage_task=s.include_stage_task)
    write_tables(out_dir, s, latent, tasks, omics, tables, slides, text)
    return Cohort.load(publish_dir(out_dir, final_dir))


# ------------------------------------------------------------------------------------------ signal check
def _modality_matrices(cohort: Cohort, ids: list[str]) -> dict[str, np.ndarray]:
    """Simple per-patient features: bag-mean patch features (all slides pooled), pathway-mean
    z-scored RNA, encoded clinical fields (mean-imputed + missing indicators), site one-hot."""
    import h5py

    bag = []
    for pid in ids:
        feats = [h5py.File(p, "r")["features"][:].astype(np.float32) for p in cohort.slide_paths(pid)]
        bag.append(np.concatenate(feats).mean(0))
    rna = cohort.omics["rna"].loc[ids]
    rna = (rna - rna.mean()) / rna.std(ddof=0).replace(0, 1)
    pw_path = cohort.resolve_path(cohort.manifest.extra.get("pathways_file", "pathways.csv"))
    pw = pd.read_csv(pw_path, index_col=0).reindex(rna.columns).fillna(0).to_numpy(float)
    keep = pw.sum(0) > 0
    omics = (rna.to_numpy() @ pw[:, keep]) / pw[:, keep].sum(0)
    cl = cohort.clinical.reindex(ids)
    cols = []
    for f in cohort.manifest.clinical_fields:
        if f.name not in cl.columns:
            continue
        if f.kind == "numeric":
            v = pd.to_numeric(cl[f.name], errors="coerce")
        elif f.kind == "ordinal":
            v = cl[f.name].map({c: i for i, c in enumerate(f.categories)}).astype(float)
        else:
            v = (cl[f.name] == f.categories[-1]).astype(float).where(cl[f.name].notna())
        cols += [v.fillna(v.mean() if v.notna().any() else 0.0).to_numpy(), v.isna().to_numpy(float)]
    site = pd.get_dummies(cohort.patients.loc[ids, "site"]).to_numpy(float)
    return {"slide": np.asarray(bag), "omics": omics, "clinical": np.column_stack(cols), "site": site}


def signal_check(cohort: Cohort, *, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Quick baselines showing how the signal is split across modalities.

    On patients with slide, RNA and clinical data, fits (in stratified ``n_folds``-fold CV) an L2
    logistic regression for ``subtype`` (balanced accuracy) and a ridge Cox model for ``survival``
    (Harrell's C-index) on: bag-mean slide features, pathway-mean RNA, clinical fields (each with
    site one-hot), their concatenation (``early_fusion``), the average of the three single-modality
    predictions (``late_fusion``), the true latent factors used additively (``oracle_additive``,
    main effects only) and the true generative quantities (``oracle``: subtype_prob, risk).

    Returns a DataFrame indexed by model with columns ``subtype_bacc``, ``survival_cindex``, ``n``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.metrics import concordance_index_censored

    av = cohort.availability()
    ids = list(av.index[av["slide"] & av["rna"] & av["clinical"]])
    X = _modality_matrices(cohort, ids)
    sets = {
        "slide": np.hstack([X["slide"], X["site"]]),
        "omics": np.hstack([X["omics"], X["site"]]),
        "clinical": np.hstack([X["clinical"], X["site"]]),
        "early_fusion": np.hstack([X["slide"], X["omics"], X["clinical"], X["site"]]),
    }
    y = cohort.targets("subtype", ids).label
    st = cohort.targets("survival", ids)
    event, time = st.event.astype(bool), st.time
    surv_y = np.array(list(zip(event, time)), dtype=[("event", bool), ("time", float)])
    prob = {k: np.zeros(len(ids)) for k in sets}
    risk = {k: np.zeros(len(ids)) for k in sets}
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    for k, M in sets.items():
        for tr, te in folds.split(M, y * 2 + event):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(M[tr], y[tr])
            prob[k][te] = clf.predict_proba(M[te])[:, 1]
            sc = StandardScaler().fit(M[tr])
            cox = CoxPHSurvivalAnalysis(alpha=10.0).fit(sc.transform(M[tr]), surv_y[tr])
            r = cox.predict(sc.transform(M[te]))
            risk[k][te] = (r - r.mean()) / (r.std() + 1e-12)
    singles = ("slide", "omics", "clinical")
    prob["late_fusion"] = np.mean([prob[k] for k in singles], axis=0)
    risk["late_fusion"] = np.sum([risk[k] for k in singles], axis=0)
    gt = cohort.ground_truth.loc[ids]
    # additive oracle: the true latent factors (+ true stage, age, site) as main effects only; the
    # gap to ``oracle`` is what learning the cross-modal interaction can add
    Zt = np.column_stack([gt[f"z_{f}"].to_numpy() for f in LATENT_FACTORS] + [X["clinical"], X["site"]])
    prob["oracle_additive"], risk["oracle_additive"] = np.zeros(len(ids)), np.zeros(len(ids))
    for tr, te in folds.split(Zt, y * 2 + event):
        sc = StandardScaler().fit(Zt[tr])
        clf = LogisticRegression(C=10.0, max_iter=2000).fit(sc.transform(Zt[tr]), y[tr])
        prob["oracle_additive"][te] = clf.predict_proba(sc.transform(Zt[te]))[:, 1]
        risk["oracle_additive"][te] = CoxPHSurvivalAnalysis(alpha=1.0).fit(sc.transform(Zt[tr]), surv_y[tr]).predict(sc.transform(Zt[te]))
    prob["oracle"], risk["oracle"] = gt["subtype_prob"].to_numpy(), gt["risk"].to_numpy()
    rows = {
        k: {
            "subtype_bacc": balanced_accuracy_score(y, (prob[k] > 0.5).astype(int)),
            "survival_cindex": concordance_index_censored(event, time, risk[k])[0],
            "n": len(ids),
        }
        for k in prob
    }
    return pd.DataFrame(rows).T.astype({"n": int})
