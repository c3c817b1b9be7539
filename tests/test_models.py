"""The model zoo: shapes, gradients, determinism, parameter counts, ViT options, profile, CLI."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
import torch.nn.functional as F

from classbench.errors import ConfigError
from classbench.layers.attention import convert_attention_layout
from classbench.models import create_model, get_entry, list_models
from classbench.drivers.bench import add_speed
from classbench.models.profile import count_flops, count_params, format_rows, model_rows
from classbench.train.speed import measure_speed

from support.marks import BIG_MODELS, params

# Exact parameter counts with 10 classes. The reference presets (vit*_12x256_p8*, vit_aux_*, cvit_tiny,
# mcvit_tiny) are checked against the originals' own counts in test_fidelity.py.
PARAMS = {
    "airbench_net": 1_971_352,
    "alexnet": 7_706_442,
    "cct_2_3x2": 283_723,
    "cct_7_3x1": 3_760_139,
    "cvit_tiny": 119_098,
    "cvt_7_4": 3_716_619,
    "googlenet": 6_166_250,
    "mcvit_tiny": 119_051,
    "mobilenetv1": 3_217_226,
    "resnet101": 42_512_970,
    "resnet110": 1_730_714,
    "resnet152": 58_156_618,
    "resnet18": 11_173_962,
    "resnet20": 272_474,
    "resnet32": 466_906,
    "resnet34": 21_282_122,
    "resnet44": 661_338,
    "resnet50": 23_520_842,
    "resnet56": 855_770,
    "toy_dilated": 29_098,
    "vgg11": 9_231_114,
    "vgg13": 9_416_010,
    "vgg16": 14_728_266,
    "vgg19": 20_040_522,
    "vit": 3_716_874,
    "vit_12x256_p8": 9_800_202,
    "vit_aux_3x4x256_p8": 10_347_038,
    "vit_lite_7_4": 3_716_874,
    "vitn_12x256_p8": 9_790_986,
    "vitn_12x256_p8_dm": 9_790_986,
    "vitn_12x256_p8_lt": 9_790_998,
    "vitn_12x256_p8_ltv": 9_790_998,
    "vitn_12x256_p8_ra": 10_583_562,
    "xception": 20_827_442,
}

# Published figures (Hassani et al., 2021, CIFAR-10) and He et al. (2016).
PUBLISHED = {"cct_7_3x1": 3.76e6, "vit_lite_7_4": 3.72e6, "cct_2_3x2": 0.28e6, "resnet20": 0.27e6}

ALL = list_models()


def _model10(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=10)


def _logits(out):
    return out["logits"] if isinstance(out, dict) else out


def test_every_model_has_a_pinned_param_count():
    assert sorted(PARAMS) == ALL


@pytest.mark.parametrize("name", params(ALL, BIG_MODELS, ids=str))
def test_train_step_gradients_and_eval_determinism(name):
    torch.manual_seed(0)
    model = _model10(name).train()
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([1, 7])
    out = model(x)
    logits = _logits(out)
    assert logits.shape == (2, 10)
    loss = F.cross_entropy(logits, y)
    if isinstance(out, dict):
        assert out["aux"], "an aux dict must not be empty"
        for aux in out["aux"].values():
            assert aux.shape == (2, 10)
            loss = loss + F.cross_entropy(aux, y)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert isinstance(a, torch.Tensor) and a.shape == (2, 10)
    assert torch.equal(a, b)
    assert count_params(model) == PARAMS[name]


@pytest.mark.parametrize("name", params(ALL, BIG_MODELS, ids=str))
def test_100_classes(name):
    # Shapes only, so on the meta device (no compute): the 10-class test above runs the numbers.
    with torch.device("meta"):
        model = create_model(name, num_classes=100).eval()
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100)
    # only the classifier heads (main and aux) grow: 90 more rows each
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 100]
    assert heads and count_params(model) == PARAMS[name] + sum(90 * (m.in_features + (m.bias is not None)) for m in heads)


@pytest.mark.parametrize("name,published", sorted(PUBLISHED.items()))
def test_published_param_counts(name, published):
    assert round(PARAMS[name] / 1e6, 2) == round(published / 1e6, 2)  # agrees to the published digits
    if name != "cct_2_3x2":
        assert abs(PARAMS[name] - published) / published < 0.01
    # CCT-2/3x2 is the official architecture exactly (SHI-Labs cct_2_3x2_32: 283,723 parameters);
    # the paper's "0.28M" is rounded to two digits, which alone allows +-1.8 %, so 1 % cannot hold.


def _basic_resnet_params(stem_kernel: int, blocks, widths, classes: int) -> int:
    """Parameters of a basic-block ResNet, counted from its layout: bias-free convs, each followed by a
    BatchNorm (weight + bias), a 1x1 projection wherever the width changes, and a linear head."""

    def conv_bn(cin: int, cout: int, k: int) -> int:
        return cin * cout * k * k + 2 * cout

    n = conv_bn(3, widths[0], stem_kernel)
    cin = widths[0]
    for b, w in zip(blocks, widths):
        for _ in range(b):
            n += conv_bn(cin, w, 3) + conv_bn(w, w, 3) + (conv_bn(cin, w, 1) if cin != w else 0)
            cin = w
    return n + cin * classes + classes


@pytest.mark.parametrize("name,opts,stem_kernel,blocks,widths", [
    ("resnet18", {}, 3, (2, 2, 2, 2), (64, 128, 256, 512)),                    # kuangliu's CIFAR layout
    ("resnet18", {"stem": "imagenet"}, 7, (2, 2, 2, 2), (64, 128, 256, 512)),  # torchvision's (a max-pool: no params)
    ("resnet34", {"stem": "imagenet"}, 7, (3, 4, 6, 3), (64, 128, 256, 512)),
    ("resnet20", {}, 3, (3, 3, 3), (16, 32, 64)),
])
def test_resnet_counts_follow_from_the_layout(name, opts, stem_kernel, blocks, widths):
    assert count_params(create_model(name, num_classes=10, **opts)) == \
        _basic_resnet_params(stem_kernel, blocks, widths, 10)


def test_registry_metadata():
    assert get_entry("resnet18").family == "resnet" and get_entry("resnet18").channels_last
    vit = get_entry("vit_12x256_p8")
    assert vit.family == "vit" and not vit.channels_last
    assert vit.options["patch"] == 8 and vit.options["dim"] == 256 and vit.options["depth"] == 12


# ---------------------------------------------------------------- ResNet options

def test_unknown_options_are_config_errors():
    with pytest.raises(ConfigError, match="no option 'nrom'"):
        create_model("resnet20", nrom="gn")
    with pytest.raises(ConfigError, match="no option 'dimm'"):
        create_model("cvit_tiny", dimm=32)
    with pytest.raises(ConfigError):
        create_model("resnet20", norm="layer")
    with pytest.raises(ConfigError):
        create_model("resnet20", mixstyle_stages=[4])
    with pytest.raises(ConfigError):
        create_model("cvit_tiny", pool="mean")


def test_head_classes():
    model = create_model("resnet20", num_classes=10, head_classes=1000).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


@pytest.mark.parametrize("norm", ["gn", "none"])
def test_resnet_norms(norm):
    model = create_model("resnet20", norm=norm)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "BatchNorm2d" not in kinds
    assert ("GroupNorm" in kinds) == (norm == "gn")
    model(torch.randn(2, 3, 32, 32)).sum().backward()


def test_mixstyle_resnet_is_plain_resnet_in_eval():
    torch.manual_seed(0)
    plain = create_model("resnet20")
    mixed = create_model("resnet20", mixstyle_stages=[1, 2, 3])
    mixed.load_state_dict(plain.state_dict())  # MixStyle has no state
    assert mixed.mixstyle_after == (1, 2, 3) and mixed.mixstyle is not None
    x = torch.randn(4, 3, 32, 32)
    plain.eval(), mixed.eval()
    with torch.no_grad():
        assert torch.equal(mixed(x), plain(x))


def test_mixstyle_resnet_mixes_in_training():
    torch.manual_seed(0)
    plain = create_model("resnet20").train()
    mixed = create_model("resnet20", mixstyle_stages=[1])
    mixed.load_state_dict(plain.state_dict())
    mixed.train()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = plain(x)
        # p = 0.5 per forward: in 8 tries it mixes at least once (fixed seed)
        assert any(not torch.allclose(mixed(x), ref) for _ in range(8))


@pytest.mark.parametrize("kind,n", [("scalar_ema", 1), ("per_channel_ema", 3)])
def test_resnet_ema_input_norm(kind, n):
    model = create_model("resnet20", input_norm=kind)
    norm = model.input_norm
    assert norm.running_mean.shape == (n,)
    model.train()(torch.rand(4, 3, 32, 32))
    assert int(norm.num_batches_tracked) == 1
    stats = norm.running_mean.clone()
    model.eval()(torch.rand(4, 3, 32, 32) + 3)
    assert torch.equal(norm.running_mean, stats)
    assert "input_norm.running_mean" in model.state_dict()


def test_dataset_input_norm_is_identity():
    assert isinstance(create_model("resnet20", input_norm="dataset").input_norm, torch.nn.Identity)
    assert isinstance(create_model("resnet20", input_norm="none").input_norm, torch.nn.Identity)


# ---------------------------------------------------------------- ViT options

def _vit(**opts):
    torch.manual_seed(0)
    return create_model("cvit_tiny", **opts)


@pytest.mark.parametrize(
    "opts",
    [{}, {"pos": "relative", "diag_mask": True, "temperature": "log"}, {"pool": "seqpool", "temperature": "vanilla"},
     {"tokenizer": "conv", "conv_layers": 2, "pos": "sincos2d", "norm": "post"},
     {"pos": "sincos2d_sum", "rel_attn": True, "rel_bias_init": "randn", "temperature": "vanilla",
      "temperature_relative": True, "activation": "relu", "head_hidden": 32, "final_norm": False, "init": "torch"}],
    ids=["plain", "ra-dm-lt", "seqpool-ltv", "conv-sincos-post", "sum-ra-relative-mlphead"],
)
def test_vit_fused_and_per_head_models_agree(opts):
    fused = _vit(**opts).eval()
    per_head = _vit(attention="per_head", **opts).eval()
    per_head.load_state_dict(convert_attention_layout(fused.state_dict(), heads=4, to="per_head"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(per_head(x), fused(x), atol=1e-5, rtol=0)


def test_vit_diag_mask_weights_are_zero():
    model = _vit(diag_mask=True).eval()
    model.set_store_attention(True)
    model(torch.randn(2, 3, 32, 32))
    maps = model.attention_maps()
    assert len(maps) == 4
    for w in maps:
        assert w.shape == (2, 4, 65, 65)
        diag = torch.diagonal(w, dim1=-2, dim2=-1)
        assert torch.equal(diag, torch.zeros_like(diag))
    model.set_store_attention(False)
    assert model.attention_maps() == [None] * 4


@pytest.mark.parametrize("name,param,opts,start", [
    ("vitn_12x256_p8_lt", "log_inv_tau", {}, 1.0),  # relative to the fixed 1/sqrt(64), as the source's
    ("vitn_12x256_p8_ltv", "tau", {}, 1.0),
    ("vitn_12x256_p8_ltv", "tau", {"temperature_relative": False}, 8.0),  # absolute: sqrt(256 / 4)
])
def test_learned_temperature_is_trainable_and_reported(name, param, opts, start):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, dropout=0.0, **opts)
    temps = [p for n, p in model.named_parameters() if n.endswith(f"attn.{param}")]
    assert len(temps) == 12 and all(p.requires_grad for p in temps)
    metrics = model.extra_metrics()
    assert sorted(metrics) == sorted(f"temperature_l{i}" for i in range(12))
    assert metrics["temperature_l0"] == pytest.approx(start)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.train()
    F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    opt.step()
    model.zero_grad(set_to_none=True)
    assert model.extra_metrics()["temperature_l0"] != pytest.approx(start, abs=1e-7)


def test_fixed_temperature_reports_nothing():
    assert _vit().extra_metrics() == {}


def test_aux_outputs_only_in_training():
    model = _model10("vit_aux_3x4x256_p8")
    x = torch.randn(2, 3, 32, 32)
    out = model.train()(x)
    assert set(out) == {"logits", "aux"}
    assert sorted(out["aux"]) == ["aux_l4", "aux_l8"]
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)
    assert list(_vit(aux_every=1).aux_heads) == ["aux_l1", "aux_l2", "aux_l3"]


def test_relative_attention_has_no_absolute_embedding():
    model = _vit(pos="relative")
    assert model.pos_embed is None
    assert all(blk.attn.rel_pos == 64 for blk in model.blocks)


def test_rel_attn_keeps_the_absolute_positions():
    model = _vit(pos="sincos2d_sum", rel_attn=True)
    assert model.pos == "sincos2d_sum" and model.pos_sincos.shape == (1, 65, 48)
    assert all(blk.attn.rel_pos == 64 for blk in model.blocks)


def test_head_norm_options():
    layer_norms = lambda m: sum(isinstance(x, torch.nn.LayerNorm) for x in m.modules())  # noqa: E731
    assert layer_norms(_vit(final_norm=True).head) == 1 and layer_norms(_vit(final_norm=False).head) == 0
    # the default follows the norm placement: pre-norm layers need one, post-norm layers end in one
    assert layer_norms(_vit(norm="pre", final_norm=None).head) == 1
    assert layer_norms(_vit(norm="post", final_norm=None).head) == 0
    with_ln, without = _vit(aux_every=2), _vit(aux_every=2, aux_norm=False)
    assert layer_norms(with_ln.aux_heads) == 1 and layer_norms(without.aux_heads) == 0


def test_vit_input_norm_normalises_before_the_tokenizer():
    model = _vit(input_norm="scalar_ema").train()
    model(torch.rand(4, 3, 32, 32) * 5 + 2)
    assert float(model.input_norm.running_mean) == pytest.approx(4.5, abs=0.2)
    assert "input_norm.running_mean" in model.state_dict()


def test_seqpool_has_no_cls_token():
    assert _vit(pool="seqpool").cls_token is None
    assert _vit().cls_token is not None


# ---------------------------------------------------------------- profile and CLI

def test_count_flops_restores_mode():
    model = create_model("toy_dilated").train()
    flops = count_flops(model)
    assert model.training
    # 4 convs: 2 * H * W * Cout * Cin * 9
    expected = 2 * 32 * 32 * 32 * 9 * (3 + 32 * 3) + 2 * 32 * 10
    assert flops == expected


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_measure_speed(mode):
    model = create_model("toy_dilated")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert measure_speed(model, mode, batch_size=2, steps=1, warmup=1, channels_last=True) > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_model_rows_and_formats():
    rows = model_rows(pattern="^toy_")
    add_speed(rows, batch_size=2, steps=1, device="cpu", precision="fp32")
    assert [r["name"] for r in rows] == ["toy_dilated"]
    assert rows[0]["train_img_per_s"] > 0 and rows[0]["infer_img_per_s"] > 0
    assert "toy_dilated" in format_rows(rows, "table")
    assert format_rows(rows, "markdown").startswith("| name |")
    assert json.loads(format_rows(rows, "json"))[0]["params"] == PARAMS["toy_dilated"]


def _cli(argv):
    from classbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_cli_models_json_of_one_model():
    """The quick check of the test below: one model's row, with its FLOPs."""
    rc, out, _ = _cli(["models", "--filter", "^resnet20$", "--format", "json"])
    assert rc == 0
    (row,) = json.loads(out)
    assert row["name"] == "resnet20" and row["params"] == PARAMS["resnet20"] and row["flops"] > 0


@pytest.mark.slow  # counts the FLOPs of every model
def test_cli_models_json_lists_everything():
    rc, out, _ = _cli(["models", "--format", "json"])
    assert rc == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ALL
    for r in rows:
        assert {"name", "family", "params", "flops"} <= set(r)
        assert r["params"] == PARAMS[r["name"]]
        assert r["flops"] > 0


def test_cli_models_filter_and_errors():
    rc, out, _ = _cli(["models", "--filter", "^resnet20$", "--num-classes", "100"])
    assert rc == 0 and "resnet20" in out and "resnet18" not in out
    rc, _, err = _cli(["models", "--filter", "no_such_model"])
    assert rc == 2 and "error:" in err
    rc, _, err = _cli(["models", "--filter", "("])
    assert rc == 2 and "regular expression" in err


def test_airbench_batchnorm_trains_only_its_bias_and_keeps_its_checkpoint_keys():
    """The fixed scale of ones (CUDA's backward with no weight gave an empty bias gradient) changes neither
    the output, nor what trains, nor the keys of a checkpoint."""
    import torch.nn.functional as F

    from classbench.models.airbench import ScaledBiasBatchNorm

    torch.manual_seed(0)
    bn = ScaledBiasBatchNorm(4, bias_scale=8.0)
    with torch.no_grad():
        bn.bias.copy_(torch.randn(4))
    x = torch.randn(6, 4, 5, 5)
    out = bn(x)
    ref = F.batch_norm(x, torch.zeros(4), torch.ones(4), None, bn.bias.detach() * 8.0, True, bn.momentum, bn.eps)
    torch.testing.assert_close(out, ref)
    assert [name for name, _ in bn.named_parameters()] == ["bias"]
    assert set(bn.state_dict()) == {"bias", "running_mean", "running_var"}
    (out * torch.arange(4.0).view(1, 4, 1, 1)).sum().backward()
    assert bn.bias.grad.shape == (4,) and torch.isfinite(bn.bias.grad).all()
