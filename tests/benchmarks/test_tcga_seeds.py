"""benchmarks/tcga/seeds_tcga.py: pooling training seeds of the TCGA slide + omics benchmark.

A hand-built fixture (two cohorts; methods ref, m and s; seeds 0 and 1 in two input folders, m's seed 2
unfinished, s refused on cohort c2) with C-indices counted by hand; with one seed the paired bootstrap
equals modaltune.evaluation.paired_bootstrap (the benchmark's own comparison); duplicating a seed leaves
the result unchanged (one patient draw shared by every seed); bad inputs refused with InputError."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _scripts import load_bench_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modaltune.errors import InputError
from modaltune.evaluation import paired_bootstrap
from modaltune.evaluation.metrics import harrell_c

SEEDS = load_bench_script("tcga/seeds_tcga.py")

TOL = 1e-12  # float64 ratios of small integer / half-integer pair counts
# cohort c1: p0..p3, times 1..4, events 1,1,1,0 -> all 6 pairs comparable; folds {p0,p1}, {p2,p3}
# cohort c2: q0..q2, times 1..3, all events -> 3 comparable pairs; folds {q0,q1}, {q2}
COHORTS = {"c1": ([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 0], [0, 0, 1, 1]), "c2": ([1.0, 2.0, 3.0], [1, 1, 1], [0, 0, 1])}
RISKS = {  # (method, cohort, seed) -> risks; hand C in the comment
    ("ref", "c1", 0): [4, 3, 2, 1],  # 6/6
    ("ref", "c1", 1): [4, 3, 1, 2],  # (p2,p3) wrong: 5/6
    ("m", "c1", 0): [3, 4, 2, 1],    # (p0,p1) wrong: 5/6
    ("m", "c1", 1): [4, 3, 2, 2],    # (p2,p3) tied: 5.5/6
    ("ref", "c2", 0): [3, 2, 1],     # 3/3
    ("ref", "c2", 1): [3, 2, 1],     # 3/3
    ("m", "c2", 0): [2, 3, 1],       # (q0,q1) wrong: 2/3
    ("m", "c2", 1): [1, 2, 3],       # all wrong: 0/3
    ("s", "c1", 0): [1, 2, 3, 4],    # 0/6; s is refused on c2 (no rows)
}
FOLD_C = {("m", "c1", 0): [0.5, 0.7], ("m", "c1", 1): [0.9, 0.7]}  # results.csv fold values (others 0.5)


def _write(folder: Path, seeds: set[int], risks=RISKS, extra=(), skip=()) -> Path:
    """An input folder as the benchmark writes it (results.csv + predictions.parquet) for ``seeds``;
    ``extra``: ((method, cohort, seed), risks) added; ``skip``: (method, cohort, seed, fold) left unfinished."""
    folder.mkdir(parents=True)
    res, preds = [], []
    for (m, c, s), r in [*risks.items(), *extra]:
        if s not in seeds:
            continue
        time, event, fold = COHORTS[c]
        for f in sorted(set(fold)):
            if (m, c, s, f) in skip:
                continue
            idx = [i for i, fi in enumerate(fold) if fi == f]
            res.append({"method": m, "cohort": c, "task": "survival", "metric": "c_index", "fold": f, "seed": s,
                        "value": FOLD_C.get((m, c, s), [0.5, 0.5])[f]})
            preds.append(pd.DataFrame({"patient_id": [f"{c}_p{i}" for i in idx], "task": "survival", "labelled": True,
                                       "time": [time[i] for i in idx], "event": [float(event[i]) for i in idx],
                                       "risk": [float(r[i]) for i in idx], "method": m, "cohort": c, "fold": f, "seed": s, "partition": "val"}))
    pd.DataFrame(res).to_csv(folder / "results.csv", index=False)
    pd.concat(preds, ignore_index=True).to_parquet(folder / "predictions.parquet")
    return folder


def _pool(tmp_path: Path, n: int = 200, **kw) -> dict:
    a = _write(tmp_path / "seed0", {0})
    b = _write(tmp_path / "seed12", {1, 2}, extra=[(("m", "c1", 2), [4, 3, 2, 1])], skip=[("m", "c1", 2, 1)])
    res, preds = SEEDS.load_inputs([a, b])
    return SEEDS.pool(res, preds, reference="ref", n=n, **kw)


def _cell(out: dict, m: str, c: str) -> dict:
    return next(r for r in out["pooled"] if r["method"] == m and r["cohort"] == c)


def test_hand_computed_seed_pooling(tmp_path):
    out = _pool(tmp_path)
    # m's seed 2 lacks fold 1 of c1: not counted; s ran on c1 only (refused on c2) and counts seed 0
    assert out["seeds"] == {"ref": [0, 1], "m": [0, 1], "s": [0]}
    c1 = _cell(out, "m", "c1")
    assert c1["fold_mean_c_seed_mean"] == pytest.approx(0.7, abs=TOL)  # seeds' fold means 0.6 and 0.8
    assert (c1["fold_mean_c_min"], c1["fold_mean_c_max"]) == pytest.approx((0.6, 0.8), abs=TOL)
    assert c1["pooled_c_seed_mean"] == pytest.approx((5 / 6 + 5.5 / 6) / 2, abs=TOL)
    # seed 0: 5/6 - 1; seed 1: 5.5/6 - 5/6; mean -1/24
    assert c1["delta"] == pytest.approx(-1 / 24, abs=TOL)
    assert c1["delta_per_seed"] == f"{5 / 6 - 1:+.4f} {0.5 / 6:+.4f}"
    assert c1["lo"] <= c1["hi"] and 0 < c1["p"] <= 1
    c2 = _cell(out, "m", "c2")
    assert c2["delta"] == pytest.approx(((2 / 3 - 1) + (0 - 1)) / 2, abs=TOL)
    s1 = _cell(out, "s", "c1")
    assert s1["paired_seeds"] == "0" and s1["delta"] == pytest.approx(-1.0, abs=TOL)
    assert not any(r["method"] == "s" and r["cohort"] == "c2" for r in out["pooled"])
    per = pd.DataFrame(out["per_seed"]).set_index(["method", "cohort", "seed"])
    assert per.loc[("ref", "c1", 1), "pooled_c"] == pytest.approx(5 / 6, abs=TOL)
    assert per.loc[("m", "c1", 0), "n_folds"] == 2


def test_reference_row_has_no_comparison_and_markdown_says_na(tmp_path):
    out = _pool(tmp_path)
    assert "delta" not in _cell(out, "ref", "c1")
    md = SEEDS.summary_md(out, "t", "ref", 200)
    assert "| m | 0 1 | 0.700 [0.600, 0.800] |" in md
    assert "| s | 0 | -1.000" in md and md.count("n/a") >= 2  # s on C2: no cell


def test_duplicated_seed_changes_nothing(tmp_path):
    """Seed 1 an exact copy of seed 0: seed-mean delta, CI and p equal the one-seed numbers, which
    holds only if every seed uses the same patient draw (independent draws would narrow the CI)."""
    one = _write(tmp_path / "one", {0})
    dup_risks = {**RISKS, **{(m, c, 1): RISKS[m, c, 0] for (m, c, s) in RISKS if s == 0}}
    two = _write(tmp_path / "two", {0, 1}, risks=dup_risks)
    r1 = SEEDS.pool(*SEEDS.load_inputs([one]), reference="ref", n=300)
    r2 = SEEDS.pool(*SEEDS.load_inputs([two]), reference="ref", n=300)
    assert r2["seeds"]["m"] == [0, 1]
    for c in ("c1", "c2"):
        a, b = _cell(r1, "m", c), _cell(r2, "m", c)
        assert (b["delta"], b["lo"], b["hi"], b["p"]) == pytest.approx((a["delta"], a["lo"], a["hi"], a["p"]), abs=TOL)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_one_seed_equals_paired_bootstrap(tmp_path_factory, data):
    """With one seed, the shared-draw weighted bootstrap is the benchmark's paired_bootstrap (seed 0)."""
    k = data.draw(st.integers(6, 12))
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    time = np.r_[0.5, rng.integers(1, 8, k - 1)].astype(float)  # ties in time on purpose
    event = np.r_[1, rng.integers(0, 2, k - 1)]  # p0: an event before every other time, so comparable pairs exist
    fold = np.arange(k) % 2
    ra, rb = rng.integers(0, 4, k).astype(float), rng.normal(size=k)  # ties in risk on purpose
    COHORTS["h"] = (list(time), list(event), list(fold))
    try:
        folder = _write(tmp_path_factory.mktemp("h") / "in", {0}, risks={("ref", "h", 0): rb, ("m", "h", 0): ra})
    finally:
        del COHORTS["h"]
    res, preds = SEEDS.load_inputs([folder])
    out = SEEDS.pool(res, preds, reference="ref", n=100)
    cell = _cell(out, "m", "h")
    p = preds.sort_values("patient_id")

    def c_index(d: pd.DataFrame) -> float:
        return harrell_c(d["time"].to_numpy(), d["event"].to_numpy(), d["risk"].to_numpy())

    ref = paired_bootstrap(p[p["method"] == "m"], p[p["method"] == "ref"], c_index, n=100, seed=0)
    assert cell["delta"] == pytest.approx(ref.delta, abs=TOL)
    if np.isfinite(ref.ci[0]):
        assert (cell["lo"], cell["hi"], cell["p"]) == pytest.approx((*ref.ci, ref.p_value), abs=TOL)


def test_patient_mismatch_refused(tmp_path):
    bad = {**RISKS}
    a = _write(tmp_path / "a", {0, 1}, risks=bad)
    res, preds = SEEDS.load_inputs([a])
    preds = preds[~((preds["method"] == "m") & (preds["seed"] == 1) & (preds["patient_id"] == "c1_p0"))]
    with pytest.raises(InputError, match="m seed 1 predicted 3 patients of c1, the inputs hold 4"):
        SEEDS.pool(res, preds, reference="ref", n=10)


def test_reference_without_complete_seed_refused(tmp_path):
    a = _write(tmp_path / "a", {0}, skip=[("ref", "c2", 0, 1)])
    with pytest.raises(InputError, match="reference method 'ref' has no seed finished"):
        SEEDS.pool(*SEEDS.load_inputs([a]), reference="ref", n=10)


def test_missing_file_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no results.csv in the input folder"):
        SEEDS.load_inputs([tmp_path / "empty"])


def test_cli_writes_files(tmp_path):
    a = _write(tmp_path / "a", {0, 1})
    SEEDS.main(["--inputs", str(a), "--out", str(tmp_path / "o"), "--reference", "ref", "--n", "50"])
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"seeds_c.csv", "pooled.csv", "summary.md", "analysis.json"}
    assert len(pd.read_csv(tmp_path / "o" / "seeds_c.csv")) == 2 * 2 + 2 * 2 + 1  # ref, m x 2 cohorts x 2 seeds + s
