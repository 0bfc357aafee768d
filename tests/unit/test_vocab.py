"""tritium.vocab is the one vocabulary: the copies that cannot import it (the C kernels) and
the torch-side tables equal it, and it is a leaf module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import torch

from tritium import vocab
from tritium.backends.pytorch import expressions
from tritium.runtime import functional, packing, quant

SRC = Path(vocab.__file__).parent
CSRC = SRC / "backends" / "cpu" / "csrc"


def _defines(path: Path) -> dict[str, int]:
    return {m[1]: int(m[2], 0) for m in re.finditer(r"^#define (TRI_\w+) (\w+)\s*$",
                                                  path.read_text(), re.M)
            if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", m[2])}


def test_c_kernel_constants_equal_vocab():
    d = _defines(CSRC / "tritium_kernels.h")
    assert d["TRI_T2_BLOCK"] == vocab.BLOCK_TRITS["t2"]
    assert d["TRI_T16_BLOCK"] == vocab.BLOCK_TRITS["t1.6"]
    assert d["TRI_BLOCK_BYTES"] == vocab.BLOCK_BYTES
    assert d["TRI_FMT_T2"] == vocab.FORMAT_CODE["t2"]
    assert d["TRI_FMT_T16"] == vocab.FORMAT_CODE["t1.6"]
    acts = {k[len("TRI_ACT_"):].lower(): v for k, v in d.items() if k.startswith("TRI_ACT_")}
    assert acts == {a: i for i, a in enumerate(vocab.ACTIVATIONS)}


def test_packing_geometry_is_consistent():
    for fmt in vocab.FORMATS:
        assert vocab.BLOCK_TRITS[fmt] == 32 * vocab.FIELDS[fmt]
        assert vocab.packed_row_bytes(1, fmt) == vocab.BLOCK_BYTES
        assert vocab.packed_row_bytes(vocab.BLOCK_TRITS[fmt] + 1, fmt) == 2 * vocab.BLOCK_BYTES
        # the runtime's packing agrees byte for byte (an all-zero block, its row size)
        w = torch.zeros(2, 3 * vocab.BLOCK_TRITS[fmt] - 5, dtype=torch.int8)
        p = packing.pack_ternary(w, fmt)
        assert p.data.shape[1] == vocab.packed_row_bytes(w.shape[1], fmt)
        assert int(p.data[0, 0]) == vocab.ZERO_BYTE[fmt]


def test_torch_dtype_tables_equal_vocab():
    for name, d in vocab.DTYPES.items():
        if d.torch is None:
            continue
        assert expressions._TORCH_DTYPES[name] == f"torch.{d.torch}", name
        if name != "trit":     # the runtime casts to trit by rounding, not through its table
            assert functional._DTYPES[name] == getattr(torch, d.torch), name
    assert set(expressions._TORCH_DTYPES) == {n for n, d in vocab.DTYPES.items() if d.torch}


def test_quantizer_names_equal_the_runtime_registry():
    assert set(vocab.QUANTIZER_NAMES) == set(quant.QUANTIZER_NAMES)
    for name in vocab.QUANTIZER_NAMES:
        assert vocab.canonical_quantizer(name) == quant.canonical_quantizer_name(name)
    assert vocab.canonical_quantizer(" BitNet ") == "absmean"
    assert vocab.canonical_quantizer("nope") is None


def test_dtype_tables_cover_each_other():
    assert {d.ir for d in vocab.DTYPES.values() if d.ir} == set(vocab.IR_DTYPES)
    assert set(vocab.IR_TO_LANG) == set(vocab.IR_DTYPES)
    for ir, lang in vocab.IR_TO_LANG.items():
        assert vocab.DTYPES[lang].ir == ir
    assert {d.ir_scalar for d in vocab.DTYPES.values()} <= set(vocab.IR_SCALAR_DTYPES)
    assert set(vocab.CONVERSIONS) <= set(vocab.DTYPES)


def test_vocab_is_a_leaf():
    tree = ast.parse((SRC / "vocab.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else ["tritium"]
        else:
            continue
        for n in names:
            assert n in ("__future__", "dataclasses"), f"vocab imports {n}"
