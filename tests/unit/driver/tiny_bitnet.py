"""The smallest Hugging Face BitNet checkpoint the import tests build by hand: its config
(8 wide, 1 layer, 2 heads sharing 1 k/v head) and its tensors, as save_pretrained names them.
Shared by test_hf_import.py and test_hf_import_hostile.py."""

from __future__ import annotations

import torch


def conf(**over) -> dict:
    c = {"model_type": "bitnet", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 8,
         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
         "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
    c.update(over)
    return c


def tensors(generator: torch.Generator | None = None) -> dict:
    g = generator
    h, f, v = 8, 8, 16
    t = {"model.embed_tokens.weight": torch.randn(v, h, generator=g),
         "model.norm.weight": torch.ones(h), "lm_head.weight": torch.randn(v, h, generator=g)}
    p = "model.layers.0."
    for n in ("input_layernorm", "post_attention_layernorm"):
        t[p + n + ".weight"] = torch.ones(h)
    t[p + "self_attn.attn_sub_norm.weight"] = torch.ones(h)
    t[p + "mlp.ffn_sub_norm.weight"] = torch.ones(f)
    for n, shape in (("self_attn.q_proj", (8, h)), ("self_attn.k_proj", (4, h)),
                     ("self_attn.v_proj", (4, h)), ("self_attn.o_proj", (h, 8)),
                     ("mlp.gate_proj", (f, h)), ("mlp.up_proj", (f, h)),
                     ("mlp.down_proj", (h, f))):
        t[p + n + ".weight"] = torch.randn(shape, generator=g)
    return t
