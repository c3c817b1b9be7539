"""Vision transformers for 32x32 inputs: one configurable :class:`ViT` and its presets.

Options of :class:`ViT` (every preset accepts all of them as overrides):

* ``tokenizer``: ``patch`` (a ``patch`` x ``patch`` stride-``patch`` conv) or ``conv``
  (CCT's convolutional tokenizer: ``conv_layers`` x [conv ``conv_kernel`` -> ReLU ->
  max-pool 3/2], ``conv_channels`` wide in between, no conv bias).
* ``pos``: ``learned`` (absolute, per token), ``sincos2d`` (fixed 2-D sin-cos over the
  token grid; the CLS token gets none) or ``relative`` (Transformer-XL relative
  attention over the token sequence in every layer, no absolute embedding).
* ``norm``: ``pre`` (LN before attention/MLP, plus a final LN) or ``post`` (LN after
  each residual, as in the original Transformer).
* ``pool``: ``cls`` (a CLS token) or ``seqpool`` (CCT's attention-weighted sequence pooling).
* ``diag_mask`` (LSA), ``temperature`` (``none|log|vanilla``), ``attention``
  (``fused|per_head``): see :mod:`classbench.layers.attention`.
* ``aux_every=k``: auxiliary heads (LN + pool + linear) after layers k, 2k, ... (not the
  last). In training mode ``forward`` then returns
  ``{"logits": T, "aux": {"aux_l4": T, ...}}`` (1-based layer numbers); in eval mode logits.

A model with a learned temperature reports it through ``extra_metrics()``
(``{"temperature_l0": tau, ...}``, 0-based layer index). ``set_store_attention(True)``
makes every layer keep its last attention weights, read with ``attention_maps()``.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

from ..layers.attention import TransformerBlock
from .registry import register_model


class PatchTokenizer(nn.Module):
    def __init__(self, dim: int, patch: int, in_channels: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConvTokenizer(nn.Sequential):
    """CCT tokenizer: n x (conv k x k, stride 1 -> ReLU -> max-pool 3, stride 2)."""

    def __init__(self, dim: int, layers: int = 1, kernel: int = 3, channels: int = 64, in_channels: int = 3):
        if layers < 1:
            raise ValueError(f"conv_layers must be >= 1; got {layers}")
        mods: list[nn.Module] = []
        cin = in_channels
        for i in range(layers):
            cout = dim if i == layers - 1 else channels
            mods += [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.ReLU(inplace=True),
                     nn.MaxPool2d(3, stride=2, padding=1)]
            cin = cout
        super().__init__(*mods)


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding ``(h*w, dim)``: half the channels encode the row, half the column."""
    if dim % 4:
        raise ValueError(f"pos=sincos2d needs dim divisible by 4; got {dim}")
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4 - 1 if dim > 4 else 1))
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)


class SeqPool(nn.Module):
    """CCT sequence pooling: softmax over tokens of a linear score, then the weighted sum."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.score(x).softmax(dim=1)  # (B, N, 1)
        return (w.transpose(1, 2) @ x).squeeze(1)


class ClsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class Head(nn.Module):
    """LayerNorm (or identity) + pool + linear."""

    def __init__(self, dim: int, num_classes: int, pool: str, norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.pool = SeqPool(dim) if pool == "seqpool" else ClsPool()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.norm(x)))


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


class ViT(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        patch: int = 4,
        dim: int = 256,
        depth: int = 7,
        heads: int = 4,
        mlp_dim: int = 512,
        dropout: float = 0.0,
        pos: str = "learned",
        norm: str = "pre",
        pool: str = "cls",
        diag_mask: bool = False,
        temperature: str = "none",
        attention: str = "fused",
        aux_every: int = 0,
        tokenizer: str = "patch",
        conv_layers: int = 1,
        conv_kernel: int = 3,
        conv_channels: int = 64,
        qkv_bias: bool = False,
    ):
        super().__init__()
        _check("pos", pos, ("learned", "sincos2d", "relative"))
        _check("norm", norm, ("pre", "post"))
        _check("pool", pool, ("cls", "seqpool"))
        _check("tokenizer", tokenizer, ("patch", "conv"))
        if aux_every < 0 or depth < 1:
            raise ValueError(f"need depth >= 1 and aux_every >= 0; got depth={depth}, aux_every={aux_every}")
        if tokenizer == "patch":
            if image_size % patch:
                raise ValueError(f"image_size {image_size} is not divisible by patch {patch}")
            self.tokenizer: nn.Module = PatchTokenizer(dim, patch)
        else:
            self.tokenizer = ConvTokenizer(dim, conv_layers, conv_kernel, conv_channels)
        with torch.no_grad():
            _, _, gh, gw = self.tokenizer(torch.zeros(1, 3, image_size, image_size)).shape
        self.grid = (gh, gw)
        n_tokens = gh * gw + (pool == "cls")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos_embed: nn.Parameter | None = None
        if pos == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, dim))
        elif pos == "sincos2d":
            pe = sincos_2d(gh, gw, dim)
            if pool == "cls":
                pe = torch.cat([torch.zeros(1, dim), pe])
            self.register_buffer("pos_sincos", pe[None], persistent=False)
        self.pos = pos
        self.drop = nn.Dropout(dropout)
        attn_opts = dict(diag_mask=diag_mask, temperature=temperature, qkv_bias=qkv_bias,
                         rel_pos=n_tokens - 1 if pos == "relative" else None)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_dim, dropout, norm=norm, attention=attention, **attn_opts)
            for _ in range(depth)
        )
        # Post-norm layers already end in a LayerNorm.
        self.head = Head(dim, num_classes, pool, norm=(norm == "pre"))
        self.aux_heads = nn.ModuleDict(
            {f"aux_l{i}": Head(dim, num_classes, pool) for i in range(1, depth) if aux_every and i % aux_every == 0}
        )
        self.temperature = temperature
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokenizer(x).flatten(2).transpose(1, 2)  # (B, N, dim)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        elif self.pos == "sincos2d":
            x = x + self.pos_sincos.to(x.dtype)
        return self.drop(x)

    def forward(self, x: torch.Tensor):
        x = self.tokens(x)
        aux = {}
        for i, blk in enumerate(self.blocks, 1):
            x = blk(x)
            name = f"aux_l{i}"
            if self.training and name in self.aux_heads:
                aux[name] = self.aux_heads[name](x)
        logits = self.head(x)
        if self.training and len(self.aux_heads):
            return {"logits": logits, "aux": aux}
        return logits

    def extra_metrics(self) -> dict[str, float]:
        """The learned attention temperature tau of every layer (empty with ``temperature=none``)."""
        if self.temperature == "none":
            return {}
        return {f"temperature_l{i}": blk.attn.temperature_value() for i, blk in enumerate(self.blocks)}

    def set_store_attention(self, flag: bool = True) -> None:
        for blk in self.blocks:
            blk.attn.store_attention = flag
            blk.attn.last_attention = None

    def attention_maps(self) -> list[torch.Tensor | None]:
        """Last attention weights per layer, ``(B, heads, N, N)``, after ``set_store_attention(True)``."""
        return [blk.attn.last_attention for blk in self.blocks]


_VIT_PARAMS = [p for p in inspect.signature(ViT.__init__).parameters.values() if p.name not in ("self", "num_classes")]


def _preset(name: str, doc: str, **preset) -> None:
    """Register a ViT preset whose signature lists every ViT option (preset values as defaults).

    An explicit signature (no ``**kwargs``) lets ``create_model`` reject unknown options.
    """
    unknown = set(preset) - {p.name for p in _VIT_PARAMS}
    assert not unknown, unknown

    def factory(num_classes: int = 10, **options) -> nn.Module:
        return ViT(num_classes, **{**preset, **options})

    params = [inspect.Parameter("num_classes", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=10)]
    params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=preset.get(p.name, p.default)) for p in _VIT_PARAMS]
    factory.__signature__ = inspect.Signature(params, return_annotation=nn.Module)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    shown = {k: v for k, v in preset.items() if not (preset.get("tokenizer") == "conv" and k == "patch")}
    globals()[name] = register_model(channels_last=False, **shown)(factory)


_S002 = dict(patch=8, dim=256, depth=12, heads=4, mlp_dim=1024, pool="cls", pos="learned")
_preset("vit_12x256_p8", "Seed 002 baseline: 12x256, 8x8 patches, post-norm, CLS, learned pos.", **_S002, norm="post")
_preset("vitn_12x256_p8", "vit_12x256_p8 with pre-norm.", **_S002, norm="pre")
_preset("vitn_12x256_p8_ra", "Pre-norm with Transformer-XL relative attention.", **{**_S002, "pos": "relative"}, norm="pre")
_preset("vitn_12x256_p8_dm", "Pre-norm with the LSA diagonal mask.", **_S002, norm="pre", diag_mask=True)
_preset("vitn_12x256_p8_lt", "Pre-norm with a learned log-temperature.", **_S002, norm="pre", temperature="log")
_preset("vitn_12x256_p8_ltv", "Pre-norm with a learned (vanilla) temperature.", **_S002, norm="pre", temperature="vanilla")
_preset("vit_aux_3x4x256_p8", "Post-norm 12x256 with aux heads after layers 4 and 8.", **_S002, norm="post", aux_every=4)

_S004 = dict(patch=4, dim=48, depth=4, heads=4, mlp_dim=192, norm="pre", pos="learned")
_preset("cvit_tiny", "Seed 004 tiny ViT: 4x48, 4x4 patches, CLS.", **_S004, pool="cls")
_preset("mcvit_tiny", "Seed 004 tiny ViT with sequence pooling.", **_S004, pool="seqpool")

_LITE7 = dict(dim=256, depth=7, heads=4, mlp_dim=512, norm="pre", pos="learned")
_preset("vit_lite_7_4", "ViT-Lite-7/4 (Hassani et al., 2021): 4x4 patches, CLS.", **_LITE7, patch=4, pool="cls")
_preset("cvt_7_4", "CVT-7/4: ViT-Lite-7/4 with sequence pooling.", **_LITE7, patch=4, pool="seqpool")
_preset("cct_7_3x1", "CCT-7/3x1: 1-layer 3x3 conv tokenizer, sequence pooling.", **_LITE7, pool="seqpool",
        tokenizer="conv", conv_layers=1, conv_kernel=3)
_preset("cct_2_3x2", "CCT-2/3x2: 2 layers of 128, 2-layer 3x3 conv tokenizer, sequence pooling.", dim=128, depth=2,
        heads=2, mlp_dim=128, norm="pre", pos="learned", pool="seqpool", tokenizer="conv", conv_layers=2, conv_kernel=3)
_preset("vit", "A configurable ViT (defaults: ViT-Lite-7/4); set any option through model.args.", **_LITE7, patch=4)
