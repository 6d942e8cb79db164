"""Losses against hand-computed values and reference libraries (torchsurv, lifelines)."""
from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modaltune.errors import ConfigError, InputError
from modaltune.losses import (
    UncertaintyWeighting,
    combine_task_losses,
    cox_partial_likelihood,
    cross_entropy,
    kl_text_distillation,
    nll_discrete_survival,
    regression_mse,
    task_loss,
)


def make_task_info(kind, name="t", n_classes=None, bin_edges=None):
    """The data layer's TaskInfo when available, else a stand-in with the same fields."""
    from modaltune.data.cohort import TaskSpec

    kw = {"classification": dict(label_column="y", classes=[f"c{i}" for i in range(n_classes or 2)]),
          "survival": dict(time_column="time", event_column="event"),
          "regression": dict(label_column="y")}[kind]
    spec = TaskSpec(name=name, kind=kind, **kw)
    class_names = list(spec.classes) if kind == "classification" else None
    try:
        from modaltune.data.dataset import TaskInfo

        return TaskInfo(spec=spec, n_classes=n_classes, class_names=class_names, bin_edges=bin_edges, class_counts=None)
    except Exception:  # noqa: BLE001 - fall back to a stand-in when the data layer's TaskInfo is unavailable
        return SimpleNamespace(spec=spec, n_classes=n_classes, class_names=class_names, bin_edges=bin_edges, class_counts=None)


# ---------------------------------------------------------------- discrete-time NLL
def _mcat_reference(hazard_logits, y, event, alpha, eps=1e-7):
    """Direct transcription of the published formula (probability space, c = 1 - event)."""
    h = torch.sigmoid(hazard_logits)
    s = torch.cumprod(1 - h, dim=1)
    c = (1 - event).view(-1, 1)
    y = y.view(-1, 1)
    s_pad = torch.cat([torch.ones_like(c), s], 1)
    unc = -(1 - c) * (torch.log(torch.gather(s_pad, 1, y).clamp(min=eps)) + torch.log(torch.gather(h, 1, y).clamp(min=eps)))
    cen = -c * torch.log(torch.gather(s_pad, 1, y + 1).clamp(min=eps))
    return ((1 - alpha) * (cen + unc) + alpha * unc).mean()


def test_nll_hand_computed():
    # hazards: patient A logits 0 -> h = (0.5, 0.5, 0.5); patient B logit log(3) -> h = 0.75 each.
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(3)] * 3])
    bins = torch.tensor([2, 1])
    event = torch.tensor([1.0, 0.0])
    # A: event in bin 2: S_pad[2] = 0.5*0.5 = 0.25, h_2 = 0.5 -> -(log 0.25 + log 0.5) = 3 log 2
    # B: censored in bin 1: S_pad[2] = 0.25*0.25 = 0.0625 -> -log 0.0625 = 4 log 2
    a = 3 * math.log(2)
    b = 4 * math.log(2)
    assert nll_discrete_survival(logits, bins, event).item() == pytest.approx((a + b) / 2, rel=1e-6)
    # alpha = 0.5: uncensored term counted with weight 1, censored term with weight 0.5
    assert nll_discrete_survival(logits, bins, event, alpha=0.5).item() == pytest.approx((a + 0.5 * b) / 2, rel=1e-6)


def test_nll_matches_reference_formula_random():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 4, generator=g) * 3
    y = torch.randint(0, 4, (16,), generator=g)
    ev = torch.randint(0, 2, (16,), generator=g).float()
    for alpha in (0.0, 0.4, 1.0):
        ours = nll_discrete_survival(logits, y, ev, alpha=alpha)
        assert ours.item() == pytest.approx(_mcat_reference(logits, y, ev, alpha).item(), rel=1e-5)


def test_nll_extreme_logits_stay_finite_and_gradients_flow():
    logits = torch.tensor([[-50.0, 50.0], [30.0, -30.0]], requires_grad=True)
    loss = nll_discrete_survival(logits, torch.tensor([1, 0]), torch.tensor([0.0, 1.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_nll_rejects_bad_inputs():
    with pytest.raises(InputError, match="bin"):
        nll_discrete_survival(torch.zeros(2, 4), torch.tensor([0, 4]), torch.tensor([1.0, 0.0]))
    with pytest.raises(InputError, match="0/1"):
        nll_discrete_survival(torch.zeros(2, 4), torch.tensor([0, 1]), torch.tensor([2.0, 0.0]))
    with pytest.raises(InputError, match="batch sizes"):
        nll_discrete_survival(torch.zeros(3, 4), torch.tensor([0, 1]), torch.tensor([1.0, 0.0]))
    with pytest.raises(InputError, match="non-finite"):
        nll_discrete_survival(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]), torch.tensor([1.0]))


# ---------------------------------------------------------------- Cox
def test_cox_hand_computed_with_ties():
    # risks r = (0, log 2, log 3, 0); times (1, 1, 2, 3); events (1, 1, 1, 0); exp(r) = (1, 2, 3, 1)
    r = torch.tensor([0.0, math.log(2), math.log(3), 0.0])
    t = torch.tensor([1.0, 1.0, 2.0, 3.0])
    e = torch.tensor([1.0, 1.0, 1.0, 0.0])
    # time 1: tied events {0, 1}, risk-set sum 1+2+3+1 = 7, tie sum 3
    #   Efron: (0 + log 2) - [log 7 + log(7 - 3/2)]
    #   Breslow: (0 + log 2) - 2 log 7
    # time 2: event {2}, risk set {2, 3}: log 3 - log 4
    efron = (math.log(2) - math.log(7) - math.log(5.5)) + (math.log(3) - math.log(4))
    breslow = (math.log(2) - 2 * math.log(7)) + (math.log(3) - math.log(4))
    assert cox_partial_likelihood(r, t, e).item() == pytest.approx(-efron / 3, rel=1e-6)
    assert cox_partial_likelihood(r, t, e, ties="breslow").item() == pytest.approx(-breslow / 3, rel=1e-6)


def test_cox_matches_torchsurv():
    from torchsurv.loss.cox import neg_partial_log_likelihood

    g = torch.Generator().manual_seed(1)
    r = torch.randn(40, generator=g)
    t = torch.randint(1, 8, (40,), generator=g).float()  # many ties
    e = torch.randint(0, 2, (40,), generator=g).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ties in ("efron", "breslow"):
            ref = neg_partial_log_likelihood(r, e.bool(), t, ties_method=ties, reduction="sum")
            ours = cox_partial_likelihood(r, t, e, ties=ties) * e.sum()
            assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_cox_matches_lifelines_efron_fit():
    lifelines = pytest.importorskip("lifelines")
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    t = np.round(rng.exponential(np.exp(-0.8 * x)) * 4) + 1  # rounded -> ties
    e = (rng.random(60) < 0.7).astype(float)
    cph = lifelines.CoxPHFitter().fit(pd.DataFrame({"x": x, "t": t, "e": e}), "t", "e")
    beta = float(cph.params_["x"])
    b = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
    loss = cox_partial_likelihood(b * torch.tensor(x), torch.tensor(t), torch.tensor(e))
    # lifelines reports the Efron log partial likelihood at its maximum
    assert (-loss * e.sum()).item() == pytest.approx(cph.log_likelihood_, rel=1e-6)
    loss.backward()
    assert abs(b.grad.item()) < 1e-4  # lifelines' beta is our optimum too


def test_cox_shift_invariant_and_stable():
    r = torch.tensor([1000.0, 1001.0, 999.0])
    t = torch.tensor([1.0, 2.0, 3.0])
    e = torch.tensor([1.0, 1.0, 0.0])
    a = cox_partial_likelihood(r, t, e)
    b = cox_partial_likelihood(r - 1000, t, e)
    assert torch.isfinite(a) and a.item() == pytest.approx(b.item(), rel=1e-6)


def test_cox_no_event_is_zero_with_graph():
    r = torch.randn(3, requires_grad=True)
    loss = cox_partial_likelihood(r, torch.tensor([1.0, 2, 3]), torch.zeros(3))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(r.grad, torch.zeros(3))


# ---------------------------------------------------------------- classification / regression / KL
def test_cross_entropy_hand_computed_and_weights():
    logits = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]])
    label = torch.tensor([0, 1])
    # p(0 | row0) = 3/4 ; p(1 | row1) = 1/2
    assert cross_entropy(logits, label).item() == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, rel=1e-6)
    w = torch.tensor([1.0, 3.0])
    # weighted mean: (1 * -log .75 + 3 * -log .5) / (1 + 3)
    expect = (-math.log(0.75) - 3 * math.log(0.5)) / 4
    assert cross_entropy(logits, label, w).item() == pytest.approx(expect, rel=1e-6)
    with pytest.raises(InputError, match="label"):
        cross_entropy(logits, torch.tensor([0, -1]))


def test_regression_mse():
    assert regression_mse(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 1.0])).item() == pytest.approx(2.5)


def test_kl_text_distillation_hand_computed():
    # model output (1, 0) and target (0, 1) after normalisation; T = 1
    # p = softmax(0, 1) = (1/(1+e), e/(1+e)); q = softmax(1, 0) = (e/(1+e), 1/(1+e))
    # KL(p||q) = p0 log(p0/q0) + p1 log(p1/q1) = (p1 - p0) * 1 = (e - 1)/(e + 1)
    s = torch.tensor([[2.0, 0.0]])
    z = torch.tensor([[0.0, 5.0]])
    expected = (math.e - 1) / (math.e + 1)
    assert kl_text_distillation(s, z).item() == pytest.approx(expected, rel=1e-6)
    # T = 2 halves the logits: log-ratios become -+0.5, so KL = 0.5 * (p1 - p0) = 0.5 (e^.5 - 1)/(e^.5 + 1)
    e5 = math.exp(0.5)
    assert kl_text_distillation(s, z, temperature=2.0).item() == pytest.approx((e5 - 1) / (e5 + 1) * 0.5, rel=1e-6)
    # batch mean, and masked rows ignored
    s2 = torch.cat([s, torch.tensor([[1.0, 1.0]])])
    z2 = torch.cat([z, torch.tensor([[1.0, 1.0]])])
    assert kl_text_distillation(s2, z2).item() == pytest.approx(expected / 2, rel=1e-6)
    assert kl_text_distillation(s2, z2, mask=torch.tensor([True, False])).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InputError, match="dim"):
        kl_text_distillation(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------- task_loss and weighting
def test_task_loss_masks_missing_labels():
    info = make_task_info("classification", n_classes=2)
    logits = torch.tensor([[math.log(3), 0.0], [5.0, -5.0], [0.0, 0.0]], requires_grad=True)
    label = torch.tensor([0, -1, 1])  # patient 1 has no label
    mask = torch.tensor([True, False, True])
    loss = task_loss(info, logits, {"label": label}, mask)
    assert loss.item() == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, rel=1e-6)
    loss.backward()
    assert torch.equal(logits.grad[1], torch.zeros(2))  # the masked patient gets no gradient


def test_task_loss_no_labels_returns_zero_with_grad():
    info = make_task_info("survival", bin_edges=np.array([0.0, 1, 2, 3, 4]))
    out = torch.randn(1, 4, requires_grad=True)
    tg = {"time": torch.tensor([1.0]), "event": torch.tensor([1.0]), "bin": torch.tensor([1])}
    loss = task_loss(info, out, tg, torch.tensor([False]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(out.grad, torch.zeros(1, 4))


def test_task_loss_survival_dispatch():
    info = make_task_info("survival", bin_edges=np.array([0.0, 1, 2, 3]))
    out = torch.zeros(2, 3)
    tg = {"time": torch.tensor([2.5, 0.5]), "event": torch.tensor([1.0, 0.0]), "bin": torch.tensor([2, 0])}
    mask = torch.tensor([True, True])
    # event in bin 2 with h = .5: -(log .25 + log .5) = 3 log 2 ; censored in bin 0: log 2 -> mean 2 log 2
    assert task_loss(info, out, tg, mask).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    with pytest.raises(InputError, match="3"):
        task_loss(info, torch.zeros(2, 5), tg, mask)
    cox = task_loss(info, torch.tensor([0.0, 0.0]), tg, mask, survival_loss="cox")
    assert cox.item() == pytest.approx(0.0)  # only one event, alone in its risk set
    with pytest.raises(ConfigError):
        task_loss(info, out, tg, mask, survival_loss="deephit")
    reg = make_task_info("regression")
    assert task_loss(reg, torch.tensor([1.0, 0.0]), {"value": torch.tensor([0.0, 0.0])}, torch.tensor([True, False])).item() == 1.0


def test_combine_fixed_and_uncertainty_weights():
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(4.0)}
    assert combine_task_losses(losses).item() == 6.0
    assert combine_task_losses(losses, {"b": 0.25}).item() == 3.0
    with pytest.raises(ConfigError, match="unknown"):
        combine_task_losses(losses, {"c": 1.0})
    uw = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.0, math.log(2)]))
    # exp(-0) * 2 + 0 + exp(-log 2) * 4 + log 2 = 2 + 2 + log 2
    assert combine_task_losses(losses, uw).item() == pytest.approx(4 + math.log(2), rel=1e-6)
    # learned weights move towards 1/L (the optimum of e^-s L + s is s = log L)
    uw = UncertaintyWeighting(2)
    opt = torch.optim.SGD(uw.parameters(), lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        combine_task_losses(losses, uw).backward()
        opt.step()
    assert uw.log_vars.detach().numpy() == pytest.approx([math.log(2), math.log(4)], abs=1e-2)


def test_uncertainty_weighting_skips_unlabelled_tasks():
    uw = UncertaintyWeighting(["a", "b"])
    out = torch.zeros(1, requires_grad=True)
    losses = {"a": torch.tensor(2.0), "b": 0.0 * out.sum()}  # task b had no label in this batch
    total = combine_task_losses(losses, uw, n_labelled={"a": 1, "b": 0})
    total.backward()
    assert total.item() == pytest.approx(2.0)
    # s_b receives a zero gradient instead of being pushed down by the lone "+ s" term
    assert uw.log_vars.grad.tolist() == pytest.approx([1 - 2.0, 0.0])
