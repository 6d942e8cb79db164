"""pretrain -> benchmark round trip on the tiny simulated cohort (the ``tiny`` preset the example configs use):
the shipped example config ``configs/examples/pretrain_symile.yaml`` pretrains every fold through the CLI, and
``modaltune benchmark`` reads the fold folders as a frozen embedding (``freeze: true``) with the linear probes
of ``evaluation.probes``, and as the initialisation of fine-tuning (``freeze: false``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from modaltune.data.simulate import simulate_cohort
from modaltune.training.experiment_config import BenchmarkConfig

REPO = Path(__file__).resolve().parents[2]
SPLIT = {"kfold": 2, "seed": 0}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[Path, Path]:
    from modaltune.cli import app

    root = tmp_path_factory.mktemp("tiny")
    simulate_cohort(root / "tiny", preset="tiny", seed=0)
    cfg = yaml.safe_load((REPO / "configs/examples/pretrain_symile.yaml").read_text())
    # the example as shipped, made small: 1 epoch, 4-d embeddings, 2 folds
    cfg.update(cohort=str(root / "tiny"), split=SPLIT, trainer={**cfg["trainer"], "epochs": 1, "batch_size": 8},
               encoder={**cfg["encoder"], "embed_dim": 4, "hidden": 8, "max_patches": 16})
    (root / "pre.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["pretrain", str(root / "pre.yaml"), "--out", str(root / "pre"), "--folds", "all"])
    assert r.exit_code == 0, r.output
    return root / "tiny", root / "pre"


def _bench(cohort: Path, pre: Path, epochs: int) -> BenchmarkConfig:
    m = {"name": "pretrained_probe", "modalities": ["slide", "rna", "clinical"]}
    return BenchmarkConfig.model_validate({
        "name": "tiny_pre", "data": {"cohorts": [str(cohort)]}, "split": SPLIT, "tasks": ["subtype"],
        "methods": [{**m, "label": "frozen", "params": {"checkpoint": str(pre / "fold{fold}"), "freeze": True}},
                    {**m, "label": "finetuned", "params": {"checkpoint": str(pre / "fold{fold}"), "freeze": False}}],
        "trainer": {"max_epochs": epochs, "batch_size": 8, "lr": 1e-2, "max_patches": 16, "logger": "none"},
        "evaluation": {"bootstrap": 10, "protocol": "test", "probes": True}})


def test_pretrain_then_benchmark_probe_and_finetune(pretrained, tmp_path):
    """Both variants run on both folds (the leak guard passes: each fold reads its own pretraining), and the
    linear probes on the FROZEN embedding do not depend on how long the heads trained (1 vs 3 epochs: equal
    to float tolerance), while the fine-tuned embedding, and so its probe, moves with training."""
    from modaltune.benchmark.runner import run_benchmark

    cohort, pre = pretrained
    tabs = {}
    for epochs in (1, 3):
        res = run_benchmark(_bench(cohort, pre, epochs), tmp_path / f"run{epochs}", progress=False)
        assert len(res.statuses) == 4 and not res.failed
        df = pd.read_csv(tmp_path / f"run{epochs}" / "results.csv")
        tabs[epochs] = df
        probe = df[df["metric"] == "probe_balanced_accuracy"]
        assert set(zip(probe["method"], probe["fold"])) == {(m, f) for m in ("frozen", "finetuned") for f in (0, 1)}
        assert probe["value"].between(0, 1).all()

    def probe_values(epochs: int, method: str) -> pd.Series:
        d = tabs[epochs]
        return d[(d["method"] == method) & (d["metric"] == "probe_macro_auc")].set_index("fold")["value"].sort_index()

    pd.testing.assert_series_equal(probe_values(1, "frozen"), probe_values(3, "frozen"), rtol=1e-6, atol=1e-6)
    assert not probe_values(1, "finetuned").equals(probe_values(3, "finetuned"))
