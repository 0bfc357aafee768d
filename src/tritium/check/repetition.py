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


# ---------------------------------------------------------------- table-driven repetition
# `layer blocks: InvertedResidual[] { [1, 16, 1, 1], [6, 24, 2, 2] }  // t, c, n, s`
#
# Each row is one stage. Its columns are named by the comment that lists them (the parser
# reads it: `A.Arg.name`), else they are the block's parameters in declared order. A column
# names a parameter (in any case) by its own name or by one of the usual names of its role
# (ROLES: `t` is the expansion, `c` the output width, `s` the stride, `k` the kernel size);
# the count column (`n`, `num_blocks`, `repeat`, … when the block has no parameter of that name)
# repeats the stage's block `n` times by the repetition rule above (the chained `in_X`
# takes the previous `out_X`, `stride` resets to 1). A chained `in_X` that a row does not
# give is the previous row's `out_X`; in the first row it is the width of the nearest layer
# declared before the table that states one (`out_X`, `X_out`, or `num_features`).

ROLES: dict[str, tuple[str, ...]] = {
    "expand": ("t", "expand_ratio", "expansion", "expand", "expansion_factor",
               "expand_factor", "expansion_ratio", "expand_ratio_t", "ratio", "e"),
    "out": ("c", "output", "out", "out_channels", "output_channels", "c_out", "channels",
            "out_features", "out_ch", "width", "filters"),
    "count": ("n", "num_blocks", "blocks", "repeat", "repeats", "num_layers", "layers",
              "count", "num", "depth", "num_repeat", "num_repeats"),
    "stride": ("s", "stride", "strides"),
    "kernel": ("k", "kernel", "kernel_size", "ksize"),
}
_ROLE_OF = {n: role for role, names in ROLES.items() for n in names}


def column_param(col: str, params: Sequence[str]) -> str | None:
    """The parameter a table column names: itself, else the block's parameter of the same
    role (for the output width, the `out` of a chained pair first). None: the count column
    (or a name that matches nothing, left as written so the checker reports it). Names
    match without regard to case: a header comment is prose (`// Expansion, output, n, s`)."""
    if col in params:
        return col
    low = col.lower()
    same = next((p for p in params if p.lower() == low), None)
    if same is not None:
        return same
    role = _ROLE_OF.get(low)
    if role is None:
        return col
    if role == "count":
        return None
    if role == "out":
        outs = [b for _, b in chained_pairs(params)]
        if outs:
            return outs[0]
    return next((p for p in params if p in ROLES[role]), col)


def _width_before(body: Sequence, decl: A.LayerDecl, in_key: str) -> A.Expr | None:
    """The output width stated by the nearest layer declared before `decl` in `body`."""
    suffix = in_key[3:] if in_key.startswith("in_") else in_key[:-3]
    keys = (f"out_{suffix}", f"{suffix}_out", "num_features", "out_channels", "out_features")
    prev = []
    for item in body:
        if item is decl:
            break
        if isinstance(item, A.LayerDecl) and item.cond is None:
            prev.append(item)
    for item in reversed(prev):
        kind = item.kinds[-1]
        named = {a.name: a.value for a in kind.args or [] if a.name}
        named.update((e.key, e.value) for e in kind.config)
        for k in keys:
            if k in named:
                return named[k]
    return None


def expand_table(decl: A.LayerDecl, body: Sequence,
                 params_of: Callable[[str], Sequence[str] | None]) -> None:
    """Rewrite the rows of a table `Kind[] { … }` in place into instances configured by
    name (`Kind(expand_ratio: 6, out_channels: 24, stride: 2)[2]`), by the rule above.
    `params_of(kind)`: a user definition's parameter names in order, None for a builtin
    kind (whose rows keep their positional meaning). Running it twice changes nothing."""
    if not decl.kinds or not all(k.row for k in decl.kinds):
        return
    prev: dict[str, A.Expr] = {}
    for i, kind in enumerate(decl.kinds):
        params = params_of(kind.kind)
        if params is None:
            return
        args: list[A.Arg] = []
        for j, a in enumerate(kind.args or []):
            col = a.name if a.name is not None else (params[j] if j < len(params) else None)
            if col is None:   # too many values: the checker reports it (E0306)
                args.append(a)
                continue
            target = column_param(col, params)
            if target is None:
                if kind.repeat is None:
                    kind.repeat = a.value
                continue
            args.append(A.Arg(a.value, target, a.span))
        given = {a.name: a.value for a in args if a.name}
        for a_in, b_out in chained_pairs(params):
            if a_in in given:
                continue
            src = prev.get(b_out) if i else _width_before(body, decl, a_in)
            if src is not None:
                args.append(A.Arg(src, a_in, kind.span))
                given[a_in] = src
        kind.args = args
        prev = given
