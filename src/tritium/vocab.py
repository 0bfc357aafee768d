"""The shared vocabulary: dtypes, quantizer names, activation-quantization modes, packed
formats and their geometry. One definition for every stage (the checker, the IR, the code
generators, the Triton specs, the runtime's packing); each stage reads these tables instead
of keeping its own copy.

This module is a leaf: it imports nothing from tritium, and no torch or numpy, so every
stage (and the runtime, which must not import the compiler) can read it. The C kernels keep
their `#define`s (`csrc/tritium_kernels.h`); `tests/unit/test_vocab.py` checks that they
equal the values here.
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------------------- dtypes


@dataclass(frozen=True, slots=True)
class DType:
    """One language dtype and how each stage spells it.

    `ir`: the IR tensor dtype (tritium.ir.types), `ir_scalar`: the IR type of a scalar of
    this dtype (a Python number in generated code), `torch`: the `torch.<name>` attribute of
    a tensor of this dtype (a trit tensor is stored as int8); None where the stage has none.
    """
    name: str
    kind: str              # "int" | "float" | "bool" | "trit" | "str"
    ir: str | None
    ir_scalar: str | None
    torch: str | None


_DTYPE_TABLE = (
    DType("trit", "trit", "trit", "i64", "int8"),
    DType("bool", "bool", "bool", "bool", "bool"),
    DType("int", "int", "i64", "i64", "int64"),
    DType("int8", "int", "i8", "i64", "int8"),
    DType("int16", "int", "i16", "i64", "int16"),
    DType("int32", "int", "i32", "i32", "int32"),
    DType("int64", "int", "i64", "i64", "int64"),
    DType("uint8", "int", "u8", "i64", "uint8"),
    DType("float", "float", "f32", "f32", "float32"),
    DType("float16", "float", "f16", "f16", "float16"),
    DType("bfloat16", "float", "bf16", "f32", "bfloat16"),
    DType("float32", "float", "f32", "f32", "float32"),
    DType("float64", "float", "f64", "f64", "float64"),
    DType("str", "str", None, "str", None),
)

DTYPES: dict[str, DType] = {d.name: d for d in _DTYPE_TABLE}
"""Every dtype name the language accepts (`Tensor<int8, [..]>`, `cast(x, "int8")`)."""

INT_DTYPES = frozenset(d.name for d in _DTYPE_TABLE if d.kind == "int")
FLOAT_DTYPES = frozenset(d.name for d in _DTYPE_TABLE if d.kind == "float")
TENSOR_DTYPES = frozenset(d.name for d in _DTYPE_TABLE if d.ir is not None)
"""The dtypes a tensor may hold (all but `str`)."""

CONVERSIONS = ("int", "int8", "int32", "int64", "float", "float16", "bfloat16", "float32",
               "bool", "trit")
"""The dtypes that are also conversion functions: `int8(x)` is `cast(x, "int8")`."""

# IR dtypes in promotion order (a binary result takes the later one), and scalar dtypes.
IR_DTYPES = ("bool", "trit", "u8", "i8", "i16", "i32", "i64", "bf16", "f16", "f32", "f64")
IR_FLOAT_DTYPES = ("bf16", "f16", "f32", "f64")
IR_INT_DTYPES = ("trit", "u8", "i8", "i16", "i32", "i64")
IR_SCALAR_DTYPES = ("bool", "i64", "i32", "f32", "f16", "f64", "str")

IR_TO_LANG: dict[str, str] = {"trit": "trit", "bool": "bool", "u8": "uint8", "i8": "int8",
                              "i16": "int16", "i32": "int32", "i64": "int64",
                              "bf16": "bfloat16", "f16": "float16", "f32": "float32",
                              "f64": "float64"}
"""The canonical language name of each IR tensor dtype (`x.dtype` in a program)."""

# --------------------------------------------------------------------------- quantizers

QUANTIZERS = ("twn", "absmean", "threshold", "stochastic")
"""The canonical ternary weight quantizers (tritium.runtime.quant's registry)."""

QUANTIZER_ALIASES: dict[str, str] = {"bitnet": "absmean", "b1.58": "absmean",
                                     "deterministic": "threshold", "fixed": "threshold",
                                     "adaptive_ternary": "twn", "adaptive": "twn"}

QUANTIZER_NAMES = ("twn", "absmean", "bitnet", "b1.58", "threshold", "deterministic", "fixed",
                   "stochastic", "adaptive_ternary", "adaptive")
"""Every quantizer name a program may write, in the order the language reference lists."""

DETERMINISTIC_QUANTIZERS = ("twn", "absmean", "threshold")
"""The quantizers the IR's `quantize_ternary` op computes (stochastic rounding is lowered
to other ops)."""


PER_CHANNEL_QUANTIZERS = ("adaptive_ternary", "adaptive")
"""The seed's adaptive ternary quantizer: TWN with its threshold (0.7 * mean |w|) and scale
taken per output channel, so that each channel's threshold adapts to its own weights."""


def quantizer_per_channel(name: object) -> bool:
    """Whether quantizer `name` itself means one threshold and scale per output channel."""
    return isinstance(name, str) and name.strip().lower() in PER_CHANNEL_QUANTIZERS


def canonical_quantizer(name: str) -> str | None:
    """The canonical name of quantizer `name` (case and surrounding blanks ignored), or None
    when there is no such quantizer."""
    key = name.strip().lower()
    key = QUANTIZER_ALIASES.get(key, key)
    return key if key in QUANTIZERS else None


ACT_QUANTS = ("none", "int8")
"""Activation quantization modes of ternary layers."""

CONV_ACT_QUANTS = (*ACT_QUANTS, "int8_image")
"""Activation quantization modes of ternary convolutions: those of every ternary layer, and
``int8_image`` (one int8 absmax scale per sample, so the conv is an exact int32 implicit GEMM)."""

STE_KINDS = ("identity", "clipped")
"""Straight-through estimators of ternary layers."""

LM_HEADS = ("int8", "fp32")
"""Formats of a frozen language model's full-precision output head (`freeze_model(head=)`,
`tritium generate --head`; the first is the generate default): int8 weights per row and int8
activations per token, or as trained."""

ACTIVATIONS = ("none", "relu", "relu6", "gelu", "silu", "sigmoid", "tanh")
"""Activations a fused kernel epilogue applies (IR fused ops, Triton and C kernels, in the
order of the C kernels' `TRI_ACT_*` codes)."""

# ------------------------------------------------------------------------------ packing

FORMAT_VERSION = 1
FORMATS = ("t2", "t1.6")
"""Packed ternary formats (docs/formats.md)."""

FORMAT_CODE = {"t2": 0, "t1.6": 1}
BLOCK_BYTES = 32
BLOCK_TRITS = {"t2": 128, "t1.6": 160}
"""Trits per 32-byte block: FIELDS fields of 32 consecutive elements each."""
FIELDS = {"t2": 4, "t1.6": 5}
ZERO_BYTE = {"t2": 0x55, "t1.6": 121}
"""The byte of a packed block whose trits are all zero (every code 1)."""


def packed_row_bytes(k: int, fmt: str) -> int:
    """Bytes of one packed row of `k` trits: whole blocks, the last one padded with zeros."""
    return -(-k // BLOCK_TRITS[fmt]) * BLOCK_BYTES


# The tile parameters the Triton kernels' tuner chooses from (tune/triton_space.py's search
# spaces: the ternary GEMMs and the int8 activation quantizer). A tuned record whose value is
# none of these was not written by the tuner and is refused (runtime/tuned.py).
TRITON_GEMM_BLOCK_M = (16, 32, 64, 128)
TRITON_GEMM_BLOCK_N = (32, 64, 128, 256)
TRITON_GEMM_K_BLOCKS = (1, 2, 4)  # packed blocks per K-loop iteration
TRITON_GEMM_GROUP_M = (1, 4, 8)
TRITON_NUM_WARPS = (2, 4, 8)
TRITON_NUM_STAGES = (1, 2, 3, 4)
TRITON_QUANT_BLOCK_M = (1, 2, 4, 8, 16, 32)
TRITON_QUANT_BLOCK_K = (64, 128, 256, 512, 1024, 2048)
TRITON_QUANT_NUM_WARPS = (1, 2, 4, 8)
TRITON_QUANT_NUM_STAGES = (1, 2, 3)


def triton_tile_values() -> dict[str, frozenset[int]]:
    """Every value the tuner may give each Triton tile parameter, over all its kernels."""
    gemm_k = {t * b for t in BLOCK_TRITS.values() for b in TRITON_GEMM_K_BLOCKS}
    return {"BLOCK_M": frozenset(TRITON_GEMM_BLOCK_M + TRITON_QUANT_BLOCK_M),
            "BLOCK_N": frozenset(TRITON_GEMM_BLOCK_N),
            "BLOCK_K": frozenset(gemm_k | set(TRITON_QUANT_BLOCK_K)),
            "GROUP_M": frozenset(TRITON_GEMM_GROUP_M),
            "num_warps": frozenset(TRITON_NUM_WARPS + TRITON_QUANT_NUM_WARPS),
            "num_stages": frozenset(TRITON_NUM_STAGES + TRITON_QUANT_NUM_STAGES)}
