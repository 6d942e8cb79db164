"""ModalTune issue 17: the pre-registered optimisation sweep, the ablations and the simulator sweep.

Protocol files (read their headers): ``benchmarks/modaltune_sweep/preregistered.yaml`` (the full
pre-registration, NOT run: too much compute) and ``preregistered_reduced.yaml`` (what is run, committed
before any run). Three stages, each resumable (a unit folder with ``result.json`` is not refitted)::

    nice -n 10 python benchmarks/modaltune_sweep/run_sweep.py sweep     --runs /work/runs/h20e
    nice -n 10 python benchmarks/modaltune_sweep/run_sweep.py ablations --runs /work/runs/h20e
    nice -n 10 python benchmarks/modaltune_sweep/run_sweep.py simsweep  --runs /work/runs/h20e
    python benchmarks/modaltune_sweep/run_sweep.py analyse --runs /work/runs/h20e
    # extension after the pre-registered run: more simulator-sweep seeds, reported apart
    nice -n 10 python benchmarks/modaltune_sweep/run_sweep.py simsweep --runs /work/runs/h20e --sim-seeds 0 1 2
    python benchmarks/modaltune_sweep/run_sweep.py analyse --runs /work/runs/h20e --sim-seeds 0 1 2
    # addendum run after the pre-registration (benchmarks/modaltune_ablations/addendum_text_encoder_simsweep.yaml):
    # the "mpnet text targets" ablation row and the 4 missing simulator-sweep cells (none/weak x 100/1000)
    bash benchmarks/modaltune_ablations/get_mpnet.sh /work/runs/h21d
    nice -n 10 python benchmarks/modaltune_sweep/run_sweep.py addendum --runs /work/runs/h21d --mpnet /work/runs/h21d/all-mpnet-base-v2
    python benchmarks/modaltune_sweep/run_sweep.py analyse --runs /work/runs/h21d --sim-seeds 0 1 2

Every unit is one ``modaltune.training.fit`` on fold 0 of the 5-fold split (the benchmark's split
code, seed 0), evaluated on that fold's held-out patients. Per unit the held-out survival risk is
saved (``heldout.csv``): the model's own survival head, or for KL-only ModalTune (no trained head)
the paper's evaluation, a ridge Cox probe (penalizer 0.1) fitted on the training patients'
survival task embeddings. ``analyse`` writes results.csv (one row per unit x metric), summary.md
and analysis.json into benchmarks/modaltune_sweep/ (sweep + simulator sweep) and
benchmarks/modaltune_ablations/ (ablations):

- gates open: adapter_diagnostics.jsonl at the selected epoch (epoch_selection.json's best epoch
  when it restored one, else the last) has mean |gamma| >= 0.05 in every group and update_ratio
  >= 0.01 in at least one, in every seed;
- OLS read: standardised held-out risk on the standardised simulator components [z_slide_2 (slide
  main effect), z_omics_2 (RNA main effect), risk_interaction (slide x RNA)]; the interaction
  coefficient's classical 95% CI (t distribution) must exclude 0 and be > 0 (the truth's sign:
  ``risk_interaction`` already carries it);
- paired bootstrap vs late fusion: 2,000 resamples of the held-out patients; the statistic is the
  mean over seeds of C-index(model, seed) - C-index(late fusion, seed) on the same resample.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "modaltune" / "sim_comparison.yaml"
REDUCED = REPO / "benchmarks" / "modaltune_sweep" / "preregistered_reduced.yaml"
ADDENDUM = REPO / "benchmarks" / "modaltune_ablations" / "addendum_text_encoder_simsweep.yaml"
#: local sentence-transformers folder substituted for "{mpnet}" in the addendum (``--mpnet``)
MPNET = {"path": "/work/runs/h21d/all-mpnet-base-v2"}
OUT_SWEEP = REPO / "benchmarks" / "modaltune_sweep"
OUT_ABL = REPO / "benchmarks" / "modaltune_ablations"
TASKS = ["subtype", "survival"]


# ----------------------------------------------------------------------------------------- setup
def _base() -> tuple[dict, dict, dict]:
    """(modaltune entry, late_fusion entry, trainer) of sim_comparison.yaml."""
    cfg = yaml.safe_load(BASE.read_text())
    mt = next(m for m in cfg["methods"] if m["name"] == "modaltune")
    lf = next(m for m in cfg["methods"] if m["name"] == "late_fusion")
    return mt, lf, dict(cfg["trainer"])


def _plan() -> dict:
    return yaml.safe_load(REDUCED.read_text())


def _addendum() -> dict:
    """The plan run after the pre-registration (mpnet ablation row, the missing simulator-sweep cells);
    ``{mpnet}`` in a value becomes the ``--mpnet`` folder."""
    return yaml.safe_load(ADDENDUM.read_text().replace("{mpnet}", MPNET["path"]))


def _cohort(root: Path, **kw):
    """A simulated cohort, written once under ``root`` and reloaded afterwards."""
    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import simulate_cohort

    if (root / "cohort.yaml").exists():
        return Cohort.load(root)
    return simulate_cohort(root, **kw)


def _fold0(cohort):
    from modaltune.training.experiment_config import SplitConfig
    from modaltune.training.sources import make_splits

    return next(f for f in make_splits(cohort, SplitConfig(kfold=5, seed=0), TASKS)[0].folds if f.index == 0)


def _set(d: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _harrell(risk: np.ndarray, time_: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C (ties in risk count 1/2); pairs (i, j) with t_i < t_j and event_i."""
    r, t, e = np.asarray(risk, float), np.asarray(time_, float), np.asarray(event, bool)
    comp = (t[:, None] < t[None, :]) & e[:, None]
    conc = (r[:, None] > r[None, :]) + 0.5 * (r[:, None] == r[None, :])
    n = comp.sum()
    return float((conc * comp).sum() / n) if n else float("nan")


# ----------------------------------------------------------------------------------------- units
def _keep_last_state():
    """A Lightning callback keeping a copy of the model's weights at the end of training (the last
    epoch). It copies in ``on_train_end``, which Lightning calls before ``on_fit_end``, where
    ModalTune's monitor restores the selected epoch; so a unit can also score the last epoch."""
    from lightning.pytorch.callbacks import Callback

    class KeepLastState(Callback):
        state: dict | None = None

        def on_train_end(self, trainer, pl_module) -> None:
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()})

    return KeepLastState()


def _heldout_frame(fitted, cohort, fold, tasks: list[str], eval_batch: int) -> tuple[pd.DataFrame, str]:
    """Held-out predictions of ``fitted`` on ``fold.test``: (patient_id, time, event, risk[, label,
    prob_B]) and where the risk comes from. KL-only ModalTune has no trained survival head: its
    risk is the paper's ridge Cox probe (0.1) on the survival task embedding, fitted on
    ``fold.train`` (never the validation or held-out patients)."""
    from modaltune.evaluation.probes import CoxProbe
    from modaltune.training.trainer import _pred_frame, _torch_outputs, predict, targets_frame

    test = list(fold.test)
    sup = getattr(getattr(fitted.model, "objectives", None), "supervised", None)
    kl_only = sup == 0 and "survival" in tasks
    if fitted.kind == "torch":  # one evaluation pass (batched; deterministic patch selection)
        ids = list(fold.train) + test if kl_only else test
        pids, cols, emb = _torch_outputs(fitted, cohort, ids, embeddings=kl_only, batch_size=eval_batch)
        preds = _pred_frame(pids, cols)
        preds = targets_frame(cohort, ids, fitted.tasks).merge(preds, on=["patient_id", "task"], how="right")
    else:
        preds = predict(fitted, cohort, test)
    out = pd.DataFrame({"patient_id": test})
    risk_source = "head"
    if "survival" in tasks:
        s = preds[preds["task"] == "survival"].set_index("patient_id").loc[test]
        out["time"], out["event"], out["risk"] = s["time"].to_numpy(), s["event"].to_numpy(), s["risk"].to_numpy()
        if kl_only:  # KL only: no trained survival head; the paper's probe on the survival embedding
            cs = fitted.model.task_embedding_columns()["survival"]
            E = pd.DataFrame(emb[:, cs], index=pids)
            g = targets_frame(cohort, ids, ["survival"]).set_index("patient_id")
            tr = [p for p in fold.train if bool(g.loc[p, "labelled"])]
            probe = CoxProbe(penalizer=0.1).fit(E.loc[tr].to_numpy(float), g.loc[tr, ["time", "event"]])
            out["risk"] = probe.predict_risk(E.loc[test].to_numpy(float))
            risk_source = "ridge Cox probe (0.1) on the survival task embedding"
    if "subtype" in tasks:
        c = preds[preds["task"] == "subtype"].set_index("patient_id").loc[test]
        out["label"], out["prob_B"] = c["label"].to_numpy(), c["prob_B"].to_numpy()
    return out, risk_source


def run_unit(cohort, fold, method: dict, seed: int, trainer: dict, udir: Path, eval_batch: int = 1, keep_last: bool = False) -> dict:
    """Fit one method on ``fold`` (seed ``seed``) and save its held-out predictions; resumable.
    ``keep_last``: also save the last epoch's held-out predictions (``heldout_last_epoch.csv``;
    the same file content when the selected epoch is the last or nothing was selected)."""
    import torch

    from modaltune.training.trainer import fit

    done = udir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    udir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t0 = time.time()
    rec = {"label": method["label"], "seed": seed, "method": method["name"], "params": method.get("params", {}), "modalities": method.get("modalities")}
    tasks = method.get("tasks", TASKS)
    keeper = _keep_last_state() if keep_last else None
    try:
        fitted = fit(cohort, fold, method["name"], params=copy.deepcopy(method.get("params", {})), modalities=method.get("modalities"), tasks=tasks,
                     trainer={**trainer, "seed": seed}, out_dir=udir / "fit", progress=False, callbacks=[keeper] if keeper else ())
    except Exception as exc:  # noqa: BLE001 - a failed cell is reported, not hidden
        rec.update(status="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", seconds=round(time.time() - t0, 1))
        done.write_text(json.dumps(rec, indent=2))
        return rec
    out, risk_source = _heldout_frame(fitted, cohort, fold, tasks, eval_batch)
    out.to_csv(udir / "heldout.csv", index=False)
    diag = udir / "fit" / "adapter_diagnostics.jsonl"
    last_epoch = None
    if diag.exists():
        lines = [json.loads(x) for x in diag.read_text().splitlines() if x.strip()]
        sel = udir / "fit" / "epoch_selection.json"
        epoch = last_epoch = lines[-1]["epoch"]
        if sel.exists():
            s = json.loads(sel.read_text())
            if s.get("restored") and s.get("best_epoch") is not None:
                epoch = int(s["best_epoch"])
        rec["selected_epoch"] = epoch
        rec["last_epoch"] = last_epoch
        rec["diagnostics"] = next(x for x in lines if x["epoch"] == epoch)
    if keeper is not None:
        if keeper.state is not None and rec.get("selected_epoch") != last_epoch:
            fitted.model.load_state_dict(keeper.state)  # the last epoch's weights, scored the same way
            out_last, _ = _heldout_frame(fitted, cohort, fold, tasks, eval_batch)
        else:
            out_last = out
        out_last.to_csv(udir / "heldout_last_epoch.csv", index=False)
    leak = udir / "fit" / "target_leakage.json"
    if leak.exists():
        rec["target_leakage_clean"] = json.loads(leak.read_text())["clean"]
    rec.update(status="done", risk_source=risk_source, seconds=round(time.time() - t0, 1), n_train=len(fold.train), n_val=len(fold.val or []), n_test=len(fold.test))
    done.write_text(json.dumps(rec, indent=2, default=str))
    return rec


def _modaltune(params: dict, label: str) -> dict:
    mt, _, _ = _base()
    p = copy.deepcopy(mt["params"])
    if params.get("protocol") in ("paper", "paper+sup"):
        p.pop("supervised", None)  # sim_comparison's explicit supervised: 1 would override the protocol
    p.update(copy.deepcopy(params))
    return {"name": "modaltune", "label": label, "modalities": list(mt["modalities"]), "params": p}


def _late_fusion(label: str = "late_fusion (abmil+snn)") -> dict:  # = LF_LABEL
    _, lf, _ = _base()
    return {**copy.deepcopy(lf), "label": label}


def _trainer(plan: dict) -> dict:
    _, _, tr = _base()
    return {**tr, **plan.get("trainer_overrides", {}), "logger": "none"}


def _cell_label(name: str, p: dict) -> str:
    return (f"{name}: gates x{p['lr_mult']['gates']:g} inj x{p['lr_mult']['injectors']:g} init {p['gate_init']} {p['gate_init_value']:g} "
            f"T {p['kl_temperature']:g}")


def sweep_cells(plan: dict) -> list[dict]:
    """The reduced plan's cells as method dicts (label = the cell's name and settings)."""
    return [_modaltune(dict(p), _cell_label(name, p)) for name, p in plan["cells"].items()]


def cmd_sweep(runs: Path) -> None:
    plan = _plan()
    cohort = _cohort(runs / "cohorts" / "demo_seed0", preset="demo", seed=0)
    fold = _fold0(cohort)
    tr = _trainer(plan)
    methods = [_late_fusion()] + sweep_cells(plan)
    for seed in plan["seeds"]:
        for m in methods:
            rec = run_unit(cohort, fold, m, seed, tr, runs / "sweep" / _slug(m["label"]) / f"seed{seed}", plan.get("eval_batch_size", 1))
            print(json.dumps({k: rec.get(k) for k in ("label", "seed", "status", "seconds")}), flush=True)


BASE_LABEL = "modaltune (paper, base cell)"
LF_LABEL = "late_fusion (abmil+snn)"


def ablation_methods(plan: dict) -> list[dict]:
    """Base cell (its sweep units are reused), late fusion (the sweep's) and the variants."""
    name = plan["ablations"]["base"]
    base = copy.deepcopy(plan["cells"][name])
    rows = [_modaltune(copy.deepcopy(base), _cell_label(name, base)), _late_fusion()]
    variants = {**plan["ablations"]["variants"], **_addendum()["ablations"]["variants"]}
    for label, over in variants.items():
        if over.get("method"):
            rows.append({**copy.deepcopy(over["method"]), "label": label})
        else:
            p = copy.deepcopy(base)
            for k, v in over.items():
                if "." in k:
                    _set(p, k, v)
                else:
                    p[k] = v
            rows.append(_modaltune(p, label))
    return rows


def _unit_dir(runs: Path, plan: dict, m: dict) -> Path:
    """Sweep units (late fusion, the cells) live under sweep/; the ablation variants under ablations/."""
    sweep_labels = {c["label"] for c in sweep_cells(plan)} | {LF_LABEL}
    return runs / ("sweep" if m["label"] in sweep_labels else "ablations") / _slug(m["label"])


def cmd_ablations(runs: Path, addendum_only: bool = False) -> None:
    plan = _plan()
    cohort = _cohort(runs / "cohorts" / "demo_seed0", preset="demo", seed=0)
    fold = _fold0(cohort)
    tr = _trainer(plan)
    extra = set(_addendum()["ablations"]["variants"])
    for seed in plan["seeds"]:
        for m in ablation_methods(plan):
            if addendum_only and m["label"] not in extra:
                continue
            rec = run_unit(cohort, fold, m, seed, tr, _unit_dir(runs, plan, m) / f"seed{seed}", plan.get("eval_batch_size", 1))
            print(json.dumps({k: rec.get(k) for k in ("label", "seed", "status", "seconds")}), flush=True)


def _sim_cells(plan: dict, seeds: list[int] | None) -> list[tuple[dict, list[int], bool]]:
    """(cell, seeds, after_preregistration) of the pre-registered simulator-sweep cells (the plan's
    seeds unless ``seeds``) and of the addendum's (its seeds unless ``seeds``)."""
    ss, add = plan["simsweep"], _addendum()["simsweep"]
    return ([(c, list(seeds or ss["seeds"]), False) for c in ss["cells"]]
            + [(c, list(seeds or add["seeds"]), True) for c in add["cells"]])


def _sim_cohort(runs: Path, ss: dict, strength: str, n_train: int):
    n = int(round(n_train / 0.8))  # 5-fold: 80% of the cohort trains
    return _cohort(runs / "cohorts" / f"sim_{strength}_{n_train}", preset="demo", seed=ss["cohort_seed"], n_patients=n, signal=ss["strengths"][strength])


def cmd_simsweep(runs: Path, seeds: list[int] | None = None, addendum_only: bool = False) -> None:
    plan = _plan()
    ss = plan["simsweep"]
    tr = {**_trainer(plan), **ss.get("trainer_overrides", {})}
    base = plan["cells"][plan["ablations"]["base"]]
    cells = _sim_cells(plan, seeds)
    if addendum_only:
        cells = [x for x in cells if x[2]]
    for c, cell_seeds, _ in cells:
        cohort = _sim_cohort(runs, ss, c["strength"], c["n_train"])
        fold = _fold0(cohort)
        for seed in cell_seeds:
            for m in [_modaltune(copy.deepcopy(base), "modaltune"), _late_fusion("late_fusion")]:
                rec = run_unit(cohort, fold, m, seed, tr, runs / "simsweep" / f"{c['strength']}_{c['n_train']}" / m["label"] / f"seed{seed}", plan.get("eval_batch_size", 1))
                print(json.dumps({"cell": f"{c['strength']}_{c['n_train']}", **{k: rec.get(k) for k in ("label", "seed", "status", "seconds")}}), flush=True)


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in s).strip("_")


# -------------------------------------------------------------------------------------- analysis
def _ols_interaction(risk: pd.Series, gt: pd.DataFrame) -> dict:
    """Standardised OLS of the held-out risk on [slide, RNA, slide x RNA] components; the
    interaction coefficient with its classical 95% CI (NaN when the cohort has no interaction:
    strength none, the component is constant and only the main effects are fitted)."""
    from scipy import stats

    cols = ["z_slide_2", "z_omics_2", "risk_interaction"]
    X = gt.loc[risk.index, cols].astype(float)
    has_int = bool(X["risk_interaction"].std(ddof=1) > 0)
    if not has_int:
        X = X.drop(columns="risk_interaction")
    X = (X - X.mean()) / X.std(ddof=1)
    y = (risk - risk.mean()) / risk.std(ddof=1)
    A = np.column_stack([np.ones(len(X)), X.to_numpy()])
    beta, *_ = np.linalg.lstsq(A, y.to_numpy(), rcond=None)
    resid = y.to_numpy() - A @ beta
    r2 = float(1 - resid @ resid / (y.to_numpy() @ y.to_numpy()))
    out = {"beta_slide": float(beta[1]), "beta_rna": float(beta[2]), "r2": r2}
    if not has_int:
        return {**out, "beta_interaction": float("nan"), "ci_interaction": [float("nan"), float("nan")], "note": "no interaction in this cohort"}
    dof = len(y) - A.shape[1]
    se = np.sqrt(np.diag(float(resid @ resid) / dof * np.linalg.inv(A.T @ A)))
    q = float(stats.t.ppf(0.975, dof))
    return {**out, "beta_interaction": float(beta[3]), "ci_interaction": [float(beta[3] - q * se[3]), float(beta[3] + q * se[3])]}


def _paired_bootstrap(a: list[pd.DataFrame], b: list[pd.DataFrame], n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean over seeds of C(a_s) - C(b_s), patients resampled jointly (same held-out patients)."""
    ids = a[0]["patient_id"].to_numpy()
    A = [x.set_index("patient_id").loc[ids] for x in a]
    B = [x.set_index("patient_id").loc[ids] for x in b]
    t, e = A[0]["time"].to_numpy(), A[0]["event"].to_numpy().astype(bool)

    def stat(ix):
        return float(np.mean([_harrell(x["risk"].to_numpy()[ix], t[ix], e[ix]) - _harrell(y["risk"].to_numpy()[ix], t[ix], e[ix]) for x, y in zip(A, B)]))

    rng = np.random.default_rng(seed)
    est = stat(np.arange(len(ids)))
    boots = np.array([stat(rng.integers(0, len(ids), len(ids))) for _ in range(n_boot)])
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return {"diff": est, "ci": [float(lo), float(hi)], "excludes_zero": bool(lo > 0 or hi < 0), "n_boot": n_boot, "n_seeds": len(A)}


def _unit_rows(group: str, cell: str, rec: dict, held: pd.DataFrame | None) -> list[dict]:
    base = {"group": group, "cell": cell, "label": rec["label"], "seed": rec["seed"], "fold": 0, "status": rec["status"]}
    if rec["status"] != "done":
        return [{**base, "metric": "failed", "value": np.nan, "reason": rec.get("reason", "")}]
    rows = [{**base, "metric": "seconds", "value": rec["seconds"]}]
    if held is not None and "risk" in held:
        rows.append({**base, "metric": "c_index", "value": _harrell(held["risk"], held["time"], held["event"])})
    if held is not None and "prob_B" in held:
        from sklearn.metrics import balanced_accuracy_score, roc_auc_score

        ok = held["label"] >= 0
        rows.append({**base, "metric": "balanced_accuracy", "value": float(balanced_accuracy_score(held.loc[ok, "label"], held.loc[ok, "prob_B"] > 0.5))})
        rows.append({**base, "metric": "macro_auc", "value": float(roc_auc_score(held.loc[ok, "label"], held.loc[ok, "prob_B"]))})
    for k, v in (rec.get("diagnostics") or {}).items():
        if k != "epoch":
            rows.append({**base, "metric": k, "value": float(v)})
    if "selected_epoch" in rec:
        rows.append({**base, "metric": "selected_epoch", "value": float(rec["selected_epoch"])})
    return rows


def _load(udir: Path):
    rec = json.loads((udir / "result.json").read_text())
    held = pd.read_csv(udir / "heldout.csv") if (udir / "heldout.csv").exists() else None
    return rec, held


def _gates_open(recs: list[dict], o: dict) -> bool:
    ok = []
    for r in recs:
        d = r.get("diagnostics") or {}
        g = [v for k, v in d.items() if k.startswith("gate_abs_mean/")]
        u = [v for k, v in d.items() if k.startswith("update_ratio/")]
        ok.append(bool(g) and min(g) >= o["gate_abs_mean_min"] and bool(u) and max(u) >= o["update_ratio_min"])
    return len(ok) >= o["seeds_required"] and all(ok)


def analyse(runs: Path, sim_seeds: list[int] | None = None) -> None:
    from modaltune.data.cohort import Cohort

    plan = _plan()
    o = plan["outcomes"]
    seeds = plan["seeds"]
    gt = Cohort.load(runs / "cohorts" / "demo_seed0").ground_truth
    rows, report = [], {"plan": str(REDUCED.relative_to(REPO)), "sweep": [], "ablations": [], "simsweep": []}
    lf_dir = runs / "sweep" / _slug(LF_LABEL)
    lf = {s: _load(lf_dir / f"seed{s}") for s in seeds if (lf_dir / f"seed{s}" / "result.json").exists()}
    lf_held = [lf[s][1] for s in seeds if s in lf and lf[s][1] is not None]
    for rec, held in lf.values():
        rows += _unit_rows("sweep", "late_fusion", rec, held)
    # ---- sweep
    for m in sweep_cells(plan):
        d = runs / "sweep" / _slug(m["label"])
        got = {s: _load(d / f"seed{s}") for s in seeds if (d / f"seed{s}" / "result.json").exists()}
        for rec, held in got.values():
            rows += _unit_rows("sweep", m["label"], rec, held)
        recs = [r for r, _ in got.values() if r["status"] == "done"]
        cell = {"cell": m["label"], "params": m["params"], "seeds_done": len(recs), "seeds_failed": [s for s, (r, _) in got.items() if r["status"] != "done"]}
        if len(recs) < len(seeds):
            fails = "; ".join(f"seed {s} failed: {r.get('reason')}" for s, (r, _) in got.items() if r["status"] != "done")
            cell.update(success=False, note=f"incomplete: {len(recs)} of {len(seeds)} seeds done" + (f"; {fails}" if fails else ""))
            report["sweep"].append(cell)
            continue
        cell["gates_open"] = _gates_open(recs, o["gates_open"])
        ols = [_ols_interaction(h.set_index("patient_id")["risk"], gt) for _, h in got.values()]
        cell["ols"] = ols
        n_sig = sum(1 for x in ols if x["ci_interaction"][0] > 0)
        cell["ols_interaction_positive_seeds"] = n_sig
        cell["vs_late_fusion"] = _paired_bootstrap([h for _, h in got.values()], lf_held, o["interaction_used"]["c_index_vs_late_fusion_bootstrap"])
        cell["interaction_used"] = bool(n_sig >= o["interaction_used"]["seeds_required"] and cell["vs_late_fusion"]["ci"][0] > 0)
        cell["success"] = bool(cell["gates_open"] and cell["interaction_used"])
        cell["c_index_mean"] = float(np.mean([_harrell(h["risk"], h["time"], h["event"]) for _, h in got.values()]))
        cell["gate_abs_mean_min"] = [min(v for k, v in r["diagnostics"].items() if k.startswith("gate_abs")) for r in recs]
        cell["update_ratio_max"] = [max(v for k, v in r["diagnostics"].items() if k.startswith("update_ratio")) for r in recs]
        report["sweep"].append(cell)
    report["late_fusion_c_index_mean"] = float(np.mean([_harrell(h["risk"], h["time"], h["event"]) for h in lf_held])) if lf_held else None
    report["late_fusion_ols"] = [_ols_interaction(h.set_index("patient_id")["risk"], gt) for h in lf_held]
    # ---- ablations
    abl = ablation_methods(plan)
    held_of = {}
    base_label = abl[0]["label"]
    for m in abl:
        d = _unit_dir(runs, plan, m)
        got = {s: _load(d / f"seed{s}") for s in seeds if (d / f"seed{s}" / "result.json").exists()}
        if m["label"] not in (LF_LABEL, base_label):  # (their rows are in the sweep's results.csv)
            for rec, held in got.values():
                rows += _unit_rows("ablations", m["label"], rec, held)
        held_of[m["label"]] = (got, m)
    full = [h for r, h in held_of[base_label][0].values() if r["status"] == "done"]
    for label, (got, m) in held_of.items():
        done = [(r, h) for r, h in got.values() if r["status"] == "done" and h is not None and "risk" in h]
        entry = {"label": label, "method": m["name"], "params": m.get("params", {}), "modalities": m.get("modalities"), "seeds_done": len(done),
                 "run_after_preregistration": label in _addendum()["ablations"]["variants"],
                 "failures": [r.get("reason") for r, _ in got.values() if r["status"] != "done"]}
        if done:
            hs = [h for _, h in done]
            entry["c_index_mean"] = float(np.mean([_harrell(h["risk"], h["time"], h["event"]) for h in hs]))
            entry["c_index_per_seed"] = [float(_harrell(h["risk"], h["time"], h["event"])) for h in hs]
            entry["ols"] = [_ols_interaction(h.set_index("patient_id")["risk"], gt) for h in hs]
            entry["risk_source"] = done[0][0].get("risk_source")
            if len(hs) == len(full) == len(seeds) and label != base_label:
                entry["vs_full_modaltune"] = _paired_bootstrap(hs, full, 2000)
            if len(hs) == len(lf_held) == len(seeds) and label != LF_LABEL:
                entry["vs_late_fusion"] = _paired_bootstrap(hs, lf_held, 2000)
            g = [min(v for k, v in r["diagnostics"].items() if k.startswith("gate_abs")) for r, _ in done if r.get("diagnostics")]
            if g:
                entry["gate_abs_mean_min"] = g
        report["ablations"].append(entry)
    # ---- simulator sweep
    ss = plan["simsweep"]
    add_seeds = list(sim_seeds or _addendum()["simsweep"]["seeds"])
    sim_seeds = list(sim_seeds or ss["seeds"])
    for c, _, after in _sim_cells(plan, None):
        strength, n_train = c["strength"], c["n_train"]
        cdir = runs / "cohorts" / f"sim_{strength}_{n_train}"
        if not (cdir / "cohort.yaml").exists():
            continue
        cohort = Cohort.load(cdir)
        fold = _fold0(cohort)
        cell = f"{strength}_{n_train}"
        got = {}
        for lab in ("modaltune", "late_fusion"):
            d = runs / "simsweep" / cell / lab
            got[lab] = {s: _load(d / f"seed{s}") for s in (add_seeds if after else sim_seeds) if (d / f"seed{s}" / "result.json").exists()}
            for rec, held in got[lab].values():
                rows += _unit_rows("simsweep", f"{cell}/{lab}", rec, held)
        entry = {"cell": cell, "strength": strength, "signal": ss["strengths"][strength], "n_train": len(fold.train), "n_test": len(fold.test)}
        entry.update(_oracles(cohort, fold))
        entry["run_after_preregistration"] = after
        if after:  # a cell of the addendum (run after the pre-registered run and its extension)
            entry["addendum"] = _sim_stats(got, add_seeds, cohort)
        else:
            entry["preregistered"] = _sim_stats(got, list(ss["seeds"]), cohort)
            if list(sim_seeds) != list(ss["seeds"]):  # seeds added after the pre-registered run
                entry["extension"] = _sim_stats(got, list(sim_seeds), cohort)
        report["simsweep"].append(entry)
    report["simsweep_3x3"] = _grid(report["simsweep"])
    report["text_encoder_separability"] = _separability(runs, plan)
    res = pd.DataFrame(rows)
    OUT_SWEEP.mkdir(parents=True, exist_ok=True)
    OUT_ABL.mkdir(parents=True, exist_ok=True)
    res[res["group"].isin(["sweep", "simsweep"])].to_csv(OUT_SWEEP / "results.csv", index=False)
    res[res["group"] == "ablations"].to_csv(OUT_ABL / "results.csv", index=False)
    _held_table(runs, OUT_SWEEP / "heldout_predictions.csv.gz", ["sweep", "simsweep"])
    _held_table(runs, OUT_ABL / "heldout_predictions.csv.gz", ["ablations"])
    report["addendum"] = str(ADDENDUM.relative_to(REPO))
    (OUT_SWEEP / "analysis.json").write_text(json.dumps({k: report[k] for k in ("plan", "addendum", "sweep", "late_fusion_c_index_mean", "late_fusion_ols", "simsweep", "simsweep_3x3")}, indent=2, default=str))
    (OUT_ABL / "analysis.json").write_text(json.dumps({"plan": report["plan"], "addendum": report["addendum"], "ablations": report["ablations"]}, indent=2, default=str))
    (OUT_ABL / "text_encoder_separability.json").write_text(json.dumps(report["text_encoder_separability"], indent=2, default=str))
    _write_md(report, plan)


def _grid(cells: list[dict]) -> list[dict]:
    """The 3 x 3 simulator-sweep table over seeds 0-2: per (strength, n train) the 3-seed numbers of
    the cell (the EXTENSION of a pre-registered cell, the addendum's for the others) and its ceilings."""
    out = []
    for c in cells:
        x = c.get("addendum") or c.get("extension") or c.get("preregistered") or {}
        out.append({"strength": c["strength"], "n_train": c["n_train"], "n_test": c["n_test"], "run_after_preregistration": c["run_after_preregistration"],
                    "seeds": x.get("seeds"), "modaltune_c_index": x.get("modaltune_c_index"), "late_fusion_c_index": x.get("late_fusion_c_index"),
                    "modaltune_vs_late_fusion": x.get("modaltune_vs_late_fusion"), "oracle_c_index": c["oracle_c_index"],
                    "oracle_additive_c_index": c["oracle_additive_c_index"]})
    order = {"none": 0, "weak": 1, "strong": 2}
    return sorted(out, key=lambda r: (order.get(r["strength"], 9), r["n_train"]))


def _separability(runs: Path, plan: dict) -> dict:
    """MiniLM (the base cell) vs all-mpnet-base-v2 (the addendum's ablation row): each seed's
    ``text_targets_separability.json`` (pairwise cosine of the projected class / survival-bin targets,
    and the cross-validated probe from the patients' projected targets to their labels)."""
    name = plan["ablations"]["base"]
    rows = {"all-MiniLM-L6-v2 (base cell)": runs / "sweep" / _slug(_cell_label(name, plan["cells"][name])),
            "all-mpnet-base-v2": runs / "ablations" / _slug("mpnet text targets")}
    out: dict = {"what": "pairwise cosine of the class / survival-bin text targets after the frozen random projector (text_dim -> out_dim), "
                         "and a 3-fold logistic probe from the training patients' projected targets to their labels (balanced accuracy); "
                         "per seed, from each unit's fit/text_targets_separability.json (written after epoch 1)", "encoders": {}}
    for enc, d in rows.items():
        per_seed = {}
        for s in plan["seeds"]:
            f = d / f"seed{s}" / "fit" / "text_targets_separability.json"
            if f.exists():
                per_seed[s] = json.loads(f.read_text())
        if not per_seed:
            continue
        first = next(iter(per_seed.values()))
        tasks = {}
        for t, v in first["tasks"].items():
            tasks[t] = {"names": v.get("names"), "cosine": v.get("cosine"), "max_offdiag_cosine": v.get("max_offdiag_cosine"),
                        "mean_offdiag_cosine": v.get("mean_offdiag_cosine"),
                        "cosine_same_in_every_seed": all(np.allclose(r["tasks"][t].get("cosine"), v.get("cosine"), atol=1e-6) for r in per_seed.values()),
                        "probe_balanced_accuracy_per_seed": [r["tasks"][t].get("probe_balanced_accuracy") for r in per_seed.values()],
                        "n_patients": v.get("n_patients")}
        out["encoders"][enc] = {"text_model": first.get("text_model"), "site": first.get("site"), "seeds": list(per_seed), "tasks": tasks}
    return out


def _sim_stats(got: dict, seeds: list[int], cohort) -> dict:
    """Simulator-sweep numbers of one cell over ``seeds``: mean C-index per method, OLS reads, and
    the paired bootstrap ModalTune - late fusion (when every seed ran for both)."""
    out: dict = {"seeds": seeds}
    hs = {}
    for lab, d in got.items():
        hs[lab] = [d[s][1] for s in seeds if s in d and d[s][0]["status"] == "done"]
        out[f"{lab}_failures"] = [d[s][0].get("reason") for s in seeds if s in d and d[s][0]["status"] != "done"]
        out[f"{lab}_seeds"] = len(hs[lab])
        if hs[lab]:
            out[f"{lab}_c_index_per_seed"] = [_harrell(h["risk"], h["time"], h["event"]) for h in hs[lab]]
            out[f"{lab}_c_index"] = float(np.mean(out[f"{lab}_c_index_per_seed"]))
            out[f"{lab}_ols"] = [_ols_interaction(h.set_index("patient_id")["risk"], cohort.ground_truth) for h in hs[lab]]
    if len(hs.get("modaltune", [])) == len(hs.get("late_fusion", [])) == len(seeds):
        out["modaltune_vs_late_fusion"] = _paired_bootstrap(hs["modaltune"], hs["late_fusion"], 2000)
    return out


def _held_table(runs: Path, path: Path, groups: list[str]) -> None:
    frames = []
    for g in groups:
        for f in sorted((runs / g).rglob("heldout.csv")):
            frames.append(pd.read_csv(f).assign(unit=str(f.parent.relative_to(runs))))
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(path, index=False, float_format="%.6g")


def _oracles(cohort, fold) -> dict:
    """Held-out C-index of the simulator's true log-hazard (oracle) and of a Cox model on the true
    latent factors as main effects, fitted on the training patients (oracle_additive)."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from modaltune.data.simulate import LATENT_FACTORS

    gt = cohort.ground_truth
    tr, te = list(fold.train), list(fold.test)
    st = cohort.targets("survival", tr + te)
    t = pd.Series(st.time, index=tr + te)
    e = pd.Series(st.event.astype(bool), index=tr + te)
    ok_tr = [p for p, m in zip(tr, st.mask[: len(tr)]) if m]
    ok_te = [p for p, m in zip(te, st.mask[len(tr):]) if m]
    cols = [f"z_{f}" for f in LATENT_FACTORS]
    Z = gt[cols].astype(float)
    mu, sd = Z.loc[ok_tr].mean(), Z.loc[ok_tr].std()
    y = np.array(list(zip(e.loc[ok_tr], t.loc[ok_tr])), dtype=[("event", bool), ("time", float)])
    cox = CoxPHSurvivalAnalysis(alpha=1.0).fit(((Z.loc[ok_tr] - mu) / sd).to_numpy(), y)
    add = cox.predict(((Z.loc[ok_te] - mu) / sd).to_numpy())
    return {"oracle_c_index": _harrell(gt.loc[ok_te, "risk"], t.loc[ok_te], e.loc[ok_te]),
            "oracle_additive_c_index": _harrell(add, t.loc[ok_te], e.loc[ok_te])}


def _fmt_ci(b: dict | None) -> str:
    if not b:
        return "-"
    return f"{b['diff']:+.3f} [{b['ci'][0]:+.3f}, {b['ci'][1]:+.3f}]"


def _write_md(r: dict, plan: dict) -> None:
    head = ["SYNTHETIC data (simulate_cohort; slide bags are SIMULATED). Plan: " + r["plan"] + ". Fold 0 of the 5-fold split (seed 0), "
            f"seeds {plan['seeds']}; held-out C-index (Harrell) on that fold's test patients.", ""]
    L = head + ["## Pre-registered sweep (reduced)", "",
                f"Late fusion (abmil+snn) mean C-index over seeds: {r['late_fusion_c_index_mean']:.3f}" if r["late_fusion_c_index_mean"] is not None else "late fusion: not run", "",
                "| cell | seeds | min mean abs gamma per seed | max update ratio per seed | gates open | OLS interaction beta per seed [95% CI] | C-index mean | vs late fusion (paired bootstrap) | interaction used | success |",
                "|---|---|---|---|---|---|---|---|---|---|"]
    for c in r["sweep"]:
        if "ols" not in c:
            L.append(f"| {c['cell']} | {c['seeds_done']} | - | - | - | - | - | - | - | no ({c.get('note', '')}) |")
            continue
        ols = "; ".join(f"{x['beta_interaction']:+.2f} [{x['ci_interaction'][0]:+.2f}, {x['ci_interaction'][1]:+.2f}]" for x in c["ols"])
        L.append(f"| {c['cell']} | {c['seeds_done']} | {', '.join(f'{v:.4f}' for v in c['gate_abs_mean_min'])} | {', '.join(f'{v:.4f}' for v in c['update_ratio_max'])} | "
                 f"{'yes' if c['gates_open'] else 'no'} | {ols} | {c['c_index_mean']:.3f} | {_fmt_ci(c['vs_late_fusion'])} | {'yes' if c['interaction_used'] else 'no'} | {'yes' if c['success'] else 'no'} |")
    L += ["", "## Simulator sweep (interaction strength x training patients)", ""]

    def bi(c: dict, k: str) -> str:
        return f"{np.mean([x['beta_interaction'] for x in c[k]]):+.2f}" if c.get(k) else "-"

    for key, title in (("preregistered", "pre-registered seeds"), ("extension", "EXTENSION, seeds added after the pre-registered run"),
                       ("addendum", "ADDENDUM cells, run after the pre-registration (" + str(ADDENDUM.relative_to(REPO)) + ")")):
        if not any(key in c for c in r["simsweep"]):
            continue
        L += [f"{title}:", "",
              "| strength | n train | n test | seeds | ModalTune C | late fusion C | ModalTune - late fusion [95% CI] | oracle C | oracle additive C | OLS interaction beta ModalTune / late fusion (mean over seeds) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for c in r["simsweep"]:
            if key not in c:
                continue
            x = c[key]
            L.append(f"| {c['strength']} | {c['n_train']} | {c['n_test']} | {x.get('seeds')} | {x.get('modaltune_c_index', float('nan')):.3f} | {x.get('late_fusion_c_index', float('nan')):.3f} | "
                     f"{_fmt_ci(x.get('modaltune_vs_late_fusion'))} | {c['oracle_c_index']:.3f} | {c['oracle_additive_c_index']:.3f} | {bi(x, 'modaltune_ols')} / {bi(x, 'late_fusion_ols')} |")
        L.append("")
    if r.get("simsweep_3x3"):
        L += ["Full 3 x 3 over the same seeds (* = cell run after the pre-registration; the other cells' numbers are their EXTENSION rows):", "",
              "| strength | n train | n test | seeds | ModalTune C | late fusion C | ModalTune - late fusion [95% CI] | oracle C | oracle additive C |",
              "|---|---|---|---|---|---|---|---|---|"]
        for g in r["simsweep_3x3"]:
            f = (lambda v: f"{v:.3f}" if v is not None else "-")
            L.append(f"| {g['strength']}{' *' if g['run_after_preregistration'] else ''} | {g['n_train']} | {g['n_test']} | {g['seeds']} | {f(g['modaltune_c_index'])} | "
                     f"{f(g['late_fusion_c_index'])} | {_fmt_ci(g['modaltune_vs_late_fusion'])} | {g['oracle_c_index']:.3f} | {g['oracle_additive_c_index']:.3f} |")
        L.append("")
    (OUT_SWEEP / "summary.md").write_text("\n".join(L) + "\n")
    A = head + ["## Ablations", "", "| row | seeds | C-index per seed | mean | vs full ModalTune [95% CI] | vs late fusion [95% CI] | min mean abs gamma | OLS interaction beta (mean) | risk from |",
                "|---|---|---|---|---|---|---|---|---|"]
    for a in r["ablations"]:
        if not a.get("seeds_done"):
            A.append(f"| {a['label']} | 0 | - | - | - | - | - | - | failed: {'; '.join(map(str, a['failures']))} |")
            continue
        g = ", ".join(f"{v:.4f}" for v in a.get("gate_abs_mean_min", [])) or "-"
        A.append(f"| {a['label']}{' (run after the pre-registration)' if a.get('run_after_preregistration') else ''} | {a['seeds_done']} | {', '.join(f'{v:.3f}' for v in a['c_index_per_seed'])} | {a['c_index_mean']:.3f} | {_fmt_ci(a.get('vs_full_modaltune'))} | "
                 f"{_fmt_ci(a.get('vs_late_fusion'))} | {g} | {np.mean([x['beta_interaction'] for x in a['ols']]):+.2f} | {a.get('risk_source')} |")
    (OUT_ABL / "summary.md").write_text("\n".join(A) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["sweep", "ablations", "simsweep", "addendum", "analyse", "all"])
    ap.add_argument("--runs", type=Path, required=True, help="run folder (outside the repository)")
    ap.add_argument("--sim-seeds", type=int, nargs="+", default=None,
                    help="simulator-sweep seeds (default: the plan's); extra seeds are reported apart as an extension")
    ap.add_argument("--mpnet", default=MPNET["path"], help="local all-mpnet-base-v2 folder (get_mpnet.sh) for the addendum's text-encoder ablation")
    a = ap.parse_args()
    MPNET["path"] = str(Path(a.mpnet).resolve())
    if a.cmd == "addendum":  # the units of addendum_text_encoder_simsweep.yaml only
        cmd_ablations(a.runs, addendum_only=True)
        cmd_simsweep(a.runs, a.sim_seeds, addendum_only=True)
    if a.cmd in ("sweep", "all"):
        cmd_sweep(a.runs)
    if a.cmd in ("ablations", "all"):
        cmd_ablations(a.runs)
    if a.cmd in ("simsweep", "all"):
        cmd_simsweep(a.runs, a.sim_seeds)
    if a.cmd in ("analyse", "all"):
        analyse(a.runs, a.sim_seeds)


if __name__ == "__main__":
    main()
