"""Checker: methods of a layer body (issue 13, helper seedc)."""

from __future__ import annotations

from tritium.check import check_source


def codes(src: str) -> list[str]:
    return [d.code for d in check_source(src).errors]


def ok(src: str) -> None:
    r = check_source(src)
    assert r.ok, [(d.code, d.message, d.span.line if d.span else None) for d in r.errors]


def first(src: str):
    errs = check_source(src).errors
    assert errs, "expected an error"
    return errs[0]


# ----------------------------------------------------------------------------- methods

METHODS = """
layer Quant {
    params {
        bits: int = 4
    }
    param scale: Tensor[1] = ones([1])
    forward(x: Tensor) -> Tensor {
        return quantize_block(x, bits) + self.shift(x)
    }
    function quantize_block(block: Tensor, bits: int) -> Tensor {
        let max_val = 2 ** (bits - 1) - 1
        let s = max(abs(block)) / max_val
        let q = clamp(round(block / s), -max_val, max_val) * s
        if self.training {
            return q + (block - block.detach())
        }
        return q
    }
    method shift(x: Tensor) -> Tensor {
        return x * scale
    }
}
"""


def test_methods_of_a_layer_check():
    ok(METHODS)


def test_a_method_call_with_a_wrong_count_is_E0306():
    src = METHODS.replace("quantize_block(x, bits)", "quantize_block(x)")
    e = first(src)
    assert e.code == "E0306" and "quantize_block" in e.message


def test_a_method_call_with_an_unknown_name_is_E0307():
    src = METHODS.replace("quantize_block(x, bits)", "quantize_block(x, bitz: 2)")
    assert "E0307" in codes(src)


def test_a_method_result_type_is_checked_at_the_call():
    src = """
model M {
    layer fc: Linear { in_features: 4, out_features: 2 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 3] {
        return self.head(x)
    }
    fn head(x: Tensor) -> Tensor {
        return fc(x)
    }
}
"""
    assert "E0504" in codes(src)


def test_calling_a_method_the_body_does_not_have_is_E0305():
    src = METHODS.replace("self.shift(x)", "self.shfit(x)")
    e = first(src)
    assert e.code == "E0305" and "`shfit`" in e.message and "shift" in (e.help or "")
