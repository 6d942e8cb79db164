"""benchmarks/missing_grid/seeds.py: pooling the training seeds of a missing-modality grid.

A hand-built fixture (4 patients, 2 folds, 2 settings, 2 seeds in two run folders) with C-indices
computed by hand; the bootstrap's weighted C against harrell_c on the expanded resample; the shared
patient draw across seeds; incomplete seeds left out; a patient-set mismatch refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _scripts import load_bench_script
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.errors import InputError
from modaltune.evaluation.metrics import MetricUndefined, harrell_c

SEEDS = load_bench_script("missing_grid/seeds.py")

TOL = 1e-12  # float64 ratios of small integer / half-integer pair counts
# patients p0..p3 with times 1..4, events 1,1,1,0: all 6 pairs comparable; folds {p0,p1} and {p2,p3}
TIME, EVENT = [1.0, 2.0, 3.0, 4.0], [1, 1, 1, 0]
FOLD = [0, 0, 1, 1]
RISKS = {  # (method, seed, setting) -> risk of p0..p3, and its C counted by hand over the 6 pairs
    ("late_fusion", 0, "W0_O0"): [4, 3, 2, 1],    # 6/6
    ("late_fusion", 0, "W40_O20"): [4, 3, 2, 2],  # (p2,p3) tied: 5.5/6
    ("late_fusion", 1, "W0_O0"): [4, 3, 2, 1],    # 6/6
    ("late_fusion", 1, "W40_O20"): [3, 4, 2, 1],  # (p0,p1) wrong: 5/6
    ("m", 0, "W0_O0"): [4, 3, 1, 2],              # (p2,p3) wrong: 5/6
    ("m", 0, "W40_O20"): [4, 3, 1, 2],            # 5/6
    ("m", 1, "W0_O0"): [4, 3, 2, 1],              # 6/6
    ("m", 1, "W40_O20"): [2, 3, 4, 1],            # (p0,p1) (p0,p2) (p1,p2) wrong: 3/6
}
HAND_C = {("late_fusion", 0, "W0_O0"): 1.0, ("late_fusion", 0, "W40_O20"): 5.5 / 6, ("late_fusion", 1, "W0_O0"): 1.0,
          ("late_fusion", 1, "W40_O20"): 5 / 6, ("m", 0, "W0_O0"): 5 / 6, ("m", 0, "W40_O20"): 5 / 6, ("m", 1, "W0_O0"): 1.0,
          ("m", 1, "W40_O20"): 0.5}


def _write_run(run: Path, risks: dict, time=TIME, event=EVENT, fold=FOLD, skip=()) -> Path:
    """A run folder as run_grid.py writes it: results.csv + preds/<setting>__f<fold>__s<seed>__<method>.parquet.
    ``skip``: (method, seed, setting, fold) units left unfinished (status failed, no preds file)."""
    (run / "preds").mkdir(parents=True)
    rows = []
    for (m, seed, s), r in risks.items():
        for f in sorted(set(fold)):
            idx = [i for i, fi in enumerate(fold) if fi == f]
            if (m, seed, s, f) in skip:
                rows.append({"setting": s, "fold": f, "seed": seed, "method": m, "status": "failed", "c_index": np.nan})
                continue
            pd.DataFrame({"patient_id": [f"p{i}" for i in idx], "time": [time[i] for i in idx], "event": [event[i] for i in idx],
                          "risk": [float(r[i]) for i in idx], "setting": s, "fold": f, "seed": seed, "method": m}
                         ).to_parquet(run / "preds" / f"{s}__f{f}__s{seed}__{m}.parquet")
            rows.append({"setting": s, "fold": f, "seed": seed, "method": m, "status": "done", "c_index": 0.5})
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)
    return run


@pytest.fixture()
def runs(tmp_path) -> list[str]:
    """Seed 0 and seed 1 in two run folders, as the grid's seed folders are."""
    return [str(_write_run(tmp_path / f"s{seed}", {k: v for k, v in RISKS.items() if k[1] == seed})) for seed in (0, 1)]


def test_hand_computed_pooled_c_degradation_and_seed_mean_difference(runs):
    preds, folds = SEEDS.load_runs(runs)
    res = SEEDS.pool(preds, folds, "late_fusion", n=200)
    pooled = {(r["method"], r["seed"], r["setting"]): r["pooled_c"] for r in res["pooled"]}
    assert pooled.keys() == HAND_C.keys()
    for k, c in HAND_C.items():
        assert pooled[k] == pytest.approx(c, abs=TOL), k
    deg = {r["method"]: r for r in res["degradation"]}
    # m: seed 0 loses 0, seed 1 loses 0.5 -> mean -0.25, range [-0.5, 0]; mean C over seeds W0_O0 (5/6 + 1) / 2
    assert deg["m"]["mean(missing) - W0_O0"] == pytest.approx(-0.25, abs=TOL)
    assert (deg["m"]["min over seeds"], deg["m"]["max over seeds"]) == pytest.approx((-0.5, 0.0), abs=TOL)
    assert deg["m"]["W0_O0"] == pytest.approx(11 / 12, abs=TOL) and deg["m"]["W40_O20"] == pytest.approx(2 / 3, abs=TOL)
    assert deg["late_fusion"]["mean(missing) - W0_O0"] == pytest.approx((-0.5 / 6 - 1 / 6) / 2, abs=TOL)
    # seed-mean degradation difference: seed 0: 0 - (-1/12) = 1/12; seed 1: -1/2 - (-1/6) = -1/3 -> mean -1/8
    (p,) = [r for r in res["paired"] if r["method"] == "m" and r["setting"] == "W40_O20"]
    assert p["delta"] == pytest.approx(-1 / 8, abs=TOL) and p["seeds"] == "0 1"
    assert p["lo"] <= p["delta"] <= p["hi"] or p["n_valid"] < 200  # tiny data: the point may sit outside a skewed CI
    # one missing setting: mean(missing) is that setting
    (pm,) = [r for r in res["paired"] if r["method"] == "m" and r["setting"] == SEEDS.MEAN_MISSING]
    assert pm["delta"] == pytest.approx(p["delta"], abs=TOL)


def test_main_writes_tables(runs, tmp_path):
    out = tmp_path / "out"
    assert SEEDS.main(["--runs", *runs, "--out", str(out), "--title", "fixture", "--n", "50"]) == 0
    deg = pd.read_csv(out / "degradation.csv").set_index("method")
    assert deg.loc["m", "n_seeds"] == 2 and deg.loc["m", "mean(missing) - W0_O0"] == pytest.approx(-0.25, abs=TOL)
    assert len(pd.read_csv(out / "pooled_c.csv")) == 8
    text = (out / "summary.md").read_text()
    assert "| m | 0 1 | 0.917 | 0.667 | -0.250 [-0.500, +0.000] |" in text


def test_incomplete_seed_is_left_out(tmp_path):
    risks = dict(RISKS) | {("partial", s, st): RISKS[("m", s, st)] for s in (0, 1) for st in ("W0_O0", "W40_O20")}
    run = _write_run(tmp_path / "run", risks, skip={("partial", 1, "W40_O20", 1)})
    res = SEEDS.pool(*SEEDS.load_runs([str(run)]), "late_fusion", n=50)
    deg = {r["method"]: r for r in res["degradation"]}
    assert deg["partial"]["seeds"] == "0" and deg["m"]["seeds"] == "0 1"
    assert deg["partial"]["mean(missing) - W0_O0"] == pytest.approx(0.0, abs=TOL)  # m's seed 0 alone
    (p,) = [r for r in res["paired"] if r["method"] == "partial" and r["setting"] == "W40_O20"]
    assert p["seeds"] == "0" and p["delta"] == pytest.approx(1 / 12, abs=TOL)


def test_copy_of_reference_has_zero_difference_and_duplicate_seed_keeps_the_ci(tmp_path):
    """A twin of the reference differs by exactly 0 on every resample. And a seed that repeats seed 0's
    predictions leaves the seed-mean CI unchanged only if every seed shares the same patient draw
    (independent draws per seed would narrow it)."""
    rng = np.random.default_rng(3)
    n = 40
    time, event, fold = rng.exponential(10, n).round(2).tolist(), (rng.random(n) < 0.6).astype(int).tolist(), [i % 4 for i in range(n)]
    base = {(m, 0, s): rng.normal(size=n).tolist() for m in ("late_fusion", "m") for s in ("W0_O0", "W30_O30", "W60_O0")}
    base |= {("twin", 0, s): base[("late_fusion", 0, s)] for s in ("W0_O0", "W30_O30", "W60_O0")}
    one = _write_run(tmp_path / "one", base, time, event, fold)
    dup = {(m, s, st): r for (m, _, st), r in base.items() for s in (0, 1)}
    two = _write_run(tmp_path / "two", dup, time, event, fold)
    a = {(r["method"], r["setting"]): r for r in SEEDS.pool(*SEEDS.load_runs([str(one)]), "late_fusion", n=300)["paired"]}
    b = {(r["method"], r["setting"]): r for r in SEEDS.pool(*SEEDS.load_runs([str(two)]), "late_fusion", n=300)["paired"]}
    for setting in ("W30_O30", "W60_O0", SEEDS.MEAN_MISSING):
        assert (a["twin", setting]["delta"], a["twin", setting]["lo"], a["twin", setting]["hi"], a["twin", setting]["p"]) == (0.0, 0.0, 0.0, 1.0)
        assert b["m", setting]["seeds"] == "0 1"
        for k in ("delta", "lo", "hi"):
            assert b["m", setting][k] == pytest.approx(a["m", setting][k], abs=TOL), (setting, k)
        assert a["m", setting]["hi"] - a["m", setting]["lo"] > 0.01  # a real interval, so the equality above can fail


def test_patient_mismatch_is_refused(tmp_path, runs):
    other = {k: v + [1.0] for k, v in RISKS.items() if k[1] == 1}
    bad = _write_run(tmp_path / "bad", other, TIME + [5.0], EVENT + [1], FOLD + [1])
    with pytest.raises(InputError, match="predicted 4 patients, the pooled runs have 5"):
        SEEDS.pool(*SEEDS.load_runs([runs[0], str(bad)]), "late_fusion", n=10)


def test_missing_reference_is_refused(runs):
    with pytest.raises(InputError, match="reference method 'porpoise'"):
        SEEDS.pool(*SEEDS.load_runs(runs), "porpoise", n=10)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_weighted_c_equals_harrell_c_of_the_expanded_resample(data):
    n = data.draw(st.integers(2, 12))
    time = data.draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))  # few values: tied times
    event = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    risk = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))  # tied risks
    counts = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    num, den = SEEDS.pair_matrices(np.array(time, float), np.array(event), np.array(risk, float))
    got = SEEDS.weighted_c(num, den, counts)[0]
    idx = np.repeat(np.arange(n), counts)
    try:
        want = harrell_c(np.array(time, float)[idx], np.array(event)[idx], np.array(risk, float)[idx])
    except MetricUndefined:
        assert np.isnan(got)
        return
    assert got == pytest.approx(want, abs=TOL)
