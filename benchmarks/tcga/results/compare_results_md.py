"""Cell-by-cell comparison of the RESULTS.md "## TCGA benchmark (issue 4)" tables with re-run tables.md files.

Each table of the section belongs to the run whose ``Run folder: `.../<run>``` line follows it; the same run's
table with the same title in the re-run tables files is its counterpart (tables of one run in several files, e.g. two
``--methods`` subset runs or the paired rows of ``paired_from_runs.py``, are merged row by row). Cells are compared as strings (both
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


def merge_rows(have: pd.DataFrame | None, more: pd.DataFrame, what: str) -> pd.DataFrame:
    """Rows of ``have`` and ``more`` (two subset runs of one config, e.g. ``--methods gene_mixer`` beside the
    other methods, give one table); a row in both must read the same, else the comparison would be ambiguous."""
    if have is None:
        return more
    both = have.index.intersection(more.index)
    clash = [r for r in both if not have.loc[r].reindex(more.columns).fillna("").equals(more.loc[r].fillna(""))]
    if clash:
        raise SystemExit(f"error: {what}: row {clash[0]!r} differs between two tables files (fix: pass one re-run per row)")
    return pd.concat([have, more.drop(index=both)]).reindex(columns=list(dict.fromkeys([*have.columns, *more.columns])), fill_value="")


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
    ap.add_argument("--only", nargs="*", default=None, help="keep only these runs (config names, e.g. subtype) in the output")
    args = ap.parse_args()
    old = blocks(section(Path(args.results_md).read_text(), args.heading))
    new: dict[str, dict[str, pd.DataFrame]] = {}
    for t in args.tables:
        for run, tabs in blocks(Path(t).read_text().splitlines()).items():
            for title, df in tabs.items():
                new.setdefault(run, {})[title] = merge_rows(new.get(run, {}).get(title), df, f"{run} / {title}")
    rows = []
    for run, tabs in old.items():
        if args.only is not None and run not in args.only:
            continue
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
