"""``modaltune doctor``: reports the real versions, extras, devices and data locations."""
from __future__ import annotations

import importlib.metadata as md

import numpy as np
import torch

from modaltune.doctor import cache_dir, doctor_info, doctor_report


def test_versions_are_the_installed_ones():
    info = doctor_info()
    assert info["core"]["torch"] == torch.__version__
    assert info["core"]["numpy"] == np.__version__
    assert info["core"]["scikit-survival"] == md.version("scikit-survival")
    report = doctor_report()
    assert f"torch              {torch.__version__}" in report


def test_torch_threads_and_devices():
    t = doctor_info()["torch"]
    assert t["threads"] == torch.get_num_threads()
    assert t["cuda_available"] == torch.cuda.is_available()
    assert len(t["cuda_devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_extras_reflect_importability(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec

    def fake(name, *a, **k):
        return None if name == "captum" else real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    info = doctor_info()
    assert info["extras"]["interpret"] == {"usable": False, "packages": {"captum": None}}
    assert "[interpret] no" in doctor_report()


def test_cache_and_shared_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALTUNE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MODALTUNE_CACHE")
    assert str(cache_dir()).endswith(".cache/modaltune")
    (tmp_path / "sh" / "data" / "tcga").mkdir(parents=True)
    info = doctor_info(tmp_path / "sh")
    assert info["shared_found"] and not info["shared_contents"]["porpoise tables"]
    assert not doctor_info(tmp_path / "nowhere")["shared_found"]
    monkeypatch.setenv("MODALTUNE_SHARED", str(tmp_path / "nowhere"))
    assert "NOT found" in doctor_report()
