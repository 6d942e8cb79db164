"""Independent check of a merge: the committed (git HEAD) rows of a seed folder equal the merged files' first rows.

    python benchmarks/tcga/coattn_seeds/h25b/check_kept.py benchmarks/tcga/coattn_seeds/seed1 [COMMIT]

Run from the repository root; COMMIT (default HEAD: before committing the merge) holds the old files. After the
merge commits: seed1 6013cfa, seed2 873f41b (the commits before h25b's merges). Exact comparison
(pandas ``assert_frame_equal(check_exact=True)``, NaN equal to NaN) of results.csv, predictions.parquet,
unit_seconds.csv and failed_units.csv; prints one line per file (rows kept, rows added, new columns).
"""
from __future__ import annotations

import io
import subprocess
import sys

import pandas as pd

FILES = ("results.csv", "predictions.parquet", "unit_seconds.csv", "failed_units.csv")


def _read(data: bytes | str, name: str) -> pd.DataFrame:
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    return pd.read_parquet(src) if name.endswith(".parquet") else pd.read_csv(src)


def main(folder: str, base: str = "HEAD") -> int:
    for name in FILES:
        old = _read(subprocess.run(["git", "show", f"{base}:{folder}/{name}"], capture_output=True, check=True).stdout, name)
        new = _read(f"{folder}/{name}", name)
        pd.testing.assert_frame_equal(new.iloc[: len(old)][list(old.columns)].reset_index(drop=True), old, check_exact=True)
        print(f"{folder}/{name}: {len(old)} committed rows equal value for value (exact); {len(new) - len(old)} rows added; "
              f"new columns: {sorted(set(new.columns) - set(old.columns))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
