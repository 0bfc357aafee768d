"""BitNet b1.58 language models end to end: Tritium against PyTorch and llama.cpp.

    .venv/bin/python benchmarks/llm.py                                # 125m and 0.7b
    .venv/bin/python benchmarks/llm.py --sizes 125m --threads 1 --rounds 3 --skip-llama
    .venv/bin/python benchmarks/llm.py --sizes tiny --rounds 1        # seconds (the unit test)

Each size is a BitNet b1.58 model (``BitNetForCausalLM``, transformers' ``model_type:
"bitnet"``: RMSNorm before attention and MLP, RoPE, grouped-query attention, sub-norms before
``o_proj`` and ``down_proj``, a ReLU²-gated MLP, embeddings tied to the output head, as in
BitNet b1.58 2B4T) with random weights (one seeded generator per tensor), written here as a
Hugging Face checkpoint directory (``config.json`` + bf16 safetensors, one shard a layer;
nothing is downloaded) and then brought to every implementation the way a user would:

    write_hf_checkpoint -> `tritium import hf` -> checkpoint -> `tritium export --format gguf`

so every implementation holds the same ternary weights (the absmean trits and per-tensor
scale the import computes):

    tiny   hidden 256,  2 layers,  4 heads (2 k/v),  MLP 512,  vocab 256     (tests)
    125m   hidden 768,  12 layers, 12 heads,         MLP 2048, vocab 32000
    0.7b   hidden 1536, 24 layers, 16 heads,         MLP 4096, vocab 32000   (b1.58 "large")
    2b     hidden 2560, 30 layers, 20 heads (5 k/v), MLP 6912, vocab 128256  (b1.58 2B4T)

Implementations, at batch 1:
  * ``tritium``: the imported checkpoint as ``tritium generate`` loads it
    (``load_language_model``: packed t2 ternary projections, int8 activations per token, the
    native kernels, each decoder block decoding a token in one native call
    (``runtime.layers.decoder``); embeddings in the checkpoint's bf16 (widened per looked-up
    row), norms in fp32, the head as ``--head`` says)
    -- ``tritium_model`` is the one place its build options go;
  * ``tritium-unfused`` (only when ``--impls`` names it): the same model with its decoder
    blocks kept off the fused call (each block's generated forward, layer by layer: the
    decode path before the fused blocks), to compare the two in one run;
  * ``tritium-t1.6`` (only when ``--impls`` names it): the same Hugging Face checkpoint
    imported with ``tritium import hf --format t1.6`` (the projections packed five trits a
    byte; llama.cpp's TQ1_0 is its peer), which must choose the same tokens as ``tritium``
    (exact int8 products in both formats: the run says whether it did);
  * ``torch-fp32`` / ``torch-bf16``: the same model in plain PyTorch -- every ternary
    projection becomes int8 fake quantization per token and ``F.linear`` with the dense
    weights (trits x scale), the whole model in fp32 or bf16;
  * ``llama-tq2_0`` / ``llama-tq1_0``: llama.cpp's ``llama-bench`` (built once from the
    pinned llama-cpp-python sdist, ``benchmarks/_ggml.py``) on the GGUF files ``tritium
    export --format gguf --type tq2_0|tq1_0`` wrote from that checkpoint.

What differs between them (the header repeats it): llama.cpp's bitnet graph gates the MLP with
SiLU where the model (and Tritium and PyTorch) use ReLU² (the same cost, another function);
llama.cpp quantizes activations per 256-value block (q8_K) where the others quantize per
token; its output head is the f16 token embedding (the others: fp32, bf16 for torch-bf16);
its KV cache is f16 with one entry per k/v head; Tritium's native decoder blocks keep one entry
per k/v head too, in ``--kv-cache``'s dtype (f32 by default), and PyTorch caches its dtype's keys
and values after repeating the k/v heads (grouped-query sizes). llama-bench draws its own random
prompt tokens; its decode test (``-n``) starts from a context of ``--prompt-len`` tokens
(``-d``), as the others' decode follows their prefill.

Tritium and PyTorch decode through the same path: ``tritium.driver.generate.generate_tokens``
(greedy) with a KV cache (``tritium.runtime.decoding.DecodeSession``): one forward over the
``--prompt-len`` prompt tokens (prefill), then ``--gen-len`` one-token forwards (decode).
Each lives in its own process (spawned one after another, so that building one model does not
overlap another's), which runs one short generation (a warm-up, untimed) after building it; llama-bench runs as a fresh process per measurement (``-r 1`` after its
own warm-up run: ``-p N -n 0`` for the prefill, ``-p 0 -n N -d N`` for the decode, ``-o
json``). A round runs every implementation once per thread count, all (implementation,
threads) pairs in a fresh random order each round; the figures are medians over
``--rounds``. Peak RSS is the process's high-water mark: over the timed runs for Tritium and
PyTorch (reset after the model is built, where the kernel allows it), and ``ru_maxrss`` of
each llama-bench process (``wait4``). After the rounds, each cached greedy decode of Tritium
and PyTorch is checked against one uncached forward over the same tokens (see ``verify``): a
gap over ``CACHE_TOLERANCE`` fails the run (exit status 1).

Before a size is prepared, the memory of the preparation and of each implementation is
estimated and compared with ``MemAvailable``; what does not fit is skipped with a message.
Ratios are tokens/s over PyTorch fp32's and over llama.cpp TQ2_0's and TQ1_0's (above 1:
faster; t1.6's peer is TQ1_0).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import _timing
from _args import positive_ints

# of the largest logit: see `verify` (the bound `tritium generate` holds its cache to)
from tritium.driver.generate import CACHE_TOLERANCE, DEFAULT_KV_CACHE, KV_CACHES

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Size:
    dim: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    kv_heads: int | None = None     # None: as many as heads

    @property
    def kv(self) -> int:
        return self.kv_heads or self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv * (self.dim // self.heads)

    def params(self) -> tuple[int, int]:
        """(ternary parameters, full-precision parameters) of the model (the output head is
        tied to the embeddings: counted once)."""
        d, f = self.dim, self.ffn
        ternary = self.layers * (2 * d * d + 2 * d * self.kv_dim + 3 * d * f)
        full = self.vocab * d + self.layers * (3 * d + f) + d
        return ternary, full


SIZES = {
    "tiny": Size(256, 2, 4, 512, 256, kv_heads=2),
    "125m": Size(768, 12, 12, 2048, 32000),
    "0.7b": Size(1536, 24, 16, 4096, 32000),
    "2b": Size(2560, 30, 20, 6912, 128256, kv_heads=5),
}
TORCH_IMPLS = ("tritium", "torch-fp32", "torch-bf16")
LLAMA_IMPLS = {"llama-tq2_0": "tq2_0", "llama-tq1_0": "tq1_0"}
#: on request only: Tritium with its decoder blocks kept off the fused one-call decode
#: (`generate_tokens(fused=False)`: each block's generated forward, layer by layer)
EXTRA_IMPLS = ("tritium-unfused", "tritium-t1.6")
#: the packed format of each Tritium implementation's checkpoint (the others: t2)
IMPL_FORMAT = {"tritium-t1.6": "t1.6"}
DEFAULT_IMPLS = TORCH_IMPLS + tuple(LLAMA_IMPLS)
IMPLS = TORCH_IMPLS + EXTRA_IMPLS + tuple(LLAMA_IMPLS)
GIB = 1 << 30
#: the MLP activation of the models (BitNet b1.58's); llama.cpp computes SiLU regardless
ACT = "relu2"
#: random weights: projections as transformers initializes them (their scale does not matter:
#: the absmean quantizer divides it out); norms around 1; embeddings (and so the tied head)
#: 1/sqrt(hidden), which makes logits of about unit spread and lets the decoder layers, not
#: the input embedding, decide the next token (a larger spread makes a model that repeats
#: its input)
LINEAR_STD, NORM_STD = 0.02, 0.1
#: tokens of each worker's warm-up prompt (then 3 new tokens), before the timed runs
WARMUP_PROMPT = 24


def default_threads() -> list[int]:
    n = os.cpu_count() or 1
    return sorted({1, n})


def sizes_arg(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SIZES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown size {', '.join(bad) or repr(text)}: choose from {', '.join(SIZES)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=sizes_arg, default=["125m", "0.7b"],
                   help=f"comma-separated, from {', '.join(SIZES)} (default 125m,0.7b)")
    p.add_argument("--threads", type=positive_ints, default=default_threads(),
                   help="comma-separated thread counts (default 1 and all cores)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3); medians printed")
    p.add_argument("--layers", type=int, default=None,
                   help="decoder layers of every size (default: the size's own); a size's "
                        "shapes with fewer layers measure its kernels in less time")
    p.add_argument("--prompt-len", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("--gen-len", type=int, default=128, help="decoded tokens (default 128)")
    p.add_argument("--impls", type=lambda t: [s for s in t.split(",") if s],
                   default=list(DEFAULT_IMPLS),
                   help=f"subset of {', '.join(IMPLS)} (default: all but {', '.join(EXTRA_IMPLS)})")
    p.add_argument("--skip-llama", action="store_true",
                   help="do not run llama.cpp (nor build it, nor export GGUF files)")
    p.add_argument("--llama-bench", default=None, metavar="PATH",
                   help="an existing llama-bench binary (default: build it from the pinned "
                        "llama-cpp-python sdist, once, under <cache root>/peers)")
    p.add_argument("--head", choices=("int8", "fp32"), default="int8",
                   help="Tritium's output head (default int8, as `tritium generate` runs it; "
                        "llama.cpp's is f16 here)")
    p.add_argument("--kv-cache", choices=KV_CACHES, default=DEFAULT_KV_CACHE,
                   help=f"Tritium's KV cache (default {DEFAULT_KV_CACHE}, as `tritium generate`"
                        " keeps it; llama.cpp's is f16)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("rounds", "prompt_len", "gen_len", "layers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    bad = [i for i in args.impls if i not in IMPLS]
    if bad or not args.impls:
        p.error(f"--impls: unknown {', '.join(bad) or 'empty list'}; choose from "
                f"{', '.join(IMPLS)}")
    if args.llama_bench is not None and not os.access(args.llama_bench, os.X_OK):
        p.error(f"--llama-bench: {args.llama_bench} is not an executable file")
    return args


# ----------------------------------------------------------------------------- the model

def hf_config(size: Size, act: str = ACT, max_positions: int = 4096) -> dict:
    """The ``config.json`` of the size, as transformers' ``BitNetConfig`` writes it."""
    return {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
            "vocab_size": size.vocab, "hidden_size": size.dim,
            "intermediate_size": size.ffn, "num_hidden_layers": size.layers,
            "num_attention_heads": size.heads, "num_key_value_heads": size.kv,
            "hidden_act": act, "max_position_embeddings": max_positions,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "attention_bias": False,
            "attention_dropout": 0.0, "initializer_range": LINEAR_STD,
            "tie_word_embeddings": True, "use_cache": True, "torch_dtype": "bfloat16"}


def _hf_tensors(size: Size, layer: int | None) -> list[tuple[str, tuple[int, ...], float]]:
    """(name, shape, std) of one layer's tensors, or (layer None) of the rest; a norm's std
    is its spread around 1."""
    d, f, kvd = size.dim, size.ffn, size.kv_dim
    if layer is None:
        return [("model.embed_tokens.weight", (size.vocab, d), d ** -0.5),
                ("model.norm.weight", (d,), NORM_STD)]
    p = f"model.layers.{layer}."
    return [(p + "input_layernorm.weight", (d,), NORM_STD),
            (p + "post_attention_layernorm.weight", (d,), NORM_STD),
            (p + "self_attn.attn_sub_norm.weight", (d,), NORM_STD),
            (p + "mlp.ffn_sub_norm.weight", (f,), NORM_STD),
            (p + "self_attn.q_proj.weight", (d, d), LINEAR_STD),
            (p + "self_attn.k_proj.weight", (kvd, d), LINEAR_STD),
            (p + "self_attn.v_proj.weight", (kvd, d), LINEAR_STD),
            (p + "self_attn.o_proj.weight", (d, d), LINEAR_STD),
            (p + "mlp.gate_proj.weight", (f, d), LINEAR_STD),
            (p + "mlp.up_proj.weight", (f, d), LINEAR_STD),
            (p + "mlp.down_proj.weight", (d, f), LINEAR_STD)]


def write_hf_checkpoint(directory: str | os.PathLike[str], size: Size, seed: int,
                        act: str = ACT) -> Path:
    """A random ``BitNetForCausalLM`` checkpoint of `size` in `directory` (``config.json``,
    bf16 safetensors shards, one per decoder layer, and the shard index
    ``save_pretrained`` writes). Each tensor has its own generator, seeded from `seed` and
    its name: the same seed gives the same weights, one layer in memory at a time."""
    import torch
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    groups = [None, *range(size.layers)]
    weight_map, total = {}, 0
    for n, layer in enumerate(groups):
        shard = f"model-{n + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name, shape, std in _hf_tensors(size, layer):
            g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
            t = torch.randn(shape, generator=g) * std
            if len(shape) == 1:
                t += 1.0
            tensors[name] = t.to(torch.bfloat16)
            weight_map[name] = shard
            total += t.numel() * 2
        save_file(tensors, str(d / shard), metadata={"format": "pt"})
        del tensors
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (d / "config.json").write_text(json.dumps(hf_config(size, act), indent=2))
    return d


def prepare(size: Size, seed: int, workdir: str, qtypes: list[str],
            formats: tuple[str, ...] = ("t2",)) -> dict:
    """(Run in a process of its own.) The size's Hugging Face checkpoint, imported with
    `tritium import hf` once per packed format in `formats` (t2 always: the GGUF export and
    the PyTorch twins read it; the directory is deleted afterwards) and exported to a GGUF
    file per type in `qtypes`; returns the paths (``checkpoints``: format -> path;
    ``checkpoint``: the t2 one), or why the export failed."""
    from tritium.driver.evaluate import ExportError
    from tritium.driver.gguf_export import export_gguf
    from tritium.driver.hf_import import import_hf

    work = Path(workdir)
    t0 = time.perf_counter()
    hf = write_hf_checkpoint(work / "hf", size, seed)
    r = import_hf(hf, work / "model.safetensors")
    out = {"checkpoint": r["checkpoint"], "checkpoints": {"t2": r["checkpoint"]},
           "bytes": r["bytes"], "gguf": {}, "gguf_bytes": {}, "export_error": None}
    del r
    gc.collect()
    for fmt in formats:
        if fmt != "t2":
            out["checkpoints"][fmt] = import_hf(hf, work / f"model-{fmt}.safetensors",
                                                fmt=fmt)["checkpoint"]
            gc.collect()
    shutil.rmtree(hf)
    for q in qtypes:
        try:
            e = export_gguf(out["checkpoint"], work / f"model-{q}.gguf", q)
        except ExportError as exc:
            out["export_error"] = exc.message
            break
        out["gguf"][q], out["gguf_bytes"][q] = e["output"], e["bytes"]
        gc.collect()
    out["seconds"] = time.perf_counter() - t0
    return out


#: below this many parameters the model is prepared in the benchmark's own process (a fresh
#: process costs seconds of imports; a small model's memory does not matter)
PREPARE_IN_PROCESS = 50_000_000


def prepare_model(size: Size, seed: int, workdir: str, qtypes: list[str],
                  formats: tuple[str, ...] = ("t2",)) -> dict:
    """`prepare`, in a fresh process unless the model is small."""
    if sum(size.params()) < PREPARE_IN_PROCESS:
        return prepare(size, seed, workdir, qtypes, formats)
    return run_in_process(prepare, size, seed, workdir, qtypes, formats)


def run_in_process(fn, *args):
    """`fn(*args)` in a fresh spawned process (its memory goes back when it ends)."""
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            raise RuntimeError("the process died (out of memory?)") from None


def tritium_model(checkpoint: str, head: str = "fp32"):
    """Tritium's model as this benchmark runs it: the checkpoint as `tritium generate` loads
    it, with its output head in `head`'s format (`tritium generate --head`). Build options of
    Tritium's decode path go here, and into the header's description of the ``tritium`` row."""
    from tritium.driver.generate import load_language_model
    from tritium.runtime.layers.head import quantize_head
    model, _, _ = load_language_model(checkpoint)
    quantize_head(model, head)
    return model.eval()


def _dense_class():
    import torch.nn.functional as F
    from torch import nn

    from tritium.runtime.ste import fake_quant_int8

    class Dense(nn.Module):
        """A ternary projection (a TernaryLinear of an imported model: no input transform of
        its own) in plain PyTorch: int8 fake quantization per token (when the layer
        quantizes its activations), then a dense matmul with the ternary weights
        (trits x scale) in `dtype`."""

        def __init__(self, layer, dtype) -> None:
            super().__init__()
            q = layer.ternary_weight(training=False)
            w = q.trits.to(dtype) * q.scale.reshape(-1, 1).to(dtype)
            self.weight = nn.Parameter(w.contiguous(), requires_grad=False)
            self.bias = None if layer.bias is None else nn.Parameter(
                layer.bias.detach().to(dtype), requires_grad=False)
            self.act_quant = layer.act_quant == "int8"

        def forward(self, x):
            if self.act_quant:
                x = fake_quant_int8(x)
            return F.linear(x, self.weight, self.bias)

    return Dense


def to_torch_twin(model, dtype_name: str):
    """Replace every ternary linear layer of `model` by its dense PyTorch twin in fp32 or
    bf16, in place, one layer at a time, and the 16-bit embeddings and head Tritium keeps
    (``runtime.layers.half``) by plain ``nn.Embedding`` / ``nn.Linear``; then the rest of the
    model to that dtype."""
    import torch
    from torch import nn

    from tritium.runtime import TernaryLinear
    from tritium.runtime.layers.half import HalfEmbedding, HalfLinear
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    dense = _dense_class()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, TernaryLinear):
                setattr(parent, name, dense(child, dtype))
                del child
            elif type(child) is HalfLinear:
                setattr(parent, name, child.widened())
            elif type(child) is HalfEmbedding:
                plain = nn.Embedding(child.num_embeddings, child.embedding_dim,
                                     _weight=child.weight.detach().to(torch.float32),
                                     _freeze=True)
                setattr(parent, name, plain)
    gc.collect()
    return model.to(dtype)


# ----------------------------------------------------------------------------- workers

def _status(field: str) -> int:
    """A memory line of /proc/self/status in bytes (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(conn, impl: str, checkpoint: str, head: str = "fp32",
           kv_cache: str = DEFAULT_KV_CACHE) -> None:
    """One implementation's process: build the model from the checkpoint (Tritium's with its
    head in `head`'s format; the PyTorch twins keep theirs in their dtype), then answer
    requests. `kv_cache`: Tritium's KV cache (the PyTorch twins keep their dtype's)."""
    try:
        import torch

        from tritium.driver.generate import generate_tokens
        tritium = impl.startswith("tritium")
        kv = kv_cache if tritium else DEFAULT_KV_CACHE
        model = tritium_model(checkpoint, head if tritium else "fp32")
        if not tritium:
            model = to_torch_twin(model, impl.split("-")[1])
        model.eval()
        # one short generation first, as llama-bench runs a warm-up: what a model does once
        # (Tritium: each weight's batch-GEMM layout, each decoder block's first fused
        # prefill and decode step checked against its own forward) is not timed
        generate_tokens(model, list(range(1, WARMUP_PROMPT + 1)), 3, greedy=True,
                        fused=impl != "tritium-unfused", kv_cache=kv)
        gc.collect()
        reset = _reset_peak()
        conn.send({"ok": True, "rss": _status("VmRSS"), "peak_reset": reset})
    except Exception as exc:  # the parent reports it and goes on
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    while True:
        msg = conn.recv()
        if msg is None:
            return
        torch.set_num_threads(msg["threads"])
        if "verify" in msg:
            conn.send(verify(model, msg["verify"], msg["first"]))
            continue
        try:
            r = generate_tokens(model, msg["prompt"], msg["gen_len"] + 1, greedy=True,
                                use_cache=msg.get("use_cache", True),
                                fused=impl != "tritium-unfused", kv_cache=kv)
        except Exception as exc:
            conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        conn.send({"ok": True, "prefill_s": r.prefill_seconds, "decode_s": r.decode_seconds,
                   "steps": r.decode_steps, "tokens": r.tokens, "cache_used": r.cache_used,
                   "peak": _status("VmHWM") or _status("VmRSS")})


def verify(model, seq: list[int], first: int) -> dict:
    """Teacher-forced check of a cached greedy decode: one uncached forward over `seq`; at
    each position from `first` on, how far (in logits) the token the cached run chose falls
    below the uncached argmax. Float rounding differs between one-token and whole-sequence
    forwards, and through the int8 activation rounding of every projection a last-bit
    difference can move a value by one int8 step: on a random 125m model that moves logits by
    ~1% of the largest (the PyTorch fp32 twin as much as Tritium), enough to break near-ties
    the other way. A cache error (wrong positions, lost keys) moves them by a large part of
    their range; a gap beyond `CACHE_TOLERANCE` of the largest logit fails the run."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([seq], dtype=torch.long))[0].float()
    scale = max(1.0, float(logits.abs().max()))
    worst, flips = 0.0, 0
    for p in range(first - 1, len(seq) - 1):
        row = logits[p]
        best = int(row.argmax())
        if best != seq[p + 1]:
            flips += 1
            worst = max(worst, float(row[best] - row[seq[p + 1]]))
    return {"ok": True, "flips": flips, "worst": worst / scale,
            "agrees": worst <= CACHE_TOLERANCE * scale}


class Worker:
    def __init__(self, impl: str, checkpoint: str, head: str = "fp32",
                 kv_cache: str = DEFAULT_KV_CACHE) -> None:
        ctx = mp.get_context("spawn")
        self.impl = impl
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, impl, checkpoint, head, kv_cache),
                                daemon=True)
        self.proc.start()
        child.close()
        reply = self._recv()
        if not reply["ok"]:
            self.close()
            raise RuntimeError(reply["error"])
        self.built_rss = reply["rss"]

    def _recv(self) -> dict:
        try:
            return self.conn.recv()
        except EOFError:
            self.proc.join(5)
            code = self.proc.exitcode
            return {"ok": False, "error": f"the worker died (exit code {code}; out of memory?)"}

    def run(self, prompt: list[int], gen_len: int, threads: int, use_cache: bool = True) -> dict:
        """One greedy generation: tokens/s of the prefill and of the decode, and more."""
        self.conn.send({"prompt": prompt, "gen_len": gen_len, "threads": threads,
                        "use_cache": use_cache})
        reply = self._recv()
        if not reply["ok"]:
            raise RuntimeError(f"{self.impl}: {reply['error']}")
        reply["prefill"] = len(prompt) / reply["prefill_s"]
        reply["decode"] = reply["steps"] / reply["decode_s"]
        return reply

    def verify(self, seq: list[int], first: int) -> dict:
        self.conn.send({"verify": seq, "first": first, "threads": 1})
        return self._recv()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# ----------------------------------------------------------------------------- memory

def mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def gguf_bytes(qtype: str, size: Size) -> int:
    """The GGUF file's size, estimated: TQ2_0 is 66 bytes and TQ1_0 54 bytes a 256-weight
    block; the f16 token embedding and f32 norms."""
    ternary, full = size.params()
    per_block = {"tq2_0": 66, "tq1_0": 54}[qtype]
    return ternary // 256 * per_block + 2 * size.vocab * size.dim + 4 * (full - size.vocab
                                                                          * size.dim)


def memory_need(impl: str, size: Size, ctx: int) -> tuple[int, int]:
    """(bytes while building, bytes once built) of one implementation, estimated. Tritium
    loads the checkpoint: 2-bit ternary weights, the embeddings in bf16 (as the Hugging Face
    checkpoint holds them) and the tied head as int8 (while loading: the checkpoint's tensors
    beside the model's, the head's bf16 table); the PyTorch twins unpack each projection to a
    dense copy (4 bytes a parameter for fp32, 2 for bf16) and hold fp32 embeddings and head;
    llama-bench maps its GGUF file and holds an f16 KV cache of the k/v heads and its compute
    buffers. Tritium and PyTorch add their fp32 KV cache (the k/v heads repeated),
    activations and ~0.4 GiB for the interpreter and torch."""
    ternary, full = size.params()
    emb = size.vocab * size.dim
    if impl in LLAMA_IMPLS:
        kv = 2 * size.layers * ctx * size.kv_dim * 2
        need = gguf_bytes(LLAMA_IMPLS[impl], size) + kv + 4 * size.vocab * ctx \
            + int(0.3 * GIB)
        return need, need
    kv = 2 * size.layers * ctx * size.dim * 4
    base = int(0.4 * GIB) + kv + 4 * ctx * max(size.vocab, size.ffn) * 4
    if impl.startswith("tritium"):
        built = ternary // 4 + 3 * emb + 4 * (full - emb) + base
        return built + ternary // 4 + 4 * emb, built
    width = 4 if impl == "torch-fp32" else 2
    built = width * (ternary + full + emb) + base
    return built + ternary // 4 + 4 * emb + 4 * size.dim * size.ffn, built


def prepare_need(size: Size) -> int:
    """Bytes the preparation needs at its peak, estimated: the import reads one tensor at a
    time (the largest in fp32 and its temporaries) and holds the packed model with its bf16
    embeddings; writing the checkpoint copies the model and serializes it; the GGUF export
    loads the checkpoint and builds every quantized tensor before writing (the f16
    embeddings twice)."""
    ternary, full = size.params()
    emb = size.vocab * size.dim
    largest = max(size.dim * size.ffn, emb)
    return 3 * (ternary // 4) + 12 * emb + 4 * (full - emb) + 12 * largest + int(0.5 * GIB)


def plan_memory(impls: list[str], size: Size, ctx: int, avail: int
                ) -> tuple[list[str], dict[str, str]]:
    """The implementations that fit in `avail` bytes and why each other one is skipped. The
    Tritium and PyTorch processes are built one after another and stay resident; each
    llama-bench process runs beside all of them, one at a time."""
    chosen, skipped, held = [], {}, 0

    def why(need: int) -> str:
        return (f"needs ~{need / GIB:.1f} GiB beside {held / GIB:.1f} GiB held; "
                f"{avail / GIB:.1f} GiB available")

    if prepare_need(size) > 0.9 * avail:
        return [], {i: "preparing the model " + why(prepare_need(size)) for i in impls}
    for impl in impls:
        if impl in LLAMA_IMPLS:
            continue
        build, built = memory_need(impl, size, ctx)
        if held + max(build, built) > 0.9 * avail:
            skipped[impl] = why(max(build, built))
            continue
        chosen.append(impl)
        held += built
    for impl in impls:
        if impl in LLAMA_IMPLS:
            need = memory_need(impl, size, ctx)[0]
            if held + need > 0.9 * avail:
                skipped[impl] = why(need)
            else:
                chosen.append(impl)
    return chosen, skipped


# ----------------------------------------------------------------------------- llama.cpp

def find_llama_bench(args, log=print) -> tuple[Path | None, str | None]:
    """(llama-bench, None), or (None, why llama.cpp is skipped). Builds llama.cpp once when
    it is not cached (benchmarks/_ggml.py: the pinned sdist, downloaded with pip if absent)."""
    if args.skip_llama:
        return None, "--skip-llama"
    if not any(i in LLAMA_IMPLS for i in args.impls):
        return None, "no llama-* implementation in --impls"
    if args.llama_bench is not None:
        return Path(args.llama_bench), None
    import importlib.util
    if importlib.util.find_spec("gguf") is None:
        return None, ("the GGUF export needs the `gguf` package (pip install gguf; it is in "
                      "tritium's `torch` extra)")
    import _ggml
    try:
        return _ggml.ensure_llama_tools(log=log) / "llama-bench", None
    except _ggml.PeerUnavailable as exc:
        return None, str(exc)


def parse_llama_bench(text: str) -> list[dict]:
    """The tests of llama-bench's JSON output (``-o json``): for each, the prompt, generated
    and depth token counts, threads, tokens/s (mean over its repetitions) and what it says
    about the model, the KV cache and the CPU."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"llama-bench did not print JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(doc, list) or not doc:
        raise ValueError("llama-bench printed no test")
    out = []
    for t in doc:
        try:
            out.append({"n_prompt": int(t["n_prompt"]), "n_gen": int(t["n_gen"]),
                        "n_depth": int(t.get("n_depth", 0)), "threads": int(t["n_threads"]),
                        "tokens_per_s": float(t["avg_ts"]),
                        "samples": [float(x) for x in t.get("samples_ts", [])],
                        "model_type": str(t.get("model_type", "")),
                        "model_size": int(t.get("model_size", 0)),
                        "cpu": str(t.get("cpu_info", "")),
                        "type_k": str(t.get("type_k", ""))})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a llama-bench test lacks {exc}: {str(t)[:200]}") from None
    return out


def run_measured(cmd: list[str], timeout: float) -> tuple[int, str, str, int]:
    """(exit status, stdout, stderr, peak RSS in bytes) of `cmd`: the peak is the child's own
    ``ru_maxrss`` (``wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, lambda: os.kill(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (code, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                usage.ru_maxrss * 1024)


class LlamaBench:
    """llama-bench on one GGUF file: a fresh process per measurement."""

    def __init__(self, impl: str, exe: Path, gguf: str) -> None:
        self.impl, self.exe, self.gguf = impl, exe, gguf
        self.info: dict = {}

    def _bench(self, threads: int, extra: list[str]) -> tuple[dict, int]:
        cmd = [str(self.exe), "-m", self.gguf, "-t", str(threads), "-r", "1", "-o", "json",
               *extra]
        code, out, err, peak = run_measured(cmd, timeout=3600)
        if code != 0:
            tail = "\n    ".join(err.strip().splitlines()[-8:])
            raise RuntimeError(f"{self.impl}: {' '.join(cmd)} exited {code}:\n    {tail}")
        try:
            tests = parse_llama_bench(out)
        except ValueError as exc:
            raise RuntimeError(f"{self.impl}: {exc}") from None
        self.info = tests[0]
        return tests[0], peak

    def run(self, prompt: list[int], gen_len: int, threads: int) -> dict:
        n = len(prompt)
        pp, peak_p = self._bench(threads, ["-p", str(n), "-n", "0"])
        tg, peak_g = self._bench(threads, ["-p", "0", "-n", str(gen_len), "-d", str(n)])
        return {"prefill": pp["tokens_per_s"], "decode": tg["tokens_per_s"],
                "peak": max(peak_p, peak_g), "cache_used": True}


# ----------------------------------------------------------------------------- run

def prompt_tokens(n: int, vocab: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(vocab) for _ in range(n)]


def bench_size(name: str, args, llama_bench: Path | None = None, log=print) -> list[dict]:
    size = SIZES[name]
    if getattr(args, "layers", None):
        size = dataclasses.replace(size, layers=args.layers)
    ternary, full = size.params()
    ctx = args.prompt_len + args.gen_len + 1
    kv = f" ({size.kv} k/v)" if size.kv != size.heads else ""
    log(f"## {name}: hidden {size.dim}, {size.layers} layers, {size.heads} heads{kv}, MLP "
        f"{size.ffn}, vocab {size.vocab}: {(ternary + full) / 1e6:.1f}M parameters "
        f"({ternary / 1e6:.1f}M ternary)")
    wanted = [i for i in args.impls if llama_bench is not None or i not in LLAMA_IMPLS]
    impls, skipped = plan_memory(wanted, size, ctx, mem_available())
    for impl, why in skipped.items():
        log(f"   {impl} skipped: it will not fit in memory ({why})")
    if not impls:
        return []
    workdir = tempfile.mkdtemp(prefix=f"tritium-llm-{name}-")
    runners: dict[str, Worker | LlamaBench] = {}
    try:
        qtypes = [LLAMA_IMPLS[i] for i in impls if i in LLAMA_IMPLS]
        try:
            formats = tuple(dict.fromkeys(["t2"] + [IMPL_FORMAT[i] for i in impls
                                                    if i in IMPL_FORMAT]))
            prep = prepare_model(size, args.seed, workdir, qtypes, formats)
        except RuntimeError as exc:
            log(f"   skipped: preparing the model failed ({exc})")
            return []
        log(f"   prepared in {prep['seconds']:.1f} s: Hugging Face checkpoint -> `tritium "
            f"import hf` ({prep['bytes'] / 2**20:.1f} MiB)"
            + "".join(f" -> GGUF {q.upper()} ({b / 2**20:.1f} MiB)"
                      for q, b in prep["gguf_bytes"].items()))
        if prep["export_error"]:
            log(f"   llama.cpp skipped: `tritium export --format gguf` failed: "
                f"{prep['export_error']}")
        for impl in impls:
            t = time.perf_counter()
            if impl in LLAMA_IMPLS:
                gguf = prep["gguf"].get(LLAMA_IMPLS[impl])
                if gguf is not None:
                    runners[impl] = LlamaBench(impl, llama_bench, gguf)
                continue
            try:
                runners[impl] = Worker(impl, prep["checkpoints"][IMPL_FORMAT.get(impl, "t2")],
                                       args.head, args.kv_cache)
            except RuntimeError as exc:
                log(f"   {impl} skipped: building it failed ({exc})")
                continue
            log(f"   {impl} built in {time.perf_counter() - t:.1f} s "
                f"(RSS {runners[impl].built_rss / GIB:.2f} GiB)")
        prompt = prompt_tokens(args.prompt_len, size.vocab, args.seed)
        samples = _timing.interleave(
            {(impl, th): functools.partial(runner.run, prompt, args.gen_len, th)
             for impl, runner in runners.items() for th in args.threads},
            args.rounds, shuffle=random.shuffle,
            on_round=lambda n, s: log(f"   round {n + 1}/{args.rounds} done in {s:.0f} s"))
        rows = []
        for (impl, th), runs in samples.items():
            rows.append({
                "size": name, "impl": impl, "threads": th,
                "prefill": statistics.median(r["prefill"] for r in runs),
                "decode": statistics.median(r["decode"] for r in runs),
                "peak": max(r["peak"] for r in runs),
                "cache": all(r["cache_used"] for r in runs),
                "tokens": runs[-1].get("tokens"),
            })
        for impl, r in runners.items():
            if isinstance(r, LlamaBench) and r.info:
                log(f"   {impl}: llama-bench ran model {r.info['model_type']!r} "
                    f"({r.info['model_size'] / 2**20:.1f} MiB), KV cache {r.info['type_k']}")
        # the KV cache must not change the result: each implementation's cached greedy
        # tokens against one uncached forward of its own over the same sequence
        for r in rows:
            worker = runners[r["impl"]]
            if r["threads"] != args.threads[0] or not isinstance(worker, Worker):
                continue
            v = worker.verify(prompt + r["tokens"], len(prompt))
            if not v["ok"]:
                raise RuntimeError(f"{r['impl']}: {v['error']}")
            log(f"   {r['impl']}: cached decode against an uncached forward, "
                f"{len(r['tokens'])} greedy tokens: "
                + ("the same" if not v["flips"] else
                   f"{v['flips']} near-tie(s) broken the other way (largest gap "
                   f"{v['worst']:.1e} of the largest logit)" if v["agrees"] else
                   f"DIFFERENT ({v['flips']} token(s), gap up to {v['worst']:.1e} of the "
                   "largest logit)"))
            for q in rows:
                if q["impl"] == r["impl"]:
                    q["uncached_agrees"] = v["agrees"]
        # another packing of the same trits: the same integer products, the same tokens
        t2 = {r["threads"]: r["tokens"] for r in rows if r["impl"] == "tritium"}
        for r in rows:
            if r["impl"] in IMPL_FORMAT and r["threads"] in t2 and r["threads"] == \
                    args.threads[0]:
                same = r["tokens"] == t2[r["threads"]]
                log(f"   {r['impl']}: {'the same' if same else 'DIFFERENT'} "
                    f"{len(r['tokens'])} greedy tokens as tritium (t2)")
                for q in rows:
                    if q["impl"] == r["impl"]:
                        q["same_as_t2"] = same
        return rows
    finally:
        for w in runners.values():
            if isinstance(w, Worker):
                w.close()
        shutil.rmtree(workdir, ignore_errors=True)


def add_ratios(rows: list[dict]) -> None:
    for key, base_impl in (("fp32", "torch-fp32"), ("tq2", "llama-tq2_0"),
                           ("tq1", "llama-tq1_0")):
        base = {(r["size"], r["threads"]): r for r in rows if r["impl"] == base_impl}
        for r in rows:
            b = base.get((r["size"], r["threads"]))
            for what in ("prefill", "decode"):
                r[f"x_{key}_{what}"] = r[what] / b[what] if b else None


COLUMNS = ("size", "impl", "threads", "prefill tok/s", "decode tok/s", "peak RSS MiB",
           "prefill/fp32", "decode/fp32", "prefill/TQ2_0", "decode/TQ2_0", "prefill/TQ1_0",
           "decode/TQ1_0")


def render(rows: list[dict]) -> str:
    def ratio(x):
        return "-" if x is None else f"{x:.2f}x"
    body = []
    for r in sorted(rows, key=lambda r: (list(SIZES).index(r["size"]), r["threads"],
                                         IMPLS.index(r["impl"]))):
        body.append([r["size"], r["impl"], str(r["threads"]), f"{r['prefill']:.1f}",
                     f"{r['decode']:.1f}", f"{r['peak'] / (1 << 20):.0f}",
                     ratio(r["x_fp32_prefill"]), ratio(r["x_fp32_decode"]),
                     ratio(r["x_tq2_prefill"]), ratio(r["x_tq2_decode"]),
                     ratio(r["x_tq1_prefill"]), ratio(r["x_tq1_decode"])])
    return "\n".join(_timing.text_table(COLUMNS, body, left=2, rule=True))


DIFFERENCES = (
    "# same ternary weights everywhere (imported with `tritium import hf`, exported with "
    "`tritium export --format gguf`); what differs:",
    "#   llama.cpp gates the MLP with SiLU (the model: ReLU²), quantizes activations per "
    "256 values (q8_K; the others per token), keeps the tied head in f16 (Tritium: "
    "the `output head` line above; torch-fp32: fp32; torch-bf16: bf16) and an f16 KV cache of the k/v heads (Tritium: "
    "the k/v heads in the `KV cache` line's dtype; PyTorch: fp32 or bf16, k/v heads repeated)",
)


def header(args) -> list[str]:
    import torch

    from tritium.backends.cpu import isa
    try:
        chosen = isa.select_isa()
    except Exception as exc:    # no native ISA: the header says so
        chosen = f"none ({exc})"
    return [f"# llm.py: BitNet b1.58, batch 1, prompt {args.prompt_len} tokens, decode "
            f"{args.gen_len} tokens, {args.rounds} round(s), medians"
            + (f", every size cut to {args.layers} decoder layer(s)" if args.layers else ""),
            f"# CPU: {isa.cpu_model()} ({os.cpu_count()} logical CPUs), Tritium ISA {chosen}, "
            f"torch {torch.__version__}, threads {','.join(map(str, args.threads))}",
            f"# output head: Tritium {args.head}"
            + (" (int8 weights per row, int8 activations per token: llama.cpp quantizes its "
               "output tensor too)" if args.head == "int8" else "")
            + "; PyTorch fp32/bf16 as their dtype",
            f"# KV cache: Tritium {args.kv_cache}, each k/v head once (its native decoder "
            "blocks; the prompt's head projects its last position only, as llama.cpp's and, "
            "through the same generation loop, PyTorch's)"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for line in header(args):
        print(line)
    for line in DIFFERENCES:
        print(line)
    llama_bench, why = find_llama_bench(args, log=lambda s: print(f"# {s}", flush=True))
    if why is not None:
        print(f"# llama.cpp skipped: {why}")
    else:
        import _ggml
        print(f"# llama.cpp: {llama_bench} (vendored by llama-cpp-python "
              f"{_ggml.LLAMA_CPP_PYTHON_VERSION}; built here unless --llama-bench)")
    print(flush=True)
    rows = []
    for name in args.sizes:
        rows += bench_size(name, args, llama_bench, log=lambda s: print(s, flush=True))
    add_ratios(rows)
    print()
    print(render(rows) if rows else "(nothing ran)")
    bad = [r for r in rows if r.get("uncached_agrees") is False or not r["cache"]
           or r.get("same_as_t2") is False]
    if bad:
        print("\nFAILED: " + "; ".join(
            f"{r['size']} {r['impl']}: " + ("decoded without the KV cache" if not r["cache"]
                                            else "other tokens than tritium (t2) from the "
                                            "same trits" if r.get("same_as_t2") is False
                                            else "cached and uncached tokens differ")
            for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
