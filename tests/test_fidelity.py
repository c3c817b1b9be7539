"""The reference presets: every config in configs/references.yaml builds a model with exactly the original's
parameter count, and the structure the original has (feature-map sizes per stage, head, positions, norms,
dropout, init). The counts come from instantiating the original classes at their source revisions
(docs/models.md, "Fidelity"); everything else here is measured on our models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import yaml

from classbench.config import load_config
from classbench.layers.norms import EMAInputNorm
from classbench.models import create_model
from classbench.models.profile import count_params

from conftest import REPO

# The issue's table (#16): reference id -> the original's parameter count at that config.
ORIGINAL_PARAMS = {
    "s002-resnet18": 11_689_512,
    "s002-resnet34": 21_797_672,
    "s002-toy-dilated": 61_896,
    "s002-vit-12x256-8x8": 10_814_952,
    "s002-vitn-12x256-8x8": 10_805_736,
    "s002-vit-aux-3x4x256-8x8": 13_391_288,
    "s003-resnet18": 11_220_132,
    "s003-vgg16": 34_011_172,
    "s003-googlenet": 6_071_428,
    "s003-mobilenetv1": 3_320_420,
    "s003-xception": 21_050_724,
    "s004-cvit": 119_098,
}

REFERENCES = yaml.safe_load((REPO / "configs" / "references.yaml").read_text())
BY_ID = {r["reference"]: r for r in REFERENCES}


def _num_classes(cfg) -> int:
    return {"cifar10": 10, "cifar100": 100}[cfg.data.name]


def _build(ref_id: str) -> nn.Module:
    cfg = load_config(REPO / BY_ID[ref_id]["config"])
    torch.manual_seed(0)
    return create_model(cfg.model.name, num_classes=_num_classes(cfg), **cfg.model.args)


def _spatial(model: nn.Module, names: list[str]) -> list[int]:
    """The output height of each named submodule on one 32x32 forward pass (eval mode)."""
    sizes: dict[str, int] = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, o.shape[-1]))
             for n in names]
    try:
        with torch.no_grad():
            model.eval()(torch.rand(2, 3, 32, 32))
    finally:
        for h in hooks:
            h.remove()
    return [sizes[n] for n in names]


def _of(model: nn.Module, cls: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, cls)]


def _convs_have_bias(model: nn.Module) -> set[bool]:
    return {m.bias is not None for m in _of(model, nn.Conv2d)}


def _scalar_ema_input_norm(model: nn.Module) -> None:
    norm = model.input_norm
    assert isinstance(norm, EMAInputNorm) and not norm.per_channel and norm.momentum == 0.01
    assert norm.running_mean.shape == (1,)


# ---------------------------------------------------------------- the index and the counts
def test_references_file_lists_the_issue_table():
    assert [r["reference"] for r in REFERENCES] == list(ORIGINAL_PARAMS)
    for r in REFERENCES:
        assert r["params"] == ORIGINAL_PARAMS[r["reference"]], r
        assert (REPO / r["config"]).is_file(), r
        assert "@" in r["source"], f"{r['reference']}: source names no revision"


@pytest.mark.parametrize("ref_id", list(ORIGINAL_PARAMS))
def test_parameter_count_is_exact(ref_id):
    assert count_params(_build(ref_id)) == ORIGINAL_PARAMS[ref_id]


# ---------------------------------------------------------------- enhuiz/image-classification
@pytest.mark.parametrize("ref_id,blocks", [("s002-resnet18", 2), ("s002-resnet34", 3)])
def test_s002_resnets_have_the_imagenet_stem(ref_id, blocks):
    model = _build(ref_id)
    conv = model.stem[0]
    assert (conv.kernel_size, conv.stride, conv.bias) == ((7, 7), (2, 2), None)
    assert isinstance(model.stem[-1], nn.MaxPool2d)
    # 32 -> 16 (conv) -> 8 (max-pool) -> stages at 8, 4, 2, 1
    assert _spatial(model, ["stem", "stages.0", "stages.1", "stages.2", "stages.3"]) == [8, 8, 4, 2, 1]
    assert len(model.stages[0]) == blocks
    assert (model.fc.in_features, model.fc.out_features) == (512, 1000)
    _scalar_ema_input_norm(model)
    assert not _of(model, nn.Dropout)


def test_s002_mixstyle_acts_on_imagenet_stem_feature_maps():
    cfg = load_config(REPO / "configs" / "cifar100" / "resnet18-ms3.yaml")
    model = create_model(cfg.model.name, num_classes=100, **cfg.model.args).train()
    seen = []
    model.mixstyle.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
    torch.manual_seed(0)
    for _ in range(2):
        model(torch.rand(4, 3, 32, 32))
    assert seen == [8, 4, 2] * 2  # the hook sees every call, whether or not it mixes


def test_s002_toy_dilated():
    model = _build("s002-toy-dilated")
    convs = _of(model, nn.Conv2d)
    assert [c.dilation[0] for c in convs] == [1, 2, 4, 8] and _convs_have_bias(model) == {True}
    assert _spatial(model, ["features"]) == [32]
    assert model.fc.out_features == 1000
    _scalar_ema_input_norm(model)


def _vit_common(model: nn.Module) -> None:
    assert model.pos == "sincos2d_sum" and model.pos_embed is None
    assert not any("pos" in n for n, _ in model.named_parameters())
    assert model.cls_token.shape == (1, 1, 256)
    assert model.grid == (4, 4)
    # fixed positions: 1-D transformer sinusoid of the row plus that of the column, none on the CLS token
    pe = model.pos_sincos[0]
    assert pe.shape == (17, 256) and torch.equal(pe[0], torch.zeros(256))

    def sinusoid(p: int) -> torch.Tensor:
        k = torch.arange(128, dtype=torch.float64)
        angle = p * torch.exp(-math.log(1e4) * k / 128)
        return torch.cat([angle.sin(), angle.cos()])

    for r, c in [(0, 0), (1, 3), (3, 2)]:
        torch.testing.assert_close(pe[1 + 4 * r + c].double(), sinusoid(r) + sinusoid(c), atol=1e-6, rtol=0)
    # MLP head 256 -> 1024 -> GELU -> 1000 on the CLS token, no LayerNorm in front of it
    head = model.head
    assert isinstance(head.norm, nn.Identity)
    assert (head.hidden[0].in_features, head.hidden[0].out_features, head.fc.out_features) == (256, 1024, 1000)
    assert isinstance(head.hidden[1], nn.GELU)
    assert model.drop.p == 0.0  # no dropout on the embeddings
    for blk in model.blocks:
        assert blk.attn.proj_drop.p == 0.1 and blk.mlp[2].p == 0.1 and blk.mlp[4].p == 0.1
    _scalar_ema_input_norm(model)


@pytest.mark.parametrize("ref_id", ["s002-vit-12x256-8x8", "s002-vit-aux-3x4x256-8x8"])
def test_s002_post_norm_vits_are_torch_encoder_layers(ref_id):
    model = _build(ref_id)
    _vit_common(model)
    assert len(model.blocks) == 12
    for blk in model.blocks:
        assert not blk.pre and isinstance(blk.mlp[1], nn.ReLU)
        assert blk.attn.qkv.bias is not None and blk.attn.attn_drop.p == 0.1
    # nn.TransformerEncoder clones one layer: every layer of a stack starts equal, stacks differ
    stack = 4 if "aux" in ref_id else 12
    w = [blk.attn.qkv.weight for blk in model.blocks]
    assert all(torch.equal(w[i], w[i - i % stack]) for i in range(12))
    if stack == 4:
        assert not torch.equal(w[0], w[4])
        assert sorted(model.aux_heads) == ["aux_l4", "aux_l8"]
        for aux in model.aux_heads.values():  # like the main head: MLP, no LayerNorm
            assert isinstance(aux.norm, nn.Identity) and aux.hidden[0].out_features == 1024
            assert aux.fc.out_features == 1000


def test_s002_vitn_is_pre_norm_without_final_norm():
    model = _build("s002-vitn-12x256-8x8")
    _vit_common(model)
    assert not _of(model.head, nn.LayerNorm)
    for blk in model.blocks:
        assert blk.pre and isinstance(blk.mlp[1], nn.GELU) and blk.mlp[1].approximate == "none"
        assert blk.attn.qkv.bias is None and blk.attn.attn_drop.p == 0.0


@pytest.mark.parametrize("config,kind", [("vitn-12x256-8x8-lt", "log"), ("vitn-12x256-8x8-ltv", "vanilla")])
def test_s002_temperature_starts_at_one_on_top_of_the_scale(config, kind):
    cfg = load_config(REPO / "configs" / "cifar100" / f"{config}.yaml")
    model = create_model(cfg.model.name, num_classes=100, **cfg.model.args)
    attn = model.blocks[0].attn
    raw = attn.log_inv_tau if kind == "log" else attn.tau
    assert float(raw.detach()) == (0.0 if kind == "log" else 1.0)
    assert model.extra_metrics()["temperature_l0"] == pytest.approx(1.0)
    assert float(attn.logit_scale().detach()) == pytest.approx(1 / 8)  # the fixed 1/sqrt(64) times tau = 1


def test_s002_relative_attention_keeps_the_absolute_sinusoid():
    cfg = load_config(REPO / "configs" / "cifar100" / "vitn-12x256-8x8-ra.yaml")
    torch.manual_seed(0)
    model = create_model(cfg.model.name, num_classes=100, **cfg.model.args)
    assert model.pos == "sincos2d_sum"
    attn = model.blocks[0].attn
    assert attn.rel_pos == 16  # offsets over the 17 tokens
    # u and v from randn, not zeros
    assert attn.u_bias.detach().std().item() == pytest.approx(1.0, abs=0.15) and attn.v_bias.detach().abs().min() > 0


# ---------------------------------------------------------------- Fanziyang-v/PyTorch-Classification
def _kaiming_fan_in_std(w: torch.Tensor) -> float:
    return math.sqrt(2.0 / (w[0].numel()))


def test_s003_resnet18_is_cifar_layout_with_fan_in_init():
    model = _build("s003-resnet18")
    assert _spatial(model, ["stem", "stages.0", "stages.1", "stages.2", "stages.3"]) == [32, 32, 16, 8, 4]
    w = model.stages[3][0].conv2.weight
    assert w.std().item() == pytest.approx(_kaiming_fan_in_std(w), rel=0.05)
    assert model.fc.weight.std().item() == pytest.approx(_kaiming_fan_in_std(model.fc.weight), rel=0.05)
    assert torch.equal(model.fc.bias, torch.zeros(100))


def test_s003_resnet18_init_differs_from_fan_out_where_fans_differ():
    model = _build("s003-resnet18")
    w = model.stages[1][0].conv1.weight  # 64 -> 128 channels: fan-in 576, fan-out 1152
    assert w.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.05)


def test_s003_vgg16():
    model = _build("s003-vgg16")
    pools = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    assert _spatial(model, pools) == [16, 8, 4, 2, 1]
    assert _convs_have_bias(model) == {False}
    linears = _of(model.classifier, nn.Linear)
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 4096), (4096, 4096), (4096, 100)]
    assert [m.p for m in _of(model.classifier, nn.Dropout)] == [0.5, 0.5]
    for m in _of(model, nn.Conv2d)[-3:] + linears:
        assert m.weight.std().item() == pytest.approx(0.1, rel=0.05)


def test_s003_googlenet():
    model = _build("s003-googlenet")
    names = ["stem", "blocks.0", "blocks.1", "blocks.3", "blocks.7", "blocks.9", "blocks.10"]
    assert _spatial(model, names) == [16, 16, 16, 8, 8, 4, 4]
    assert [m.out_channels for m in model.blocks if hasattr(m, "out_channels")][-1] == 1024
    assert _convs_have_bias(model) == {False}
    for inc in (m for m in model.blocks if hasattr(m, "b3")):
        assert [c.kernel_size for c in _of(inc.b3, nn.Conv2d)] == [(1, 1), (5, 5)]
        assert inc.b4[0].stride == 1  # the fixed pool branch
    assert model.fc.out_features == 100


def test_s003_mobilenetv1():
    model = _build("s003-mobilenetv1")
    assert model.stem[0].stride == (2, 2)
    assert _spatial(model, ["stem", "blocks.1", "blocks.3", "blocks.5", "blocks.12"]) == [16, 8, 4, 2, 1]
    assert _convs_have_bias(model) == {True}


def test_s003_xception():
    model = _build("s003-xception")
    assert _spatial(model, ["entry.2", "entry.6", "entry.7", "entry.8", "middle.7", "exit.0"]) == [16, 8, 4, 2, 2, 1]
    assert _convs_have_bias(model) == {True}
    for blk in [model.entry[6], model.entry[7], model.entry[8], model.exit[0]]:
        assert not _of(blk.shortcut, nn.BatchNorm2d)
    assert len(_of(model.exit, nn.BatchNorm2d)) == 2  # only inside the exit down-block
    # the middle blocks compute relu(x) + F(x)
    mid = model.middle[0].eval()
    x = torch.randn(2, 728, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(mid(x), torch.relu(x) + mid.residual(x))
    # and the whole net trains (the source's in-place ReLUs would stop autograd)
    model.train()(torch.rand(2, 3, 32, 32)).sum().backward()


# ---------------------------------------------------------------- tintn/vision-transformer-from-scratch
def test_s004_cvit():
    model = _build("s004-cvit")
    assert model.grid == (8, 8) and model.pos == "learned" and model.pos_embed.shape == (1, 65, 48)
    assert isinstance(model.head.norm, nn.Identity) and isinstance(model.head.hidden, nn.Identity)
    assert model.head.fc.out_features == 10
    for blk in model.blocks:
        assert blk.pre and blk.attn.qkv.bias is not None and blk.mlp[1].approximate == "tanh"
    assert all(m.p == 0.0 for m in _of(model, nn.Dropout))
    # normal(0, 0.02) weights, zero biases
    linear_w = torch.cat([m.weight.flatten() for m in _of(model, nn.Linear)])
    assert linear_w.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.tokenizer.proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in _of(model, nn.Linear))


def test_mcvit_is_cvit_with_sequence_pooling():
    """The mc-ViT count follows from the c-ViT's: minus the CLS token and its position, plus the pooling scorer."""
    cvit = create_model("cvit_tiny", num_classes=10)
    mcvit = create_model("mcvit_tiny", num_classes=10)
    dim = 48
    assert count_params(mcvit) == count_params(cvit) - 2 * dim + (dim + 1)
    assert mcvit.cls_token is None and mcvit.pos_embed.shape == (1, 64, dim)
