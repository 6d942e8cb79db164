"""benchmarks/missing_grid/cross_cohort.py: per-cohort degradation, ranks and the mean over cohorts give
hand-computed answers on tiny results.csv fixtures; partial (method, cohort) runs are flagged and left
out of the means."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _scripts import load_bench_script

TOL = 1e-12  # float64 means of a few C-indices


def _load():
    return load_bench_script("missing_grid/cross_cohort.py", "cross_cohort")


def _write(root: Path, cohort: str, cs: dict[tuple[str, str], list[float]], extra: list[dict] = ()) -> None:
    """cs: (method, setting) -> C-index per fold (fold = list position)."""
    rows = [{"setting": s, "fold": f, "seed": 0, "method": m, "status": "done", "c_index": c, "n_eval": 10, "n_events": 3,
             "fit_s": 1.0, "peak_rss_mib": 1.0, "reason": ""} for (m, s), v in cs.items() for f, c in enumerate(v)]
    (root / cohort).mkdir(parents=True)
    pd.DataFrame(rows + list(extra)).to_csv(root / cohort / "results.csv", index=False)


@pytest.fixture
def root(tmp_path):
    # cohort a: x loses (-0.15 - 0.05) / 2 = -0.10 (worst -0.15); y loses (-0.02 + 0) / 2 = -0.01 (worst -0.02)
    _write(tmp_path, "a", {("x", "W0_O0"): [0.7, 0.8], ("x", "W0_O60"): [0.6, 0.6], ("x", "W60_O0"): [0.7, 0.7],
                           ("y", "W0_O0"): [0.6, 0.6], ("y", "W0_O60"): [0.58, 0.58], ("y", "W60_O0"): [0.6, 0.6]})
    # cohort b: x loses 0, y loses -0.10; z finished fold 0 only (3 of 6 units; its fold-1 W0_O0 failed)
    failed = {"setting": "W0_O0", "fold": 1, "seed": 0, "method": "z", "status": "failed", "c_index": float("nan"), "reason": "boom"}
    _write(tmp_path, "b", {("x", "W0_O0"): [0.6, 0.6], ("x", "W0_O60"): [0.6, 0.6], ("x", "W60_O0"): [0.6, 0.6],
                           ("y", "W0_O0"): [0.7, 0.7], ("y", "W0_O60"): [0.6, 0.6], ("y", "W60_O0"): [0.6, 0.6],
                           ("z", "W0_O0"): [0.9], ("z", "W0_O60"): [0.5], ("z", "W60_O0"): [0.5]}, [failed])
    return tmp_path


def test_known_answers(root):
    mod = _load()
    assert mod.main(["--root", str(root), "--out", str(root / "out" / "cc")]) == 0
    t = pd.read_csv(root / "out" / "cc.csv").set_index(["cohort", "method"])
    assert t.loc[("a", "x"), "W0_O0"] == pytest.approx(0.75, abs=TOL)
    assert t.loc[("a", "x"), "d_W0_O60"] == pytest.approx(-0.15, abs=TOL)
    assert t.loc[("a", "x"), "mean_missing"] == pytest.approx(-0.10, abs=TOL)
    assert t.loc[("a", "x"), "worst"] == pytest.approx(-0.15, abs=TOL)
    assert t.loc[("a", "y"), "mean_missing"] == pytest.approx(-0.01, abs=TOL)
    assert (t.loc[("a", "y"), "rank"], t.loc[("a", "x"), "rank"]) == (1, 2)
    assert (t.loc[("b", "x"), "rank"], t.loc[("b", "y"), "rank"]) == (1, 2)
    # z: 3 of 6 units, so not complete, not ranked, and absent from the means over cohorts
    assert t.loc[("b", "z"), "units"] == 3 and not t.loc[("b", "z"), "complete"]
    assert pd.isna(t.loc[("b", "z"), "rank"])
    assert t.loc[("b", "z"), "mean_missing"] == pytest.approx(-0.4, abs=TOL)
    mean = t.loc["mean over cohorts"]
    assert sorted(mean.index) == ["x", "y"]
    assert mean.loc["x", "mean_missing"] == pytest.approx(-0.05, abs=TOL)
    assert mean.loc["y", "mean_missing"] == pytest.approx(-0.055, abs=TOL)
    assert mean.loc["y", "d_W0_O60"] == pytest.approx((-0.02 - 0.10) / 2, abs=TOL)
    assert mean.loc["x", "rank"] == pytest.approx(1.5, abs=TOL)
    assert mean.loc["x", "units"] == 12 and mean.loc["x", "cohorts"] == "a b"
    md = (root / "out" / "cc.md").read_text()
    assert "| z | not run | -0.400* (3 units) |" in md
    assert "| x | -0.100 (2) | +0.000 (1) | -0.050 | 1.50 | a b |" in md


def test_grid_stopped_early_for_every_method_is_not_complete(root):
    """A cohort where every method stopped after fold 0 is partial against the full grid of the others
    (``--expect`` default: the largest grid), so it does not enter the means."""
    _write(root, "c", {("x", "W0_O0"): [0.9], ("x", "W0_O60"): [0.1], ("x", "W60_O0"): [0.1]})
    mod = _load()
    mod.main(["--root", str(root), "--out", str(root / "cc"), "--cohorts", "a", "c"])
    t = pd.read_csv(root / "cc.csv").set_index(["cohort", "method"])
    assert not t.loc[("c", "x"), "complete"]
    assert t.loc[("mean over cohorts", "x"), "mean_missing"] == pytest.approx(-0.10, abs=TOL)
    assert t.loc[("mean over cohorts", "x"), "cohorts"] == "a"
    mod.main(["--root", str(root), "--out", str(root / "cc3"), "--cohorts", "c", "--expect", "3"])
    assert bool(pd.read_csv(root / "cc3.csv").set_index(["cohort", "method"]).loc[("c", "x"), "complete"])
