"""Run slides as Ray tasks (the ``[distributed]`` extra): one task per slide, one GPU per task where
the cluster has GPUs. Every task writes its own ``<slide>.h5`` atomically into the shared output
folder, so a lost worker leaves only a ``.tmp`` file and a rerun with resume does the remainder.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from modaltune.errors import require

__all__ = ["run_with_ray"]


def _task(path: str, out_dir: str, cfg_dict: dict) -> dict:
    from .pipeline import ExtractConfig, process_slide

    cfg = ExtractConfig(**cfg_dict)
    return asdict(process_slide(path, out_dir, cfg))


def run_with_ray(paths: Sequence[Path], out_dir: Path, cfg, address: str) -> list:
    """Process ``paths`` as Ray tasks and return their :class:`SlideResult` in input order.

    ``address``: 'auto' (join the running cluster, or the Ray already initialised in this process),
    'local' (start a local Ray), or a cluster address such as 'ray://head:10001'. A Ray started here
    is shut down at the end; one initialised by the caller is left running.
    """
    from tqdm.auto import tqdm

    from .pipeline import SlideResult

    ray = require("ray", "distributed", "running slides as Ray tasks")
    started = False
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                 include_dashboard=False, log_to_driver=False)
        started = True
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        cfg_dict = asdict(cfg)
        cfg_dict["progress"] = False  # per-slide bars from many workers would interleave
        if not gpus:
            cfg_dict["device"] = "cpu" if cfg_dict["device"] == "auto" else cfg_dict["device"]
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(_task)
        refs = [remote.remote(str(p), str(out_dir), cfg_dict) for p in paths]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(refs)
        pending = list(refs)
        bar = tqdm(total=len(refs), desc="slides (ray)", unit="slide", disable=not cfg.progress)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = index[ref]
                try:
                    results[i] = SlideResult(**ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - a crashed worker is one failed slide, not a failed run
                    p = Path(paths[i])
                    results[i] = SlideResult(slide=p.stem, path=str(p), status="failed",
                                             error=f"ray task failed: {type(exc).__name__}: {exc}".replace("\n", " "))
                bar.update(1)
        bar.close()
        return results
    finally:
        if started:
            ray.shutdown()
