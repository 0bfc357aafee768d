"""The checker on the seed's type-system forms: the traits it names as bounds (Comparable,
Quantizable, Differentiable, Hashable, Shape; a size `n: int32`), shape variables, generic
aliases, a 0-d tensor where a number is declared, and a TernaryTensor argument with a `?`
dim in a layer written as a function (an input, not a weight)."""

from __future__ import annotations

import pytest

from tritium.check import check_source


def _codes(src: str) -> list[str]:
    return [d.code for d in check_source(src, "t.tri").diagnostics if d.severity.name == "ERROR"]


OK = [
    "fn top<V: Comparable>(a: V, b: V) -> V {\n    return if a > b { a } else { b }\n}\n"
    "let t = top(3, 9)\nlet s = top(0.5, 0.25)\n",
    "fn q<V: Quantizable>(w: Tensor<V, [?, ?]>) -> TernaryTensor<trit, [?, ?]> {\n"
    "    return ternary_quantize(w)\n}\nlet r = q(randn([3, 3]))\n",
    "fn h<K: Hashable + Comparable>(k: K) -> K {\n    return k\n}\nlet z = h(\"key\")\n",
    "fn keep<R: Shape>(v: Tensor<float32, R>) -> Tensor<float32, R> {\n    return v * 2.0\n}\n"
    "let y = keep(ones([2, 5]))\nlet w = keep(ones([7]))\n",
    "type Grid<E> = Tensor<E, [?, ?]>\nfn g(m: Grid<float32>) -> Grid<float32> {\n"
    "    return m + 1.0\n}\nlet a = g(zeros([2, 2]))\n",
    "type Row<k: int32> = Tensor<float32, [k]>\nfn inner<k: int32>(a: Row<k>, b: Row<k>)"
    " -> float32 {\n    return (a * b).sum()\n}\nlet v = inner(ones([4]), ones([4]))\n",
    "fn peak(t: Tensor<float32, [?, ?]>) -> float32 {\n    return max(abs(t))\n}\n",
    "fn count(t: Tensor<int64, [?]>) -> int {\n    return sum(t)\n}\n",
    "layer Pass(x: TernaryTensor<trit, [?, 16]>) -> TernaryTensor<trit, [?, 16]> {\n"
    "    return x\n}\n",
]


@pytest.mark.parametrize("src", OK)
def test_seed_type_forms_check(src) -> None:
    assert _codes(src) == [], [(d.code, d.message) for d in check_source(
        src, "t.tri").diagnostics]


BAD = [
    # a bound not met at a call
    ("fn q<V: Quantizable>(x: V) -> V {\n    return x\n}\nlet r = q(3)\n", "E0842"),
    ("fn f<V: Differentiable>(x: V) -> V {\n    return x\n}\nlet r = f(true)\n", "E0842"),
    ("fn h<K: Hashable>(k: K) -> K {\n    return k\n}\nlet r = h(zeros([2]))\n", "E0842"),
    ("fn f<V: Sortable>(x: V) -> V {\n    return x\n}\n", "E0843"),
    # a generic alias given the wrong number of arguments
    ("type Grid<E> = Tensor<E, [?, ?]>\nlet g: Grid<float32, [2]> = zeros([2, 2])\n", "E0962"),
    # a 0-d tensor is a number, a 1-d one is not
    ("fn f(t: Tensor<float32, [?]>) -> float32 {\n    return abs(t)\n}\n", "E0401"),
    # a trit is not filled from a 0-d float tensor
    ("fn f(t: Tensor<float32, [?]>) -> trit {\n    return sum(t)\n}\n", "E0401"),
]


@pytest.mark.parametrize("src,code", BAD)
def test_misuse_is_reported(src, code) -> None:
    assert code in _codes(src), [(d.code, d.message) for d in check_source(
        src, "t.tri").diagnostics]


def test_alias_error_does_not_cascade() -> None:
    codes = _codes("type Grid<E> = Tensor<E, [?, ?]>\nlet g: Grid<float32, [2]> = zeros([2, 2])\n")
    assert codes == ["E0962"]
