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


def test_timm_extra_and_patch_encoders_reflect_what_imports(monkeypatch, tmp_path):
    import importlib.util
    import subprocess
    import sys

    from modaltune import doctor

    timm_imports = subprocess.run([sys.executable, "-c", "import timm"], capture_output=True, check=False).returncode == 0
    monkeypatch.setenv("MODALTUNE_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "conch_v15").mkdir()
    (tmp_path / "conch_v15" / "conch_v1_5_pytorch_model.bin").write_bytes(b"x")  # found, not read
    info = doctor_info()
    enc = info["patch_encoders"]
    assert info["extras"]["timm"]["usable"] == timm_imports
    assert enc["uni"]["usable"] == timm_imports and enc["uni"]["extra"] == "timm"
    assert ("timm" in enc["uni"]["missing"]) is (not timm_imports)
    assert enc["conch_v15"] == {"usable": True, "missing": [], "extra": None, "weights_found": True, "tile_px": 512,
                                "magnification": 20.0, "embedding_dim": 768}
    assert enc["efficientnet_lite0"]["weights_found"] is True and enc["efficientnet_lite0"]["tile_px"] is None
    report = doctor_report()
    assert "  conch_v15          yes  weights found  768-d, 512 px @ 20x" in report
    if not timm_imports:
        assert "pip install 'modaltune[timm]'" in report.split("patch encoders")[1]
    # a present but broken timm (e.g. a torchvision built for another torch) is reported unusable
    monkeypatch.setattr(doctor, "_importable", lambda name: False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: object() if name in ("timm", "torchvision") else real(name, *a, **k))
    monkeypatch.setattr(doctor, "_version", lambda imp, dist: "1.0" if imp in ("timm", "torchvision") else real(imp) and "x")
    info = doctor_info()
    assert info["extras"]["timm"]["usable"] is False and info["patch_encoders"]["gigapath"]["usable"] is False


def test_bf16_support_reads_the_cpu_flags_and_cuda(tmp_path, monkeypatch):
    from modaltune.doctor import bf16_lines, bf16_support

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm sve bf16 i8mm\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    b = bf16_support(x86)
    assert b["cpu"] == {"supported": True, "native": True, "flags": ["amx_bf16", "avx512_bf16"]}
    assert "    CPU: yes, native (amx_bf16, avx512_bf16)" in bf16_lines(b)
    assert bf16_support(arm)["cpu"]["flags"] == ["bf16"]
    b = bf16_support(old)
    assert b["cpu"]["native"] is False and "    CPU: yes, slow (no bf16 instructions: bf16 is emulated, expect it slower than fp32)" in bf16_lines(b)
    b = bf16_support(tmp_path / "absent")  # macOS / Windows: no /proc/cpuinfo
    assert b["cpu"]["native"] is None and bf16_lines(b)[1].startswith("    CPU: yes (instruction set unknown")
    # CUDA: torch.cuda.is_bf16_supported() when a device is there, None otherwise
    assert bf16_support(x86)["cuda"] == (torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    b = bf16_support(x86)
    assert b["cuda"] is False and bf16_lines(b)[2] == "    CUDA: no (this GPU lacks bf16: keep backbone_precision fp32, use trainer.precision 16-mixed)"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert bf16_lines(bf16_support(x86))[2] == "    CUDA: yes (torch.cuda.is_bf16_supported)"


def test_doctor_reports_bf16_for_this_machine():
    t = doctor_info()["torch"]
    assert t["bf16"]["cuda"] == (torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None)
    report = doctor_report()
    assert "  bf16 (backbone_precision: bf16-weights, trainer.precision: bf16-mixed):" in report
    assert ("    CUDA: no CUDA device" in report) is (not torch.cuda.is_available())
