"""benchmarks/llm.py (BitNet b1.58 end to end) on its `tiny` size: arguments, the memory plan,
the model-building path (a Hugging Face checkpoint written here, which transformers' own
BitNetForCausalLM loads, imported with `tritium import hf` and exported to GGUF: every
implementation holds the same ternary weights), the reading of llama-bench's JSON output (a
sample recorded from the pinned llama.cpp build), the printed table's shape, that Tritium's
model and its PyTorch fp32 twin choose the same greedy tokens (the same trits and the same
int8 activation quantization: they differ only in float rounding, which on this model and
seed changes no argmax; bf16 may, so it is not compared), and the check of cached against
uncached decode. llama.cpp itself runs only when its build is already cached (it is never
built here)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--sizes", "tiny", "--rounds", "1", "--threads", "1", "--prompt-len", "12",
        "--gen-len", "10", "--skip-llama"]
TORCH_IMPLS = ["tritium", "torch-fp32", "torch-bf16"]

# `llama-bench -m tiny-tq2_0.gguf -t 1 -r 1 -o json -p 0 -n 10 -d 12` of the pinned build
# (llama-cpp-python 0.3.36) on benchmarks/llm.py's `tiny` model, as it printed it
LLAMA_BENCH_SAMPLE = """\
[
  {
    "build_commit": "unknown",
    "build_number": 0,
    "cpu_info": "Intel(R) Xeon(R) Processor",
    "gpu_info": "",
    "backends": "CPU",
    "model_filename": "model-tq2_0.gguf",
    "model_type": "bitnet ?B TQ2_0 - 2.06 bpw ternary",
    "model_size": 446520,
    "model_n_params": 1248014,
    "n_batch": 2048,
    "n_ubatch": 512,
    "n_threads": 1,
    "cpu_mask": "0x0",
    "cpu_strict": false,
    "poll": 50,
    "type_k": "f16",
    "type_v": "f16",
    "n_gpu_layers": -1,
    "n_cpu_moe": 0,
    "split_mode": "layer",
    "main_gpu": 0,
    "no_kv_offload": false,
    "flash_attn": -1,
    "devices": "auto",
    "tensor_split": "0.00",
    "tensor_buft_overrides": "none",
    "load_mode": "auto",
    "lazy_mode": "auto",
    "embeddings": false,
    "no_op_offload": 0,
    "no_host": false,
    "repack": true,
    "fit_target": 0,
    "fit_min_ctx": 0,
    "n_prompt": 0,
    "n_gen": 10,
    "n_depth": 12,
    "test_time": "2026-12-05T06:19:34Z",
    "avg_ns": 852297,
    "stddev_ns": 0,
    "avg_ts": 11732.999178,
    "stddev_ts": 0.000000,
    "samples_ns": [ 852297 ],
    "samples_ts": [ 11733 ]
  }
]
"""


@pytest.fixture(scope="module")
def llm(benchmark_module):
    return benchmark_module("llm")


@pytest.fixture(scope="module")
def tiny(llm, tmp_path_factory):
    """The `tiny` model prepared as the benchmark prepares it (GGUF files when the gguf
    package is there)."""
    import importlib.util
    qtypes = ["tq2_0", "tq1_0"] if importlib.util.find_spec("gguf") else []
    work = tmp_path_factory.mktemp("llm-tiny")
    return llm.prepare(llm.SIZES["tiny"], 0, str(work), qtypes)


def test_defaults_and_options(llm, tmp_path):
    args = llm.parse_args([])
    assert args.sizes == ["125m", "0.7b"] and args.prompt_len == 128 and args.gen_len == 128
    assert args.threads[0] == 1 and not args.skip_llama and args.llama_bench is None
    assert args.impls == TORCH_IMPLS + ["llama-tq2_0", "llama-tq1_0"]
    args = llm.parse_args(["--sizes", "tiny,2b", "--threads", "1,2", "--rounds", "2",
                           "--skip-llama", "--impls", "tritium,llama-tq1_0"])
    assert args.sizes == ["tiny", "2b"] and args.threads == [1, 2] and args.rounds == 2
    assert args.skip_llama and args.impls == ["tritium", "llama-tq1_0"]


@pytest.mark.parametrize("argv, needle", [
    (["--sizes", "7b"], "unknown size 7b"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--impls", "onnx"], "unknown onnx"),
    (["--llama-bench", "/nonexistent/llama-bench"], "is not an executable file"),
])
def test_bad_options_are_clear(llm, capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        llm.parse_args(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_sizes_are_the_issue_shapes(llm):
    large, big = llm.SIZES["0.7b"], llm.SIZES["2b"]
    assert (large.dim, large.layers, large.ffn) == (1536, 24, 4096)
    assert (big.dim, big.layers, big.ffn, big.heads, big.kv, big.vocab) == \
        (2560, 30, 6912, 20, 5, 128256)
    ternary, full = llm.SIZES["125m"].params()
    assert 100e6 < ternary + full < 140e6
    ternary, full = big.params()
    assert 2.3e9 < ternary + full < 2.5e9        # BitNet b1.58 2B4T: 2.4B with its head tied
    for size in llm.SIZES.values():              # TQ1_0/TQ2_0 quantize rows of 256
        assert size.dim % 256 == 0 and size.ffn % 256 == 0


def test_memory_plan_skips_what_does_not_fit(llm):
    ctx = 257
    chosen, skipped = llm.plan_memory(list(llm.IMPLS), llm.SIZES["2b"], ctx, 17 << 30)
    assert "torch-fp32" in skipped and "tritium" in chosen and "llama-tq2_0" in chosen
    assert "GiB available" in skipped["torch-fp32"]
    chosen, skipped = llm.plan_memory(list(llm.IMPLS), llm.SIZES["tiny"], ctx, 17 << 30)
    assert chosen == list(llm.IMPLS) and not skipped
    chosen, skipped = llm.plan_memory(list(llm.IMPLS), llm.SIZES["125m"], ctx, 1 << 20)
    assert not chosen and set(skipped) == set(llm.IMPLS)
    assert skipped["tritium"].startswith("preparing the model needs")


def test_memory_plan_runs_llama_bench_beside_what_is_held(llm, monkeypatch):
    """A llama-bench process runs while the Tritium and PyTorch processes stay resident."""
    gib = 1 << 30
    needs = {"tritium": (2 * gib, 8 * gib), "torch-fp32": (3 * gib, 3 * gib),
             "llama-tq2_0": (3 * gib, 3 * gib), "llama-tq1_0": (1 * gib, 1 * gib)}
    monkeypatch.setattr(llm, "memory_need", lambda impl, size, ctx: needs[impl])
    monkeypatch.setattr(llm, "prepare_need", lambda size: gib)
    avail = int(12.5 * gib / 0.9)
    chosen, skipped = llm.plan_memory(list(needs), llm.SIZES["tiny"], 257, avail)
    # 8 held by tritium + 3 by torch-fp32 = 11 of 12.5; then llama: 11 + 3 > 12.5, 11 + 1 fits
    assert chosen == ["tritium", "torch-fp32", "llama-tq1_0"]
    assert skipped["llama-tq2_0"].startswith("needs ~3.0 GiB beside 11.0 GiB held")


def test_hf_checkpoint_is_seeded_and_loads_in_transformers(llm, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    size = llm.SIZES["tiny"]
    a = llm.write_hf_checkpoint(tmp_path / "a", size, seed=3)
    b = llm.write_hf_checkpoint(tmp_path / "b", size, seed=3)
    c = llm.write_hf_checkpoint(tmp_path / "c", size, seed=4)
    index = json.loads((a / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) == size.layers + 1
    name = "model.layers.1.mlp.up_proj.weight"
    shard = index["weight_map"][name]
    wa, wb, wc = (load_file(str(d / shard))[name] for d in (a, b, c))
    assert wa.dtype == torch.bfloat16 and tuple(wa.shape) == (size.ffn, size.dim)
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    # no benchmark script may pass for a package transformers looks for (benchmarks/kernels.py
    # once did for `kernels`: now benchmarks/ternary_kernels.py)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(ROOT / "benchmarks")])
    transformers = pytest.importorskip("transformers")
    model, info = transformers.BitNetForCausalLM.from_pretrained(
        str(a), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_key_value_heads, cfg.hidden_act) == (256, 2, "relu2")
    assert cfg.tie_word_embeddings
    got = model.state_dict()[name]
    assert torch.equal(got.to(torch.bfloat16), wa)


def test_every_implementation_holds_the_same_ternary_weights(llm, tiny):
    """The imported checkpoint (Tritium), its PyTorch twins and the GGUF files hold the same
    trits x scale in every projection."""
    torch = pytest.importorskip("torch")
    model = llm.tritium_model(tiny["checkpoint"])
    layer = model.layers[1].gate_proj
    q = layer.ternary_weight()
    ref = (q.trits.to(torch.float32) * q.scale.reshape(-1, 1)).contiguous()
    assert set(q.trits.unique().tolist()) == {-1, 0, 1}
    fp32 = llm.to_torch_twin(llm.tritium_model(tiny["checkpoint"]), "fp32")
    assert torch.equal(fp32.layers[1].gate_proj.weight, ref)
    assert fp32.layers[1].gate_proj.act_quant
    bf16 = llm.to_torch_twin(llm.tritium_model(tiny["checkpoint"]), "bf16")
    assert bf16.layers[1].gate_proj.weight.dtype == torch.bfloat16
    assert torch.equal(bf16.layers[1].gate_proj.weight.float(),
                       ref.to(torch.bfloat16).float())
    if not tiny["gguf"]:
        pytest.skip("no gguf package: no GGUF export")
    gguf = pytest.importorskip("gguf")
    assert set(tiny["gguf"]) == {"tq2_0", "tq1_0"} and tiny["export_error"] is None
    for qtype, path in tiny["gguf"].items():
        reader = gguf.GGUFReader(path)
        tensors = {t.name: t for t in reader.tensors}
        w = tensors["blk.1.ffn_gate.weight"]
        assert w.tensor_type.name == qtype.upper()
        scale = float(tensors["blk.1.ffn_gate.scale"].data[0])
        dense = gguf.quants.dequantize(w.data, w.tensor_type).reshape(ref.shape) * scale
        assert torch.equal(torch.from_numpy(dense.astype("float32")), ref)


def test_parse_llama_bench_sample(llm):
    tests = llm.parse_llama_bench(LLAMA_BENCH_SAMPLE)
    assert len(tests) == 1
    t = tests[0]
    assert (t["n_prompt"], t["n_gen"], t["n_depth"], t["threads"]) == (0, 10, 12, 1)
    assert t["tokens_per_s"] > 0 and len(t["samples"]) == 1
    assert t["tokens_per_s"] == pytest.approx(t["samples"][0])
    assert t["model_type"] == "bitnet ?B TQ2_0 - 2.06 bpw ternary"
    assert t["model_size"] == 446520 and t["type_k"] == "f16"


@pytest.mark.parametrize("text, needle", [
    ("llama-bench: error: failed to load model", "did not print JSON"),
    ("[]", "printed no test"),
    ('[{"n_prompt": 128}]', "lacks"),
])
def test_parse_llama_bench_refuses_bad_output(llm, text, needle):
    with pytest.raises(ValueError, match=needle):
        llm.parse_llama_bench(text)


def test_run_measured_reports_the_childs_own_peak(llm):
    code, out, err, peak = llm.run_measured(
        [sys.executable, "-c", "b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096]); "
                               "print('done')"], timeout=120)
    assert code == 0 and out.strip() == "done"
    assert peak > 96 << 20
    code, _, _, _ = llm.run_measured([sys.executable, "-c", "raise SystemExit(3)"], 120)
    assert code == 3


def _table(out: str) -> list[list[str]]:
    table = out[out.index("size  impl"):].strip().splitlines()
    assert table[0].split() == ["size", "impl", "threads", "prefill", "tok/s", "decode",
                                "tok/s", "peak", "RSS", "MiB", "prefill/fp32", "decode/fp32",
                                "prefill/TQ2_0", "decode/TQ2_0", "prefill/TQ1_0",
                                "decode/TQ1_0"]
    return [line.split() for line in table[2:]]


def test_tiny_end_to_end(llm, capsys):
    assert llm.main(TINY) == 0
    out = capsys.readouterr().out
    assert "# CPU: " in out and "llama.cpp skipped: --skip-llama" in out
    assert "what differs" in out and "SiLU" in out
    for impl in TORCH_IMPLS:
        assert f"{impl}: cached decode against an uncached forward, 11 greedy tokens" in out
    assert "tritium: cached decode against an uncached forward, 11 greedy tokens: the same" \
        in out
    rows = _table(out)
    assert [r[1] for r in rows] == TORCH_IMPLS and all(len(r) == 12 for r in rows)
    for r in rows:
        assert r[0] == "tiny" and r[2] == "1"
        assert float(r[3]) > 0 and float(r[4]) > 0 and int(r[5]) > 0
        assert re.fullmatch(r"\d+\.\d\dx", r[6]) and re.fullmatch(r"\d+\.\d\dx", r[7])
        assert r[8:] == ["-"] * 4                   # no llama.cpp row to compare with
    assert rows[1][6:8] == ["1.00x", "1.00x"]      # torch-fp32 against itself


def test_tiny_t1_6_import_chooses_the_same_tokens(llm, capsys):
    assert llm.main(TINY + ["--impls", "tritium,tritium-t1.6"]) == 0
    out = capsys.readouterr().out
    assert "tritium-t1.6: the same 11 greedy tokens as tritium (t2)" in out
    rows = _table(out)
    assert [r[1] for r in rows] == ["tritium", "tritium-t1.6"]


def test_a_t1_6_run_that_chose_other_tokens_fails_the_benchmark(llm, capsys, monkeypatch):
    real = llm.Worker.run

    def run(self, *args, **kwargs):    # t1.6's tokens made to differ
        r = real(self, *args, **kwargs)
        if self.impl == "tritium-t1.6":
            r["tokens"] = [t + 1 for t in r["tokens"]]
        return r
    monkeypatch.setattr(llm.Worker, "run", run)
    assert llm.main(TINY + ["--impls", "tritium,tritium-t1.6"]) == 1
    out = capsys.readouterr().out
    assert "tritium-t1.6: DIFFERENT 11 greedy tokens as tritium (t2)" in out
    assert "FAILED: tiny tritium-t1.6: other tokens than tritium (t2) from the same trits" in out


def test_prepare_imports_each_format_asked_for(llm, tmp_path):
    from tritium.driver.models import model_from_checkpoint
    from tritium.runtime import TernaryLinear
    prep = llm.prepare(llm.SIZES["tiny"], 0, str(tmp_path), [], ("t2", "t1.6"))
    assert set(prep["checkpoints"]) == {"t2", "t1.6"}
    assert prep["checkpoint"] == prep["checkpoints"]["t2"]
    for fmt, path in prep["checkpoints"].items():
        model, info = model_from_checkpoint(path)
        assert info.format == fmt
        assert {m.format for m in model.modules() if isinstance(m, TernaryLinear)} == {fmt}
    assert not (tmp_path / "hf").exists()


def _started_cache_root() -> Path:
    """The cache root the suite was started with: tests/conftest.py gives each test a private
    root whose `kernels` links to that root's kernels."""
    from tritium import cachedir
    link = cachedir.cache_root() / "kernels"
    return link.resolve().parent if link.is_symlink() else cachedir.cache_root()


def test_tiny_with_llama_cpp_when_its_build_is_cached(llm, capsys):
    import _ggml
    bindir = _ggml.cached_llama_tools(_started_cache_root() / "peers")
    if bindir is None:
        pytest.skip("llama.cpp is not built here (benchmarks/llm.py builds it; tests never do)")
    pytest.importorskip("gguf")
    argv = [a for a in TINY if a != "--skip-llama"] + [
        "--impls", "torch-fp32,llama-tq2_0,llama-tq1_0", "--llama-bench",
        str(bindir / "llama-bench")]
    assert llm.main(argv) == 0
    out = capsys.readouterr().out
    assert "llama.cpp skipped" not in out
    assert re.search(r"llama-tq2_0: llama-bench ran model 'bitnet .*TQ2_0.*' \(0\.4 MiB\), "
                     r"KV cache f16", out)
    rows = {r[1]: r for r in _table(out)}
    assert set(rows) == {"torch-fp32", "llama-tq2_0", "llama-tq1_0"}
    for r in rows.values():
        assert float(r[3]) > 0 and float(r[4]) > 0 and int(r[5]) > 0
    assert rows["llama-tq2_0"][8:10] == ["1.00x", "1.00x"]
    assert rows["llama-tq1_0"][10:12] == ["1.00x", "1.00x"]
    assert re.fullmatch(r"\d+\.\d\dx", rows["llama-tq1_0"][6])
    assert re.fullmatch(r"\d+\.\d\dx", rows["torch-fp32"][11])


def test_tritium_and_fp32_twin_choose_the_same_tokens(llm):
    args = llm.parse_args(TINY + ["--impls", "tritium,torch-fp32", "--gen-len", "24"])
    rows = {r["impl"]: r for r in llm.bench_size("tiny", args, log=lambda s: None)}
    assert rows["tritium"]["cache"] and rows["torch-fp32"]["cache"]
    assert rows["tritium"]["uncached_agrees"] and rows["torch-fp32"]["uncached_agrees"]
    assert len(rows["tritium"]["tokens"]) == 25
    assert rows["tritium"]["tokens"] == rows["torch-fp32"]["tokens"]


def test_verify_flags_a_wrong_token(llm, tiny):
    """The cache check itself: a sequence whose continuation is the uncached argmax passes; a
    token far below it (the lowest logit) fails."""
    import torch

    model = llm.tritium_model(tiny["checkpoint"])
    seq = [1, 2, 3]
    with torch.no_grad():
        for _ in range(4):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    good = llm.verify(model, seq, 3)
    assert good["agrees"] and good["flips"] == 0
    with torch.no_grad():
        worst = int(model(torch.tensor([seq[:-1]]))[0, -1].argmin())
    bad = llm.verify(model, seq[:-1] + [worst], 3)
    assert bad["flips"] == 1 and not bad["agrees"] and bad["worst"] > llm.CACHE_TOLERANCE


# ----------------------------------------------------------------------------- the llama.cpp build

@pytest.fixture()
def ggml(llm):
    return importlib.import_module("_ggml")


def test_llama_build_key_covers_the_cpu_options_and_programs(ggml):
    flags = ["sse4_2", "avx2", "fma"]
    key = ggml.llama_key(flags, machine="x86_64")
    assert re.fullmatch(r"llama-0\.3\.36-[0-9a-f]{16}", key)
    assert ggml.llama_key(["fma", "avx2", "sse4_2", "ht"], machine="x86_64") == key
    assert ggml.llama_key(flags + ["avx512f"], machine="x86_64") != key
    assert ggml.llama_key(flags, machine="aarch64") != key
    opts = dict(ggml.LLAMA_CMAKE_OPTIONS)
    assert opts["BUILD_SHARED_LIBS"] == "OFF" and opts["GGML_NATIVE"] == "ON"
    assert opts["LLAMA_CURL"] == opts["LLAMA_OPENSSL"] == opts["LLAMA_USE_PREBUILT_UI"] == "OFF"
    # the ggml options the peers build uses, bar shared libraries
    assert {k: v for k, v in ggml.CMAKE_OPTIONS if k != "BUILD_SHARED_LIBS"}.items() <= \
        opts.items()


def _fake_llama_build(ggml, cache: Path) -> Path:
    final = cache / ggml.llama_key()
    (final / "bin").mkdir(parents=True)
    for tool in ggml.LLAMA_TOOLS:
        (final / "bin" / tool).write_bytes(b"")
        (final / "bin" / tool).chmod(0o755)
    (final / "build.json").write_text(json.dumps({"ok": True}))
    return final


def test_a_cached_llama_build_needs_no_tools_and_no_download(ggml, tmp_path, monkeypatch):
    assert ggml.cached_llama_tools(tmp_path) is None
    final = _fake_llama_build(ggml, tmp_path)

    def no(*a, **k):
        raise AssertionError("must not build or download")

    monkeypatch.setattr(ggml, "_tools", no)
    monkeypatch.setattr(ggml, "ensure_sdist", no)
    assert ggml.cached_llama_tools(tmp_path) == final / "bin"
    assert ggml.ensure_llama_tools(tmp_path) == final / "bin"


def test_an_unfinished_llama_build_is_not_reused(ggml, tmp_path, monkeypatch):
    final = _fake_llama_build(ggml, tmp_path)
    (final / "bin" / "llama-bench").unlink()
    assert ggml.cached_llama_tools(tmp_path) is None
    monkeypatch.setattr(ggml.shutil, "which", lambda name, path=None: None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ggml.PeerUnavailable, match="cmake"):
        ggml.ensure_llama_tools(tmp_path)


def test_no_llama_cpp_is_a_skip_with_the_reason(llm, ggml, monkeypatch, capsys):
    """Without the sdist (no network) llama.cpp is skipped, saying why; the rest runs."""
    def unavailable(*a, **k):
        raise ggml.PeerUnavailable("could not download the llama-cpp-python source "
                                   "distribution (no network, or PyPI unreachable?)")

    monkeypatch.setattr(ggml, "ensure_llama_tools", unavailable)
    args = llm.parse_args(["--sizes", "tiny"])
    exe, why = llm.find_llama_bench(args, log=lambda s: None)
    if why is not None and "gguf" in why:
        pytest.skip("no gguf package")
    assert exe is None and "could not download" in why
    args = llm.parse_args(["--sizes", "tiny", "--impls", "tritium"])
    assert llm.find_llama_bench(args)[1] == "no llama-* implementation in --impls"
