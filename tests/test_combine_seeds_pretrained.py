"""benchmarks/modaltune_pretrained/combine_seeds.py: per-seed means, seed std (ddof 1), paired differences."""

import pandas as pd
import pytest
from _scripts import load_bench_script

cs = load_bench_script("modaltune_pretrained/combine_seeds.py")


def _rows(method, metric, values):
    """values[(fold, seed)] -> long-format rows as written by `modaltune benchmark`."""
    return [
        {"method": method, "cohort": "c", "task": "t", "metric": metric, "fold": f, "seed": s, "value": v}
        for (f, s), v in values.items()
    ]


def _frames():
    # 2 folds x 3 seeds; seed 0 in one file, seeds 1, 2 in the other (as the real run)
    mt = {(0, 0): 0.6, (1, 0): 0.8, (0, 1): 0.5, (1, 1): 0.7, (0, 2): 0.9, (1, 2): 0.9}
    lf = {(0, 0): 0.7, (1, 0): 0.7, (0, 1): 0.5, (1, 1): 0.6, (0, 2): 0.8, (1, 2): 0.8}
    rows = []
    for metric in cs.METRICS:
        rows += _rows(cs.MT, metric, mt) + _rows(cs.LF, metric, lf)
    df = pd.DataFrame(rows)
    return [df[df.seed == 0], df[df.seed > 0]]


def test_known_answers():
    res = cs.combine(_frames())
    m = res["methods"][cs.MT]["c_index"]
    # per-seed fold means: 0.7, 0.6, 0.9 -> mean 0.7333, std ddof 1 = sqrt(((-.0333)^2 + (-.1333)^2 + .1667^2) / 2)
    assert m["per_seed"] == pytest.approx({0: 0.7, 1: 0.6, 2: 0.9})
    assert m["mean_over_seeds"] == pytest.approx(2.2 / 3)
    assert m["std_over_seeds_ddof1"] == pytest.approx(0.152752523, rel=1e-6)
    p = res["paired_mt_minus_lf"]["balanced_accuracy"]
    # differences -0.1, +0.1, 0, +0.1, +0.1, +0.1 -> mean 0.05, 4 strictly better (the tie is not counted)
    assert p["mean"] == pytest.approx(0.05)
    assert (p["n_better"], p["n_units"]) == (4, 6)
    assert (p["min"], p["max"]) == pytest.approx((-0.1, 0.1))


def test_overlapping_files_refused():
    a, b = _frames()
    with pytest.raises(ValueError, match="overlap"):
        cs.combine([a, b, a])
