"""Frontend of lexical scoping (issue 13, helper seedc): top-level variables read by
functions become parameters passed at every call (frontend.lift_globals)."""

from __future__ import annotations

from tritium.frontend import ast as A
from tritium.frontend.lift import program_names, rewrite
from tritium.frontend.lift_globals import lift_globals
from tritium.frontend.parser import parse


def lifted(src: str, main: bool = True) -> A.Program:
    """The program as the loader rewrites it (tritium.check._Loader.load)."""
    prog, diags, _ = parse(src)
    assert not diags
    taken: set[str] = set()
    assert not rewrite(prog, taken, main)
    if main:
        lift_globals(prog, taken | program_names(prog))
    return prog


def fn_named(prog, name):
    return next(i for i in prog.items if isinstance(i, A.FnDef) and i.name == name)


def test_a_function_reading_a_top_level_let_takes_it():
    prog = lifted("let x = 10\nfn f(a: int) -> int { return a + x }\nprint(f(1))\n")
    assert [p.name for p in fn_named(prog, "f").params] == ["a", "x"]
    call = prog.items[-1].value.args[0].value
    assert [a.value.id for a in call.args[1:]] == ["x"]


def test_callers_pass_it_on_and_defaults_stay_in_place():
    prog = lifted("let k: float = 2.0\nfn f(a: float, b: float = 1.0) -> float { return a * k + b }\n"
                  "fn g() -> float { return f(3.0) }\nprint(g())\n")
    f, g = fn_named(prog, "f"), fn_named(prog, "g")
    assert [p.name for p in f.params] == ["a", "b", "k"] and f.params[2].type.name == "float"
    assert [p.name for p in g.params] == ["k"]
    call = g.body[0].value
    assert len(call.args) == 3 and isinstance(call.args[1].value, A.Num)


def test_a_shadowing_function_gets_the_top_level_value_under_another_name():
    prog = lifted("let x = 1\nfn h() -> int { return x }\n"
                  "fn f() -> int {\n let x = 5\n return x + h()\n}\nprint(f())\n")
    f = fn_named(prog, "f")
    assert [p.name for p in f.params] == ["x_top"]
    call = f.body[1].value.right
    assert call.args[0].value.id == "x_top"
    assert f.body[1].value.left.id == "x"   # its own x


def test_a_function_used_as_a_value_becomes_a_closure():
    prog = lifted("let x = 1\nfn h(a: int) -> int { return a + x }\n"
                  "fn ap(f: fn(int) -> int) -> int { return f(1) }\nprint(ap(h))\n")
    arg = prog.items[-1].value.args[0].value.args[0].value
    assert isinstance(arg, A.Closure) and arg.fn == "h" and arg.captured[0].id == "x"


def test_an_imported_program_is_not_rewritten():
    prog = lifted("let x = 10\nfn f(a: int) -> int { return a + x }\n", main=False)
    assert [p.name for p in fn_named(prog, "f").params] == ["a"]
