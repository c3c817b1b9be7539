"""Vision transformers for 32x32 inputs: one configurable :class:`ViT` and its presets.

Options of :class:`ViT` (every preset accepts all of them as overrides):

* ``tokenizer``: ``patch`` (a ``patch`` x ``patch`` stride-``patch`` conv) or ``conv``
  (CCT's convolutional tokenizer: ``conv_layers`` x [conv ``conv_kernel`` -> ReLU ->
  max-pool 3/2], ``conv_channels`` wide in between, no conv bias).
* ``pos``: ``learned`` (absolute, per token), ``sincos2d`` (fixed 2-D sin-cos over the
  token grid, half the channels for the row and half for the column, concatenated),
  ``sincos2d_sum`` (fixed: the 1-D Transformer sinusoid of the row plus that of the
  column, each over all channels), ``relative`` (no absolute embedding; implies
  ``rel_attn``) or ``none``. The CLS token never gets a fixed position.
* ``rel_attn``: Transformer-XL relative attention over the token sequence in every layer,
  on top of whatever ``pos`` adds; ``rel_bias_init`` (``zeros|randn``) starts its u and v.
* ``norm``: ``pre`` (LN before attention/MLP) or ``post`` (LN after each residual, as in
  the original Transformer). ``final_norm``: a LayerNorm before the head (default: with
  ``pre`` only, since post-norm layers already end in one).
* ``activation`` of the MLPs: ``gelu``, ``gelu_tanh`` or ``relu``.
* ``dropout`` (residual branches and MLP), ``attn_dropout`` (attention weights) and
  ``emb_dropout`` (token embeddings); the last two default to ``dropout``.
* ``drop_path``: stochastic depth, rising linearly from 0 in the first layer to ``drop_path`` in
  the last (as CCT and DeiT); each layer drops both residual branches per sample.
* ``pool``: ``cls`` (a CLS token) or ``seqpool`` (CCT's attention-weighted sequence pooling).
* ``head_hidden``: 0 for a linear head, else an MLP head dim -> head_hidden -> GELU -> classes.
  ``head_classes``: outputs of the head(s) if not ``num_classes`` (e.g. an untailored 1000-way head).
* ``diag_mask`` (LSA), ``temperature`` (``none|log|vanilla``), ``temperature_relative``,
  ``qkv_bias``, ``attention`` (``fused|per_head``): see :mod:`classbench.layers.attention`.
* ``aux_every=k``: auxiliary heads (pool + head, as the main head; a LayerNorm first if
  ``aux_norm``) after layers k, 2k, ... (not the last). In training mode ``forward`` then
  returns ``{"logits": T, "aux": {"aux_l4": T, ...}}`` (1-based layer numbers); in eval mode logits.
* ``input_norm``: ``dataset`` (identity: the loader normalises), ``scalar_ema``,
  ``per_channel_ema`` or ``none``, as the ResNets' (see ``classbench.layers.norms``).
* ``init``: ``trunc_normal`` (Linear weights truncated normal(0, 0.02), zero biases, convs
  Kaiming fan-in, CLS and learned positions truncated normal(0, 0.02)); ``normal``
  (Linear and conv weights normal(0, 0.02), zero biases, CLS and positions truncated
  normal(0, 0.02), as tintn/vision-transformer-from-scratch); ``torch`` (PyTorch's module
  defaults, CLS from randn); ``torch_encoder`` (``torch`` plus what ``nn.TransformerEncoder``
  does: QKV Xavier-uniform, zero QKV and output biases, and every layer of a stack, i.e.
  ``aux_every`` layers or all of them, starting as a copy of its first).

A model with a learned temperature reports it through ``extra_metrics()``
(``{"temperature_l0": tau, ...}``, 0-based layer index). ``set_store_attention(True)``
makes every layer keep its last attention weights, read with ``attention_maps()``.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

from ..layers.attention import TransformerBlock, sinusoidal_encoding
from ..layers.norms import make_input_norm
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


def sincos_2d_sum(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D embedding ``(h*w, dim)``: the 1-D sinusoid of the row plus that of the column.

    Both use every channel (``sinusoidal_encoding``), so position (r, c) and (c, r) get the same
    vector: this is the encoding of enhuiz/image-classification, kept for fidelity.
    """
    if dim % 2:
        raise ValueError(f"pos=sincos2d_sum needs an even dim; got {dim}")
    rows = sinusoidal_encoding(torch.arange(h), dim)  # (h, dim)
    cols = sinusoidal_encoding(torch.arange(w), dim)  # (w, dim)
    return (rows[:, None, :] + cols[None, :, :]).reshape(h * w, dim)


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
    """LayerNorm (or identity) + pool + [linear -> GELU, if ``hidden``] + linear."""

    def __init__(self, dim: int, num_classes: int, pool: str, norm: bool = True, hidden: int = 0):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.pool = SeqPool(dim) if pool == "seqpool" else ClsPool()
        self.hidden = nn.Sequential(nn.Linear(dim, hidden), nn.GELU()) if hidden else nn.Identity()
        self.fc = nn.Linear(hidden or dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(self.pool(self.norm(x))))


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
        rel_attn: bool = False,
        rel_bias_init: str = "zeros",
        temperature_relative: bool = False,
        activation: str = "gelu",
        attn_dropout: float | None = None,
        emb_dropout: float | None = None,
        final_norm: bool | None = None,
        head_hidden: int = 0,
        head_classes: int | None = None,
        aux_norm: bool = True,
        init: str = "trunc_normal",
        input_norm: str = "dataset",
        drop_path: float = 0.0,
    ):
        super().__init__()
        _check("pos", pos, ("learned", "sincos2d", "sincos2d_sum", "relative", "none"))
        _check("norm", norm, ("pre", "post"))
        _check("pool", pool, ("cls", "seqpool"))
        _check("tokenizer", tokenizer, ("patch", "conv"))
        _check("init", init, ("trunc_normal", "normal", "torch", "torch_encoder"))
        if aux_every < 0 or depth < 1 or head_hidden < 0:
            raise ValueError(f"need depth >= 1, aux_every >= 0 and head_hidden >= 0; got depth={depth}, "
                             f"aux_every={aux_every}, head_hidden={head_hidden}")
        self.input_norm = make_input_norm(input_norm)
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
        elif pos in ("sincos2d", "sincos2d_sum"):
            pe = (sincos_2d if pos == "sincos2d" else sincos_2d_sum)(gh, gw, dim)
            if pool == "cls":
                pe = torch.cat([torch.zeros(1, dim), pe])
            self.register_buffer("pos_sincos", pe[None], persistent=False)
        self.pos = pos
        self.drop = nn.Dropout(dropout if emb_dropout is None else emb_dropout)
        relative = rel_attn or pos == "relative"
        attn_opts = dict(diag_mask=diag_mask, temperature=temperature, qkv_bias=qkv_bias,
                         rel_pos=n_tokens - 1 if relative else None, rel_bias_init=rel_bias_init,
                         temperature_relative=temperature_relative, attn_dropout=attn_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_dim, dropout, norm=norm, attention=attention, activation=activation,
                             drop_path=drop_path * i / max(depth - 1, 1), **attn_opts)
            for i in range(depth)
        )
        out = int(head_classes) if head_classes is not None else num_classes
        # Post-norm layers already end in a LayerNorm, so by default only pre-norm adds one.
        final_norm = (norm == "pre") if final_norm is None else bool(final_norm)
        self.head = Head(dim, out, pool, norm=final_norm, hidden=head_hidden)
        self.aux_heads = nn.ModuleDict(
            {f"aux_l{i}": Head(dim, out, pool, norm=aux_norm, hidden=head_hidden)
             for i in range(1, depth) if aux_every and i % aux_every == 0}
        )
        self.temperature = temperature
        self._init_weights(init, stack=aux_every or depth)

    def _init_weights(self, init: str, stack: int) -> None:
        if init in ("trunc_normal", "normal"):
            draw = nn.init.trunc_normal_ if init == "trunc_normal" else nn.init.normal_
            for m in self.modules():
                if isinstance(m, nn.Linear) or (init == "normal" and isinstance(m, nn.Conv2d)):
                    draw(m.weight, std=0.02)
                elif isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            if self.pos_embed is not None:
                nn.init.trunc_normal_(self.pos_embed, std=0.02)
            if self.cls_token is not None:
                nn.init.trunc_normal_(self.cls_token, std=0.02)
            return
        # torch / torch_encoder: the modules keep the defaults they were built with.
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token)
        if self.pos_embed is not None:
            nn.init.normal_(self.pos_embed)
        if init == "torch_encoder":
            for blk in self.blocks:
                attn = blk.attn
                for proj in ((attn.qkv,) if hasattr(attn, "qkv") else ()):
                    nn.init.xavier_uniform_(proj.weight)
                    if proj.bias is not None:
                        nn.init.zeros_(proj.bias)
                nn.init.zeros_(attn.proj.bias)
            # nn.TransformerEncoder deep-copies one layer, so every layer of a stack starts equal.
            blocks = list(self.blocks)
            for start in range(0, len(blocks), stack):
                first = blocks[start].state_dict()
                for blk in blocks[start + 1:start + stack]:
                    blk.load_state_dict(first)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokenizer(self.input_norm(x)).flatten(2).transpose(1, 2)  # (B, N, dim)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        elif self.pos in ("sincos2d", "sincos2d_sum"):
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


# enhuiz/image-classification (c6759ec, src/models/vit.py, vit_native.py, vit_aux.py): fixed row+column
# sinusoids (none on CLS), CLS from randn, MLP head 256 -> 1024 -> GELU -> classes on the CLS token
# with no LayerNorm before it, dropout 0.1 but none on the embeddings, PyTorch's default init.
_S002 = dict(patch=8, dim=256, depth=12, heads=4, mlp_dim=1024, pool="cls", pos="sincos2d_sum", head_hidden=1024,
             dropout=0.1, emb_dropout=0.0, final_norm=False, init="torch")
# `vit`/`vit-aux` stack nn.TransformerEncoderLayer: post-norm, ReLU, QKV bias, dropout on the attention weights.
_S002_POST = dict(_S002, norm="post", activation="relu", qkv_bias=True, init="torch_encoder")
# `vitn` is its own pre-norm layer: GELU, no QKV bias, no dropout on the attention weights, no final LayerNorm.
_S002_PRE = dict(_S002, norm="pre", attn_dropout=0.0)
_preset("vit_12x256_p8", "enhuiz ViT: 12x256, 8x8 patches, post-norm nn.TransformerEncoderLayer, CLS, MLP head.",
        **_S002_POST)
_preset("vitn_12x256_p8", "enhuiz ViTN: vit_12x256_p8 with its own pre-norm layers (no final LayerNorm).", **_S002_PRE)
_preset("vitn_12x256_p8_ra", "vitn_12x256_p8 plus Transformer-XL relative attention (u, v from randn).",
        **_S002_PRE, rel_attn=True, rel_bias_init="randn")
_preset("vitn_12x256_p8_dm", "vitn_12x256_p8 with the LSA diagonal mask.", **_S002_PRE, diag_mask=True)
_preset("vitn_12x256_p8_lt", "vitn_12x256_p8 with a learned log(1/tau) on top of the fixed scale, from 0.", **_S002_PRE,
        temperature="log", temperature_relative=True)
_preset("vitn_12x256_p8_ltv", "vitn_12x256_p8 with a learned tau on top of the fixed scale, from 1.", **_S002_PRE,
        temperature="vanilla", temperature_relative=True)
_preset("vit_aux_3x4x256_p8", "enhuiz ViTAux: vit_12x256_p8 as 3 stacks of 4 layers, an MLP head (no LN) after each.",
        **_S002_POST, aux_every=4, aux_norm=False)

# tintn/vision-transformer-from-scratch (52c59c6, vit.py, train.py's config): pre-norm, QKV bias,
# tanh-GELU, no final LayerNorm, normal(0, 0.02) init.
_S004 = dict(patch=4, dim=48, depth=4, heads=4, mlp_dim=192, norm="pre", pos="learned", qkv_bias=True,
             final_norm=False, activation="gelu_tanh", init="normal")
_preset("cvit_tiny", "tintn's tiny ViT: 4x48, 4x4 patches, CLS.", **_S004, pool="cls")
_preset("mcvit_tiny", "cvit_tiny with sequence pooling in place of the CLS token.", **_S004, pool="seqpool")

_LITE7 = dict(dim=256, depth=7, heads=4, mlp_dim=512, norm="pre", pos="learned")
_preset("vit_lite_7_4", "ViT-Lite-7/4 (Hassani et al., 2021): 4x4 patches, CLS.", **_LITE7, patch=4, pool="cls")
_preset("cvt_7_4", "CVT-7/4: ViT-Lite-7/4 with sequence pooling.", **_LITE7, patch=4, pool="seqpool")
_preset("cct_7_3x1", "CCT-7/3x1: 1-layer 3x3 conv tokenizer, sequence pooling.", **_LITE7, pool="seqpool",
        tokenizer="conv", conv_layers=1, conv_kernel=3)
_preset("cct_2_3x2", "CCT-2/3x2: 2 layers of 128, 2-layer 3x3 conv tokenizer, sequence pooling.", dim=128, depth=2,
        heads=2, mlp_dim=128, norm="pre", pos="learned", pool="seqpool", tokenizer="conv", conv_layers=2, conv_kernel=3)
_preset("vit", "A configurable ViT (defaults: ViT-Lite-7/4); set any option through model.args.", **_LITE7, patch=4)
