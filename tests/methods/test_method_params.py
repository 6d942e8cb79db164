"""Typed method parameters: checked when a config is loaded, printed by `modaltune methods --params`."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modaltune.cli import main
from modaltune.config import load_config
from modaltune.errors import ConfigError
from modaltune.methods.modaltune import ModalTuneParams
from modaltune.methods.registry import build_method, list_methods, params_table, validate_params
from modaltune.training.experiment_config import BenchmarkConfig, ExperimentConfig


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(body)
    return p


def test_misspelled_parameter_fails_at_fit_config_load_naming_the_key(tmp_path):
    p = _write(tmp_path, "data: {simulate: [{preset: tiny}]}\nmethod: {name: mean_pool, params: {hiden: 8}}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, ExperimentConfig)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{p}: method.params.hiden: unknown key (did you mean 'hidden'? allowed: ")
    assert "head_dropout" in msg and "dropout" in msg


def test_mistyped_parameter_fails_at_benchmark_config_load_with_its_index(tmp_path):
    p = _write(tmp_path, "data: {simulate: [{preset: tiny}]}\nmethods: [{name: mean_pool}, {name: modaltune, params: {heads: abc}}]\n")
    with pytest.raises(ConfigError, match=r"methods\[1\]\.params\.heads: Input should be a valid integer.*got 'abc'"):
        load_config(p, BenchmarkConfig)


def test_valid_params_load_and_are_kept_as_written(tmp_path):
    p = _write(tmp_path, "data: {simulate: [{preset: tiny}]}\nmethods: [{name: snn, params: {hidden: [32, 32], alpha: 0.5}}]\n")
    cfg = load_config(p, BenchmarkConfig)
    assert cfg.methods[0].params == {"hidden": [32, 32], "alpha": 0.5}


def test_every_builtin_method_has_a_strict_described_parameter_model():
    for name, entry in list_methods().items():
        assert entry.params.model_config.get("extra") == "forbid", name
        rows = params_table(name)
        assert rows and all(meaning for _, _, _, meaning in rows), name
        validate_params(name, {})  # the defaults alone validate


def test_modaltune_defaults_live_in_the_parameter_model():
    rows = {r[0]: r for r in params_table("modaltune")}
    # 36 + the protocol / optimisation keys of issue 17 + the ablation switches `targets` and `extractors` + `backbone_precision`
    assert len(rows) == len(ModalTuneParams.model_fields) == 47
    assert rows["targets"][2] == "'text'" and rows["extractors"][2] == "True"
    assert rows["drop_path"][2] == "0.1" and rows["kl_scale"][2] == "10.0" and rows["text_temperature"][2] == "0.07"
    assert rows["attn_dim"][2] == "None" and "192 for gigapath/titan, else 64" in rows["attn_dim"][3]


def test_builder_gets_the_defaults_filled_in():
    from modaltune.methods.registry import METHODS

    seen = {}
    entry = METHODS["abmil"]
    orig = entry.builder
    try:
        object.__setattr__(entry, "builder", lambda info, **p: seen.update(p))
        build_method("abmil", None, attn_dim=16)
    finally:
        object.__setattr__(entry, "builder", orig)
    assert seen["attn_dim"] == 16 and seen["embed_dim"] == 512 and seen["dropout"] == 0.25 and seen["survival_head"] == "discrete"


def test_methods_params_cli_lists_defaults(capsys):
    assert main(["methods", "--params", "modaltune"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("modaltune (torch; needs: slide): ")
    assert lines[1].split() == ["parameter", "type", "default", "meaning"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    # 36 + the protocol / optimisation keys of issue 17 + the ablation switches `targets` and `extractors` + `backbone_precision`
    assert len(rows) == len(ModalTuneParams.model_fields) == 47
    assert rows["extractors"][1:3] == ["bool", "True"]
    assert rows["extra_extractors"][1:3] == ["int", "2"] and rows["use_report"][1:3] == ["bool", "True"]
    assert rows["backbone"][1:3] == ["str", "'small_transformer'"]
    assert rows["backbone_precision"][1:4] == ["Literal['fp32',", "'bf16-weights']", "'fp32'"]


def test_methods_params_cli_unknown_name_is_one_line(capsys):
    assert main(["methods", "--params", "mean_pol"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown method 'mean_pol'" in err and "did you mean 'mean_pool'" in err


def test_method_needing_an_absent_modality_is_refused_at_load(tmp_path):
    from modaltune.data.simulate import simulate_cohort

    simulate_cohort(tmp_path / "c", preset="tiny", n_patients=8, patches=(4, 8), n_folds=0)
    man = yaml.safe_load((tmp_path / "c" / "cohort.yaml").read_text())
    man["modalities"] = [m for m in man["modalities"] if m["kind"] != "omics"]
    (tmp_path / "c" / "cohort.yaml").write_text(yaml.safe_dump(man))
    ok = _write(tmp_path, "data: {cohorts: [c]}\nmethods: [{name: abmil}]\n")
    assert load_config(ok, BenchmarkConfig).methods[0].name == "abmil"
    bad = _write(tmp_path, "data: {cohorts: [c]}\nmethods: [{name: abmil}, {name: snn}]\n")
    with pytest.raises(ConfigError) as ei:
        load_config(bad, BenchmarkConfig)
    assert str(ei.value) == f"{bad}: method 'snn' needs omics data and cohort c has none (it has: clinical, slide, text)"
    fit_cfg = _write(tmp_path, "data: {cohorts: [c]}\nmethod: {name: gene_mixer}\n")
    with pytest.raises(ConfigError, match="method 'gene_mixer' needs omics data"):
        load_config(fit_cfg, ExperimentConfig)
