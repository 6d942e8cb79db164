"""``data.simulate[].options`` (incl. the simulator's ``signal`` effect sizes) are checked when a
config loads, and reach the simulated cohort unchanged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.config import load_config
from modaltune.data.simulate import SignalSpec
from modaltune.errors import ConfigError
from modaltune.training.experiment_config import BenchmarkConfig, SimulateSpec
from modaltune.training.sources import resolve_cohort_paths


def _write(tmp_path: Path, options: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(f"data: {{simulate: [{{preset: tiny, options: {options}}}]}}\nmethods: [{{name: snn}}]\n")
    return p


def test_unknown_signal_key_is_a_one_line_config_error_naming_the_entry(tmp_path):
    p = _write(tmp_path, "{signal: {surv_interation: 1.0}}")
    with pytest.raises(ConfigError) as ei:
        load_config(p, BenchmarkConfig)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: data.simulate[0].options: unknown signal setting(s) ['surv_interation']")
    assert "surv_interaction" in msg  # the fix lists the valid keys


def test_unknown_option_lists_the_allowed_ones(tmp_path):
    p = _write(tmp_path, "{n_patint: 30}")
    with pytest.raises(ConfigError, match=r"data\.simulate\[0\]\.options: unknown simulate option\(s\) \['n_patint'\] \(allowed: .*n_patients.*signal"):
        load_config(p, BenchmarkConfig)


@pytest.mark.parametrize(("options", "expected"), [
    ("{signal: {surv_slide: abc}}", r"options: bad simulate option value \(could not convert string to float: 'abc'\)"),
    ("{censoring_rate: 1.5}", r"options: censoring_rate=1\.5 outside \[0, 1\)"),
    ("{patches: [64, 8]}", r"options: patches=\[64, 8\] must satisfy 1 <= min <= max"),
])
def test_bad_option_values_fail_at_load(tmp_path, options, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, options), BenchmarkConfig)


def test_valid_options_load_as_written(tmp_path):
    cfg = load_config(_write(tmp_path, "{n_patients: 12, signal: {surv_interaction: 2.0, surv_slide: 0.1}}"), BenchmarkConfig)
    assert cfg.data.simulate[0].options == {"n_patients": 12, "signal": {"surv_interaction": 2.0, "surv_slide": 0.1}}


@settings(max_examples=20, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(f for f in SignalSpec.__dataclass_fields__)), st.floats(-3, 3, allow_nan=False), max_size=4))
def test_every_signal_key_is_accepted(signal):
    assert SimulateSpec(preset="tiny", options={"signal": signal}).options["signal"] == signal


def test_signal_reaches_the_written_cohort(tmp_path):
    # known answer: ground_truth's risk_interaction is surv_interaction * z_slide_1 * z_omics_1
    spec = SimulateSpec(preset="tiny", seed=3, name="c", options={"n_patients": 10, "patches": [4, 8], "n_folds": 0,
                                                                   "signal": {"surv_interaction": 2.5, "surv_slide": 0.0}})
    cfg = BenchmarkConfig.model_validate({"data": {"simulate": [spec.model_dump()]}, "methods": [{"name": "snn"}]})
    (path,) = resolve_cohort_paths(cfg.data, tmp_path)
    import pandas as pd

    gt = pd.read_csv(path / "ground_truth.csv", index_col=0)
    np.testing.assert_allclose(gt["risk_interaction"], 2.5 * gt["z_slide_1"] * gt["z_omics_1"], rtol=1e-6, atol=1e-6)
