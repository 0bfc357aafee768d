"""frontend.partial: `let layer = L(w, b)` binding the first arguments of a layer written as
a function makes a closure of a module-level function of the others."""

from __future__ import annotations

from tritium.frontend import ast as A
from tritium.frontend.parser import parse
from tritium.frontend.partial import bind_partial_calls

LAYER = """
layer Proj(w: TernaryTensor<trit, [n_in, n_out]>, b: Tensor<float32, [n_out]>,
           x: Tensor<float32, [?, n_in]>, scale: float = 1.0) -> Tensor<float32, [?, n_out]> {
    return (x @ w + b) * scale
}
"""


def bound(stmts: str):
    program = parse(LAYER + stmts)[0]
    taken: set[str] = set()
    bind_partial_calls(program, taken, lambda: {"Proj", "bound1__Proj"})
    return program, taken


def test_positional_weights_bind_a_closure_of_the_rest():
    program, taken = bound("let layer = Proj(w1, b1)\n")
    let = program.items[1]
    assert isinstance(let.value, A.Closure) and let.value.fn == "bound2__Proj"
    assert [c.id for c in let.value.captured] == ["w1", "b1"]
    fn = program.items[-1]
    assert isinstance(fn, A.FnDef) and fn.name == "bound2__Proj" and "bound2__Proj" in taken
    # the free parameters first (defaults kept), then the bound ones (their values last)
    assert [(p.name, p.default is not None) for p in fn.params] == [
        ("x", False), ("scale", True), ("w", False), ("b", False)]
    (ret,) = fn.body
    assert isinstance(ret, A.Return) and [a.value.id for a in ret.value.args] == [
        "w", "b", "x", "scale"]


def test_a_name_after_the_positional_ones_is_bound_too():
    program, _ = bound("let layer = Proj(w1, scale: 2.0)\n")
    fn = program.items[-1]
    assert [p.name for p in fn.params] == ["b", "x", "w", "scale"]
    assert [type(c).__name__ for c in program.items[1].value.captured] == ["Name", "Num"]


def test_other_calls_are_left_to_the_checker():
    for stmt in ("let y = Proj(w1, b1, x1)\n",        # every argument: the direct call
                 "let y = Proj(w1, b1, x1, 2.0)\n",
                 "let m = Proj(w: w1, b: b1)\n",       # by name only: a construction
                 "let m = Proj()\n",
                 "let m: Tensor = Proj(w1, b1)\n",     # a declared type
                 "let m = Proj(w1, w: w1)\n",          # given twice
                 "let m = Proj(w1, q: 1)\n",           # unknown name
                 "print(Proj(w1, b1))\n",              # not a `let`
                 "let m = Other(w1)\n"):
        program, _ = bound(stmt)
        assert not any(isinstance(i, A.FnDef) for i in program.items[1:]), stmt
        assert not isinstance(getattr(program.items[1], "value", None), A.Closure), stmt


def test_a_layer_with_state_or_a_forward_is_not_bound():
    src = """
layer Net(w: TernaryTensor<trit, [4, 3]>, x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 3]> {
    param s: Tensor[3]
    return x @ w * s
}
let n = Net(w1)
"""
    program = parse(src)[0]
    bind_partial_calls(program, set(), set)
    assert not isinstance(program.items[1].value, A.Closure)
