"""Every language dtype reaches the IR as the dtype of the same meaning (tritium.vocab):
declared inputs, casts, conversion functions and the `.dtype` attribute."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lowering_helpers import lower_text, run  # noqa: E402

from tritium import vocab  # noqa: E402
from tritium.ir import TensorType  # noqa: E402


@pytest.mark.parametrize("lang", sorted(vocab.TENSOR_DTYPES - {"trit"}))
def test_declared_input_dtype(lang):
    low = lower_text(f"""
model M {{
    forward(x: Tensor<{lang}, [2, 3]>) -> Tensor {{
        return x
    }}
}}""")
    f = low.module.function(low.entry)
    assert f.arg_types[0] == TensorType((2, 3), vocab.DTYPES[lang].ir)
    assert f.result_types[0] == f.arg_types[0]


@pytest.mark.parametrize("lang", ["float64", "int16", "int8", "uint8", "bfloat16", "float16"])
def test_cast_keeps_the_dtype_and_rounds_like_torch(lang):
    low = lower_text(f"""
model M {{
    forward(x: Tensor<float32, [2, 3]>) -> Tensor {{
        return cast(x * 3.0, "{lang}")
    }}
}}""")
    f = low.module.function(low.entry)
    assert f.result_types[0].dtype == vocab.DTYPES[lang].ir
    outs, xs, _ = run(low)
    if vocab.DTYPES[lang].kind == "int":
        np.testing.assert_array_equal(outs[0], np.trunc(xs[0] * 3.0).astype(outs[0].dtype))


def test_dtype_attribute_names_the_language_dtype():
    low = lower_text("""
model M {
    forward(x: Tensor<int16, [2]>) -> Tensor {
        if x.dtype == "int16" { return cast(x, "float64") } else { return float32(x) }
    }
}""")
    assert low.module.function(low.entry).result_types[0].dtype == "f64"


@pytest.mark.parametrize("method, lang", [("half", "float16"), ("double", "float64"),
                                          ("long", "int64")])
def test_torch_dtype_methods_are_conversions(method, lang):
    # the seed's mixed_precision: `x = x.half()` … `x = x.float()`
    low = lower_text(f"""
model M {{
    forward(x: Tensor<float32, [2, 3]>) -> Tensor {{
        let y = x.{method}()
        return {method}(y * 2)
    }}
}}""")
    assert low.module.function(low.entry).result_types[0].dtype == vocab.DTYPES[lang].ir
    outs, xs, _ = run(low)
    np.testing.assert_allclose(np.asarray(outs[0], dtype=np.float64),
                               np.asarray((xs[0].astype(outs[0].dtype) * 2), dtype=np.float64),
                               rtol=1e-3)
