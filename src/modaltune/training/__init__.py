"""modaltune.training: the Lightning engine (fit / predict / embed).

    from modaltune.training import fit, predict, evaluate

The benchmark runner is one layer up, in :mod:`modaltune.benchmark`; ``run_benchmark`` is still
reachable here through the lazy re-export :mod:`modaltune.training.runner` (nothing in this
package imports ``modaltune.benchmark`` at module level). Names are imported lazily so
``import modaltune.training`` does not import Lightning.
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
