"""The seed's list builtin of the `decl` forms (issue 13): `shuffle(xs, seed=0)`, a
permutation of a list's items drawn with a fixed seed, so a program shuffles the same way
every run and in every stage (the checker, the IR lowering and the generated code draw the
same permutation: `permutation` here and `tritium.runtime.decl_ops.shuffle`); registered
after `model2`."""

from __future__ import annotations

import random

from ..types import ANY, ListT, TupleT, Value
from .records import _fn, _opt, _p
from .rules import _const, _is_int

MAX_SHUFFLE = 1 << 20   # items a shuffle draws for (bounds the draw at compile time)


def permutation(n: int, seed: int) -> list[int]:
    """The positions a shuffle of n items with `seed` takes its items from."""
    return random.Random(seed).sample(range(n), n)


def shuffle_rule(ck, name, b, e) -> Value:
    xs = b["xs"]
    seed = _const(b, "seed", 0)
    if not isinstance(xs.ty, ListT | TupleT):
        if type(xs.ty).__name__ != "AnyT":
            ck.report("E0404", f"`shuffle` takes a list, got {xs.ty}", e.span,
                      help="for a tensor's rows write `x[randperm(n)]`-style indexing, or "
                           "shuffle a list of its rows")
        return Value(ListT())
    if not _is_int(seed):
        if "seed" in b:
            ck.report("E0404", "`seed=` of `shuffle` must be an int known when checking",
                      e.span)
        return Value(ListT())
    items = xs.const
    if not isinstance(items, list) or len(items) > MAX_SHUFFLE:
        return Value(ListT())
    return Value(ListT(), [items[i] for i in permutation(len(items), seed)], xs.known)


_fn("shuffle", (_p("xs", "any"), _opt("seed", "int", 0)),
    "the items of a list in a random order drawn with `seed` (0 unless given): the same "
    "order every run", shuffle_rule, "trt.shuffle({xs}, {seed})")


# ----------------------------------------------------------------------------- Result, panic

def ok_rule(ck, name, b, e) -> Value:
    """`Ok(v)` is `v` (a function declared `-> Result<T, E>` returns a T)."""
    return b["value"]


def stop_rule(ck, name, b, e) -> Value:
    """`Err(msg)`, `panic(msg)`: the program stops there with `msg`; the value joins any type
    (the branch that stops gives no value to the code after it)."""
    msg = b["msg"]
    if type(msg.ty).__name__ not in ("AnyT",) and str(msg.ty) != "str":
        ck.report("E0404", f"`{name}` takes the message as a string, got {msg.ty}", e.span,
                  help=f'write `{name}("what went wrong")` or an f-string')
    return Value(ANY)


_fn("Ok", (_p("value", "any"),), "the value of a function declared `-> Result<T, E>` "
    "(`Ok(v)` is `v`)", ok_rule, "{value}")
_fn("Err", (_p("msg", "str"),), "stop the program with the error `msg` (the failure of a "
    "function declared `-> Result<T, E>`)", stop_rule, "trt.panic({msg})")
_fn("panic", (_p("msg", "str"),), "stop the program with the error `msg`", stop_rule,
    "trt.panic({msg})")
