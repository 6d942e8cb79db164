"""Headless Chromium renders the HTML report: non-blank screenshot, every figure decoded in the DOM."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest


def _chromium() -> str:
    """Path of chromium; installs the Debian package when running as root with apt (as .ci does)."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, env=env, capture_output=True, timeout=900)
        for name in ("chromium", "chromium-browser"):
            if shutil.which(name):
                return shutil.which(name)
    pytest.skip("headless Chromium not found and not installable here (needs root and apt-get): apt-get install chromium")


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


def test_chromium_renders_every_figure(tiny_report, tmp_path):
    import matplotlib.image as mpimg

    browser = _chromium()
    n_expected = len(list((tiny_report.parent / "figures").glob("*.png")))
    # a copy of the page whose script writes "<decoded images>/<images>" into the title once loaded
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
              "document.title='decoded '+i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>")
    probe.write_text(tiny_report.read_text().replace("</body>", script + "</body>"))
    dom = _run(browser, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    m = re.search(r"<title>decoded (\d+)/(\d+)</title>", dom.stdout)
    assert m, dom.stderr[-500:]
    assert int(m.group(1)) == int(m.group(2)) == n_expected

    shot = tmp_path / "shot.png"
    _run(browser, "--window-size=1200,2400", f"--screenshot={shot}", tiny_report.as_uri())
    assert shot.exists(), "chromium wrote no screenshot"
    img = mpimg.imread(shot)[..., :3]
    ink = (img.mean(-1) < 0.9).mean()
    assert img.shape[0] >= 2000 and img.std() > 0.05 and ink > 0.02, (img.shape, img.std(), ink)
