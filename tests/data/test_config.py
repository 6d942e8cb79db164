"""Config errors name the key and what is expected: unknown key (with the allowed keys and the
closest one), wrong type, missing file; the same through ``--set`` overrides."""
from __future__ import annotations

import os

import pytest
from pydantic import BaseModel

from modaltune.config import CohortDir, ExistingFile, StrictModel, load_config
from modaltune.errors import ConfigError
from modaltune.training.experiment_config import BenchmarkConfig, DataConfig, ExperimentConfig


def _write(path, text: str):
    path.write_text(text)
    return path


@pytest.fixture
def cohort_dir(tmp_path):
    d = tmp_path / "cohort"
    d.mkdir()
    (d / "cohort.yaml").write_text("name: c\n")
    return d


@pytest.fixture
def exp_yaml(tmp_path, cohort_dir):
    (tmp_path / "pw.csv").write_text("gene,p1\nTP53,1\n")
    return _write(tmp_path / "exp.yaml", "data:\n  cohorts: [cohort]\n  pathways: {rna: pw.csv}\nmethod: {name: mean_pool}\n")


def test_relative_paths_resolve_against_the_yaml_and_must_exist(exp_yaml, cohort_dir, tmp_path, monkeypatch):
    monkeypatch.chdir("/")  # resolution must not depend on the working directory
    cfg = load_config(exp_yaml, ExperimentConfig)
    assert cfg.data.cohorts == [str(cohort_dir.resolve())]
    assert cfg.data.pathways == {"rna": str((tmp_path / "pw.csv").resolve())}


def test_missing_cohort_names_the_key(exp_yaml):
    with pytest.raises(ConfigError) as exc:
        load_config(exp_yaml, ExperimentConfig, overrides=["data.cohorts=[/nonexistent/cohort]"])
    msg = str(exc.value)
    assert msg == (
        f"{exp_yaml}: data.cohorts[0]: /nonexistent/cohort does not exist "
        "(expected a cohort directory written by `modaltune data import/simulate`)"
    )


def test_missing_pathway_file_and_wrong_kind(exp_yaml, tmp_path):
    with pytest.raises(ConfigError, match=r"data.pathways.rna: /nope.csv does not exist \(expected a gene x pathway 0/1 CSV"):
        load_config(exp_yaml, ExperimentConfig, overrides=["data.pathways.rna=/nope.csv"])
    with pytest.raises(ConfigError, match=r"data.pathways.rna: .* is a directory"):
        load_config(exp_yaml, ExperimentConfig, overrides=[f"data.pathways.rna={tmp_path}"])
    with pytest.raises(ConfigError, match=r"data.cohorts\[1\]: .*pw.csv is not a directory"):
        load_config(exp_yaml, ExperimentConfig, overrides=["data.cohorts=[cohort, pw.csv]"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_path_says_permission(exp_yaml, tmp_path):
    pw = tmp_path / "pw.csv"
    pw.chmod(0)
    try:
        with pytest.raises(ConfigError, match=r"data.pathways.rna: .*pw.csv is not readable \(permission denied"):
            load_config(exp_yaml, ExperimentConfig)
    finally:
        pw.chmod(0o644)


def test_unknown_key_lists_allowed_keys_and_closest(exp_yaml):
    with pytest.raises(ConfigError) as exc:
        load_config(exp_yaml, ExperimentConfig, overrides=["trainer.max_epoch=3"])
    msg = str(exc.value)
    assert "trainer.max_epoch: unknown key (did you mean 'max_epochs'? allowed: max_epochs, lr," in msg
    with pytest.raises(ConfigError, match=r"data.cohort: unknown key \(did you mean 'cohorts'\? allowed: cohorts, simulate,"):
        load_config(exp_yaml, ExperimentConfig, overrides=["data.cohort=x"])
    with pytest.raises(ConfigError, match=r"mehtod: unknown key \(did you mean 'method'\?"):
        load_config(exp_yaml, ExperimentConfig, overrides=["mehtod.name=x"])
    # nested inside a list of models
    with pytest.raises(ConfigError, match=r"data.simulate\[0\].sed: unknown key \(did you mean 'seed'\? allowed: preset, seed, name, options\)"):
        load_config(exp_yaml, ExperimentConfig, overrides=["data.simulate=[{sed: 1}]"])
    # nothing close: only the allowed list
    with pytest.raises(ConfigError, match=r"zzz: unknown key \(allowed: name, data,"):
        load_config(exp_yaml, ExperimentConfig, overrides=["zzz=1"])


def test_wrong_type_and_several_problems_in_one_line(exp_yaml):
    with pytest.raises(ConfigError) as exc:
        load_config(exp_yaml, ExperimentConfig, overrides=["trainer.max_epochs=ten", "trainer.lr=-1", "data.cohorts=[/nope]"])
    msg = str(exc.value)
    assert "\n" not in msg
    assert "trainer.max_epochs: Input should be a valid integer" in msg and "got 'ten'" in msg
    assert "trainer.lr: Input should be greater than 0, got -1" in msg
    assert "data.cohorts[0]: /nope does not exist" in msg


def test_benchmark_config_checks_paths_too(tmp_path, cohort_dir):
    p = _write(tmp_path / "b.yaml", "data: {cohorts: [cohort, missing]}\nmethods: [{name: mean_pool}]\n")
    with pytest.raises(ConfigError, match=r"data.cohorts\[1\]: .*missing does not exist"):
        load_config(p, BenchmarkConfig)


def test_python_built_configs_skip_the_file_check():
    """Programmatic configs (no load_config) may name paths that are created later."""
    d = DataConfig(cohorts=["/not/yet"], pathways={"rna": "later.csv"})
    assert d.cohorts == ["/not/yet"] and d.pathways == {"rna": "later.csv"}


def test_path_types_in_any_model(tmp_path):
    class M(StrictModel):
        weights: ExistingFile
        out: CohortDir | None = None

    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    cfg = _write(tmp_path / "m.yaml", "weights: w.pt\n")
    assert load_config(cfg, M).weights == str(f.resolve())
    with pytest.raises(ConfigError, match=r"weights: .*nope.pt does not exist \(expected an existing file\)"):
        load_config(cfg, M, overrides=["weights=nope.pt"])
    assert issubclass(M, BaseModel)
