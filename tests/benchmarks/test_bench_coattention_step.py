"""The co-attention step benchmark runs end to end at a tiny size (one method + ABMIL, N = 64) and writes its JSON and table."""
from __future__ import annotations

import json

from _scripts import load_bench_script


def _bench():
    return load_bench_script("bench_coattention_step.py")


def test_tiny_run_writes_json_and_markdown(tmp_path):
    bench = _bench()
    out = bench.main(["--methods", "porpoise", "no_such_method", "--sizes", "64", "--steps", "1", "--slide-dim", "16", "--pathways", "none",
                      "--rna-dim", "20", "--threads", "1", "--out", str(tmp_path / "step")])
    rows = {r["method"]: r for r in out["rows"]}
    assert list(rows) == ["abmil", "porpoise", "no_such_method"]  # abmil added first; a bad name is recorded, not dropped
    assert "error" in rows["no_such_method"]
    for m in ("abmil", "porpoise"):
        r = rows[m]
        assert r["n_patches"] == 64 and r["seconds_per_step"] > 0 and r["peak_rss_mib"] > 0
    # porpoise at slide_dim 16, 20 genes: 16*512+512 + 2*(512*256+256) + 257 + 131,328 + 20*256+256 + 65,792 + 51,392 + 279,040 + 196,864 + 4*256+4
    assert rows["porpoise"]["trainable_params"] == 8_704 + 262_656 + 257 + 131_328 + 5_376 + 65_792 + 51_392 + 279_040 + 196_864 + 1_028
    assert json.loads((tmp_path / "step.json").read_text())["sizes"] == [64]
    table = (tmp_path / "step.md").read_text().splitlines()
    assert table[0] == "| method | params | N=64: s/step | N=64: peak MiB |"
    assert table[3].startswith("| porpoise | ") and table[4] == "| no_such_method | - | error | - |"
