"""Heads: output shapes, risk/survival/probability conversions, text-similarity scoring."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modaltune.errors import ConfigError, InputError
from modaltune.heads import TextSimilarityHead, build_head, probs_from_output, risk_from_output, survival_curve


def make_task_info(kind, name="t", n_classes=None, bin_edges=None):
    from modaltune.data.cohort import TaskSpec

    kw = {"classification": dict(label_column="y", classes=[f"c{i}" for i in range(n_classes or 2)]),
          "survival": dict(time_column="time", event_column="event"),
          "regression": dict(label_column="y")}[kind]
    spec = TaskSpec(name=name, kind=kind, **kw)
    names = list(spec.classes) if kind == "classification" else None
    try:
        from modaltune.data.dataset import TaskInfo

        return TaskInfo(spec=spec, n_classes=n_classes, class_names=names, bin_edges=bin_edges, class_counts=None)
    except Exception:  # noqa: BLE001 - fall back to a stand-in when the data layer's TaskInfo is unavailable
        return SimpleNamespace(spec=spec, n_classes=n_classes, class_names=names, bin_edges=bin_edges, class_counts=None)


EDGES = np.array([0.0, 10, 20, 30, 40.0])


@pytest.mark.parametrize(
    "kind,kw,shape",
    [
        ("classification", dict(n_classes=3), (5, 3)),
        ("survival", dict(bin_edges=EDGES), (5, 4)),
        ("regression", {}, (5,)),
    ],
)
def test_head_shapes(kind, kw, shape):
    head = build_head(make_task_info(kind, **kw), 8, hidden=16, dropout=0.1)
    assert head(torch.randn(5, 8)).shape == shape


def test_cox_head_and_errors():
    info = make_task_info("survival", bin_edges=EDGES)
    assert build_head(info, 8, survival_head="cox")(torch.randn(3, 8)).shape == (3,)
    with pytest.raises(ConfigError, match="survival head"):
        build_head(info, 8, survival_head="weibull")
    with pytest.raises(InputError, match="bin edges"):
        build_head(make_task_info("survival"), 8)  # no bins -> discrete head impossible
    with pytest.raises(InputError, match=r"\(B, 8\)"):
        build_head(info, 8)(torch.randn(3, 7))


def test_survival_curve_and_risk_hand_computed():
    # logits 0 -> h = .5: S = (.5, .25, .125); logits log 3 -> h = .75: S = (.25, .0625, .015625)
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(3)] * 3])
    s = survival_curve(logits)
    assert s.numpy() == pytest.approx(np.array([[0.5, 0.25, 0.125], [0.25, 0.0625, 0.015625]]), rel=1e-6)
    info = make_task_info("survival", bin_edges=np.array([0.0, 1, 2, 3]))
    risk = risk_from_output(info, logits)
    assert risk.numpy() == pytest.approx([-0.875, -0.328125], rel=1e-6)
    assert risk[1] > risk[0]  # higher hazard -> higher risk
    cox = torch.tensor([0.3, -1.0])
    assert torch.equal(risk_from_output(info, cox, "cox"), cox)
    with pytest.raises(InputError):
        risk_from_output(make_task_info("classification", n_classes=2), logits)


def test_probs_from_output():
    info = make_task_info("classification", n_classes=2)
    p = probs_from_output(info, torch.tensor([[math.log(3), 0.0]]))
    assert p.numpy().tolist()[0] == pytest.approx([0.75, 0.25])


def test_text_similarity_head_scores_and_unseen_labels():
    emb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    head = TextSimilarityHead(emb, temperature=0.5)
    x = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    # cos: row0 (1, 0); row1 (1/sqrt2, 1/sqrt2); divided by T = .5
    r2 = 1 / math.sqrt(2)
    assert head(x).detach().numpy() == pytest.approx(np.array([[2.0, 0.0], [2 * r2, 2 * r2]]), rel=1e-5)
    # a new, unseen label (third axis) can be scored without retraining
    head.set_class_embeddings(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert head(torch.tensor([[0.0, 0.0, 5.0]])).argmax(1).item() == 2
    with pytest.raises(InputError, match="dim"):
        head.set_class_embeddings(torch.ones(2, 4))
    # with a projection, trainable end-to-end
    proj = TextSimilarityHead(emb, in_dim=5, learn_temperature=True)
    out = proj(torch.randn(4, 5))
    out.sum().backward()
    assert out.shape == (4, 2) and proj.proj.weight.grad is not None and proj.logit_scale.grad is not None
