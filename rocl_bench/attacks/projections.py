"""Steps and projections per norm. The ℓ1 projection is exact on the ℓ1 ball intersected with the [0, 1] box."""
from __future__ import annotations

import torch


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def project_l1_box(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of delta onto {d : ‖d‖₁ ≤ eps, 0 ≤ x + d ≤ 1}, exactly, for a whole batch.

    The solution is d_i = sign(v_i)·clip(|v_i| − λ, 0, c_i), with c_i the room left in the box in v_i's
    direction and λ ≥ 0 the smallest value giving ‖d‖₁ ≤ eps. s(λ) = Σ clip(|v_i| − λ, 0, c_i) is piecewise
    linear with breakpoints at |v_i| − c_i and |v_i|; we sort the breakpoints, follow the slope with cumulative
    sums, and interpolate inside the interval where s crosses eps. No iteration, no tolerance.
    """
    b = x.shape[0]
    v = _flat(delta)
    xf = _flat(x)
    cap = torch.where(v > 0, 1 - xf, xf).clamp(min=0)
    a = v.abs()
    s0 = torch.minimum(a, cap).sum(1)
    need = s0 > eps
    if not bool(need.any()):
        return torch.sign(v).mul(torch.minimum(a, cap)).view_as(delta)
    starts = (a - cap).clamp(min=0)                  # λ at which coordinate i starts shrinking
    ends = a                                          # λ at which it reaches 0
    points = torch.cat([starts, ends], 1)
    change = torch.cat([torch.ones_like(a), -torch.ones_like(a)], 1)
    change = torch.where(torch.cat([cap > 0, cap > 0], 1), change, torch.zeros_like(change))
    order = torch.argsort(points, 1)
    t = torch.gather(points, 1, order)
    active = torch.cumsum(torch.gather(change, 1, order), 1)          # slope magnitude just after t_k
    widths = torch.diff(t, dim=1, prepend=torch.zeros(b, 1, device=t.device, dtype=t.dtype))
    prev_active = torch.cat([torch.zeros(b, 1, device=t.device, dtype=t.dtype), active[:, :-1]], 1)
    s_at = s0[:, None] - torch.cumsum(prev_active * widths, 1)        # s(t_k)
    below = s_at <= eps
    k = torch.where(below.any(1), below.float().argmax(1), torch.full((b,), t.shape[1] - 1, device=t.device))
    kk = k[:, None]
    t_k = t.gather(1, kk).squeeze(1)
    slope = prev_active.gather(1, kk).squeeze(1)
    t_prev = torch.where(k > 0, t.gather(1, (kk - 1).clamp(min=0)).squeeze(1), torch.zeros_like(t_k))
    s_prev = torch.where(k > 0, s_at.gather(1, (kk - 1).clamp(min=0)).squeeze(1), s0)
    lam = torch.where(slope > 0, t_prev + (s_prev - eps) / slope.clamp(min=1), t_k)
    lam = torch.where(need, lam.clamp(min=0), torch.zeros_like(lam))
    d = torch.sign(v) * torch.minimum((a - lam[:, None]).clamp(min=0), cap)
    # guard against round-off pushing the norm a hair over eps
    norm = d.abs().sum(1)
    d = d * torch.where(norm > eps, eps / norm.clamp(min=1e-12), torch.ones_like(norm))[:, None]
    return d.view_as(delta)


def project(delta: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Bring delta back into the ε-ball of `norm` and keep x + delta inside [0, 1]."""
    if norm == "linf":
        return (x + delta.clamp(-eps, eps)).clamp(0, 1) - x
    if norm == "l2":
        n = _flat(delta).norm(dim=1).clamp(min=1e-12)
        delta = delta * _per_sample(torch.clamp(eps / n, max=1.0), delta)
        return (x + delta).clamp(0, 1) - x      # clipping toward x only shrinks the ℓ2 norm
    if norm == "l1":
        return project_l1_box(delta, x, eps)
    raise ValueError(f"unknown norm {norm}")


def random_start(x: torch.Tensor, norm: str, eps: float, g: torch.Generator) -> torch.Tensor:
    """A random point of the ε-ball (uniform for ℓ∞; random direction and radius for ℓ2 / ℓ1), projected."""
    shape = x.shape
    if norm == "linf":
        d = (torch.rand(shape, generator=g) * 2 - 1) * eps
    else:
        if norm == "l2":
            d = torch.randn(shape, generator=g)
            d = d / _per_sample(_flat(d).norm(dim=1).clamp(min=1e-12), d)
        else:
            d = -torch.log(torch.rand(shape, generator=g).clamp(min=1e-12))   # Laplace magnitudes
            d = d * torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0)
            d = d / _per_sample(_flat(d).abs().sum(1).clamp(min=1e-12), d)
        d = d * _per_sample(torch.rand(shape[0], generator=g) * eps, d)
    return project(d.to(x), x, norm, eps)


def steepest_step(grad: torch.Tensor, x_adv: torch.Tensor, norm: str, step: float,
                  l1_sparsity: float = 0.99) -> torch.Tensor:
    """Steepest ascent direction of size `step` for each norm.

    ℓ1 follows Tramèr & Boneh (2019): move only along the coordinates whose |gradient| is in the top
    (1 − l1_sparsity) share, each by the same amount, scaled to ℓ1 length `step`; coordinates already at the
    box boundary with the gradient pointing outward are left out, as in Croce & Hein's ℓ1-APGD.
    """
    if norm == "linf":
        return step * grad.sign()
    g = _flat(grad)
    if norm == "l2":
        return step * (g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)).view_as(grad)
    xf = _flat(x_adv)
    blocked = ((xf <= 0) & (g < 0)) | ((xf >= 1) & (g > 0))
    mag = g.abs().masked_fill(blocked, 0)
    k = max(1, int(round((1 - l1_sparsity) * g.shape[1])))
    thresh = mag.topk(k, dim=1).values[:, -1:]
    e = torch.sign(g) * ((mag >= thresh) & (mag > 0))
    e = e / e.abs().sum(1, keepdim=True).clamp(min=1)
    return (step * e).view_as(grad)


def distance(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a perturbation (for the ε-ball checks)."""
    f = _flat(delta)
    if norm == "linf":
        return f.abs().amax(1)
    if norm == "l2":
        return f.norm(dim=1)
    return f.abs().sum(1)
