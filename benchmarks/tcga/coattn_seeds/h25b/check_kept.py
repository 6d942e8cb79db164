"""Independent check: committed (git HEAD) rows of a seed folder equal the first rows of the merged files."""
import io, subprocess, sys
import pandas as pd
folder = sys.argv[1]
for name in ("results.csv", "predictions.parquet", "unit_seconds.csv", "failed_units.csv"):
    blob = subprocess.run(["git", "show", f"HEAD:{folder}/{name}"], capture_output=True, check=True).stdout
    old = pd.read_parquet(io.BytesIO(blob)) if name.endswith("parquet") else pd.read_csv(io.BytesIO(blob))
    new = pd.read_parquet(f"{folder}/{name}") if name.endswith("parquet") else pd.read_csv(f"{folder}/{name}")
    head = new.iloc[: len(old)][list(old.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(head, old, check_exact=True)
    print(f"{folder}/{name}: {len(old)} committed rows equal value for value (exact); {len(new) - len(old)} rows added; new columns: {sorted(set(new.columns) - set(old.columns))}")
