"""The `.tri` program `tritium import hf` writes for an imported architecture
(:class:`tritium.driver.hf_import.HFArch`): the declarative dialect, one `block DecoderLayer`
repeated (see :mod:`tritium.driver.hf_import`)."""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace
from typing import Any

__all__ = ["comment_text", "program_source", "reserved_names"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def comment_text(text: str, limit: int = 200) -> str:
    """`text` (a directory's name, untrusted) made safe inside a `//` comment of the program:
    one line of printable characters, each other character (a newline, a control or format
    character, a lone surrogate) written as its escape, and at most `limit` characters."""
    out = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[:limit] + "..."


@functools.lru_cache(maxsize=1)
def reserved_names() -> frozenset[str]:
    """The names the generated program itself uses (its block, layer types, builtins,
    parameters, locals) and the language's keywords: a model name from the config that is
    one of them would change what the program means."""
    from ..frontend.lexer import KEYWORDS
    names = set(KEYWORDS)
    for sub in (True, False):
        for act in ("relu2", "silu"):
            for head in (True, False):
                arch = SimpleNamespace(
                    heads=4, kv_heads=2, attn_bias=False, mlp_bias=False, sub_norms=sub,
                    act=act, lm_head_ternary=head, name="M", model_type="bitnet", vocab=2,
                    hidden=2, layers=1, head_dim=1, ffn=1, eps=1e-5, rope_theta=1e4)
                text = "\n".join(line.split("//", 1)[0]
                                 for line in _render(arch, "").splitlines())
                names.update(_IDENT.findall(text))
    names.discard("M")
    return frozenset(names)


def _num(x: float) -> str:
    return repr(float(x))


def program_source(arch: Any, origin: str = "") -> str:
    """The `.tri` program of the architecture (hyperparameters from the config). `origin`
    (the directory's name) goes into the first comment, flattened to one printable line;
    the model name must be an identifier the program does not otherwise use."""
    if not (isinstance(arch.name, str) and _IDENT.fullmatch(arch.name)
            and arch.name not in reserved_names()):
        raise ValueError(f"model name {str(arch.name)[:80]!r} is not a safe identifier")
    return _render(arch, comment_text(origin))


def _render(arch: Any, origin: str) -> str:
    lin = 'quantizer: "absmean", act_quant: "int8"'
    groups = arch.heads // arch.kv_heads

    def tl(name: str, i: str, o: str, bias: bool) -> str:
        return (f"    layer {name}: TernaryLinear {{ in_features: {i}, out_features: {o}, "
                f"bias: {'true' if bias else 'false'}, {lin} }}")

    ab, mb = arch.attn_bias, arch.mlp_bias
    lines = [
        f"// {arch.name} ({arch.model_type}) imported by `tritium import hf`"
        + (f" from {origin}" if origin else "") + ".",
        "// Every projection is a BitNet b1.58 linear: per-token int8 activations and",
        "// absmean ternary weights (one scale per tensor); norms, embeddings and the output",
        "// head stay in full precision" + (" (the output head is ternary too)."
                                           if arch.lm_head_ternary else "."),
        "",
        "block DecoderLayer {",
        "    params { hidden: int, heads: int, kv_heads: int, head_dim: int, ffn: int, "
        "eps: float, rope_base: float }",
        "",
        "    layer input_layernorm: RMSNorm { normalized_shape: hidden, eps: eps }",
        tl("q_proj", "hidden", "heads * head_dim", ab),
        tl("k_proj", "hidden", "kv_heads * head_dim", ab),
        tl("v_proj", "hidden", "kv_heads * head_dim", ab),
    ]
    if arch.sub_norms:
        lines.append("    layer attn_sub_norm: RMSNorm { normalized_shape: heads * head_dim, "
                     "eps: eps }")
    lines += [
        tl("o_proj", "heads * head_dim", "hidden", ab),
        "    layer post_attention_layernorm: RMSNorm { normalized_shape: hidden, eps: eps }",
        tl("gate_proj", "hidden", "ffn", mb),
        tl("up_proj", "hidden", "ffn", mb),
    ]
    if arch.sub_norms:
        lines.append("    layer ffn_sub_norm: RMSNorm { normalized_shape: ffn, eps: eps }")
    lines += [
        tl("down_proj", "ffn", "hidden", mb),
        "",
        "    forward(x: Tensor[b, s, hidden]) -> Tensor[b, s, hidden] {",
        "        let h = input_layernorm(x)",
        "        let q = rope(transpose(reshape(q_proj(h), [b, s, heads, head_dim]), 1, 2), "
        "base: rope_base)",
        "        let k = rope(transpose(reshape(k_proj(h), [b, s, kv_heads, head_dim]), 1, 2), "
        "base: rope_base)",
        "        let v = transpose(reshape(v_proj(h), [b, s, kv_heads, head_dim]), 1, 2)",
    ]
    if groups > 1:
        ks = ", ".join(["k"] * groups)
        vs = ", ".join(["v"] * groups)
        lines += [
            f"        // grouped-query attention: each k/v head serves {groups} query heads",
            f"        k = reshape(stack([{ks}], dim: 2), [b, heads, s, head_dim])",
            f"        v = reshape(stack([{vs}], dim: 2), [b, heads, s, head_dim])",
        ]
    lines += [
        "        let a = attention(q, k, v, causal: true)",
        "        a = reshape(transpose(a, 1, 2), [b, s, heads * head_dim])",
        "        x = x + o_proj(attn_sub_norm(a))" if arch.sub_norms else
        "        x = x + o_proj(a)",
        "        let m = post_attention_layernorm(x)",
    ]
    if arch.act == "relu2":
        inner = "g * g * up_proj(m)"
        lines.append("        let g = relu(gate_proj(m))      // ReLU squared")
    else:
        inner = "silu(gate_proj(m)) * up_proj(m)"
    lines += [
        f"        x = x + down_proj(ffn_sub_norm({inner}))" if arch.sub_norms else
        f"        x = x + down_proj({inner})",
        "        return x",
        "    }",
        "}",
        "",
        f"model {arch.name} {{",
        f"    vocab: {arch.vocab}",
        f"    hidden: {arch.hidden}",
        "",
        "    layer embed_tokens: Embedding { num_embeddings: vocab, embedding_dim: hidden }",
        f"    layer layers: DecoderLayer[{arch.layers}] {{ hidden: hidden, heads: {arch.heads}, "
        f"kv_heads: {arch.kv_heads}, head_dim: {arch.head_dim}, ffn: {arch.ffn}, "
        f"eps: {_num(arch.eps)}, rope_base: {_num(arch.rope_theta)} }}",
        f"    layer norm: RMSNorm {{ normalized_shape: hidden, eps: {_num(arch.eps)} }}",
        (f"    layer lm_head: TernaryLinear {{ in_features: hidden, out_features: vocab, "
         f"bias: false, {lin} }}") if arch.lm_head_ternary else
        "    layer lm_head: Linear { in_features: hidden, out_features: vocab, bias: false }",
        "",
        "    forward(tokens: Tensor<int64, [batch, seq]>) -> Tensor[batch, seq, vocab] {",
        "        let x = embed_tokens(tokens)",
        "        x = layers(x)",
        "        return lm_head(norm(x))",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)
