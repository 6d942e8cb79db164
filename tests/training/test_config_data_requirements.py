"""A method that needs more than a modality kind (an RNA block with pathway lists, signature genes in
the cohort, a named modality) is refused when the config loads, in one line naming the method, the
cohort and what is missing (issue 14, "Bad input"); partial gene overlap is not an error."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modaltune.config import load_config
from modaltune.errors import ConfigError
from modaltune.training.experiment_config import BenchmarkConfig, ExperimentConfig


@pytest.fixture(scope="module")
def base_cohort(tmp_path_factory) -> Path:
    """An 8-patient simulated cohort named ``withrna`` (slide, rna, cnv, mut, clinical, text) and its pathway CSV."""
    from modaltune.data.simulate import simulate_cohort

    out = tmp_path_factory.mktemp("req") / "withrna"
    simulate_cohort(out, preset="tiny", n_patients=8, patches=(4, 8), n_folds=0, name="withrna")
    return out


@pytest.fixture
def cohorts(base_cohort, tmp_path) -> tuple[Path, Path]:
    """``(withrna, norna)`` in ``tmp_path``: the second is the same cohort, named ``norna``, without its RNA block."""
    a, b = tmp_path / "withrna", tmp_path / "norna"
    shutil.copytree(base_cohort, a)
    shutil.copytree(base_cohort, b)
    man = yaml.safe_load((b / "cohort.yaml").read_text())
    man["name"] = "norna"
    man["modalities"] = [m for m in man["modalities"] if m["name"] != "rna"]
    (b / "cohort.yaml").write_text(yaml.safe_dump(man, sort_keys=False))
    return a, b


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _genes(cohort: Path) -> list[str]:
    import pandas as pd

    return [c for c in pd.read_parquet(cohort / "omics" / "rna.parquet").columns if c != "patient_id"]


@pytest.mark.usefixtures("cohorts")  # the configs name the folders it makes in tmp_path
def test_survpath_without_rna_is_refused_at_load_and_loads_with_it(tmp_path):
    ok = _write(tmp_path, "data: {cohorts: [withrna], pathways: {rna: withrna/pathways.csv}}\nmethod: {name: survpath}\n")
    assert load_config(ok, ExperimentConfig).method.name == "survpath"
    bad = _write(tmp_path, "data: {cohorts: [norna], pathways: {rna: withrna/pathways.csv}}\nmethod: {name: survpath}\n", "bad.yaml")
    with pytest.raises(ConfigError) as ei:
        load_config(bad, ExperimentConfig)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{bad}: method 'survpath' needs omics block 'rna' (pathway tokens) and cohort norna has none (its omics blocks: cnv, mut)")
    assert "drop survpath from methods" in msg
    # `cohorts` restricts a method within a benchmark only: a fit runs on its cohort whatever it says
    fit_cfg = _write(tmp_path, "data: {cohorts: [norna], pathways: {rna: withrna/pathways.csv}}\nmethod: {name: survpath, cohorts: [withrna]}\n", "fit.yaml")
    with pytest.raises(ConfigError, match="method 'survpath' needs omics block 'rna'"):
        load_config(fit_cfg, ExperimentConfig)


def test_a_benchmark_names_the_refused_pair_and_counts_the_others(cohorts, tmp_path):
    text = ("data: {cohorts: [withrna, norna], pathways: {rna: withrna/pathways.csv}}\n"
            "methods: [{name: snn}, {name: survpath}, {name: gene_mixer}]\n")
    with pytest.raises(ConfigError) as ei:
        load_config(_write(tmp_path, text), BenchmarkConfig)
    msg = str(ei.value)
    assert "method 'survpath' needs omics block 'rna'" in msg and "cohort norna" in msg and msg.endswith("(1 more method/cohort pair(s) refused)")
    # restricted to the cohort that has RNA (what benchmarks/run_tcga.py does for the refused pairs), it loads
    ok = text.replace("{name: survpath}, {name: gene_mixer}", "{name: survpath, cohorts: [withrna]}, {name: gene_mixer, cohorts: [withrna]}")
    cfg = load_config(_write(tmp_path, ok, "ok.yaml"), BenchmarkConfig)
    assert [m.cohorts for m in cfg.methods] == [None, ["withrna"], ["withrna"]]


def test_rna_without_pathway_lists_is_refused_naming_data_pathways(cohorts, tmp_path):
    bad = _write(tmp_path, "data: {cohorts: [withrna]}\nmethod: {name: gene_mixer}\n")
    with pytest.raises(ConfigError, match=r"method 'gene_mixer' needs pathway gene lists for omics block 'rna' of cohort withrna and data.pathways "
                                          r"has none for it \(fix: set data.pathways: \{rna: "):
        load_config(bad, ExperimentConfig)
    # params.omics names a block that has pathway lists: the check follows it
    cnv = _write(tmp_path, "data: {cohorts: [norna], pathways: {cnv: withrna/pathways.csv}}\nmethod: {name: gene_mixer, params: {omics: cnv}}\n", "cnv.yaml")
    import pandas as pd

    genes = [c for c in pd.read_parquet(tmp_path / "norna" / "omics" / "cnv.parquet").columns if c != "patient_id"]
    pd.DataFrame({"gene": genes[:3], "P1": 1}).to_csv(tmp_path / "withrna" / "pathways.csv", index=False)
    assert load_config(cnv, ExperimentConfig).method.params == {"omics": "cnv"}


def test_a_named_modality_the_cohort_lacks_is_refused(cohorts, tmp_path):
    bad = _write(tmp_path, "data: {cohorts: [norna]}\nmethod: {name: modaltune, modalities: [slide, rna]}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(bad, ExperimentConfig)
    assert str(ei.value) == (f"{bad}: method 'modaltune' is given modality 'rna' and cohort norna has none (it has: slide, cnv, mut, clinical, text) "
                             "(fix: drop 'rna' from the method's modalities, or run it on cohorts that have it)")
    ok = _write(tmp_path, "data: {cohorts: [withrna]}\nmethod: {name: modaltune, modalities: [slide, rna]}\n", "ok.yaml")
    assert load_config(ok, ExperimentConfig).method.modalities == ["slide", "rna"]
    # a required kind that the selected modalities leave out
    sel = _write(tmp_path, "data: {cohorts: [withrna]}\nmethod: {name: snn, modalities: [slide]}\n", "sel.yaml")
    with pytest.raises(ConfigError, match=r"method 'snn' needs omics data and its modalities \['slide'\] select none of cohort withrna's"):
        load_config(sel, ExperimentConfig)


def test_zero_overlap_signature_file_is_refused_naming_the_file(cohorts, tmp_path):
    sig = tmp_path / "no_overlap_sig.csv"
    sig.write_text("G1,G2\nNOT_A_GENE_1,NOT_A_GENE_2\nNOT_A_GENE_3,\n")
    bad = _write(tmp_path, f"data: {{cohorts: [withrna]}}\nmethod: {{name: mcat, params: {{signatures: {sig}}}}}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(bad, ExperimentConfig)
    msg = str(ei.value)
    assert "\n" not in msg and "method 'mcat' cannot map its genes onto cohort withrna" in msg
    assert f"{sig}: no signature gene is among the cohort's omics features (overlap 0/3 genes" in msg
    missing = _write(tmp_path, "data: {cohorts: [withrna]}\nmethod: {name: motcat}\n", "missing.yaml")
    with pytest.raises(ConfigError, match=r"method 'motcat' needs the genomic signature groups \(method.params.signatures is not set\)"):
        load_config(missing, ExperimentConfig)


def test_zero_overlap_pathway_file_is_refused_naming_the_file(cohorts, tmp_path):
    pw = tmp_path / "no_overlap_pathways.csv"
    pw.write_text("gene,P1,P2\nNOT_A_GENE_1,1,0\nNOT_A_GENE_2,0,1\n")
    bad = _write(tmp_path, f"data: {{cohorts: [withrna], pathways: {{rna: {pw}}}}}\nmethod: {{name: survpath}}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(bad, ExperimentConfig)
    msg = str(ei.value)
    assert "\n" not in msg and "method 'survpath' cannot map its genes onto cohort withrna" in msg
    assert f"{pw}: none of the 2 pathways has >= 1 gene(s) in the omics table" in msg and "overlap 0 of 2 pathway genes" in msg


def test_partial_signature_overlap_loads_and_logs_the_coverage(cohorts, tmp_path, caplog):
    withrna, _ = cohorts
    genes = _genes(withrna)
    sig = tmp_path / "partial_sig.csv"
    sig.write_text(f"G1,G2\n{genes[0]},{genes[1]}\nNOT_A_GENE,\n")
    ok = _write(tmp_path, f"data: {{cohorts: [withrna]}}\nmethod: {{name: cmta, params: {{signatures: {sig}, omics: [rna]}}}}\n")
    with caplog.at_level(logging.INFO, logger="modaltune.encoders.signatures"):
        assert load_config(ok, ExperimentConfig).method.name == "cmta"
    # G1: 1 of its 2 genes (the run folder gets the same table as signature_coverage.csv at fit time)
    assert any(f"signature coverage ({sig}): G1 1/2 genes (1 features); G2 1/1 genes (1 features)" in r.getMessage() for r in caplog.records)


def test_plan_units_skips_cohorts_a_method_is_not_given_and_refuses_unknown_names(cohorts, tmp_path):
    from modaltune.benchmark.runner import plan_units
    from modaltune.errors import InputError

    withrna, norna = cohorts
    text = "data: {cohorts: [withrna, norna]}\nsplit: {kfold: 2}\nmethods: [{name: snn}, {name: omics_mlp, cohorts: [norna]}]\ntasks: [survival]\n"
    cfg = load_config(_write(tmp_path, text), BenchmarkConfig)
    units = plan_units(cfg, [withrna, norna])
    assert sorted((u.method, u.cohort) for u in units) == sorted([("snn", "withrna")] * 2 + [("snn", "norna")] * 2 + [("omics_mlp", "norna")] * 2)
    cfg = load_config(_write(tmp_path, text.replace("cohorts: [norna]", "cohorts: [nrona]"), "typo.yaml"), BenchmarkConfig)
    with pytest.raises(InputError, match=r"methods\[\].cohorts names cohort\(s\) \['nrona'\] that the benchmark does not have"):
        plan_units(cfg, [withrna, norna])


_TABLE_GENES = [f"G{i}" for i in range(6)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(st.tuples(st.sets(st.sampled_from(_TABLE_GENES), max_size=3), st.integers(0, 2)), min_size=1, max_size=3))
def test_signature_check_refuses_exactly_when_a_group_has_no_gene_in_the_table(tmp_path, groups):
    """Each group: some genes of the table + some unknown ones. Refused iff a group has no table gene
    (the message names the file); otherwise it passes, however small the overlap."""
    from modaltune.errors import InputError
    from modaltune.methods.mcat import MCATParams
    from modaltune.methods.requirements import CohortData, signature_overlap

    table = tmp_path / "rna.csv"
    if not table.exists():
        table.write_text("patient_id," + ",".join(_TABLE_GENES) + "\np1," + ",".join("0" for _ in _TABLE_GENES) + "\n")
    cols = {f"S{j}": sorted(known) + [f"UNKNOWN_{j}_{k}" for k in range(n_unknown)] for j, (known, n_unknown) in enumerate(groups)}
    if any(not genes for genes in cols.values()):
        return  # an empty column is no group (read_signatures drops it)
    n = max(len(g) for g in cols.values())
    sig = tmp_path / "sig.csv"
    sig.write_text(",".join(cols) + "\n" + "\n".join(",".join(g[i] if i < len(g) else "" for g in cols.values()) for i in range(n)) + "\n")
    data = CohortData("c", {"slide": "slide", "rna": "omics"}, {"rna": table})
    params = MCATParams(signatures=str(sig))
    if all(known for known, _ in groups):
        signature_overlap("mcat", params, data)
    else:
        with pytest.raises(InputError) as ei:
            signature_overlap("mcat", params, data)
        assert str(ei.value).startswith(f"{sig}: ") and "\n" not in str(ei.value)


def test_a_missing_omics_table_is_left_to_the_cohort_loader(cohorts, tmp_path):
    """The data check reads table headers; a declared table that is gone is the cohort loader's to
    report (its own one-line message at fit), never a traceback at config load."""
    from modaltune.data.cohort import Cohort
    from modaltune.errors import InputError

    withrna, _ = cohorts
    (withrna / "omics" / "rna.parquet").unlink()
    cfg = load_config(_write(tmp_path, "data: {cohorts: [withrna], pathways: {rna: withrna/pathways.csv}}\nmethod: {name: survpath}\n"), ExperimentConfig)
    assert cfg.method.name == "survpath"
    with pytest.raises(InputError, match="file\\(s\\) that cohort.yaml declares are missing"):
        Cohort.load(withrna)


@pytest.mark.usefixtures("cohorts")
def test_modaltune_omics_token_plan_is_checked_at_load(tmp_path):
    """ModalTune's pathway tokens are refused at load, one line each, exactly where build_modaltune
    would fail (or silently ignore params.pathways) at fit time; the plans that build load."""
    def refused(text: str, name: str) -> str:
        with pytest.raises(ConfigError) as ei:
            load_config(_write(tmp_path, text, name), ExperimentConfig)
        assert "\n" not in str(ei.value)
        return str(ei.value)

    ok = ["data: {cohorts: [withrna]}\nmethod: {name: modaltune, params: {pathways: builtin}}\n",
          "data: {cohorts: [withrna], pathways: {rna: withrna/pathways.csv}}\nmethod: {name: modaltune}\n",
          "data: {cohorts: [norna]}\nmethod: {name: modaltune, params: {omics_tokens: {cnv: block, mut: none}}}\n"]
    for i, text in enumerate(ok):
        assert load_config(_write(tmp_path, text, f"ok{i}.yaml"), ExperimentConfig).method.name == "modaltune"
    msg = refused("data: {cohorts: [norna]}\nmethod: {name: modaltune, params: {pathways: builtin}}\n", "ignored.yaml")
    assert ("method 'modaltune' sets pathways='builtin' for omics block 'rna' and cohort norna has no such block "
            "(its omics blocks: cnv, mut), so they would be ignored") in msg and "methods[].cohorts" in msg
    msg = refused("data: {cohorts: [withrna], pathways: {rna: withrna/pathways.csv}}\nmethod: {name: modaltune, params: {pathways: builtin}}\n", "twice.yaml")
    assert "method 'modaltune' gets pathway lists for 'rna' twice: data.pathways (pathways.csv) and params.pathways='builtin'" in msg
    msg = refused("data: {cohorts: [withrna]}\nmethod: {name: modaltune, params: {omics_tokens: {cnv: pathways}}}\n", "nosource.yaml")
    assert "method 'modaltune' asks for pathway tokens of omics block 'cnv' of cohort withrna and has no pathway lists for it" in msg
    msg = refused("data: {cohorts: [withrna]}\nmethod: {name: modaltune, params: {omics_tokens: {rna: pathway}}}\n", "mode.yaml")
    assert "method 'modaltune' has unknown omics token mode 'pathway' for block 'rna' (fix: set omics_tokens.rna to one of pathways, block, none)" in msg
    gone = tmp_path / "nowhere" / "pw.csv"
    msg = refused(f"data: {{cohorts: [withrna]}}\nmethod: {{name: modaltune, params: {{pathways: {gone}}}}}\n", "gone.yaml")
    assert f"method 'modaltune' reads pathway file '{gone}', which does not exist" in msg
    pw = tmp_path / "no_overlap_pathways.csv"
    pw.write_text("gene,P1\nNOT_A_GENE_1,1\n")
    msg = refused(f"data: {{cohorts: [withrna]}}\nmethod: {{name: modaltune, params: {{pathways: {pw}}}}}\n", "zero.yaml")
    assert "method 'modaltune' cannot map its genes onto cohort withrna" in msg and f"{pw}: none of the 1 pathways" in msg and "overlap 0 of 1 pathway genes" in msg
