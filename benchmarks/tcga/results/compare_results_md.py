"""Cell-by-cell comparison of the RESULTS.md "## TCGA benchmark (issue 4)" tables with re-run tables.md files.

Each table of the section belongs to the run whose ``Run folder: `.../<run>``` line follows it; the same run's
table with the same title in the re-run tables file is its counterpart. Cells are compared as strings (both
sides are written by the same ``run_tcga.tables`` formatter, so equal numbers print equally).

    python benchmarks/tcga/results/compare_results_md.py <RESULTS.md before the edit> \
        benchmarks/tcga/results/tables.md benchmarks/tcga/results/tables_paperbins.md \
        --out benchmarks/tcga/results/rerun_vs_results_md.csv
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

RUN = re.compile(r"^Run folder: `(?:.*/)?([^/`]+)`")


def run_key(name: str) -> str:
    """Run name of ``name`` without a --methods subset suffix (``_m-<names>``, kept: ``_paperbins``), so a subset run
    stands for its config; the rows it leaves out read "missing in re-run"."""
    if "_m-" not in name:
        return name
    return name.split("_m-")[0] + ("_paperbins" if name.endswith("_paperbins") else "")


def blocks(lines: list[str]) -> dict[str, dict[str, pd.DataFrame]]:
    """{run name: {table title: table}} of markdown ``lines``; a title is the last non-table line before a table."""
    out: dict[str, dict[str, pd.DataFrame]] = {}
    pending: dict[str, pd.DataFrame] = {}
    title, i = "", 0
    while i < len(lines):
        line = lines[i]
        m = RUN.match(line)
        if m:
            out.setdefault(run_key(m.group(1)), {}).update(pending)
            pending = {}
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, body = rows[0], rows[2:]
            df = pd.DataFrame(body, columns=head).set_index(head[0])
            pending[title.split(" (")[0].split(":")[0]] = df
            continue
        elif line.strip():
            title = line.strip()
        i += 1
    return out


def section(text: str, heading: str) -> list[str]:
    """The lines of the ``## heading`` section of ``text``."""
    lines = text.splitlines()
    start = lines.index(heading)
    end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
    return lines[start:end]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results_md")
    ap.add_argument("tables", nargs="+")
    ap.add_argument("--heading", default="## TCGA benchmark (issue 4)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    old = blocks(section(Path(args.results_md).read_text(), args.heading))
    new: dict[str, dict[str, pd.DataFrame]] = {}
    for t in args.tables:
        new.update(blocks(Path(t).read_text().splitlines()))
    rows = []
    for run, tabs in old.items():
        for title, told in tabs.items():
            tnew = new.get(run, {}).get(title)
            for r in told.index:
                for c in told.columns:
                    o = told.at[r, c]
                    if tnew is None:
                        status, n = "not re-run", ""
                    elif r not in tnew.index or c not in tnew.columns:
                        status, n = "missing in re-run", ""
                    else:
                        n = tnew.at[r, c]
                        status = "same" if n == o else "differs"
                    rows.append(dict(run=run, table=title, row=r, column=c, old=o, new=n, status=status))
    df = pd.DataFrame(rows)
    df.to_csv(args.out, index=False)
    print(df.groupby(["run", "status"]).size().to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
