"""Greedy tokens of llama.cpp on a GGUF file `tritium export --format gguf` wrote, against
Tritium's own greedy decode of the same checkpoint (not part of `make test`).

    python benchmarks/gguf_parity.py [--type tq2_0|tq1_0] [--tokens 24] [--llama-simple PATH]

Builds llama.cpp's `llama-simple` example (with `llama-bench`, which benchmarks/llm.py
runs) from the pinned llama-cpp-python source distribution (benchmarks/_ggml.py's
`ensure_llama_tools`: downloaded with pip when absent, SHA-256 checked), once, under
``<cache root>/peers/llama-<version>-<key>``. Then it writes benchmarks/llm.py's `tiny`
random BitNet checkpoint in the Hugging Face layout (vocabulary 256, so every token is a
byte; hidden 256, MLP 512, 2 layers, 4 heads, 2 k/v heads) with SiLU gating (the MLP that
llama.cpp's bitnet graph computes), imports it with `tritium import hf`, exports it to GGUF,
and runs both greedy decoders on a few prompts, printing the tokens and how many agree.

The two are not the same arithmetic: llama.cpp quantizes activations per 256-value block
(q8_K) where Tritium quantizes per token, keeps the output head (the tied embeddings) in
f16, and sums in another order, so on a random model whose top two logits are close a
token can differ; the first position where they part is printed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import _ggml  # noqa: E402
import llm  # noqa: E402

PROMPTS = ["def main(", "Hello, world", "import os\n"]


def ensure_llama_simple(jobs: int | None) -> Path:
    """The cached `llama-simple` binary, built when absent (with llama-bench: one build)."""
    return _ggml.ensure_llama_tools(jobs=jobs, log=lambda s: print(s, file=sys.stderr)) \
        / "llama-simple"


def tiny_checkpoint(d: Path) -> Path:
    """benchmarks/llm.py's `tiny` BitNet model with SiLU gating (what llama.cpp computes)."""
    return llm.write_hf_checkpoint(d, llm.SIZES["tiny"], seed=0, act="silu")


def ours_greedy(model, prompt: bytes, n: int) -> bytes:
    import torch
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return bytes(ids[len(prompt):])


def llama_greedy(exe: Path, gguf: Path, prompt: str, n: int) -> bytes:
    p = subprocess.run([str(exe), "-m", str(gguf), "-n", str(n), prompt],
                       capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"llama-simple failed ({p.returncode}): "
                           f"{p.stderr.decode(errors='replace')[-2000:]}")
    out = p.stdout
    start = out.find(prompt.encode())
    return out[start + len(prompt.encode()):] if start >= 0 else out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--type", choices=("tq2_0", "tq1_0"), default="tq2_0")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--jobs", type=int, default=None, help="build jobs (default: all cores)")
    ap.add_argument("--llama-simple", default=None, help="an existing llama-simple binary")
    args = ap.parse_args()

    from tritium.driver.gguf_export import export_gguf
    from tritium.driver.hf_import import import_hf
    from tritium.driver.models import model_from_checkpoint

    try:
        exe = Path(args.llama_simple) if args.llama_simple else ensure_llama_simple(args.jobs)
    except _ggml.PeerUnavailable as exc:
        print(f"gguf_parity.py: llama.cpp is not available here: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ckpt = import_hf(tiny_checkpoint(d / "hf"), d / "model.safetensors")["checkpoint"]
        gguf = export_gguf(ckpt, d / "model.gguf", args.type)["output"]
        model, _ = model_from_checkpoint(ckpt)
        same = total = 0
        for prompt in PROMPTS:
            a = ours_greedy(model, prompt.encode(), args.tokens)
            b = llama_greedy(exe, Path(gguf), prompt, args.tokens)[:len(a)]
            agree = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a),
                                                                                  len(b)))
            same += agree
            total += len(a)
            print(f"prompt {prompt!r}:\n  tritium   {list(a)}\n  llama.cpp {list(b)}\n"
                  f"  identical for the first {agree} of {len(a)} tokens")
        print(f"{args.type.upper()}: {same}/{total} greedy tokens identical before the first "
              "difference (summed over the prompts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
