"""The repetition rule: how the instances of `Kind[N] { … }` are configured (DESIGN.md §3).

The first instance gets the config as written. A block may say how each later instance
differs from the one before it with a clause `repeat { c_in: c_out, stride: 1 }`; without one,
each pair of hyperparameters named `in_X`/`out_X` or `X_in`/`X_out` (so `c_in`/`c_out`)
chains (`in := out`, when the previous instance was given `out`) and `stride` resets to 1.
Builtin layer kinds repeat with the same config.

This is the one home of that rule. It knows nothing about what a config value is: the
checker holds constants, the code generator Python expressions. The caller passes an
`evaluate(expr, previous_config)` that gives an expression's value in the previous
instance's config; the implicit rule is written as the clause it stands for (`in_X: out_X`,
`stride: 1`), so both rules go through the same `evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

from ..frontend import ast as A

V = TypeVar("V")


def chained_pairs(params: Sequence[str]) -> list[tuple[str, str]]:
    """The `(in, out)` hyperparameter pairs that chain, in the order of `params`:
    `in_X`/`out_X` and `X_in`/`X_out` (`c_in`/`c_out`, `ch_in`/`ch_out`)."""
    names = set(params)
    pairs: list[tuple[str, str]] = []
    for n in params:
        if n.startswith("out_") and len(n) > 4 and f"in_{n[4:]}" in names:
            pairs.append((f"in_{n[4:]}", n))
        if n.endswith("_out") and len(n) > 4 and f"{n[:-4]}_in" in names:
            pairs.append((f"{n[:-4]}_in", n))
    return pairs


def repeat_clause(node) -> A.Section | None:
    """The `repeat { … }` clause of a block (or layer, or model) definition, if it has one."""
    return next((i for i in getattr(node, "body", None) or ()
                 if isinstance(i, A.Section) and i.name == "repeat"), None)


def repeat_entries(params: Sequence[str], clause: A.Section | None,
                   given: Collection[str]) -> list[A.ConfigEntry]:
    """What changes from one instance to the next, as `key: expression` entries over the
    previous instance's hyperparameters: the clause's entries when there is one, else
    `in: out` for each chained pair whose `out` is in `given` (the keys of the previous
    config) and `stride: 1` when the definition has a `stride`."""
    if clause is not None:
        return list(clause.entries)
    out = [A.ConfigEntry(a, A.Name(b)) for a, b in chained_pairs(params) if b in given]
    if "stride" in params:
        out.append(A.ConfigEntry("stride", A.Num(1)))
    return out


def next_config(params: Sequence[str], clause: A.Section | None, cfg: Mapping[str, V],
                evaluate: Callable[[A.Expr, Mapping[str, V]], V]) -> dict[str, V]:
    """The config of the instance after the one configured by `cfg`.

    `params`: the definition's hyperparameter names, in order (`Checker.user_params`);
    `clause`: its `repeat { }` clause (`repeat_clause(node)`), or None;
    `cfg`: the previous instance's config, key -> value (only the keys it was given);
    `evaluate(expr, cfg)`: the value of a clause expression in the previous config.
    Every entry is evaluated in the previous config (not in the one being built); keys
    the rule does not mention keep their value, and new keys come after the old ones.
    A builtin layer kind repeats as is: its caller simply reuses `cfg`.

    The checker calls it with its constants (`Checker.next_repeat_cfg(kind, cfg)`):

        node = kind.user.node
        def evaluate(e, prev):
            env = Scope()
            for k, v in prev.items():   # a SymInt is a symbolic int, not an unknown value
                env.vars[k] = v if isinstance(v, Value) else (
                    Value(INT, v, False) if isinstance(v, SymInt) else Value.of(v))
            r = self.eval_const(e, env)
            return r.const if r.known or isinstance(r.const, SymInt) else r
        return next_config([p.name for p in self.user_params(node)],
                           repeat_clause(node), cfg, evaluate)
    """
    new = dict(cfg)
    for e in repeat_entries(params, clause, cfg.keys()):
        new[e.key] = evaluate(e.value, cfg)
    return new


def instance_configs(params: Sequence[str], clause: A.Section | None, first: Mapping[str, V],
                     n: int, evaluate: Callable[[A.Expr, Mapping[str, V]], V]
                     ) -> list[dict[str, V]]:
    """The configs of the `n` instances of `Block[n] { first }`, by `next_config`."""
    cfgs = [dict(first)]
    for _ in range(n - 1):
        cfgs.append(next_config(params, clause, cfgs[-1], evaluate))
    return cfgs
