"""bench_slide_encoders.py --official: the stand-ins compute the same function as modaltune (so the timing
compares equal work), the table is written, and a bad --official argument is a one-line error."""
from __future__ import annotations

import json
import sys

import pytest
from _scripts import BENCHMARKS, load_bench_script


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    return load_bench_script(f"{name}.py")


def test_standin_outputs_agree_and_table_is_written(tmp_path):
    oc = _load("official_compare")
    rows = [oc.compare("titan", 70, {"titan": "standin"}, reps=1),
            oc.compare("gigapath", 70, {"gigapath": "standin"}, reps=1, depth=1)]
    titan, giga = rows
    # float32, same weights and inputs: the stand-ins differ from modaltune by kernel order only
    assert titan["max_abs_diff_to_modaltune"]["official stand-in (dense ALiBi + SDPA)"] <= 1e-5
    assert giga["max_abs_diff_to_modaltune"]["official stand-in (fused attention)"] <= 1e-5
    assert giga["max_abs_diff_to_modaltune"]["official stand-in (plain attention)"] <= 1e-5
    # bf16 autocast fast path: within 4 bf16 eps of the output scale (the bound of the autocast tests)
    for r in rows:
        assert 0 < r["max_abs_diff_to_modaltune"]["modaltune bf16 autocast (fast path)"] <= 4 * 2**-7 * 8
        # bf16-weights fast path: the same bound (tests/encoders/test_slide_precision.py)
        assert 0 < r["max_abs_diff_to_modaltune"]["modaltune bf16-weights (fast path)"] <= 4 * 2**-7 * 8
        assert r["cpu_ratio_to_fair_official"][r["fair_official"]] == 1.0 and len(r["cpu_seconds_layers_run"]["modaltune"]) == 1
    assert giga["fair_official"] == "official stand-in (fused attention)" and giga["ratio_to_fair_official"][giga["fair_official"]] == 1.0
    assert giga["seconds_full_depth_median"]["modaltune"] == pytest.approx(12 * giga["all_seconds_layers_run"]["modaltune"][0])
    md = oc.write_tables(rows, tmp_path / "o.json", tmp_path / "o.md", "cmd", ("1.0", "2.0"))
    assert "not the official code itself" in md and "| titan | 70 | 6/6 | modaltune |" in md
    assert len(json.loads((tmp_path / "o.json").read_text())["rows"]) == 2
    # --official-impls: only the matching labels, plus modaltune (the reference output)
    only = oc.compare("gigapath", 70, {"gigapath": "standin"}, reps=1, depth=1, only=["fused", "bf16-weights"])
    assert set(only["seconds_full_depth_median"]) == {"modaltune", "official stand-in (fused attention)", "modaltune bf16-weights (fast path)"}


def test_bad_official_argument_is_one_line(monkeypatch, capsys):
    bench = _load("bench_slide_encoders")
    monkeypatch.setattr(sys, "argv", ["bench_slide_encoders.py", "--official", "gigapath=/no/such/folder"])
    with pytest.raises(SystemExit, match="expected gigapath=DIR, titan=DIR .* MODEL=standin or standin"):
        bench.main()
