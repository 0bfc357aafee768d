from __future__ import annotations

import pytest

from tritium.ir import OPS, InferError, ScalarType, TensorType, infer_type, parse_type
from tritium.ir.types import broadcast_shapes, promote, types_compatible


def T(s: str) -> TensorType:
    t = parse_type(s)
    assert isinstance(t, TensorType)
    return t


def test_type_syntax_roundtrip() -> None:
    for s in ("tensor<[batch, 64], f32>", "tensor<[?, 10], trit>", "tensor<[], bf16>",
              "tensor<[2], f64>", "tensor<[2], i16>", "i64", "bool", "str", "f64"):
        assert str(parse_type(s)) == s
    with pytest.raises(ValueError):
        parse_type("tensor<[2], f8>")


def test_broadcast_and_promote() -> None:
    assert broadcast_shapes((None, 1, 4), ("n", 3, 1)) == ("n", 3, 4)
    assert broadcast_shapes(("b", 4), (4,)) == ("b", 4)
    with pytest.raises(ValueError):
        broadcast_shapes((3,), (4,))
    assert promote("trit", "f32") == "f32" and promote("i8", "i32") == "i32"
    assert types_compatible(T("tensor<[b, 4], f32>"), T("tensor<[2, ?], f32>"))
    assert not types_compatible(T("tensor<[3, 4], f32>"), T("tensor<[2, 4], f32>"))


@pytest.mark.parametrize("name,operands,attrs,expected", [
    ("add", ["tensor<[b, 4], f32>", "tensor<[4], f32>"], {}, ["tensor<[b, 4], f32>"]),
    ("add", ["tensor<[4], trit>", "tensor<[4], trit>"], {}, ["tensor<[4], i8>"]),
    ("mul", ["tensor<[4], trit>", "f32"], {}, ["tensor<[4], f32>"]),
    ("div", ["i64", "i64"], {}, ["f32"]),
    ("lt", ["tensor<[b, 4], f32>", "f32"], {}, ["tensor<[b, 4], bool>"]),
    ("select", ["tensor<[4], bool>", "tensor<[4], f32>", "f32"], {}, ["tensor<[4], f32>"]),
    ("exp", ["tensor<[4], i32>"], {}, ["tensor<[4], f32>"]),
    ("sum", ["tensor<[b, 3, 4], f32>"], {"dims": [-1], "keepdim": True}, ["tensor<[b, 3, 1], f32>"]),
    ("mean", ["tensor<[b, 3], f32>"], {}, ["tensor<[], f32>"]),
    ("argmax", ["tensor<[b, 10], f32>"], {"dim": 1}, ["tensor<[b], i64>"]),
    ("matmul", ["tensor<[2, b, 3, 4], f32>", "tensor<[4, 5], f32>"], {}, ["tensor<[2, b, 3, 5], f32>"]),
    ("matmul", ["tensor<[3, 4], trit>", "tensor<[4], trit>"], {}, ["tensor<[3], f32>"]),  # as trt.float_matmul
    ("matmul", ["tensor<[3, 4], i64>", "tensor<[4, 2], i8>"], {}, ["tensor<[3, 2], f32>"]),
    ("clamp", ["tensor<[3], trit>"], {"min": 0.0, "max": 5.0}, ["tensor<[3], f32>"]),
    ("add", ["tensor<[], i64>", "tensor<[3], i32>"], {}, ["tensor<[3], i32>"]),  # torch's 0-d rule
    ("mul", ["tensor<[3], i8>", "tensor<[], f64>"], {}, ["tensor<[3], f64>"]),
    ("mul", ["tensor<[3], trit>", "tensor<[], i64>"], {}, ["tensor<[3], i8>"]),
    ("linear", ["tensor<[b, 64], f32>", "tensor<[10, 64], f32>", "tensor<[10], f32>"], {}, ["tensor<[b, 10], f32>"]),
    ("conv2d", ["tensor<[n, 3, 32, 32], f32>", "tensor<[16, 3, 3, 3], f32>"], {"stride": [2, 2], "padding": [1, 1]},
     ["tensor<[n, 16, 16, 16], f32>"]),
    ("conv2d", ["tensor<[n, 3, h, w], f32>", "tensor<[16, 3, 3, 3], f32>"], {"padding": [1, 1]},
     ["tensor<[n, 16, h, w], f32>"]),
    ("conv2d", ["tensor<[n, 3, h, w], f32>", "tensor<[16, 3, 3, 3], f32>"], {"stride": [2, 2]},
     ["tensor<[n, 16, ?, ?], f32>"]),
    ("max_pool2d", ["tensor<[n, 3, 8, 9], f32>"], {"kernel_size": [2]}, ["tensor<[n, 3, 4, 4], f32>"]),
    ("adaptive_avg_pool2d", ["tensor<[n, 3, h, w], f32>"], {"output_size": [1, 1]}, ["tensor<[n, 3, 1, 1], f32>"]),
    ("flatten", ["tensor<[n, 3, 4, 4], f32>"], {"start_dim": 1}, ["tensor<[n, 48], f32>"]),
    ("flatten", ["tensor<[n, c, 4], f32>"], {"start_dim": 1}, ["tensor<[n, ?], f32>"]),
    ("reshape", ["tensor<[2, 3, 4], f32>"], {"shape": [-1, 4]}, ["tensor<[6, 4], f32>"]),
    ("reshape", ["tensor<[b, 12], f32>"], {"shape": [-1, 3, 4]}, ["tensor<[?, 3, 4], f32>"]),
    ("reshape", ["tensor<[b, s, 64], f32>"], {"shape": [0, 0, 4, -1]}, ["tensor<[b, s, 4, 16], f32>"]),
    ("reshape", ["tensor<[b, s, 4, 16], f32>"], {"shape": [0, 0, 64]}, ["tensor<[b, s, 64], f32>"]),
    ("reshape", ["tensor<[b, s, 4, 16], f32>"], {"shape": [0, -1]}, ["tensor<[b, ?], f32>"]),
    ("squeeze", ["tensor<[1, 3, 1], f32>"], {}, ["tensor<[3], f32>"]),
    ("max_pool2d", ["tensor<[n, 3, 7, 7], f32>"], {"kernel_size": [2], "ceil_mode": True}, ["tensor<[n, 3, 4, 4], f32>"]),
    ("slice", ["tensor<[b, 10], f32>"], {"dim": 1, "start": 2, "end": -1, "step": 3}, ["tensor<[b, 3], f32>"]),
    ("concat", ["tensor<[b, 2], f32>", "tensor<[b, 3], f32>"], {"dim": 1}, ["tensor<[b, 5], f32>"]),
    ("stack", ["tensor<[2], f32>", "tensor<[2], f32>"], {"dim": 1}, ["tensor<[2, 2], f32>"]),
    ("embedding", ["tensor<[b, s], i64>", "tensor<[100, 8], f32>"], {}, ["tensor<[b, s, 8], f32>"]),
    ("dim", ["tensor<[b, 3], f32>"], {"dim": 0}, ["i64"]),
    ("quantize_ternary", ["tensor<[10, 64], f32>"], {"per_channel": True},
     ["tensor<[10, 64], trit>", "tensor<[10], f32>"]),
    ("quantize_int8", ["tensor<[b, 64], f32>"], {}, ["tensor<[b, 64], i8>", "tensor<[], f32>"]),
    ("dequantize", ["tensor<[10, 64], trit>", "tensor<[10], f32>"], {}, ["tensor<[10, 64], f32>"]),
    ("pack", ["tensor<[10, 130], trit>"], {"format": "t2"}, ["tensor<[10, 64], u8>"]),
    ("pack", ["tensor<[10, 161], trit>"], {"format": "t1.6"}, ["tensor<[10, 64], u8>"]),
    ("unpack", ["tensor<[10, 32], u8>"], {"format": "t1.6", "shape": [10, 11]}, ["tensor<[10, 11], trit>"]),
    ("fused_linear", ["tensor<[b, 130], f32>", "tensor<[10, 64], u8>", "tensor<[10], f32>"],
     {"format": "t2", "in_features": 130, "has_scale": True}, ["tensor<[b, 10], f32>"]),
    ("multi_head_attention", ["tensor<[b, s, 8], f32>", "tensor<[24, 8], f32>", "tensor<[24], f32>",
                              "tensor<[8, 8], f32>", "tensor<[8], f32>"], {"num_heads": 2}, ["tensor<[b, s, 8], f32>"]),
])
def test_infer_type(name: str, operands: list[str], attrs: dict, expected: list[str]) -> None:
    got = infer_type(name, [parse_type(s) for s in operands], attrs)
    assert [str(t) for t in got] == expected


@pytest.mark.parametrize("name,operands,attrs,message", [
    ("linear", ["tensor<[b, 64], f32>", "tensor<[10, 32], f32>"], {}, "in_features: 64 != 32"),
    ("add", ["tensor<[3], f32>", "tensor<[4], f32>"], {}, "cannot broadcast dims 3 and 4"),
    ("softmax", ["tensor<[3], f32>"], {"dim": 2}, "dim 2 out of range"),
    ("reshape", ["tensor<[2, 3], f32>"], {"shape": [4, 2]}, "cannot reshape"),
    ("reshape", ["tensor<[2, 3], f32>"], {"shape": [0, 0, 0]}, "does not exist"),
    ("squeeze", ["tensor<[n, 1], f32>"], {}, "needs a static shape"),
    ("conv2d", ["tensor<[1, 4, 8, 8], f32>", "tensor<[8, 3, 3, 3], f32>"], {}, "input channels 4"),
    ("relu", ["tensor<[3], f32>"], {"alpha": 1}, "unknown attribute 'alpha'"),
    ("gelu", ["tensor<[3], f32>"], {"approximate": "fast"}, "must be one of none, tanh"),
    ("transpose", ["tensor<[3], f32>"], {"dim0": 0}, "missing required attribute 'dim1'"),
    ("relu", [], {}, "takes 1 operands, got 0"),
    ("quantize_ternary", ["tensor<[3], f32>"], {"quantizer": "threshold"}, "needs a 'threshold'"),
    ("logical_and", ["tensor<[3], f32>", "tensor<[3], bool>"], {}, "bool operands"),
    ("fused_linear", ["tensor<[b, 4], f32>", "tensor<[3, 4], f32>"], {"has_bias": True}, "operands must be (input, weight, bias)"),
    ("param", [], {"name": "w"}, "cannot be inferred"),
    ("frobnicate", [], {}, "unknown op"),
])
def test_infer_errors(name: str, operands: list[str], attrs: dict, message: str) -> None:
    with pytest.raises(InferError, match=message.replace("(", r"\(").replace(")", r"\)")):
        infer_type(name, [parse_type(s) for s in operands], attrs)


def test_op_table_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[3] / "docs" / "ir.md").read_text()
    for name, d in OPS.items():
        assert f"`{name}`" in doc, f"op {name} missing from docs/ir.md"
        assert d.summary


def test_scalar_results() -> None:
    assert infer_type("add", [ScalarType("i64"), ScalarType("i64")]) == [ScalarType("i64")]
    assert infer_type("gt", [ScalarType("f32"), ScalarType("f32")]) == [ScalarType("bool")]
