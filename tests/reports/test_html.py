"""The HTML report: self-contained, one <img> per figure PNG, protocol and SIMULATED label shown."""
from __future__ import annotations

import re

from modaltune.reports.html import Section, render_html


def test_report_embeds_one_img_per_figure(tiny_report):
    html = tiny_report.read_text()
    pngs = sorted((tiny_report.parent / "figures").glob("*.png"))
    # forest + td-AUC + KM x 2 methods + reliability + (ROC/PR, confusion) x 2 methods + 2 training logs
    assert len(pngs) == 11
    imgs = re.findall(r"<img [^>]*>", html)
    assert len(imgs) == len(pngs)
    assert all('src="data:image/png;base64,' in i for i in imgs)
    assert "http://" not in html and "https://" not in html  # opens offline
    assert "SIMULATED (synthetic cohort, not real patients)" in html
    assert "Protocol: simulated cohort, patient-level 3-fold CV" in html
    assert "Paired differences" in html and "Patients missing modalities" in html


def test_render_html_escapes_text_and_renders_empty_tables():
    import pandas as pd

    page = render_html("a<b", [Section("s&t", tables=[("empty", pd.DataFrame())], notes=["<script>"])])
    assert "<title>a&lt;b</title>" in page and "s&amp;t" in page and "&lt;script&gt;" in page
    assert "(none)" in page
