"""Multi-head self-attention and transformer blocks.

One attention core serves two layouts that compute the same function:

* :class:`Attention` (``attention=fused``): one merged QKV linear.
* :class:`PerHeadAttention` (``attention=per_head``): a loop over heads, each
  with its own q/k/v linears. :func:`load_fused_into_per_head` copies the
  weights of a fused module into a per-head one so both give equal outputs;
  :func:`convert_attention_layout` converts a whole model's state dict.

Options (all in :class:`_AttentionCore`):

* ``diag_mask``: LSA (Lee et al., 2021) - each token's attention to itself is
  set to -inf before the softmax, so the diagonal weights are exactly 0.
* ``temperature``: ``none`` (fixed 1/sqrt(d_head)), ``log`` (learnable scalar
  ``s = log(1/tau)``, logits multiplied by ``exp(s)``) or ``vanilla``
  (learnable ``tau``, logits divided by ``tau``). Both start at the usual
  1/sqrt(d_head) scaling. :meth:`_AttentionCore.temperature_value` reads tau.
* ``temperature_relative``: tau acts on top of the fixed 1/sqrt(d_head) scale instead
  of replacing it, so tau starts at 1 (``log``: log(1/tau) starts at 0) and the
  reported tau is relative to that scale. For ``log`` this is the same function with
  the same gradients (a shift of the parameter); for ``vanilla`` it is not: a step
  of size eta in a relative tau moves the logits as a step of ``sqrt(d_head) * eta``
  in an absolute one would, so the relative form learns ``sqrt(d_head)`` times faster.
* ``rel_pos``: the maximum relative offset for Transformer-XL style relative
  attention (Dai et al., 2019): score(i, j) = (q_i + u) . k_j
  + (q_i + v) . W_R R_{i-j}, i.e. the terms (a)+(c) and (b)+(d), where R is a
  fixed sinusoidal encoding of the offset i - j, W_R a learned projection and
  u, v learned per-head global biases. See :func:`relative_position_term`.
  ``rel_bias_init``: ``zeros`` or ``randn`` (standard normal) for u and v.
* ``dropout`` is applied after the output projection; ``attn_dropout`` (default:
  ``dropout``) to the attention weights.

The kernel: ``F.scaled_dot_product_attention`` where it is the faster one, else two
explicit matmuls around a softmax (:func:`sdpa_is_faster`, measured per device and
dtype). Both compute the same function; the options above always take the explicit form.

Set ``store_attention = True`` on a module to keep its last attention weights
(``(B, heads, N, N)``, detached) in ``last_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .droppath import DropPath

TEMPERATURES = ("none", "log", "vanilla")
REL_BIAS_INITS = ("zeros", "randn")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


def sinusoidal_encoding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoids for (possibly negative) integer positions: ``(*positions.shape, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[..., None] * freqs
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        enc = F.pad(enc, (0, 1))
    return enc


def relative_position_term(
    q: torch.Tensor, v_bias: torch.Tensor, rel: torch.Tensor, pos_q: torch.Tensor, pos_k: torch.Tensor
) -> torch.Tensor:
    """The position part of Transformer-XL attention, terms (b) + (d): ``(q_i + v) . r_{i-j}``.

    ``q``: ``(B, h, Nq, d)``; ``v_bias``: ``(h, d)``; ``rel``: ``(2M+1, h, d)`` the projected
    encodings of offsets ``-M..M``; ``pos_q``/``pos_k``: integer positions ``(Nq,)``/``(Nk,)``.
    Returns ``(B, h, Nq, Nk)``. It depends on the positions only through ``pos_q[i] - pos_k[j]``
    (offsets beyond ``M`` are clipped).
    """
    max_offset = (rel.shape[0] - 1) // 2
    offsets = (pos_q[:, None] - pos_k[None, :]).clamp(-max_offset, max_offset) + max_offset
    r = rel[offsets]  # (Nq, Nk, h, d)
    return torch.einsum("bhid,ijhd->bhij", q + v_bias[None, :, None, :], r)


def sdpa_is_faster(q: torch.Tensor) -> bool:
    """Whether ``F.scaled_dot_product_attention`` beats explicit ``softmax(q k^T) v`` for queries like ``q``.

    On GPUs its fused kernels always do.  On CPUs (torch 2.13, 2 AVX-512 cores, forward + backward;
    docs/perf-measurements.md, "Attention kernels") its flash kernel loses to two batched matmuls on
    short sequences: in fp32 up to ~96 tokens (1.0-1.4x slower at 65 tokens, 1.3-1.8x at 17), and under
    bf16 autocast at every length up to 257 tokens (1.6-8x slower), where the matmuls run on the CPU's
    bf16 units and it does not.  Past those lengths the N x N matrix the explicit form keeps costs more.
    """
    if q.device.type != "cpu":
        return True
    longest_explicit = 96 if q.dtype == torch.float32 else 512
    return q.shape[-2] > longest_explicit


class _AttentionCore(nn.Module):
    """Everything after the q/k/v projections: scaling, masks, relative terms, softmax, output."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float = 0.0,
        diag_mask: bool = False,
        temperature: str = "none",
        rel_pos: int | None = None,
        temperature_relative: bool = False,
        rel_bias_init: str = "zeros",
        attn_dropout: float | None = None,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if temperature not in TEMPERATURES:
            raise ValueError(f"temperature must be one of {', '.join(TEMPERATURES)}; got {temperature!r}")
        if rel_bias_init not in REL_BIAS_INITS:
            raise ValueError(f"rel_bias_init must be one of {', '.join(REL_BIAS_INITS)}; got {rel_bias_init!r}")
        self.heads = heads
        self.dim_head = dim // heads
        self.diag_mask = diag_mask
        self.temperature = temperature
        self.temperature_relative = temperature_relative
        scale = self.dim_head**-0.5
        # The learned factor starts where the fixed scale is: at 1 on top of it, or at the scale itself.
        start = 1.0 if temperature_relative else scale
        if temperature == "log":
            self.log_inv_tau = nn.Parameter(torch.tensor(math.log(start)))
        elif temperature == "vanilla":
            self.tau = nn.Parameter(torch.tensor(1.0 / start))
        self.scale = scale
        self.rel_pos = rel_pos
        if rel_pos is not None:
            offsets = torch.arange(-rel_pos, rel_pos + 1)
            self.register_buffer("rel_enc", sinusoidal_encoding(offsets, dim), persistent=False)
            self.rel_proj = nn.Linear(dim, dim, bias=False)  # W_{k,R}
            make = torch.randn if rel_bias_init == "randn" else torch.zeros
            self.u_bias = nn.Parameter(make(heads, self.dim_head))
            self.v_bias = nn.Parameter(make(heads, self.dim_head))
        self.attn_drop = nn.Dropout(dropout if attn_dropout is None else attn_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.store_attention = False
        self.last_attention: torch.Tensor | None = None

    def logit_scale(self) -> torch.Tensor | float:
        if self.temperature == "none":
            return self.scale
        learned = self.log_inv_tau.exp() if self.temperature == "log" else 1.0 / self.tau
        return learned * self.scale if self.temperature_relative else learned

    def temperature_value(self) -> float:
        """tau: the number the logits are divided by (with ``temperature_relative``, on top of the fixed scale)."""
        s = self.logit_scale()
        if self.temperature_relative and self.temperature != "none":
            s = s / self.scale
        return float(1.0 / s) if not torch.is_tensor(s) else float(1.0 / s.detach())

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: slice = slice(None)) -> torch.Tensor:
        """q, k, v: ``(B, h', N, d)`` for the heads selected by ``heads``; returns ``(B, h', N, d)``."""
        n = q.shape[-2]
        special = self.diag_mask or self.rel_pos is not None or self.store_attention
        if not special and sdpa_is_faster(q):
            return F.scaled_dot_product_attention(
                q * self.logit_scale(), k, v, dropout_p=self.attn_drop.p if self.training else 0.0, scale=1.0
            )
        if self.rel_pos is None:
            logits = (q * self.logit_scale()) @ k.transpose(-2, -1)  # content-content, scaled as the SDPA path is
        else:
            # (a) + (c): content-content and the global content bias u
            logits = (q + self.u_bias[heads][None, :, None, :]) @ k.transpose(-2, -1)
            # (b) + (d): content-position and the global position bias v
            pos = torch.arange(n, device=q.device)
            rel = self.rel_proj(self.rel_enc.to(q.dtype)).view(-1, self.heads, self.dim_head)[:, heads]
            logits = logits + relative_position_term(q, self.v_bias[heads], rel, pos, pos)
            logits = logits * self.logit_scale()
        if self.diag_mask:
            eye = torch.eye(n, dtype=torch.bool, device=q.device)
            logits = logits.masked_fill(eye, float("-inf"))
        attn = logits.softmax(dim=-1)
        if self.store_attention:
            self.last_attention = attn.detach()
        return self.attn_drop(attn) @ v

    def output(self, out: torch.Tensor) -> torch.Tensor:
        """(B, h, N, d) -> (B, N, dim) through the output projection."""
        b, h, n, d = out.shape
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, h * d)))


class Attention(_AttentionCore):
    """Fused multi-head self-attention: one QKV linear."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = False, **core):
        super().__init__(dim, heads, **core)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        return self.output(self.attend(qkv[0], qkv[1], qkv[2]))


class PerHeadAttention(_AttentionCore):
    """The same function as :class:`Attention`, written as a loop over heads with their own q/k/v."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = False, **core):
        super().__init__(dim, heads, **core)
        d = dim // heads
        self.q = nn.ModuleList(nn.Linear(dim, d, bias=qkv_bias) for _ in range(heads))
        self.k = nn.ModuleList(nn.Linear(dim, d, bias=qkv_bias) for _ in range(heads))
        self.v = nn.ModuleList(nn.Linear(dim, d, bias=qkv_bias) for _ in range(heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, maps = [], []
        for h in range(self.heads):
            q, k, v = (proj[h](x).unsqueeze(1) for proj in (self.q, self.k, self.v))
            outs.append(self.attend(q, k, v, heads=slice(h, h + 1)))
            if self.store_attention:
                maps.append(self.last_attention)
        if self.store_attention:
            self.last_attention = torch.cat(maps, dim=1)
        return self.output(torch.cat(outs, dim=1))


def fused_to_per_head_state(state: dict[str, torch.Tensor], heads: int) -> dict[str, torch.Tensor]:
    """Convert an :class:`Attention` state dict into a :class:`PerHeadAttention` one."""
    out = {k: v for k, v in state.items() if not k.startswith("qkv.")}
    for kind in ("weight", "bias"):
        key = f"qkv.{kind}"
        if key not in state:
            continue
        q, k, v = state[key].chunk(3, dim=0)
        for name, t in (("q", q), ("k", k), ("v", v)):
            for h, part in enumerate(t.chunk(heads, dim=0)):
                out[f"{name}.{h}.{kind}"] = part.clone()
    return out


def per_head_to_fused_state(state: dict[str, torch.Tensor], heads: int) -> dict[str, torch.Tensor]:
    """Convert a :class:`PerHeadAttention` state dict into an :class:`Attention` one."""
    out = {k: v for k, v in state.items() if not k.split(".")[0] in ("q", "k", "v")}
    for kind in ("weight", "bias"):
        if f"q.0.{kind}" not in state:
            continue
        parts = [state[f"{name}.{h}.{kind}"] for name in ("q", "k", "v") for h in range(heads)]
        out[f"qkv.{kind}"] = torch.cat(parts, dim=0)
    return out


def convert_attention_layout(state: dict[str, torch.Tensor], heads: int, to: str) -> dict[str, torch.Tensor]:
    """Convert every attention module inside a whole model's state dict to ``to`` (``fused`` or ``per_head``).

    Modules are found by their ``<prefix>qkv.weight`` (fused) or ``<prefix>q.0.weight`` (per-head) keys.
    """
    if to not in ("fused", "per_head"):
        raise ValueError(f"to must be fused or per_head; got {to!r}")
    marker = "qkv.weight" if to == "per_head" else "q.0.weight"
    prefixes = [k[: -len(marker)] for k in state if k == marker or k.endswith("." + marker)]
    out = dict(state)
    for prefix in prefixes:
        sub = {k[len(prefix):]: out.pop(k) for k in list(out) if k.startswith(prefix)}
        conv = fused_to_per_head_state(sub, heads) if to == "per_head" else per_head_to_fused_state(sub, heads)
        out.update({prefix + k: v for k, v in conv.items()})
    return out


def load_fused_into_per_head(per_head: PerHeadAttention, fused: Attention) -> PerHeadAttention:
    """Copy the weights of ``fused`` into ``per_head`` (same dims and options); returns ``per_head``."""
    per_head.load_state_dict(fused_to_per_head_state(fused.state_dict(), fused.heads))
    return per_head


def make_activation(name: str) -> nn.Module:
    """``gelu`` (exact), ``gelu_tanh`` (the tanh approximation of BERT/GPT) or ``relu``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    if name == "relu":
        return nn.ReLU()
    return nn.GELU(approximate="tanh" if name == "gelu_tanh" else "none")


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "gelu"):
        super().__init__(nn.Linear(dim, hidden), make_activation(activation), nn.Dropout(dropout),
                         nn.Linear(hidden, dim), nn.Dropout(dropout))


class TransformerBlock(nn.Module):
    """Attention + MLP with residuals; ``norm="pre"`` (LN before each) or ``"post"`` (LN after each residual)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0, norm: str = "pre",
                 attention: str = "fused", activation: str = "gelu", drop_path: float = 0.0, **attn_opts):
        super().__init__()
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be pre or post; got {norm!r}")
        if attention not in ("fused", "per_head"):
            raise ValueError(f"attention must be fused or per_head; got {attention!r}")
        self.pre = norm == "pre"
        cls = Attention if attention == "fused" else PerHeadAttention
        self.norm1 = nn.LayerNorm(dim)
        self.attn = cls(dim, heads, dropout=dropout, **attn_opts)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim, dropout, activation)
        self.drop_path = DropPath(drop_path)  # stochastic depth on both residual branches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop_path(self.attn(x)))
        return self.norm2(x + self.drop_path(self.mlp(x)))
