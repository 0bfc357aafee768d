"""Bounds on what the compiler computes at compile time (E0312).

A program is interpreted at compile time by the checker (constant folding, block instances,
known loops) and by the IR lowering (monomorphization, loop unrolling). Each of these is
bounded here, in one place, so that no program can make the compiler hang or exhaust memory:

* integers stay within int64 (the widest integer a tensor or a shape holds): an operation
  whose result would leave it is not computed. `**` is checked *before* it is computed, from
  the operands' bit lengths, so `9 ** 9 ** 9` costs nothing;
* a float operation that overflows (`1e308 * 10` is `inf` by IEEE rules, but `10.0 ** 400`
  raises in Python) is reported, never raised;
* a repetition `Kind[N]` has at most `MAX_REPEAT` instances, and checking one definition
  applies at most `MAX_LAYERS` layers, counting every instance of every block (so nested
  repetitions cannot multiply past it);
* one chain of binary operators (`a + b + …`) has at most `MAX_CHAIN` operators (generated
  Python nests it as deeply; the nesting of brackets and postfix chains `x.f()[0]…` is
  bounded by the parser, E0203);
* a list or string built at compile time has at most `MAX_SEQUENCE` elements;
* lowering unrolls at most `MAX_UNROLL` iterations of one loop, and at most `MAX_UNROLLED`
  expression nodes in all (iterations times the size of the loop body);
* a tensor shape known at compile time has dims below 2**31 and at most `MAX_ELEMENTS`
  elements.
"""

from __future__ import annotations

import operator

INT_MAX = 2 ** 63 - 1
INT_MIN = -(2 ** 63)
MAX_REPEAT = 1024
MAX_LAYERS = 50_000
MAX_SEQUENCE = 65536
MAX_CHAIN = 300
MAX_UNROLL = 4096
MAX_UNROLLED = 32768
MAX_DIM = 2 ** 31 - 1
MAX_ELEMENTS = 2 ** 34
#: characters of a symbolic int (`n*(n+2)`, an expression over unknown hyperparameters);
#: a longer one becomes an unknown int: an expression that holds itself twice per loop
#: iteration (`s += c - (s - n)`) doubles each time, and 4096 iterations exhausted memory
MAX_SYMBOLIC = 256


class TooLarge(Exception):
    """A compile-time computation past a bound; the message says which (E0312)."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_int(v: int, what: str = "the result") -> int:
    if not INT_MIN <= v <= INT_MAX:
        raise TooLarge(f"{what} does not fit in 64 bits")
    return v


_OPS = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


def binary(op: str, a, b):
    """`a op b` for Python numbers (bools, ints, floats), within the bounds above.

    Raises TooLarge past a bound, ZeroDivisionError, KeyError for an unknown operator, and
    TypeError for operands that are not numbers. Integer operands must already be within
    int64 (literals are: the lexer checks them)."""
    for x in (a, b):
        if not isinstance(x, int | float):
            raise TypeError(f"not a number: {type(x).__name__}")
    fn = _OPS[op]
    if op == "**":
        _check_pow(a, b)
    try:
        r = fn(a, b)
    except OverflowError:
        raise TooLarge(f"`{op}` overflows a float") from None
    if isinstance(r, complex):
        raise TypeError("the result is complex")
    if _is_int(r):
        check_int(r)
    return r


def _check_pow(a, b) -> None:
    if _is_int(a) and _is_int(b) or isinstance(a, bool) or isinstance(b, bool):
        ia, ib = int(a), int(b)
        if ib < 0 or abs(ia) <= 1:
            return   # a float (or an exact 0/1/-1)
        if ib * (abs(ia).bit_length() - 1) > 64:
            raise TooLarge("`**` gives an integer that does not fit in 64 bits")
        return
    # a float operand: Python raises OverflowError for large results, computed quickly,
    # but an int exponent is first converted: bound it so that this stays cheap
    if _is_int(b) and abs(b) > 2 ** 53 or _is_int(a) and abs(a) > INT_MAX:
        raise TooLarge("`**` operands are too large")


def shape_elements(dims) -> int | None:
    """The element count of a shape of known int dims (None if one is not known), checked
    against MAX_DIM and MAX_ELEMENTS."""
    n = 1
    for d in dims:
        if not _is_int(d):
            return None
        if d > MAX_DIM:
            raise TooLarge(f"the dimension {d} is larger than {MAX_DIM}")
        n *= max(d, 0)
    if n > MAX_ELEMENTS:
        raise TooLarge(f"a tensor of {n} elements is larger than {MAX_ELEMENTS}")
    return n


def range_len(r: range) -> int:
    """The number of integers in `r`, computed (Python's `len` raises OverflowError when it
    does not fit a C ssize_t: `(-2**63 + 1)..=0` holds 2**63 of them)."""
    if r.step > 0:
        return max(0, (r.stop - r.start + r.step - 1) // r.step)
    return max(0, (r.start - r.stop - r.step - 1) // -r.step)
