"""`modaltune report`, `--version`, `-h` and the one-line error for a folder that is not a run."""
from __future__ import annotations

import re

from modaltune.cli import main


def test_report_command_writes_html(tiny_run, tmp_path, capsys):
    out = tmp_path / "r" / "x.html"
    assert main(["report", str(tiny_run), "--out", str(out)]) == 0
    assert out.exists() and len(re.findall("<img ", out.read_text())) == 11
    assert f"wrote {out}" in capsys.readouterr().out


def test_report_of_a_non_run_folder_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a benchmark run folder" in err and "\n" not in err


def test_version_and_short_help(capsys):
    assert main(["--version"]) == 0
    assert re.match(r"modaltune \S+", capsys.readouterr().out)
    assert main(["-h"]) == 0
    assert "report" in capsys.readouterr().out


def test_auto_report_failure_is_one_warning_line(tmp_path, capsys):
    from modaltune.cli import _auto_report

    _auto_report(tmp_path)  # not a run folder: must not raise
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: report not written") and "\n" not in err
