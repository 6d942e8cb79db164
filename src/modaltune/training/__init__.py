"""modaltune.training: the Lightning engine (fit / predict / embed) and the benchmark runner.

    from modaltune.training import fit, predict, evaluate, run_benchmark

Names are imported lazily so ``import modaltune.training`` does not import Lightning.
"""
from __future__ import annotations

__all__ = ["FittedModel", "fit", "predict", "evaluate", "embed", "run_benchmark", "ExperimentConfig", "BenchmarkConfig"]

_WHERE = {
    "FittedModel": "modaltune.training.trainer",
    "fit": "modaltune.training.trainer",
    "predict": "modaltune.training.trainer",
    "evaluate": "modaltune.training.trainer",
    "embed": "modaltune.training.trainer",
    "run_benchmark": "modaltune.training.runner",
    "ExperimentConfig": "modaltune.training.experiment_config",
    "BenchmarkConfig": "modaltune.training.experiment_config",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'modaltune.training' has no attribute '{name}'")
