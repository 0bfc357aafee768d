"""Greedy tokens of llama.cpp on a GGUF file `tritium export --format gguf` wrote, against
Tritium's own greedy decode of the same checkpoint (not part of `make test`).

    python benchmarks/gguf_parity.py [--type tq2_0|tq1_0] [--tokens 24] [--llama-simple PATH]

Builds llama.cpp's `llama-simple` example from the pinned llama-cpp-python source
distribution (the one benchmarks/_ggml.py uses; downloaded with pip when absent, SHA-256
checked), once, under ``<cache root>/peers/llama-simple-<version>-<key>``. Then it makes a
tiny random BitNet checkpoint in the Hugging Face layout (vocabulary 256, so every token is
a byte; hidden 256, MLP 512, 2 layers, 4 heads, 2 k/v heads; SiLU gating, the MLP that
llama.cpp's bitnet graph computes), imports it with `tritium import hf`, exports it to
GGUF, and runs both greedy decoders on a few prompts, printing the tokens and how many
agree.

The two are not the same arithmetic: llama.cpp quantizes activations per 256-value block
(q8_K) where Tritium quantizes per token, keeps the output head (the tied embeddings) in
f16, and sums in another order, so on a random model whose top two logits are close a
token can differ; the first position where they part is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import _ggml  # noqa: E402

PROMPTS = ["def main(", "Hello, world", "import os\n"]
CMAKE = (("CMAKE_BUILD_TYPE", "Release"), ("LLAMA_CURL", "OFF"), ("GGML_NATIVE", "ON"),
         ("LLAMA_BUILD_TESTS", "OFF"), ("LLAMA_BUILD_SERVER", "OFF"),
         ("LLAMA_BUILD_EXAMPLES", "ON"), ("LLAMA_BUILD_TOOLS", "OFF"),
         ("BUILD_SHARED_LIBS", "OFF"), ("GGML_OPENMP", "OFF"))


def ensure_llama_simple(jobs: int) -> Path:
    """The cached `llama-simple` binary, built when absent."""
    from tritium.backends.cpu import isa

    cache = _ggml.peers_cache()
    key = _ggml.build_key(_ggml.LLAMA_CPP_PYTHON_VERSION, isa.cpu_flags(), CMAKE)
    build = cache / f"llama-simple-{key.partition('-')[2]}"
    exe = build / "bin" / "llama-simple"
    if exe.is_file():
        return exe
    sdist = _ggml.ensure_sdist(cache)
    cmake, _, _, ninja = _ggml._tools()
    src = Path(tempfile.mkdtemp(prefix="llama-src-", dir=cache))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            prefix = f"llama_cpp_python-{_ggml.LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)
                       and (m.isfile() or m.isdir()) and ".." not in Path(m.name).parts]
            tar.extractall(src, members=members, filter="data")
        root = src / prefix
        work = build.with_name(build.name + ".work")
        cfg = [cmake, "-S", str(root), "-B", str(work)] + (["-G", "Ninja"] if ninja else []) \
            + [f"-D{k}={v}" for k, v in CMAKE]
        print("building llama-simple (once; minutes):", " ".join(cfg[3:]), file=sys.stderr)
        subprocess.run(cfg, check=True, capture_output=True)
        subprocess.run([cmake, "--build", str(work), "--target", "llama-simple", "-j",
                        str(jobs)], check=True)
        (build / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / "bin" / "llama-simple", exe)
        (build / "build.json").write_text(json.dumps({"cmake": dict(CMAKE)}))
        shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return exe


def tiny_checkpoint(d: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    h, f, v, layers = 256, 512, 256, 2
    t = {"model.embed_tokens.weight": torch.randn(v, h, generator=g) * 0.05,
         "model.norm.weight": 1 + 0.1 * torch.randn(h, generator=g)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for n, size in (("input_layernorm", h), ("post_attention_layernorm", h),
                        ("self_attn.attn_sub_norm", h), ("mlp.ffn_sub_norm", f)):
            t[p + n + ".weight"] = 1 + 0.1 * torch.randn(size, generator=g)
        for n, shape in (("self_attn.q_proj", (h, h)), ("self_attn.k_proj", (h // 2, h)),
                         ("self_attn.v_proj", (h // 2, h)), ("self_attn.o_proj", (h, h)),
                         ("mlp.gate_proj", (f, h)), ("mlp.up_proj", (f, h)),
                         ("mlp.down_proj", (h, f))):
            t[p + n + ".weight"] = torch.randn(shape, generator=g) * 0.05
    d.mkdir(parents=True, exist_ok=True)
    save_file(t, str(d / "model.safetensors"))
    conf = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "vocab_size": v,
            "hidden_size": h, "intermediate_size": f, "num_hidden_layers": layers,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
            "hidden_act": "silu", "max_position_embeddings": 512, "rope_theta": 10000.0,
            "tie_word_embeddings": True}
    (d / "config.json").write_text(json.dumps(conf))
    return d


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
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--llama-simple", default=None, help="an existing llama-simple binary")
    args = ap.parse_args()

    from tritium.driver.gguf_export import export_gguf
    from tritium.driver.hf_import import import_hf
    from tritium.driver.models import model_from_checkpoint

    exe = Path(args.llama_simple) if args.llama_simple else ensure_llama_simple(args.jobs)
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
