"""The decode session: KV-cached forwards give the logits of full recomputation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tritium.runtime import attention, rope
from tritium.runtime.decoding import DecodeSession, current_session

_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bitnet_b158.tri"


def _tiny():
    import tritium
    torch.manual_seed(0)
    return tritium.load(str(_EXAMPLE), "BitNetB158", dim=32, layers=2, heads=2, ffn=48).eval()


def test_outside_a_session_attention_is_sdpa():
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    assert current_session() is None
    torch.testing.assert_close(attention(q, k, v, is_causal=True),
                               torch.nn.functional.scaled_dot_product_attention(
                                   q, k, v, is_causal=True))


def test_rope_offsets_by_the_cached_tokens():
    x = torch.randn(1, 2, 6, 8)
    with DecodeSession() as s:
        s.offset = 4
        torch.testing.assert_close(rope(x), rope(x, offset=4))
    torch.testing.assert_close(rope(x), rope(x, offset=0))


@pytest.mark.parametrize("chunks", [[7, 1, 1, 1], [3, 4, 2, 1], [1] * 6])
def test_cached_chunks_match_full_recompute(chunks):
    model = _tiny()
    ids = torch.randint(0, 256, (1, sum(chunks)))
    with torch.no_grad():
        full = model(ids)
        parts, at = [], 0
        with DecodeSession() as s:
            for n in chunks:
                parts.append(s.forward(model, ids[:, at:at + n]))
                at += n
            assert s.offset == sum(chunks) and len(s.keys) == 2
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)


def test_a_masked_attention_cannot_use_the_cache():
    q = torch.randn(1, 1, 2, 4)
    with DecodeSession(), pytest.raises(ValueError, match="mask"):
        attention(q, q, q, attn_mask=torch.ones(2, 2, dtype=torch.bool))


def test_the_self_attention_layer_decodes_with_the_cache():
    from tritium.runtime import SelfAttention

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(256, 16),
                                SelfAttention(16, 2, causal=True, ternary=True),
                                torch.nn.Linear(16, 256)).eval()
    ids = torch.randint(0, 256, (1, 9))
    with torch.no_grad():
        full = model(ids)
        with DecodeSession() as s:
            parts = [s.forward(model, ids[:, :5])] + [s.forward(model, ids[:, i:i + 1])
                                                     for i in range(5, 9)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)
