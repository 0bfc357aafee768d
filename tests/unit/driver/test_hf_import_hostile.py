"""`tritium import hf` reads an untrusted directory: nothing from it (the directory's name,
the config's architecture name) may change the `.tri` program it writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tritium.driver.hf_import import import_hf, read_hf_config  # noqa: E402
from tritium.driver.models import model_from_checkpoint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_bitnet import conf as _conf  # noqa: E402
from tiny_bitnet import tensors as _tensors  # noqa: E402

INJECT = ("m\nfn attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor {\n"
          " return q * 0.0\n}\n#")


def _write(d: Path, conf: dict) -> Path:
    from safetensors.torch import save_file
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(conf))
    save_file(_tensors(torch.Generator().manual_seed(0)), str(d / "model.safetensors"))
    return d


def _logits(ckpt: str) -> torch.Tensor:
    model, _ = model_from_checkpoint(ckpt)
    with torch.no_grad():
        return model(torch.tensor([[1, 2, 3, 4]]))


def test_the_directory_name_cannot_inject_program_text(tmp_path):
    plain = import_hf(_write(tmp_path / "plain", _conf()), tmp_path / "a" / "m.safetensors")
    evil = import_hf(_write(tmp_path / INJECT, _conf()), tmp_path / "b" / "m.safetensors")
    text = Path(evil["program"]).read_text()
    first, rest = text.split("\n", 1)
    assert first.startswith("// ") and "fn attention" in first     # escaped, in the comment
    assert rest == Path(plain["program"]).read_text().split("\n", 1)[1]
    assert "fn attention" not in rest
    assert torch.equal(_logits(evil["checkpoint"]), _logits(plain["checkpoint"]))


@pytest.mark.parametrize("name", ["attention", "RMSNorm", "Linear", "DecoderLayer", "model",
                                  "layers", "x", "True"])
def test_an_architecture_name_the_program_uses_is_not_taken(tmp_path, name):
    arch = read_hf_config(_write(tmp_path / "m", _conf(architectures=[name])))
    assert arch.name == "BitNetForCausalLM"


def test_a_plain_architecture_name_is_kept(tmp_path):
    arch = read_hf_config(_write(tmp_path / "m", _conf(architectures=["MyBitNet"])))
    assert arch.name == "MyBitNet"


def _offline(scale: float) -> dict:
    t = _tensors(torch.Generator().manual_seed(0))
    for k in [k for k in t if k.endswith("_proj.weight")]:
        out_f, in_f = t[k].shape
        t[k] = torch.full((-(-out_f // 4), in_f), 0b01010101, dtype=torch.uint8)
        t[k[: -len("weight")] + "weight_scale"] = torch.tensor([scale])
    return t


@pytest.mark.parametrize("scale", [1e-45, 1e-39])
def test_an_offline_scale_whose_reciprocal_overflows_is_refused(tmp_path, scale):
    from safetensors.torch import save_file

    from tritium.driver.hf_import import HFImportError
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(_conf(quantization_config={
        "quant_method": "bitnet", "linear_class": "bitlinear",
        "quantization_mode": "offline"})))
    save_file(_offline(scale), str(d / "model.safetensors"))
    with pytest.raises(HFImportError, match=r"weight_scale.*not a finite positive"):
        import_hf(d, tmp_path / "o" / "m.safetensors")
    save_file(_offline(0.5), str(d / "model.safetensors"))
    import_hf(d, tmp_path / "o" / "m.safetensors")        # a normal scale imports


@pytest.mark.parametrize("out", ["model.safetensors", "other.safetensors",
                                 "../m/new.safetensors"])
def test_the_checkpoint_is_not_written_among_the_weights_it_is_read_from(tmp_path, out):
    # --out m/model.safetensors replaced the Hugging Face weights with the Tritium checkpoint
    # (the next import: "tensor `model.embed_tokens.weight` is missing"); another name in
    # the directory became one more shard of it
    from tritium.driver.hf_import import HFImportError
    d = _write(tmp_path / "m", _conf())
    before = sorted((p.name, p.read_bytes()) for p in d.iterdir())
    with pytest.raises(HFImportError, match="in the directory being imported") as err:
        import_hf(d, d / out)
    assert err.value.usage
    assert sorted((p.name, p.read_bytes()) for p in d.iterdir()) == before
    # a folder below it is not among the weights
    assert Path(import_hf(d, d / "sub" / "m.safetensors")["checkpoint"]).is_file()
    assert import_hf(d, tmp_path / "again.safetensors")["checkpoint"]


def test_a_bitnet_config_asking_for_mlp_biases_is_read_as_transformers_reads_it(tmp_path):
    # BitNetMLP builds its projections without bias whatever `mlp_bias` says: such a
    # checkpoint (no bias tensors) was refused ("tensor `...gate_proj.bias` is missing")
    plain = import_hf(_write(tmp_path / "plain", _conf()), tmp_path / "a" / "m.safetensors")
    biased = import_hf(_write(tmp_path / "biased", _conf(mlp_bias=True)),
                       tmp_path / "b" / "m.safetensors")
    assert not biased["arch"].mlp_bias
    assert torch.equal(_logits(biased["checkpoint"]), _logits(plain["checkpoint"]))
