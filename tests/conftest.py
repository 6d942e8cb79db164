"""Fixtures shared across the test suite (fixtures only; keep helpers in the test modules)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: tiny models are dominated by thread overhead on 2 shared cores.
    Folders of tiny-model tests make it autouse in their conftest.py."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The real ``shared`` data folder (``$MODALTUNE_SHARED`` or ``<repo>/../shared``); tests that
    need it are skipped, with the reason, when it is absent."""
    env = os.environ.get("MODALTUNE_SHARED")
    path = Path(env) if env else REPO.parent / "shared"
    if not (path / "data" / "tcga").is_dir():
        pytest.skip(f"real TCGA data not found at {path}/data/tcga (set MODALTUNE_SHARED or put shared/ beside the repository)")
    return path


def _write_fake_porpoise(root: Path, cohort: str, table: pd.DataFrame, folds: list[tuple[list[str], list[str]]]) -> None:
    d = root / "data" / "tcga" / "porpoise"
    (d / "datasets_csv_mutsig").mkdir(parents=True, exist_ok=True)
    name = f"tcga_{cohort}_all_clean.csv.zip"
    # like the real release: a zip whose single member is a plain CSV also named *.zip
    table.to_csv(d / "datasets_csv_mutsig" / name, compression={"method": "zip", "archive_name": name})
    sd = d / "splits" / "5foldcv" / f"tcga_{cohort}"
    sd.mkdir(parents=True, exist_ok=True)
    for k, (tr, va) in enumerate(folds):
        n = max(len(tr), len(va))
        pd.DataFrame({"train": tr + [None] * (n - len(tr)), "val": va + [None] * (n - len(va))}).to_csv(sd / f"splits_{k}.csv")


@pytest.fixture
def fake_shared(tmp_path: Path):
    """A tiny PORPOISE-format shared folder (cohort ``blca``: 10 patients, 12 slides, 3 genes per
    omics type) built in ``tmp_path``; returns ``(shared_dir, table)``. Patients P00 and P01 have
    two slides each; deaths: P00, P03, P06, P09 (censorship 0)."""
    rng = np.random.default_rng(0)
    ids = [f"TCGA-A{i % 3}-P{i:02d}" for i in range(10)]
    rows = ids + ids[:2]
    base = {
        "case_id": rows,
        "slide_id": [f"{p}-01Z-00-DX{1 + (j >= 10)}.UUID{j}.svs" for j, p in enumerate(rows)],
        "age": [50 + ids.index(p) for p in rows],
        "site": [p.split("-")[1] for p in rows],
        "survival_months": [float(ids.index(p) * 3 + 1) for p in rows],
        "censorship": [0.0 if ids.index(p) % 3 == 0 else 1.0 for p in rows],
        "is_female": [float(ids.index(p) % 2) for p in rows],
        "oncotree_code": "BLCA",
        "train": 1.0,
    }
    table = pd.DataFrame(base)
    per_patient = {p: rng.normal(size=9).round(4) for p in ids}
    for j, col in enumerate(["TP53_rnaseq", "EGFR_rnaseq", "KRAS_rnaseq", "TP53_cnv", "MYC_cnv", "ERBB2_cnv", "TP53_mut", "PIK3CA_mut", "KRAS_mut"]):
        table[col] = [per_patient[p][j] if col.endswith("rnaseq") else float(round(per_patient[p][j]) % 2) for p in rows]
    folds = [([p for i, p in enumerate(ids) if i % 5 != k], [p for i, p in enumerate(ids) if i % 5 == k]) for k in range(5)]
    _write_fake_porpoise(tmp_path, "blca", table, folds)
    return tmp_path, table


@pytest.fixture
def write_fake_porpoise():
    """``write(root, cohort, table, folds)``: write a PORPOISE-format table and split files."""
    return _write_fake_porpoise
