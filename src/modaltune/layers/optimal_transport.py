"""Optimal-transport co-attention (MOTCat, Xu and Chen, ICCV 2023; Innse/MOTCat ``OT_Attn_assem``).

For patch tokens ``x (N, D)`` and genomic tokens ``y (S, D)``, each shifted by its own row minimum
(``x_i - min_d x_id``, as the official ``normalize_feature``), the cost is the squared Euclidean
distance scaled to max 1, ``M_ij = ||x_i - y_j||^2 / max M``, and the plan is the entropic
*unbalanced* OT plan with uniform marginals ``a = 1/N``, ``b = 1/S``::

    P = argmin_P <P, M> - reg H(P) + tau KL(P 1 | a) + tau KL(P^T 1 | b)

solved by POT (``ot.unbalanced.sinkhorn_knopp_unbalanced``, entropy regulariser, float64):
``P = diag(u) K diag(v)``, ``K = exp(-M / reg)``, ``u = (a / K v)^f``, ``v = (b / K^T u)^f``,
``f = tau / (tau + reg)``. The co-attended genomic-guided tokens are ``P^T x (S, D)``.

Gradients: as in the official code the plan is computed from a detached cost and is itself a
constant; gradients reach the patch tokens through ``P^T x`` only (none through the cost, the
genomic tokens or the plan).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from modaltune.errors import ConfigError

__all__ = ["OTCoAttention", "unbalanced_plan"]


def _pot():
    try:
        import ot
        import ot.unbalanced
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("MOTCat's optimal-transport co-attention needs the POT library", where="method motcat",
                          fix="pip install 'modaltune[ot]' (or pip install pot)") from exc
    return ot


def unbalanced_plan(cost: torch.Tensor, reg: float, tau: float, a: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
    """Entropic unbalanced OT plan ``(N, S)`` of a cost matrix ``(N, S)`` (POT, float64, no gradient).

    ``a``, ``b``: marginals (uniform by default). Returned in the dtype of ``cost``.
    """
    ot = _pot()
    with torch.no_grad():
        m = cost.detach().double()
        n, s = m.shape
        a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=m.device) if a is None else a.double()
        b = torch.full((s,), 1.0 / s, dtype=torch.float64, device=m.device) if b is None else b.double()
        with warnings.catch_warnings():
            # reg_type="entropy" (the regulariser of POT <= 0.9.4, which MOTCat used) warns that it ignores c
            warnings.filterwarnings("ignore", message="If reg_type = entropy")
            plan = ot.unbalanced.sinkhorn_knopp_unbalanced(a, b, m, reg, tau, reg_type="entropy")
    return plan.to(cost.dtype)


class OTCoAttention(nn.Module):
    """MOTCat's OT co-attention (no parameters).

    Args:
        reg: entropic regularisation (official ``ot_reg`` 0.1).
        tau: marginal relaxation (official ``ot_tau`` 0.5).

    Shapes: ``forward(x (N, D), y (S, D)) -> (P^T x (S, D), P (N, S))``.
    """

    def __init__(self, reg: float = 0.1, tau: float = 0.5):
        super().__init__()
        self.reg, self.tau = float(reg), float(tau)

    def plan(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = x - x.min(dim=-1, keepdim=True).values
            y = y - y.min(dim=-1, keepdim=True).values
            cost = torch.cdist(x.double(), y.double()) ** 2
            cost = cost / cost.max().clamp_min(torch.finfo(torch.float64).tiny)  # all-equal tokens: zero cost, not NaN
        return unbalanced_plan(cost, self.reg, self.tau).to(x.dtype)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.plan(x, y)
        return p.transpose(0, 1) @ x, p
