"""BitNet b1.58 language models end to end: Tritium frozen against PyTorch (and llama.cpp).

    .venv/bin/python benchmarks/llm.py                                # 125m and 0.7b
    .venv/bin/python benchmarks/llm.py --sizes 125m --threads 1 --rounds 3 --skip-llama
    .venv/bin/python benchmarks/llm.py --sizes tiny --rounds 1        # seconds (the unit test)

Each size is ``examples/bitnet_b158.tri`` with its hyperparameters set (the example's fixed
byte vocabulary becomes a parameter here) and random weights (``torch.manual_seed``: every
implementation holds the same ternary weights):

    tiny   dim 64,   2 layers,  4 heads, MLP 128,  vocab 256      (tests)
    125m   dim 768,  12 layers, 12 heads, MLP 2048, vocab 32000
    0.7b   dim 1536, 24 layers, 16 heads, MLP 4096, vocab 32000   (BitNet b1.58 "large")
    2b     dim 2560, 30 layers, 20 heads, MLP 6912, vocab 128256  (BitNet b1.58 2B4T)

The 2B4T model has grouped-query attention (5 key/value heads); the .tri example does not, so
``2b`` runs 20 full key/value heads: its k/v projections are 4x wider than 2B4T's (the header
prints the parameter count that runs).

Implementations, at batch 1:
  * ``tritium``: the model frozen as ``tritium train`` freezes it (``freeze_model``: packed t2
    ternary weights, int8 activations per token, the native kernels) with, by default, an int8
    output head (``--head int8``: ``freeze_model(model, head="int8")``, as ``tritium generate``
    runs it and as llama.cpp quantizes its output tensor; ``--head fp32`` keeps it fp32);
  * ``torch-fp32`` / ``torch-bf16``: the same architecture in plain PyTorch -- every BitLinear
    becomes RMSNorm, int8 fake quantization per token and ``F.linear`` with the dense ternary
    weights (trits x scale), the whole model in fp32 or bf16;
  * llama.cpp (TQ2_0/TQ1_0) is not run yet: ``tritium export --format gguf`` (branch ``hf``)
    takes only checkpoints ``tritium import hf`` wrote, not this .tri model; the header says
    llama.cpp was skipped and why.

All of them decode through the same path: ``tritium.driver.generate.generate_tokens`` (greedy)
with a KV cache (``tritium.runtime.decoding.DecodeSession``): one forward over the
``--prompt-len`` prompt tokens (prefill), then ``--gen-len`` one-token forwards (decode).
Each implementation lives in its own process (spawned one after another, so that building one
model does not overlap another's); a round runs every implementation once per thread count, in
a fresh random order each round; the figures are medians over ``--rounds``. Peak RSS is the
process's high-water mark over the timed runs (reset after the model is built, where the kernel
allows it, so the fp32 latent weights a frozen model was made from do not count). After the
rounds, each cached greedy decode is checked against one uncached forward over the same
tokens (see ``verify``): a gap over ``CACHE_TOLERANCE`` fails the run (exit status 1).

Before a size is built, its implementations' memory is estimated and compared with
``MemAvailable``; those that do not fit are skipped with a message. Ratios are tokens/s over
PyTorch fp32's (above 1: faster than fp32).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _args import positive_ints

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bitnet_b158.tri"


@dataclass(frozen=True)
class Size:
    dim: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    kv_heads: int | None = None    # the reference model's; the .tri runs full heads

    def params(self) -> tuple[int, int]:
        """(ternary parameters, full-precision parameters) of the model that runs."""
        d, f = self.dim, self.ffn
        ternary = self.layers * (4 * d * d + 3 * d * f)
        full = 2 * self.vocab * d + (2 * self.layers + 1) * d
        return ternary, full


SIZES = {
    "tiny": Size(64, 2, 4, 128, 256),
    "125m": Size(768, 12, 12, 2048, 32000),
    "0.7b": Size(1536, 24, 16, 4096, 32000),
    "2b": Size(2560, 30, 20, 6912, 128256, kv_heads=5),
}
IMPLS = ("tritium", "torch-fp32", "torch-bf16")
GIB = 1 << 30
CACHE_TOLERANCE = 0.05     # of the largest logit: see `verify`


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
    p.add_argument("--prompt-len", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("--gen-len", type=int, default=128, help="decoded tokens (default 128)")
    p.add_argument("--impls", type=lambda t: [s for s in t.split(",") if s],
                   default=list(IMPLS), help=f"subset of {', '.join(IMPLS)}")
    p.add_argument("--skip-llama", action="store_true", help="do not try llama.cpp")
    p.add_argument("--head", choices=("int8", "fp32"), default="int8",
                   help="Tritium's output head (default int8, as llama.cpp's TQ1_0/TQ2_0 files "
                        "quantize the output tensor; the PyTorch twins keep theirs)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("rounds", "prompt_len", "gen_len"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    bad = [i for i in args.impls if i not in IMPLS]
    if bad or not args.impls:
        p.error(f"--impls: unknown {', '.join(bad) or 'empty list'}; choose from "
                f"{', '.join(IMPLS)}")
    return args


# ----------------------------------------------------------------------------- the model

def program_text() -> str:
    """The example's source with its byte vocabulary made a hyperparameter."""
    text = EXAMPLE.read_text()
    params = re.compile(r"(model BitNetB158 \{\s*params \{[^}]*?)\s*\}\s*\n(\s*)vocab: 256\n")
    new, n = params.subn(r"\1, vocab: int = 256 }\n", text)
    if n != 1:
        raise SystemExit(f"llm.py: {EXAMPLE} no longer has the `params {{ ... }}` / "
                         "`vocab: 256` lines this benchmark rewrites")
    return new


def build_unfrozen(size: Size, seed: int):
    import torch

    import tritium
    torch.manual_seed(seed)
    model = tritium.load_source(program_text(), "BitNetB158", file=str(EXAMPLE),
                                dim=size.dim, layers=size.layers, heads=size.heads,
                                ffn=size.ffn, vocab=size.vocab)
    return model.eval()


def _dense_class():
    import torch
    import torch.nn.functional as F
    from torch import nn

    from tritium.runtime.ste import fake_quant_int8

    class Dense(nn.Module):
        """A BitLinear in plain PyTorch: RMSNorm, int8 fake quantization per token, then a
        dense matmul with the ternary weights (trits x scale)."""

        def __init__(self, layer) -> None:
            super().__init__()
            q = layer.ternary_weight(training=False)
            w = (q.trits.to(torch.float32) * q.scale.reshape(-1, 1).to(torch.float32))
            self.weight = nn.Parameter(w.contiguous(), requires_grad=False)
            self.bias = layer.bias
            self.eps = layer.eps
            self.in_features = layer.in_features

        def forward(self, x):
            x = F.rms_norm(x, (self.in_features,), eps=self.eps)
            return F.linear(fake_quant_int8(x), self.weight, self.bias)

    return Dense


def to_torch_twin(model, dtype_name: str):
    """Replace every BitLinear in `model` (unfrozen) by its dense PyTorch twin, in place,
    one layer at a time (the latent weight goes as its dense copy comes)."""
    import torch

    from tritium.runtime.layers.ternary import BitLinear
    dense = _dense_class()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BitLinear):
                setattr(parent, name, dense(child))
                del child
    gc.collect()
    if dtype_name == "bf16":
        model = model.to(torch.bfloat16)
    return model


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


def worker(conn, impl: str, size: Size, seed: int, head: str = "int8") -> None:
    """One implementation's process: build the model, then answer requests."""
    try:
        import torch

        from tritium.driver.generate import generate_tokens
        from tritium.runtime.layers.freeze import freeze_model
        torch.manual_seed(seed)
        model = build_unfrozen(size, seed)
        if impl == "tritium":
            model = freeze_model(model, head=head)
        else:
            model = to_torch_twin(model, impl.split("-")[1])
        model.eval()
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
                                use_cache=msg.get("use_cache", True))
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
    forwards, and through the int8 activation rounding of every BitLinear a last-bit
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
    return {"ok": True, "flips": flips, "worst": worst / scale, "agrees": worst <= CACHE_TOLERANCE * scale}


class Worker:
    def __init__(self, impl: str, size: Size, seed: int, head: str = "int8") -> None:
        ctx = mp.get_context("spawn")
        self.impl = impl
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, impl, size, seed, head), daemon=True)
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
        self.conn.send({"prompt": prompt, "gen_len": gen_len, "threads": threads,
                        "use_cache": use_cache})
        reply = self._recv()
        if not reply["ok"]:
            raise RuntimeError(f"{self.impl}: {reply['error']}")
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


def memory_need(impl: str, size: Size, ctx: int) -> tuple[int, int]:
    """(bytes while building, bytes once built) of one implementation, estimated: the model
    is made as fp32 latent weights (4 bytes a parameter) and then frozen (ternary weights to
    2 bits, embeddings and head stay fp32) or made dense (fp32: 4 bytes, bf16: 2); plus the
    KV cache, activations and ~0.4 GiB for the interpreter and torch."""
    ternary, full = size.params()
    kv = 2 * size.layers * ctx * size.dim * 4
    base = int(0.4 * GIB) + kv + 4 * ctx * max(size.vocab, size.ffn) * 4
    build = 4 * (ternary + full) + base
    if impl == "tritium":
        built = ternary // 4 + 4 * full + base
    elif impl == "torch-fp32":
        built = 4 * (ternary + full) + base
        build += 4 * size.dim * size.ffn    # one dense copy beside the latent weights
    else:
        built = 2 * (ternary + full) + base
        build = max(build, 4 * (ternary + full) + 2 * (ternary + full) // size.layers + base)
    return build, built


def plan_memory(impls: list[str], size: Size, ctx: int, avail: int
                ) -> tuple[list[str], dict[str, str]]:
    """The implementations that fit in `avail` bytes (built one after another, each staying
    resident) and why each other one is skipped."""
    chosen, skipped, held = [], {}, 0
    for impl in impls:
        build, built = memory_need(impl, size, ctx)
        need = held + max(build, built)
        if need > 0.9 * avail:
            skipped[impl] = (f"needs ~{max(build, built) / GIB:.1f} GiB beside "
                             f"{held / GIB:.1f} GiB held; {avail / GIB:.1f} GiB available")
            continue
        chosen.append(impl)
        held += built
    return chosen, skipped


# ----------------------------------------------------------------------------- llama.cpp

def llama_status(skip: bool) -> str | None:
    """None when llama.cpp can run here, else why it is skipped."""
    import importlib.util
    if skip:
        return "--skip-llama"
    if importlib.util.find_spec("tritium.driver.gguf_export") is None:
        return ("`tritium export --format gguf` is not on this branch (it comes with the "
                "`hf` branch), so there is no GGUF for llama-bench to run")
    return ("the GGUF exporter takes only checkpoints `tritium import hf` wrote (a BitNet "
            "model with sub-norms), not this .tri model; running llama-bench on such an "
            "import is not implemented in this benchmark yet")


# ----------------------------------------------------------------------------- run

def prompt_tokens(n: int, vocab: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(vocab) for _ in range(n)]


def bench_size(name: str, args, log=print) -> list[dict]:
    size = SIZES[name]
    ternary, full = size.params()
    ctx = args.prompt_len + args.gen_len + 1
    log(f"## {name}: dim {size.dim}, {size.layers} layers, {size.heads} heads, MLP {size.ffn}, "
        f"vocab {size.vocab}: {(ternary + full) / 1e6:.1f}M parameters "
        f"({ternary / 1e6:.1f}M ternary)")
    if size.kv_heads is not None:
        log(f"   note: the reference model has {size.kv_heads} key/value heads (grouped-query "
            f"attention); examples/bitnet_b158.tri has none, so all {size.heads} heads have "
            "their own keys and values here")
    impls, skipped = plan_memory(args.impls, size, ctx, mem_available())
    for impl, why in skipped.items():
        log(f"   {impl} skipped: it will not fit in memory ({why})")
    workers: dict[str, Worker] = {}
    try:
        for impl in impls:
            t = time.perf_counter()
            try:
                workers[impl] = Worker(impl, size, args.seed, args.head)
            except RuntimeError as exc:
                log(f"   {impl} skipped: building it failed ({exc})")
                continue
            log(f"   {impl} built in {time.perf_counter() - t:.1f} s "
                f"(RSS {workers[impl].built_rss / GIB:.2f} GiB)")
        prompt = prompt_tokens(args.prompt_len, size.vocab, args.seed)
        samples: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.rounds):
            order = list(workers)
            random.shuffle(order)
            for impl in order:
                for th in args.threads:
                    samples.setdefault((impl, th), []).append(
                        workers[impl].run(prompt, args.gen_len, th))
        rows = []
        for (impl, th), runs in samples.items():
            rows.append({
                "size": name, "impl": impl, "threads": th,
                "prefill": statistics.median(args.prompt_len / r["prefill_s"] for r in runs),
                "decode": statistics.median(r["steps"] / r["decode_s"] for r in runs),
                "peak": max(r["peak"] for r in runs),
                "cache": all(r["cache_used"] for r in runs),
                "tokens": runs[-1]["tokens"],
            })
        # the KV cache must not change the result: each implementation's cached greedy
        # tokens against one uncached forward of its own over the same sequence
        for r in rows:
            if r["threads"] != args.threads[0]:
                continue
            v = workers[r["impl"]].verify(prompt + r["tokens"], len(prompt))
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
        return rows
    finally:
        for w in workers.values():
            w.close()


def add_ratios(rows: list[dict]) -> None:
    base = {(r["size"], r["threads"]): r for r in rows if r["impl"] == "torch-fp32"}
    for r in rows:
        b = base.get((r["size"], r["threads"]))
        r["x_fp32_prefill"] = r["prefill"] / b["prefill"] if b else None
        r["x_fp32_decode"] = r["decode"] / b["decode"] if b else None


COLUMNS = ("size", "impl", "threads", "prefill tok/s", "decode tok/s", "peak RSS MiB",
           "prefill/fp32", "decode/fp32")


def render(rows: list[dict]) -> str:
    def ratio(x):
        return "-" if x is None else f"{x:.2f}x"
    table = [list(COLUMNS)]
    for r in sorted(rows, key=lambda r: (list(SIZES).index(r["size"]), r["threads"],
                                         IMPLS.index(r["impl"]))):
        table.append([r["size"], r["impl"], str(r["threads"]), f"{r['prefill']:.1f}",
                      f"{r['decode']:.1f}", f"{r['peak'] / (1 << 20):.0f}",
                      ratio(r["x_fp32_prefill"]), ratio(r["x_fp32_decode"])])
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i >= 2 else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def header(args) -> list[str]:
    import torch

    from tritium.backends.cpu import isa
    try:
        chosen = isa.select_isa()
    except Exception as exc:    # no native ISA: the header says so
        chosen = f"none ({exc})"
    return [f"# llm.py: BitNet b1.58, batch 1, prompt {args.prompt_len} tokens, decode "
            f"{args.gen_len} tokens, {args.rounds} round(s), medians",
            f"# CPU: {isa.cpu_model()} ({os.cpu_count()} logical CPUs), Tritium ISA {chosen}, "
            f"torch {torch.__version__}, threads {','.join(map(str, args.threads))}",
            f"# output head: Tritium {args.head}"
            + (" (int8 weights per row, int8 activations per token: llama.cpp quantizes its "
               "output tensor too)" if args.head == "int8" else "")
            + "; PyTorch fp32/bf16 as their dtype"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for line in header(args):
        print(line)
    why = llama_status(args.skip_llama)
    if why is not None:
        print(f"# llama.cpp skipped: {why}")
    print(flush=True)
    rows = []
    for name in args.sizes:
        rows += bench_size(name, args, log=lambda s: print(s, flush=True))
    add_ratios(rows)
    print()
    print(render(rows) if rows else "(nothing ran)")
    bad = [r for r in rows if r.get("uncached_agrees") is False or not r["cache"]]
    if bad:
        print("\nFAILED: " + "; ".join(
            f"{r['size']} {r['impl']}: " + ("decoded without the KV cache" if not r["cache"]
                                            else "cached and uncached tokens differ")
            for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
