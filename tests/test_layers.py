"""Shared building blocks: attention variants, relative positions, MixStyle, EMA input norms."""

from __future__ import annotations

import math

import pytest
import torch

from classbench.layers import attention
from classbench.layers.attention import (
    Attention,
    PerHeadAttention,
    TransformerBlock,
    load_fused_into_per_head,
    per_head_to_fused_state,
    relative_position_term,
    sinusoidal_encoding,
)
from classbench.layers.mixstyle import MixStyle
from classbench.layers.norms import EMAInputNorm, make_input_norm, make_norm2d

ATTN_OPTIONS = [
    {},
    {"diag_mask": True},
    {"temperature": "log"},
    {"temperature": "vanilla"},
    {"rel_pos": 6},
    {"rel_pos": 6, "diag_mask": True, "temperature": "log", "qkv_bias": True},
]


def _pair(dim=16, heads=4, **opts):
    torch.manual_seed(0)
    fused = Attention(dim, heads, **opts).eval()
    per_head = PerHeadAttention(dim, heads, **opts).eval()
    if "rel_pos" in opts:  # make u and v non-zero so their terms matter
        with torch.no_grad():
            fused.u_bias.normal_()
            fused.v_bias.normal_()
    return fused, load_fused_into_per_head(per_head, fused)


@pytest.mark.parametrize("opts", ATTN_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_fused_and_per_head_attention_agree(opts):
    fused, per_head = _pair(**opts)
    x = torch.randn(3, 7, 16)
    torch.testing.assert_close(per_head(x), fused(x), atol=1e-5, rtol=0)
    # and back: per-head weights loaded into a fresh fused module
    fused2 = Attention(16, 4, **opts).eval()
    fused2.load_state_dict(per_head_to_fused_state(per_head.state_dict(), 4))
    torch.testing.assert_close(fused2(x), fused(x), atol=1e-6, rtol=0)


def test_attention_maps_of_both_layouts_agree():
    fused, per_head = _pair(rel_pos=6)
    fused.store_attention = per_head.store_attention = True
    x = torch.randn(2, 7, 16)
    fused(x), per_head(x)
    assert fused.last_attention.shape == (2, 4, 7, 7)
    torch.testing.assert_close(per_head.last_attention, fused.last_attention, atol=1e-6, rtol=0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("opts", [{}, {"temperature": "log"}, {"temperature": "vanilla"}], ids=str)
def test_sdpa_and_explicit_attention_agree(monkeypatch, precision, opts):
    """Whichever kernel ``sdpa_is_faster`` picks, outputs and gradients are the same function."""
    torch.manual_seed(0)
    attn = Attention(24, 4, **opts)
    x = torch.randn(3, 9, 24)
    results = []
    for use_sdpa in (True, False):
        monkeypatch.setattr(attention, "sdpa_is_faster", lambda q, use=use_sdpa: use)
        attn.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = attn(x)
        out.float().square().sum().backward()
        results.append((out.float(), [p.grad.clone() for p in attn.parameters()]))
    tol = {"atol": 1e-5, "rtol": 1e-5} if precision == "fp32" else {"atol": 3e-2, "rtol": 3e-2}
    (out_sdpa, grads_sdpa), (out_explicit, grads_explicit) = results
    torch.testing.assert_close(out_explicit, out_sdpa, **tol)
    for a, b in zip(grads_explicit, grads_sdpa):
        torch.testing.assert_close(a, b, **tol)


def test_attention_runs_the_kernel_that_sdpa_is_faster_picks(monkeypatch):
    """The module follows the choice: SDPA exactly where ``sdpa_is_faster`` says so, else the explicit form."""
    calls = []
    real = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    attn = Attention(16, 4).eval()
    picked_both = set()
    for n in (5, 17, 65, 97, 129, 257):
        calls.clear()
        q = torch.empty(1, 4, n, 4)
        with torch.no_grad():
            attn(torch.randn(1, n, 16))
        assert bool(calls) == attention.sdpa_is_faster(q), n
        picked_both.add(bool(calls))
    assert picked_both == {True, False}  # the CPU choice depends on the length, so both paths ran


def test_sdpa_choice_is_monotone_in_length_and_device_aware():
    def q(n, dtype=torch.float32, device="cpu"):
        return torch.empty(2, 4, n, 12, dtype=dtype, device=device)

    lengths = [2**k + 1 for k in range(1, 13)]
    for dtype in (torch.float32, torch.bfloat16):
        picks = [attention.sdpa_is_faster(q(n, dtype)) for n in lengths]
        # once SDPA wins at some length it wins at every longer one, and at long enough sequences it does
        assert picks == sorted(picks) and picks[-1], (dtype, picks)
    # bf16 keeps the explicit form at least as long as fp32 (its matmuls run on the bf16 units)
    first = {dt: next(n for n in lengths if attention.sdpa_is_faster(q(n, dt))) for dt in (torch.float32, torch.bfloat16)}
    assert first[torch.bfloat16] >= first[torch.float32]
    # off the CPU the fused kernels are always chosen
    assert all(attention.sdpa_is_faster(q(n, device="meta")) for n in lengths)


def test_stored_attention_path_matches_fast_path(monkeypatch):
    monkeypatch.setattr(attention, "sdpa_is_faster", lambda q: True)  # the fast path on any device
    attn = Attention(16, 4, temperature="log").eval()
    x = torch.randn(2, 5, 16)
    fast = attn(x)
    attn.store_attention = True
    torch.testing.assert_close(attn(x), fast, atol=1e-6, rtol=0)
    torch.testing.assert_close(attn.last_attention.sum(-1), torch.ones(2, 4, 5))


@pytest.mark.parametrize("cls", [Attention, PerHeadAttention])
def test_diag_mask_zeroes_the_diagonal(cls):
    attn = cls(16, 4, diag_mask=True).eval()
    attn.store_attention = True
    attn(torch.randn(2, 6, 16))
    w = attn.last_attention
    diag = torch.diagonal(w, dim1=-2, dim2=-1)
    assert torch.equal(diag, torch.zeros_like(diag))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6))


@pytest.mark.parametrize("kind", ["log", "vanilla"])
def test_learned_temperature_starts_at_standard_scaling(kind):
    attn = Attention(32, 4, temperature=kind)
    params = dict(attn.named_parameters())
    name = "log_inv_tau" if kind == "log" else "tau"
    assert params[name].requires_grad and params[name].dim() == 0
    assert float(attn.logit_scale().detach()) == pytest.approx(1 / math.sqrt(8))
    assert attn.temperature_value() == pytest.approx(math.sqrt(8))
    attn(torch.randn(2, 5, 32)).sum().backward()
    assert params[name].grad is not None and params[name].grad.abs() > 0


@pytest.mark.parametrize("kind", ["log", "vanilla"])
def test_relative_temperature_starts_at_one_and_computes_the_same_function(kind):
    torch.manual_seed(0)
    absolute = Attention(32, 4, temperature=kind).eval()
    relative = Attention(32, 4, temperature=kind, temperature_relative=True).eval()
    state = {k: v for k, v in absolute.state_dict().items() if "tau" not in k}
    relative.load_state_dict(state, strict=False)
    assert relative.temperature_value() == pytest.approx(1.0)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(relative(x), absolute(x))  # at the start both are the fixed scaling
        # tau = 2 on top of the scale halves the logits of the fixed scaling
        (relative.tau.fill_(2.0) if kind == "vanilla" else relative.log_inv_tau.fill_(-math.log(2.0)))
        assert float(relative.logit_scale()) == pytest.approx(0.5 / math.sqrt(8))
        assert relative.temperature_value() == pytest.approx(2.0)


def test_relative_vanilla_temperature_learns_sqrt_d_faster():
    """The same logits, but the gradient on a relative tau is sqrt(d_head) times that on an absolute one
    (times tau_abs / tau_rel), so under SGD its logits move sqrt(d_head) times further per step."""
    torch.manual_seed(0)
    absolute = Attention(32, 4, temperature="vanilla").train()
    relative = Attention(32, 4, temperature="vanilla", temperature_relative=True).train()
    relative.load_state_dict({k: v for k, v in absolute.state_dict().items() if k != "tau"}, strict=False)
    x = torch.randn(2, 5, 32)
    absolute(x).square().sum().backward()
    relative(x).square().sum().backward()
    # d loss / d tau_abs = d loss / d tau_rel * (d tau_rel / d tau_abs) = g_rel / sqrt(8)
    torch.testing.assert_close(absolute.tau.grad * math.sqrt(8), relative.tau.grad, rtol=1e-4, atol=0)


def test_rel_bias_init():
    torch.manual_seed(0)
    zeros, randn = Attention(16, 4, rel_pos=5), Attention(16, 4, rel_pos=5, rel_bias_init="randn")
    assert torch.equal(zeros.u_bias, torch.zeros(4, 4)) and torch.equal(zeros.v_bias, torch.zeros(4, 4))
    assert randn.u_bias.abs().min() > 0 and not torch.equal(randn.u_bias, randn.v_bias)
    with pytest.raises(ValueError):
        Attention(16, 4, rel_pos=5, rel_bias_init="ones")


def test_attention_weight_dropout_is_separate():
    attn = Attention(16, 4, dropout=0.1, attn_dropout=0.0)
    assert attn.attn_drop.p == 0.0 and attn.proj_drop.p == 0.1
    assert Attention(16, 4, dropout=0.1).attn_drop.p == 0.1  # defaults to dropout


@pytest.mark.parametrize("name,fn", [("gelu", lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))),
                                     ("gelu_tanh", lambda x: 0.5 * x * (1 + torch.tanh(
                                         math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
                                     ("relu", lambda x: x.clamp(min=0))])
def test_mlp_activations(name, fn):
    blk = TransformerBlock(8, 2, 16, activation=name)
    x = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(blk.mlp[1](x), fn(x), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        TransformerBlock(8, 2, 16, activation="swish")


def test_no_temperature_is_fixed():
    attn = Attention(32, 4)
    assert not any("tau" in n for n, _ in attn.named_parameters())
    assert attn.logit_scale() == pytest.approx(1 / math.sqrt(8))


def test_relative_term_depends_only_on_offsets():
    torch.manual_seed(0)
    heads, d, max_off = 2, 4, 12
    q = torch.randn(2, heads, 5, d)
    v_bias = torch.randn(heads, d)
    rel = torch.randn(2 * max_off + 1, heads, d)
    pos_q, pos_k = torch.arange(5), torch.arange(6)
    base = relative_position_term(q, v_bias, rel, pos_q, pos_k)
    assert base.shape == (2, heads, 5, 6)
    for shift in (1, 3, -2):
        assert torch.equal(relative_position_term(q, v_bias, rel, pos_q + shift, pos_k + shift), base)
    # shifting only the keys changes the offsets, hence the term
    assert not torch.allclose(relative_position_term(q, v_bias, rel, pos_q, pos_k + 1), base)
    # entry (i, j) is (q_i + v) . rel[i - j + M]
    i, j = 4, 1
    expected = ((q[:, :, i] + v_bias) * rel[i - j + max_off]).sum(-1)
    torch.testing.assert_close(base[:, :, i, j], expected)


def test_sinusoidal_encoding():
    enc = sinusoidal_encoding(torch.arange(-3, 4), 10)
    assert enc.shape == (7, 10)
    torch.testing.assert_close(enc[3], torch.cat([torch.zeros(5), torch.ones(5)]))  # offset 0


def test_relative_attention_has_u_and_v_and_projection():
    attn = Attention(16, 4, rel_pos=5)
    names = {n for n, _ in attn.named_parameters()}
    assert {"u_bias", "v_bias", "rel_proj.weight"} <= names
    attn(torch.randn(2, 6, 16)).sum().backward()
    assert all(p.grad is not None for p in attn.parameters())


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_transformer_block_shapes(norm):
    blk = TransformerBlock(16, 2, 32, norm=norm)
    assert blk(torch.randn(2, 5, 16)).shape == (2, 5, 16)


def test_bad_options_raise_value_error():
    with pytest.raises(ValueError):
        Attention(16, 3)
    with pytest.raises(ValueError):
        Attention(16, 4, temperature="hot")
    with pytest.raises(ValueError):
        TransformerBlock(16, 4, 32, norm="middle")


# ---------------------------------------------------------------- MixStyle

def test_mixstyle_is_exact_identity_in_eval():
    m = MixStyle(p=1.0).eval()
    x = torch.randn(4, 8, 5, 5)
    assert torch.equal(m(x), x)


def test_mixstyle_mixes_in_training():
    torch.manual_seed(0)
    m = MixStyle(p=1.0, alpha=0.1).train()
    x = torch.randn(8, 4, 6, 6) * torch.arange(1, 9).view(8, 1, 1, 1)
    y = m(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    assert torch.equal(MixStyle(p=0.0).train()(x), x)


def test_mixstyle_samples_on_the_feature_device():
    """No host round trip: on a ``meta`` input every op of the forward runs on ``meta``, except the
    CPU coin flip for ``p``; the old code sampled Beta on the CPU and copied it over."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Devices(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.mixed = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
            devices = {t.device.type for t in tensors}
            if "meta" in devices and len(devices) > 1:
                self.mixed.append(str(func))
            return out

    m = MixStyle(p=1.0).train()
    x = torch.empty(4, 8, 5, 5, device="meta")
    with Devices() as mode:
        y = m(x)
    assert y.device.type == "meta" and y.shape == x.shape
    assert mode.mixed == [], mode.mixed


def test_mixstyle_weights_are_beta_distributed():
    import numpy as np
    from scipy import stats

    torch.manual_seed(0)
    lam = MixStyle(alpha=0.1)._beta_weights(4000, torch.device("cpu")).flatten().numpy()
    assert lam.min() >= 0 and lam.max() <= 1
    # against torch's own Beta sampler. About 10 % of Beta(0.1, 0.1) lies within float32's resolution of 1,
    # where the two samplers round differently (1.0 against 0.99999994), so compare at a resolution of 1e-6.
    reference = torch.distributions.Beta(torch.tensor(0.1), torch.tensor(0.1)).sample((4000,)).numpy()
    clip = lambda v: np.clip(v, 1e-6, 1 - 1e-6)  # noqa: E731
    assert stats.ks_2samp(clip(lam), clip(reference)).pvalue > 0.01
    assert abs(lam.mean() - 0.5) < 0.03


# ---------------------------------------------------------------- EMA input norms

@pytest.mark.parametrize("per_channel", [False, True])
def test_ema_input_norm_updates_in_train_and_freezes_in_eval(per_channel):
    torch.manual_seed(0)
    norm = EMAInputNorm(3, per_channel=per_channel, momentum=0.01)
    n = 3 if per_channel else 1
    assert norm.running_mean.shape == (n,)
    x1 = torch.rand(8, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    y1 = norm.train()(x1)
    dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
    # the first batch initialises the statistics, so it comes out standardised
    torch.testing.assert_close(y1.mean(dim=dims).reshape(n), torch.zeros(n), atol=1e-5, rtol=0)
    m1 = norm.running_mean.clone()
    x2 = torch.rand(8, 3, 4, 4) + 5
    norm(x2)
    mean2 = x2.mean(dim=dims).reshape(n)
    torch.testing.assert_close(norm.running_mean, 0.99 * m1 + 0.01 * mean2)
    assert int(norm.num_batches_tracked) == 2
    frozen = {k: v.clone() for k, v in norm.state_dict().items()}
    norm.eval()
    out = norm(torch.rand(8, 3, 4, 4) * 100)
    for k, v in norm.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    expected = (x2 - norm.running_mean.view(1, -1, 1, 1)) / (norm.running_var.view(1, -1, 1, 1) + norm.eps).sqrt()
    torch.testing.assert_close(norm(x2), expected)
    assert out.shape == (8, 3, 4, 4)


def test_make_input_norm_kinds():
    assert isinstance(make_input_norm("dataset"), torch.nn.Identity)
    assert isinstance(make_input_norm("none"), torch.nn.Identity)
    assert not make_input_norm("scalar_ema").per_channel
    assert make_input_norm("per_channel_ema").per_channel
    with pytest.raises(ValueError):
        make_input_norm("imagenet")


def test_make_norm2d():
    gn = make_norm2d("gn", 64)
    assert isinstance(gn, torch.nn.GroupNorm) and gn.num_groups == 16
    assert isinstance(make_norm2d("bn", 8), torch.nn.BatchNorm2d)
    assert isinstance(make_norm2d("none", 8), torch.nn.Identity)
    with pytest.raises(ValueError):
        make_norm2d("ln", 8)
