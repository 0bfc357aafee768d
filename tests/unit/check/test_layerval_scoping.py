"""Checker: lexical scoping of top-level variables and nested functions (issue 13, helper
seedc)."""

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


# ----------------------------------------------------------------------------- scoping

def test_lexical_scoping_of_top_level_lets():
    ok("""
let x = 10

fn outer() {
    let y = 20

    fn inner() {
        let z = 30
        return x + y + z
    }

    return inner()
}
""")


def test_shadowing_let_makes_a_local():
    ok("""
let x = 10
fn test() {
    let x = 20
    return x
}
""")


def test_reading_before_a_shadowing_let_is_reported():
    e = first("""
let x = 10
fn f() -> int {
    let y = x
    let x = 2
    return x + y
}
print(f())
""")
    assert e.code == "E0304" and "`x`" in e.message


def test_a_call_before_the_let_reports_the_name_at_the_call():
    e = first("""
fn f() -> int { return x * 2 }
print(f())
let x = 3
""")
    assert e.code == "E0304" and e.span.line == 3


def test_types_flow_from_the_top_level_into_the_function():
    # a top-level tensor read in a function: its shape reaches the result of the call
    src = """
let w = ones([2, 3])
fn f(v: Tensor) -> Tensor { return v @ w }
let y: Tensor[4, 3] = f(ones([4, 2]))
"""
    ok(src)
    e = first(src.replace("Tensor[4, 3]", "Tensor[4, 4]"))
    assert e.code == "E0401" and "[4, 3]" in e.message


def test_a_model_does_not_see_top_level_lets():
    e = first("""
let k = 2.0
model M {
    forward(x: Tensor[b, 2]) -> Tensor[b, 2] { return x * k }
}
""")
    assert e.code == "E0304" and "models, blocks and layers" in (e.help or "")
