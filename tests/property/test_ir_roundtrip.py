"""Property tests: random well-formed modules print, parse and print back identically,
parse to a structurally equal module, and verify. TRITIUM_FUZZ_EXAMPLES scales the runs."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.ir import (
    Block,
    Builder,
    Dense,
    InferError,
    LayerDef,
    Module,
    ParamDef,
    QuantSpec,
    ScalarType,
    SubLayer,
    TensorType,
    Value,
    VerifyError,
    new_function,
    parse_module,
    print_module,
    structurally_equal,
    verify,
)

EXAMPLES = int(os.environ.get("TRITIUM_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
LIGHT = settings(max_examples=max(EXAMPLES // 3, 10), deadline=None, suppress_health_check=list(HealthCheck))

names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in ("true", "false", "none", "inf", "nan", "tensor", "dense"))
kinds = st.from_regex(r"[A-Z][A-Za-z0-9]{0,6}", fullmatch=True)  # builtin kinds: never a layer name
dims = st.one_of(st.integers(1, 4), st.sampled_from(["n", "m", "batch"]), st.none())
floats = st.floats(allow_nan=False, width=32)
scalars = st.one_of(st.integers(-2**40, 2**40), floats, st.booleans(), st.text(max_size=8), st.none())
attrs = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)), max_leaves=6)
tensor_types = st.builds(lambda shape, dt: TensorType(tuple(shape), dt),
                         st.lists(dims, max_size=3), st.sampled_from(["f32", "f16", "bf16"]))


@st.composite
def static_types(draw: st.DrawFn, dtype: str) -> TensorType:
    return TensorType(tuple(draw(st.lists(st.integers(1, 3), max_size=2))), dtype)


UNARY = ["relu", "neg", "exp", "tanh", "sigmoid", "abs", "silu", "relu6"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]


def _pick(draw: st.DrawFn, values: list[Value], pred) -> Value | None:  # type: ignore[no-untyped-def]
    ok = [v for v in values if pred(v)]
    return draw(st.sampled_from(ok)) if ok else None


@st.composite
def ops(draw: st.DrawFn, b: Builder, values: list[Value], params: list[ParamDef], depth: int) -> None:
    """Append a random op (type-correct by construction) and record its results."""
    kind = draw(st.sampled_from(["unary", "binary", "const", "dense", "reduce", "transpose",
                                 "softmax", "quant", "cmp", "dim", "param", "if", "gelu"]))
    is_t = lambda v: isinstance(v.type, TensorType)  # noqa: E731
    try:
        if kind == "unary" and (x := _pick(draw, values, is_t)):
            values.append(b.op(draw(st.sampled_from(UNARY)), x))
        elif kind == "gelu" and (x := _pick(draw, values, is_t)):
            values.append(b.gelu(x, approximate=draw(st.sampled_from(["none", "tanh"]))))
        elif kind == "binary" and (x := _pick(draw, values, is_t)):
            y = _pick(draw, values, lambda v: v.type == x.type or v.type == ScalarType("f32"))
            values.append(b.op(draw(st.sampled_from(BINARY)), x, y if y is not None else x))
        elif kind == "const":
            values.append(b.constant(draw(floats), ScalarType("f32")))
        elif kind == "dense":
            t = draw(static_types(draw(st.sampled_from(["f32", "trit", "i32", "bool"]))))
            n = t.numel() or 0
            el = {"f32": floats, "trit": st.integers(-1, 1), "i32": st.integers(-2**31, 2**31 - 1),
                  "bool": st.booleans()}[t.dtype]
            data = draw(st.lists(el, min_size=n, max_size=n))
            values.append(b.constant(Dense(tuple(data)) if draw(st.booleans()) or not data else data[0], t))
        elif kind == "reduce" and (x := _pick(draw, values, lambda v: is_t(v) and v.type.rank > 0)):
            d = draw(st.lists(st.integers(-x.type.rank, x.type.rank - 1), max_size=1))
            values.append(b.op(draw(st.sampled_from(["sum", "mean", "max"])), x, dims=d, keepdim=draw(st.booleans())))
        elif kind == "transpose" and (x := _pick(draw, values, lambda v: is_t(v) and v.type.rank > 1)):
            values.append(b.transpose(x, dim0=0, dim1=x.type.rank - 1))
        elif kind == "softmax" and (x := _pick(draw, values, lambda v: is_t(v) and v.type.rank > 0)):
            values.append(b.softmax(x, dim=-1))
        elif kind == "quant" and (x := _pick(draw, values, lambda v: is_t(v) and v.type.dtype == "f32" and v.type.rank > 0)):
            q, s = b.quantize_int8(x, per_channel=draw(st.booleans()))
            values.extend([q, s, b.dequantize(q, s)])
        elif kind == "cmp" and (x := _pick(draw, values, is_t)):
            c = b.gt(x, b.constant(0.0, ScalarType("f32")))
            values.append(b.select(c, x, b.neg(x)))
        elif kind == "dim" and (x := _pick(draw, values, lambda v: is_t(v) and v.type.rank > 0)):
            values.append(b.dim(x, dim=0))
        elif kind == "param" and params:
            p = draw(st.sampled_from(params))
            values.append(b.param(p.name, p.type))
        elif kind == "if" and depth < 2 and (x := _pick(draw, values, is_t)):
            cond = b.constant(draw(st.booleans()), ScalarType("bool"))
            op = b.create("if", [cond], {}, [x.type], [Block(), Block()])
            for region in op.regions:
                inner = Builder(region)
                local = list(values)
                for _ in range(draw(st.integers(0, 3))):
                    draw(ops(inner, local, params, depth + 1))
                inner.yield_(draw(st.sampled_from([v for v in local if v.type == x.type])))
            values.append(op.results[0])
    except InferError:
        pass  # e.g. a mean over a trit tensor: skip the op


@st.composite
def functions(draw: st.DrawFn, params: list[ParamDef], name: str):  # type: ignore[no-untyped-def]
    arg_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    f, b = new_function(name, [(n, draw(tensor_types)) for n in arg_names])
    values = list(f.args)
    for _ in range(draw(st.integers(0, 10))):
        draw(ops(b, values, params, 0))
    outs = draw(st.lists(st.sampled_from(values), min_size=0, max_size=3))
    b.ret(*outs)
    f.result_types = [v.type for v in outs]
    return f


@st.composite
def modules(draw: st.DrawFn) -> Module:
    m = Module()
    item_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    for name in item_names:
        if draw(st.booleans()):
            pnames = draw(st.lists(st.from_regex(r"[a-z]{1,3}(\.[a-z]{1,3})?", fullmatch=True), max_size=3, unique=True))
            params = [ParamDef(p, draw(tensor_types), draw(st.one_of(st.none(), names)),
                               draw(st.one_of(st.none(), st.builds(QuantSpec, st.sampled_from(["twn", "absmean"]),
                                                                   st.booleans(), st.sampled_from(["t2", "t1.6", "none"])))))
                      for p in pnames]
            subs = [SubLayer(s, draw(kinds), draw(st.dictionaries(names, attrs, max_size=2)))
                    for s in draw(st.lists(names.filter(lambda s, taken=tuple(pnames): s not in taken), max_size=2, unique=True))]
            used = set(pnames) | {s.name for s in subs}
            fnames = draw(st.lists(names.filter(lambda s, taken=frozenset(used): s not in taken), min_size=1, max_size=2, unique=True))
            fs = [draw(functions(params, fn)) for fn in fnames]
            m.items.append(LayerDef(draw(st.sampled_from(["layer", "model", "block"])), name,
                                    draw(st.dictionaries(names, attrs, max_size=3)), params, subs, fs))
        else:
            m.items.append(draw(functions([], name)))
    return m


@FUZZ
@given(modules())
def test_print_parse_roundtrip(m: Module) -> None:
    verify(m)
    text = print_module(m)
    parsed = parse_module(text)
    assert print_module(parsed) == text
    assert structurally_equal(parsed, m)
    verify(parsed)


@LIGHT
@given(modules())
def test_clone_is_equal_and_independent(m: Module) -> None:
    from tritium.ir import clone_module

    c = clone_module(m)
    assert structurally_equal(c, m) and print_module(c) == print_module(m)
    verify(c)
    originals = {id(op) for op in m.walk()}
    assert not any(id(op) in originals for op in c.walk())


@LIGHT
@given(modules(), st.data())
def test_verifier_catches_use_before_def(m: Module, data: st.DataObject) -> None:
    """Moving a use above its definition (or out of its region) never goes unnoticed."""
    fs = [f for _, f in m.all_functions() if any(op.operands and op.operands[0].op for op in f.walk())]
    if not fs:
        return
    f = data.draw(st.sampled_from(fs))
    users = [op for op in f.walk() if op.operands and op.operands[0].op is not None]
    user = data.draw(st.sampled_from(users))
    definer = user.operands[0].op
    # Move `user` right before the op that defines its first operand.
    user.parent.remove(user)
    anchor = definer
    while anchor.parent is not None and anchor.parent.parent_op is not None and data.draw(st.booleans()):
        anchor = anchor.parent.parent_op  # or before an enclosing op
    anchor.parent.insert_before(anchor, user)
    with pytest.raises(VerifyError):
        verify(m)
