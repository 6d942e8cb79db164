"""Memory guard of patient bags: a bag over the budget raises a clear InputError; a patch cap reads
only the sampled rows (so a capped huge bag is cheap); in a benchmark that unit fails with the
reason while the others finish."""
from __future__ import annotations

import re

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from modaltune.data.bags import (
    MAX_BAG_BYTES_ENV,
    _stable_key,
    bag_memory_budget,
    load_patient_bag,
    merge_bags,
    read_bag,
    sample_patch_indices,
    write_bag_h5,
)
from modaltune.errors import InputError

N, D = 1000, 64  # float32 features: 256,000 bytes + 16,000 bytes of coords


def _grid(n: int, ps: int = 256, x0: int = 0) -> np.ndarray:
    i = np.arange(n)
    return np.stack([x0 + (i % 40) * ps, (i // 40) * ps], axis=1).astype(np.int64)


def _feats(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


@pytest.fixture
def big(tmp_path):
    p = tmp_path / "P1-DX1.h5"
    write_bag_h5(p, _feats(N, 0), _grid(N), patch_size_level0=256, encoder="enc")
    return p


def test_over_budget_raises_naming_file_size_budget_and_fix(big):
    need = N * D * 4 + N * 16
    with pytest.raises(InputError) as ei:
        load_patient_bag([big], max_bag_bytes=need - 1)
    msg = str(ei.value)
    assert "\n" not in msg and "P1-DX1.h5" in msg and "too large for memory" in msg
    assert f"{need / 2**30:.3g} GiB" in msg and f"{(need - 1) / 2**30:.3g} GiB" in msg
    assert "trainer.max_patches" in msg and MAX_BAG_BYTES_ENV in msg
    # exactly at the budget it loads
    assert load_patient_bag([big], max_bag_bytes=need).n_patches == N


def test_env_var_budget_units_and_default(big, monkeypatch):
    monkeypatch.setenv(MAX_BAG_BYTES_ENV, "100K")
    assert bag_memory_budget() == 100 * 1024
    with pytest.raises(InputError, match="too large for memory"):
        load_patient_bag([big])
    monkeypatch.setenv(MAX_BAG_BYTES_ENV, "1.5G")
    assert bag_memory_budget() == int(1.5 * 2**30)
    monkeypatch.setenv(MAX_BAG_BYTES_ENV, "0")  # off
    assert bag_memory_budget() is None and load_patient_bag([big]).n_patches == N
    monkeypatch.setenv(MAX_BAG_BYTES_ENV, "lots")
    with pytest.raises(InputError, match="cannot read MODALTUNE_MAX_BAG_BYTES"):
        bag_memory_budget()
    monkeypatch.delenv(MAX_BAG_BYTES_ENV)
    with open("/proc/meminfo") as fh:
        kb = next(int(ln.split()[1]) for ln in fh if ln.startswith("MemAvailable:"))
    assert bag_memory_budget() == pytest.approx(kb * 1024 / 2, rel=0.2)  # half of MemAvailable (it moves a little)
    assert bag_memory_budget(12345) == 12345  # the argument wins over everything


def test_cap_loads_the_same_bag_and_reads_only_sampled_rows(big, tmp_path):
    budget = 100_000  # the full bag (272,000 bytes) is over it; 50 rows (12,800 + 16,000 coords) are not
    with pytest.raises(InputError):
        load_patient_bag([big], max_bag_bytes=budget)
    capped = load_patient_bag([big], max_patches=50, seed=3, max_bag_bytes=budget)
    idx = sample_patch_indices(N, 50, training=False, seed=3, key=_stable_key([big]))
    full = read_bag(big)
    assert capped.n_patches == 50 and capped.features.dtype == np.float32
    np.testing.assert_array_equal(capped.attrs["patch_index"], idx)
    np.testing.assert_array_equal(capped.features, full.features[idx])
    np.testing.assert_array_equal(capped.coords, full.coords[idx])
    # proof that the other rows are never read: poison every unsampled row with NaN in place
    with h5py.File(big, "r+") as f:
        poison = np.setdiff1d(np.arange(N), idx)
        arr = f["features"][()]
        arr[poison] = np.nan
        f["features"][...] = arr
    with pytest.raises(InputError, match="NaN"):
        read_bag(big)
    again = load_patient_bag([big], max_patches=50, seed=3, max_bag_bytes=budget)
    np.testing.assert_array_equal(again.features, full.features[idx])


@pytest.mark.parametrize("layout", ["h5", "chunked_h5", "pt"])
def test_capped_multislide_read_equals_capping_the_merged_bag(tmp_path, layout):
    """The row-subset reader gives exactly the bag of the old path (read all, merge, then index)."""
    sizes = [300, 170, 530]
    paths = []
    for k, n in enumerate(sizes):
        f, c = _feats(n, 10 + k), _grid(n, x0=1000 * k)
        if layout == "h5":
            p = write_bag_h5(tmp_path / f"s{k}.h5", f, c, patch_size_level0=256, encoder="enc")
        elif layout == "chunked_h5":  # h5py fancy indexing path
            p = tmp_path / f"s{k}.h5"
            with h5py.File(p, "w") as h:
                h.create_dataset("features", data=f, chunks=(64, D), compression="gzip")
                h.create_dataset("coords", data=c).attrs["patch_size_level0"] = 256
        else:
            p = tmp_path / f"s{k}.pt"
            torch.save({"features": torch.from_numpy(f).half(), "coords": torch.from_numpy(c)}, p)
        paths.append(p)
    merged = merge_bags([read_bag(p) for p in paths])
    for training, epoch in ((False, 0), (True, 2)):
        got = load_patient_bag(paths, max_patches=200, training=training, epoch=epoch, seed=1)
        idx = sample_patch_indices(sum(sizes), 200, training=training, seed=1, epoch=epoch, key=_stable_key(paths))
        np.testing.assert_array_equal(got.attrs["patch_index"], idx)
        np.testing.assert_array_equal(got.features, merged.features[idx])
        np.testing.assert_array_equal(got.coords, merged.coords[idx])
        assert got.features.dtype == merged.features.dtype
        assert got.attrs["slides"] == merged.attrs["slides"] and got.source == merged.source


def test_benchmark_unit_with_too_large_bag_fails_while_others_finish(tmp_path, monkeypatch):
    from modaltune.benchmark.runner import run_benchmark
    from modaltune.data.simulate import simulate_cohort
    from modaltune.training.experiment_config import BenchmarkConfig

    torch.set_num_threads(1)
    cohort = simulate_cohort(tmp_path / "cohort", preset="tiny", seed=0, n_patients=24, patches=(16, 32), slides_per_patient=(1, 1), n_folds=2)
    del cohort
    cfg = BenchmarkConfig.model_validate({
        "name": "guard",
        "data": {"cohorts": [str(tmp_path / "cohort")]},
        "split": {"kfold": 2, "seed": 0},
        "methods": [{"name": "mean_pool", "params": {"hidden": 8}}, {"name": "clinical_mlp", "params": {"hidden": [8]}}],
        "tasks": ["subtype"],
        "trainer": {"max_epochs": 1, "accumulate_grad_batches": 4, "max_patches": 16, "logger": "none"},
        "evaluation": {"bootstrap": 10, "protocol": "memory guard test"},
    })
    monkeypatch.setenv(MAX_BAG_BYTES_ENV, "64")  # no slide bag fits in 64 bytes
    res = run_benchmark(cfg, tmp_path / "run", progress=False)
    assert sorted(res.failed) == sorted(u for u in res.statuses if u.startswith("mean_pool")) and len(res.failed) == 2
    assert sum(s == "done" for s in res.statuses.values()) == 2  # clinical_mlp, 2 folds
    failed = pd.read_csv(tmp_path / "run" / "failed_units.csv")
    assert failed["reason"].str.contains("too large for memory").all()
    assert failed["reason"].str.contains(r"\.h5").all() and failed["reason"].str.contains("trainer.max_patches").all()
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert set(results["method"]) == {"clinical_mlp"} and results["value"].notna().all()
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "## Failed units" in summary and re.search("too large for memory", summary)
