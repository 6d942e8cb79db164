"""Patch-feature bag readers, writer, multi-slide merge and patch cap."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modaltune.data.bags import (
    Bag,
    cap_patient_bag,
    load_patient_bag,
    merge_bags,
    open_bag,
    read_bag,
    sample_patch_indices,
    write_bag_h5,
)
from modaltune.errors import InputError


def _grid(n: int, ps: int = 256, width: int = 7) -> np.ndarray:
    i = np.arange(n)
    return np.stack([i % width, i // width], 1).astype(np.int64) * ps


def _feats(n: int, d: int = 8, dtype=np.float16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


# ------------------------------------------------------------------ round trips
def test_h5_roundtrip_keeps_float16_and_trident_attrs(tmp_path):
    f, c = _feats(30), _grid(30)
    p = write_bag_h5(tmp_path / "s.h5", f, c, patch_size_level0=512, encoder="uni_v1", level0_magnification=40, target_magnification=20, patch_size=256)
    b = read_bag(p)
    assert b.features.dtype == np.float16 and np.array_equal(b.features, f)
    assert b.coords.dtype == np.int64 and np.array_equal(b.coords, c)
    assert b.encoder == "uni_v1"
    assert b.attrs["patch_size_level0"] == 512 and b.attrs["patch_size"] == 256
    assert b.attrs["level0_magnification"] == 40 and b.attrs["target_magnification"] == 20
    with h5py.File(p) as h:  # TRIDENT layout: attrs on coords, encoder on features and root
        assert h["coords"].attrs["patch_size_level0"] == 512
        assert h["coords"].attrs["level0_width"] == c[:, 0].max() + 512
        assert h["features"].attrs["encoder"] == "uni_v1" and h.attrs["encoder"] == "uni_v1"
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_open_bag_is_lazy_and_reports_shape(tmp_path):
    p = write_bag_h5(tmp_path / "s.h5", _feats(12, 16), _grid(12), patch_size_level0=256, encoder="conch")
    h = open_bag(p)
    assert h.shape == (12, 16) and h.dim == 16 and h.n_patches == 12 and h.encoder == "conch"
    assert h.dtype == np.float16 and h.has_coords and h.patch_size_level0 == 256
    assert h.read().n_patches == 12


def test_clam_pt_tensor_and_dict_pt(tmp_path):
    f = _feats(9, 4, np.float32)
    torch.save(torch.from_numpy(f), tmp_path / "a.pt")
    b = read_bag(tmp_path / "a.pt")
    assert b.coords is None and b.features.dtype == np.float32 and np.array_equal(b.features, f)
    torch.save({"features": torch.from_numpy(f).half(), "coords": torch.from_numpy(_grid(9))}, tmp_path / "b.pt")
    b = read_bag(tmp_path / "b.pt")
    assert b.features.dtype == np.float16 and np.array_equal(b.coords, _grid(9))
    assert open_bag(tmp_path / "b.pt").shape == (9, 4)


def test_encoder_from_trident_folder_name(tmp_path):
    p = tmp_path / "features_uni_v2" / "slide.h5"
    p.parent.mkdir()
    with h5py.File(p, "w") as h:
        h["features"] = _feats(3)
        h["coords"] = _grid(3)
    assert read_bag(p).encoder == "uni_v2"


def test_integral_float_coords_accepted(tmp_path):
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as h:
        h["features"] = _feats(4)
        h["coords"] = _grid(4).astype(np.float64)
    assert read_bag(p).coords.dtype == np.int64


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 40),
    dtype=st.sampled_from([np.float16, np.float32]),
    seed=st.integers(0, 2**16),
)
def test_property_h5_roundtrip(tmp_path, n, d, dtype, seed):
    rng = np.random.default_rng(seed)
    f = (rng.standard_normal((n, d)) * 100).astype(dtype)
    c = rng.integers(0, 10**6, size=(n, 2))
    p = write_bag_h5(tmp_path / f"r_{n}_{d}.h5", f, c, patch_size_level0=224, encoder="e")
    b = read_bag(p)
    assert b.features.dtype == dtype and b.features.shape == (n, d)
    assert np.array_equal(b.features, f) and np.array_equal(b.coords, c)


# ------------------------------------------------------------------ bad input: one line naming the file
def _write_raw(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as h:
        for k, v in datasets.items():
            h[k] = v
    return path


def _bad_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = write_bag_h5(tmp / "good.h5", _feats(50, 32), _grid(50), patch_size_level0=256, encoder="e")
    trunc = tmp / "truncated.h5"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp / "garbage.h5"
    garbage.write_bytes(b"this is not an hdf5 file" * 10)
    nan = _feats(5)
    nan[3, 2] = np.nan
    inf = _feats(5, dtype=np.float32)
    inf[1, 0] = np.inf
    badpt = tmp / "bad.pt"
    badpt.write_bytes(b"nope")
    torch.save({"coords": torch.zeros(3, 2)}, tmp / "nofeat.pt")
    return {
        "missing": (tmp / "missing.h5", "not found"),
        "truncated": (trunc, "truncated"),
        "garbage": (garbage, "corrupt"),
        "no_features": (_write_raw(tmp / "nofeatures.h5", coords=_grid(3)), "no 'features'"),
        "features_1d": (_write_raw(tmp / "oned.h5", features=np.ones(5, np.float32)), "2-D"),
        "coords_shape": (_write_raw(tmp / "coords3.h5", features=_feats(4), coords=np.zeros((4, 3), np.int64)), "coords must have shape"),
        "coords_rows": (_write_raw(tmp / "coordsrows.h5", features=_feats(4), coords=np.zeros((3, 2), np.int64)), "coords must have shape"),
        "coords_float": (_write_raw(tmp / "coordsfloat.h5", features=_feats(2), coords=np.array([[0.5, 1.0], [2.0, 3.0]])), "not integers"),
        "nan": (_write_raw(tmp / "nan.h5", features=nan, coords=_grid(5)), "NaN/inf (first at patch row 3)"),
        "inf": (_write_raw(tmp / "inf.h5", features=inf, coords=_grid(5)), "NaN/inf (first at patch row 1)"),
        "empty": (_write_raw(tmp / "empty.h5", features=np.zeros((0, 8), np.float16), coords=np.zeros((0, 2), np.int64)), "empty bag"),
        "bad_pt": (badpt, "cannot read .pt"),
        "pt_no_features": (tmp / "nofeat.pt", "no 'features' key"),
        "suffix": (tmp / "x.npy", "unsupported bag file type"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "truncated", "garbage", "no_features", "features_1d", "coords_shape", "coords_rows", "coords_float", "nan", "inf", "empty", "bad_pt", "pt_no_features", "suffix"],
)
def test_bad_bag_gives_one_line_error_naming_file(tmp_path, case):
    path, expected = _bad_cases(tmp_path)[case]
    with pytest.raises(InputError) as ei:
        read_bag(path)
    msg = str(ei.value)
    assert expected in msg
    assert path.name in msg and "fix:" in msg and "\n" not in msg


def test_nan_in_large_float16_bag_is_found_in_last_block(tmp_path):
    f = _feats(5000, 64)
    f[4999, 63] = np.inf
    p = _write_raw(tmp_path / "late.h5", features=f, coords=_grid(5000))
    with pytest.raises(InputError, match="patch row 4999"):
        read_bag(p)


_SPECIAL = [np.nan, -np.nan, np.inf, -np.inf]


@settings(max_examples=80, deadline=None)
@given(
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    n=st.integers(1, 40),
    d=st.integers(1, 9),
    bad=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(_SPECIAL)), max_size=3),
    extremes=st.booleans(),
)
def test_first_nonfinite_row_matches_isfinite(dtype, n, d, bad, extremes):
    """The integer test (two max-reductions on the bit patterns) agrees with np.isfinite for any
    sign of NaN/inf, and never flags the largest finite values or negative zero."""
    from modaltune.data import bags

    x = np.random.default_rng(n * 31 + d).standard_normal((n, d)).astype(dtype)
    if extremes:
        fin = np.finfo(dtype)
        x.flat[0], x.flat[-1] = fin.max, fin.min
        x.flat[len(x.flat) // 2] = -0.0
    for k, v in bad:
        x.flat[k % x.size] = v
    fin_mask = ~np.isfinite(x)
    expected = int(np.argmax(fin_mask.any(axis=1))) if fin_mask.any() else None
    assert bags._first_nonfinite_row(x) == expected


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_chunked_read_finds_nan_in_any_chunk_and_reads_exact_bytes(tmp_path, monkeypatch, dtype):
    """The contiguous h5 fast path reads in chunks and checks each one as it arrives: a bad value
    in a middle chunk names its row; a clean file comes back bit-identical."""
    from modaltune.data import bags

    monkeypatch.setattr(bags, "_READ_CHUNK", 1000)  # many chunks, not aligned to rows
    monkeypatch.setattr(bags, "_CHECK_BLOCK", 64)
    f = _feats(300, 24, dtype=dtype)
    p = _write_raw(tmp_path / "ok.h5", features=f, coords=_grid(300))
    b = read_bag(p)
    assert b.features.dtype == dtype and b.features.tobytes() == f.tobytes()
    for row in (0, 137, 299):
        g = f.copy()
        g[row, 23] = -np.inf if row % 2 else np.nan
        q = _write_raw(tmp_path / f"bad{row}.h5", features=g, coords=_grid(300))
        with pytest.raises(InputError, match=f"patch row {row}\\)"):
            read_bag(q)


def test_chunked_compressed_h5_is_read_via_h5py(tmp_path):
    f = _feats(100, 16)
    p = tmp_path / "gz.h5"
    with h5py.File(p, "w") as h:
        h.create_dataset("features", data=f, chunks=(10, 16), compression="gzip")
        h["coords"] = _grid(100)
    assert np.array_equal(read_bag(p).features, f)


# ------------------------------------------------------------------ patients: merge, filters, cap
def _slides(tmp: Path, sizes, d=8, encoder="e", names=None) -> list[Path]:
    out = []
    for k, n in enumerate(sizes):
        name = names[k] if names else f"TCGA-AA-0001-01Z-00-DX{k + 1}.h5"
        out.append(write_bag_h5(tmp / name, _feats(n, d, seed=k), _grid(n, 256, width=3 + k), patch_size_level0=256, encoder=encoder))
    return out


def test_merge_places_slides_on_the_squarest_grid(tmp_path):
    paths = _slides(tmp_path, [6, 4])
    b = load_patient_bag(paths)
    assert b.n_patches == 10 and b.features.dtype == np.float16
    first, second = b.coords[:6], b.coords[6:]
    assert np.array_equal(first, _grid(6, 256, 3))
    # boxes (patch included, + gap): slide 0 3x2 patches (768+256) x (512+256), slide 1 4x1
    # (1024+256) x (256+256). One column: 1280 x 1280; two columns: 2304 x 768 -> one column,
    # slide 1 below slide 0, starting at y = 256 (max y) + 256 (patch) + 256 (gap) = 768
    assert np.array_equal(second[:, 0], _grid(4, 256, 4)[:, 0])
    assert np.array_equal(second[:, 1], _grid(4, 256, 4)[:, 1] + 768)
    assert b.attrs["slides"][1][1:] == (6, 10)


@settings(max_examples=20, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=2, max_size=4),
    ps=st.sampled_from([1, 224, 256, 512]),
    seed=st.integers(0, 1000),
)
def test_property_merged_slides_never_overlap(sizes, ps, seed):
    rng = np.random.default_rng(seed)
    bags = []
    for n in sizes:
        c = rng.integers(-5, 40, size=(n, 2)) * ps  # arbitrary (even negative) origins
        bags.append(Bag(_feats(n, 4), c, {"patch_size_level0": ps}, "s"))
    m = merge_bags(bags)
    boxes = []
    start = 0
    for n in sizes:
        c = m.coords[start : start + n]
        boxes.append((c[:, 0].min(), c[:, 0].max() + ps, c[:, 1].min(), c[:, 1].max() + ps))
        start += n
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            overlap_x = a[0] < b[1] and b[0] < a[1]
            overlap_y = a[2] < b[3] and b[2] < a[3]
            assert not (overlap_x and overlap_y)


def test_merge_without_coords_gives_none(tmp_path):
    torch.save(torch.ones(3, 8), tmp_path / "a.pt")
    paths = [tmp_path / "a.pt", *_slides(tmp_path, [2])]
    b = load_patient_bag(paths)
    assert b.coords is None and b.n_patches == 5


def test_diagnostic_only_keeps_dx1_and_falls_back_to_first(tmp_path):
    paths = _slides(tmp_path, [3, 5], names=["P-01Z-00-DX2.h5", "P-01Z-00-DX1.h5"])
    b = load_patient_bag(paths, diagnostic_only=True)
    assert b.n_patches == 5 and "diagnostic_fallback" not in b.attrs
    paths = _slides(tmp_path, [3, 5], names=["Q-TS1.h5", "Q-BS1.h5"])
    b = load_patient_bag(paths, diagnostic_only=True)
    assert b.n_patches == 3 and b.attrs["diagnostic_fallback"]


def test_mixed_dims_and_encoders_name_the_file(tmp_path):
    a = _slides(tmp_path, [3], d=8, names=["a1.h5"])
    b = _slides(tmp_path, [3], d=16, names=["b16.h5"])
    with pytest.raises(InputError, match=r"b16\.h5.*feature dim 16 differs from 8"):
        load_patient_bag(a + b)
    c = _slides(tmp_path, [3], d=8, encoder="other", names=["c_other.h5"])
    with pytest.raises(InputError, match=r"c_other\.h5.*encoder 'other' differs"):
        load_patient_bag(a + c)
    with pytest.raises(InputError, match=r"a1\.h5.*feature_dim 32"):
        load_patient_bag(a, expected_dim=32)
    with pytest.raises(InputError, match=r"a1\.h5.*cohort's encoder 'uni'"):
        load_patient_bag(a, expected_encoder="uni")


def test_patch_cap_eval_deterministic_training_varies_with_epoch(tmp_path):
    paths = _slides(tmp_path, [40, 30])
    ev1 = load_patient_bag(paths, max_patches=10, training=False, seed=3)
    ev2 = load_patient_bag(paths, max_patches=10, training=False, seed=3, epoch=7)
    assert ev1.n_patches == 10 and np.array_equal(ev1.attrs["patch_index"], ev2.attrs["patch_index"])
    assert np.array_equal(ev1.features, ev2.features) and np.array_equal(ev1.coords, ev2.coords)
    tr = [load_patient_bag(paths, max_patches=10, training=True, seed=3, epoch=e).attrs["patch_index"] for e in range(4)]
    assert len({tuple(t) for t in tr}) > 1
    again = load_patient_bag(paths, max_patches=10, training=True, seed=3, epoch=2).attrs["patch_index"]
    assert np.array_equal(again, tr[2])  # reproducible per (seed, epoch)
    assert load_patient_bag(paths, max_patches=100).n_patches == 70  # cap above N keeps all


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 500), cap=st.integers(1, 100), seed=st.integers(0, 10**6), epoch=st.integers(0, 50), key=st.integers(0, 2**32 - 1))
def test_property_patch_indices(n, cap, seed, epoch, key):
    ev = sample_patch_indices(n, cap, training=False, seed=seed, epoch=epoch, key=key)
    assert np.array_equal(ev, sample_patch_indices(n, cap, training=False, seed=seed, epoch=epoch + 1, key=key))
    assert len(ev) == min(n, cap) and len(np.unique(ev)) == len(ev) and np.all(np.diff(ev) > 0)
    assert ev.min() >= 0 and ev.max() < n
    tr = sample_patch_indices(n, cap, training=True, seed=seed, epoch=epoch, key=key)
    assert np.array_equal(tr, sample_patch_indices(n, cap, training=True, seed=seed, epoch=epoch, key=key))
    if n >= 2 * cap and cap >= 5:
        trs = {tuple(sample_patch_indices(n, cap, training=True, seed=seed, epoch=e, key=key)) for e in range(epoch, epoch + 3)}
        assert len(trs) > 1


# ------------------------------------------------------------------ in-memory cap == capped disk read
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=3),
    cap=st.integers(1, 40),
    training=st.booleans(),
    seed=st.integers(0, 3),
    epoch=st.integers(0, 4),
)
def test_cap_patient_bag_equals_capped_read(tmp_path_factory, sizes, cap, training, seed, epoch):
    """The bag cache caps in memory: it must give the rows, coords and order of the capped disk read."""
    paths = _slides(tmp_path_factory.mktemp("cap"), sizes)
    disk = load_patient_bag(paths, max_patches=cap, training=training, seed=seed, epoch=epoch)
    full = load_patient_bag(paths)
    mem = cap_patient_bag(full, cap, training=training, seed=seed, epoch=epoch)
    assert np.array_equal(mem.features, disk.features) and mem.features.dtype == disk.features.dtype
    assert np.array_equal(mem.coords, disk.coords)
    assert mem.n_patches == min(sum(sizes), cap)
    if sum(sizes) <= cap:
        assert mem is full
    else:
        assert np.array_equal(mem.attrs["patch_index"], disk.attrs["patch_index"])


def test_capped_read_opens_each_file_once_for_metadata(tmp_path, monkeypatch):
    """Attribute reads dominate small bags: open_bag + the row read must read each file's attrs once."""
    from modaltune.data import bags

    paths = _slides(tmp_path, [20, 10])
    calls = []
    real = bags._h5_attrs
    monkeypatch.setattr(bags, "_h5_attrs", lambda f, p: calls.append(p) or real(f, p))
    load_patient_bag(paths, max_patches=8, training=True)
    load_patient_bag(paths)
    assert calls == paths + paths  # one attrs read per file per load, capped or not
