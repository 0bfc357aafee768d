"""Which batch norms may fold into the layer before them: the one home of that legality.

A batch norm in inference is a per-channel affine map, so `bn(layer(x))` can become `layer`
with its scale multiplied by `k = gamma / sqrt(var + eps)` and its bias shifted, when

* the producer is a linear map whose output channels the batch norm normalizes: a linear
  layer (on 2-D input: with more dimensions a `BatchNorm1d` would normalize another axis)
  with a `BatchNorm1d`, a 2-D convolution with a `BatchNorm2d`;
* nothing else sees the producer's un-normalized output or the batch norm's input (the
  producer's result has exactly one use, the batch norm);
* nothing runs between the product and the batch norm (no fused activation or residual).

`fold_problem` states these conditions for a producer named by a layer kind or an IR op
(`passes/bn_fold.py` checks the same ones on the IR), and `fold_pairs` finds, in a checked
definition, the `(layer, batch_norm)` pairs of declared layers whose every use is the one
expression `bn(layer(x))`: the code generator lists them for `tritium.runtime.freeze_model`.
Layer kinds listed in `LAYER_PRODUCERS` are the ones whose frozen runtime layer can take a
fold (ternary and BitNet layers: the trits stay, the scale becomes per-channel); the IR pass
also folds float `linear`/`conv2d`, whose weights it can scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..frontend import ast as A

# what a producer computes, as far as folding is concerned: "linear" or "conv2d"
LAYER_PRODUCERS = {"TernaryLinear": "linear", "BitLinear": "linear", "TernaryConv2d": "conv2d"}
IR_PRODUCERS = {"linear": "linear", "fused_linear": "linear", "conv2d": "conv2d",
                "fused_conv2d": "conv2d"}
# the producer family whose output channels a batch norm kind normalizes
NORMS = {"BatchNorm1d": "linear", "BatchNorm2d": "conv2d"}


def fold_problem(producer: str, norm: str | None = None, *, uses: int = 1,
                 rank: int | None = None, epilogue: bool = False) -> str | None:
    """Why a batch norm cannot fold into `producer`, or None when it can.

    `producer`: a layer kind (`LAYER_PRODUCERS`) or an IR op name (`IR_PRODUCERS`);
    `norm`: the batch norm's layer kind, when known (the IR's `batch_norm` is one op);
    `uses`: how many uses the producer's result has; `rank`: the rank of that result,
    when known; `epilogue`: whether the producer applies an activation or a residual
    after its product."""
    family = LAYER_PRODUCERS.get(producer) or IR_PRODUCERS.get(producer)
    if family is None:
        return f"{producer} is not a linear or convolution layer that takes a fold"
    if norm is not None and NORMS.get(norm) != family:
        want = next(k for k, v in NORMS.items() if v == family)
        return f"a {producer} folds a {want}, not a {norm}"
    if uses != 1:
        return f"the {producer}'s output has {uses} uses, not only the batch norm"
    if family == "linear" and rank is not None and rank != 2:
        return f"a {producer} folds only on 2-D input, not rank {rank}"
    if epilogue:
        return f"the {producer} applies an activation or residual before the batch norm"
    return None


def _fold_call(call: A.Call, producers: dict[str, str], norms: dict[str, str]
               ) -> tuple[str, str] | None:
    """``(layer, bn)`` when ``call`` is ``bn(layer(x))`` with one positional argument each
    and the kinds fold."""
    if not isinstance(call.func, A.Name) or call.func.id not in norms or len(call.args) != 1:
        return None
    arg = call.args[0]
    inner = arg.value
    if arg.name is not None or not isinstance(inner, A.Call) \
            or not isinstance(inner.func, A.Name) or inner.func.id not in producers:
        return None
    if len(inner.args) != 1 or inner.args[0].name is not None:
        return None
    if fold_problem(producers[inner.func.id], norms[call.func.id]) is not None:
        return None
    return inner.func.id, call.func.id


def fold_pairs(body: list, fns: Sequence[A.FnDef],
               kind_of: Callable[[A.LayerKind], str | None]) -> list[tuple[str, str]]:
    """The ``(layer, batch_norm)`` pairs, by program name and sorted, of a definition
    whose batch norm a frozen model may fold into the layer: every use of either layer in
    every method of ``fns`` is the one expression ``bn(layer(x))`` (so nothing else sees
    the layer's un-normalized output or the batch norm's input), both are declared in
    ``body`` with one kind and no repetition, the kinds fold (`fold_problem`), and no
    parameter, `let` or loop variable shadows either name.

    `kind_of(layer_kind)`: the builtin kind a declared `A.LayerKind` resolves to (aliases
    resolved), or None for a user definition or an unknown kind (`Checker.resolve_kind`).
    """
    producers: dict[str, str] = {}
    norms: dict[str, str] = {}
    for item in body:
        if not isinstance(item, A.LayerDecl) or len(item.kinds) != 1 \
                or item.kinds[0].repeat is not None:
            continue
        kind = kind_of(item.kinds[0])
        if kind in LAYER_PRODUCERS:
            producers[item.name] = kind
        elif kind in NORMS:
            norms[item.name] = kind
    if not producers or not norms:
        return []
    refs: dict[str, int] = {}
    bound: set[str] = set()
    pairs: dict[tuple[str, str], int] = {}
    stack: list = []
    for fn in fns:
        bound.update(p.name for p in fn.params)
        stack.extend(fn.params)
        stack.extend(fn.body)
    while stack:
        x = stack.pop()
        if isinstance(x, A.Name):
            refs[x.id] = refs.get(x.id, 0) + 1
        elif isinstance(x, A.Let):
            bound.add(x.name)
        elif isinstance(x, A.For):
            bound.add(x.var)
        elif isinstance(x, A.Call):
            pair = _fold_call(x, producers, norms)
            if pair is not None:
                pairs[pair] = pairs.get(pair, 0) + 1
        if hasattr(x, "__slots__") and not isinstance(x, str):
            for sl in x.__slots__:
                v = getattr(x, sl, None)
                if isinstance(v, list):
                    stack.extend(v)
                elif hasattr(v, "__slots__") and not isinstance(v, str):
                    stack.append(v)
    return [(p, b) for (p, b), n in sorted(pairs.items())
            if refs.get(p) == n and refs.get(b) == n and p not in bound and b not in bound]
