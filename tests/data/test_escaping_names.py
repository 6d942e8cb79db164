"""Names that would write outside the chosen folder are refused with one-line ConfigErrors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modaltune.cli import main
from modaltune.config import load_config
from modaltune.data._files import name_problem
from modaltune.errors import ConfigError
from modaltune.testing.cohort import make_cohort
from modaltune.training.experiment_config import BenchmarkConfig

BAD = ["../../x", "/tmp/abs", "..", "a/b", "a\\b", "."]


@pytest.mark.parametrize("name", BAD)
def test_name_problem_refuses_escapes(name):
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["sim_tiny", "my.cohort-1", "a..b"])
def test_plain_names_pass(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b"])
def test_simulate_name_escaping_run_folder_is_a_config_error(tmp_path, name):
    cfg = {"name": "b", "data": {"simulate": [{"preset": "tiny", "name": name}]}, "methods": [{"name": "coxnet"}]}
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e:
        load_config(path, BenchmarkConfig)
    msg = str(e.value)
    assert "data.simulate" in msg and "name" in msg and "inside the run folder" in msg and "\n" not in msg


@pytest.mark.parametrize("name", ["../../x", "/tmp/x_abs_split", "sub/x"])
def test_data_split_name_escaping_splits_is_refused(tmp_path, capsys, name):
    make_cohort(tmp_path / "c")
    before = set(tmp_path.rglob("*"))
    rc = main(["data", "split", str(tmp_path / "c"), "--task", "subtype", "--folds", "2", "--name", name])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and "--name" in lines[0] and repr(name)[1:-1] in lines[0], err
    assert set(tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not Path("/tmp/x_abs_split.csv").exists()
