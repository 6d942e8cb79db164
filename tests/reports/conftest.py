"""One tiny benchmark run folder shared by every report test (built once per session, ~15 s)."""
from __future__ import annotations

import pytest

TINY = """
name: report_tiny
data:
  simulate:
    - {preset: tiny, seed: 0}
split: {kfold: 3, seed: 0}
methods:
  - {name: mean_pool, params: {hidden: 16}}
  - {name: logistic, modalities: [rna, clinical], tasks: [subtype]}
  - {name: coxnet, modalities: [rna, clinical], tasks: [survival]}
tasks: [subtype, survival]
seeds: [0]
trainer: {max_epochs: 2, lr: 2.0e-4, accumulate_grad_batches: 8, max_patches: 64, logger: csv}
evaluation: {metrics: null, bootstrap: 50, protocol: "simulated cohort, patient-level 3-fold CV, 1 seed", ddof: 0}
"""


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished benchmark run folder: survival + classification, 3 methods, 3 folds, 1 seed."""
    import torch

    from modaltune.benchmark.runner import run_benchmark

    root = tmp_path_factory.mktemp("report_run")
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_benchmark(str(cfg), root / "run", progress=False)
    finally:
        torch.set_num_threads(n)
    assert not res.failed
    return root / "run"


@pytest.fixture(scope="session")
def tiny_report(tiny_run, tmp_path_factory):
    """The HTML report of ``tiny_run`` (written outside the run folder)."""
    from modaltune.reports import build_report

    return build_report(tiny_run, tmp_path_factory.mktemp("report") / "report.html")
