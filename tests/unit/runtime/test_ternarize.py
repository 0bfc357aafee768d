"""`tritium.ternarize`: existing PyTorch models (a torchvision-style ResNet written here in
plain PyTorch, attention blocks, 1-D convolutions) converted in place, trained, frozen with
their batch norms folded, saved and loaded; generated layer geometries keep their function."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tritium
from tritium.runtime import (
    CheckpointError,
    TernaryConv1d,
    TernaryConv2d,
    TernaryLayer,
    TernaryLinear,
    dequantize_ternary,
    freeze_model,
    load_checkpoint,
    save_checkpoint,
    tritium_layers,
)
from tritium.runtime.ternarize import apply_ternarize_record, fp32_layer_names

# ----------------------------------------------------------------------------- models

class BasicBlock(nn.Module):
    """torchvision's BasicBlock, written out."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Attention(nn.Module):
    """A Hugging Face style attention block: q/k/v/o projections as nn.Linear."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                           split(self.v_proj(x)))
        return self.o_proj(a.transpose(1, 2).reshape(b, t, d))


class Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attn = Attention()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.attn(h)
        h = h + self.mha(h, h, h, need_weights=False)[0]
        return self.head(h.mean(1))


def _seeded(cls, *args, **kwargs):
    torch.manual_seed(0)
    return cls(*args, **kwargs)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- conversion

def test_resnet_layers_are_replaced_and_keep_their_weights():
    model = _seeded(ResNet)
    before = _weights(model)
    out, report = tritium.ternarize(model)
    assert out is model
    convs = [n for n, m in model.named_modules() if isinstance(m, TernaryConv2d)]
    assert len(convs) == len(report.replaced) == 9          # 8 block convs + 1 downsample
    assert set(report.kept) == {"conv1", "fc"}               # first and last stay fp32
    assert "first layer" in report.kept["conv1"] and "last layer" in report.kept["fc"]
    assert report.order == "torch.fx trace"
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    after = model.state_dict()
    assert set(after) == set(before)                         # same names: weights carry over
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    block = model.layer2[0]
    assert isinstance(block.downsample[0], TernaryConv2d)
    assert block.conv1.stride == (2, 2) and block.conv1.padding == (1, 1)
    assert block.conv1.bias is None
    # the batch norms proven to read only a converted conv's output, siblings or Sequential
    assert ("layer1.0.conv1", "layer1.0.bn1") in report.folds
    assert ("layer2.0.downsample.0", "layer2.0.downsample.1") in report.folds
    assert ("conv1", "bn1") not in report.folds              # conv1 stays fp32
    assert ("conv1", "bn1") in model.layer1[0].tritium_identity_folds
    assert "replaced layer1.0.conv1: Conv2d -> TernaryConv2d" in str(report)


def test_keep_first_last_options_and_include_exclude():
    model, report = tritium.ternarize(_seeded(ResNet), keep_first_last=False)
    assert len(report.replaced) == 11 and not report.kept
    _, report = tritium.ternarize(_seeded(ResNet), keep_first_last="last")
    assert set(report.kept) == {"fc"}
    _, report = tritium.ternarize(_seeded(ResNet), include="layer2.*")
    assert all(n.startswith("layer2.") for n in report.replaced) and len(report.replaced) == 5
    _, report = tritium.ternarize(_seeded(ResNet), exclude=["layer1", "*.downsample.*"])
    assert set(report.replaced) == {"layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1",
                                    "layer2.1.conv2"}
    assert report.kept["layer1.0.conv1"] == "excluded"
    _, report = tritium.ternarize(_seeded(ResNet), include=nn.Linear, keep_first_last=False)
    assert set(report.replaced) == {"fc"}
    _, report = tritium.ternarize(_seeded(ResNet), exclude=[BasicBlock], keep_first_last=False)
    assert set(report.replaced) == {"conv1", "fc"}


def test_patterns_that_match_nothing_and_bad_options_change_nothing():
    model = _seeded(ResNet)
    before = [type(m) for m in model.modules()]
    for kwargs, text in (({"include": "layr1.*"}, "'layr1.*' matches no module"),
                         ({"exclude": [nn.LSTM]}, "LSTM matches no module"),
                         ({"quantizer": "bogus"}, "bogus"),
                         ({"act_quant": "int4"}, "int4"),
                         ({"keep_first_last": "middle"}, "keep_first_last")):
        with pytest.raises(ValueError, match=text):
            tritium.ternarize(model, **kwargs)
    with pytest.raises(TypeError, match="module-name globs"):
        tritium.ternarize(model, include=[3])
    assert [type(m) for m in model.modules()] == before


def test_attention_projections_convert_but_not_inside_multihead_attention():
    model = _seeded(Transformer)
    x = torch.randn(2, 5, 8)
    _, report = tritium.ternarize(model, keep_first_last=False)
    for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert isinstance(getattr(model.attn, p), TernaryLinear)
    assert "nn.MultiheadAttention" in report.kept["mha.out_proj"]
    assert type(model.mha.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    loss = model(x).square().mean()
    loss.backward()
    assert model.attn.q_proj.weight.grad is not None


def test_transformer_encoder_layers_run_their_ternary_layers_in_eval_and_frozen():
    # PyTorch's fused eval path of nn.TransformerEncoderLayer (no_grad, batch_first) reads
    # linear1.weight directly: it ran the fp32 latent weights, and a frozen layer failed
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), num_layers=2)
    model = nn.Sequential(nn.Linear(6, 16), enc, nn.Linear(16, 3)).eval()
    x = torch.randn(2, 5, 6)
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    with torch.no_grad():
        fp32 = model(x)
    _, report = tritium.ternarize(model)
    assert isinstance(enc.layers[0].linear1, TernaryLinear) and "1.layers.1.linear2" in report.replaced
    expect = model(x).detach()             # with gradients: never the fused path
    with torch.no_grad():
        got = model(x)
        assert not torch.allclose(got, fp32, atol=1e-3)       # the ternary weights ran
        torch.testing.assert_close(got, expect)
        masked = enc(model[0](x), src_key_padding_mask=mask)  # the nested-tensor path
        torch.testing.assert_close(masked, enc(model[0](x).requires_grad_(),
                                               src_key_padding_mask=mask).detach())
    freeze_model(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expect, rtol=1e-4, atol=1e-4)


def test_tied_weights_stay_tied_or_the_layer_is_kept():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 16)
            self.a, self.p = nn.Linear(16, 32), nn.Linear(32, 32, bias=False)
            self.q = nn.Linear(32, 32, bias=False)
            self.q.weight = self.p.weight                  # one matrix, two layers
            self.head = nn.Linear(16, 20, bias=False)
            self.head.weight = self.emb.weight             # a language model's tied head
            self.b = nn.Linear(32, 16)

        def forward(self, t):
            h = self.emb(t)
            return self.head(self.b(self.q(torch.relu(self.p(self.a(h))))))

    torch.manual_seed(0)
    model = Tied()
    params = sum(p.numel() for p in model.parameters())
    _, report = tritium.ternarize(model, keep_first_last=False)
    assert isinstance(model.p, TernaryLinear) and model.p.weight is model.q.weight
    assert type(model.head) is nn.Linear and model.head.weight is model.emb.weight
    assert "tied to emb.weight" in report.kept["head"]
    assert sum(p.numel() for p in model.parameters()) == params
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = torch.randint(0, 20, (3, 5))
    model(t).square().mean().backward()
    opt.step()
    assert model.p.weight is model.q.weight
    model.eval()
    with torch.no_grad():
        want = model(t)
        freeze_model(model)
        torch.testing.assert_close(model(t), want, rtol=1e-4, atol=1e-4)
    # a tie to a layer that is kept (excluded) keeps its partner too
    model2 = Tied()
    _, report2 = tritium.ternarize(model2, exclude="q", keep_first_last=False)
    assert type(model2.p) is nn.Linear and "tied to q.weight" in report2.kept["p"]


def test_transformers_conv1d_projections_become_ternary_linears():
    transformers = pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    w = model.transformer.h[0].attn.c_attn.weight.detach().clone()   # [in, out]
    ids = torch.randint(0, 64, (2, 7))
    _, report = tritium.ternarize(model, keep_first_last=False)
    assert not any(isinstance(m, Conv1D) for m in model.modules())
    assert sum(v == "Conv1D -> TernaryLinear" for v in report.replaced.values()) == 8
    c_attn = model.transformer.h[0].attn.c_attn
    assert (c_attn.in_features, c_attn.out_features) == (32, 96)
    assert torch.equal(c_attn.weight.detach(), w.t())
    assert "tied to transformer.wte.weight" in report.kept["lm_head"]
    x = torch.randn(3, 32)
    torch.testing.assert_close(c_attn(x), F.linear(x, c_attn.quantized_weight(), c_attn.bias))
    with torch.no_grad():
        want = model(ids).logits
        freeze_model(model)
        torch.testing.assert_close(model(ids).logits, want, rtol=1e-4, atol=1e-4)


def test_a_batch_norm_without_running_statistics_is_not_reported_as_folded():
    model = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20, track_running_stats=False),
                          nn.ReLU(), nn.Linear(20, 3))
    _, report = tritium.ternarize(model, keep_first_last=False)
    assert report.folds == [] and "fold" not in str(report)
    freeze_model(model.eval())
    assert isinstance(model[1], nn.BatchNorm1d)


@pytest.mark.parametrize("act_quant", ["none", "int8", "int8_image"])
def test_a_conv2d_takes_one_unbatched_sample_as_nn_conv2d_does(act_quant):
    torch.manual_seed(0)
    layer = TernaryConv2d(3, 8, 3, padding=1, act_quant=act_quant).eval()
    x, res = torch.randn(3, 9, 9), torch.randn(8, 9, 9)
    with torch.no_grad():
        want = layer(x.unsqueeze(0), "relu", res.unsqueeze(0)).squeeze(0)
        torch.testing.assert_close(layer(x, "relu", res), want)
        freeze_model(layer)
        got = layer(x, "relu", res)
    assert got.shape == (8, 9, 9)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or unbatched"):
        layer(torch.randn(9, 9))


def test_int8_image_activations_for_convolutions_and_the_per_patch_note():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3, groups=16),
                          nn.Conv2d(16, 8, 1), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    per_patch, report = tritium.ternarize(copy.deepcopy(model), keep_first_last=False,
                                          act_quant="int8")
    assert any("depthwise" in n and "(1)" in n for n in report.notes), report.notes
    assert "int8_image" in str(report)
    model, report = tritium.ternarize(model, keep_first_last=False, act_quant="int8_image")
    assert not report.notes
    assert [m.act_quant for m in model if isinstance(m, TernaryLayer)] == \
        ["int8_image"] * 3 + ["int8"]
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    with torch.no_grad():
        want = model(x)
        freeze_model(model)
        torch.testing.assert_close(model(x), want, rtol=1e-4, atol=1e-4)
    # replayed from the recorded options (a checkpoint rebuilt from its entry point)
    rebuilt, _ = apply_ternarize_record(
        nn.Sequential(nn.Conv2d(3, 16, 3), nn.Linear(4, 2)), model.tritium_ternarize)
    assert [m.act_quant for m in rebuilt] == ["int8_image", "int8"]
    with pytest.raises(ValueError):
        tritium.ternarize(nn.Linear(3, 2), act_quant="int4_image")


def test_layers_that_cannot_convert_are_kept_with_the_reason():
    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"),
                          nn.Conv2d(4, 4, 2, padding="same"), MyLinear(4, 4),
                          nn.Conv2d(4, 4, 3, padding="same"), nn.LazyLinear(3),
                          nn.Linear(4, 4))
    model[5].register_forward_hook(lambda *a: None)
    _, report = tritium.ternarize(model, keep_first_last=False)
    assert "padding_mode='reflect'" in report.kept["0"]
    assert "asymmetrically" in report.kept["1"]
    assert "MyLinear" in report.kept["2"]
    assert isinstance(model[3], TernaryConv2d) and model[3].padding == (1, 1)
    assert "lazy" in report.kept["4"]
    assert "hooks" in report.kept["5"]


def test_a_shared_layer_is_replaced_everywhere_and_a_lone_layer_returns_the_new_one():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Linear(4, 4), shared, nn.ReLU(), shared, nn.Linear(4, 2))
    tritium.ternarize(model)
    assert model[1] is model[3] and isinstance(model[1], TernaryLinear)
    lone = nn.Linear(3, 2)
    new, report = tritium.ternarize(lone, keep_first_last=False)
    assert isinstance(new, TernaryLinear) and torch.equal(new.weight, lone.weight)
    kept, report = tritium.ternarize(nn.Linear(3, 2))
    assert type(kept) is nn.Linear and report.kept


def test_untraceable_models_still_convert_and_fold_sequential_pairs():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(4, 8)
            self.body = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
            self.fc = nn.Linear(8, 8)
            self.bn = nn.BatchNorm1d(8)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.body(self.stem(x))
            if h.sum() > 0:                      # data-dependent: torch.fx cannot trace it
                h = h * 2
            return self.head(self.bn(self.fc(h)))

    model = _seeded(Branchy)
    _, report = tritium.ternarize(model)
    assert "torch.fx cannot trace" in report.fold_note and "nn.Sequential" in report.fold_note
    assert report.order == "registration order" and not report.folds
    assert set(report.kept) == {"stem", "head"}
    model.train()
    model(torch.randn(16, 4))
    freeze_model(model.eval())
    assert isinstance(model.body[1], nn.Identity)            # Sequential: folded
    assert isinstance(model.bn, nn.BatchNorm1d)              # not proven: kept


def test_conv1d_becomes_a_ternary_conv1d_that_computes_the_same_function():
    model = _seeded(nn.Sequential, nn.Conv1d(3, 6, 3, stride=2, padding=1, dilation=2,
                                              groups=3), nn.BatchNorm1d(6))
    w = model[0].weight.detach().clone()
    tritium.ternarize(model, keep_first_last=False)
    conv = model[0]
    assert isinstance(conv, TernaryConv1d)
    assert torch.equal(conv.weight.squeeze(2), w)
    x = torch.randn(2, 3, 17)
    q = conv.ternary_weight()
    want = F.conv1d(x, dequantize_ternary(q.trits, q.scale).squeeze(2), conv.bias, 2, 1, 2, 3)
    torch.testing.assert_close(conv(x), want)
    # a 3-D nn.Conv1d state_dict loads into it
    conv.load_state_dict({"weight": w * 2, "bias": conv.bias.detach()})
    assert torch.equal(conv.weight.squeeze(2), w * 2)
    conv.eval()
    ref = conv(x)
    conv.freeze()
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["linear", "conv1d", "conv2d"]), cin=st.integers(1, 3),
       cout=st.integers(1, 3), k=st.integers(1, 4), stride=st.integers(1, 3),
       pad=st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])),
       dil=st.integers(1, 2), bias=st.booleans(), groups=st.sampled_from([1, 2]),
       seed=st.integers(0, 1000))
def test_generated_layers_compute_their_quantized_function(kind, cin, cout, k, stride, pad,
                                                           dil, bias, groups, seed):
    """Any geometry the converter accepts computes, in training mode, the original layer's
    function with the ternarized weight, and frozen, what it computed in eval mode."""
    torch.manual_seed(seed)
    cin, cout = cin * groups, cout * groups
    if kind == "linear":
        layer: nn.Module = nn.Linear(cin, cout, bias=bias)
        x = torch.randn(3, cin)
    else:
        if pad == "same":
            stride = 1
        cls = nn.Conv1d if kind == "conv1d" else nn.Conv2d
        layer = cls(cin, cout, k, stride, pad, dil, groups, bias)
        x = torch.randn((2, cin, 9) if kind == "conv1d" else (2, cin, 9, 8))
    new, report = tritium.ternarize(layer, keep_first_last=False)
    if not report.replaced:
        assert "asymmetrically" in next(iter(report.kept.values()))
        return
    assert isinstance(new, TernaryLayer)
    q = new.ternary_weight()
    wq = dequantize_ternary(q.trits, q.scale).reshape(layer.weight.shape)
    original = type(layer).forward
    with torch.no_grad():
        layer.weight.copy_(wq)
        want = original(layer, x)
        got = new(x)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        new.eval()
        ref = new(x)
        new.freeze()
        torch.testing.assert_close(new(x), ref, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- the workflow

def _digits(n: int = 256):
    from tritium.data import load_dataset
    ds = load_dataset("digits")
    x = torch.as_tensor(ds.x_train[:n], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    return x, torch.as_tensor(ds.y_train[:n]).long()


def test_train_freeze_save_load_round_trip(tmp_path):
    model = _seeded(ResNet)
    tritium.ternarize(model)
    x, y = _digits()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for i in range(8):
        xb, yb = x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    model.eval()
    with torch.no_grad():
        ref = model(x[:64])
    freeze_model(model)
    assert all(layer.frozen for _, layer in tritium_layers(model))
    assert isinstance(model.layer1[0].bn1, nn.Identity) and model.layer1[0].conv1.folded
    assert isinstance(model.bn1, nn.BatchNorm2d)             # after the fp32 first conv
    with torch.no_grad():
        frozen_out = model(x[:64])
    torch.testing.assert_close(frozen_out, ref, atol=1e-3, rtol=1e-3)
    # torch.save's argument order and Tritium's both work
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_checkpoint(model, a)
    save_checkpoint(b, model)
    (sa, meta), (sb, meta_b) = load_checkpoint(a), load_checkpoint(b)
    assert meta == meta_b and sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert len(meta.folds) == 9 and meta.extra["tritium.ternarize"]
    fresh = _seeded(ResNet)
    tritium.ternarize(fresh)
    load_checkpoint(fresh, a)           # either order here too
    fresh.eval()
    with torch.no_grad():
        # scales and biases are stored as float16 (relative error at most 2**-11)
        torch.testing.assert_close(fresh(x[:64]), frozen_out, atol=1e-3, rtol=1e-3)
    # the record replays the same conversion on a plain model
    import json
    replay = _seeded(ResNet)
    replay, reports = apply_ternarize_record(replay, json.loads(meta.extra["tritium.ternarize"]))
    assert [len(r.replaced) for r in reports] == [9]
    load_checkpoint(a, replay)
    with torch.no_grad():
        torch.testing.assert_close(replay.eval()(x[:64]), frozen_out, atol=1e-3, rtol=1e-3)


def test_save_checkpoint_argument_errors_name_the_right_order(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"save_checkpoint\(model, path\)"):
        save_checkpoint(tmp_path / "x.safetensors", model.state_dict())
    with pytest.raises(TypeError, match="state_dict is not enough"):
        save_checkpoint(model.state_dict(), tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="in either order"):
        save_checkpoint(model, model)
    with pytest.raises(CheckpointError, match="entry_point"):
        save_checkpoint(model, tmp_path / "x.safetensors", entry_point="not an entry")
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(model, tmp_path / "x.safetensors", entry_point="m:f",
                        entry_kwargs={"a": object()})
    assert not (tmp_path / "x.safetensors").exists()


def test_fp32_layer_names_follow_execution_order():
    model = _seeded(ResNet)
    tritium.ternarize(model, keep_first_last=False)
    assert fp32_layer_names(model, ["first", "last"]) == ["conv1", "fc"]
    assert fp32_layer_names(model, ["layer2.0.*", "fc"]) == [
        "layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0", "fc"]
    with pytest.raises(ValueError, match="'nope' names no ternary layer"):
        fp32_layer_names(model, ["nope"])


def test_several_calls_are_recorded_and_replayed_in_order():
    model = _seeded(ResNet)
    tritium.ternarize(model, include="layer1.*")
    tritium.ternarize(model, include=nn.Linear, keep_first_last=False)
    assert len(model.tritium_ternarize) == 2
    replay, reports = apply_ternarize_record(_seeded(ResNet), model.tritium_ternarize)
    assert [len(r.replaced) for r in reports] == [4, 1]
    assert [type(m) for m in replay.modules()] == [type(m) for m in model.modules()]
    for bad in ([], [{"version": 9}], [{**model.tritium_ternarize[0], "options": {"x": 1}}],
                [{**model.tritium_ternarize[0], "include": ["nope:x"]}]):
        with pytest.raises(ValueError, match="malformed"):
            apply_ternarize_record(_seeded(ResNet), bad)
