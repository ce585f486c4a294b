"""A small modern GPT in the nanochat / autoresearch lineage.

RMSNorm (no weights), rotary embeddings, QK-norm, ReLU² MLP, untied head, logit
soft-cap, per-layer residual scalars (resid_lambdas, x0_lambdas) and an optional
sliding-window pattern. Attention uses SDPA where PyTorch has it (CUDA) and a
hand-written masked softmax otherwise (Debian's torch 1.13 on CPU).

Two code paths: `fused` (CUDA: plain expressions torch.compile fuses, SDPA, F.rms_norm)
and the CPU one (hand-written backwards). The path is chosen when the model is built,
from its device, and can be forced, so tests run the CUDA path's code on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.hparams import Value

SDPA: Optional[Callable[..., torch.Tensor]] = getattr(
    F, "scaled_dot_product_attention", None
)
HAS_SDPA = SDPA is not None
SOFTCAP = 15.0


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_layer: int
    n_head: int
    head_dim: int
    seq_len: int
    windows: Tuple[int, ...]  # attention span per layer (seq_len = full)

    @property
    def d_model(self) -> int:
        return self.n_head * self.head_dim


def model_config(hp: Dict[str, Value], vocab_size: int) -> GPTConfig:
    depth = int(hp["DEPTH"])
    head_dim = int(hp["HEAD_DIM"])
    seq_len = int(hp["SEQ_LEN"])
    width = depth * int(hp["ASPECT_RATIO"])
    n_head = max(1, math.ceil(width / head_dim))
    pattern = str(hp["WINDOW_PATTERN"])
    windows = [
        seq_len if pattern[i % len(pattern)] == "L" else max(1, seq_len // 2)
        for i in range(depth)
    ]
    windows[-1] = seq_len  # the last layer always sees the full context
    return GPTConfig(vocab_size, depth, n_head, head_dim, seq_len, tuple(windows))


def _low(dtype: torch.dtype) -> bool:
    return dtype in (torch.bfloat16, torch.float16)


def _inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """1 / rms(x) over the last dim, reduced in >= fp32 (one pass: the 2-norm, squared)."""
    n = torch.linalg.vector_norm(
        x, dim=-1, keepdim=True, dtype=torch.float32 if _low(x.dtype) else None
    )
    return torch.rsqrt(n.square_().div_(x.shape[-1]).add_(eps)).to(x.dtype)


def _rms_backward(g: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """d(x r)/dx . g = r (g - y mean(g y)), for y = x r (written over g * y's buffer)."""
    gy = g * y
    m = (gy.float() if _low(gy.dtype) else gy).mean(-1, keepdim=True).to(g.dtype)
    return torch.addcmul(g, y, m, value=-1.0, out=gy).mul_(r)


class _RMSNorm(torch.autograd.Function):
    """x / rms(x) with a hand-written backward (3 passes instead of autograd's ~7)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        r = _inv_rms(x, eps)
        y = x * r
        ctx.save_for_backward(y, r)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[torch.Tensor, None]:  # type: ignore[override]
        y, r = ctx.saved_tensors
        return _rms_backward(g, y, r.to(g.dtype)), None


# On CUDA the plain expressions below are used: torch.compile fuses them, and custom
# autograd Functions would only get in its way. The hand-written backwards are for CPU.
F_RMS_NORM: Optional[Callable[..., torch.Tensor]] = getattr(F, "rms_norm", None)


def rms_norm(x: torch.Tensor, fused: bool, eps: float = 1e-6) -> torch.Tensor:
    if fused:
        if F_RMS_NORM is not None:
            return F_RMS_NORM(x, (x.shape[-1],), eps=eps)
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).to(
            x.dtype
        )
    out: torch.Tensor = _RMSNorm.apply(x, eps)  # torch 1.13 has no F.rms_norm
    return out


def rotary_tables(
    seq_len: int, head_dim: int, base: float = 10000.0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin over the full head dim, so rotary is x * cos + swap_halves(x) * sin."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv)
    cos, sin = freqs.cos(), freqs.sin()
    return (
        torch.cat((cos, cos), -1)[None, :, None, :],
        torch.cat((sin, -sin), -1)[None, :, None, :],
    )


def _swap_halves(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    return torch.cat((x[..., d:], x[..., :d]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The CUDA path's rotary (the CPU path's is in _QKVHeads).
    (x1, x2) -> (x1 cos + x2 sin, x2 cos - x1 sin): sin carries the signs. The tables are
    built in the compute dtype (bf16 under autocast), so this cast is normally a no-op.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + _swap_halves(x) * sin


class _ResidualMix(torch.autograd.Function):
    """lam[i] x + lam0[i] x0 (the per-layer residual scalars) with a hand-written backward
    (CPU path): one output buffer instead of three, no select nodes, and in the first layer,
    where x is x0, one product-sum for both scalars' gradients. The scalars' gradients are
    autograd's own sums of products (Adam amplifies their rounding: see cpu-path.test.ts).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, x0: torch.Tensor, lam: torch.Tensor, lam0: torch.Tensor, i: int) -> torch.Tensor:  # type: ignore[override]
        ctx.same = x is x0
        ctx.i = i
        ctx.save_for_backward(x, x0, lam, lam0)
        return torch.mul(x, lam[i]).addcmul_(x0, lam0[i])

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor, torch.Tensor, None]:  # type: ignore[override]
        x, x0, lam, lam0 = ctx.saved_tensors
        i = ctx.i
        g_lam, g_lam0 = torch.zeros_like(lam), torch.zeros_like(lam0)
        prod = torch.mul(g, x)
        g_lam[i] = prod.sum()
        if ctx.same:
            g_lam0[i] = g_lam[i]
            return torch.mul(g, lam[i]).addcmul_(g, lam0[i]), None, g_lam, g_lam0, None
        g_lam0[i] = torch.mul(g, x0, out=prod).sum()
        return (
            torch.mul(g, lam[i]),
            torch.mul(g, lam0[i], out=prod),
            g_lam,
            g_lam0,
            None,
        )


class ReluSquared(torch.autograd.Function):
    """relu(x)^2 with a hand-written backward: fewer passes over the MLP's widest tensor
    (the CPU path under bf16 autocast; without autocast the whole MLP is _MLP)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (r,) = ctx.saved_tensors
        return (grad * r).mul_(2.0)


def relu_squared(x: torch.Tensor, fused: bool) -> torch.Tensor:
    if fused:
        return torch.relu(x).square()
    out: torch.Tensor = ReluSquared.apply(x)
    return out


class _SoftCap(torch.autograd.Function):
    """cap * tanh(x / cap), written with sigmoid (CPU tanh is ~9x slower than sigmoid here),
    in place after the first pass; the backward is tanh's, 1 - (y / cap)^2, from y alone.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cap: float) -> torch.Tensor:  # type: ignore[override]
        y = torch.sigmoid(x * (2.0 / cap)).mul_(2.0 * cap).sub_(cap)
        ctx.save_for_backward(y)
        ctx.cap = cap
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[torch.Tensor, None]:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return (y * y).mul_(-1.0 / ctx.cap**2).add_(1.0).mul_(g), None


def softcap(logits: torch.Tensor, fused: bool, cap: float = SOFTCAP) -> torch.Tensor:
    if fused:
        return cap * torch.tanh(logits / cap)
    out: torch.Tensor = _SoftCap.apply(logits, cap)
    return out


class _SoftCapCrossEntropy(torch.autograd.Function):
    """cross_entropy(softcap(x), t) over (n, V) float32 rows, reduction mean or sum, in one
    Function (CPU path): the forward keeps the softmax p, so the backward is two passes,
    (p - onehot(t)) * s (1 - (y / cap)^2) with s the reduction's scale, instead of the
    zero-filled one-hot, log_softmax's and the soft-cap's separate backwards. The loss is
    -log p[t]: y is within +-cap, so p[t] >= e^(-2 cap) / V never underflows.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, targets: torch.Tensor, cap: float, mean: bool) -> torch.Tensor:  # type: ignore[override]
        y = torch.mul(x, 2.0 / cap).sigmoid_().mul_(2.0 * cap).sub_(cap)
        p = torch.softmax(y, dim=-1)
        flat = torch.arange(0, p.numel(), p.shape[-1], device=x.device) + targets
        nats = p.view(-1).index_select(0, flat).log_().neg_()
        ctx.save_for_backward(y, p, flat)
        ctx.cap, ctx.scale = cap, 1.0 / p.shape[0] if mean else 1.0
        return nats.mean() if mean else nats.sum()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[torch.Tensor, None, None, None]:  # type: ignore[override]
        y, p, flat = ctx.saved_tensors
        s = float(g) * ctx.scale
        # f = s (1 - (y / cap)^2), the soft-cap's derivative times the incoming scale.
        f = torch.addcmul(g.new_tensor(s), y, y, value=-s / ctx.cap**2)
        at_target = f.view(-1).index_select(0, flat)
        f.mul_(p).view(-1).index_add_(0, flat, at_target, alpha=-1.0)
        return f, None, None, None


def softcap_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str, cap: float = SOFTCAP
) -> torch.Tensor:
    """cross_entropy(softcap(logits), targets) for reduction mean or sum (CPU path)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be mean or sum, got {reduction!r}")
    # F.cross_entropy refuses such targets; the Function would read another row's logit.
    if targets.numel() > 0 and (
        int(targets.min()) < 0 or int(targets.max()) >= logits.shape[-1]
    ):
        raise ValueError(f"targets must be in [0, {logits.shape[-1]})")
    out: torch.Tensor = _SoftCapCrossEntropy.apply(
        logits, targets, cap, reduction == "mean"
    )
    return out


class _QKVHeads(torch.autograd.Function):
    """qkv (b, t, 3d) -> q, k, v as contiguous (b*h, t, hd), with QK-norm and rotary on q, k.

    The CPU path's attention input in one step: q and k are rotated straight from qkv into
    head-major buffers (the strided read is the transpose, no separate copy) and scaled by
    1 / rms there (rotation keeps the norm, so rms(R x) = rms(x) and R(x r) = (R x) r). The
    backward builds the qkv gradient in place (slicing's backward would zero-fill and add
    three full-size tensors); its passes run over contiguous head-major memory (written
    through the strided view they were slower here) and one copy moves the result into
    place. Backward: rotation is orthogonal, so mean(R^T g * xn) = mean(g * y) and
    dx = r R^T (g - y mean(g y)).
    """

    @staticmethod
    def forward(ctx: Any, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, h: int, eps: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        b, t, d3 = qkv.shape
        d = d3 // 3
        hd = d // h
        src = qkv[..., : 2 * d].view(b, t, 2, h, hd).permute(2, 0, 3, 1, 4)
        # The tables are kept in the compute dtype: normally no-op casts.
        cos, sin = cos.to(qkv.dtype), sin.to(qkv.dtype)
        r = _inv_rms(src, eps)
        qk = torch.empty(2, b, h, t, hd, dtype=qkv.dtype, device=qkv.device)
        _rotate(src, cos.view(t, -1), sin.view(t, -1), qk, 1.0)
        qk.mul_(r)
        v = qkv[..., 2 * d :].view(b, t, h, hd).transpose(1, 2).contiguous()
        ctx.save_for_backward(qk, r, cos, sin)
        return qk[0].view(b * h, t, hd), qk[1].view(b * h, t, hd), v.view(b * h, t, hd)

    @staticmethod
    def backward(ctx: Any, gq: torch.Tensor, gk: torch.Tensor, gv: torch.Tensor) -> Tuple[torch.Tensor, None, None, None, None]:  # type: ignore[override]
        qk, r, cos, sin = ctx.saved_tensors
        _two, b, h, t, hd = qk.shape
        d = h * hd
        grad = torch.empty(b, t, 3 * d, dtype=gv.dtype, device=gv.device)
        gx = torch.empty_like(qk)  # head-major, contiguous; copied into grad at the end
        for j, g in enumerate((gq, gk)):
            gn = _rms_backward(g.view(b, h, t, hd), qk[j], r[j])
            _rotate(gn, cos.view(t, -1), sin.view(t, -1), gx[j], -1.0)
        grad[..., : 2 * d].view(b, t, 2, h, hd).copy_(gx.permute(1, 3, 0, 2, 4))
        grad[..., 2 * d :].view(b, t, h, hd).copy_(gv.view(b, h, t, hd).transpose(1, 2))
        return grad, None, None, None, None


def _rotate(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    out: torch.Tensor,
    sign: float,
) -> None:
    """out = R x over the halves of the last dim (sign 1; -1 gives R^T):
    (x1, x2) -> (x1 cos + x2 sin, x2 cos - x1 sin). cos and sin are the signed full tables
    of rotary_tables (sin = [sin, -sin]). The cos term is one full-width pass (the (t, hd)
    table's inner loop spans whole rows, not 32-float halves: the rotation ~15% faster);
    only the swapped sin terms work on halves. Same ops per element as a
    half-by-half rotation, so the same rounding."""
    half = x.shape[-1] // 2
    torch.mul(x, cos, out=out)
    out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=sign)
    out[..., half:].addcmul_(x[..., :half], sin[..., half:], value=sign)


class Attention(nn.Module):
    def __init__(
        self, cfg: GPTConfig, window: int, fused: bool, device: Optional[torch.device]
    ) -> None:
        super().__init__()
        self.n_head, self.head_dim, self.window = cfg.n_head, cfg.head_dim, window
        self.fused = fused
        d = cfg.d_model
        # q, k and v in one matmul; Muon orthogonalizes the three d x d blocks separately.
        self.c_qkv = nn.Linear(d, 3 * d, bias=False, device=device)
        setattr(self.c_qkv.weight, "muon_blocks", 3)
        self.c_proj = nn.Linear(d, d, bias=False, device=device)
        self._bias: Dict[Tuple[int, str, torch.dtype], torch.Tensor] = {}

    def mask(self, t: int, device: torch.device) -> torch.Tensor:
        """Boolean (t, t) mask, True where attention is allowed: causal, within the window."""
        i = torch.arange(t, device=device)
        rel = i[:, None] - i[None, :]
        return (rel >= 0) & (rel < self.window)

    def bias(self, t: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The mask as an additive (1, t, t) bias: 0 where allowed, -inf elsewhere."""
        key = (t, str(device), dtype)
        if key not in self._bias:
            b = torch.zeros(t, t, device=device, dtype=dtype)
            self._bias[key] = b.masked_fill(~self.mask(t, device), float("-inf"))[None]
        return self._bias[key]

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        b, t, d = x.shape
        h, hd = self.n_head, self.head_dim
        qkv = self.c_qkv(x)
        if not self.fused:
            q, k, v = _QKVHeads.apply(qkv, cos, sin, h, 1e-6)
            return self.c_proj(self._masked(q, k, v, b))
        # QK-norm then rotary (rotation keeps the norm, so the order does not matter). Under
        # autocast a norm may come back in fp32 (torch >= 2.12 keeps F.rms_norm there), while
        # v is bf16: cast back so q, k and v agree for SDPA.
        qk = rms_norm(qkv[..., : 2 * d].view(b, t, 2 * h, hd), self.fused).to(qkv.dtype)
        qk = apply_rotary(qk, cos, sin)
        q, k = qk[:, :, :h].transpose(1, 2), qk[:, :, h:].transpose(
            1, 2
        )  # (B, H, T, D)
        v = qkv[..., 2 * d :].view(b, t, h, hd).transpose(1, 2)
        if SDPA is None:
            flat = [z.reshape(b * h, t, hd) for z in (q, k, v)]
            return self.c_proj(self._masked(flat[0], flat[1], flat[2], b))
        if self.window >= t:
            y = SDPA(q, k, v, is_causal=True)
        else:
            # An explicit mask: no flash kernel, full t^2 work (counted so in FLOPs).
            y = SDPA(q, k, v, attn_mask=self.mask(t, x.device))
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))

    def _masked(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, b: int
    ) -> torch.Tensor:
        """Hand-written attention over (b*h, t, hd) inputs (torch 1.13 has no SDPA): scale
        and mask fused into one baddbmm. Returns (b, t, d)."""
        bh, t, hd = q.shape
        att = torch.baddbmm(
            self.bias(t, q.device, q.dtype), q, k.transpose(1, 2), alpha=hd**-0.5
        )
        y = torch.bmm(torch.softmax(att, dim=-1).to(v.dtype), v)
        return y.view(b, bh // b, t, hd).transpose(1, 2).reshape(b, t, bh // b * hd)


def _cpu_autocast() -> bool:
    """Whether CPU autocast is on (torch >= 2.4 spells it is_autocast_enabled("cpu"))."""
    try:
        return bool(getattr(torch, "is_autocast_enabled")("cpu"))
    except TypeError:  # torch < 2.4: no device argument
        return bool(torch.is_autocast_cpu_enabled())


def _product(
    out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float
) -> torch.Tensor:
    """out = alpha a b for matrices, out's old values never read: BLAS ignores C when beta
    is 0, so out may be uninitialised (no zero fill). ATen's naive kernel for products
    under 400 multiply-adds would read it."""
    if a.shape[0] * a.shape[1] * b.shape[1] < 400:
        out.zero_()
    return out.addmm_(a, b, beta=0.0, alpha=alpha)


class _MLP(torch.autograd.Function):
    """relu(x W1^T)^2 W2^T over (n, d) rows with a hand-written backward: relu in place on
    the first product, the relu^2 gradient's factor 2 in the BLAS alpha of the two matmuls
    after it (exact: a power of two), its product with the incoming gradient in place.
    The same values as ReluSquared between two Linears. float32 CPU path (no autocast).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_fc: torch.Tensor, w_proj: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        r = torch.mm(x, w_fc.t()).clamp_min_(0.0)
        a = r * r
        ctx.save_for_backward(x, w_fc, w_proj, r, a)
        return torch.mm(a, w_proj.t())

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        x, w_fc, w_proj, r, a = ctx.saved_tensors
        g_proj = torch.mm(g.t(), a)
        gr = torch.mm(g, w_proj).mul_(r)  # half the gradient at the first product
        g_fc = _product(torch.empty_like(w_fc), gr.t(), x, 2.0)
        gx = _product(torch.empty_like(x), gr, w_fc, 2.0)
        return gx, g_fc, g_proj


class MLP(nn.Module):
    def __init__(self, d: int, fused: bool, device: Optional[torch.device]) -> None:
        super().__init__()
        self.fused = fused
        self.c_fc = nn.Linear(d, 4 * d, bias=False, device=device)
        self.c_proj = nn.Linear(4 * d, d, bias=False, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused and not _cpu_autocast():
            flat = x.reshape(-1, x.shape[-1])
            y: torch.Tensor = _MLP.apply(flat, self.c_fc.weight, self.c_proj.weight)
            return y.view(x.shape)
        return self.c_proj(relu_squared(self.c_fc(x), self.fused))


class Block(nn.Module):
    def __init__(
        self, cfg: GPTConfig, window: int, fused: bool, device: Optional[torch.device]
    ) -> None:
        super().__init__()
        self.fused = fused
        self.attn = Attention(cfg, window, fused, device)
        self.mlp = MLP(cfg.d_model, fused, device)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.attn(rms_norm(x, self.fused), cos, sin)
        return x + self.mlp(rms_norm(x, self.fused))


def residual_mix(
    x: torch.Tensor,
    x0: torch.Tensor,
    lam: torch.Tensor,
    lam0: torch.Tensor,
    i: int,
    fused: bool,
) -> torch.Tensor:
    """lam[i] x + lam0[i] x0."""
    if fused:
        return lam[i] * x + lam0[i] * x0
    out: torch.Tensor = _ResidualMix.apply(x, x0, lam, lam0, i)
    return out


class GPT(nn.Module):
    """The model, built directly on `device` (a large config never passes through host
    memory). `fused` picks the CUDA code path (default: when the device is CUDA);
    `dtype` is the compute dtype the rotary tables are kept in (bf16 under autocast)."""

    def __init__(
        self,
        cfg: GPTConfig,
        device: Optional[torch.device] = None,
        fused: Optional[bool] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.fused = (
            (device is not None and device.type == "cuda") if fused is None else fused
        )
        d = cfg.d_model
        self.wte = nn.Embedding(cfg.vocab_size, d, device=device)
        self.blocks = nn.ModuleList(
            [Block(cfg, w, self.fused, device) for w in cfg.windows]
        )
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False, device=device)
        self.resid_lambdas = nn.Parameter(torch.ones(cfg.n_layer, device=device))
        self.x0_lambdas = nn.Parameter(torch.full((cfg.n_layer,), 0.1, device=device))
        cos, sin = rotary_tables(cfg.seq_len, cfg.head_dim)
        cos, sin = cos.to(device=device, dtype=dtype), sin.to(
            device=device, dtype=dtype
        )
        self.cos_table: torch.Tensor
        self.sin_table: torch.Tensor
        self.register_buffer("cos_table", cos, persistent=False)
        self.register_buffer("sin_table", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        d = self.cfg.d_model
        bound = math.sqrt(3.0) * d**-0.5
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            assert isinstance(block, Block)
            for lin in (block.attn.c_qkv, block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -bound, bound)
            # Zero-init output projections: every block starts as the identity.
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)

    def param_groups(self) -> Dict[str, List[torch.Tensor]]:
        matrices: List[torch.Tensor] = [
            p for p in self.blocks.parameters() if p.ndim == 2
        ]
        return {
            "embedding": [self.wte.weight],
            "unembedding": [self.lm_head.weight],
            "resid": [self.resid_lambdas],
            "x0": [self.x0_lambdas],
            "matrix": matrices,
        }

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        return softcap(self.raw_logits(idx), self.fused)

    def raw_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """The head's float32 output before the soft-cap."""
        t = idx.shape[1]
        cos, sin = self.cos_table[:, :t], self.sin_table[:, :t]
        x = rms_norm(self.wte(idx), self.fused)
        x0 = x
        for i, block in enumerate(self.blocks):
            x = residual_mix(x, x0, self.resid_lambdas, self.x0_lambdas, i, self.fused)
            x = block(x, cos, sin)
        return self.lm_head(rms_norm(x, self.fused)).float()

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        if not self.fused and reduction != "none":
            raw = self.raw_logits(idx)
            return softcap_cross_entropy(
                raw.view(-1, raw.shape[-1]), targets.reshape(-1), reduction
            )
        logits = self.logits(idx)
        return F.cross_entropy(
            logits.view(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction
        )

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        return flops_per_token(self.cfg)


def flops_per_token(cfg: GPTConfig) -> float:
    """Training FLOPs per token: Karpathy's estimate, 6 per matmul weight plus attention.

    Attention is 12 d T per layer at the full context T for every layer, windowed or not:
    neither the CPU path nor SDPA with an explicit mask skips the masked-out blocks, so a
    window saves no work and counting only the window would under-report MFU.
    """
    d = cfg.d_model
    n_matmul = cfg.n_layer * 12 * d * d + cfg.vocab_size * d
    return 6.0 * n_matmul + 12.0 * d * cfg.seq_len * cfg.n_layer
