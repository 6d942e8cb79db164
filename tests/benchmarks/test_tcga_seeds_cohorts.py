"""benchmarks/tcga/seeds_tcga.py --cohorts: a seed a method finished on some cohorts only counts there.

Reuses the hand-built fixture of test_tcga_seeds.py: m's seed 2 is unfinished on c1 (fold 1 missing) and absent
on c2, so over both cohorts m counts seeds 0 1; restricted to c2, m's seeds are still 0 1 (seed 2 has no c2 rows)
and the c2 numbers equal the two-cohort run's; restricted to c1 with seed 2 finished, m counts 0 1 2 on c1."""
from __future__ import annotations

from pathlib import Path

import pytest
from _scripts import load_script

from modaltune.errors import InputError

HERE = Path(__file__).resolve().parent
FIX = load_script(HERE / "test_tcga_seeds.py", "test_tcga_seeds_fixture")
SEEDS, TOL = FIX.SEEDS, FIX.TOL


def _inputs(tmp_path: Path, finish_seed2: bool):
    a = FIX._write(tmp_path / "seed0", {0})
    skip = [] if finish_seed2 else [("m", "c1", 2, 1)]
    b = FIX._write(tmp_path / "seed12", {1, 2}, extra=[(("m", "c1", 2), [4, 3, 2, 1])], skip=skip)
    return SEEDS.load_inputs([a, b])


def test_restricting_to_a_cohort_keeps_its_numbers(tmp_path):
    res, preds = _inputs(tmp_path, finish_seed2=False)
    both = SEEDS.pool(res, preds, reference="ref", n=200)
    only = SEEDS.pool(*SEEDS.keep_cohorts(res, preds, ["c2"]), reference="ref", n=200)
    assert {r["cohort"] for r in only["pooled"]} == {"c2"}
    assert only["seeds"] == {"ref": [0, 1], "m": [0, 1]}  # s ran on c1 only: gone
    a, b = FIX._cell(both, "m", "c2"), FIX._cell(only, "m", "c2")
    for k in ("delta", "lo", "hi", "p", "fold_mean_c_seed_mean"):
        assert b[k] == pytest.approx(a[k], abs=TOL)


def test_a_seed_finished_on_one_cohort_counts_there_only(tmp_path):
    res, preds = _inputs(tmp_path, finish_seed2=True)
    # over both cohorts m's seed 2 lacks c2: not counted
    assert SEEDS.counted_seeds(res)["m"] == [0, 1]
    out = SEEDS.pool(*SEEDS.keep_cohorts(res, preds, ["c1"]), reference="ref", n=200)
    assert out["seeds"]["m"] == [0, 1, 2]
    c1 = FIX._cell(out, "m", "c1")
    # fold means 0.6, 0.8, 0.5 (seed 2: the fixture's default fold values); pooled C 5/6, 5.5/6, 6/6
    assert c1["fold_mean_c_seed_mean"] == pytest.approx((0.6 + 0.8 + 0.5) / 3, abs=TOL)
    assert c1["pooled_c_seed_mean"] == pytest.approx((5 / 6 + 5.5 / 6 + 1.0) / 3, abs=TOL)
    assert c1["paired_seeds"] == "0 1"  # the reference has no seed 2


def test_unknown_cohort_refused(tmp_path):
    res, preds = _inputs(tmp_path, finish_seed2=False)
    with pytest.raises(InputError, match="not in the inputs"):
        SEEDS.keep_cohorts(res, preds, ["luad"])
