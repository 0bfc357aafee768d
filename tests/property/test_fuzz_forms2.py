"""Fuzzing the forms given to `forms2` (issue 13, form 13): list methods, type aliases,
local and anonymous functions, `with no_grad()`, typed body constants.

* list programs: random method sequences on int lists; a program that checks prints what
  the same operations print in Python, and what the checker reports at compile time
  (E0960/E0961) is what Python raises;
* function programs: local functions reading random outer names, anonymous functions, nested
  ones; they check, format back to the same AST, generate a module the validator accepts
  (no nested `def`, no `lambda`), and compute what the same Python closures compute;
* token soup of these forms: diagnostics with known codes, never a traceback; what checks
  formats back to the same AST and generates a valid module.

The number of examples comes from TRITIUM_FUZZ_EXAMPLES (`make fuzz` runs 20,000 per target),
like tests/property/test_fuzz_hostile.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.check import check_source
from tritium.frontend.diagnostics import CODES

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz, run_main, soup_check  # noqa: E402
from fuzzing import round_trip as _round_trip


def _run_main(python: str) -> str:
    assert "lambda" not in python
    return run_main(python)

# ----------------------------------------------------------------------------- lists

small = st.integers(-3, 6)


@st.composite
def list_programs(draw) -> tuple[str, list[str], str | None]:
    """Statements on lists `xs` and `ys` with the lines Python prints, or the error code the
    first failing operation must get (E0960: pop; E0961: index/remove of a missing value)."""
    py: dict[str, list] = {"xs": draw(st.lists(small, max_size=4)),
                           "ys": draw(st.lists(small, max_size=3))}
    lines = [f"let xs = {py['xs']}", f"let ys = {py['ys']}"]
    printed: list[str] = []
    for _ in range(draw(st.integers(1, 10))):
        name = draw(st.sampled_from(["xs", "ys"]))
        lst = py[name]
        op = draw(st.sampled_from(["append", "extend", "insert", "pop", "pop_i", "remove",
                                   "index", "count", "reverse", "sort", "clear", "copy",
                                   "alias", "len"]))
        v = draw(small)
        if op == "append":
            lines.append(f"{name}.append({v})")
            lst.append(v)
        elif op == "extend":
            other = draw(st.lists(small, max_size=3))
            lines.append(f"{name}.extend({other})")
            lst.extend(other)
        elif op == "insert":
            lines.append(f"{name}.insert({v}, {v * 2})")
            lst.insert(v, v * 2)
        elif op in ("pop", "pop_i"):
            arg = "" if op == "pop" else str(v)
            lines.append(f"print({name}.pop({arg}))")
            try:
                printed.append(str(lst.pop(*([] if op == "pop" else [v]))))
            except IndexError:
                return "\n".join(["main {"] + ["    " + s for s in lines] + ["}"]) + "\n", \
                    printed, "E0960"
        elif op in ("remove", "index"):
            lines.append(f"print({name}.{op}({v}))" if op == "index" else f"{name}.remove({v})")
            try:
                r = getattr(lst, op)(v)
            except ValueError:
                return "\n".join(["main {"] + ["    " + s for s in lines] + ["}"]) + "\n", \
                    printed, "E0961"
            if op == "index":
                printed.append(str(r))
        elif op == "count":
            lines.append(f"print({name}.count({v}))")
            printed.append(str(lst.count(v)))
        elif op in ("reverse", "sort", "clear"):
            lines.append(f"{name}.{op}()")
            getattr(lst, op)()
        elif op == "copy":
            lines.append(f"{name} = {name}.copy()")
            py[name] = list(lst)
        elif op == "alias":
            other = "ys" if name == "xs" else "xs"
            lines.append(f"{other} = {name}")
            py[other] = lst
        else:
            lines.append(f"print(len({name}))")
            printed.append(str(len(lst)))
    lines.append("print(xs, ys)")
    printed.append(f"{py['xs']} {py['ys']}")
    body = "\n".join(["main {"] + ["    " + s for s in lines] + ["}"]) + "\n"
    return body, printed, None


@fuzz(300)
@given(list_programs())
def test_fuzz_list_methods_agree_with_python(case) -> None:
    src, printed, error = case
    result = check_source(src)
    assert all(d.code in CODES for d in result.diagnostics)
    if error is not None:
        # known at compile time: that error; else (an alias, say) the run raises it
        if result.errors:
            assert [d.code for d in result.errors] == [error], (src, result.errors)
            return
        try:
            _run_main(generate(result))
        except (IndexError, ValueError):
            return
        raise AssertionError(f"the run did not fail as Python does:\n{src}")
    assert result.ok, (src, [(d.code, d.message) for d in result.errors])
    _round_trip(src)
    assert _run_main(generate(result)) == "".join(p + "\n" for p in printed), src


# ----------------------------------------------------------------------------- functions

OUTER = ["a", "b", "k"]


@st.composite
def function_programs(draw) -> tuple[str, float]:
    """`fn outer(a, b)` with `let k`, local functions reading random outer names (and calling
    earlier ones), anonymous functions; the value Python computes for `outer(2.0, 3.0)`."""
    env = {"a": 2.0, "b": 3.0, "k": float(draw(st.integers(1, 4)))}
    lines = [f"    let k = {env['k']}"]
    funcs: dict[str, object] = {}
    order: list[str] = []
    for i in range(draw(st.integers(1, 4))):
        name = f"g{i}"
        reads = draw(st.lists(st.sampled_from(OUTER), max_size=2, unique=True))
        calls = draw(st.sampled_from([None, *order])) if order else None
        c = float(draw(st.integers(1, 3)))
        expr = " + ".join([f"z * {c}"] + reads)
        inner_calls = f"{calls}({expr})" if calls else expr
        form = draw(st.sampled_from(["fn", "let", "nested"]))
        if form == "fn":
            lines.append(f"    fn {name}(z: float) -> float {{\n        return {inner_calls}\n"
                         f"    }}")
        elif form == "let":
            lines.append(f"    let {name} = fn(z: float) -> float {{ return {inner_calls} }}")
        else:
            lines.append(f"    fn {name}(z: float) -> float {{\n"
                         f"        fn inner(w: float) -> float {{ return w + k }}\n"
                         f"        return inner({inner_calls}) - k\n    }}")

        def make(reads=reads, calls=calls, c=c):
            def f(z):
                v = z * c + sum(env[r] for r in reads)
                return funcs[calls](v) if calls else v
            return f
        funcs[name] = make()
        order.append(name)
    use = draw(st.lists(st.sampled_from(order), min_size=1, max_size=3))
    total = " + ".join(f"{n}({float(i)})" for i, n in enumerate(use))
    with_block = draw(st.booleans())
    if with_block:
        lines.append("    with no_grad() {\n        let total = " + total + "\n    }")
    else:
        lines.append(f"    let total = {total}")
    lines.append("    return total")
    expected = sum(funcs[n](float(i)) for i, n in enumerate(use))
    alias = draw(st.booleans())
    head = "type Num = float\n" if alias else ""
    num = "Num" if alias else "float"
    src = (head + f"fn outer(a: {num}, b: {num}) -> {num} {{\n" + "\n".join(lines) + "\n}\n"
           "main {\n    print(outer(2.0, 3.0))\n}\n")
    return src, expected


@fuzz(200)
@given(function_programs())
def test_fuzz_local_functions_compute_what_closures_compute(case) -> None:
    src, expected = case
    result = check_source(src)
    assert result.ok, (src, [(d.code, d.message) for d in result.errors])
    _round_trip(src)
    python = generate(result)
    assert "\n    def " not in python
    assert abs(float(_run_main(python)) - expected) < 1e-9, (src, expected)


# ----------------------------------------------------------------------------- soup

SOUP = ["type", "with", "fn", "let", "T", "=", "int", "float", "Tensor<float32, [?, 4]>",
        "no_grad()", "torch.no_grad()", "{", "}", "(", ")", "->", ":", ",", "\n", "x", "g",
        "return", "xs", ".append(1)", ".pop()", ".index(2)", "[1, 2]", "hidden: int = 2",
        "model M", "forward(x: Tensor[b, 4]) -> Tensor", "g(x)", "fn(z: Tensor) { z }",
        "main", "1.0", "+", "k"]


@fuzz(500)
@given(st.lists(st.sampled_from(SOUP), max_size=30))
def test_fuzz_form_soup_gives_diagnostics_never_tracebacks(parts: list[str]) -> None:
    soup_check(" ".join(parts))
