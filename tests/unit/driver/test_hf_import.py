"""`tritium import hf`: tiny randomly initialized transformers models (built here, never
downloaded) imported and compared with transformers' own forward."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("transformers") is None:   # not imported here: see REF
    pytest.skip("transformers is not installed", allow_module_level=True)

from safetensors.torch import load_file  # noqa: E402

from tritium.driver.hf_import import (  # noqa: E402
    HFImportError,
    absmean_hf,
    import_hf,
    read_hf_config,
    unpack_hf_trits,
)
from tritium.driver.models import model_from_checkpoint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_bitnet import conf as _conf  # noqa: E402
from tiny_bitnet import tensors as _tensors  # noqa: E402

SRC = str(Path(__file__).resolve().parents[3] / "src")
# transformers runs in a subprocess: its BitNet layers are @torch.compile'd, and loading
# torch._dynamo/Triton's compiler here would break the Triton interpreter tests that run
# later in the same pytest worker
REF = Path(__file__).resolve().parent / "data" / "hf_reference.py"
TINY = dict(vocab_size=300, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
INPUTS = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(3)).tolist()
PROMPT = [5, 17, 200, 3]


def _hf(tmp_path: Path, name: str = "hf", arch: str = "bitnet", **spec) -> tuple[Path, dict]:
    """Make the checkpoint with transformers (subprocess) and return its directory and the
    reference outputs of transformers' model with its BitNet layers."""
    root = tmp_path / name
    root.mkdir()
    cfg = dict(TINY, **spec.pop("config", {}))
    full = {"arch": arch, "config": cfg, "seed": 0, "dir": str(root / "hf"),
            "inputs": INPUTS, "prompt": PROMPT, "new_tokens": 12, **spec}
    (root / "spec.json").write_text(json.dumps(full))
    p = subprocess.run([sys.executable, str(REF), str(root / "spec.json")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return root / "hf", load_file(str(root / "reference.safetensors"))


def _greedy(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


def _agree(ours, ref: dict) -> float:
    """Largest |difference| of the logits on INPUTS, relative to the largest |logit|."""
    with torch.no_grad():
        a = ours(torch.tensor(INPUTS))
    b = ref["logits"]
    assert a.shape == b.shape
    top = b.abs().max()
    rel = float((a - b).abs().max() / top)
    mean = float((a - b).abs().mean() / top)
    print(f"max |logit difference| / max |logit| = {rel:.2e} (mean {mean:.2e})")
    assert mean < 0.01
    return rel


# Tolerance: both sides quantize every projection's input to int8 per token (absmax/127),
# but their float arithmetic differs in the last bits (RMSNorm, the rotary tables, 127/max
# against max/127, summation order), so now and then an activation near a rounding boundary
# lands one int8 step (1/127 of its token's largest value) apart. When no such flip happens
# the logits agree to ~1e-6 (the packed-checkpoint cases below); one flip in a k/v row
# moves every later position's logits, measured at up to ~1.6% of the largest logit in
# these 2-layer models. Bound: 5% of the largest logit at worst, 1% on average. A wrong
# weight, scale, norm or rotary convention is off by far more; the weights themselves are
# checked exactly.
TOL = 0.05


def test_bitnet_online_logits_and_greedy_tokens_match_transformers(tmp_path):
    d, ref = _hf(tmp_path, config={"tie_word_embeddings": True})
    r = import_hf(d, tmp_path / "out" / "model.safetensors")
    src = (tmp_path / "out" / "model.tri").read_text()
    assert "block DecoderLayer" in src and "rope(" in src and "stack([k, k], dim: 2)" in src
    ours, info = model_from_checkpoint(r["checkpoint"])
    assert info.entry == "BitNetForCausalLM"
    from tritium.runtime import read_checkpoint_metadata
    extra = read_checkpoint_metadata(r["checkpoint"]).extra
    assert extra["tritium.task"] == "lm"           # what `tritium generate` reads
    assert json.loads(extra["tritium.tokenizer"]) == {"type": "bytes", "version": 1}
    assert _agree(ours, ref) < TOL
    assert _greedy(ours, PROMPT, 12) == ref["greedy"].tolist()
    # the weights are exactly transformers' ternarization
    w = load_file(str(d / "model.safetensors"))["model.layers.1.mlp.down_proj.weight"]
    trits, scale = absmean_hf(w)
    q = ours.layers[1].down_proj.ternary_weight()
    assert torch.equal(q.trits.to(torch.int8), trits)
    assert float(q.scale.detach().reshape(-1)[0]) == pytest.approx(float(scale[0]), rel=1e-7)


def test_silu_untied_model(tmp_path):
    d, ref = _hf(tmp_path, config={"tie_word_embeddings": False, "hidden_act": "silu"},
                 seed=2)
    r = import_hf(d, tmp_path / "o.safetensors", tmp_path / "o.tri")
    assert "silu(gate_proj(m))" in (tmp_path / "o.tri").read_text()
    ours, _ = model_from_checkpoint(r["checkpoint"])
    assert _agree(ours, ref) < TOL


@pytest.mark.parametrize("linear_class", ["bitlinear", "autobitlinear"])
def test_offline_packed_checkpoints(tmp_path, linear_class):
    d, ref = _hf(tmp_path, config={"tie_word_embeddings": True}, seed=4,
                 offline=linear_class)
    r = import_hf(d, tmp_path / "p.safetensors")
    assert r["arch"].weights == linear_class
    assert load_file(str(d / "model.safetensors"))[
        "model.layers.0.self_attn.q_proj.weight"].dtype == torch.uint8
    ours, _ = model_from_checkpoint(r["checkpoint"])
    assert _agree(ours, ref) < TOL


def test_llama_bitlinear_checkpoint(tmp_path):
    d, ref = _hf(tmp_path, arch="llama", config={"attention_bias": True}, seed=5)
    r = import_hf(d, tmp_path / "l.safetensors")
    src = (tmp_path / "l.tri").read_text()
    assert "attn_sub_norm" not in src and "silu(" in src and "bias: true" in src
    ours, _ = model_from_checkpoint(r["checkpoint"])
    assert _agree(ours, ref) < TOL


def _pack(trits: torch.Tensor) -> torch.Tensor:
    """transformers' offline packing, written out: output row i * rows + r in bits
    2i..2i+1 of row r, code = trit + 1."""
    n = trits.shape[0]
    rows = -(-n // 4)
    codes = torch.zeros(rows * 4, *trits.shape[1:], dtype=torch.uint8)
    codes[:n] = (trits + 1).to(torch.uint8)
    out = torch.zeros(rows, *trits.shape[1:], dtype=torch.uint8)
    for i in range(4):
        out |= codes[i * rows:(i + 1) * rows] << (2 * i)
    return out


def test_unpack_matches_transformers_packing():
    g = torch.Generator().manual_seed(0)
    for rows in (4, 7, 13):
        trits = torch.randint(-1, 2, (rows, 5), generator=g)
        packed = _pack(trits)
        assert torch.equal(unpack_hf_trits(packed, rows), trits.to(torch.int8))


# ----------------------------------------------------------------------------- bad input

def _write(d: Path, conf: dict | str, tensors: dict | None = None) -> Path:
    from safetensors.torch import save_file
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(conf if isinstance(conf, str) else json.dumps(conf))
    if tensors is not None:
        save_file(tensors, str(d / "model.safetensors"))
    return d


@pytest.mark.parametrize("conf,match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    (_conf(model_type="gpt2"), "model_type 'gpt2' is not supported"),
    (_conf(model_type="llama"), "not BitLinear-quantized"),
    (_conf(hidden_size=1 << 30), "hidden_size"),
    (_conf(hidden_size="8"), "hidden_size"),
    (_conf(num_key_value_heads=3, num_attention_heads=4, hidden_size=8), "not a multiple"),
    (_conf(rms_norm_eps=-1.0), "rms_norm_eps"),
    (_conf(rms_norm_eps=float("nan")), "not valid JSON"),
    (_conf(rope_scaling={"rope_type": "llama3"}), "RoPE scaling"),
    (_conf(hidden_act="gelu"), "hidden_act"),
    (_conf(quantization_config={"quant_method": "gptq"}), "quant_method"),
    (_conf(quantization_config={"quant_method": "bitnet", "use_rms_norm": True}),
     "use_rms_norm"),
])
def test_bad_configs_are_clear_errors(tmp_path, conf, match):
    d = _write(tmp_path / "m", conf)
    with pytest.raises(HFImportError, match=match):
        read_hf_config(d)


def test_a_tiny_hand_made_checkpoint_imports(tmp_path):
    d = _write(tmp_path / "m", _conf(), _tensors())
    r = import_hf(d, tmp_path / "ok.safetensors")
    ours, _ = model_from_checkpoint(r["checkpoint"])
    assert ours(torch.tensor([[1, 2, 3]])).shape == (1, 3, 16)


def _random_tensors(h: int, f: int, v: int, layers: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    t = {"model.embed_tokens.weight": torch.randn(v, h, generator=g),
         "model.norm.weight": torch.ones(h), "lm_head.weight": torch.randn(v, h, generator=g)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("input_layernorm", "post_attention_layernorm", "self_attn.attn_sub_norm"):
            t[p + n + ".weight"] = torch.rand(h, generator=g) + 0.5
        t[p + "mlp.ffn_sub_norm.weight"] = torch.rand(f, generator=g) + 0.5
        for n, shape in (("self_attn.q_proj", (h, h)), ("self_attn.k_proj", (h // 2, h)),
                         ("self_attn.v_proj", (h // 2, h)), ("self_attn.o_proj", (h, h)),
                         ("mlp.gate_proj", (f, h)), ("mlp.up_proj", (f, h)),
                         ("mlp.down_proj", (h, f))):
            t[p + n + ".weight"] = torch.randn(shape, generator=g)
    return t


def test_the_t1_6_format_holds_the_same_model_in_less_memory(tmp_path):
    # rows of 320 trits (two whole t1.6 blocks of 160) and of 700 (a partial fifth block)
    h, f, v = 320, 700, 300
    d = _write(tmp_path / "m", _conf(vocab_size=v, hidden_size=h, intermediate_size=f,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, tie_word_embeddings=False),
               _random_tensors(h, f, v, 2, seed=7))
    x = torch.randint(0, v, (2, 19), generator=torch.Generator().manual_seed(1))
    from tritium.driver.generate import generate_tokens
    from tritium.runtime import TernaryLinear
    got = {}
    for fmt in ("t2", "t1.6"):
        r = import_hf(d, tmp_path / fmt / "model.safetensors", fmt=fmt)
        model, info = model_from_checkpoint(r["checkpoint"])
        assert info.format == fmt
        layers = [m for m in model.modules() if isinstance(m, TernaryLinear)]
        assert len(layers) == 14 and {m.format for m in layers} == {fmt}
        packed = sum(m.weight_packed.numel() for m in layers)
        with torch.no_grad():
            got[fmt] = (packed, model(x), generate_tokens(model, [5, 17, 200, 3], 12,
                                                          greedy=True).tokens)
    # int8 activations and exact integer products: the formats give the same numbers
    assert torch.equal(got["t2"][1], got["t1.6"][1])
    assert got["t2"][2] == got["t1.6"][2]
    assert got["t1.6"][0] < 0.75 * got["t2"][0]     # 202240 against 288000 bytes a layer
    with pytest.raises(HFImportError, match="unknown packed format 't3'"):
        import_hf(d, tmp_path / "bad.safetensors", fmt="t3")
    p = _cli("import", "hf", "m", "--format", "t1.6", "--out", "c.safetensors", cwd=tmp_path)
    assert p.returncode == 0 and "packed t1.6" in p.stdout, p.stderr
    p = _cli("import", "hf", "m", "--format", "t3", cwd=tmp_path)
    assert p.returncode == 2 and "t3" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.pop("model.norm.weight"), "`model.norm.weight` is missing"),
    (lambda t: t.__setitem__("model.norm.weight", torch.ones(9)), "has shape \\[9\\]"),
    (lambda t: t.__setitem__("model.norm.weight", torch.ones(8, dtype=torch.int32)),
     "is I32"),
    (lambda t: t.__setitem__("model.norm.weight", torch.full((8,), float("nan"))), "NaN"),
    (lambda t: t.__setitem__("extra.weight", torch.ones(1)), "does not have"),
])
def test_bad_tensors_are_clear_errors(tmp_path, edit, match):
    t = _tensors()
    edit(t)
    d = _write(tmp_path / "m", _conf(), t)
    with pytest.raises(HFImportError, match=match):
        import_hf(d, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_damaged_and_pickled_files_are_refused(tmp_path):
    d = _write(tmp_path / "m", _conf(), _tensors())
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:8] + b"{garbage" + data[16:])
    with pytest.raises(HFImportError, match="not a valid safetensors file"):
        import_hf(d, tmp_path / "x.safetensors")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04 not read")
    with pytest.raises(HFImportError, match="no \\*.safetensors") as err:
        import_hf(d, tmp_path / "x.safetensors")
    assert "never read" in (err.value.help or "")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "tritium", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"})


def test_cli(tmp_path):
    d = _write(tmp_path / "m", _conf(), _tensors())
    p = _cli("import", "hf", "m", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "wrote runs/m/model.safetensors" in p.stdout
    assert (tmp_path / "runs" / "m" / "model.tri").is_file()
    p = _cli("check", "runs/m/model.tri", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    p = _cli("import", "hf", "missing", cwd=tmp_path)
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr
    (d / "config.json").write_text("{}")
    p = _cli("import", "hf", "m", "--out", "b.safetensors", cwd=tmp_path)
    assert p.returncode == 1 and "model_type" in p.stderr and "Traceback" not in p.stderr


def test_bf16_sharded_checkpoint(tmp_path):
    """bf16 weights split over several files (as save_pretrained shards them)."""
    d, ref = _hf(tmp_path, config={"tie_word_embeddings": True}, seed=6, dtype="bfloat16",
                 shard="400KB")
    assert len(list(d.glob("*.safetensors"))) > 1
    r = import_hf(d, tmp_path / "b.safetensors")
    ours, _ = model_from_checkpoint(r["checkpoint"])
    tensors = {}
    for f in d.glob("*.safetensors"):
        tensors.update(load_file(str(f)))
    trits, _ = absmean_hf(tensors["model.layers.0.self_attn.k_proj.weight"])
    assert torch.equal(ours.layers[0].k_proj.ternary_weight().trits.to(torch.int8), trits)
    assert torch.equal(ours.embed_tokens.weight.detach(),
                       tensors["model.embed_tokens.weight"].float())


@pytest.mark.parametrize("over", [
    {},
    {"quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear",
                             "quantization_mode": "offline"}, "architectures": ["MyBitNet"]},
    {"model_type": "llama", "hidden_act": "silu", "attention_bias": True,
     "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                             "quantization_mode": "online", "modules_to_not_convert": []}},
])
def test_the_recorded_architecture_reads_back_the_same(tmp_path, over):
    from tritium.driver.hf_import import HFArch
    arch = read_hf_config(_write(tmp_path / "m", _conf(**over)))
    assert HFArch.from_json(arch.to_json(), "x") == arch
    with pytest.raises(HFImportError, match="not valid JSON"):
        HFArch.from_json("{", "x")
