"""The ``modaltune`` command line: data import/validate/summary/split/simulate and exit codes.

Commands are run in-process through :func:`modaltune.cli.main`, which returns the exit code.
User mistakes must print one ``error: ...`` line and exit 2; ``data validate`` exits 1 on errors.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from modaltune.cli import main
from modaltune.data.splits import SplitSet


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def blca_dir(fake_shared, tmp_path, capsys):
    shared, _ = fake_shared
    out = tmp_path / "blca"
    rc, stdout, _ = run(capsys, "data", "import", "porpoise", "--cohort", "blca", "--shared", str(shared), "--out", str(out))
    assert rc == 0, stdout
    return out


def test_import_porpoise_writes_cohort(blca_dir):
    assert (blca_dir / "cohort.yaml").exists() and (blca_dir / "splits" / "porpoise_5fold.csv").exists()
    assert len(pd.read_csv(blca_dir / "patients.csv")) == 10


def test_import_uses_env_shared_dir(fake_shared, tmp_path, capsys, monkeypatch):
    shared, _ = fake_shared
    monkeypatch.setenv("MODALTUNE_SHARED", str(shared))
    rc, out, err = run(capsys, "data", "import", "porpoise", "--cohort", "blca", "--out", str(tmp_path / "c"))
    assert rc == 0, err
    assert "10 patients" in out


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["data", "import", "porpoise", "--cohort", "xyz", "--out", "X"], ["unknown PORPOISE cohort 'xyz'"]),
        (["data", "import", "porpoise", "--out", "X"], ["Missing option '--cohort'"]),
        (["data", "import", "porpoise", "--cohort", "blca", "--out", "X", "--bogus"], ["No such option"]),
        (["data", "import", "modaltune-json", "--cohort", "hnsc", "--out", "X"], ["unknown ModalTune cohort"]),
        (["data", "simulate", "--out", "X", "--missing", "slide"], ["not name=rate"]),
        (["data", "summary", "NOPE"], ["cohort directory not found"]),
    ],
)
def test_bad_inputs_one_line_exit_2(argv, needles, capsys, fake_shared, tmp_path, monkeypatch):
    shared, _ = fake_shared
    monkeypatch.setenv("MODALTUNE_SHARED", str(shared))
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert_one_line_error(err, *needles)


def test_missing_shared_dir_says_how_to_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MODALTUNE_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)  # ../shared does not exist from here
    rc, _, err = run(capsys, "data", "import", "porpoise", "--cohort", "blca", "--out", "X")
    assert rc == 2
    assert_one_line_error(err, "shared data folder not found", "MODALTUNE_SHARED")


def test_validate_ok_and_broken(blca_dir, capsys):
    rc, out, _ = run(capsys, "data", "validate", str(blca_dir))
    assert rc == 0 and "0 error(s)" in out
    # break two things at once: validation must list problems and exit non-zero
    (blca_dir / "patients.csv").write_text("patient_id,site\nP1,BLCA\nP1,BLCA\n")
    rc, out, err = run(capsys, "data", "validate", str(blca_dir))
    assert rc == 1
    assert "error" in err


def test_validate_missing_dir_exits_nonzero(tmp_path, capsys):
    rc, out, err = run(capsys, "data", "validate", str(tmp_path / "none"))
    assert rc == 1 and "cohort directory not found" in err and "1 error(s)" in out


def test_summary_table_and_json(blca_dir, capsys):
    rc, out, _ = run(capsys, "data", "summary", str(blca_dir))
    assert rc == 0
    for needle in ("patients per site", "BLCA", "modality availability", "survival", "events: 4", "porpoise_5fold"):
        assert needle in out, needle
    rc, out, _ = run(capsys, "data", "summary", str(blca_dir), "--json")
    s = json.loads(out)
    assert s["patients"] == 10 and s["sites"] == {"BLCA": 10} and s["modalities"]["rna"] == 10
    assert s["tasks"]["survival"]["events"] == 4 and s["modalities"]["slide"] == 0


def test_split_command(blca_dir, capsys):
    rc, out, _ = run(capsys, "data", "split", str(blca_dir), "--folds", "5", "--task", "survival", "--seed", "0")
    assert rc == 0
    s = SplitSet.load(blca_dir / "splits" / "survival_5fold_seed0.csv")
    ids = pd.read_csv(blca_dir / "patients.csv")["patient_id"].tolist()
    assert sorted(p for f in s.folds for p in f.test) == sorted(ids)
    _check_folds(s, ids)
    # same seed, same split (deterministic); another seed, another split
    run(capsys, "data", "split", str(blca_dir), "--task", "survival", "--name", "again")
    run(capsys, "data", "split", str(blca_dir), "--task", "survival", "--name", "other", "--seed", "1")
    assert SplitSet.load(blca_dir / "splits" / "again.csv").to_frame().equals(s.to_frame())
    assert not SplitSet.load(blca_dir / "splits" / "other.csv").to_frame().equals(s.to_frame())
    rc, _, err = run(capsys, "data", "split", str(blca_dir), "--task", "survival")
    assert rc == 2 and "already exists" in err
    rc, _, err = run(capsys, "data", "split", str(blca_dir), "--folds", "1")
    assert rc == 2 and "cannot make 1 folds" in err
    rc, _, err = run(capsys, "data", "split", str(blca_dir), "--task", "nope")
    assert_one_line_error(err, "unknown task 'nope'")


def _check_folds(s: SplitSet, ids: list[str]) -> None:
    for f in s.folds:
        assert not set(f.train) & set(f.test) and set(f.train) | set(f.test) == set(ids)


def test_task_strata_hand_computed(blca_dir):
    from modaltune.data.cohort import Cohort
    from modaltune.data.workflows import task_strata

    c = Cohort.load(blca_dir)
    # times 1, 4, ..., 28 (patient i: 3i + 1); quartile edges 7.75, 14.5, 21.25; deaths i = 0, 3, 6, 9
    # stratum = event * 4 + time quartile
    strata = dict(zip(c.patient_ids, task_strata(c, "survival").tolist()))
    expected = [4, 0, 0, 5, 1, 2, 6, 3, 3, 7]
    assert [strata[f"TCGA-A{i % 3}-P{i:02d}"] for i in range(10)] == expected
    assert task_strata(c, None) is None


def test_simulate_then_validate(tmp_path, capsys):
    out = tmp_path / "sim"
    rc, stdout, err = run(capsys, "data", "simulate", "--out", str(out), "--preset", "tiny", "--patients", "24", "--seed", "3",
                          "--sites", "BRCA,LUAD", "--missing", "rna=0.25")  # fmt: skip
    assert rc == 0, err
    assert "24 patients" in stdout
    pats = pd.read_csv(out / "patients.csv")
    assert len(pats) == 24 and set(pats["site"]) == {"BRCA", "LUAD"}
    rc, stdout, err = run(capsys, "data", "validate", str(out))
    assert rc == 0, stdout + err


def test_doctor_command(capsys):
    rc, out, _ = run(capsys, "doctor")
    assert rc == 0 and "torch" in out and "cache dir" in out


def test_bare_group_shows_help(capsys):
    rc, out, _ = run(capsys, "data")
    assert rc == 0 and "import" in out and "validate" in out


def test_reimport_needs_overwrite_and_keeps_features(blca_dir, fake_shared, capsys, tmp_path):
    shared, _ = fake_shared
    argv = ["data", "import", "porpoise", "--cohort", "blca", "--shared", str(shared), "--out", str(blca_dir)]
    (blca_dir / "features").mkdir()
    (blca_dir / "features" / "bag.h5").write_bytes(b"x")
    (blca_dir / "splits" / "stale.csv").write_text("fold,partition,patient_id\n0,train,GONE\n")
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert_one_line_error(err, "already holds a cohort", "--overwrite")
    rc, _, err = run(capsys, *argv, "--overwrite")
    assert rc == 0, err
    assert (blca_dir / "features" / "bag.h5").exists() and not (blca_dir / "splits" / "stale.csv").exists()
    # a non-empty folder that is not a cohort is never written into
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, "data", "import", "porpoise", "--cohort", "blca", "--shared", str(shared), "--out", str(other), "--overwrite")
    assert rc == 2 and "holds no cohort" in err
    # features placed first in an otherwise new folder are fine
    fresh = tmp_path / "fresh"
    (fresh / "features").mkdir(parents=True)
    rc, _, err = run(capsys, "data", "import", "porpoise", "--cohort", "blca", "--shared", str(shared), "--out", str(fresh))
    assert rc == 0, err
