"""How a benchmark unit gets its devices: process count of a trainer config, Ray resource requests,
and multi-process (DDP) training through a ``modaltune fit`` subprocess.

Lightning starts multi-process strategies (``ddp`` with ``devices > 1``) by re-running the
command line of the current process once per extra rank. Inside ``modaltune benchmark`` that
would re-run the whole benchmark in every rank, so a unit whose trainer needs several processes
is trained by a ``python -m modaltune.cli fit`` subprocess instead (the command Lightning
re-launches correctly); the benchmark process then loads the saved model and predicts on one
device.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["num_processes", "needs_launch", "ray_task_options", "fit_in_subprocess"]


def _visible_devices(accelerator: str) -> int:
    if accelerator in ("gpu", "cuda", "auto"):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return max(n, 1)
    return 1


def num_devices(tcfg: Any) -> int:
    """Devices one unit asks Lightning for (``devices``: int, ``-1``/``"auto"``, ``"0,1"`` or a list)."""
    acc = str(tcfg.accelerator).lower()
    d = tcfg.devices
    if isinstance(d, list):
        return max(len(d), 1)
    if isinstance(d, str):
        ds = d.strip()
        if ds in ("auto", "-1"):
            return _visible_devices(acc)
        if "," in ds:
            return max(len([x for x in ds.split(",") if x.strip()]), 1)
        return int(ds) if ds.isdigit() else 1
    return _visible_devices(acc) if d == -1 else max(int(d), 1)


def num_processes(tcfg: Any) -> int:
    """Processes Lightning would start for ``tcfg`` (1 = runs inside the calling process).

    ``dp`` runs in one process whatever the device count; every other strategy with several
    devices starts one process per device.
    """
    n = num_devices(tcfg)
    return 1 if str(tcfg.strategy).lower() == "dp" else n


def needs_launch(tcfg: Any) -> bool:
    """True when a unit must train in a ``modaltune fit`` subprocess (several processes)."""
    return num_processes(tcfg) > 1


def ray_task_options(tcfg: Any) -> dict[str, Any]:
    """Ray ``.options(...)`` of one benchmark unit: CPUs and GPUs from the trainer config.

    GPUs are requested only for ``accelerator: gpu`` / ``cuda`` (one per device; ``devices: auto``
    or ``-1`` count as 1 because Ray exposes only the GPUs it assigns). ``accelerator: auto`` asks
    Ray for no GPU, so such a unit trains on CPU: name the accelerator to get GPUs. A multi-process
    CPU unit asks for one CPU per process; data-loader workers add their CPUs.
    """
    acc = str(tcfg.accelerator).lower()
    workers = int(getattr(tcfg, "num_workers", 0) or 0)
    if acc in ("gpu", "cuda"):
        d = tcfg.devices
        n = 1 if d in ("auto", "-1", -1) else num_devices(tcfg)
        return {"num_cpus": 1 + workers, "num_gpus": n}
    return {"num_cpus": num_processes(tcfg) + workers, "num_gpus": 0}


def fit_in_subprocess(unit: Any, fold: Any, tcfg: Any, work: Path, *, method: Any, data: Any, eval_partition: str,
                      timeout: float | None = None):
    """Train one unit with ``python -m modaltune.cli fit`` in ``work`` and load the saved model.

    The unit's fold is written as a one-fold split file (``work/split.csv``) so the subprocess
    trains on exactly the benchmark's patients; the experiment config goes to ``work/fit.yaml`` and
    the subprocess output to ``work/fit.log``. A killed unit resumes from ``work/checkpoints``.

    Args:
        unit, fold: the benchmark unit and its ``Fold``.
        tcfg: the unit's ``TrainerConfig``; ``work``: the unit's work folder.
        method, data: the unit's ``MethodConfig`` and the benchmark's ``DataConfig``.
        eval_partition: ``split.eval_partition`` of the benchmark.

    Raises:
        ModaltuneError: the subprocess failed (its last error line is in the message).
    """
    import yaml

    from modaltune.data.splits import SplitSet
    from modaltune.errors import ModaltuneError
    from modaltune.fileio import atomic_write_text
    from modaltune.training.experiment_config import ExperimentConfig, SplitConfig
    from modaltune.training.trainer import FittedModel

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    if (work / "model" / "fitted.json").exists():  # trained before the unit was interrupted
        return FittedModel.load(work / "model")
    split_path = SplitSet(name=f"unit_fold{fold.index}", folds=[fold]).save(work / "split.csv")
    data = data.model_copy(update={"cohorts": [str(Path(unit.cohort_path).resolve())], "simulate": []})
    exp = ExperimentConfig(
        name=unit.uid,
        data=data,
        split=SplitConfig(file=str(split_path.resolve()), eval_partition=eval_partition),
        fold=fold.index,
        method=method,
        tasks=list(unit.tasks),
        trainer=tcfg,
    )
    atomic_write_text(work / "fit.yaml", yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    env = dict(os.environ)
    n = num_processes(tcfg)
    if str(tcfg.accelerator).lower() == "cpu" and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))  # n ranks share the cores
    # --verbose: fit.log is the record of the subprocess, so it keeps Lightning's start-up lines (DDP ranks)
    cmd = [sys.executable, "-m", "modaltune.cli", "--verbose", "fit", str(work / "fit.yaml"), "--out", str(work)]
    with open(work / "fit.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, timeout=timeout)
    if proc.returncode != 0 or not (work / "model" / "fitted.json").exists():
        lines = [ln.strip() for ln in (work / "fit.log").read_text(errors="replace").splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if ln.startswith("error:") or "Error" in ln), lines[-1] if lines else "no output")
        raise ModaltuneError(f"the {n}-process training subprocess exited with status {proc.returncode}: {last[:300]}",
                             where=work / "fit.log", fix="read the log; run `modaltune fit` on work/<unit>/fit.yaml to reproduce")
    return FittedModel.load(work / "model")
