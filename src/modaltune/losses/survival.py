"""Survival losses: discrete-time hazard NLL (Zadeh & Schmid 2020, as in MCAT/PORPOISE) and the
Cox partial likelihood with Efron (or Breslow) ties.

Both take one row per patient; rows of patients without a usable label must be removed by the
caller (:func:`modaltune.losses.task_loss` does it with the task's target mask).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from modaltune.errors import InputError

from ._checks import _check_binary, _check_finite, _check_same_len, _check_tensor

__all__ = ["nll_discrete_survival", "cox_partial_likelihood"]


def nll_discrete_survival(
    hazard_logits: torch.Tensor,
    bin: torch.Tensor,
    event: torch.Tensor,
    alpha: float = 0.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    r"""Negative log-likelihood of a discrete-time hazard model (mean over the batch).

    With :math:`h_k = \sigma(\text{logit}_k)` the hazard of bin :math:`k` (probability that the
    event happens in bin :math:`k` given survival to its start), :math:`S_k = \prod_{j \le k}(1-h_j)`
    and :math:`S^{pad} = [1, S_0, \dots, S_{K-1}]`, a patient whose time falls in bin :math:`y` has

    - uncensored (event = 1): :math:`-\log S^{pad}_y - \log h_y` (survived the earlier bins, died in :math:`y`)
    - censored (event = 0):   :math:`-\log S^{pad}_{y+1}` (survived bin :math:`y`)

    and ``loss = mean((1 - alpha) * (censored + uncensored) + alpha * uncensored)``. This is the
    MCAT/PORPOISE formulation (which writes ``c = 1 - event``). Probabilities are clamped at ``eps``
    before the log exactly like the reference code, but computed in log space
    (``logsigmoid``) so large logits do not underflow.

    Args:
        hazard_logits: (B, K) float, one logit per time bin.
        bin: (B,) int64 in ``[0, K)``, the bin of each patient's time (from
            :func:`modaltune.data.splits.assign_survival_bins`).
        event: (B,) float or int, 1 = event observed, 0 = censored.
        alpha: weight in [0, 1] of the extra uncensored term (0 and 0.5 in the protocols).
        eps: probability floor inside the logs.

    Returns:
        scalar tensor.

    Example:
        >>> logits = torch.zeros(2, 3)          # every hazard 0.5
        >>> # event in bin 1: -(log 0.5 + log 0.5); censored in bin 0: -log 0.5
        >>> loss = nll_discrete_survival(logits, torch.tensor([1, 0]), torch.tensor([1.0, 0.0]))
        >>> round(loss.item(), 4), round(3 * math.log(2) / 2, 4)
        (1.0397, 1.0397)
    """
    where = "nll_discrete_survival"
    _check_tensor(hazard_logits, "hazard_logits", 2, where)
    _check_tensor(bin, "bin", 1, where)
    _check_tensor(event, "event", 1, where)
    _check_same_len(where, hazard_logits=hazard_logits, bin=bin, event=event)
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}", where=where)
    k = hazard_logits.shape[1]
    if bin.dtype.is_floating_point:
        raise InputError("'bin' must be an integer tensor (bin index per patient)", where=where)
    if len(bin) and (int(bin.min()) < 0 or int(bin.max()) >= k):
        raise InputError(f"'bin' values must be in [0, {k}), got [{int(bin.min())}, {int(bin.max())}]", where=where,
                         fix="the number of head outputs must equal the number of survival bins")
    _check_binary(event, "event", where)
    _check_finite(hazard_logits, "hazard_logits", where)

    log_eps = math.log(eps)
    y = bin.long().view(-1, 1)
    ev = event.to(hazard_logits.dtype).view(-1, 1)
    log_h = F.logsigmoid(hazard_logits)
    log_1mh = F.logsigmoid(-hazard_logits)
    log_s = torch.cumsum(log_1mh, dim=1)  # log S_k
    log_s_pad = torch.cat([torch.zeros_like(log_s[:, :1]), log_s], dim=1)  # (B, K+1)
    # clamp(min=log eps) == log(clamp(p, min=eps)): same values and (zero) gradients as the reference
    lsp_y = torch.gather(log_s_pad, 1, y).clamp(min=log_eps)
    lh_y = torch.gather(log_h, 1, y).clamp(min=log_eps)
    lsp_y1 = torch.gather(log_s_pad, 1, y + 1).clamp(min=log_eps)
    uncensored = -ev * (lsp_y + lh_y)
    censored = -(1.0 - ev) * lsp_y1
    loss = (1.0 - alpha) * (censored + uncensored) + alpha * uncensored
    return loss.mean()


def cox_partial_likelihood(
    risk: torch.Tensor,
    time: torch.Tensor,
    event: torch.Tensor,
    ties: str = "efron",
) -> torch.Tensor:
    r"""Negative Cox partial log-likelihood divided by the number of events.

    For distinct event times :math:`\xi_k` with :math:`D_k` the :math:`m_k` patients having the
    event at :math:`\xi_k` and :math:`R_k = \{j: t_j \ge \xi_k\}` the risk set,

    - Breslow: :math:`\ell = \sum_k \big[\sum_{i\in D_k} r_i - m_k \log\sum_{j\in R_k} e^{r_j}\big]`
    - Efron: :math:`\ell = \sum_k \big[\sum_{i\in D_k} r_i - \sum_{l=0}^{m_k-1}
      \log\big(\sum_{j\in R_k} e^{r_j} - \tfrac{l}{m_k}\sum_{i\in D_k} e^{r_i}\big)\big]`

    and the loss is :math:`-\ell / \sum_k m_k`. Computed with a shift by ``max(risk)`` so large
    risks do not overflow. Implemented here (not via torchsurv) because torchsurv warns on every
    batch with ties and returns a zero that is detached from the graph when a batch has no event;
    tests check the values against torchsurv and lifelines.

    Args:
        risk: (B,) float log relative hazard (higher = earlier event).
        time: (B,) float follow-up time.
        event: (B,) 1 = event, 0 = censored.
        ties: ``"efron"`` (default, as lifelines/R) or ``"breslow"``.

    Returns:
        scalar tensor; ``0 * risk.sum()`` (zero that keeps the graph) when the batch has no event.

    Example:
        >>> # two patients, both events, no ties: -[(r1 - log(e^r1 + e^r2)) + (r2 - r2)] / 2
        >>> r = torch.tensor([0.0, 0.0]); t = torch.tensor([1.0, 2.0]); e = torch.tensor([1.0, 1.0])
        >>> round(cox_partial_likelihood(r, t, e).item(), 4), round(math.log(2) / 2, 4)
        (0.3466, 0.3466)
    """
    where = "cox_partial_likelihood"
    _check_tensor(risk, "risk", 1, where)
    _check_tensor(time, "time", 1, where)
    _check_tensor(event, "event", 1, where)
    _check_same_len(where, risk=risk, time=time, event=event)
    if ties not in ("efron", "breslow"):
        raise InputError(f"unknown ties method '{ties}'", where=where, fix="use 'efron' or 'breslow'")
    _check_binary(event, "event", where)
    _check_finite(risk, "risk", where)
    _check_finite(time, "time", where)
    ev = event.bool()
    n_events = int(ev.sum())
    if n_events == 0:
        return 0.0 * risk.sum()

    t = time.to(risk.dtype)
    shift = risk.detach().max()
    w = torch.exp(risk - shift)  # exp(r_j - shift), all <= 1
    uniq, inv = torch.unique(t[ev], return_inverse=True)  # distinct event times (K,)
    # risk-set sums at each distinct event time: sum_j w_j [t_j >= xi_k]
    at_risk = (t.view(1, -1) >= uniq.view(-1, 1)).to(risk.dtype)  # (K, B)
    risk_sum = at_risk @ w  # (K,)
    # per-event-time tie statistics
    m = torch.zeros_like(uniq).index_add_(0, inv, torch.ones_like(w[ev]))
    tie_w = torch.zeros_like(uniq).index_add_(0, inv, w[ev])
    if ties == "breslow":
        log_den = torch.log(risk_sum)[inv]  # one term per event
    else:
        # rank l = 0..m_k-1 of each event within its tie group (order within a group is irrelevant)
        order = torch.argsort(inv, stable=True)
        sorted_inv = inv[order]
        first = torch.searchsorted(sorted_inv, sorted_inv, right=False)
        rank = torch.empty_like(inv)
        rank[order] = torch.arange(len(inv), device=inv.device) - first
        frac = rank.to(risk.dtype) / m[inv]
        log_den = torch.log(risk_sum[inv] - frac * tie_w[inv])
    # log(sum exp(r)) = log(sum w) + shift
    ll = (risk[ev] - shift).sum() - log_den.sum()
    return -ll / n_events
