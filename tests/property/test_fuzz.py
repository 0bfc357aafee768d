"""Fuzzing the front end and the checker: whatever the input, the only outcomes are a
SourceFile or a DiagnosticError (reading bytes) and a CheckResult (checking text). Never a
RecursionError, IndexError, KeyError, … and never a hang.

The number of examples per test comes from TRITIUM_FUZZ_EXAMPLES (default 200; `make fuzz`
runs 20,000).
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import CheckResult, check_source
from tritium.check.builtins import FUNCTIONS
from tritium.check.library import LAYERS
from tritium.frontend.diagnostics import CODES, DiagnosticError
from tritium.frontend.formatter import format_source
from tritium.frontend.lexer import KEYWORDS, OPERATORS
from tritium.frontend.parser import parse
from tritium.frontend.source import SourceFile, decode_source

N = int(os.environ.get("TRITIUM_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=N, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.tri")) + sorted(
    (Path(__file__).parent / "data").glob("*.tri"))
EXAMPLE_TEXTS = [p.read_text(encoding="utf-8") for p in EXAMPLES]

# Everything the lexer knows, plus names the checker knows, plus a few broken pieces.
TOKENS = sorted(KEYWORDS) + OPERATORS + sorted(LAYERS) + sorted(FUNCTIONS) + [
    "x", "y", "W", "batch", "in_features", "out_features", "training", "performance",
    "quantization", "params", "repeat", "forward", "Tensor", "TernaryTensor", "trit", "int",
    "float16", "bfloat16", "str", "0", "1", "64", "1_000", "0.5", "1e-3", "2.5E+4", ".5", "1t",
    "-1t", "1e999", "1e", "0x1F", '"twn"', "'s'", '"\\n\\u{1F600}"', '"unterminated', '"\\q"',
    "// c", "# c", "/* c */", "/* open", "`", "$", "!", "&", "é", "\t", "\r", "\\",
]

_TOKEN_RE = re.compile(r"\s+|\w+|\"[^\"\n]*\"|//[^\n]*|#[^\n]*|/\*.*?\*/|.", re.S)


# Checker crashes found by this fuzzer and not fixed yet, each as (exception type, checker
# function it escapes from): the fuzz targets set them aside so that they keep looking for new
# ones. Add one together with a minimized case in KNOWN_CRASH_REPROS below (marked
# xfail(strict=True) until it is fixed). Empty: every crash found so far is fixed.
KNOWN_CHECKER_CRASHES: set[tuple[str, str]] = set()


def _crash_site(exc: BaseException) -> tuple[str, str]:
    tb = exc.__traceback__
    func = ""
    while tb is not None:
        if "tritium/check" in tb.tb_frame.f_code.co_filename.replace(os.sep, "/"):
            func = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return type(exc).__name__, func


def assert_check_result(text: str, allow_known: bool = True) -> CheckResult | None:
    try:
        result = check_source(text, "<fuzz>")
    except Exception as exc:
        if allow_known and _crash_site(exc) in KNOWN_CHECKER_CRASHES:
            return None
        raise
    assert isinstance(result, CheckResult)
    for d in result.diagnostics:
        assert d.code in CODES, f"diagnostic code {d.code} is not in CODES"
        assert d.message
    if result.ok:
        assert_compiles_and_loads(result)
    return result


def assert_compiles_and_loads(result: CheckResult) -> None:
    """A program that checks clean compiles to a module that passes validation and loads
    (defining its classes runs no program code)."""
    python = generate(result)
    validate(python)
    mod = types.ModuleType("tritium_fuzz_generated")
    exec(compile(python, "<fuzz>", "exec"), mod.__dict__)
    for name in mod.__all__:
        assert isinstance(getattr(mod, name), type)


@contextmanager
def deep_recursion(limit: int = 50000) -> Iterator[None]:
    """Comparing two ASTs 10,000 levels deep (a long `a + b + …`) recurses that deep."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def assert_formatter_consistent(text: str) -> None:
    """When the text parses cleanly, formatting it keeps its AST; otherwise it raises
    DiagnosticError (and nothing else)."""
    try:
        out = format_source(text)
    except DiagnosticError:
        return
    again = format_source(out)
    with deep_recursion():
        assert parse(out)[0] == parse(text)[0]
    assert again == out


# ----------------------------------------------------------------------------- raw bytes

@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        src = decode_source(data, "<fuzz>")
    except DiagnosticError as err:
        assert err.diagnostics and err.diagnostics[0].code in CODES
        return
    assert isinstance(src, SourceFile)
    assert_check_result(src.text)


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_random_text(text: str) -> None:
    try:
        src = decode_source(text.encode("utf-8", "surrogatepass"), "<fuzz>")
    except DiagnosticError:
        return
    assert_check_result(src.text)
    assert_formatter_consistent(src.text)


# ----------------------------------------------------------------------------- token soup

@st.composite
def token_streams(draw) -> str:
    toks = draw(st.lists(st.sampled_from(TOKENS), max_size=80))
    seps = draw(st.lists(st.sampled_from([" ", " ", " ", "\n", "", "\n\n    "]),
                         min_size=len(toks), max_size=len(toks)))
    return "".join(t + s for t, s in zip(toks, seps))


@FUZZ
@given(token_streams())
def test_fuzz_token_streams(text: str) -> None:
    assert_check_result(text)
    assert_formatter_consistent(text)


@st.composite
def framed_token_streams(draw) -> str:
    """Token soup inside a plausible frame, so it reaches deeper into the parser/checker."""
    inner = draw(token_streams())
    frame = draw(st.sampled_from([
        "model M {{\n    {}\n}}\n",
        "model M {{\n    layer fc: TernaryLinear {{ {} }}\n}}\n",
        "block B {{\n    params {{ c: int }}\n    fn forward(x: Tensor) -> Tensor {{\n"
        "        {}\n    }}\n}}\n",
        "fn f(x: Tensor[batch, 64]) -> Tensor {{\n    return {}\n}}\n",
        "layer L(w: TernaryTensor<trit, [4, 4]>, x: Tensor<float32, [?, 4]>) {{\n    {}\n}}\n",
    ]))
    return frame.format(inner)


@FUZZ
@given(framed_token_streams())
def test_fuzz_framed_token_streams(text: str) -> None:
    assert_check_result(text)
    assert_formatter_consistent(text)


# ----------------------------------------------------------------------------- mutated examples

@st.composite
def mutated_examples(draw) -> str:
    text = draw(st.sampled_from(EXAMPLE_TEXTS))
    by_tokens = draw(st.booleans())
    pieces = _TOKEN_RE.findall(text) if by_tokens else list(text)
    for _ in range(draw(st.integers(1, 6))):
        if not pieces:
            break
        n = len(pieces)
        i = draw(st.integers(0, n - 1))
        j = draw(st.integers(i, min(n, i + 12)))
        op = draw(st.integers(0, 4))
        if op == 0:
            del pieces[i:j]
        elif op == 1:
            pieces[i:i] = pieces[i:j]
        elif op == 2:
            k = draw(st.integers(0, n - 1))
            pieces[i], pieces[k] = pieces[k], pieces[i]
        elif op == 3:
            pieces[i:j] = [draw(st.sampled_from(TOKENS))]
        else:
            k = draw(st.integers(0, n - 1))
            pieces[k:k] = pieces[i:j]
    return "".join(pieces)


@FUZZ
@given(mutated_examples())
def test_fuzz_mutated_examples(text: str) -> None:
    assert_check_result(text)
    assert_formatter_consistent(text)


def test_examples_are_clean() -> None:
    """The unmutated examples are the fuzzer's seeds; they must check without errors."""
    assert EXAMPLES
    for path, text in zip(EXAMPLES, EXAMPLE_TEXTS):
        if path.parent.name == "examples":
            result = assert_check_result(text, allow_known=False)
            assert result is not None and result.ok, \
                f"{path.name}: {[d.message for d in result.errors]}"


# ----------------------------------------------------------------------------- deep nesting

DEPTH = 1000

DEEP = {
    "parens": "fn f() {\n    return " + "(" * DEPTH + "1" + ")" * DEPTH + "\n}\n",
    "brackets": "fn f() {\n    return " + "[" * DEPTH + "1" + "]" * DEPTH + "\n}\n",
    "dicts": "model M {\n    d: " + "{a: " * DEPTH + "1" + "}" * DEPTH + "\n}\n",
    "calls": "fn f() {\n    return " + "relu(" * DEPTH + "x" + ")" * DEPTH + "\n}\n",
    "indexes": "fn f() {\n    return x" + "[0" * DEPTH + "]" * DEPTH + "\n}\n",
    "ifs": "fn f(x: int) {\n" + "if x {\n" * DEPTH + "return 1\n" + "}\n" * DEPTH + "}\n",
    "fors": "fn f(n: int) {\n" + "for i in 0..n {\n" * DEPTH + "x = i\n" + "}\n" * DEPTH + "}\n",
    "else_ifs": "fn f(x: int) {\n    if x == 0 { return 0 }"
                + "".join(f" else if x == {i} {{ return {i} }}" for i in range(1, DEPTH))
                + "\n    return 1\n}\n",
    "unary_minus": "fn f() {\n    return " + "-" * DEPTH + "1\n}\n",
    "unary_minus_spaced": "fn f() {\n    return " + "- " * DEPTH + "x\n}\n",
    "not": "fn f() {\n    return " + "not " * DEPTH + "true\n}\n",
    "power": "fn f() {\n    return " + "2 ** " * DEPTH + "2\n}\n",
    "conditional": "fn f() {\n    return " + "1 if c else " * DEPTH + "0\n}\n",
    "attrs": "fn f() {\n    return x" + ".shape" * DEPTH + "\n}\n",
    "long_sum": "fn f() {\n    return " + " + ".join(["1"] * 10 * DEPTH) + "\n}\n",
    "long_and": "fn f() {\n    return " + " and ".join(["true"] * 10 * DEPTH) + "\n}\n",
    "blocks": "model M " + "{ " * DEPTH + "}" * DEPTH + "\n",
    "unclosed": "model M {\n" + "fn f() { (" * DEPTH + "\n",
    "types": "fn f(x: " + "Tensor<" * DEPTH + "float32" + ">" * DEPTH + ") { return x }\n",
    "dims": "fn f(x: Tensor[" + "(" * DEPTH + "1" + ")" * DEPTH + "]) { return x }\n",
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_fuzz_deep_nesting_check(name: str) -> None:
    text = DEEP[name]
    result = assert_check_result(text, allow_known=False)
    assert result is not None
    if name in ("parens", "brackets", "dicts", "calls", "indexes", "ifs", "fors", "else_ifs",
                "unary_minus", "unary_minus_spaced", "not", "power", "conditional", "dims",
                "attrs"):
        assert any(d.code == "E0203" for d in result.errors), f"{name}: nesting not reported"
    if name in ("unclosed", "types", "blocks"):
        assert any(d.code.startswith("E02") for d in result.errors)


@pytest.mark.parametrize("name", sorted(DEEP))
def test_fuzz_deep_nesting_parse_and_format(name: str) -> None:
    text = DEEP[name]
    program, diagnostics, _ = parse(text)
    assert isinstance(program.items, list)
    if name in ("long_sum", "long_and"):
        assert not diagnostics, f"{name}: a long operator chain is not nesting"
    if name == "attrs":   # a postfix chain nests (the generated Python nests one call a step)
        assert [d.code for d in diagnostics] == ["E0203"]
    assert_formatter_consistent(text)


# ----------------------------------------------------------------------------- known crashes

KNOWN_CRASH_REPROS = [
    pytest.param(text, id=ident) for text, ident in [
        ("block B {\n    param\n}\nmodel T {\n    layer blocks: B[2] { }\n"
         "    forward(t: Tensor) -> Tensor { return blocks(t) }\n}\n",
         "forward_of-BlockDef-without-params"),
        ("layer J() {\n    let W: y = random_ternary([])\n}\n", "refine-AnyT-shape"),
        ("block k{/{}\n layer conv1:TernaryConv2d{s:c s:t kernel_size:3 e:e}\n"
         "d(x:Tensor[n,b,c,h,w])->r{if s{}\n((conv1(x)))}", "conv2d-rank5-unpack"),
    ]
]


@pytest.mark.parametrize("text", KNOWN_CRASH_REPROS)
def test_fuzzer_found_crashes_stay_fixed(text: str) -> None:
    """Minimized checker crashes the fuzzer found; each now gives diagnostics."""
    assert assert_check_result(text, allow_known=False) is not None
