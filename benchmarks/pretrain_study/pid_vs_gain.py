"""PID per cohort next to the measured fusion gain (issue 16, item 3).

TCGA (real omics + clinical, MCAT cohorts): ``analyse_interactions(cohort, (omics, "clinical"), "survival")``
(:mod:`modaltune.analysis.interactions`: label-free PCA + k-means per modality, plug-in PID in bits,
basic bootstrap interval, label-permutation null) with omics = ``rna`` (``cnv`` for UCEC, which has no
RNA table), against the fusion gain measured by ``benchmarks/run_tcga.py --configs survival_mcat5``:
``late_fusion`` C-index minus the better of ``snn`` (omics) and ``clinical_mlp`` (clinical), per fold
and as the mean over folds.

SIMULATED: PID of slide vs RNA on the study cohort (``config.yaml``: 2,000 patients) for ``subtype`` and
``survival``, and on a twin cohort with the cross-modal interaction switched off
(``signal: {sub_interaction: 0, surv_interaction: 0}``, everything else equal): the ground truth says
the first has synergy (a slide x RNA product term) and the twin has none beyond the estimator's bias.

    python benchmarks/pretrain_study/pid_vs_gain.py --tcga-runs /work/runs/h20d/tcga \
        --tcga-results benchmarks/pretrain_study/tcga_survival_mcat5_results.csv --work /work/runs/h20d/study --out benchmarks/pretrain_study

Slide vs RNA on TCGA (``--slide-vs-omics ROOT``, ROOT holding ``tcga_<name>/`` imported with SIMULATED slide
bags): PID of (slide, omics) for survival, and for subtype where the cohort has one (BRCA, GBMLGG), APPENDED to
``pid_tcga.csv`` (earlier rows kept; rows of the same cohort / modalities / task replaced). The slides are
label-free noise, so the known answer is: no slide-unique information and no synergy beyond the permutation null,
and redundancy ~0 (noise shares nothing with RNA). Next to it, where committed, the measured slide + omics late-fusion
gain (``benchmarks/tcga/coattn``: late_fusion (abmil + snn) minus the better of abmil and snn; BLCA and UCEC)::

    python benchmarks/pretrain_study/pid_vs_gain.py --slide-vs-omics /work/runs/h20c/tcga --out benchmarks/pretrain_study
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
COHORTS = ["blca", "brca", "gbmlgg", "luad", "ucec"]
SIMULATED = "SIMULATED (synthetic cohort, not real patients)"


def _pid_row(cohort, mods, task, n_boot, n_perm, extra, clusters: int) -> dict:
    from modaltune.analysis.interactions import analyse_interactions

    r = analyse_interactions(cohort, mods, task, n_clusters=clusters, n_components=8, n_boot=n_boot, n_permutations=n_perm, seed=0)
    row = {**extra, "clusters": clusters, "task": task, "modality_1": mods[0], "modality_2": mods[1], "n": r.estimate.n, "label": r.label_note, "H_Y_bits": r.label_entropy}
    for p in ("redundancy", "unique_1", "unique_2", "synergy", "total"):
        row[p] = getattr(r.estimate, p)
        row[f"{p}_ci_low"], row[f"{p}_ci_high"] = r.ci[p]
        row[f"{p}_null"] = r.null[p]
        row[f"{p}_excess"] = getattr(r.estimate, p) - r.null[p]
    return row


def fusion_gain(results_csv: Path) -> pd.DataFrame:
    """Per cohort and fold: C-index of snn, clinical_mlp, late_fusion and gain = late_fusion - max(single)."""
    res = pd.read_csv(results_csv)
    res = res[res["metric"] == "c_index"]
    res = res.assign(method=res["method"].str.split().str[0])  # display labels "snn (omics)" -> registry name "snn"
    piv = res.pivot_table(index=["cohort", "fold"], columns="method", values="value", aggfunc="mean").reset_index()
    piv["best_single"] = piv[["snn", "clinical_mlp"]].max(axis=1)
    piv["gain"] = piv["late_fusion"] - piv["best_single"]
    return piv


def slide_fusion_gain(coattn_dir: Path) -> pd.DataFrame:
    """Per cohort: mean C-index of abmil (slide), snn (omics), late_fusion (abmil + snn) and gain = late_fusion -
    max(abmil, snn), means over the 5 folds (the committed SIMULATED-slide runs of benchmarks/tcga/coattn)."""
    res = pd.concat([pd.read_csv(coattn_dir / "results.csv"), pd.read_csv(coattn_dir / "abmil" / "results.csv")])
    res = res[res["metric"] == "c_index"].assign(method=lambda d: d["method"].str.split().str[0])
    g = res.pivot_table(index="cohort", columns="method", values="value", aggfunc="mean")
    out = pd.DataFrame({"slide_abmil": g["abmil"], "omics_snn": g["snn"], "late_fusion_slide_omics": g["late_fusion"]})
    out["slide_omics_gain"] = out["late_fusion_slide_omics"] - out[["slide_abmil", "omics_snn"]].max(axis=1)
    out.index = [str(i).replace("porpoise_", "").upper() for i in out.index]
    return out


def slide_vs_omics(root: Path, out: Path, n_boot: int, n_perm: int, clusters: int) -> None:
    from modaltune.data.cohort import Cohort

    rows = []
    for name in COHORTS:
        c = Cohort.load(root / f"tcga_{name}")
        omics = "rna" if "rna" in c.omics else "cnv"
        tasks = ["survival"] + (["subtype"] if "subtype" in [t.name for t in c.tasks] else [])
        for task in tasks:
            extra = {"cohort": name.upper(), "data": "TCGA (real omics; slide bags SIMULATED, label-free noise)"}
            rows.append(_pid_row(c, ("slide", omics), task, n_boot, n_perm, extra, clusters))
            print(rows[-1]["cohort"], task, {k: round(rows[-1][k], 4) for k in ("redundancy", "unique_1", "unique_2", "synergy")}, flush=True)
    new = pd.DataFrame(rows)
    gain = slide_fusion_gain(HERE.parent / "tcga" / "coattn")
    new = new.join(gain, on="cohort")
    new.loc[new["task"] != "survival", list(gain.columns)] = float("nan")  # the gain is a survival C-index
    path = out / "pid_tcga.csv"
    old = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if len(old):
        key = ["cohort", "modality_1", "modality_2", "task"]
        old = old[~old.set_index(key).index.isin(new.set_index(key).index)]
    pd.concat([old, new], ignore_index=True).to_csv(path, index=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slide-vs-omics", type=Path, default=None, help="only the slide vs omics PID on ROOT/tcga_<name> (SIMULATED slide bags)")
    ap.add_argument("--tcga-runs", type=Path, help="the --out of run_tcga.py (holds cohorts/)")
    ap.add_argument("--tcga-results", type=Path, help="results.csv of the survival_mcat5 run (snn, clinical_mlp, late_fusion)")
    ap.add_argument("--clusters", type=int, default=4)
    ap.add_argument("--work", type=Path, help="the study work folder (holds cohort/)")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--boot", type=int, default=100)
    ap.add_argument("--perm", type=int, default=20)
    a = ap.parse_args()
    if a.slide_vs_omics:
        slide_vs_omics(a.slide_vs_omics, a.out, a.boot, a.perm, a.clusters)
        return
    if not (a.tcga_runs and a.tcga_results and a.work):
        ap.error("--tcga-runs, --tcga-results and --work are required (or --slide-vs-omics ROOT)")
    from scipy.stats import spearmanr

    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import simulate_cohort

    rows = []
    for name in COHORTS:
        c = Cohort.load(a.tcga_runs / "cohorts" / f"tcga_{name}")
        omics = "rna" if "rna" in c.omics else "cnv"
        rows.append(_pid_row(c, (omics, "clinical"), "survival", a.boot, a.perm, {"cohort": name.upper(), "data": "TCGA (real)"}, a.clusters))
        print(rows[-1]["cohort"], {k: round(rows[-1][k], 4) for k in ("redundancy", "unique_1", "unique_2", "synergy")}, flush=True)
    pid = pd.DataFrame(rows)
    gain_folds = fusion_gain(a.tcga_results)
    gain_folds.to_csv(a.out / "tcga_fusion_gain_folds.csv", index=False)
    g = gain_folds.groupby("cohort")[["snn", "clinical_mlp", "late_fusion", "best_single", "gain"]].mean()
    g["gain_of_means"] = g["late_fusion"] - g[["snn", "clinical_mlp"]].max(axis=1)
    g.index = [str(i).replace("porpoise_", "").replace("tcga_", "").upper() for i in g.index]
    tab = pid.set_index("cohort").join(g)
    corr = {}
    for part in ("redundancy_excess", "synergy_excess", "unique_1_excess", "unique_2_excess", "total_excess"):
        rho, p = spearmanr(tab[part], tab["gain_of_means"])
        corr[part] = {"spearman_rho": float(rho), "p": float(p), "n_cohorts": len(tab)}
    tab.reset_index().rename(columns={"index": "cohort"}).to_csv(a.out / "pid_tcga.csv", index=False)

    # simulated: the study cohort and its no-interaction twin
    cfg = yaml.safe_load((HERE / "config.yaml").read_text())
    sim = dict(cfg["simulate"])
    sim = {**sim, "patches": tuple(sim["patches"]), "slides_per_patient": tuple(sim["slides_per_patient"])}
    twin_dir = a.work / "cohort_no_interaction"
    twin = Cohort.load(twin_dir) if (twin_dir / "cohort.yaml").exists() else simulate_cohort(
        twin_dir, **{**sim, "name": "sim2000_no_interaction"}, signal={"sub_interaction": 0.0, "surv_interaction": 0.0})
    srows = []
    for label, c in (("interaction (study cohort)", Cohort.load(a.work / "cohort")), ("no interaction (twin)", twin)):
        for task in ("subtype", "survival"):
            srows.append(_pid_row(c, ("slide", "rna"), task, a.boot, a.perm, {"cohort": label, "data": SIMULATED}, a.clusters))
            print(label, task, {k: round(srows[-1][k], 4) for k in ("redundancy", "unique_1", "unique_2", "synergy")}, flush=True)
    pd.DataFrame(srows).to_csv(a.out / "pid_simulated.csv", index=False)
    (a.out / "pid_vs_gain.json").write_text(json.dumps({"spearman_pid_excess_vs_gain": corr, "note": "5 cohorts: scipy's p-value (t approximation) is "
                                                        "unreliable at n = 5; an exact permutation test needs |rho| = 1 for p < 0.05 (two-sided p = 2/120)"}, indent=2))
    print(tab[["redundancy_excess", "synergy_excess", "unique_1_excess", "unique_2_excess", "gain_of_means"]])
    print(json.dumps(corr, indent=2))


if __name__ == "__main__":
    main()
