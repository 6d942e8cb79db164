"""`modaltune analyse interactions` on a tiny simulated cohort: table, files, label rules, errors."""
import json

import numpy as np
import pytest

from modaltune.analysis.interactions import (
    analyse_interactions,
    discretise,
    task_labels,
)
from modaltune.cli import main
from modaltune.data.simulate import simulate_cohort
from modaltune.errors import InputError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pid") / "tiny"
    simulate_cohort(root, preset="tiny", seed=3, n_patients=40, patches=(8, 16), slides_per_patient=(1, 1))
    return root


def test_survival_label_is_event_by_horizon(tiny):
    from modaltune.data.cohort import Cohort

    c = Cohort.load(tiny)
    y, note = task_labels(c, "survival", horizon=20.0)
    t = c.targets("survival")
    time = dict(zip(t.patient_ids, t.time))
    event = dict(zip(t.patient_ids, t.event))
    for pid, v in y.items():  # hand rule: 1 = event at or before 20, 0 = followed beyond 20
        assert v == int(event[pid] == 1 and time[pid] <= 20.0)
        assert time[pid] > 20.0 or event[pid] == 1
    dropped = [p for p in t.patient_ids if p not in y.index]
    assert all(event[p] == 0 and time[p] <= 20.0 for p in dropped)
    assert "event by 20 months" in note


def test_discretise_uses_no_label_and_gives_k_clusters():
    x = np.random.default_rng(0).normal(size=(30, 5))
    x[:, 4] = 1.0  # a constant column is dropped, not divided by zero
    ids = discretise(x, 4, n_components=3)
    assert ids.shape == (30,) and set(ids) == {0, 1, 2, 3}
    with pytest.raises(InputError, match="at least 40 patients"):
        discretise(x, 40)


def test_cli_writes_table_and_files(tiny, tmp_path, capsys):
    out = tmp_path / "pid"
    rc = main(["analyse", "interactions", str(tiny), "-m", "rna", "-m", "clinical", "--task", "subtype",
               "--clusters", "3", "--boot", "5", "--permutations", "2", "--out", str(out)])
    assert rc == 0
    shown = capsys.readouterr().out
    assert "unique to rna" in shown and "synergy" in shown
    d = json.loads((out / "pid.json").read_text())
    e = d["estimate"]
    assert d["units"] == "bits" and d["modalities"] == ["rna", "clinical"]
    assert e["redundancy"] + e["unique_1"] + e["unique_2"] + e["synergy"] == pytest.approx(e["total"], abs=1e-6)
    assert (out / "pid.csv").read_text().startswith("part,name,bits,ci_low,ci_high")


def test_swapped_modalities_swap_uniqueness(tiny):
    from modaltune.data.cohort import Cohort

    c = Cohort.load(tiny)
    a = analyse_interactions(c, ("rna", "clinical"), "subtype", n_clusters=3, n_boot=0, n_permutations=0)
    b = analyse_interactions(c, ("clinical", "rna"), "subtype", n_clusters=3, n_boot=0, n_permutations=0)
    assert b.estimate.unique_1 == pytest.approx(a.estimate.unique_2, abs=1e-5)
    assert b.estimate.synergy == pytest.approx(a.estimate.synergy, abs=1e-5)


@pytest.mark.parametrize("args, message", [
    (["-m", "rna"], "give exactly two modalities"),
    (["-m", "rna", "-m", "nope"], "has no modality 'nope'"),
    (["-m", "rna", "-m", "rna"], "both modalities are 'rna'"),
])
def test_cli_user_mistakes_are_one_line(tiny, capsys, args, message):
    rc = main(["analyse", "interactions", str(tiny), *args, "--task", "subtype", "--boot", "0", "--permutations", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
