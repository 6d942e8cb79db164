"""ModalTune on a bf16-weights frozen backbone (``backbone_precision: bf16-weights``) through the engine.

One 1-epoch fit on a tiny simulated cohort (``modaltune.training.trainer.fit``, the path of ``modaltune
train`` / ``benchmark``): the frozen backbone stays bf16 and bit-unchanged, the adapter's trainable parameters
stay float32 and move, the outputs stay within a bf16 bound of the float32-backbone model holding the same
weights, and the saved model folder / Lightning checkpoint keep the precision.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from lightning.pytorch.callbacks import Callback

from modaltune.data.simulate import simulate_cohort
from modaltune.errors import ConfigError
from modaltune.methods.registry import build_method, validate_params
from modaltune.training.trainer import FittedModel, fit, predict, task_embeddings

EPS_BF16 = torch.finfo(torch.bfloat16).eps  # 2**-7 = 0.0078
PARAMS = {"pathways": "builtin", "gene_mixer": {"token_dim": 16, "n_blocks": 1, "channel_hidden": 8},
          "backbone_params": {"embed_dim": 32, "depth": 2, "num_heads": 2}, "attn_dim": 16, "heads": 2, "ffn_dim": 16, "out_dim": 32,
          "backbone_precision": "bf16-weights"}
TRAINER = {"max_epochs": 1, "max_patches": 32, "logger": "none", "checkpoint": True, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4}


class _Snapshot(Callback):
    """The model's parameters (name -> copy) as they were when training started."""

    def __init__(self):
        self.before: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer, pl_module):
        self.before = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16w")
    c = simulate_cohort(root / "cohort", preset="tiny", seed=2, n_patients=24)
    fold = c.split("kfold5").folds[0]
    snap = _Snapshot()
    f = fit(c, fold, "modaltune", params=PARAMS, trainer=TRAINER, out_dir=root / "run", callbacks=[snap], progress=False)
    return c, fold, f, snap.before, root / "run"


def _backbone(model):
    return model.adapter.backbone


def test_frozen_backbone_stays_bf16_and_unchanged_adapter_stays_fp32_and_learns(trained):
    _, _, f, before, _ = trained
    model = f.model
    bb = dict(_backbone(model).named_parameters())
    assert bb and all(p.dtype == torch.bfloat16 and not p.requires_grad for p in bb.values())
    for name, p in model.named_parameters():
        if name.startswith("adapter.backbone."):
            assert torch.equal(p, before[name]), f"frozen backbone weight {name} moved"
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    adapter = {n: p for n, p in trainable.items() if n.startswith("adapter.")}
    assert adapter and all(p.dtype == torch.float32 for p in trainable.values())
    # the zero-initialised injector gates receive a gradient at the first step (the attention output is not zero)
    gates = [n for n in adapter if n.endswith(".gamma")]
    assert gates and all(not torch.equal(adapter[n], before[n]) for n in gates)
    moved = [n for n, p in adapter.items() if not torch.equal(p, before[n])]
    assert len(moved) > len(adapter) // 2, f"only {len(moved)} of {len(adapter)} adapter tensors changed"


def test_predictions_finite_and_within_bf16_bound_of_the_fp32_backbone(trained):
    c, fold, f, _, _ = trained
    ids = list(fold.test)
    p = predict(f, c, ids)
    surv = p[p["task"] == "survival"]
    assert len(surv) == len(ids) and np.isfinite(surv["risk"].to_numpy(float)).all()
    # the float32-backbone model with the same (bf16-representable) weights: the reference
    ref_model = build_method("modaltune", f.info, **{**PARAMS, "backbone_precision": "fp32"})
    ref_model.load_state_dict(f.model.state_dict())
    assert all(p_.dtype == torch.float32 for p_ in _backbone(ref_model).parameters())
    ref = FittedModel(f.method, f.kind, ref_model.eval(), f.preprocessor, f.tasks, f.trainer, f.train_ids)
    got, want = task_embeddings(f, c, ids), task_embeddings(ref, c, ids)
    assert set(got) == set(want) == {"subtype", "survival"}
    for task in want:
        g, w = got[task].to_numpy(), want[task].to_numpy()
        assert np.isfinite(g).all() and g.shape == w.shape == (len(ids), 32)
        scale = float(np.abs(w).max())
        err = float(np.abs(g - w).max())
        # the bf16-weights encoder's own bound (precision.py: 4 eps_bf16 max|ref| = 3.1e-2 relative), here through the
        # adapter and the fusion too; measured 0.15-0.19 eps_bf16 max|ref| on this cohort
        assert err <= 4 * EPS_BF16 * scale, f"{task}: max abs diff {err:.3g} vs scale {scale:.3g}"
        assert err > 0, "the bf16 path gave float32-identical embeddings: the backbone did not run in bf16"


def test_model_folder_and_checkpoint_keep_the_precision(trained):
    c, fold, f, _, run = trained
    loaded = FittedModel.load(run / "model")
    assert loaded.method.params["backbone_precision"] == "bf16-weights"
    assert all(p.dtype == torch.bfloat16 for p in _backbone(loaded.model).parameters())
    assert all(p.dtype == torch.float32 for n, p in loaded.model.named_parameters() if not n.startswith("adapter.backbone."))
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, f.model.state_dict()[k]), k
    ids = list(fold.test)
    a, b = task_embeddings(f, c, ids), task_embeddings(loaded, c, ids)
    for task in a:  # same weights, same dtypes, same code path
        np.testing.assert_array_equal(a[task].to_numpy(), b[task].to_numpy())
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sd = ckpt["state_dict"]
    bb = [k for k in sd if ".adapter.backbone." in k and sd[k].is_floating_point()]
    assert bb and all(sd[k].dtype == torch.bfloat16 for k in bb)
    assert all(sd[k].dtype == torch.float32 for k in sd if ".adapter.injectors." in k)


def test_unknown_precision_is_one_line_config_error_naming_the_field():
    with pytest.raises(ConfigError) as ei:
        validate_params("modaltune", {"backbone_precision": "bf16"})
    msg = str(ei.value)
    assert "\n" not in msg and "method.params.backbone_precision" in msg and "'bf16-weights'" in msg and "got 'bf16'" in msg
    with pytest.raises(ConfigError) as ei:  # the pass-through spelling is checked alike, and named as written
        validate_params("modaltune", {"backbone_params": {"precision": "fp16"}})
    msg = str(ei.value)
    assert "\n" not in msg and "method.params.backbone_params" in msg and "'fp16'" in msg


def test_backbone_params_precision_is_the_same_setting_and_may_not_disagree():
    p = validate_params("modaltune", {"backbone_params": {"precision": "bf16-weights"}})
    assert p.backbone_precision == "bf16-weights"
    assert validate_params("slide_fm", {"backbone_params": {"precision": "bf16-weights"}, "backbone_precision": "bf16-weights"}).backbone_precision == "bf16-weights"
    with pytest.raises(ConfigError, match=r"method\.params\.backbone_precision: .*'bf16-weights' disagrees with backbone_params\.precision 'fp32'") as ei:
        validate_params("modaltune", {"backbone_params": {"precision": "fp32"}, "backbone_precision": "bf16-weights"})
    assert "\n" not in str(ei.value)


def test_slide_fm_refuses_tuning_a_bf16_backbone(trained):
    _, _, f, _, _ = trained
    with pytest.raises(ConfigError, match=r"tune: true would train it") as ei:
        build_method("slide_fm", f.info, backbone_params={"embed_dim": 32, "depth": 2, "num_heads": 2}, backbone_precision="bf16-weights", tune=True)
    assert "method.params.backbone_precision" in str(ei.value) and "\n" not in str(ei.value)
