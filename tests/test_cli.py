"""The ``modaltune`` command line: data import/validate/summary/split/simulate and exit codes.

Commands are run in-process through :func:`modaltune.cli.main`, which returns the exit code.
User mistakes must print one ``error: ...`` line and exit 2; ``data validate`` exits 1 on errors.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from modaltune.cli import main
from modaltune.data.splits import SplitSet
from modaltune.testing.cohort import D, make_cohort


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
    rc, out, err = run(capsys, "data", "validate", str(blca_dir))
    # the imported bags are not extracted here: none of the listed files exists, the one error (issue 12, item 10)
    assert rc == 1 and "1 error(s)" in out and "listed feature files exists" in err
    # break two things at once: validation must list problems and exit non-zero
    (blca_dir / "patients.csv").write_text("patient_id,site\nP1,BLCA\nP1,BLCA\n")
    rc, out, err = run(capsys, "data", "validate", str(blca_dir))
    assert rc == 1
    lines = err.splitlines()
    # both problems, each naming the file and the patient/column, on their own line
    dup = [ln for ln in lines if "duplicate patient id" in ln]
    assert len(dup) == 1 and f"{blca_dir / 'patients.csv'}: 1 duplicate patient id(s): 'P1'" in dup[0] and "(fix: keep one row per patient" in dup[0]
    cols = [ln for ln in lines if "task 'survival' reads column(s)" in ln]
    assert len(cols) == 1 and "'survival_months'" in cols[0] and "patients.csv" in cols[0]
    assert all(ln.startswith("error: ") for ln in lines if "patients.csv" in ln)
    assert "error(s)" in out and not out.startswith(f"{blca_dir}: 0 error(s)")


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
    rc, _, _ = run(capsys, "data", "split", str(blca_dir), "--folds", "5", "--task", "survival", "--seed", "0")
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


# ---------------------------------------------------------------------------------------- many bad inputs at once
def _break_everything(root: Path) -> None:
    from modaltune.data.bags import write_bag_h5

    p = pd.read_csv(root / "patients.csv", dtype={"patient_id": str})
    p.loc[1, "subtype"] = "zz"  # unknown class label (P01)
    p.loc[2, "time"] = -4.0  # negative survival time (P02)
    p.loc[4, "event"] = 2  # event not in {0, 1} (P04)
    p = pd.concat([p, p.iloc[[5]]])  # duplicate patient id (P05)
    p.to_csv(root / "patients.csv", index=False)
    cl = pd.read_csv(root / "clinical.csv", dtype={"patient_id": str})
    cl.loc[cl.patient_id == "P06", "age"] = 150  # outside the schema
    cl.to_csv(root / "clinical.csv", index=False)
    good = (root / "bags/P09_0.h5").read_bytes()
    (root / "bags/P09_0.h5").write_bytes(good[: len(good) // 3])  # truncated h5
    nan = np.ones((3, D), np.float16)
    nan[2, 0] = np.inf
    with h5py.File(root / "bags/P11_0.h5", "w") as h:  # inf feature
        h["features"], h["coords"] = nan, np.zeros((3, 2), np.int64)
    write_bag_h5(root / "bags/P10_0.h5", np.zeros((4, D * 2), np.float16), np.zeros((4, 2), np.int64), patch_size_level0=256, encoder="toyenc")
    (root / "splits").mkdir()
    pd.DataFrame({"fold": [0, 0], "partition": ["train", "val"], "patient_id": ["P00", "P00"]}).to_csv(root / "splits/leak.csv", index=False)


def test_validate_lists_every_bad_input(tmp_path, capsys):
    root = tmp_path / "bad"
    make_cohort(root)
    _break_everything(root)
    rc, out, err = run(capsys, "data", "validate", str(root))
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    expected = [
        ("patients.csv", "duplicate patient id", "'P05'"),
        ("patients.csv:subtype", "unknown class label 'zz'", "'P01'"),
        ("patients.csv:time", "negative survival time", "'P02'"),
        ("patients.csv:event", "event values ['2'] not in {0, 1}", "'P04'"),
        ("clinical.csv:age", "patient 'P06', field 'age'", "above the schema maximum 120"),
        ("P09_0.h5", "patient 'P09'", "truncated"),
        ("P11_0.h5", "patient 'P11'", "NaN/inf"),
        ("P10_0.h5", "patient 'P10'", "feature dim 16 does not match the manifest's feature_dim 8"),
        ("leak.csv", "fold 0", "'P00' in ['train', 'val']"),
    ]
    for needles in expected:
        assert sum(all(n in ln for n in needles) for ln in lines) == 1, (needles, err)
    assert f"{root}: {len(lines)} error(s)" in out and len(lines) == len(expected)
    # the same cohort cannot be loaded for training: one line, first problem, pointer to validate
    rc, _, err = run(capsys, "data", "summary", str(root))
    assert rc == 2
    assert_one_line_error(err, "patients.csv", "duplicate patient id", "'P05'")


def _unreadable_cases(root: Path) -> list[Path]:
    return [root / "bags/P09_0.h5", root / "clinical.csv", root / "omics/rna.parquet"]


def _assert_unreadable_reported(err: str, paths: list[Path]) -> None:
    for p in paths:
        hits = [ln for ln in err.splitlines() if str(p) in ln]
        assert hits and all("unreadable (permission denied)" in ln and "corrupt" not in ln for ln in hits), (p, err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_validate_unreadable_files_say_permission(tmp_path, capsys):
    root = tmp_path / "perm"
    make_cohort(root)
    paths = _unreadable_cases(root)
    for p in paths:
        p.chmod(0)
    try:
        rc, _, err = run(capsys, "data", "validate", str(root))
    finally:
        for p in paths:
            p.chmod(0o644)
    assert rc == 1
    _assert_unreadable_reported(err, paths)


def test_validate_unreadable_files_say_permission_simulated(tmp_path, capsys, monkeypatch):
    """The same check where the tests run as root: os.access is made to deny those files."""
    import modaltune.data._files as files

    root = tmp_path / "perm"
    make_cohort(root)
    paths = {str(p) for p in _unreadable_cases(root)}
    real = files.os.access
    monkeypatch.setattr(files.os, "access", lambda p, mode, *a, **k: False if str(p) in paths else real(p, mode, *a, **k))
    rc, _, err = run(capsys, "data", "validate", str(root))
    assert rc == 1
    _assert_unreadable_reported(err, [Path(p) for p in paths])


# ---------------------------------------------------------------------------------------- config errors via --set
@pytest.fixture
def fit_yaml(tmp_path):
    root = tmp_path / "toy"
    make_cohort(root)
    p = tmp_path / "exp.yaml"
    p.write_text("data: {cohorts: [toy]}\nmethod: {name: mean_pool}\ntrainer: {max_epochs: 1}\n")
    return p


@pytest.mark.parametrize(
    "cmd,override,needles",
    [
        ("fit", "data.cohorts=[/nonexistent/cohort]", ["data.cohorts[0]: /nonexistent/cohort does not exist (expected a cohort directory written by `modaltune data import/simulate`)"]),
        ("fit", "data.pathways.rna=/nope.csv", ["data.pathways.rna: /nope.csv does not exist"]),
        ("fit", "trainer.max_epoch=3", ["trainer.max_epoch: unknown key (did you mean 'max_epochs'? allowed: max_epochs,"]),
        ("fit", "trainer.max_epochs=ten", ["trainer.max_epochs: Input should be a valid integer", "got 'ten'"]),
        ("benchmark", "data.cohorts=[toy, gone]", ["data.cohorts[1]:", "gone does not exist"]),
    ],
)
def test_config_errors_through_set(fit_yaml, tmp_path, capsys, cmd, override, needles):
    if cmd == "benchmark":
        fit_yaml.write_text("data: {cohorts: [toy]}\nmethods: [{name: mean_pool}]\n")
    argv = [cmd, str(fit_yaml), "--out", str(tmp_path / "run"), "--set", override]
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert_one_line_error(err, str(fit_yaml), *needles)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_methods_command_lists_the_registry(capsys):
    from modaltune.methods.registry import list_methods

    assert main(["methods"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == sorted(list_methods())
    row = next(line for line in out if line.startswith("coxnet "))
    assert row.split()[1:3] == ["tabular", "omics,clinical"]
