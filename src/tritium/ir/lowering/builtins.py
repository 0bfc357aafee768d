"""Builtin functions: the method that binds a call's arguments and lowers it by its record
(tritium.check.builtins: one IR op, or a lowering by name from `builtin_core`,
`builtin_seed` or `builtin_quant`), and reshape."""

from __future__ import annotations

import math
from typing import Any

from ...check.builtins import FUNCTIONS, BindError, bind, resolve
from ...frontend.diagnostics import Span
from ..builder import Builder
from ..core import Value
from ..ops import InferError
from ..types import ScalarType, TensorType
from . import (  # noqa: F401  (register lowerings)
    builtin_corpus,
    builtin_decl,  # noqa: F401  (register lowerings)
    builtin_masking,  # noqa: F401  (masked_fill; Python's sum of a list)
    builtin_model2,  # noqa: F401  (register lowerings)
    builtin_quant,
    builtin_seed,
)
from .builtin_core import _BUILTIN_FNS, _lower_record
from .values import (
    MAX_SPLIT_SLICES,
    FnCtx,
    LoweringError,
    SymDim,
    _Dyn,
    _is_int,
    _is_num,
)


class BuiltinsMixin:
    # ------------------------------------------------------------------ builtin functions
    def builtin(self, name: str, args: list[tuple[str | None, Any]], b: Builder,
                span: Span | None, ctx: FnCtx) -> Any:
        name = resolve(name, args)
        spec = FUNCTIONS[name]
        if name == "print":
            return None
        positional = [v for n, v in args if n is None]
        form = self.result.call_forms.get(span)   # the checker's, by the types (max/min)
        if spec.pair_op and len(positional) == 2 and form in ("scalar", "pair"):
            x, y = positional
            if _is_num(x) and _is_num(y):
                return max(x, y) if spec.pair_op == "maximum" else min(x, y)
            xv, yv = self.operands(b, x, y, span)
            return b.op(spec.pair_op, xv, yv)
        try:
            bound, _where = bind(spec, args)   # the checker's binding (aliases: axis= is dim=)
        except BindError as exc:
            raise LoweringError(f"the arguments of `{name}` do not fit its signature "
                                f"({exc.kind} {exc.name or ''})", span) from None
        for p in spec.params:
            bound.setdefault(p.name, p.default)
        if spec.ir is not None:
            return _lower_record(self, spec, b, bound, span)
        fn = _BUILTIN_FNS.get(name) or _BUILTIN_FNS.get(spec.of or "")
        if fn is None:
            raise LoweringError(f"the function `{name}` cannot be lowered", span)
        return fn(self, b, bound, span)

    def reshape(self, b: Builder, x: Value, target: Any, span: Span | None) -> Value:
        t = x.type
        if not isinstance(t, TensorType):
            raise LoweringError("reshape needs a tensor", span)
        tgt = target if isinstance(target, list) else [target]
        items: list[Any] = []
        for v in tgt:
            if isinstance(v, bool):
                raise LoweringError("reshape dims must be integers", span)
            if _is_int(v) or isinstance(v, SymDim):
                items.append(v)
            elif isinstance(v, Value) and isinstance(v.type, ScalarType) and v.type.dtype in (
                    "i64", "i32"):
                items.append(_Dyn(v))
            else:
                raise LoweringError(f"reshape dim {v!r} is not an integer", span)
        dyn = [i for i, d in enumerate(items) if not _is_int(d) or d == -1]
        if len(dyn) <= 1:
            shape = [d if _is_int(d) else -1 for d in items]
            out = b.reshape(x, shape=shape)
            if dyn and isinstance(items[dyn[0]], SymDim) and out.type.shape[dyn[0]] is None:
                name = items[dyn[0]].name
                sym_in = [d for d in t.shape if not _is_int(d)]
                st_in = math.prod(d for d in t.shape if _is_int(d))
                st_out = math.prod(d for d in shape if d != -1)
                if name is not None and sym_in == [name] and st_in == st_out:
                    op = out.op
                    assert op is not None
                    op.results[0].type = out.type.with_shape(
                        tuple(name if i == dyn[0] else d for i, d in enumerate(out.type.shape)))
            return out
        copied = self.copy_reshape(b, x, items)
        if copied is not None:
            return copied
        return self.structural_reshape(b, x, items, span)

    @staticmethod
    def copy_reshape(b: Builder, x: Value, items: list[Any]) -> Value | None:
        """A reshape that keeps leading dynamic dims in place with `0` (copy the input dim):
        `[b, s, 128] -> [b, s, 4, 32]` is `reshape {shape = [0, 0, 4, 32]}`."""
        t = x.type
        assert isinstance(t, TensorType)
        shape: list[int] = []
        for i, d in enumerate(items):
            if i < t.rank and isinstance(d, SymDim) and (
                    (d.src is x and d.dim == i) or (d.name is not None and d.name == t.shape[i])):
                shape.append(0)
            elif _is_int(d) and d != 0:
                shape.append(d)
            else:
                shape.append(-2)
        if shape.count(-2) + shape.count(-1) > 1:
            return None
        shape = [-1 if d == -2 else d for d in shape]
        try:
            return b.reshape(x, shape=shape)
        except InferError:
            return None

    def structural_reshape(self, b: Builder, x: Value, items: list[Any],
                           span: Span | None) -> Value:
        """A reshape whose unchanged dims (same symbol or size) are not all leading: the dims
        that change must be static; they are merged with `flatten` and split again with
        static `slice`s and `stack`."""
        t = x.type
        assert isinstance(t, TensorType)
        dims = list(t.shape)

        def same(d: Any, tg: Any, pos: int) -> bool:
            if _is_int(tg):
                return tg != -1 and tg == d
            if isinstance(tg, SymDim):
                return (tg.name is not None and tg.name == d) or (tg.src is x and tg.dim == pos)
            return False

        i = 0
        while i < len(dims) and i < len(items) and same(dims[i], items[i], i):
            i += 1
        j = 0
        while (j < len(dims) - i and j < len(items) - i
               and same(dims[len(dims) - 1 - j], items[len(items) - 1 - j], len(dims) - 1 - j)):
            j += 1
        mid_in = dims[i:len(dims) - j]
        mid_out = items[i:len(items) - j]
        if not all(_is_int(d) for d in mid_in) or not all(_is_int(d) for d in mid_out):
            raise LoweringError("this reshape changes dims whose sizes are not known when "
                                "lowering (only one dynamic dim can be inferred)", span,
                                help="keep the dynamic dims (e.g. batch) in place and reshape "
                                     "only static dims")
        size = math.prod(mid_in)
        if -1 in mid_out:
            known = math.prod(d for d in mid_out if d != -1)
            if known == 0 or size % known:
                raise LoweringError(f"cannot reshape {t} to the requested shape", span)
            mid_out = [size // known if d == -1 else d for d in mid_out]
        if math.prod(mid_out) != size:
            raise LoweringError(f"cannot reshape {t}: {mid_in} has {size} elements, "
                                f"{mid_out} has {math.prod(mid_out)}", span)
        cur = x
        if not mid_in:
            cur = b.unsqueeze(cur, dim=i)
        elif len(mid_in) > 1:
            cur = b.flatten(cur, start_dim=i, end_dim=i + len(mid_in) - 1)
        if not mid_out:
            return b.squeeze(cur, dim=i)
        if sum(mid_out[:-1]) > MAX_SPLIT_SLICES:
            raise LoweringError("this reshape is too large to express with static slices", span)
        pos = i
        rest = size
        for f in mid_out[:-1]:
            rest //= f
            if f == 1:
                cur = b.unsqueeze(cur, dim=pos)
            else:
                parts = [b.slice(cur, dim=pos, start=k * rest, end=(k + 1) * rest)
                         for k in range(f)]
                cur = b.stack(*parts, dim=pos)
            pos += 1
        return cur

    def shape_of(self, v: Any, span: Span | None) -> list[int]:
        shape = v if isinstance(v, list) else [v]
        if not all(_is_int(d) and d >= 0 for d in shape):
            raise LoweringError(f"a new tensor needs a static shape, got {shape}", span)
        return list(shape)
