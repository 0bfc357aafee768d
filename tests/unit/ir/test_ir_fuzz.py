"""Robustness: arbitrary operands/attributes make infer_type raise InferError only, and
arbitrary text makes the parser raise ParseError only (never another exception)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.ir import (
    OPS,
    Dense,
    InferError,
    ParseError,
    ScalarType,
    TensorType,
    infer_type,
    parse_module,
)
from tritium.ir.types import DTYPES, SCALAR_DTYPES

EXAMPLES = int(os.environ.get("TRITIUM_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

dims = st.one_of(st.integers(0, 6), st.sampled_from(["n", "m"]), st.none())
types = st.one_of(
    st.builds(lambda s, d: TensorType(tuple(s), d), st.lists(dims, max_size=4), st.sampled_from(DTYPES)),
    st.builds(ScalarType, st.sampled_from(SCALAR_DTYPES)),
)
leaf = st.one_of(st.integers(-3, 200), st.floats(allow_nan=False), st.booleans(), st.none(),
                 st.sampled_from(["none", "relu", "twn", "t2", "t1.6", "f32", "int8", "tanh", "x"]),
                 st.builds(lambda xs: Dense(tuple(xs)), st.lists(st.integers(-1, 1), max_size=3)))
values = st.one_of(leaf, st.lists(st.integers(-3, 5), max_size=4), st.lists(leaf, max_size=2))


@st.composite
def attr_dicts(draw: st.DrawFn, name: str) -> dict:
    keys = list(OPS[name].attrs) + ["bogus"]
    chosen = draw(st.lists(st.sampled_from(keys), max_size=len(keys), unique=True))
    return {k: draw(values) for k in chosen}


@FUZZ
@given(st.data())
def test_infer_type_raises_only_infer_error(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(OPS)))
    operands = data.draw(st.lists(types, max_size=6))
    attrs = data.draw(attr_dicts(name))
    try:
        out = infer_type(name, operands, attrs)
    except InferError:
        return
    assert all(isinstance(t, TensorType | ScalarType) for t in out)


FRAGMENTS = ["func", "@f", "(", ")", "{", "}", "->", ":", ",", "=", "%0", "%x", "tensor", "<", ">",
             "[", "]", "f32", "trit", "?", "n", "3", "-1.5e3", '"s"', "dense", "relu", "layer",
             "param", "sublayer", "@L.w", "return", "yield", "if", "true", "none", "//c\n", "\n", "$"]


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40), st.text(max_size=10))
def test_parser_raises_only_parse_error(fragments: list[str], noise: str) -> None:
    text = " ".join(fragments) + noise
    try:
        parse_module(text)
    except ParseError as e:
        assert e.line >= 1 and e.col >= 1
