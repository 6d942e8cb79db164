"""Markdown summary tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modaltune.errors import InputError
from modaltune.evaluation.tables import summary_table


def _results():
    rows = []
    vals = {("amil", "BLCA"): [0.5, 0.6, 0.7, 0.6, 0.6], ("amil", "BRCA"): [0.6, 0.6, 0.6, 0.6, np.nan],
            ("snn", "BLCA"): [0.55] * 5, ("snn", "BRCA"): [np.nan] * 5}
    for (m, c), vs in vals.items():
        for f, v in enumerate(vs):
            rows.append(dict(method=m, cohort=c, task="os", metric="c_index", fold=f, seed=0, value=v))
    return pd.DataFrame(rows)


def test_summary_table_content():
    md = summary_table(_results(), protocol="MCAT/PORPOISE 5-fold", endpoint="overall survival",
                       feature_sources=["ResNet50 ImageNet", "RNA"],
                       failures=pd.DataFrame([dict(method="snn", cohort="BRCA", task="os", fold=0, seed=0, reason="no events | x")]),
                       notes=["snn collapsed on BRCA fold 2"])
    assert "**Protocol:** MCAT/PORPOISE 5-fold" in md and "**Endpoint:** overall survival" in md
    assert "**Folds:** 5" in md and "**Seeds:** 1" in md and "ddof=0" in md and "ResNet50 ImageNet, RNA" in md
    assert "## os · c_index" in md
    # amil BLCA: mean 0.6, population std sqrt(0.02/5) = 0.063
    assert "| amil | 0.600 ± 0.063 | 0.600 ± 0.000 (4/5) | 0.600 |" in md
    assert "| snn | 0.550 ± 0.000 | n/a | 0.550 (1/2 cohorts) |" in md
    assert "## Failed units" in md and "no events / x" in md and "snn collapsed" in md


def test_summary_table_seeds_and_ddof():
    df = pd.DataFrame([dict(method="mt", cohort="BRCA", task="subtype", metric="balanced_accuracy", fold=0, seed=s, value=v)
                       for s, v in enumerate([0.8, 0.9, 0.7])])
    md = summary_table(df, ddof=1, protocol="ModalTune single split")
    assert "over seeds" in md and "ddof=1" in md and "| mt | 0.800 ± 0.100 |" in md
    with pytest.raises(InputError, match="lacks columns"):
        summary_table(df.drop(columns="seed"))
