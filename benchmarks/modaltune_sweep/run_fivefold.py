"""ModalTune (cell C, paper protocol, validation-selected epoch) vs late fusion on all 5 folds (issue 17).

The plan, committed before any of its units ran: ``benchmarks/modaltune_sweep/preregistered_5fold.yaml``.
Units reuse ``run_sweep.run_unit`` (one ``modaltune.training.fit`` per fold x seed x method, held-out
risk saved; KL-only ModalTune's risk = the paper's ridge Cox probe (0.1) on the survival task
embedding, fitted on the fold's training patients). What is new here: the 5-fold split carves
validation patients (``split.val_fraction``) out of each fold's TRAINING part, so the paper's
epoch selection (``select_epoch: val_probe``) runs; each ModalTune unit also saves the last
epoch's held-out risk (``heldout_last_epoch.csv``) so the effect of the selection can be read::

    nice -n 10 python benchmarks/modaltune_sweep/run_fivefold.py pilot --runs /work/runs/h22c --max-patches 64
    nice -n 10 python benchmarks/modaltune_sweep/run_fivefold.py run --runs /work/runs/h22c [--seeds 0 1 2]
    python benchmarks/modaltune_sweep/run_fivefold.py analyse --runs /work/runs/h22c [--seeds 0 1 2]

Ablations at the same protocol (plan ``preregistered_5fold_ablations.yaml``; only the variant's
ModalTune units run, in ``fivefold/<variant>/``; the cell C and late-fusion units are reused as the
paired references; ``analyse --variants`` writes benchmarks/modaltune_sweep/fivefold_ablations/)::

    nice -n 10 python benchmarks/modaltune_sweep/run_fivefold.py run --runs /work/runs/h23e --variant paper_sup [--seeds 0 1 2]
    python benchmarks/modaltune_sweep/run_fivefold.py analyse --runs /work/runs/h23e --variants paper_sup gates_zero

Part 3 (plan ``preregistered_5fold_ablations3.yaml``: clinical inputs for every row; the run folder of the
references is gone, so they are recomputed with ``run --methods`` as far as time allows and the rest restored
from the committed ``fivefold/heldout_predictions.csv.gz``; ``analyse`` reports which)::

    P=benchmarks/modaltune_sweep/preregistered_5fold_ablations3.yaml
    nice -n 10 python benchmarks/modaltune_sweep/run_fivefold.py --plan $P run --runs /work/runs/h25d --methods late_fusion --seeds 0 --folds 0 1 2 3 4
    nice -n 10 python benchmarks/modaltune_sweep/run_fivefold.py --plan $P run --runs /work/runs/h25d --variant mt_clinical --seeds 0
    python benchmarks/modaltune_sweep/run_fivefold.py --plan $P restore --runs /work/runs/h25d
    python benchmarks/modaltune_sweep/run_fivefold.py --plan $P analyse --runs /work/runs/h25d --variants mt_clinical lf_clinical coxnet_rna_clinical \
        --out benchmarks/modaltune_sweep/fivefold_ablations3

Part 2 (plan ``preregistered_5fold_ablations2.yaml``, chosen with ``--plan``; a variant may name a whole
method instead of cell C overrides: the clinical-only Cox and the frozen-backbone linear probe)::

    P=benchmarks/modaltune_sweep/preregistered_5fold_ablations2.yaml
    nice -n 10 python benchmarks/modaltune_sweep/run_fivefold.py --plan $P run --runs /work/runs/h24d --variant clinical_cox
    python benchmarks/modaltune_sweep/run_fivefold.py --plan $P analyse --runs /work/runs/h24d --variants clinical_cox linear_probe no_extractor onehot \
        --out benchmarks/modaltune_sweep/fivefold_ablations2

``analyse`` writes benchmarks/modaltune_sweep/fivefold/{results.csv, analysis.json, summary.md,
heldout_predictions.csv.gz, epoch_selection.jsonl}. Primary statistic (pre-registered): pooled
Harrell C over the 300 held-out patients (each patient scored by the model of the fold that held it
out), ModalTune minus late fusion, paired bootstrap over patients (2,000 resamples; with several
seeds the statistic is the mean over seeds of the per-seed difference).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_sweep as rs  # the sweep's unit runner, C-index and bootstrap (after the path insert)

PLAN = rs.REPO / "benchmarks" / "modaltune_sweep" / "preregistered_5fold.yaml"
OUT = rs.REPO / "benchmarks" / "modaltune_sweep" / "fivefold"
PLAN_ABL = rs.REPO / "benchmarks" / "modaltune_sweep" / "preregistered_5fold_ablations.yaml"
OUT_ABL = rs.REPO / "benchmarks" / "modaltune_sweep" / "fivefold_ablations"
MT, LF = "modaltune", "late_fusion"


def _plan() -> dict:
    return yaml.safe_load(PLAN.read_text())


def _cell(plan: dict) -> dict:
    """The ModalTune cell's params (by name, from the reduced plan's cells, unchanged)."""
    return dict(rs._plan()["cells"][plan["modaltune_cell"]])


def _cohort(runs: Path, plan: dict):
    c = plan["cohort"]
    return rs._cohort(runs / "cohorts" / c["name"], preset=c["preset"], seed=c["seed"], n_patients=c["n_patients"], signal=c["signal"])


def folds(cohort, plan: dict) -> list:
    """The plan's 5-fold split with validation patients carved out of each training part."""
    from modaltune.training.experiment_config import SplitConfig
    from modaltune.training.sources import make_splits

    s = plan["split"]
    return make_splits(cohort, SplitConfig(kfold=s["kfold"], seed=s["seed"], val_fraction=s["val_fraction"]), rs.TASKS)[0].folds


def _trainer(plan: dict, **over) -> dict:
    _, _, tr = rs._base()
    return {**tr, **plan["trainer_overrides"], "logger": "none", **over}


def _methods(plan: dict) -> list[dict]:
    return [rs._modaltune(_cell(plan), MT), rs._late_fusion(LF)]


def _log(runs: Path, rec: dict) -> None:
    import resource

    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    ru = resource.getrusage(resource.RUSAGE_SELF)
    line = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg": " ".join(load),
            "process_cpu_s": round(ru.ru_utime + ru.ru_stime, 1), **rec}  # cumulative CPU seconds of this process
    with open(runs / "fivefold_log.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)


def cmd_pilot(runs: Path, max_patches: int, epochs: int, method: str = MT) -> None:
    """One unit (fold 0, seed 0) for sizing, in its own folder (never reused by ``run``)."""
    plan = _plan() if PLAN.exists() else {"cohort": PILOT_COHORT, "split": PILOT_SPLIT, "modaltune_cell": "C", "trainer_overrides": {}, "eval_batch_size": 8}
    cohort = _cohort(runs, plan)
    f0 = folds(cohort, plan)[0]
    tr = _trainer(plan, max_epochs=epochs, max_patches=max_patches)
    m = next(x for x in _methods(plan) if x["label"] == method)
    rec = rs.run_unit(cohort, f0, m, 0, tr, runs / "pilot" / f"{method}_mp{max_patches}_ep{epochs}", plan.get("eval_batch_size", 8), keep_last=True)
    _log(runs, {"stage": "pilot", "label": method, "max_patches": max_patches, "epochs": epochs, **{k: rec.get(k) for k in ("status", "seconds", "n_train", "n_val", "n_test", "reason")}})


#: the pilot's cohort and split before the plan exists (the plan repeats them)
PILOT_COHORT = {"name": "demo_strong_seed0", "preset": "demo", "seed": 0, "n_patients": 300, "signal": {"sub_interaction": 6.25, "surv_interaction": 1.5}}
PILOT_SPLIT = {"kfold": 5, "seed": 0, "val_fraction": 0.2}


def _ablation_plan(path: Path | None = None) -> dict:
    """An ablation plan (default ``preregistered_5fold_ablations.yaml``)."""
    return yaml.safe_load(Path(path or PLAN_ABL).read_text())


def variant_method(plan: dict, name: str, abl_path: Path | None = None) -> dict:
    """Cell C with the ablation plan's overrides for ``name`` (dotted keys set nested params), or, when
    the variant names a ``method`` (a comparison row that is not ModalTune), that method as given, or, with
    ``base: late_fusion``, the 5-fold run's late fusion; ``modalities`` (optional) replaces the inputs of
    cell C / late fusion (e.g. adds ``clinical``). Its label (= its unit folder under fivefold/) is the
    variant's name."""
    v = _ablation_plan(abl_path)["variants"][name]
    if v.get("method"):
        return {**copy.deepcopy(v["method"]), "label": name}
    if v.get("base", MT) == LF:
        if v.get("overrides"):
            raise ValueError(f"variant {name}: overrides are cell C params; a late-fusion variant may only change modalities")
        m = rs._late_fusion(name)
    else:
        p = copy.deepcopy(_cell(plan))
        for k, val in (v.get("overrides") or {}).items():
            if "." in k:
                rs._set(p, k, val)
            else:
                p[k] = val
        m = rs._modaltune(p, name)
    if v.get("modalities"):
        m["modalities"] = list(v["modalities"])
    return m


def cmd_run(runs: Path, seeds: list[int] | None, variant: str | None = None, abl_path: Path | None = None,
            only: list[str] | None = None, fold_ids: list[int] | None = None) -> None:
    """All units of the 5-fold plan, or (``variant``) only that ablation's units; ``only`` keeps some of the
    5-fold plan's methods (cell C ``modaltune`` / ``late_fusion``, e.g. to recompute the references),
    ``fold_ids`` some folds. ModalTune and late-fusion units also write heldout_last_epoch.csv (as in the
    5-fold run); other methods (coxnet, slide_fm) select no epoch, so their heldout.csv is the last epoch
    and no copy is written (no "selected - last" of 0)."""
    plan = _plan()
    cohort = _cohort(runs, plan)
    tr = _trainer(plan)
    methods = [variant_method(plan, variant, abl_path)] if variant else [m for m in _methods(plan) if not only or m["label"] in only]
    for seed in seeds or (_ablation_plan(abl_path)["variants"][variant]["seeds"] if variant else plan["seeds"]):
        for f in (f for f in folds(cohort, plan) if fold_ids is None or f.index in fold_ids):
            for m in methods:
                rec = rs.run_unit(cohort, f, m, seed, tr, runs / "fivefold" / m["label"] / f"seed{seed}" / f"fold{f.index}", plan.get("eval_batch_size", 8),
                                  keep_last=m["name"] in (MT, LF))
                _log(runs, {"stage": "run", "label": m["label"], "seed": seed, "fold": f.index, **{k: rec.get(k) for k in ("status", "seconds", "selected_epoch", "reason")}})


# -------------------------------------------------------------------------------------- analysis
def pooled(runs: Path, label: str, seed: int, n_folds: int, name: str = "heldout.csv") -> pd.DataFrame | None:
    """The held-out predictions of all folds of one method x seed (None if a fold is missing)."""
    frames = []
    for k in range(n_folds):
        p = runs / "fivefold" / label / f"seed{seed}" / f"fold{k}" / name
        if not p.exists():
            return None
        frames.append(pd.read_csv(p).assign(fold=k))
    return pd.concat(frames, ignore_index=True)


def oracles_pooled(cohort, fold_list) -> dict:
    """Pooled held-out C of the true log-hazard and of the additive oracle (Cox on the true latent
    factors as main effects, fitted per fold on its training + validation patients)."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from modaltune.data.simulate import LATENT_FACTORS

    gt = cohort.ground_truth
    cols = [f"z_{f}" for f in LATENT_FACTORS]
    risk, add, tt, ee = [], [], [], []
    for f in fold_list:
        tr, te = list(f.train) + list(f.val), list(f.test)
        st = cohort.targets("survival", tr + te)
        ok = np.asarray(st.mask, bool)
        t, e = np.asarray(st.time, float), np.asarray(st.event, bool)
        ids = np.array(tr + te)
        trm, tem = ok[: len(tr)], ok[len(tr):]
        Z = gt.loc[ids, cols].astype(float).to_numpy()
        mu, sd = Z[: len(tr)][trm].mean(0), Z[: len(tr)][trm].std(0, ddof=1)
        y = np.array(list(zip(e[: len(tr)][trm], t[: len(tr)][trm])), dtype=[("event", bool), ("time", float)])
        cox = CoxPHSurvivalAnalysis(alpha=1.0).fit((Z[: len(tr)][trm] - mu) / sd, y)
        add.append(cox.predict((Z[len(tr):][tem] - mu) / sd))
        risk.append(gt.loc[ids[len(tr):][tem], "risk"].to_numpy(float))
        tt.append(t[len(tr):][tem])
        ee.append(e[len(tr):][tem])
    t, e = np.concatenate(tt), np.concatenate(ee)
    return {"oracle_c_index": rs._harrell(np.concatenate(risk), t, e), "oracle_additive_c_index": rs._harrell(np.concatenate(add), t, e)}


def _c(h: pd.DataFrame) -> float:
    return rs._harrell(h["risk"], h["time"], h["event"])


def _subtype(h: pd.DataFrame) -> dict:
    """Pooled held-out subtype balanced accuracy (threshold 0.5) and AUC of prob_B (KL-only
    ModalTune: its text-similarity logits; late fusion: its head)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    ok = h["label"] >= 0
    return {"balanced_accuracy": float(balanced_accuracy_score(h.loc[ok, "label"], h.loc[ok, "prob_B"] > 0.5)),
            "auc": float(roc_auc_score(h.loc[ok, "label"], h.loc[ok, "prob_B"]))}


def analyse(runs: Path, seeds: list[int] | None) -> dict:
    from modaltune.data.cohort import Cohort

    plan = _plan()
    seeds = list(seeds or plan["seeds"])
    cohort = Cohort.load(runs / "cohorts" / plan["cohort"]["name"])
    fl = folds(cohort, plan)
    k = len(fl)
    rows, units = [], []
    for m in _methods(plan):
        for s in seeds:
            for f in fl:
                d = runs / "fivefold" / m["label"] / f"seed{s}" / f"fold{f.index}"
                if not (d / "result.json").exists():
                    continue
                rec, held = rs._load(d)
                for r in rs._unit_rows("fivefold", m["label"], rec, held):
                    rows.append({**r, "fold": f.index})
                u = {"label": m["label"], "seed": s, "fold": f.index, "status": rec["status"], "seconds": rec.get("seconds"),
                     "n_train": rec.get("n_train"), "n_val": rec.get("n_val"), "n_test": rec.get("n_test"), "selected_epoch": rec.get("selected_epoch"),
                     "last_epoch": rec.get("last_epoch")}
                if held is not None:
                    u["c_index"] = _c(held)
                d_ = rec.get("diagnostics") or {}
                if d_:  # gates at the selected epoch (preregistered.yaml's "gates open", one unit)
                    u["gate_abs_mean_min"] = min(v for q, v in d_.items() if q.startswith("gate_abs_mean/"))
                    u["update_ratio_max"] = max(v for q, v in d_.items() if q.startswith("update_ratio/"))
                    u["gates_open"] = rs._gates_open([rec], {"gate_abs_mean_min": 0.05, "update_ratio_min": 0.01, "seeds_required": 1})
                last = d / "heldout_last_epoch.csv"
                if last.exists():
                    u["c_index_last_epoch"] = _c(pd.read_csv(last))
                    rows.append({"group": "fivefold", "cell": m["label"], "label": m["label"], "seed": s, "fold": f.index, "status": rec["status"],
                                 "metric": "c_index_last_epoch", "value": u["c_index_last_epoch"]})
                sel = d / "fit" / "epoch_selection.json"
                if sel.exists():
                    u["epoch_selection"] = json.loads(sel.read_text())
                units.append(u)
    report: dict = {"plan": str(PLAN.relative_to(rs.REPO)), "seeds": seeds, "units": units}
    report.update(oracles_pooled(cohort, fl))
    held = {(lab, s): pooled(runs, lab, s, k) for lab in (MT, LF) for s in seeds}
    held_last = {s: pooled(runs, MT, s, k, "heldout_last_epoch.csv") for s in seeds}
    done = [s for s in seeds if held[(MT, s)] is not None and held[(LF, s)] is not None]
    report["seeds_complete"] = done
    if done:
        mt, lf = [held[(MT, s)] for s in done], [held[(LF, s)] for s in done]
        report["pooled_c_index"] = {MT: [_c(h) for h in mt], LF: [_c(h) for h in lf]}
        report["fold_mean_c_index"] = {lab: [float(np.mean([u["c_index"] for u in units if u["label"] == lab and u["seed"] == s and "c_index" in u])) for s in done]
                                       for lab in (MT, LF)}
        report["modaltune_vs_late_fusion"] = rs._paired_bootstrap(mt, lf, plan["decision"]["n_boot"])
        if all(held_last[s] is not None for s in done):
            ml = [held_last[s] for s in done]
            report["pooled_c_index"]["modaltune_last_epoch"] = [_c(h) for h in ml]
            report["selected_vs_last_epoch"] = rs._paired_bootstrap(mt, ml, plan["decision"]["n_boot"])
            report["last_epoch_vs_late_fusion"] = rs._paired_bootstrap(ml, lf, plan["decision"]["n_boot"])
        report["subtype_pooled"] = {lab: [_subtype(h) for h in hs] for lab, hs in ((MT, mt), (LF, lf))}
        report["gates_open_units"] = f"{sum(bool(u.get('gates_open')) for u in units if u['label'] == MT)} of {sum(1 for u in units if u['label'] == MT)}"
        gt = cohort.ground_truth
        report["ols"] = {lab: [rs._ols_interaction(h.set_index("patient_id")["risk"], gt) for h in hs] for lab, hs in ((MT, mt), (LF, lf))}
        b = report["modaltune_vs_late_fusion"]
        report["decision"] = ("ModalTune better" if b["ci"][0] > 0 else "late fusion better" if b["ci"][1] < 0 else "no difference established")
    OUT.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(OUT / "results.csv", index=False)
    frames = []
    for (lab, s), h in held.items():
        if h is not None:
            frames.append(h.assign(method=lab, seed=s, epoch="selected" if lab == MT else "last"))
    for s, h in held_last.items():
        if h is not None:
            frames.append(h.assign(method=MT, seed=s, epoch="last"))
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(OUT / "heldout_predictions.csv.gz", index=False, float_format="%.6g")
    with open(OUT / "epoch_selection.jsonl", "w") as fh:
        for u in units:
            if "epoch_selection" in u:
                fh.write(json.dumps({"seed": u["seed"], "fold": u["fold"], **u["epoch_selection"]}) + "\n")
    (OUT / "analysis.json").write_text(json.dumps(report, indent=2, default=str))
    _write_md(report, plan)
    return report


def _unit(d: Path, label: str, seed: int, fold: int) -> tuple[dict, list[dict]] | None:
    """One unit's summary (status, selected epoch, held-out C at the selected and last epoch, gates at
    the selected epoch, its epoch_selection.json) and its results.csv rows; None if it has not run."""
    if not (d / "result.json").exists():
        return None
    rec, held = rs._load(d)
    rows = [{**r, "fold": fold} for r in rs._unit_rows("fivefold", label, rec, held)]
    u = {"label": label, "seed": seed, "fold": fold, "status": rec["status"], "seconds": rec.get("seconds"), "risk_source": rec.get("risk_source"),
         "n_train": rec.get("n_train"), "n_val": rec.get("n_val"), "n_test": rec.get("n_test"),
         "selected_epoch": rec.get("selected_epoch"), "last_epoch": rec.get("last_epoch")}
    if held is not None:
        u["c_index"] = _c(held)
    g = {q: v for q, v in (rec.get("diagnostics") or {}).items() if q.startswith("gate_abs_mean/")}
    r_ = {q: v for q, v in (rec.get("diagnostics") or {}).items() if q.startswith("update_ratio/")}
    if g:  # gates at the selected epoch; max too, so that frozen-at-zero gates can be checked to be exactly 0
        u.update(gate_abs_mean_min=min(g.values()), gate_abs_mean_max=max(g.values()), update_ratio_max=max(r_.values()) if r_ else None,
                 gates_open=rs._gates_open([rec], {"gate_abs_mean_min": 0.05, "update_ratio_min": 0.01, "seeds_required": 1}))
    last = d / "heldout_last_epoch.csv"
    if last.exists():
        u["c_index_last_epoch"] = _c(pd.read_csv(last))
        rows.append({"group": "fivefold", "cell": label, "label": label, "seed": seed, "fold": fold, "status": rec["status"],
                     "metric": "c_index_last_epoch", "value": u["c_index_last_epoch"]})
    sel = d / "fit" / "epoch_selection.json"
    if sel.exists():
        u["epoch_selection"] = json.loads(sel.read_text())
    return u, rows


COMMITTED_PRED = OUT / "heldout_predictions.csv.gz"
RESTORED = "restored_from_committed.json"  # marker of a reference unit folder written by restore_references


def restore_references(runs: Path, seeds: list[int], n_folds: int, committed: Path = COMMITTED_PRED) -> list[dict]:
    """Write the committed cell C / late-fusion held-out predictions (``fivefold/heldout_predictions.csv.gz``,
    6 significant digits) into the reference unit folders that have no ``heldout.csv`` (a unit that was
    recomputed is never overwritten); ModalTune also gets its last-epoch file. Returns the restored units."""
    pred = pd.read_csv(committed)
    cols = ["patient_id", "time", "event", "risk", "label", "prob_B"]
    done = []
    for lab in (MT, LF):
        for s in seeds:
            for k in range(n_folds):
                d = runs / "fivefold" / lab / f"seed{s}" / f"fold{k}"
                if (d / "heldout.csv").exists():
                    continue
                d.mkdir(parents=True, exist_ok=True)
                sel = pred[(pred["method"] == lab) & (pred["seed"] == s) & (pred["fold"] == k)]
                files = {"heldout.csv": "selected" if lab == MT else "last", **({"heldout_last_epoch.csv": "last"} if lab == MT else {})}
                for name, epoch in files.items():
                    sel[sel["epoch"] == epoch][cols].to_csv(d / name, index=False)
                (d / RESTORED).write_text(json.dumps({"source": str(committed.relative_to(rs.REPO)), "files": files}))
                done.append({"label": lab, "seed": s, "fold": k})
    return done


def reference_provenance(runs: Path, seeds: list[int], n_folds: int, committed: Path = OUT / "analysis.json") -> dict:
    """Which reference units were recomputed here (``result.json``) and which restored from the committed
    predictions; each recomputed unit's held-out C against the committed 5-fold unit's (same label, seed, fold)."""
    old = {(u["label"], u["seed"], u["fold"]): u.get("c_index") for u in json.loads(committed.read_text())["units"]}
    rec, restored = [], []
    for lab in (MT, LF):
        for s in seeds:
            for k in range(n_folds):
                d = runs / "fivefold" / lab / f"seed{s}" / f"fold{k}"
                if (d / RESTORED).exists():
                    restored.append(f"{lab} seed{s} fold{k}")
                elif (d / "result.json").exists():
                    c = _c(pd.read_csv(d / "heldout.csv"))
                    rec.append({"label": lab, "seed": s, "fold": k, "c_index": c, "committed_c_index": old[(lab, s, k)], "abs_diff": abs(c - old[(lab, s, k)])})
    return {"recomputed": rec, "restored": restored, "n_recomputed": len(rec), "n_recomputed_equal_committed": sum(r["abs_diff"] == 0 for r in rec),
            "max_abs_diff_recomputed": max((r["abs_diff"] for r in rec), default=None)}


def compare_pairs(held: dict, pairs: list[list[str]], n_boot: int) -> list[dict]:
    """Paired bootstrap of x - y for each pre-registered pair [x, y] of variants, over the seeds both
    completed (``held``: variant -> {seed: pooled held-out frame})."""
    out = []
    for x, y in pairs:
        seeds = sorted(set(held.get(x, {})) & set(held.get(y, {})))
        e: dict = {"x": x, "y": y, "seeds": seeds}
        if seeds:
            e["diff"] = rs._paired_bootstrap([held[x][s] for s in seeds], [held[y][s] for s in seeds], n_boot)
            ci = e["diff"]["ci"]
            e["decision"] = f"{x} better" if ci[0] > 0 else f"{y} better" if ci[1] < 0 else "no difference established"
        out.append(e)
    return out


def _decide(b: dict) -> str:
    return "helps" if b["ci"][0] > 0 else "hurts" if b["ci"][1] < 0 else "no difference established"


def analyse_ablations(runs: Path, names: list[str], out: Path = OUT_ABL, abl_path: Path | None = None) -> dict:
    """The ablation plan's variants against the committed cell C and late-fusion units (same seeds,
    same 300 held-out patients); writes ``out`` (default benchmarks/modaltune_sweep/fivefold_ablations/)."""
    from modaltune.data.cohort import Cohort

    abl_path = Path(abl_path or PLAN_ABL)
    plan, abl = _plan(), _ablation_plan(abl_path)
    nb = abl["decision"]["n_boot"]
    cohort = Cohort.load(runs / "cohorts" / plan["cohort"]["name"])
    fl = folds(cohort, plan)
    k = len(fl)
    gt = cohort.ground_truth
    ref = {(lab, s): pooled(runs, lab, s, k) for lab in (MT, LF) for s in plan["seeds"]}
    ref_fold = {(lab, s, f.index): _c(pd.read_csv(runs / "fivefold" / lab / f"seed{s}" / f"fold{f.index}" / "heldout.csv"))
                for lab in (MT, LF) for s in plan["seeds"] for f in fl}
    report: dict = {"plan": str(abl_path.resolve().relative_to(rs.REPO)), "base_plan": str(PLAN.relative_to(rs.REPO)),
                    "references": {lab: {"pooled_c_index": [_c(ref[(lab, s)]) for s in plan["seeds"]]} for lab in (MT, LF)}}
    committed = OUT / "analysis.json"
    if committed.exists():  # the reused units must reproduce the committed 5-fold numbers exactly (same files, same code)
        pc = json.loads(committed.read_text())["pooled_c_index"]
        report["references_match_committed_fivefold"] = all(report["references"][lab]["pooled_c_index"] == pc[lab] for lab in (MT, LF))
    report.update(oracles_pooled(cohort, fl))
    report["reference_units"] = reference_provenance(runs, plan["seeds"], k)
    rows, frames, sel_lines, variants, held_of = [], [], [], {}, {}
    for name in names:
        v = abl["variants"][name]
        units = []
        for s in v["seeds"]:
            for f in fl:
                got = _unit(runs / "fivefold" / name / f"seed{s}" / f"fold{f.index}", name, s, f.index)
                if got is None:
                    continue
                u, r = got
                u["cell_c_c_index"], u["late_fusion_c_index"] = ref_fold[(MT, s, f.index)], ref_fold[(LF, s, f.index)]
                units.append(u)
                rows += r
                if "epoch_selection" in u:
                    sel_lines.append({"variant": name, "seed": s, "fold": f.index, **u["epoch_selection"]})
        held = {s: pooled(runs, name, s, k) for s in v["seeds"]}
        held_last = {s: pooled(runs, name, s, k, "heldout_last_epoch.csv") for s in v["seeds"]}
        done = [s for s in v["seeds"] if held[s] is not None]
        held_of[name] = {s: held[s] for s in done}
        e: dict = {"label": v["label"], "overrides": v.get("overrides"), **({"method": v["method"]} if v.get("method") else {}), "seeds_planned": v["seeds"], "seeds_complete": done,
                   "units_run": len(units), "units": units}
        for s in done:
            frames.append(held[s].assign(method=name, seed=s, epoch="selected"))
            if held_last[s] is not None:
                frames.append(held_last[s].assign(method=name, seed=s, epoch="last"))
        if done:
            hv = [held[s] for s in done]
            e["pooled_c_index"] = [_c(h) for h in hv]
            e["fold_mean_c_index"] = [float(np.mean([u["c_index"] for u in units if u["seed"] == s and "c_index" in u])) for s in done]
            e["reference_pooled_c_index_same_seeds"] = {lab: [_c(ref[(lab, s)]) for s in done] for lab in (MT, LF)}
            e["vs_cell_c"] = rs._paired_bootstrap(hv, [ref[(MT, s)] for s in done], nb)
            e["vs_late_fusion"] = rs._paired_bootstrap(hv, [ref[(LF, s)] for s in done], nb)
            e["decision_vs_cell_c"], e["decision_vs_late_fusion"] = _decide(e["vs_cell_c"]), _decide(e["vs_late_fusion"])
            if all(held_last[s] is not None for s in done):
                hl = [held_last[s] for s in done]
                e["pooled_c_index_last_epoch"] = [_c(h) for h in hl]
                e["selected_vs_last_epoch"] = rs._paired_bootstrap(hv, hl, nb)
            if all("prob_B" in h for h in hv):  # a survival-only row (clinical-only Cox) has no subtype output
                e["subtype_pooled"] = [_subtype(h) for h in hv]
            e["ols"] = [rs._ols_interaction(h.set_index("patient_id")["risk"], gt) for h in hv]
            if any("gate_abs_mean_min" in u for u in units):  # only ModalTune units have gates
                e["gates_open_units"] = f"{sum(bool(u.get('gates_open')) for u in units)} of {len(units)}"
        variants[name] = e
    report["variants"] = variants
    report["pairs"] = compare_pairs(held_of, [p for p in abl.get("pairs", []) if set(p) <= set(names)], nb)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(out / "heldout_predictions.csv.gz", index=False, float_format="%.6g")
    with open(out / "epoch_selection.jsonl", "w") as fh:
        fh.writelines(json.dumps(x) + "\n" for x in sel_lines)
    log = runs / "fivefold_log.jsonl"  # this run folder's log holds only the ablation units' lines
    if log.exists():
        (out / "run_log.jsonl").write_text(log.read_text())
    (out / "analysis.json").write_text(json.dumps(report, indent=2, default=str))
    _write_md_ablations(report, plan, out)
    return report


def _write_md_ablations(r: dict, plan: dict, out: Path = OUT_ABL) -> None:
    ref = r["references"]
    L = [f"SYNTHETIC cohort (simulate_cohort {plan['cohort']}), SIMULATED slide bags. Plan: {r['plan']} (base: {r['base_plan']}).",
         f"Patient-level {plan['split']['kfold']}-fold CV (seed {plan['split']['seed']}), validation = {plan['split']['val_fraction']} of each training part; "
         "pooled held-out C over all folds; paired bootstrap (2,000) of the mean over the variant's completed seeds.",
         f"References (5-fold cell C and late-fusion units, seeds {plan['seeds']}): cell C {', '.join(f'{v:.3f}' for v in ref[MT]['pooled_c_index'])}; "
         f"late fusion {', '.join(f'{v:.3f}' for v in ref[LF]['pooled_c_index'])}; identical to the committed fivefold/analysis.json: "
         f"{r.get('references_match_committed_fivefold')}",
         f"oracle C {r['oracle_c_index']:.3f}; additive oracle {r['oracle_additive_c_index']:.3f}"]
    p = r.get("reference_units")
    if p:
        mx = p["max_abs_diff_recomputed"]
        L.append(f"Reference units recomputed here: {p['n_recomputed']} ({p['n_recomputed_equal_committed']} with held-out C equal to the committed unit's; "
                 f"largest |difference| {'-' if mx is None else f'{mx:.2g}'}); restored from the committed predictions: {len(p['restored'])}"
                 + (f" ({', '.join(p['restored'])})" if p["restored"] else ""))
    L += ["", "| variant | seeds complete | pooled C per seed | fold-mean C per seed | last-epoch pooled C | vs cell C | vs late fusion | selected - last | gates open |",
         "|---|---|---|---|---|---|---|---|---|"]
    def f3(xs: list | None) -> str:
        return ", ".join(f"{x:.3f}" for x in xs) if xs else "-"

    for e in r["variants"].values():
        L.append(f"| {e['label']} | {e['seeds_complete']} | {f3(e.get('pooled_c_index'))} | {f3(e.get('fold_mean_c_index'))} | {f3(e.get('pooled_c_index_last_epoch'))} | "
                 f"{_fmt(e.get('vs_cell_c'))} {e.get('decision_vs_cell_c', '')} | {_fmt(e.get('vs_late_fusion'))} {e.get('decision_vs_late_fusion', '')} | "
                 f"{_fmt(e.get('selected_vs_last_epoch'))} | {e.get('gates_open_units', '-')} |")
    L.append("")
    for e in r.get("pairs") or []:
        L.append(f"{e['x']} - {e['y']} (seeds {e['seeds']}): {_fmt(e.get('diff'))} {e.get('decision', 'not run')}")
    for name, e in r["variants"].items():
        for x in e.get("ols") or []:
            L.append(f"OLS of pooled held-out risk, {name}: slide {x['beta_slide']:+.2f}, RNA {x['beta_rna']:+.2f}, interaction {x['beta_interaction']:+.2f} "
                     f"[{x['ci_interaction'][0]:+.2f}, {x['ci_interaction'][1]:+.2f}], R2 {x['r2']:.2f}")
        for x in e.get("subtype_pooled") or []:
            L.append(f"subtype (pooled held-out), {name}: bal. acc. {x['balanced_accuracy']:.3f}, AUC {x['auc']:.3f}")
    L += ["", "| variant | seed | fold | selected epoch | val probe bal. acc. per epoch | C selected | C last | cell C C | late fusion C | "
              "min / max mean abs gamma | max update ratio | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in r["variants"].items():
        for u in e["units"]:
            es = u.get("epoch_selection") or {}
            sc = ", ".join(f"{x['val_probe_balanced_accuracy']:.2f}" for x in es.get("epochs", [])) or "-"
            g = f"{u['gate_abs_mean_min']:.3g} / {u['gate_abs_mean_max']:.3g}" if "gate_abs_mean_min" in u else "-"
            ur = f"{u['update_ratio_max']:.3g}" if u.get("update_ratio_max") is not None else "-"
            cl = f"{u['c_index_last_epoch']:.3f}" if "c_index_last_epoch" in u else "-"
            se = f"{u.get('selected_epoch')} (of 0..{u.get('last_epoch')})" if u.get("selected_epoch") is not None else "- (last)"
            L.append(f"| {name} | {u['seed']} | {u['fold']} | {se} | {sc} | {u.get('c_index', float('nan')):.3f} | {cl} | "
                     f"{u['cell_c_c_index']:.3f} | {u['late_fusion_c_index']:.3f} | {g} | {ur} | {u['seconds']} |")
    (out / "summary.md").write_text("\n".join(L) + "\n")


def _fmt(b: dict | None) -> str:
    return rs._fmt_ci(b)


def _write_md(r: dict, plan: dict) -> None:
    L = [f"SYNTHETIC cohort (simulate_cohort {plan['cohort']}), SIMULATED slide bags. Plan: {r['plan']}.",
         f"Patient-level {plan['split']['kfold']}-fold CV (seed {plan['split']['seed']}), validation = {plan['split']['val_fraction']} of each training part; "
         f"seeds complete: {r['seeds_complete']}; pooled held-out C over all folds.", "",
         "| method | pooled C per seed | fold-mean C per seed |", "|---|---|---|"]
    for lab in ("modaltune", "late_fusion", "modaltune_last_epoch"):
        pc = (r.get("pooled_c_index") or {}).get(lab)
        fm = (r.get("fold_mean_c_index") or {}).get(lab)
        if pc is not None:
            L.append(f"| {lab} | {', '.join(f'{v:.3f}' for v in pc)} | {', '.join(f'{v:.3f}' for v in fm) if fm else '-'} |")
    L += ["", f"oracle C (true log-hazard) {r['oracle_c_index']:.3f}; additive oracle {r['oracle_additive_c_index']:.3f}", "",
          f"ModalTune - late fusion (paired bootstrap): {_fmt(r.get('modaltune_vs_late_fusion'))} -> {r.get('decision', 'not complete')}",
          f"ModalTune selected - last epoch: {_fmt(r.get('selected_vs_last_epoch'))}",
          f"ModalTune last epoch - late fusion: {_fmt(r.get('last_epoch_vs_late_fusion'))}",
          f"ModalTune units with gates open at the selected epoch: {r.get('gates_open_units')}", ""]
    for lab, xs in (r.get("ols") or {}).items():
        L.append(f"OLS of pooled held-out risk, {lab}: " + "; ".join(f"slide {x['beta_slide']:+.2f}, RNA {x['beta_rna']:+.2f}, interaction {x['beta_interaction']:+.2f} "
                                                                   f"[{x['ci_interaction'][0]:+.2f}, {x['ci_interaction'][1]:+.2f}], R2 {x['r2']:.2f}" for x in xs))
    for lab, xs in (r.get("subtype_pooled") or {}).items():
        L.append(f"subtype (pooled held-out), {lab}: " + "; ".join(f"bal. acc. {x['balanced_accuracy']:.3f}, AUC {x['auc']:.3f}" for x in xs))
    L += ["",
          "| method | seed | fold | n train / val / test | selected epoch (of 0..last) | val probe bal. acc. per epoch | held-out C (selected) | held-out C (last epoch) | seconds |",
          "|---|---|---|---|---|---|---|---|---|"]
    for u in r["units"]:
        es = u.get("epoch_selection") or {}
        sc = ", ".join(f"{e['val_probe_balanced_accuracy']:.2f}" for e in es.get("epochs", [])) or "-"
        sel = f"{u['selected_epoch']} (of 0..{u['last_epoch']})" if u.get("selected_epoch") is not None else "- (last)"
        cl = f"{u['c_index_last_epoch']:.3f}" if "c_index_last_epoch" in u else "-"
        L.append(f"| {u['label']} | {u['seed']} | {u['fold']} | {u['n_train']} / {u['n_val']} / {u['n_test']} | {sel} | {sc} | {u.get('c_index', float('nan')):.3f} | {cl} | {u['seconds']} |")
    (OUT / "summary.md").write_text("\n".join(L) + "\n")


def main(argv: list[str] | None = None) -> None:
    pre = argparse.ArgumentParser(add_help=False)  # the ablation plan first: its variants are the choices below
    pre.add_argument("--plan", type=Path, default=PLAN_ABL)
    abl_path = pre.parse_known_args(argv)[0].plan
    if not abl_path.exists():
        raise SystemExit(f"error: --plan {abl_path}: no such ablation plan (give a file such as {PLAN_ABL.relative_to(rs.REPO)})")
    variants = sorted(_ablation_plan(abl_path)["variants"])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", type=Path, default=PLAN_ABL, help="ablation plan for --variant / --variants (default benchmarks/modaltune_sweep/preregistered_5fold_ablations.yaml)")
    ap.add_argument("cmd", choices=["pilot", "run", "restore", "analyse"],
                    help="restore: write the committed cell C / late-fusion predictions into the reference units not recomputed in --runs")
    ap.add_argument("--runs", type=Path, required=True, help="run folder (outside the repository)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the plan's)")
    ap.add_argument("--max-patches", type=int, default=64, help="pilot only")
    ap.add_argument("--epochs", type=int, default=8, help="pilot only")
    ap.add_argument("--method", choices=[MT, LF], default=MT, help="pilot only")
    ap.add_argument("--variant", default=None, choices=variants, help="run only: one ablation of the --plan")
    ap.add_argument("--methods", nargs="+", default=None, choices=[MT, LF], help="run without --variant only: these methods of the 5-fold plan (default both)")
    ap.add_argument("--folds", type=int, nargs="+", default=None, help="run only: these folds (default all)")
    ap.add_argument("--out", type=Path, default=OUT_ABL, help="analyse --variants only: output folder (default benchmarks/modaltune_sweep/fivefold_ablations)")
    ap.add_argument("--variants", nargs="+", default=None, choices=variants, help="analyse only: analyse these ablations of the --plan (writes --out)")
    a = ap.parse_args(argv)
    a.runs.mkdir(parents=True, exist_ok=True)
    if a.cmd == "pilot":
        cmd_pilot(a.runs, a.max_patches, a.epochs, a.method)
    elif a.cmd == "run":
        cmd_run(a.runs, a.seeds, a.variant, a.plan, a.methods, a.folds)
    elif a.cmd == "restore":
        for u in restore_references(a.runs, list(a.seeds or _plan()["seeds"]), _plan()["split"]["kfold"]):
            print(json.dumps({"restored": u}))
    elif a.variants:
        analyse_ablations(a.runs, a.variants, a.out, a.plan)
    else:
        analyse(a.runs, a.seeds)


if __name__ == "__main__":
    main()
