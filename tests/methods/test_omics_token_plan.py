"""ModalTune's omics token plan (modaltune.methods.omics_token_plan): known plans and each refusal's line."""
from __future__ import annotations

from pathlib import Path

import pytest

from modaltune.errors import InputError
from modaltune.methods.modaltune import ModalTuneParams
from modaltune.methods.omics_token_plan import BlockTokens, plan_omics_tokens
from modaltune.methods.requirements import CohortData, DataProblem, modaltune_omics_tokens


def _plan(blocks, data_pathways=None, cohort="c1", **params):
    return plan_omics_tokens(ModalTuneParams(**params), blocks, data_pathways or {}, cohort=cohort)


def test_default_plan_gives_pathway_tokens_where_lists_exist_and_block_tokens_elsewhere():
    plan = _plan(["rna", "cnv", "mut"], {"rna": "p.csv", "other": "q.csv"})
    assert plan.blocks == (BlockTokens("rna", "pathways", "data"), BlockTokens("cnv", "block", None), BlockTokens("mut", "block", None))
    assert plan.params_pathways is None


def test_params_pathways_apply_to_pathway_omics_only_and_explicit_modes_win():
    plan = _plan(["rna", "cnv"], pathways="builtin", omics_tokens={"cnv": "none"})
    assert plan.blocks == (BlockTokens("rna", "pathways", "params"), BlockTokens("cnv", "none", None))
    assert plan.params_pathways == "builtin"
    members = plan.params_membership()  # the packaged simulation matrix: genes x pathways
    assert members.shape[1] == 21
    plan = _plan(["rna", "cnv"], pathways="builtin", pathway_omics="cnv", omics_tokens={"cnv": "block"})
    assert plan.blocks == (BlockTokens("rna", "block", None), BlockTokens("cnv", "block", "params"))  # a source is kept even in block mode


def test_an_existing_pathway_file_is_the_membership(tmp_path):
    pw = tmp_path / "pw.csv"
    pw.write_text("gene,P1\nG1,1\n")
    plan = _plan(["rna"], pathways=str(pw))
    assert plan.params_pathways == pw and plan.params_membership() == pw and plan.blocks[0] == BlockTokens("rna", "pathways", "params")


@pytest.mark.parametrize(("blocks", "data_pathways", "params", "problem", "fix"), [
    (["rna"], {}, {"omics_tokens": {"rna": "pathway"}},
     "has unknown omics token mode 'pathway' for block 'rna'", "set omics_tokens.rna to one of pathways, block, none"),
    (["cnv", "mut"], {}, {"pathways": "builtin"},
     "sets pathways='builtin' for omics block 'rna' and cohort c1 has no such block (its omics blocks: cnv, mut), so they would be ignored",
     "restrict modaltune to the cohorts with 'rna' (methods[].cohorts), drop params.pathways, or set params.pathway_omics to a block it has"),
    (["rna"], {"rna": "pathways.csv"}, {"pathways": "builtin"},
     "gets pathway lists for 'rna' twice: data.pathways (pathways.csv) and params.pathways='builtin' (given twice, one would be ignored)",
     "keep data.pathways (resolved relative to the config file) and drop the method's pathways"),
    (["rna", "cnv"], {}, {"omics_tokens": {"cnv": "pathways"}},
     "asks for pathway tokens of omics block 'cnv' of cohort c1 and has no pathway lists for it",
     "set data.pathways: {cnv: <pathway CSV/GMT>} (or params.pathways: builtin for simulated cohorts), or omics_tokens.cnv: block"),
])
def test_each_refusal_is_one_line_with_its_fix(blocks, data_pathways, params, problem, fix):
    with pytest.raises(DataProblem) as ei:
        _plan(blocks, data_pathways, **params)
    assert (ei.value.problem, ei.value.fix) == (problem, fix)


def test_refusals_without_a_cohort_name_and_with_an_unnamed_data_source():
    with pytest.raises(DataProblem, match=r"^sets pathways='builtin' for omics block 'rna' and the cohort has no such block \(its omics blocks: none\)"):
        _plan([], cohort=None, pathways="builtin")
    with pytest.raises(DataProblem, match=r"^gets pathway lists for 'rna' twice: data.pathways and params.pathways='builtin' "):
        _plan(["rna"], {"rna": ""}, cohort=None, pathways="builtin")


def test_a_missing_pathway_file_is_refused_whatever_the_mode(tmp_path):
    gone = tmp_path / "nowhere" / "pw.csv"
    for modes in ({}, {"rna": "block"}, {"rna": "none"}):
        with pytest.raises(DataProblem) as ei:
            _plan(["rna"], pathways=str(gone), omics_tokens=modes)
        assert ei.value.problem.startswith(f"reads pathway file '{gone}', which does not exist (file not found; ")
        assert ei.value.fix == "give an absolute path, or set data.pathways: {rna: <file>} (relative to the config file), or 'builtin'"


def test_the_load_check_reads_every_planned_source_against_the_table_genes(tmp_path):
    table = tmp_path / "rna.csv"
    table.write_text("patient_id,G1,G2\nP1,0.1,0.2\n")
    overlap, none = tmp_path / "ok.csv", tmp_path / "zero.csv"
    overlap.write_text("gene,P1\nG1,1\n")
    none.write_text("gene,P1\nNOT_A_GENE,1\n")
    data = CohortData("c1", {"slide": "slide", "rna": "omics"}, {"rna": table})
    modaltune_omics_tokens("modaltune", ModalTuneParams(pathways=str(overlap)), data)  # one gene in common: fine
    for modes in ({}, {"rna": "block"}):  # block mode: the builder reads params.pathways all the same
        with pytest.raises(InputError, match=r"none of the 1 pathways has >= 1 gene\(s\) in the omics table \(2 genes; overlap 0 of 1 pathway genes\)"):
            modaltune_omics_tokens("modaltune", ModalTuneParams(pathways=str(none), omics_tokens=modes), data)
    with_data = CohortData("c1", {"rna": "omics"}, {"rna": table}, {"rna": str(none)})
    with pytest.raises(InputError, match=str(Path(none).name)):
        modaltune_omics_tokens("modaltune", ModalTuneParams(), with_data)
