"""Issue 15: every registered method either runs with missing modalities or is refused with a
one-line reason, and a masked cohort keeps every patient (each test patient gets a prediction)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _scripts import load_script

from modaltune.data.cohort import Cohort
from modaltune.evaluation.missing import mask_cohort, parse_setting, refusal, setting_mask
from modaltune.methods.registry import get_method, list_methods
from modaltune.training.trainer import fit, predict

# the small per-method parameters of the save/load round trip (one table of them, kept there)
_sl = load_script(Path(__file__).with_name("test_safe_loading.py"), "_safe_loading")
SMALL, FAST = _sl.SMALL, _sl.FAST


@pytest.mark.parametrize("name", sorted(list_methods()))
@pytest.mark.parametrize("setting", ["W100_O0", "W0_O100"])
def test_a_kind_dropped_for_everyone_refuses_exactly_the_methods_that_read_it(name, setting):
    entry, s = get_method(name), parse_setting(setting)
    kind = "slide" if s.slide >= 1 else "omics"
    why = refusal(entry, s)
    if kind in set(entry.modalities or ()):
        assert why is not None and "\n" not in why
        assert why.startswith(f"method '{name}' ") and f"{kind} data and setting {setting} drops it for every patient" in why
    else:
        assert why is None


@pytest.mark.parametrize("name", sorted(list_methods()))
def test_every_method_runs_on_a_partially_masked_cohort_and_predicts_every_patient(tiny_cohort_dir, tmp_path, name):
    """W60_O60 on the tiny cohort (rates sum over 100%): some patients lose the slide, some the omics, some both."""
    if name in ("modaltune", "dispro"):
        pytest.importorskip("sentence_transformers")
    torch.set_num_threads(1)
    s = parse_setting("W60_O60")
    assert refusal(get_method(name), s) is None  # partial rates are never refused
    cohort, fold = Cohort.load(tiny_cohort_dir), _sl._fold(tiny_cohort_dir)
    mask = setting_mask(s, fold, 0)
    assert int((mask["drop_slide"] & mask["drop_omics"]).sum()) > 0  # the hardest case is present
    masked = mask_cohort(cohort, mask)
    data = None
    if name in ("gene_mixer", "survpath"):
        from importlib import resources

        data = {"cohorts": [str(tiny_cohort_dir)], "pathways": {"rna": str(resources.files("modaltune") / "resources" / "sim_pathways.csv")}}
    params = {**SMALL[name], "signatures": _sl._sim_signatures(tmp_path)} if name in ("mcat", "motcat", "cmta") else SMALL[name]
    if name == "pretrained_probe":
        params = {"checkpoint": _sl._pretrained(tiny_cohort_dir, tmp_path)}
    fitted = fit(masked, fold, name, params=params, trainer=FAST, data=data, out_dir=tmp_path / "run", progress=False)
    p = predict(fitted, masked, fold.test)
    assert len(p) and set(p["task"]) <= {"survival", "subtype"}
    for task, g in p.groupby("task"):
        # no patient silently dropped: every test patient (with or without its modalities) is predicted once
        assert sorted(g["patient_id"]) == sorted(fold.test), (name, task)
        cols = [c for c in g.columns if c == "risk" or c.startswith(("prob_", "surv_"))]
        vals = g[cols].dropna(axis=1, how="all").to_numpy(float)
        assert vals.shape[1] and np.isfinite(vals).all(), (name, task)
