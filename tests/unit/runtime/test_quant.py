"""Quantizer math against hand-computed values, registry behaviour, int8/int4 helpers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.runtime import quant
from tritium.runtime.quant import (
    dequantize_int,
    dequantize_ternary,
    get_quantizer,
    pack_int4,
    quantize_absmean,
    quantize_activations_int8,
    quantize_int4_weights,
    quantize_int8_weights,
    quantize_stochastic,
    quantize_stochastic_nearest,
    quantize_threshold,
    quantize_twn,
    quantize_weight,
    ternarize_activations,
    unpack_int4,
)

W_ROW0 = [0.2, -1.0, 0.6, -0.1]
W_ROW1 = [3.0, 0.0, 0.0, -1.0]


def test_twn_per_tensor_hand_computed() -> None:
    # mean|W| = 1.9 / 4 = 0.475, delta = 0.3325: keeps -1.0 and 0.6, scale = 1.6 / 2 = 0.8
    trits, scale = quantize_twn(torch.tensor(W_ROW0))
    assert trits.dtype == torch.int8 and scale.dtype == torch.float32
    assert trits.tolist() == [0, -1, 1, 0]
    assert scale.shape == (1,)
    assert scale.item() == pytest.approx(0.8, abs=1e-7)


def test_twn_per_tensor_vs_per_channel() -> None:
    w = torch.tensor([W_ROW0, W_ROW1])
    # per tensor: mean|W| = 5.9 / 8 = 0.7375, delta = 0.51625; kept -1.0, 0.6, 3.0, -1.0
    t, s = quantize_twn(w)
    assert t.tolist() == [[0, -1, 1, 0], [1, 0, 0, -1]]
    assert s.shape == (1,) and s.item() == pytest.approx(5.6 / 4, abs=1e-6)
    # per channel: row 0 as above (0.8); row 1: mean 1.0, delta 0.7, kept 3.0, -1.0 -> 2.0
    t, s = quantize_twn(w, per_channel=True)
    assert t.tolist() == [[0, -1, 1, 0], [1, 0, 0, -1]]
    assert s.shape == (2,)
    assert s.tolist() == pytest.approx([0.8, 2.0], abs=1e-6)


def test_twn_per_channel_differs_from_per_tensor_when_rows_differ_in_scale() -> None:
    w = torch.tensor([[0.01, -0.02, 0.03, 0.0], [1.0, -2.0, 3.0, 0.5]])
    t_tensor, _ = quantize_twn(w)
    t_chan, s_chan = quantize_twn(w, per_channel=True)
    assert t_tensor[0].tolist() == [0, 0, 0, 0]  # the small row vanishes per tensor
    assert t_chan[0].tolist() == [0, -1, 1, 0]  # but survives per channel
    assert s_chan[0].item() == pytest.approx(0.025, abs=1e-7)


def test_absmean_hand_computed() -> None:
    # gamma = 1.85 / 4 = 0.4625; W/gamma = 0.649, -0.108, 1.946, -1.297 -> 1, 0, 1, -1
    w = torch.tensor([0.3, -0.05, 0.9, -0.6])
    t, s = quantize_absmean(w)
    assert t.tolist() == [1, 0, 1, -1]
    assert s.item() == pytest.approx(0.4625, abs=1e-7)
    t, s = quantize_absmean(torch.tensor([W_ROW0, W_ROW1]), per_channel=True)
    # row 1: gamma = 1.0 -> round(3.0) clamps to 1, round(-1.0) = -1
    assert t.tolist() == [[0, -1, 1, 0], [1, 0, 0, -1]]
    assert s.tolist() == pytest.approx([0.475, 1.0], abs=1e-7)


def test_threshold_hand_computed_and_validation() -> None:
    t, s = quantize_threshold(torch.tensor(W_ROW0), 0.25)
    assert t.tolist() == [0, -1, 1, 0] and s.item() == pytest.approx(0.8, abs=1e-7)
    t, s = quantize_threshold(torch.tensor([W_ROW0, W_ROW1]), 0.15, per_channel=True)
    assert t.tolist() == [[1, -1, 1, 0], [1, 0, 0, -1]]
    assert s.tolist() == pytest.approx([1.8 / 3, 2.0], abs=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        quantize_threshold(torch.ones(3), -1.0)


def test_all_zero_groups_get_zero_scale() -> None:
    w = torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]])
    for fn in (quantize_twn, quantize_absmean, quantize_stochastic_nearest):
        t, s = fn(w, per_channel=True)
        assert t[0].tolist() == [0, 0, 0]
        assert s[0].item() == 0.0
        assert torch.isfinite(s).all()
    t, s = quantize_threshold(w, 2.0, per_channel=True)
    assert t.abs().sum() == 0 and s.tolist() == [0.0, 0.0]


def test_conv_weight_per_channel_scale_shape() -> None:
    w = torch.randn(6, 3, 3, 3)
    for name in ("twn", "absmean", "stochastic"):
        t, s = get_quantizer(name)(w, per_channel=True)
        assert t.shape == w.shape and t.dtype == torch.int8
        assert s.shape == (6,)
        assert set(t.unique().tolist()) <= {-1, 0, 1}
    w_hat = dequantize_ternary(*quantize_twn(w, per_channel=True))
    assert w_hat.shape == w.shape
    assert torch.allclose(w_hat[2], quantize_twn(w[2])[0].float() * quantize_twn(w[2])[1])


def test_stochastic_unbiased_in_expectation() -> None:
    gen = torch.Generator().manual_seed(1234)
    w = torch.randn(64, generator=gen)
    draws = 4000
    t, s = quantize_stochastic(w.repeat(draws, 1), generator=gen)
    assert s.item() == pytest.approx(w.abs().max().item())
    mean = (t.float() * s).mean(dim=0)
    # each entry's standard error is at most s * 0.5 / sqrt(draws) ~ 0.008 s; allow 6 sigma
    bound = 6 * s.item() * 0.5 / draws**0.5
    assert (mean - w).abs().max().item() < bound
    # and the draws are real draws, not a deterministic rounding
    assert t.float().std(dim=0).max() > 0.1


def test_stochastic_reproducible_with_generator() -> None:
    w = torch.randn(32, 16)
    a = quantize_stochastic(w, generator=torch.Generator().manual_seed(7))
    b = quantize_stochastic(w, generator=torch.Generator().manual_seed(7))
    c = quantize_stochastic(w, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.trits, b.trits) and torch.equal(a.scale, b.scale)
    assert not torch.equal(a.trits, c.trits)
    # the entry of largest magnitude is kept with probability 1
    idx = w.abs().argmax()
    assert a.trits.flatten()[idx].item() == int(torch.sign(w.flatten()[idx]).item())


def test_stochastic_nearest_is_used_outside_training() -> None:
    w = torch.tensor([0.9, -0.3, 0.5, -1.0])
    t, s = quantize_weight("stochastic", w, per_channel=False, threshold=None, training=False)
    assert t.tolist() == [1, 0, 1, -1] and s.item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("twn", quantize_twn),
        ("TWN", quantize_twn),
        ("absmean", quantize_absmean),
        ("bitnet", quantize_absmean),
        ("b1.58", quantize_absmean),
        ("threshold", quantize_threshold),
        ("deterministic", quantize_threshold),
        ("fixed", quantize_threshold),
        ("stochastic", quantize_stochastic),
    ],
)
def test_registry_names(alias: str, canonical: object) -> None:
    assert get_quantizer(alias) is canonical


def test_registry_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        get_quantizer("tern")
    msg = str(info.value)
    assert "'tern'" in msg
    for name in ("twn", "absmean", "bitnet", "b1.58", "threshold", "deterministic", "stochastic"):
        assert repr(name) in msg


def test_quantize_weight_threshold_needs_value() -> None:
    with pytest.raises(ValueError, match="needs a threshold"):
        quantize_weight("fixed", torch.ones(2, 2), per_channel=False, threshold=None, training=True)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 9),
    seed=st.integers(0, 2**16),
    per_channel=st.booleans(),
)
def test_twn_invariants(rows: int, cols: int, seed: int, per_channel: bool) -> None:
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    t, s = quantize_twn(w, per_channel=per_channel)
    groups = w if per_channel else w.reshape(1, -1)
    tg = t if per_channel else t.reshape(1, -1)
    for g, tr, sc in zip(groups, tg, s):
        delta = 0.7 * g.abs().mean()
        kept = g.abs() > delta
        assert torch.equal(tr != 0, kept)
        assert torch.equal(tr[kept], torch.sign(g[kept]).to(torch.int8))
        assert sc.item() == pytest.approx(g.abs()[kept].mean().item(), rel=1e-5)


def test_int8_activations_per_token() -> None:
    x = torch.tensor([[0.5, -1.0, 0.25], [10.0, 5.0, -2.5]])
    q, scale = quantize_activations_int8(x)
    assert q.dtype == torch.int8 and scale.shape == (2, 1)
    assert q.tolist() == [[64, -127, 32], [127, 64, -32]]
    assert scale[:, 0].tolist() == pytest.approx([1.0 / 127, 10.0 / 127])
    assert torch.all((q.float() * scale - x).abs() <= scale / 2 + 1e-7)
    q0, s0 = quantize_activations_int8(torch.zeros(1, 4))
    assert q0.abs().sum() == 0 and s0.item() > 0


def test_ternarize_activations() -> None:
    x = torch.tensor([-2.0, -0.5, -0.49, 0.0, 0.3, 0.51, 7.0])
    assert ternarize_activations(x).tolist() == [-1, 0, 0, 0, 0, 1, 1]
    assert ternarize_activations(x, 0.2).tolist() == [-1, -1, -1, 0, 1, 1, 1]
    assert quant.DEFAULT_ACTIVATION_THRESHOLD == 0.5


def test_int8_weights_per_channel() -> None:
    w = torch.tensor([[0.5, -1.0, 0.2], [0.0, 0.0, 0.0], [2.54, 1.27, -0.01]])
    q, s = quantize_int8_weights(w)
    assert q.dtype == torch.int8 and s.shape == (3,)
    assert q.tolist() == [[64, -127, 25], [0, 0, 0], [127, 64, 0]]
    assert s.tolist() == pytest.approx([1.0 / 127, 0.0, 2.54 / 127])
    err = (dequantize_int(q, s) - w).abs()
    assert torch.all(err <= s[:, None] / 2 + 1e-7)


def test_int4_weights_per_channel_and_grouped() -> None:
    w = torch.tensor([[0.7, -0.35, 0.25, 1.4, -2.8]])
    q, s = quantize_int4_weights(w)
    assert s.shape == (1, 1) and s.item() == pytest.approx(0.4)
    assert q.tolist() == [[2, -1, 1, 4, -7]]
    q, s = quantize_int4_weights(w, group_size=2)
    assert s.shape == (1, 3)
    assert s[0].tolist() == pytest.approx([0.1, 0.2, 0.4])
    assert q.tolist() == [[7, -4, 1, 7, -7]]
    w_hat = dequantize_int(q, s, group_size=2)
    assert torch.allclose(w_hat, torch.tensor([[0.7, -0.4, 0.2, 1.4, -2.8]]), atol=1e-6)
    with pytest.raises(ValueError):
        quantize_int4_weights(torch.ones(2, 2, 2))


def test_int4_pack_layout() -> None:
    packed = pack_int4(torch.tensor([[1, -1, 7]], dtype=torch.int8))
    assert packed.dtype == torch.uint8 and packed.shape == (1, 2)
    assert packed.tolist() == [[0xF1, 0x07]]
    with pytest.raises(ValueError):
        pack_int4(torch.tensor([[9]], dtype=torch.int8))


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 11), seed=st.integers(0, 2**16))
def test_int4_pack_roundtrip(rows: int, cols: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-8, 8, (rows, cols), generator=g, dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.shape == (rows, (cols + 1) // 2)
    assert torch.equal(unpack_int4(packed, cols), q)
