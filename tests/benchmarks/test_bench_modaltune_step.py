"""bench_modaltune_step.py --compare: the memory cap kills a child that grows past it, the child command carries the
variant and thread count, and the report gives medians, ranges and ratios to the baseline it names (no model is built)."""
from __future__ import annotations

import json
import sys
import time

from _scripts import load_bench_script


def _bench():
    return load_bench_script("bench_modaltune_step.py")


def test_watched_kills_a_child_over_the_cap_and_leaves_one_under_it():
    bench = _bench()
    # 200 MiB of non-zero bytes (written, so resident), then a long sleep the cap must cut short
    grow = [sys.executable, "-c", "import time; b = b'\\x01' * (200 * 2**20); time.sleep(60)"]
    t0 = time.monotonic()
    rc, _, _, seen, killed = bench._watched(grow, {}, cap_mib=100, poll_s=0.05)
    assert killed and rc != 0 and seen > 100
    assert time.monotonic() - t0 < 30
    small = [sys.executable, "-c", "print('RESULT {\"x\": 1}')"]
    rc, out, _, seen, killed = bench._watched(small, {}, cap_mib=1000, poll_s=0.05)
    assert (rc, killed) == (0, False) and out.strip() == 'RESULT {"x": 1}' and seen < 1000


def test_run_child_passes_variant_and_threads_and_records_load_and_cap(monkeypatch):
    bench = _bench()
    seen = {}

    def fake(cmd, env, cap):
        seen.update(cmd=cmd, env=env, cap=cap)
        return 0, 'noise\nRESULT {"n_patches": 16000, "seconds_per_step": 3.0}\n', "", 10.0, False

    monkeypatch.setattr(bench, "_watched", fake)
    r = bench._run_child(16000, "after bf16 autocast + bf16-weights backbone + ckpt", 1, threads=1, cap_mib=10240)
    # --child N ckpt steps precision per_branch threads
    assert seen["cmd"][2:] == ["--child", "16000", "1", "1", "bf16w", "0", "1"]
    assert seen["env"]["OMP_NUM_THREADS"] == "1" and seen["cap"] == 10240
    assert r["variant"] == "after bf16 autocast + bf16-weights backbone + ckpt" and r["seconds_per_step"] == 3.0
    assert len(r["loadavg_before"].split()) == 5 and len(r["loadavg_after"].split()) == 5  # /proc/loadavg lines

    monkeypatch.setattr(bench, "_watched", lambda cmd, env, cap: (-9, "", "", 10300.0, True))
    r = bench._run_child(16000, "before fp32", 1, threads=1, cap_mib=10240)
    assert r["over_cap_mib"] == 10240 and r["rss_seen_mib"] == 10300.0 and "seconds_per_step" not in r
    assert bench.VARIANTS["before fp32"] == ("fp32", False, True) and bench.VARIANTS["after fp32 + ckpt"] == ("fp32", True, False)


def _run(variant, wall, cpu, peak, rnd, warm=None):
    r = {"variant": variant, "n_patches": 16000, "seconds_per_step": wall, "cpu_seconds_per_step": cpu, "peak_rss_mib": peak, "round": rnd}
    return r if warm is None else r | {"warmup_seconds": warm[0], "warmup_cpu_seconds": warm[1]}


def test_report_medians_ranges_ratios_to_the_named_baseline_and_over_cap_rows():
    bench = _bench()
    runs = [
        {"variant": "before fp32", "n_patches": 16000, "over_cap_mib": 10240.0, "rss_seen_mib": 10300.0},
        _run("before fp32 + ckpt", 10.0, 20.0, 4000.0, 0),
        _run("before fp32 + ckpt", 14.0, 20.0, 4000.0, 1),
        _run("after bf16 autocast + ckpt", 6.0, 10.0, 2000.0, 0, warm=(7.0, 11.0)),
        _run("after bf16 autocast + ckpt", 12.0, 10.0, 2100.0, 1, warm=(9.0, 12.0)),
        _run("after bf16 autocast + ckpt", 1.0, 1.0, 1.0, 0) | {"n_patches": 4000},  # another size: not in this table
    ]
    text = bench._report(runs, [16000], "python x", 2, 1, "0.5", "1.5")
    lines = text.splitlines()
    assert "1 thread(s)" in lines[2] and "0.5 before, 1.5 after" in lines[2] and "SIMULATED" in lines[2]
    assert lines[4].startswith("| N patches | variant | wall s/step | CPU s/step | peak RSS MiB | wall vs before fp32 + ckpt |")
    # medians: base wall 12 (10-14), CPU 20, peak 4000; bf16: wall 9 (6-12) -> 0.75x, CPU 10 -> 0.50x, peak 2050 -> 0.51x
    assert lines[6] == "| 16000 | before fp32 + ckpt | 12.0 (10.0-14.0) | 20.0 (20.0-20.0) | 4000 (4000-4000) | 1.00x | 1.00x | 1.00x | 2 | - |"
    assert lines[7] == "| 16000 | after bf16 autocast + ckpt | 9.0 (6.0-12.0) | 10.0 (10.0-10.0) | 2050 (2000-2100) | 0.75x | 0.50x | 0.51x | 2 | 8.0 (7.0-9.0) / 11.5 (11.0-12.0) |"
    assert lines[8] == "| 16000 | before fp32 | killed: RSS over the 10240 MiB cap | - | > 10240 | - | - | - | - | - |"
    assert len([ln for ln in lines if ln.startswith("| 16000 |")]) == 3
    assert json.dumps(runs)  # the runs stay JSON-serialisable (they are the raw log)


def test_report_without_a_baseline_gives_no_ratios():
    bench = _bench()
    text = bench._report([_run("after fp32 + ckpt", 5.0, 7.0, 3000.0, 0, warm=(6.0, 8.0))], [16000], "python x", 1, 2, "0", "0")
    row = [ln for ln in text.splitlines() if ln.startswith("| 16000 |")]
    assert row == ["| 16000 | after fp32 + ckpt | 5.0 | 7.0 | 3000 | - | - | - | 1 | 6.0 / 8.0 |"]
