"""Optimizers: Muon (orthogonalized momentum) for block matrices, AdamW for the rest."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

# Quintic Newton-Schulz coefficients from Keller Jordan's Muon.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(
    g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Approximately U V^T for each matrix of g = U S V^T (batched over leading dims)."""
    x = g.to(dtype)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.transpose(-2, -1)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    x = x.reshape(-1, x.shape[-2], x.shape[-1])
    # In float32 or wider, a matrix at least twice as wide as tall takes the Gram form
    # (fewer FLOPs: ~8 instead of ~12 ms per step for the default CPU model's MLP
    # matrices); bf16 keeps the direct form, the Gram form's products drift there.
    gram = x.shape[2] >= 2 * x.shape[1] and x.dtype in (torch.float32, torch.float64)
    x = (newton_schulz_gram if gram else newton_schulz)(x, steps)
    x = x.view(g.shape[:-2] + x.shape[-2:])
    if tall:
        x = x.transpose(-2, -1)
    return x.to(g.dtype)


def newton_schulz(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The quintic iteration on a batch of wide matrices: x <- a x + (b m + c m^2) x with
    m = x x^T, as two baddbmm calls (BLAS applies the scalars)."""
    a, b, c = NS_COEFFS
    for _ in range(steps):
        m = torch.bmm(x, x.transpose(1, 2))
        x = torch.baddbmm(x, torch.baddbmm(m, m, m, beta=b, alpha=c), x, beta=a)
    return x


def newton_schulz_gram(x: torch.Tensor, steps: int) -> torch.Tensor:
    """newton_schulz in exact arithmetic, on the small Gram matrices: every iterate is
    q x0 with q a polynomial in m0 = x0 x0^T, so with p = a + b m + c m^2 (symmetric,
    commuting with m): q <- p q and m <- p m p, and x = q x0 once at the end. Per
    iteration four r x r products instead of two r x r x c and one r x r x r."""
    a, b, c = NS_COEFFS
    m = torch.bmm(x, x.transpose(1, 2))
    q: Optional[torch.Tensor] = None
    for i in range(steps):
        p = torch.baddbmm(m, m, m, beta=b, alpha=c)
        p.diagonal(dim1=1, dim2=2).add_(a)
        q = p if q is None else torch.bmm(p, q)
        if i < steps - 1:
            m = torch.bmm(p, torch.bmm(m, p))
    return x if q is None else torch.bmm(q, x)


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update is orthogonalized (for 2-D weights).

    Matrices of the same shape, tall ones transposed to wide, are orthogonalized
    together (one batched matmul per Newton-Schulz iteration: far fewer small calls). A
    weight with a `muon_blocks` attribute (the fused q|k|v) is split into that many
    square blocks first.
    Decoupled weight decay: p *= 1 - lr * weight_decay. The trainer sets lr, momentum
    and weight_decay every step (schedules live in the trainer). `ns_dtype` is bf16 on
    GPUs and on CPUs with bf16 matmul units, float32 otherwise.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        momentum: float = 0.95,
        weight_decay: float = 0.0,
        ns_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
        )
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            # Per block shape (wide orientation: a tall block goes in transposed, as
            # orthogonalize would turn it anyway), each weight's blocks side by side: one
            # batched Newton-Schulz per shape, and a weight's update a view of the stack.
            by_shape: Dict[
                Tuple[int, int], List[Tuple[torch.Tensor, torch.Tensor]]
            ] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf: torch.Tensor = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mom)
                # The gradient is not read after the step: Nesterov's blend goes in place.
                nesterov = p.grad.lerp_(buf, mom)
                blocks = getattr(p, "muon_blocks", 1)
                n = nesterov.reshape(blocks, p.shape[0] // blocks, p.shape[1])
                if n.shape[1] > n.shape[2]:
                    n = n.transpose(1, 2)
                by_shape.setdefault((n.shape[1], n.shape[2]), []).append((p, n))
            for items in by_shape.values():
                stack = (
                    items[0][1] if len(items) == 1 else torch.cat([n for _, n in items])
                )
                ortho = orthogonalize(stack, dtype=self.ns_dtype)
                start = 0
                for p, n in items:
                    update = ortho[start : start + n.shape[0]]
                    start += n.shape[0]
                    blocks = n.shape[0]
                    rows = p.shape[0] // blocks
                    if rows != n.shape[1]:  # a tall block: back to its own orientation
                        update = update.transpose(1, 2)
                    scale = max(1.0, rows / p.shape[1]) ** 0.5
                    if wd:
                        p.mul_(1 - lr * wd)
                    p.view(blocks, rows, p.shape[1]).add_(update, alpha=-lr * scale)


def build(
    groups: Dict[str, List[torch.Tensor]],
    hp: Dict[str, Any],
    d_model: int,
    cuda: bool,
    ns_dtype: torch.dtype = torch.float32,
) -> List[torch.optim.Optimizer]:
    """AdamW for embedding, head and scalars; Muon for block matrices.

    Each param group records its peak LR as `initial_lr`; the trainer multiplies it by
    the schedule every step.
    """
    scale = (d_model / 768) ** -0.5  # embedding/head LRs were tuned at d_model 768
    betas = (float(hp["ADAM_BETA1"]), float(hp["ADAM_BETA2"]))
    adam_groups = [
        dict(params=groups["embedding"], lr=hp["EMBEDDING_LR"] * scale),
        dict(params=groups["unembedding"], lr=hp["UNEMBEDDING_LR"] * scale),
        dict(params=groups["resid"], lr=hp["SCALAR_LR"] * 0.01),
        dict(params=groups["x0"], lr=hp["SCALAR_LR"]),
    ]
    kwargs: Dict[str, Any] = dict(betas=betas, eps=1e-10, weight_decay=0.0)
    if cuda:
        kwargs["fused"] = True
    adam = torch.optim.AdamW(adam_groups, **kwargs)  # type: ignore[arg-type]
    muon = Muon(
        groups["matrix"],
        lr=float(hp["MATRIX_LR"]),
        weight_decay=float(hp["WEIGHT_DECAY"]),
        ns_dtype=ns_dtype,
    )
    opts: List[torch.optim.Optimizer] = [adam, muon]
    for opt in opts:
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
    return opts
