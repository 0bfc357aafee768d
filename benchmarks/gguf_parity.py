"""llama.cpp against Tritium on a GGUF file `tritium export --format gguf` wrote: the prompt's
tokens under the file's vocabulary, the logits of every prompt position and a greedy
continuation, compared with Tritium's own forward pass of the checkpoint the file came from.

    python benchmarks/gguf_parity.py [--type tq2_0|tq1_0] [--tokens 24] [--program PATH]
    python benchmarks/gguf_parity.py --build-only     # build llama_logits, print its path

Builds ``llama_logits`` (benchmarks/llama_check/llama_logits.cpp: llama.cpp's library and a
small program of ours that prints what llama.cpp computes) from the pinned llama-cpp-python
source distribution, once (benchmarks/_llama_check.py; about a minute on two cores). Then it
writes benchmarks/llm.py's `tiny` random BitNet checkpoint in the Hugging Face layout
(vocabulary 256, so every token is a byte; hidden 256, MLP 512, 2 layers, 4 heads, 2 k/v
heads) with SiLU gating (the MLP llama.cpp's bitnet graph computes), imports it with
`tritium import hf`, exports it to GGUF and compares the two on a few prompts. `make test`
runs the same comparison (tests/e2e/test_llama_cpp_roundtrip.py).

The two are not the same arithmetic: llama.cpp quantizes activations per 256-value block
(q8_K) where Tritium quantizes per token, keeps the output head (the tied embeddings) in
f16 and sums in another order, so their logits differ by a few percent (relative RMS). A
greedy token of llama.cpp's that is not Tritium's argmax is accepted only where Tritium's
own logit for it is within a few times that difference of its best: a near-tie. The
greedy check feeds llama.cpp's continuation to Tritium (teacher forcing), so one near-tie
does not make the rest of the two sequences differ.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import _ggml  # noqa: E402
import _llama_check  # noqa: E402

PROMPTS = ["def main(argv):\n    return 0\n", "Hello, world", "import os\n"]
#: the largest relative RMS difference of the logits accepted at any position: measured
#: 0.024-0.034 on the tiny model (TQ2_0 and TQ1_0 alike); a model llama.cpp computes differently
#: (ReLU² gating exported as SiLU) reads 0.63-0.71
MAX_REL = 0.08
#: a greedy token that is not Tritium's argmax must be within this many RMS logit
#: differences (of that position) of Tritium's best logit
TIE_RMS = 4.0


@dataclass
class Parity:
    """One prompt: what agrees and by how much."""
    prompt: str
    tokens_equal: bool
    worst_rel: float = math.inf       # max over positions of ||ours - llama|| / ||ours||
    worst_cos: float = -1.0           # min cosine similarity of the logit rows
    argmax_equal: int = 0             # prompt positions with the same argmax
    positions: int = 0
    greedy_equal: int = 0             # llama.cpp's greedy tokens that are Tritium's argmax
    greedy: int = 0
    ties: list[tuple[int, float, float]] = field(default_factory=list)  # (step, gap, allowed)
    bad: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad

    def summary(self) -> str:
        return (f"prompt {self.prompt!r}: tokens {'equal' if self.tokens_equal else 'DIFFER'}; "
                f"logits worst relative difference {self.worst_rel:.4f}, cosine "
                f">= {self.worst_cos:.5f}, argmax equal at {self.argmax_equal}/{self.positions} "
                f"positions; greedy {self.greedy_equal}/{self.greedy} tokens Tritium's argmax"
                + (f", near-ties at steps {[s for s, _, _ in self.ties]}" if self.ties else "")
                + ("" if self.ok else "\n  FAILED: " + "; ".join(self.bad)))


def compare(model, ids: list[int], run: _llama_check.LlamaRun, prompt: str = "",
            max_rel: float = MAX_REL, tie_rms: float = TIE_RMS) -> Parity:
    """Tritium's `model` (a causal LM module: ids -> logits) against llama.cpp's `run` of the
    same prompt, whose token ids under Tritium's tokenizer are `ids`."""
    import numpy as np
    import torch

    r = Parity(prompt, tokens_equal=run.tokens == list(ids))
    if not r.tokens_equal:
        r.bad.append(f"llama.cpp tokenized the prompt as {run.tokens}, Tritium as {list(ids)}")
        return r
    seq = list(ids) + list(run.greedy)
    with torch.no_grad():
        ours = model(torch.tensor([seq]))[0].double().numpy()
    if ours.shape[1] != run.vocab:
        r.bad.append(f"vocabulary {run.vocab} in llama.cpp, {ours.shape[1]} in Tritium")
        return r
    theirs = np.asarray(run.logits, dtype=np.float64)
    n = len(ids)
    rms = np.sqrt(((ours[:n] - theirs) ** 2).mean(axis=1))
    rel = np.linalg.norm(ours[:n] - theirs, axis=1) / np.linalg.norm(ours[:n], axis=1)
    cos = (ours[:n] * theirs).sum(1) / np.linalg.norm(ours[:n], axis=1) / np.linalg.norm(
        theirs, axis=1)
    r.worst_rel, r.worst_cos = float(rel.max()), float(cos.min())
    r.positions = n
    r.argmax_equal = int((ours[:n].argmax(1) == theirs.argmax(1)).sum())
    if r.worst_rel > max_rel:
        p = int(rel.argmax())
        r.bad.append(f"the logits at position {p} differ by {rel[p]:.3f} (relative RMS), "
                     f"more than {max_rel}")
    # llama.cpp's greedy token g at step s was chosen from the logits after seq[n - 1 + s]
    scale = float(rms.max())
    r.greedy = len(run.greedy)
    for s, g in enumerate(run.greedy):
        row = ours[n - 1 + s]
        gap = float(row.max() - row[g])
        if gap == 0.0:
            r.greedy_equal += 1
            continue
        allowed = tie_rms * scale
        r.ties.append((s, gap, allowed))
        if gap > allowed:
            r.bad.append(f"greedy step {s}: llama.cpp chose token {g}, {gap:.3f} below "
                         f"Tritium's best {int(row.argmax())} (a near-tie is within "
                         f"{allowed:.3f})")
    return r


def tiny_checkpoint(d: Path, act: str = "silu") -> Path:
    """benchmarks/llm.py's `tiny` BitNet model (SiLU gating: what llama.cpp computes)."""
    import llm
    return llm.write_hf_checkpoint(d, llm.SIZES["tiny"], seed=0, act=act)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--type", choices=("tq2_0", "tq1_0"), default="tq2_0")
    ap.add_argument("--tokens", type=int, default=24, help="greedy tokens per prompt")
    ap.add_argument("--jobs", type=int, default=None, help="build jobs (default: all cores)")
    ap.add_argument("--program", default=None, help="an existing llama_logits binary")
    ap.add_argument("--build-only", action="store_true",
                    help="build (or find) llama_logits, print its path and exit")
    args = ap.parse_args()
    if not 1 <= args.tokens <= 4096:
        ap.error("--tokens must be in 1..4096")
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    try:
        exe = (Path(args.program) if args.program
               else _llama_check.ensure_llama_check(jobs=args.jobs, log=log))
    except _ggml.PeerUnavailable as exc:
        print(f"gguf_parity.py: llama.cpp is not available here: {exc}", file=sys.stderr)
        return 2
    if args.build_only:
        print(exe)
        return 0

    from tritium.driver.gguf_export import export_gguf
    from tritium.driver.hf_import import import_hf
    from tritium.driver.models import model_from_checkpoint

    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ckpt = import_hf(tiny_checkpoint(d / "hf"), d / "model.safetensors")["checkpoint"]
        gguf = Path(export_gguf(ckpt, d / "model.gguf", args.type)["output"])
        model, _ = model_from_checkpoint(ckpt)
        model.eval()
        for prompt in PROMPTS:
            run = _llama_check.run_llama_logits(exe, gguf, prompt, args.tokens)
            r = compare(model, list(prompt.encode()), run, prompt)
            failed += not r.ok
            print(r.summary())
    print(f"{args.type.upper()}: {len(PROMPTS) - failed}/{len(PROMPTS)} prompts agree")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
