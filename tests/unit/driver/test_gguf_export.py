"""`tritium export --format gguf`: a tiny imported BitNet model written as GGUF and read back
with the gguf package's own reader: every tensor's name, shape, type and values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

from safetensors.torch import save_file  # noqa: E402

from tritium.driver.evaluate import ExportError  # noqa: E402
from tritium.driver.gguf_export import NEVER_MERGE, byte_tokens, export_gguf  # noqa: E402
from tritium.driver.hf_import import import_hf  # noqa: E402
from tritium.driver.models import model_from_checkpoint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ckpt_edit import with_metadata as _edit_metadata  # noqa: E402

SRC = str(Path(__file__).resolve().parents[3] / "src")
H, F, V, L = 256, 512, 300, 2


def _hf_dir(d: Path, *, tie: bool = True, act: str = "silu", hidden: int = H) -> Path:
    """A BitNetForCausalLM checkpoint as save_pretrained writes it (float weights, online
    BitNet quantization), made by hand: 4 heads, 2 k/v heads."""
    g = torch.Generator().manual_seed(0)
    hd = hidden // 4
    t = {"model.embed_tokens.weight": torch.randn(V, hidden, generator=g) * 0.02,
         "model.norm.weight": 1 + 0.1 * torch.randn(hidden, generator=g)}
    if not tie:
        t["lm_head.weight"] = torch.randn(V, hidden, generator=g) * 0.02
    for i in range(L):
        p = f"model.layers.{i}."
        for n, size in (("input_layernorm", hidden), ("post_attention_layernorm", hidden),
                        ("self_attn.attn_sub_norm", hidden), ("mlp.ffn_sub_norm", F)):
            t[p + n + ".weight"] = 1 + 0.1 * torch.randn(size, generator=g)
        for n, shape in (("self_attn.q_proj", (hidden, hidden)),
                         ("self_attn.k_proj", (2 * hd, hidden)),
                         ("self_attn.v_proj", (2 * hd, hidden)),
                         ("self_attn.o_proj", (hidden, hidden)),
                         ("mlp.gate_proj", (F, hidden)), ("mlp.up_proj", (F, hidden)),
                         ("mlp.down_proj", (hidden, F))):
            t[p + n + ".weight"] = torch.randn(shape, generator=g) * 0.02
    d.mkdir(parents=True)
    save_file(t, str(d / "model.safetensors"))
    conf = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
            "vocab_size": V, "hidden_size": hidden, "intermediate_size": F,
            "num_hidden_layers": L, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "hidden_act": act, "max_position_embeddings": 512,
            "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
            "tie_word_embeddings": tie, "bos_token_id": 1, "eos_token_id": 2,
            "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                    "quantization_mode": "online"}}
    (d / "config.json").write_text(json.dumps(conf))
    return d


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gguf")
    return Path(import_hf(_hf_dir(root / "hf"), root / "model.safetensors")["checkpoint"])


def _field(reader, key: str):
    f = reader.fields[key]
    return f.contents()


@pytest.mark.parametrize("qtype", ["tq2_0", "tq1_0"])
def test_every_tensor_and_key_reads_back(ckpt, tmp_path, qtype):
    out = tmp_path / f"m-{qtype}.gguf"
    r = export_gguf(ckpt, out, qtype)
    assert r["output"] == str(out) and r["notes"] == []
    reader = gguf.GGUFReader(str(out))
    assert _field(reader, "general.architecture") == "bitnet"
    assert _field(reader, "bitnet.block_count") == L
    assert _field(reader, "bitnet.embedding_length") == H
    assert _field(reader, "bitnet.feed_forward_length") == F
    assert _field(reader, "bitnet.attention.head_count") == 4
    assert _field(reader, "bitnet.attention.head_count_kv") == 2
    assert _field(reader, "bitnet.rope.freq_base") == pytest.approx(500000.0)
    assert _field(reader, "bitnet.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert _field(reader, "bitnet.context_length") == 512
    ftype = gguf.LlamaFileType.MOSTLY_TQ2_0 if qtype == "tq2_0" \
        else gguf.LlamaFileType.MOSTLY_TQ1_0
    assert _field(reader, "general.file_type") == ftype
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == V and tokens[:256] == byte_tokens()
    assert len(set(tokens)) == V
    assert _field(reader, "tokenizer.ggml.merges") == [NEVER_MERGE]
    assert _field(reader, "tokenizer.ggml.bos_token_id") == 1

    model, _ = model_from_checkpoint(ckpt)
    st = model.state_dict()
    q = gguf.GGMLQuantizationType.TQ2_0 if qtype == "tq2_0" else gguf.GGMLQuantizationType.TQ1_0
    by_name = {t.name: t for t in reader.tensors}
    names = {"token_embd.weight", "output_norm.weight"}
    emb = st["embed_tokens.weight"].detach().numpy()
    t = by_name["token_embd.weight"]
    assert t.tensor_type == gguf.GGMLQuantizationType.F16
    assert list(t.shape) == [H, V]                 # ggml order: ne0 = the row length
    assert np.array_equal(np.asarray(t.data), emb.astype(np.float16))
    t = by_name["output_norm.weight"]
    assert t.tensor_type == gguf.GGMLQuantizationType.F32
    assert np.array_equal(np.asarray(t.data), st["norm.weight"].detach().numpy())
    for i in range(L):
        block = model.layers[i]
        for ours, theirs in (("input_layernorm", "attn_norm"),
                             ("attn_sub_norm", "attn_sub_norm"),
                             ("post_attention_layernorm", "ffn_norm"),
                             ("ffn_sub_norm", "ffn_sub_norm")):
            t = by_name[f"blk.{i}.{theirs}.weight"]
            names.add(t.name)
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            assert np.array_equal(np.asarray(t.data), getattr(block, ours).weight.detach().numpy())
        for ours, theirs in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"),
                             ("o_proj", "attn_output"), ("gate_proj", "ffn_gate"),
                             ("up_proj", "ffn_up"), ("down_proj", "ffn_down")):
            layer = getattr(block, ours)
            tw = layer.ternary_weight()
            t = by_name[f"blk.{i}.{theirs}.weight"]
            s = by_name[f"blk.{i}.{theirs}.scale"]
            names |= {t.name, s.name}
            assert t.tensor_type == q and s.tensor_type == gguf.GGMLQuantizationType.F32
            assert list(t.shape) == [layer.in_features, layer.out_features]
            deq = gguf.quants.dequantize(np.asarray(t.data), q)
            assert deq.shape == (layer.out_features, layer.in_features)
            trits = tw.trits.numpy().astype(np.float32)
            assert np.array_equal(deq, trits)                   # d = 1: exactly the trits
            scale = np.asarray(s.data).reshape(-1)
            assert scale.shape == (1,)
            assert np.array_equal(deq * scale[0],
                                  trits * tw.scale.detach().numpy().reshape(-1)[0])
    assert names == set(by_name)


def test_relu2_models_export_with_a_note(tmp_path):
    c = import_hf(_hf_dir(tmp_path / "hf", act="relu2"), tmp_path / "m.safetensors")
    r = export_gguf(c["checkpoint"], None, "tq1_0")
    assert r["output"] == str(tmp_path / "m.gguf")
    assert any("SiLU" in n for n in r["notes"])


def test_what_llama_cpp_cannot_hold_is_refused(tmp_path):
    c = import_hf(_hf_dir(tmp_path / "untied", tie=False), tmp_path / "u.safetensors")
    with pytest.raises(ExportError, match="not tied"):
        export_gguf(c["checkpoint"], tmp_path / "u.gguf")
    c = import_hf(_hf_dir(tmp_path / "small", hidden=128), tmp_path / "s.safetensors")
    with pytest.raises(ExportError, match="not a multiple of 256"):
        export_gguf(c["checkpoint"], tmp_path / "s.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*.tmp"))


def test_embeddings_beyond_float16_are_written_in_float32(tmp_path):
    # an embedding value past 65504 became inf in the f16 token_embd (numpy's cast only
    # warned) and llama.cpp read infinities
    from safetensors.torch import load_file
    d = _hf_dir(tmp_path / "hf")
    t = load_file(str(d / "model.safetensors"))
    t["model.embed_tokens.weight"][3, 5] = 1e5
    t["model.embed_tokens.weight"][7, 1] = -7e4
    save_file(t, str(d / "model.safetensors"))
    c = import_hf(d, tmp_path / "m.safetensors")
    r = export_gguf(c["checkpoint"], tmp_path / "m.gguf")
    assert any("f32" in n and "float16" in n for n in r["notes"])
    by_name = {t.name: t for t in gguf.GGUFReader(str(tmp_path / "m.gguf")).tensors}
    e = by_name["token_embd.weight"]
    assert e.tensor_type == gguf.GGMLQuantizationType.F32
    data = np.asarray(e.data).reshape(V, H)
    assert np.isfinite(data).all() and data[3, 5] == 1e5 and data[7, 1] == -7e4


def test_the_checkpoint_itself_is_not_overwritten(ckpt, tmp_path):
    # -o CKPT replaced the checkpoint with the GGUF file
    import shutil
    c = tmp_path / "c.safetensors"
    shutil.copy(ckpt, c)
    before = c.read_bytes()
    for out in (c, tmp_path / "." / "c.safetensors"):
        with pytest.raises(ExportError, match="is the checkpoint itself"):
            export_gguf(c, out)
    assert c.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "tritium", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"})


def test_cli(ckpt, tmp_path):
    p = _cli("export", str(ckpt), "--format", "gguf", "--type", "tq1_0", "-o", "x.gguf",
             cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "TQ1_0" in p.stdout and (tmp_path / "x.gguf").is_file()
    p = _cli("export", str(ckpt), "--format", "onnx", "--type", "tq1_0", "-o", "x.onnx",
             cwd=tmp_path)
    assert p.returncode == 2 and "--type applies to --format gguf" in p.stderr
    p = _cli("export", str(ckpt), "--format", "onnx", cwd=tmp_path)
    assert p.returncode == 2 and "-o is required" in p.stderr


def test_a_bpe_tokenizer_goes_into_the_gguf_vocabulary(tmp_path):
    """A model directory with a Llama-3-style tokenizer.json: `import hf` keeps it, and the
    GGUF file gets its tokens in id order (special tokens as control tokens, unused ids
    after them), its merges and llama.cpp's name of its pre-tokenizer."""
    pytest.importorskip("tokenizers")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from hf_tokenizers import SPECIALS, hf_tokenizer_json

    from tritium.data.tokenizer import tokenizer_from_json
    from tritium.runtime import read_checkpoint_metadata
    d = _hf_dir(tmp_path / "hf")
    blob = hf_tokenizer_json("llama3", vocab_size=280)
    (d / "tokenizer.json").write_text(json.dumps(blob))
    r = import_hf(d, tmp_path / "model.safetensors")
    assert r["tokenizer"].startswith("tokenizer.json: bpe (vocab 283, llama3")
    tok = tokenizer_from_json(json.loads(
        read_checkpoint_metadata(r["checkpoint"]).extra["tritium.tokenizer"]))
    out = export_gguf(r["checkpoint"], tmp_path / "m.gguf")
    assert "llama3" in out["tokenizer"]
    reader = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == V
    assert tokens[:tok.vocab_size] == [t for t, _ in tok.id_tokens()]
    assert tokens[tok.vocab_size:] == [f"<unused_{i}>" for i in range(tok.vocab_size, V)]
    types = _field(reader, "tokenizer.ggml.token_type")
    control = {tok.special[s] for s in SPECIALS}
    assert all((types[i] == gguf.TokenType.CONTROL) == (i in control) for i in range(tok.vocab_size))
    assert all(t == gguf.TokenType.UNUSED for t in types[tok.vocab_size:])
    merges = _field(reader, "tokenizer.ggml.merges")
    assert merges == [f"{a} {b}" for a, b in tok.merges] and len(merges) == 280 - 256
    assert _field(reader, "tokenizer.ggml.pre") == "llama-bpe"


def test_a_tokenizer_json_that_cannot_be_converted_falls_back_to_bytes(tmp_path):
    pytest.importorskip("tokenizers")
    d = _hf_dir(tmp_path / "hf")
    (d / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram", "vocab": []}}))
    r = import_hf(d, tmp_path / "model.safetensors")
    assert r["tokenizer"] == ("bytes (token id = byte; tokenizer.json not used: the model is "
                              "Unigram, not BPE)")
    out = export_gguf(r["checkpoint"], tmp_path / "m.gguf")
    assert out["tokenizer"] == "byte-level tokenizer"


@pytest.mark.parametrize("how, why", [
    ("too_many", "do not fit the model's vocabulary of 300"),
    ("dev_zero", "tokenizer"),
    ("deep", "not valid JSON"),
])
def test_a_tokenizer_json_that_does_not_fit_is_not_used(tmp_path, how, why):
    pytest.importorskip("tokenizers")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from hf_tokenizers import hf_tokenizer_json
    d = _hf_dir(tmp_path / "hf")
    path = d / "tokenizer.json"
    if how == "too_many":
        path.write_text(json.dumps(hf_tokenizer_json("gpt2", vocab_size=400)))
    elif how == "dev_zero":
        os.symlink("/dev/zero", path)
    else:
        path.write_text("[" * 100000)
    r = import_hf(d, tmp_path / "model.safetensors")
    assert r["tokenizer"].startswith("bytes (token id = byte; ") and why in r["tokenizer"]


@pytest.mark.parametrize("changes", [
    {"heads": 8, "head_dim": 32, "kv_heads": 4}, {"layers": L + 1}, {"vocab": V + 4},
    {"eps": 0.5}, {"rope_theta": 1.0}, {"act": "relu2"}])
def test_an_architecture_record_that_disagrees_with_the_program_is_refused(
        ckpt, tmp_path, changes):
    # the record was written into the GGUF file as is: 8 heads around 4-head tensors, an
    # IndexError traceback for one layer too many
    from tritium.runtime import read_checkpoint_metadata

    arch = json.loads(read_checkpoint_metadata(ckpt).extra["tritium.hf_arch"])
    assert all(arch[k] != v for k, v in changes.items())
    arch.update(changes)
    bad = _edit_metadata(ckpt, tmp_path / "edited.safetensors",
                         **{"tritium.hf_arch": json.dumps(arch)})
    with pytest.raises(ExportError, match="does not describe the model its stored program"):
        export_gguf(bad, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
    # the same record, untouched, still exports
    same = _edit_metadata(ckpt, tmp_path / "same.safetensors")
    assert export_gguf(same, tmp_path / "ok.gguf")["output"] == str(tmp_path / "ok.gguf")
