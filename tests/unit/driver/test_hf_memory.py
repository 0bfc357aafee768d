"""What a frozen language model holds, from `tritium import hf` to `tritium generate`: the
import reads the Hugging Face checkpoint one tensor at a time and packs each ternary weight as
it goes; 16-bit embeddings and output heads stay 16-bit (widened one looked-up row at a time,
the same values as the float32 table); loading an imported checkpoint never allocates float32
latent weights; the checkpoint reader streams; the KV cache is sized to the context used. The
models are random BitNet b1.58 checkpoints written here in bf16 (benchmarks/llm.py's `tiny`
writer; no transformers, nothing downloaded)."""

from __future__ import annotations

import weakref
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors import safe_open  # noqa: E402
from torch import nn  # noqa: E402

from tritium.driver import hf_import  # noqa: E402
from tritium.driver.generate import generate_tokens  # noqa: E402
from tritium.driver.models import model_from_checkpoint  # noqa: E402
from tritium.runtime import CheckpointError, TernaryLinear, read_checkpoint_metadata  # noqa: E402
from tritium.runtime.checkpoint_read import _read, read_state_dict  # noqa: E402
from tritium.runtime.decoding import DecodeSession  # noqa: E402
from tritium.runtime.layers.half import HalfEmbedding, HalfLinear  # noqa: E402
from tritium.runtime.layers.head import Int8Head, quantize_head  # noqa: E402


@pytest.fixture(scope="module")
def llm(benchmark_module):
    return benchmark_module("llm")


@pytest.fixture(scope="module")
def hf_dir(llm, tmp_path_factory):
    return llm.write_hf_checkpoint(tmp_path_factory.mktemp("hf") / "hf", llm.SIZES["tiny"], 3)


@pytest.fixture(scope="module")
def imported(hf_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    return hf_import.import_hf(hf_dir, out)


def _widened(model: nn.Module) -> nn.Module:
    """`model` with its 16-bit tables as float32 nn.Embedding / nn.Linear (the values the
    import kept before: the bf16 source widened)."""
    for mod in list(model.modules()):
        for name, child in list(mod._modules.items()):
            if type(child) is HalfEmbedding:
                e = nn.Embedding(child.num_embeddings, child.embedding_dim)
                e.weight.data = child.weight.detach().to(torch.float32)
                setattr(mod, name, e)
            elif type(child) is HalfLinear:
                setattr(mod, name, child.widened())
    return model


def test_import_reads_each_tensor_once_and_holds_one_weight_at_a_time(hf_dir, tmp_path,
                                                                      monkeypatch):
    reads: list[str] = []
    get = hf_import._Shards.get

    def counted(self, name):
        reads.append(name)
        return get(self, name)

    live: list[weakref.ref] = []
    owned = hf_import._absmean_owned

    def one_at_a_time(w):
        # every float32 weight ternarized before this one is gone already
        assert all(r() is None for r in live), "an earlier float weight is still held"
        live.append(weakref.ref(w))
        return owned(w)

    monkeypatch.setattr(hf_import._Shards, "get", counted)
    monkeypatch.setattr(hf_import, "_absmean_owned", one_at_a_time)
    r = hf_import.import_hf(hf_dir, tmp_path / "m.safetensors")
    assert len(live) == 7 * r["arch"].layers
    assert sorted(reads) == sorted(set(reads))            # no tensor read twice
    with safe_open(str(hf_dir / "model-00001-of-00003.safetensors"), "pt") as f:
        names = set(f.keys())
    assert names <= set(reads)


def test_16bit_tables_stay_16bit_and_give_the_float32_values(imported):
    ckpt = imported["checkpoint"]
    with safe_open(ckpt, "pt") as f:
        dtypes = {n: f.get_slice(n).get_dtype() for n in f.keys()}
    assert dtypes["embed_tokens.weight"] == "BF16"
    assert dtypes["lm_head.weight"] == "BF16"            # the tied head, lossless
    assert dtypes["norm.weight"] == "F32"
    # the import's model shares one table between the embeddings and the tied head
    m = imported["model"]
    assert m.embed_tokens.weight.data_ptr() == m.lm_head.weight.data_ptr()

    model, _ = model_from_checkpoint(ckpt)
    assert type(model.embed_tokens) is HalfEmbedding
    assert model.embed_tokens.weight.dtype == torch.bfloat16
    assert type(model.lm_head) is HalfLinear
    ids = torch.tensor([[1, 7, 200, 3, 3, 9]])
    wide, _ = model_from_checkpoint(ckpt)
    _widened(wide)
    with torch.no_grad():
        rows = model.embed_tokens(ids)
        assert rows.dtype == torch.float32
        assert torch.equal(rows, wide.embed_tokens(ids))
        assert torch.equal(model(ids), wide(ids))
    # the int8 head quantized from the 16-bit table is the one of the float32 table
    assert quantize_head(model, "int8") == ["lm_head"]
    assert quantize_head(wide, "int8") == ["lm_head"]
    assert type(model.lm_head) is Int8Head
    for name in ("weight_panels", "weight_sums", "weight_scale"):
        assert torch.equal(getattr(model.lm_head, name), getattr(wide.lm_head, name))
    # --head fp32 widens a 16-bit head once
    fp, _ = model_from_checkpoint(ckpt)
    assert quantize_head(fp, "fp32") == []
    assert type(fp.lm_head) is nn.Linear and fp.lm_head.weight.dtype == torch.float32


def test_loading_an_imported_checkpoint_never_fills_float_latents(imported, monkeypatch):
    filled = []
    orig = TernaryLinear.reset_parameters

    def spy(self):
        filled.append(self.weight.device.type)
        return orig(self)

    monkeypatch.setattr(TernaryLinear, "reset_parameters", spy, raising=True)
    model, _ = model_from_checkpoint(imported["checkpoint"])
    assert filled and set(filled) == {"meta"}        # built on the meta device only
    layers = [m for m in model.modules() if isinstance(m, TernaryLinear)]
    assert layers and all(m.frozen and "weight" not in m._parameters for m in layers)
    ref = imported["model"]
    ids = torch.tensor([[4, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(model(ids), ref(ids))


def test_the_streaming_reader_restores_what_safetensors_holds(imported, tmp_path):
    ckpt = Path(imported["checkpoint"])
    state, meta = _read(ckpt)
    plain = {}
    with safe_open(str(ckpt), "pt") as f:
        for n in f.keys():
            plain[n] = f.get_tensor(n)
    assert set(state) == set(plain)
    for n, t in plain.items():
        if meta.tensors[n].packing_format == "none":
            assert torch.equal(state[n], t), n
    # metadata only: validated without keeping the tensors
    assert read_checkpoint_metadata(ckpt).tensors == meta.tensors
    s2, m2 = read_state_dict(ckpt)
    assert set(s2) == set(state) and m2 is not None
    # a flipped byte in the last tensor's data is still the digest's error
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0x40
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="digest"):
        read_checkpoint_metadata(bad)
    with pytest.raises(CheckpointError, match="digest"):
        _read(bad)


def test_the_kv_cache_is_sized_to_the_context(imported, monkeypatch):
    model = imported["model"]
    quantize_head(model, "int8")
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    with torch.no_grad(), DecodeSession(max_tokens=len(prompt) + 12) as s:
        s.forward(model, torch.tensor([prompt]))
        assert all(b.shape[-2] == len(prompt) + 12 for b in s._kbuf + s._vbuf)
    with torch.no_grad(), DecodeSession() as s:
        s.forward(model, torch.tensor([prompt]))
        assert all(b.shape[-2] == 64 for b in s._kbuf)
    # generate_tokens plans the size, and that changes no token
    seen = []

    class Planned(DecodeSession):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen.append(self.max_tokens)

    class Unplanned(DecodeSession):
        def __init__(self, *a, max_tokens=None, **k):
            super().__init__(*a, **k)

    monkeypatch.setattr("tritium.runtime.decoding.DecodeSession", Planned)
    planned = generate_tokens(model, prompt, 12, greedy=True)
    assert seen == [len(prompt) + 12]
    monkeypatch.setattr("tritium.runtime.decoding.DecodeSession", Unplanned)
    grown = generate_tokens(model, prompt, 12, greedy=True)
    assert planned.tokens == grown.tokens
