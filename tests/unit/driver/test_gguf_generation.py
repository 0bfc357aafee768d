"""`tritium export --format gguf` writes the generation settings of the imported model: the
BOS its tokenizer puts before a prompt (llama.cpp's add_bos_token), its end-of-text token, and
the context length its record holds (never a default)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")

from tritium.driver.evaluate import ExportError  # noqa: E402
from tritium.driver.gguf_export import export_gguf  # noqa: E402
from tritium.driver.hf_import import import_hf  # noqa: E402
from tritium.runtime import read_checkpoint_metadata  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ckpt_edit import with_metadata  # noqa: E402
from test_gguf_export import _hf_dir  # noqa: E402
from test_hf_generation import _tokenizer_json  # noqa: E402


def _fields(path: Path) -> dict:
    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith(("tokenizer.ggml.a",
            "tokenizer.ggml.b", "tokenizer.ggml.e", "bitnet.context"))}


def test_the_tokenizer_bos_and_the_first_eos_go_into_the_gguf_file(tmp_path):
    # llama.cpp prepended no BOS (add_bos_token was always false) where transformers'
    # tokenizer does, and its eos was config.json's over generation_config.json's
    d = _hf_dir(tmp_path / "hf")
    (d / "tokenizer.json").write_text(_tokenizer_json("bos"))
    (d / "generation_config.json").write_text(json.dumps({"bos_token_id": 256,
                                                          "eos_token_id": [257, 5]}))
    ckpt = import_hf(d, tmp_path / "m.safetensors")["checkpoint"]
    r = export_gguf(ckpt, tmp_path / "m.gguf")
    f = _fields(tmp_path / "m.gguf")
    assert f["tokenizer.ggml.add_bos_token"] is True and f["tokenizer.ggml.bos_token_id"] == 256
    assert f["tokenizer.ggml.add_eos_token"] is False and f["tokenizer.ggml.eos_token_id"] == 257
    assert f["bitnet.context_length"] == 512
    assert any("any of the tokens [257, 5]" in n for n in r["notes"])


def test_a_record_without_the_context_length_is_refused(tmp_path):
    # the record's context length was taken as 2048 when it had none: a guess written into
    # the GGUF file
    d = _hf_dir(tmp_path / "hf")
    ckpt = Path(import_hf(d, tmp_path / "m.safetensors")["checkpoint"])
    arch = json.loads(read_checkpoint_metadata(ckpt).extra["tritium.hf_arch"])
    del arch["max_positions"]
    edited = with_metadata(ckpt, tmp_path / "e.safetensors",
                           **{"tritium.hf_arch": json.dumps(arch)})
    with pytest.raises(ExportError, match="has no `max_positions`"):
        export_gguf(edited, tmp_path / "e.gguf")
    assert not (tmp_path / "e.gguf").exists()
