"""ModalTune's Modal Adapter on a real frozen RNA backbone (issue 17 item 6).

No real slide features exist here, so the mechanism is tested on a real frozen model of another
modality: a pathway-token RNA transformer (``pathway_transformer``) pretrained on the RNA of PORPOISE
cohorts that are not evaluated, frozen, and given clinical + CNV + mutation tokens through the
project's :class:`~modaltune.adapters.modal_adapter.ModalAdapter` (the same code slide backbones use)
on evaluated cohorts, for subtype and survival. Pre-registration: ``preregistration.md`` beside this file.

    python benchmarks/modaltune_real_rna/run.py pretrain --out RUNS/backbone
    python benchmarks/modaltune_real_rna/run.py evaluate --backbone RUNS/backbone --out RUNS/eval --cohorts brca gbmlgg
    python benchmarks/modaltune_real_rna/run.py analyse --runs RUNS/eval --out benchmarks/modaltune_real_rna
    python benchmarks/modaltune_real_rna/run.py diagnose --backbone RUNS/backbone --out RUNS/gates   # exploratory: gate sizes

Methods (one model per cohort x fold trains both tasks; subtype CE is class-weighted, survival a
Cox partial likelihood; the frozen backbone never changes):
  modaltune     frozen backbone + ModalAdapter(clinical, CNV, mutation tokens) + LN(slide + mean tokens) -> heads
  linear_probe  frozen backbone CLS embedding -> ridge logistic / ridge Cox (penalty by inner 3-fold CV)
  full_ft       the backbone fine-tuned (RNA only) + linear heads
  late_fusion   frozen CLS embedding || MLP(clinical) || MLP(CNV) || MLP(mut) -> heads
  penalised     RNA PCs + CNV PCs + mutations + clinical -> ridge logistic / ridge Cox (inner CV)
  clinical_only clinical fields -> ridge logistic / ridge Cox (inner CV)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

SHARED = Path(os.environ.get("MODALTUNE_SHARED", Path(__file__).resolve().parents[3] / "shared"))
PATHWAYS = SHARED / "data" / "pathways" / "combine_comps.csv"
MIN_GENES = 5  # pathways with at least 5 measured genes become tokens (77 tokens; CPU budget)
METHODS = ("modaltune", "linear_probe", "full_ft", "late_fusion", "penalised", "clinical_only")


# ----------------------------------------------------------------------------------------- data
def _ordinal(value, kind: str) -> float:
    """GDC AJCC strings -> ordinal numbers (NaN when missing / X): stage I..IV -> 1..4, T0..4,
    Tis -> 0, N0..3, M0/1."""
    if not isinstance(value, str):
        return np.nan
    v = value.strip().upper()
    if kind == "stage":
        m = re.match(r"STAGE\s+(IV|III|II|I)", v)
        return float({"I": 1, "II": 2, "III": 3, "IV": 4}[m.group(1)]) if m else np.nan
    if kind == "t" and v.startswith("TIS"):
        return 0.0
    m = re.match(rf"C?{kind.upper()}(\d)", v)
    return float(m.group(1)) if m else np.nan


def gdc_clinical(cohort: str) -> pd.DataFrame:
    """Stage / T / N / M ordinals per TCGA patient from the ModalTune split files (all partitions:
    only the fields are read; the evaluation folds are the PORPOISE ones)."""
    folder = SHARED / "data" / "tcga" / "modaltune_splits" / f"tcga_{cohort}"
    rows = []
    for part in ("train", "val", "test"):
        f = folder / f"{part}.json"
        if f.is_file():
            for r in json.loads(f.read_text())["data"]:
                rows.append({"patient_id": r["case_submitter_id"], **{k: _ordinal(r.get(f"ajcc_pathologic_{k}"), k) for k in ("stage", "t", "n", "m")}})
    df = pd.DataFrame(rows)
    return df.groupby("patient_id").first() if len(df) else pd.DataFrame(columns=["stage", "t", "n", "m"])


class CohortData:
    """Arrays of one evaluated cohort, patient order = ``ids``."""

    def __init__(self, name: str, genes: list[str], cache: dict):
        from modaltune.data.sources.porpoise import import_porpoise

        co = import_porpoise(name, SHARED, table_cache=cache)
        rna = co.omics["rna"]
        self.ids = [str(p) for p in rna.index]
        self.rna = rna[genes].to_numpy(np.float32)
        pat = co.patients.loc[self.ids]
        self.time = pat["survival_months"].to_numpy(float)
        self.event = pat["event"].to_numpy(float).astype(int)
        sub = next(t for t in co.tasks if t.name == "subtype")
        self.classes = list(sub.classes)
        lab = pat["subtype"].map({c: i for i, c in enumerate(self.classes)})
        self.has_label = lab.notna().to_numpy()
        self.label = lab.fillna(-1).to_numpy(int)
        clin = co.clinical.loc[self.ids, ["age", "is_female"]].astype(float)
        gdc = gdc_clinical(name).reindex(self.ids)
        clin = pd.concat([clin, gdc], axis=1)
        for k in ("stage", "t", "n", "m"):
            clin[f"{k}__missing"] = clin[k].isna().astype(float)
        clin = clin.loc[:, clin.nunique(dropna=True) > 1]  # constant columns (all female, no staging) carry nothing
        self.clin_names = list(clin.columns)
        self.clin_raw = clin.to_numpy(float)
        self.blocks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for om in ("cnv", "mut"):
            if om in co.omics and co.omics[om].shape[1] > 0:
                t = co.omics[om].reindex(self.ids)
                present = t.notna().all(1).to_numpy()
                if not present.all():
                    # in the pooled cohorts a block is missing for a whole source cohort (LUSC, KIRP have
                    # no CNV), so its absence would reveal the subtype: such a block is not used
                    self.dropped_blocks = [*getattr(self, "dropped_blocks", []), om]
                    continue
                self.blocks[om] = (t.fillna(0.0).to_numpy(np.float32), present)
        folds = co.splits["porpoise_5fold"]
        pos = {p: i for i, p in enumerate(self.ids)}
        self.folds = [(np.array([pos[p] for p in f.train if p in pos]), np.array([pos[p] for p in f.val if p in pos])) for f in folds]

    def clinical(self, tr: np.ndarray) -> np.ndarray:
        """Clinical matrix standardised on training rows ``tr``; missing values -> 0 (the training mean)."""
        x = self.clin_raw.copy()
        mu, sd = np.nanmean(x[tr], 0), np.nanstd(x[tr], 0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
        return np.nan_to_num(x, nan=0.0).astype(np.float32)


# ----------------------------------------------------------------------------------------- models
class AdapterModel(nn.Module):
    """Frozen backbone + ModalAdapter + clinical / CNV / mutation token sets + two heads.

    ``f = LN(slide + mean(present modal tokens))`` (ModalTune's ``sum`` fusion without task tokens),
    then ``subtype: Linear(d, C)``, ``survival: Linear(d, 1)`` (Cox risk).
    """

    def __init__(self, backbone: nn.Module, clin_dim: int, blocks: dict[str, int], n_classes: int):
        super().__init__()
        from modaltune.adapters.modal_adapter import ModalAdapter
        from modaltune.modaltune.tokens import ClinicalTokenSet, ModalTokenizer, OmicsBlockTokenSet

        d = backbone.embed_dim
        L = backbone.num_layers
        self.adapter = ModalAdapter(backbone, [[i, i] for i in range(L)], attn_dim=d, heads=4, ffn_dim=d, extra_extractors=1, drop_path=0.1)
        sets = [ClinicalTokenSet("clinical", clin_dim, d, hidden=64)]
        sets += [OmicsBlockTokenSet(om, g, d, n_tokens=4 if om == "cnv" else 2, hidden=64, dropout=0.25) for om, g in blocks.items()]
        self.tokenizer = ModalTokenizer(sets)
        self.modal_pos = nn.Parameter(torch.randn(1, self.tokenizer.n_tokens, d) * 0.02)
        self.norm = nn.LayerNorm(d)
        self.cls = nn.Linear(d, n_classes)
        self.risk = nn.Linear(d, 1)

    def forward(self, rows: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        c, present = self.tokenizer(batch)
        img, c = self.adapter(rows, None, c, present, modal_pos=self.modal_pos)
        w = present.to(c.dtype)[..., None]
        f = self.norm(img + (c * w).sum(1) / w.sum(1).clamp_min(1.0))
        return self.cls(f), self.risk(f)[:, 0]


class FineTuneModel(nn.Module):
    """The pretrained backbone, unfrozen, + linear heads on its pooled embedding (RNA only)."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(True)
        d = backbone.embed_dim
        self.cls, self.risk = nn.Linear(d, n_classes), nn.Linear(d, 1)

    def forward(self, rows: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(rows)
        return self.cls(f), self.risk(f)[:, 0]


class LateFusionModel(nn.Module):
    """Frozen backbone embedding (precomputed) || per-modality MLPs -> heads (concatenation late fusion)."""

    def __init__(self, emb_dim: int, clin_dim: int, blocks: dict[str, int], n_classes: int, hidden: int = 32):
        super().__init__()
        self.enc = nn.ModuleDict({"emb": nn.Sequential(nn.LayerNorm(emb_dim), nn.Linear(emb_dim, hidden), nn.ReLU(), nn.Dropout(0.25)),
                                  "clinical": nn.Sequential(nn.Linear(clin_dim, hidden), nn.ReLU(), nn.Dropout(0.25))})
        for om, g in blocks.items():
            self.enc[om] = nn.Sequential(nn.Linear(g, hidden), nn.ReLU(), nn.Dropout(0.25))
        width = hidden * len(self.enc)
        self.cls, self.risk = nn.Linear(width, n_classes), nn.Linear(width, 1)

    def forward(self, emb: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        mm = batch["modality_mask"]
        parts = [self.enc["emb"](emb), self.enc["clinical"](batch["clinical"])]
        for om in self.enc:
            if om not in ("emb", "clinical"):
                parts.append(self.enc[om](batch["omics"][om]) * mm[om].to(emb.dtype)[:, None])  # a missing block contributes zeros
        f = torch.cat(parts, 1)
        return self.cls(f), self.risk(f)[:, 0]


def _batch(data: CohortData, clin: np.ndarray, idx: np.ndarray) -> dict:
    return {"clinical": torch.from_numpy(clin[idx]),
            "omics": {om: torch.from_numpy(x[idx]) for om, (x, _) in data.blocks.items()},
            "modality_mask": {"clinical": torch.ones(len(idx), dtype=torch.bool),
                              **{om: torch.from_numpy(p[idx]) for om, (_, p) in data.blocks.items()}}}


def _loss(logits, risk, data: CohortData, idx: np.ndarray, class_w: torch.Tensor) -> torch.Tensor:
    from modaltune.losses.survival import cox_partial_likelihood

    lab = torch.from_numpy(data.label[idx])
    m = torch.from_numpy(data.has_label[idx])
    loss = F.cross_entropy(logits[m], lab[m], weight=class_w) if bool(m.any()) else 0.0 * logits.sum()
    ev = torch.from_numpy(data.event[idx]).float()
    if float(ev.sum()) > 0:
        loss = loss + cox_partial_likelihood(risk, torch.from_numpy(data.time[idx]).float(), ev)
    return loss


def train_torch(model: nn.Module, inputs: torch.Tensor, data: CohortData, clin: np.ndarray, tr: np.ndarray, te: np.ndarray, *, epochs: int,
                lr: float, backbone_lr: float | None, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train on ``tr`` (fixed epochs, last epoch kept); returns test (subtype probabilities (n, C), risks (n,))."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    bb = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    groups = [{"params": rest, "lr": lr}] + ([{"params": bb, "lr": backbone_lr}] if bb else [])
    opt = torch.optim.AdamW(groups, weight_decay=1e-4)
    counts = np.bincount(data.label[tr][data.has_label[tr]], minlength=len(data.classes)).astype(float)
    class_w = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1.0)), dtype=torch.float32)
    for _ in range(epochs):
        model.train()
        order = rng.permutation(tr)
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            if len(idx) < 8:
                continue
            logits, risk = model(inputs[idx], _batch(data, clin, idx))
            loss = _loss(logits, risk, data, idx, class_w)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits, risk = model(inputs[te], _batch(data, clin, te))
    return torch.softmax(logits, 1).numpy(), risk.numpy()


def fit_linear(x: np.ndarray, data: CohortData, tr: np.ndarray, te: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ridge logistic (C by inner 3-fold CV, balanced classes) and ridge Cox (alpha by inner 3-fold CV
    C-index) on standardised ``x``; returns test (probabilities (n, C), risks (n,))."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from modaltune.evaluation.metrics import harrell_c

    sc = StandardScaler().fit(x[tr])
    xs = np.nan_to_num(sc.transform(x), nan=0.0)
    lab_tr = tr[data.has_label[tr]]
    clf = LogisticRegressionCV(Cs=[0.001, 0.01, 0.1, 1.0, 10.0], cv=3, class_weight="balanced", max_iter=2000, scoring="roc_auc")
    clf.fit(xs[lab_tr], data.label[lab_tr])
    prob = clf.predict_proba(xs[te])
    y = np.array([(bool(e), t) for e, t in zip(data.event, data.time)], dtype=[("e", bool), ("t", float)])
    best, best_a = -1.0, 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a in (0.1, 1.0, 10.0, 100.0, 1000.0):
            cs = []
            for itr, iva in KFold(3, shuffle=True, random_state=seed).split(tr):
                a_tr, a_va = tr[itr], tr[iva]
                try:
                    m = CoxPHSurvivalAnalysis(alpha=a).fit(xs[a_tr], y[a_tr])
                    cs.append(harrell_c(data.time[a_va], data.event[a_va], m.predict(xs[a_va])))
                except Exception:  # noqa: BLE001 - a failed fit (no event in a small fold, ill-conditioning) scores nothing
                    cs.append(np.nan)
            c = float(np.nanmean(cs)) if np.isfinite(cs).any() else -1.0
            if c > best:
                best, best_a = c, a
        cox = CoxPHSurvivalAnalysis(alpha=best_a).fit(xs[tr], y[tr])
    return prob, cox.predict(xs[te])


def omics_pcs(data: CohortData, tr: np.ndarray) -> np.ndarray:
    """RNA PCs (16) + CNV PCs (8, zeros + a flag where CNV is missing) + mutations (PCs 8 when > 32
    genes) + clinical, every projection fitted on training rows."""
    from sklearn.decomposition import PCA

    parts = [PCA(16, random_state=0).fit(data.rna[tr]).transform(data.rna)]
    for om, (x, present) in data.blocks.items():
        k = 8 if om == "cnv" or x.shape[1] > 32 else 0
        fit_rows = tr[present[tr]]
        if k and len(fit_rows) > k:
            z = PCA(min(k, x.shape[1]), random_state=0).fit(x[fit_rows]).transform(x) * present[:, None]
        else:
            z = x * present[:, None]
        parts.append(z)
        if not present.all():
            parts.append(present[:, None].astype(float))
    parts.append(data.clinical(tr))
    return np.concatenate(parts, 1)


# ----------------------------------------------------------------------------------------- commands
def cmd_pretrain(a) -> None:
    from modaltune.data.omics import tokenize_pathways
    from modaltune.data.sources.porpoise import import_porpoise
    from modaltune.modaltune.rna_backbone import EVAL_COHORTS, PRETRAIN_COHORTS, pretrain_rna_backbone, pretraining_set, save_backbone

    t0 = time.time()
    cache: dict = {}
    pre = [import_porpoise(c, SHARED, table_cache=cache) for c in PRETRAIN_COHORTS]
    ev = [import_porpoise(c, SHARED, table_cache=cache) for c in EVAL_COHORTS]
    ds = pretraining_set(pre, ev)
    pt = tokenize_pathways(PATHWAYS, ds.genes, min_genes=MIN_GENES)
    enc_p = {"embed_dim": a.dim, "depth": a.depth, "num_heads": 4}
    enc, hist = pretrain_rna_backbone(ds, pt.gene_index, encoder_params=enc_p, epochs=a.epochs, seed=a.seed)
    info = {"pretrain_cohorts": list(PRETRAIN_COHORTS), "evaluated_cohorts": list(EVAL_COHORTS), "n_patients": len(ds.patient_ids),
            "min_genes": MIN_GENES, "pathway_coverage": pt.summary() if callable(getattr(pt, "summary", None)) else str(pt.summary),
            "epochs": a.epochs, "seed": a.seed, "history": hist, "seconds": round(time.time() - t0, 1), "loadavg": Path("/proc/loadavg").read_text().strip()}
    save_backbone(enc, a.out, genes=ds.genes, pathway_names=pt.names, info=info)
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=1), hist[-1])


def cmd_evaluate(a) -> None:
    from modaltune.modaltune.rna_backbone import load_backbone

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path, pred_path = out / "results.csv", out / "predictions.csv"
    done = set()
    if res_path.exists():
        r = pd.read_csv(res_path)
        done = set(zip(r["cohort"], r["fold"], r["method"]))
    backbone0, meta = load_backbone(a.backbone)
    genes = meta["genes"]
    cfg = {"command": "python benchmarks/modaltune_real_rna/run.py " + " ".join(sys.argv[1:]), "args": vars(a), "min_genes": MIN_GENES,
           "backbone": {k: v for k, v in meta.items() if k not in ("genes", "pathway_names")} | {"encoder": {k: v for k, v in meta["encoder"].items() if k != "gene_index"}}}
    (out / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
    cache: dict = {}
    for cohort in a.cohorts:
        data = CohortData(cohort, genes, cache)
        rows_all = backbone0.rows(data.rna)  # (N, P, G_max)
        with torch.no_grad():
            emb = backbone0(rows_all).numpy()  # frozen CLS embedding (N, d)
        for fold in a.folds:
            tr, te = data.folds[fold]
            clin = data.clinical(tr)
            blocks = {om: x.shape[1] for om, (x, _) in data.blocks.items()}
            for method in a.methods:
                if (cohort, fold, method) in done:
                    continue
                t0 = time.time()
                torch.manual_seed(a.seed)  # seed each model's initialisation explicitly (added after the recorded run)
                if method == "modaltune":
                    bb, _ = load_backbone(a.backbone)
                    model = AdapterModel(bb, clin.shape[1], blocks, len(data.classes))
                    prob, risk = train_torch(model, rows_all, data, clin, tr, te, epochs=a.epochs, lr=a.lr, backbone_lr=None, batch_size=a.batch_size, seed=a.seed)
                elif method == "full_ft":
                    bb, _ = load_backbone(a.backbone)
                    model = FineTuneModel(bb, len(data.classes))
                    prob, risk = train_torch(model, rows_all, data, clin, tr, te, epochs=a.epochs, lr=a.lr, backbone_lr=a.backbone_lr, batch_size=a.batch_size, seed=a.seed)
                elif method == "late_fusion":
                    model = LateFusionModel(emb.shape[1], clin.shape[1], blocks, len(data.classes))
                    prob, risk = train_torch(model, torch.from_numpy(emb), data, clin, tr, te, epochs=a.epochs, lr=a.lr, backbone_lr=None, batch_size=a.batch_size, seed=a.seed)
                elif method == "linear_probe":
                    prob, risk = fit_linear(emb, data, tr, te, a.seed)
                elif method == "penalised":
                    prob, risk = fit_linear(omics_pcs(data, tr), data, tr, te, a.seed)
                elif method == "clinical_only":
                    prob, risk = fit_linear(clin, data, tr, te, a.seed)
                else:
                    raise SystemExit(f"unknown method {method}")
                secs = time.time() - t0
                pred = pd.DataFrame({"cohort": cohort, "fold": fold, "method": method, "patient_id": [data.ids[i] for i in te],
                                     "label": data.label[te], "has_label": data.has_label[te], "prob1": prob[:, 1] if prob.shape[1] == 2 else np.nan,
                                     "pred": prob.argmax(1), "risk": risk, "time": data.time[te], "event": data.event[te]})
                pred.to_csv(pred_path, mode="a", header=not pred_path.exists(), index=False)
                rows = _fold_metrics(pred)
                pd.DataFrame([{"cohort": cohort, "fold": fold, "method": method, **m, "seconds": round(secs, 2), "loadavg": Path("/proc/loadavg").read_text().split()[0]}
                              for m in rows]).to_csv(res_path, mode="a", header=not res_path.exists(), index=False)
                print(cohort, fold, method, {m["metric"]: round(m["value"], 4) for m in rows}, f"{secs:.1f}s", flush=True)


def cmd_diagnose(a) -> None:
    """Exploratory (not pre-registered): how open are the injector gates after training, and what
    do the injections do at test time? Trains ``modaltune`` as in ``evaluate`` and scores the test
    fold twice: as trained, and with every gate set to 0 (the backbone stream is then exactly the
    frozen model; modal tokens still read it through the extractors)."""
    from modaltune.adapters.modal_adapter import gate_diagnostics
    from modaltune.modaltune.rna_backbone import load_backbone

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    _, meta = load_backbone(a.backbone)
    cache: dict = {}
    rows_out = []
    for cohort in a.cohorts:
        data = CohortData(cohort, meta["genes"], cache)
        for fold in a.folds:
            tr, te = data.folds[fold]
            clin = data.clinical(tr)
            bb, _ = load_backbone(a.backbone)
            rows_all = bb.rows(data.rna)
            torch.manual_seed(a.seed)
            model = AdapterModel(bb, clin.shape[1], {om: x.shape[1] for om, (x, _) in data.blocks.items()}, len(data.classes))
            train_torch(model, rows_all, data, clin, tr, te, epochs=a.epochs, lr=a.lr, backbone_lr=None, batch_size=a.batch_size, seed=a.seed)
            for variant in ("trained", "gates_zero"):
                if variant == "gates_zero":
                    with torch.no_grad():
                        for inj in model.adapter.injectors:
                            inj.gamma.zero_()
                with torch.no_grad():
                    logits, risk = model(rows_all[te], _batch(data, clin, te))
                diag = gate_diagnostics(model.adapter)
                prob = torch.softmax(logits, 1).numpy()
                pred = pd.DataFrame({"label": data.label[te], "has_label": data.has_label[te], "prob1": prob[:, 1], "pred": prob.argmax(1),
                                     "risk": risk.numpy(), "time": data.time[te], "event": data.event[te]})
                rows_out.append({"cohort": cohort, "fold": fold, "variant": variant, **diag,
                                 **{m["metric"]: m["value"] for m in _fold_metrics(pred)}})
                print(rows_out[-1], flush=True)
    pd.DataFrame(rows_out).to_csv(out / "gates.csv", index=False)


def _fold_metrics(pred: pd.DataFrame) -> list[dict]:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from modaltune.evaluation.metrics import harrell_c

    lab = pred[pred["has_label"].astype(bool)]
    out = [{"task": "subtype", "metric": "balanced_accuracy", "value": float(balanced_accuracy_score(lab["label"], lab["pred"])), "n_test": len(lab)}]
    if lab["label"].nunique() == 2:
        out.append({"task": "subtype", "metric": "auc", "value": float(roc_auc_score(lab["label"], lab["prob1"])), "n_test": len(lab)})
    out.append({"task": "survival", "metric": "c_index", "value": float(harrell_c(pred["time"], pred["event"], pred["risk"])), "n_test": len(pred)})
    return out


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by average ranks (Mann-Whitney U); NaN with one class."""
    from scipy.stats import rankdata

    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return np.nan
    return float((rankdata(s)[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _bal_acc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean over the classes present of the recall (= sklearn's balanced_accuracy_score)."""
    return float(np.mean([np.mean(p[y == c] == c) for c in np.unique(y)])) if len(y) else np.nan


class _FoldMean:
    """metric_fn for the paired bootstrap: the mean over folds of the per-fold metric. ``bind(df)``
    (the bootstrap's fast path) precomputes numpy columns so that a resample costs no table copy:
    it runs 2,000 times per comparison. C-index: the counts of ``harrell_c`` (scikit-survival's rules)."""

    def __init__(self, metric: str):
        self.metric = metric

    def __call__(self, df: pd.DataFrame) -> float:
        return self.bind(df)(np.arange(len(df)))

    def bind(self, df: pd.DataFrame):
        from modaltune.evaluation.metrics import _harrell_counts

        fold, lab = df["fold"].to_numpy(), df["has_label"].to_numpy().astype(bool)
        y, p1, pred = df["label"].to_numpy(), df["prob1"].to_numpy(), df["pred"].to_numpy()
        t, e, r = df["time"].to_numpy(float), df["event"].to_numpy().astype(bool), df["risk"].to_numpy(float)
        metric = self.metric

        def at(rows: np.ndarray) -> float:
            vals = []
            f_r = fold[rows]
            for f in np.unique(f_r):
                k = rows[f_r == f]
                if metric == "c_index":
                    num, den = _harrell_counts(t[k], e[k], r[k], 1e-8)
                    vals.append(num / den if den else np.nan)
                else:
                    k = k[lab[k]]
                    vals.append(_auc(y[k], p1[k]) if metric == "auc" else _bal_acc(y[k], pred[k]))
            return float(np.nanmean(vals))

        return at


def _fold_mean(metric: str) -> _FoldMean:
    return _FoldMean(metric)


def cmd_analyse(a) -> None:
    from modaltune.evaluation.bootstrap import paired_bootstrap

    runs, out = Path(a.runs), Path(a.out)
    res = pd.read_csv(runs / "results.csv")
    pred = pd.read_csv(runs / "predictions.csv")
    pred["key"] = pred["patient_id"].astype(str) + "|" + pred["fold"].astype(str)
    summary = res.groupby(["cohort", "task", "metric", "method"])["value"].agg(["mean", "std", "count"]).reset_index()
    tests = []
    primary = {"subtype": "balanced_accuracy", "survival": "c_index"}
    for cohort in sorted(pred["cohort"].unique()):
        pc = pred[pred["cohort"] == cohort]
        for task, metric in (("subtype", "balanced_accuracy"), ("subtype", "auc"), ("survival", "c_index")):
            mt = pc[pc["method"] == "modaltune"]
            for other in ("late_fusion", "linear_probe", "full_ft", "penalised", "clinical_only"):
                ot = pc[pc["method"] == other]
                if mt.empty or ot.empty or set(mt["fold"]) != set(ot["fold"]):
                    continue
                sel = (lambda d: d) if task == "survival" else (lambda d: d[d["has_label"].astype(bool)])
                r = paired_bootstrap(sel(mt), sel(ot), _fold_mean(metric), n=a.n_boot, seed=0, id_col="key")
                tests.append({"cohort": cohort, "task": task, "metric": metric, "comparison": f"modaltune - {other}", "delta": r.delta,
                              "ci_low": r.ci[0], "ci_high": r.ci[1], "p": r.p_value,
                              "primary": metric == primary[task] and other in ("late_fusion", "linear_probe"), "folds": int(mt["fold"].nunique())})
    tdf = pd.DataFrame(tests)
    prim = tdf[tdf["primary"]].sort_values("p")
    m = len(prim)
    holm, running = {}, 0.0
    for k, (i, row) in enumerate(prim.iterrows()):  # Holm step-down over the primary tests
        running = max(running, min(1.0, (m - k) * row["p"]))
        holm[i] = running
    tdf["p_holm"] = pd.Series(holm)
    out.mkdir(parents=True, exist_ok=True)
    res.to_csv(out / "results.csv", index=False)
    if (runs / "config.json").exists():
        (out / "config.json").write_text((runs / "config.json").read_text())
    tdf.to_csv(out / "paired_bootstrap.csv", index=False)
    analysis = {"n_boot": a.n_boot, "primary_tests": int(m), "tests": tests and json.loads(tdf.to_json(orient="records")),
                "summary": json.loads(summary.to_json(orient="records")),
                "seconds_per_method": res.groupby("method")["seconds"].mean().round(2).to_dict() if "seconds" in res else {}}
    (out / "analysis.json").write_text(json.dumps(analysis, indent=1))
    lines = ["# ModalTune on a real frozen RNA backbone: summary", "", "Mean (sd) over folds; paired bootstrap deltas are ModalTune minus the comparator "
             f"(fold-mean metric, patients resampled, n = {a.n_boot}).", ""]
    for (cohort, task, metric), g in summary.groupby(["cohort", "task", "metric"]):
        lines.append(f"## {cohort} {task} ({metric})")
        lines.append("| method | mean | sd | folds |")
        lines.append("|---|---|---|---|")
        for _, r in g.sort_values("mean", ascending=False).iterrows():
            lines.append(f"| {r['method']} | {r['mean']:.3f} | {r['std']:.3f} | {int(r['count'])} |")
        t = tdf[(tdf["cohort"] == cohort) & (tdf["task"] == task) & (tdf["metric"] == metric)] if len(tdf) else tdf
        if len(t):
            lines += ["", "| comparison | delta | 95% CI | p | p (Holm, primary) |", "|---|---|---|---|---|"]
            for _, r in t.iterrows():
                ph = "" if pd.isna(r.get("p_holm")) else f"{r['p_holm']:.3f}"
                lines.append(f"| {r['comparison']} | {r['delta']:+.3f} | [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {r['p']:.3f} | {ph} |")
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate")
    e.add_argument("--backbone", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--cohorts", nargs="+", default=["brca", "gbmlgg"])
    e.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    e.add_argument("--methods", nargs="+", default=list(METHODS))
    e.add_argument("--epochs", type=int, default=8)
    e.add_argument("--lr", type=float, default=1e-3)
    e.add_argument("--backbone-lr", dest="backbone_lr", type=float, default=1e-4)
    e.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    e.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("diagnose")
    d.add_argument("--backbone", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--cohorts", nargs="+", default=["brca"])
    d.add_argument("--folds", nargs="+", type=int, default=[0])
    d.add_argument("--epochs", type=int, default=6)
    d.add_argument("--lr", type=float, default=1e-3)
    d.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    d.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("analyse")
    s.add_argument("--runs", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--n-boot", dest="n_boot", type=int, default=1000)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    {"pretrain": cmd_pretrain, "evaluate": cmd_evaluate, "diagnose": cmd_diagnose, "analyse": cmd_analyse}[a.cmd](a)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    main()
