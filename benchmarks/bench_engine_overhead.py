"""Engine overhead: epoch time of the same attention-MIL model through modaltune's Lightning engine
vs a plain PyTorch loop on the same in-memory simulated bags.

Both loops use the same model (``abmil`` from the method registry, one classification head), the
same batches (batch size 1, one bag per step, gradient accumulation), the same optimiser (Adam) and
the same device. The engine run is what ``modaltune fit`` does per epoch: ``MultiTaskLightningModule``
in a ``lightning.Trainer`` built by the engine (per-batch reseeding, dataset epoch callback,
``last.ckpt`` written every epoch, CSV logger with per-task losses, progress bar off). Data loading is
excluded on purpose: bags are tensors already in memory (on the device), so the difference is the
engine's own cost. Runs alternate (engine, plain, engine, plain, ...) and the first epoch of each run
is dropped as warm-up; the reported epoch time is the median over the remaining epochs of all runs.
Each epoch is timed twice: wall clock, and the CPU time of this process (``time.process_time``). On
a shared machine other jobs stretch wall time by whatever the load is at that moment, while CPU time
counts only the work this process did (it still includes cache and memory-bandwidth contention and
leaves out time spent waiting on the checkpoint write), so the CPU-time ratio is the steadier
estimate of the engine's own cost there; on a quiet machine the two agree. The 1/5/15-minute load
averages after each run are stored too.

    nice .venv/bin/python benchmarks/bench_engine_overhead.py [--bags 200 --patches 2048 --dim 512]
        [--device cpu|cuda] [--threads 1] [--out benchmarks/engine_overhead.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


class _Bags(torch.utils.data.Dataset):
    """Batches of the engine contract, batch size 1, built without copies from preloaded tensors."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor):
        self.feats, self.labels = feats, labels
        self.mask = torch.ones(1, feats.shape[1], dtype=torch.bool, device=feats.device)
        self.present = torch.ones(1, dtype=torch.bool, device=feats.device)
        self.epoch = 0

    def set_epoch(self, e: int) -> None:
        self.epoch = e

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict:
        return {
            "patient_id": [f"P{i}"],
            "site": ["S"],
            "slide": {"features": self.feats[i : i + 1], "mask": self.mask},
            "omics": {},
            "clinical": self.feats.new_zeros(1, 0),
            "text": [""],
            "modality_mask": {"slide": self.present},
            "targets": {"label": {"label": self.labels[i : i + 1]}},
            "target_mask": {"label": self.present},
        }


def _info(dim: int):
    from modaltune.data.cohort import TaskSpec
    from modaltune.data.dataset import CohortInfo, TaskInfo

    spec = TaskSpec(name="label", kind="classification", label_column="label", classes=["a", "b"])
    return CohortInfo(slide_dim=dim, slide_modality="slide", omics_dims={}, omics_feature_names={}, pathways=None, clinical_dim=0,
                      clinical_feature_names=[], text=False, tasks=[TaskInfo(spec, 2, ["a", "b"], None, {"a": 1, "b": 1})], modalities=["slide"], sites=["S"])


def _model(dim: int, embed: int, device: str, seed: int = 0):
    from modaltune.methods.registry import build_method

    torch.manual_seed(seed)
    return build_method("abmil", _info(dim), embed_dim=embed, attn_dim=embed // 2, dropout=0.0).to(device)


def _loader(ds):
    return torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=0)  # items are already batches


def plain_epochs(ds, dim, embed, device, epochs, accumulate, lr) -> tuple[list[float], list[float]]:
    model = _model(dim, embed, device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    model.train()
    times, cpu = [], []
    for _ in range(epochs):
        if device == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for i, batch in enumerate(_loader(ds)):
            out = model(batch)
            total, _ = model.loss(batch, out)
            (total / accumulate).backward()
            if (i + 1) % accumulate == 0 or i + 1 == len(ds):
                opt.step()
                opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def engine_epochs(ds, dim, embed, device, epochs, accumulate, lr) -> tuple[list[float], list[float]]:
    from lightning.pytorch.callbacks import Callback

    from modaltune.training.callbacks import SeedEachEpoch, SetEpoch, build_callbacks
    from modaltune.training.experiment_config import TrainerConfig
    from modaltune.training.module import MultiTaskLightningModule
    from modaltune.training.trainer import _lightning_trainer, _quiet_lightning

    class Timer(Callback):
        """Epoch k spans from its start hook to the next epoch's start (or the end of training), so
        everything the engine does at epoch end (logging, writing last.ckpt) is inside the span."""

        def __init__(self):
            self.stamps: list[float] = []
            self.cpu: list[float] = []

        def _stamp(self):
            if device == "cuda":
                torch.cuda.synchronize()
            self.stamps.append(time.perf_counter())
            self.cpu.append(time.process_time())

        def on_train_epoch_start(self, trainer, pl_module):
            self._stamp()

        def on_train_end(self, trainer, pl_module):
            self._stamp()

        @property
        def times(self) -> list[float]:
            return [b - a for a, b in zip(self.stamps[:-1], self.stamps[1:])]

        @property
        def cpu_times(self) -> list[float]:
            return [b - a for a, b in zip(self.cpu[:-1], self.cpu[1:])]

    model = _model(dim, embed, device)
    module = MultiTaskLightningModule(model, {"label": _info(dim).tasks[0]}, optimizer="adam", lr=lr, weight_decay=1e-5)
    tcfg = TrainerConfig(max_epochs=epochs, accumulate_grad_batches=accumulate, accelerator="gpu" if device == "cuda" else "cpu", progress_bar=False, deterministic=False)
    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        cbs = [timer] + build_callbacks(tcfg, Path(tmp) / "checkpoints", has_val=False) + [SeedEachEpoch(0)]
        assert any(isinstance(c, SetEpoch) for c in cbs)
        with _quiet_lightning():
            trainer = _lightning_trainer(tcfg, out_dir=Path(tmp), callbacks=cbs, has_val=False, progress=False)
            trainer.fit(module, train_dataloaders=_loader(ds))
    return timer.times, timer.cpu_times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bags", type=int, default=200)
    ap.add_argument("--patches", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--embed", type=int, default=256, help="ABMIL embedding width (attention width = embed/2)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is dropped as warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating (engine, plain) rounds")
    ap.add_argument("--accumulate", type=int, default=32)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/engine_overhead.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(args.bags, args.patches, args.dim, generator=g).to(args.device)
    labels = (feats[:, :, 0].mean(1) > 0).long()
    ds = _Bags(feats, labels)
    res = {"engine": [], "plain": []}
    cpu = {"engine": [], "plain": []}
    load = [os.getloadavg()]  # 1/5/15-min load averages: other jobs on a shared machine inflate epoch times
    for r in range(args.rounds):
        for name, fn in (("engine", engine_epochs), ("plain", plain_epochs)):
            t, c = fn(ds, args.dim, args.embed, args.device, args.epochs, args.accumulate, 2e-4)
            res[name] += t[1:]
            cpu[name] += c[1:]
            load.append(os.getloadavg())
            print(f"round {r} {name}: epochs {[round(x, 3) for x in t]} s wall, {[round(x, 3) for x in c]} s CPU (load {load[-1][0]:.2f})", flush=True)
    eng, pla = statistics.median(res["engine"]), statistics.median(res["plain"])
    out = {
        "bags": args.bags, "patches": args.patches, "dim": args.dim, "embed": args.embed, "accumulate": args.accumulate,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0), "threads": args.threads,
        "epoch_s_engine_median": eng, "epoch_s_plain_median": pla, "overhead_pct": 100 * (eng / pla - 1),
        "epoch_s_engine_min": min(res["engine"]), "epoch_s_plain_min": min(res["plain"]),
        "overhead_pct_min": 100 * (min(res["engine"]) / min(res["plain"]) - 1),
        "cpu_s_engine_median": statistics.median(cpu["engine"]), "cpu_s_plain_median": statistics.median(cpu["plain"]),
        "overhead_pct_cpu_median": 100 * (statistics.median(cpu["engine"]) / statistics.median(cpu["plain"]) - 1),
        "overhead_pct_cpu_min": 100 * (min(cpu["engine"]) / min(cpu["plain"]) - 1),
        "cpu_epochs_engine": cpu["engine"], "cpu_epochs_plain": cpu["plain"],
        "epochs_engine": res["engine"], "epochs_plain": res["plain"],
        "rounds": args.rounds, "epochs_per_run": args.epochs, "cpu_count": os.cpu_count(),
        "loadavg_1_5_15_after_each_run": [list(x) for x in load],
        "python": platform.python_version(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if not k.startswith("epochs_")}, indent=2))


if __name__ == "__main__":
    main()
