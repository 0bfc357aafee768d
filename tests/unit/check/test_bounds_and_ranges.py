"""Compile-time bounds (E0312, E0106) and config value checks of builtin layers: generated
cases; what checks clean also runs (issue 11)."""

from __future__ import annotations

import operator
import time
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.check import bounds, check_source
from tritium.check.library import LAYERS

INT64 = st.integers(bounds.INT_MIN + 1, bounds.INT_MAX)
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
       "%": operator.mod, "**": operator.pow}


def _const(expr: str):
    text = f"model M {{\n    k: {expr}\n    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{ return x }}\n}}\n"
    return check_source(text, "m.tri")


@settings(max_examples=300, deadline=2000)
@given(st.one_of(INT64, st.integers(-70, 70)), st.one_of(INT64, st.integers(-70, 70)),
       st.sampled_from(sorted(OPS)))
def test_int_folding_is_exact_or_reported(a: int, b: int, op: str) -> None:
    if op in ("//", "%") and b == 0 or op == "**" and b < 0:
        return
    expr = f"({a}) {op} ({b})"
    result = _const(expr)
    codes = {d.code for d in result.errors}
    if op == "**" and abs(a) > 1 and b > 64:
        assert "E0312" in codes
        return
    exact = OPS[op](a, b)
    if bounds.INT_MIN <= exact <= bounds.INT_MAX:
        assert not codes, (expr, codes)
    else:
        assert codes == {"E0312"}, (expr, codes)


@pytest.mark.parametrize("expr", ["9 ** 9 ** 9", "2 ** 63", "10 ** 400.0", "2.0 ** 99999",
                                  "int(1e300)", "int(1e309)", "-(-9223372036854775807 - 1)"])
def test_huge_constants_are_reported(expr: str) -> None:
    assert any(d.code == "E0312" for d in _const(expr).errors)


@pytest.mark.parametrize("digits", [20, 4300, 4301, 100_000])
def test_long_integer_literals(digits: int) -> None:
    assert [d.code for d in _const("9" * digits).errors][:1] == ["E0106"]


def test_largest_int_literal_is_fine() -> None:
    assert _const(str(bounds.INT_MAX)).ok


@pytest.mark.parametrize("n,ok", [(1024, True), (1025, False), (10 ** 9, False)])
def test_repetition_bound(n: int, ok: bool) -> None:
    text = (f"model M {{\n    layer r: ReLU[{n}]\n"
            "    forward(x: Tensor[b, 4]) -> Tensor[b, 4] { return r(x) }\n}\n")
    result = check_source(text, "m.tri")
    assert result.ok == ok
    if not ok:
        assert "E0312" in {d.code for d in result.errors}


def test_nested_repetitions_cannot_multiply() -> None:
    text = """block B {
    params { n: int }
    layer r: ReLU[1000]
    forward(x: Tensor[b, n]) -> Tensor[b, n] { return r(x) }
}
model M {
    layer r: B[1000] { n: 4 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] { return r(x) }
}
"""
    assert "E0312" in {d.code for d in check_source(text, "m.tri").errors}


# ----------------------------------------------------------------------------- config values

def _layer(kind: str, cfg: str, shape: str = "[b, 4]") -> str:
    return (f"model M {{\n    layer l: {kind} {{ {cfg} }}\n"
            f"    forward(x: Tensor{shape}) -> Tensor {{ return l(x) }}\n}}\n")


_REQUIRED = {n: ", ".join(f"{k}: 4" for k, key in spec.keys.items()
                          if key.required and key.type in ("int", "pair", "ints"))
             for n, spec in LAYERS.items()}
_NUM_KEYS = sorted((n, k) for n, spec in LAYERS.items() for k, key in spec.keys.items()
                   if key.type in ("int", "float"))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_NUM_KEYS), st.sampled_from(["0..3", "1e309", "-1e309", "2147483648",
                                                    "[1, 2]", '"3"']))
def test_numeric_keys_refuse_ranges_infinities_and_giants(nk, value: str) -> None:
    kind, key = nk
    req = _REQUIRED[kind]
    parts = [p for p in req.split(", ") if p and not p.startswith(key + ":")]
    cfg = ", ".join(parts + [f"{key}: {value}"])
    result = check_source(_layer(kind, cfg), "m.tri")
    assert not result.ok, (kind, key, value)
    assert {d.code for d in result.errors} & {"E0308", "E0309", "E0312"}


@pytest.mark.parametrize("kind,key,bad,good", [("Dropout", "p", "7.5", "1.0"),
                                               ("BatchNorm1d", "momentum", "1.5", "1.0"),
                                               ("MultiheadAttention", "dropout", "2.0", "0.5")])
def test_per_key_ranges(kind: str, key: str, bad: str, good: str) -> None:
    req = {"BatchNorm1d": "num_features: 4, ", "MultiheadAttention":
           "embed_dim: 4, num_heads: 2, "}.get(kind, "")
    shape = "[b, 3, 4]" if kind == "MultiheadAttention" else "[b, 4]"
    assert not check_source(_layer(kind, f"{req}{key}: {bad}", shape), "m.tri").ok
    assert check_source(_layer(kind, f"{req}{key}: {good}", shape), "m.tri").ok


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(-6, 6))
def test_softmax_dim_checks_what_runs(rank: int, dim: int) -> None:
    shape = "[" + ", ".join(["2"] * rank) + "]"
    result = check_source(_layer("Softmax", f"dim: {dim}", shape), "m.tri")
    assert result.ok == (-rank <= dim < rank)
    if result.ok:
        torch = pytest.importorskip("torch")
        mod = types.ModuleType("g")
        exec(compile(generate(result), "g", "exec"), mod.__dict__)
        assert mod.M()(torch.randn(*([2] * rank))).shape == (2,) * rank


_FLOAT_LAYERS = sorted(n for n, s in LAYERS.items() if not s.int_input)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(_FLOAT_LAYERS), st.sampled_from(["int64", "int32", "int8", "bool"]))
def test_integer_tensors_into_float_layers(kind: str, dtype: str) -> None:
    text = (f"model M {{\n    layer l: {kind} {{ {_REQUIRED[kind]} }}\n"
            f"    forward(x: Tensor<{dtype}, [b, 4]>) -> Tensor {{ return l(x) }}\n}}\n")
    result = check_source(text, "m.tri")
    assert "E0404" in {d.code for d in result.errors}


@pytest.mark.parametrize("quantizer", ["ste_quantize(h, threshold: 0.3)", "ternary_quantize(h)",
                                       "clipped_ste_quantize(h)", "threshold_quantize(h, 0.2)"])
def test_a_quantizers_float_output_feeds_a_float_layer(quantizer: str) -> None:
    """Ternary in value, float32 in storage: a ternary layer takes it (was E0404)."""
    text = ("model M {\n    layer fc1: TernaryLinear { in_features: 8, out_features: 4 }\n"
            "    layer fc2: TernaryLinear { in_features: 4, out_features: 2 }\n"
            "    forward(x: Tensor[b, 8]) -> Tensor[b, 2] {\n"
            f"        let h = relu(fc1(x))\n        return fc2({quantizer})\n    }}\n}}\n")
    result = check_source(text, "m.tri")
    assert result.ok, [d.message for d in result.errors]


def test_a_symbolic_int_that_doubles_per_iteration_is_bounded() -> None:
    """Fuzz finding (a worker at 23 GB): `s` depends on the unknown `n` and holds itself twice
    after each iteration, so its symbolic text doubled up to the unroll limit."""
    text = ("fn f(x: Tensor[2, 4], n: int) -> Tensor {\n    let s = 1\n    let y = x\n"
            "    while true {\n        s += (3 - (s - (n - -2)))\n"
            "        assert s != 2, s\n    }\n    return y\n}\n")
    t0 = time.thread_time()
    check_source(text, "m.tri")
    assert time.thread_time() - t0 < 30


def test_weights_are_bounded() -> None:
    text = _layer("Linear", "in_features: 2000000000, out_features: 2000000000")
    assert "E0312" in {d.code for d in check_source(text, "m.tri").errors}
    text = ("fn f() -> Tensor { return zeros([100000000000, 10]) }\n")
    assert "E0312" in {d.code for d in check_source(text, "m.tri").errors}


def test_unused_repetitions_are_counted_too() -> None:
    """Constructing a module builds every declared layer, called or not."""
    text = """block C {
    params { n: int }
    layer r: ReLU[1000]
    forward(x: Tensor[b, n]) -> Tensor[b, n] { return x }
}
model M {
    layer r: C[1000] { n: 4 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] { return x }
}
"""
    assert "E0312" in {d.code for d in check_source(text, "m.tri").errors}


@given(st.integers(-2**64, 2**64), st.integers(-2**64, 2**64),
       st.integers(-2**64, 2**64).filter(lambda s: s != 0))
@settings(max_examples=300, deadline=None)
def test_range_len_counts_like_len(lo: int, hi: int, step: int) -> None:
    r = range(lo, hi, step)
    expect = len(r) if abs(hi - lo) // abs(step) < 2**62 else None
    n = bounds.range_len(r)
    assert n >= 0 and (expect is None or n == expect)
    if n:
        assert r[0] == lo and (lo + (n - 1) * step in r) and (lo + n * step not in r)


@pytest.mark.parametrize("it", ["(0 - 9223372036854775807)..=(0 + 0)",
                                "range(0 - 9223372036854775807, 9223372036854775807)",
                                "9223372036854775807..(0 - 9223372036854775807) step -1"])
def test_ranges_longer_than_ssize_t_check_and_compile(it: str) -> None:
    # fuzz finding: len() of such a range raised OverflowError inside the checker
    src = (f"fn f(x: Tensor[2, 4]) -> Tensor {{\n    let y = x\n    for i in {it} {{ y = y + 1.0 }}"
           f"\n    let n = len([j for j in {it}])\n    return y\n}}\n")
    result = check_source(src, "r.tri")
    assert result.ok, [d.message for d in result.diagnostics]
    generate(result)


GROWING = """
fn f(x: Tensor[2, 4]) -> Tensor {
    let xs = [1, 2]
    let zs = [xs]
    for i in 0..60 {
        BODY
    }
    print(len(xs))
    return x
}
"""


@pytest.mark.parametrize("body,code", [
    ("xs.extend(xs)", "E0312"),                           # doubles: bounded by MAX_SEQUENCE
    ("let ys = xs.copy()\n        xs.extend([ys])", None),  # the nesting doubles as a tree
    ("xs.append([xs.copy(), xs.copy()])", None),
    ("xs = [xs, xs]\n        xs.append(1)", None),
])
def test_lists_grown_in_a_loop_stay_bounded(body: str, code: str | None, tmp_path) -> None:
    """Fuzz finding (the checker took 16 GB and was killed): a list method in an unrolled
    loop grew a list past every bound, and a nested list shared as a graph was walked as a
    tree. Checked in a subprocess with a memory cap and a time limit, so a regression fails
    instead of taking the machine down."""
    import subprocess
    import sys
    src = tmp_path / "g.tri"
    src.write_text(GROWING.replace("BODY", body))
    script = ("import resource, sys\n"
              "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
              "from tritium.check import check_file\n"
              "r = check_file(sys.argv[1])\n"
              "print(' '.join(d.code for d in r.errors))\n")
    out = subprocess.run([sys.executable, "-c", script, str(src)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ([code] if code else [])


@pytest.mark.parametrize(("power", "codes"), [
    ("x.shape[0] ** -1", ["E0402"]),      # a run-time size: Python's result is a float
    ("x.shape[0] ** (0 - 2)", ["E0402"]),
    ("2 ** -1", ["E0402"]),               # the constant folds to 0.5
    ("x.shape[0] ** 2", []),
])
def test_a_negative_power_of_an_integer_is_a_float(power: str, codes: list[str]) -> None:
    # `x.shape[0] ** -1` was typed int, so `let k: int = …` checked and then held 0.333
    src = (f"layer L(x: Tensor<float32, [batch, 4]>) -> Tensor {{\n"
           f"    let k: int = {power}\n    return x * k\n}}\n")
    assert [d.code for d in check_source(src, "p.tri").errors] == codes
