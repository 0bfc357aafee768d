"""`tritium export CKPT --format gguf --type tq2_0|tq1_0`: a GGUF file for llama.cpp's
``bitnet`` architecture, written with the ``gguf`` package (llama.cpp's own writer).

What goes in (names and keys of llama.cpp's ``bitnet`` architecture, ``gguf.constants``):

* hyperparameters: ``bitnet.block_count``, ``context_length``, ``embedding_length``,
  ``feed_forward_length``, ``attention.head_count``/``head_count_kv``,
  ``attention.layer_norm_rms_epsilon``, ``rope.freq_base``, ``rope.dimension_count``,
  ``general.file_type`` (MOSTLY_TQ2_0 or MOSTLY_TQ1_0);
* ``token_embd.weight`` (f16 by default, or f32; f32 when a value is beyond float16's range),
  which llama.cpp's bitnet graph also uses
  as the output head (so the checkpoint's head must be tied to its embeddings);
  ``output_norm``, ``blk.N.attn_norm``, ``attn_sub_norm``, ``ffn_norm``, ``ffn_sub_norm``
  in f32;
* each ternary projection ``blk.N.attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|
  ffn_down.weight`` as TQ2_0 or TQ1_0 holding the trits themselves (every 256-weight block's
  f16 scale ``d`` is 1, or 0 for an all-zero block: exact), and its per-tensor Tritium
  scale as the f32 ``.scale`` tensor llama.cpp multiplies the product by. Dequantized
  weight times scale is then exactly the checkpoint's ``trits * scale``;
* the checkpoint's tokenizer (``tokenizer.ggml.model = "gpt2"``): a byte-level BPE one
  (what `tritium import hf` converted from ``tokenizer.json``, or `tritium train
  --tokenizer bpe` learned) as its tokens, merges and pre-tokenizer name
  (``tokenizer.ggml.pre``: ``gpt-2``, ``llama-bpe`` or ``qwen2``), its special tokens as
  control tokens; else the byte tokenizer: the 256 byte tokens in GPT-2's byte-to-character
  form at ids 0..255 and one merge that never applies (llama.cpp needs the key), token id =
  byte. Ids above the tokenizer's up to the model's vocabulary are unused tokens.

The checkpoint must be one ``tritium import hf`` wrote from a BitNet model (its
``tritium.hf_arch`` record gives the hyperparameters). llama.cpp's bitnet graph gates its
MLP with SiLU; a ReLU² model (BitNet b1.58 2B4T's) exports, but llama.cpp then computes
another function, which the result reports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["GGUF_TYPES", "export_gguf", "byte_tokens"]

GGUF_TYPES = ("tq2_0", "tq1_0")
#: the one BPE merge written: llama.cpp requires the merges key and the writer refuses an
#: empty list, so it gets a merge that can never apply (its left side, two byte-0
#: characters, is not a token and no merge makes it)
NEVER_MERGE = "\u0100\u0100 \u0100"
QK_K = 256

# our module name in a decoder layer -> llama.cpp's tensor (gguf.MODEL_TENSOR member name)
_LINEARS = {"q_proj": "ATTN_Q", "k_proj": "ATTN_K", "v_proj": "ATTN_V", "o_proj": "ATTN_OUT",
            "gate_proj": "FFN_GATE", "up_proj": "FFN_UP", "down_proj": "FFN_DOWN"}
_NORMS = {"input_layernorm": "ATTN_NORM", "attn_sub_norm": "ATTN_SUB_NORM",
          "post_attention_layernorm": "FFN_NORM", "ffn_sub_norm": "FFN_SUB_NORM"}


def byte_tokens() -> list[str]:
    """GPT-2's byte-level alphabet: the character standing for each byte 0..255 (printable
    Latin-1 bytes stand for themselves, the others for 256 + n in order)."""
    from ..data.tokenizer import byte_alphabet
    table = byte_alphabet()
    return [table[b] for b in range(256)]


def _vocabulary(meta_record: str | None, vocab: int, path: str, gguf: Any
                ) -> tuple[list[str], list[Any], list[str], str, str]:
    """(tokens, token types, merges, pre-tokenizer, description) of the GGUF vocabulary: the
    checkpoint's BPE tokenizer (``tritium.tokenizer``; its special tokens as control tokens)
    or the byte tokenizer (token id = byte); ids the tokenizer does not use up to the
    model's vocabulary are unused tokens."""
    from ..cachedir import parse_json
    from ..data.tokenizer import GGUF_PRE, BpeTokenizer, TokenizerError, tokenizer_from_json
    tok = None
    if meta_record is not None:
        try:
            tok = tokenizer_from_json(parse_json(meta_record, max_depth=8))
        except (ValueError, TokenizerError) as exc:
            raise _error(f"{path}: its tokenizer record is damaged: "
                         f"{getattr(exc, 'message', exc)}") from None
    T = gguf.TokenType
    if isinstance(tok, BpeTokenizer):
        if tok.vocab_size > vocab:
            raise _error(f"{path}: its tokenizer has {tok.vocab_size} tokens, more than the "
                         f"model's vocabulary of {vocab}")
        pairs = tok.id_tokens()
        tokens = [t for t, _ in pairs]
        types = [T.CONTROL if special else T.NORMAL for _, special in pairs]
        merges = [f"{a} {b}" for a, b in tok.merges] or [NEVER_MERGE]
        pre, what = GGUF_PRE[tok.pre], tok.describe()
    else:
        if vocab < 256:
            raise _error(f"{path}: the vocabulary ({vocab}) is smaller than the 256 bytes of "
                         "the byte-level tokenizer the GGUF file gets")
        tokens, types = byte_tokens(), [T.NORMAL] * 256
        merges, pre, what = [NEVER_MERGE], "default", "byte-level tokenizer"
    pad = vocab - len(tokens)
    return (tokens + [f"<unused_{i}>" for i in range(len(tokens), vocab)],
            types + [T.UNUSED] * pad, merges, pre, what)


def _program_body(source: str) -> list[str]:
    """An imported program without its leading comment (which names the directory it came
    from): what the architecture record determines."""
    lines = source.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("//"):
        i += 1
    return [line.rstrip() for line in lines[i:]]


def _special_tokens(gen: Any) -> tuple[int | None, int | None, bool, bool, list[str]]:
    """(bos id, eos id, add_bos, add_eos, notes) of the GGUF tokenizer from the checkpoint's
    generation settings (generate.py's ``generation_settings``): llama.cpp puts its BOS before
    a prompt when ``add_bos_token`` says so (the tokenizer's one prefix token) and its EOS
    after it likewise, and ends a text at the EOS (the first of the model's ids)."""
    notes = []
    add_bos = len(gen.prefix) == 1
    bos = gen.prefix[0] if add_bos else gen.bos
    eos = gen.eos[0] if gen.eos else None
    add_eos = list(gen.suffix) == [eos]
    if len(gen.prefix) > 1 or (gen.suffix and not add_eos):
        notes.append(f"the tokenizer puts {list(gen.prefix)} before and {list(gen.suffix)} "
                     "after every prompt; llama.cpp adds one BOS before and the EOS after at "
                     "most: it will encode prompts otherwise")
    if len(gen.eos) > 1:
        notes.append(f"the model ends a text at any of the tokens {list(gen.eos)}; the GGUF "
                     f"file's end-of-text token is the first, {eos} (llama.cpp also ends at "
                     "the control tokens it knows by their text, such as <|eot_id|>)")
    return bos, eos, add_bos, add_eos, notes


def _error(message: str, help: str | None = None):
    from .evaluate import ExportError
    return ExportError(message, help=help)


def export_gguf(path: str | Path, output: str | Path | None = None, qtype: str = "tq2_0",
                embed_type: str = "f16") -> dict[str, Any]:
    """Write the GGUF file of the checkpoint (default: the checkpoint's path with the suffix
    ``.gguf``); returns what was written."""
    import numpy as np
    import torch

    try:
        import gguf
    except ImportError:
        raise _error("the GGUF export needs the `gguf` package",
                     help="pip install gguf (it is in tritium's `torch` extra)") from None
    from ..argcheck import ArgError, check_output_file, show_path
    from ..runtime import read_checkpoint_metadata
    from .hf_import import ARCH_KEY, HFArch, HFImportError
    from .hf_program import program_source
    from .models import model_from_checkpoint

    if qtype not in GGUF_TYPES:
        raise _error(f"unknown GGUF type `{qtype}`", help=", ".join(GGUF_TYPES))
    if embed_type not in ("f16", "f32"):
        raise _error(f"unknown embedding type `{embed_type}`", help="f16 or f32")
    out_text = os.fspath(output) if output is not None else \
        os.fspath(Path(path).with_suffix(".gguf"))
    try:
        out = check_output_file(out_text, "-o")
    except ArgError as exc:
        raise _error(exc.message) from None
    if out.resolve() == Path(path).resolve():
        raise _error(f"-o {show_path(out_text)} is the checkpoint itself: the GGUF file would "
                     "replace it",
                     help="write the GGUF file to another path (default: the checkpoint's "
                          "with the suffix .gguf)")
    meta = read_checkpoint_metadata(path)
    record = meta.extra.get(ARCH_KEY)
    if record is None:
        raise _error(f"{path} has no `{ARCH_KEY}` record: the GGUF export takes checkpoints "
                     "`tritium import hf` wrote", help="import the model with `tritium import "
                                                       "hf DIR` first")
    try:
        arch = HFArch.from_json(record, str(path))
    except HFImportError as exc:
        raise _error(exc.message, exc.help) from None
    # the record is metadata beside the program the model is built from: both come from the
    # import, and a record edited since (4 heads around 2-head tensors, another eps or rope
    # base, more layers than the model has) would be written into the GGUF file as is
    source = meta.extra.get("tritium.source")
    try:
        expected = program_source(arch)
    except ValueError as exc:
        raise _error(f"{path}: `{ARCH_KEY}`: {exc}") from None
    if not isinstance(source, str) or _program_body(source) != _program_body(expected):
        raise _error(f"{path}: its `{ARCH_KEY}` record does not describe the model its stored "
                     "program builds (one of them was changed after `tritium import hf`)",
                     help="import the model again with `tritium import hf DIR`")
    from .hf_tokenizer import GenerationSettings, read_generation_record
    from .models import GENERATION_KEY
    try:   # (a checkpoint imported before the record: config.json's first ids)
        gen = read_generation_record(meta.extra[GENERATION_KEY], str(path)) \
            if GENERATION_KEY in meta.extra else \
            GenerationSettings(eos=() if arch.eos is None else (arch.eos,), bos=arch.bos)
    except HFImportError as exc:
        raise _error(exc.message, exc.help) from None
    if not arch.sub_norms:
        raise _error(f"{path} is a {arch.model_type} model without BitNet's sub-norms; "
                     "llama.cpp's bitnet architecture needs attn_sub_norm and ffn_sub_norm")
    if arch.attn_bias or arch.mlp_bias or arch.lm_head_ternary:
        raise _error(f"{path}: biases and a ternary output head have no place in llama.cpp's "
                     "bitnet architecture")
    for what, k in (("hidden size", arch.hidden), ("MLP size", arch.ffn)):
        if k % QK_K:
            raise _error(f"{path}: the {what} {k} is not a multiple of {QK_K}, the block of "
                         f"{qtype.upper()}", help="TQ1_0/TQ2_0 quantize rows in blocks of 256")
    model, _ = model_from_checkpoint(path)
    state = model.state_dict()
    emb = state["embed_tokens.weight"].detach().to(torch.float32)
    head = state.get("lm_head.weight")
    if head is None or not torch.equal(head.detach().to(torch.float32), emb):
        raise _error(f"{path}: the output head is not tied to the token embeddings, but "
                     "llama.cpp's bitnet graph uses token_embd as its output head",
                     help="export a model with tie_word_embeddings")
    tokens, token_types, merges, pre, tok_what = _vocabulary(
        meta.extra.get("tritium.tokenizer"), arch.vocab, str(path), gguf)

    bos, eos, add_bos, add_eos, gen_notes = _special_tokens(gen)
    q = gguf.GGMLQuantizationType.TQ2_0 if qtype == "tq2_0" else gguf.GGMLQuantizationType.TQ1_0
    ftype = gguf.LlamaFileType.MOSTLY_TQ2_0 if qtype == "tq2_0" \
        else gguf.LlamaFileType.MOSTLY_TQ1_0
    tn = gguf.TENSOR_NAMES
    T = gguf.MODEL_TENSOR
    tensors: list[tuple[str, np.ndarray, Any]] = []

    def f32(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(torch.float32).contiguous().numpy()

    notes = []
    peak = float(emb.abs().max()) if emb.numel() else 0.0
    if embed_type == "f16" and peak > float(np.finfo(np.float16).max):
        # float16 would hold them as infinity (numpy's cast only warns)
        embed_type = "f32"
        notes.append(f"the token embeddings reach {peak:g}, beyond float16's largest value "
                     f"{float(np.finfo(np.float16).max):g}: token_embd is written in f32")
    if embed_type == "f16":
        tensors.append((tn[T.TOKEN_EMBD] + ".weight", f32(emb).astype(np.float16), None))
    else:
        tensors.append((tn[T.TOKEN_EMBD] + ".weight", f32(emb), None))
    tensors.append((tn[T.OUTPUT_NORM] + ".weight", f32(state["norm.weight"]), None))
    layers = model.layers
    for i in range(arch.layers):
        block = layers[i]
        for ours, t in _NORMS.items():
            tensors.append((tn[getattr(T, t)].format(bid=i) + ".weight",
                            f32(getattr(block, ours).weight), None))
        for ours, t in _LINEARS.items():
            layer = getattr(block, ours)
            qw = layer.ternary_weight()
            trits = qw.trits.to(torch.float32).reshape(layer.out_features, layer.in_features)
            scale = qw.scale.detach().to(torch.float32).reshape(-1)
            if scale.numel() != 1:
                raise _error(f"{path}: `layers.{i}.{ours}` has {scale.numel()} scales; "
                             "llama.cpp's bitnet tensors take one per tensor")
            name = tn[getattr(T, t)].format(bid=i)
            tensors.append((name + ".weight", gguf.quants.quantize(trits.numpy(), q), q))
            tensors.append((name + ".scale", scale.numpy().copy(), None))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        w = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BITNET])
        w.add_name(arch.name)
        w.add_block_count(arch.layers)
        w.add_context_length(arch.max_positions)
        w.add_embedding_length(arch.hidden)
        w.add_feed_forward_length(arch.ffn)
        w.add_head_count(arch.heads)
        w.add_head_count_kv(arch.kv_heads)
        w.add_key_length(arch.head_dim)
        w.add_value_length(arch.head_dim)
        w.add_rope_dimension_count(arch.head_dim)
        w.add_rope_freq_base(arch.rope_theta)
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(1.0)
        w.add_layer_norm_rms_eps(arch.eps)
        w.add_vocab_size(arch.vocab)
        w.add_file_type(ftype)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(token_types)
        w.add_token_merges(merges)
        w.add_add_bos_token(add_bos)
        w.add_add_eos_token(add_eos)
        if bos is not None:
            w.add_bos_token_id(bos)
        if eos is not None:
            w.add_eos_token_id(eos)
        for name, data, raw in tensors:
            w.add_tensor(name, data, raw_dtype=raw)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    notes += gen_notes
    if arch.act != "silu":
        notes.append(f"the model's MLP uses {arch.act}, but llama.cpp's bitnet graph gates "
                     "with SiLU: llama.cpp will compute a different function")
    return {"output": str(out), "bytes": out.stat().st_size, "type": qtype.upper(),
            "tensors": len(tensors), "arch": arch, "notes": notes, "tokenizer": tok_what}


def cmd_export_gguf(args: Any) -> int:
    """The `--format gguf` branch of `tritium export`."""
    from ..argcheck import check_output_file
    from .console import EXIT_OK
    if args.output is not None:
        check_output_file(args.output, "-o")      # a usage error before any work
    r = export_gguf(args.checkpoint, args.output, args.type or "tq2_0")
    a = r["arch"]
    print(f"wrote {r['output']} ({r['type']}, {r['bytes']:,} bytes, {r['tensors']} tensors): "
          f"llama.cpp architecture bitnet, {a.layers} layers, hidden {a.hidden}, vocabulary "
          f"{a.vocab} ({r['tokenizer']})")
    for note in r["notes"]:
        print(f"note: {note}")
    return EXIT_OK
