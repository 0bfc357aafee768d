"""A frozen generated module's ``forward`` run from the dataflow ops its compiler wrote, with
residual adds and the activation after them fused into the convolution that feeds them.

A residual block is no chain (``tritium.runtime.chain``): its ``forward`` keeps the block's
input, or a projection of it, alive beside the body, adds the two and applies an activation.
The code generator writes such a forward as data (``self.tritium_graph``, see
``tritium.backends.pytorch.graph``): ``apply`` (chain steps on a value), ``add``, ``if`` on an
optional layer's presence or on hyperparameters, ``return``. :func:`install_forwards` (run by
``freeze_model`` and checkpoint loading; it also installs the chains) gives such a module a
:class:`GraphForward`, which builds a plan when first called:

- the ``if``\\ s are decided on the module as it is (which optional layers exist, the
  hyperparameters' values; the plan is rebuilt when one changes), leaving straight-line ops
  on single-assignment values;
- each ``apply`` compiles as a chain does (fused activations, linear runs, conv + pooling);
- ``a + b``, where ``a`` is used only there and is computed last by a frozen ternary conv --
  the block's own, or the last conv of a child module that runs as a chain (MobileNetV2's
  ``InvertedResidual`` around its ``Bottleneck``) -- after ``b`` is known, becomes that conv's
  fused residual (``act(conv(x) + b)`` in its epilogue: the sum is never a separate pass over
  memory), and a ``relu``/``relu6`` that is the sum's only use becomes its activation;
- a value is dropped after its last use (as the generated code's reassignments drop it).

The fused epilogue adds the residual to the conv's rounded output as the separate add does, so
the results are the generated forward's, bit for bit. Each call checks the plan as a chain's
does and otherwise runs the generated ``forward``; a residual whose shape is not the conv's
output (a broadcast) is added separately.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import nn

from tritium.runtime.chain import (
    _ACTIVATION_FNS,
    _EXACT_EPILOGUE,
    ChainForward,
    _compile,
    _ConvStep,
    install_chains,
    install_plan,
)
from tritium.runtime.layers.ternary import TernaryConv2d, TernaryLayer
from tritium.runtime.plan import conv_out_size

__all__ = ["GraphForward", "install_forwards"]


_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge}


class _Unsupported(Exception):
    """The ops are not understood, or the module does not allow the plan."""


def _conv_residual(layer: TernaryConv2d, act: str | None, x: torch.Tensor,
                   r: torch.Tensor) -> torch.Tensor:
    """``act(layer(x) + r)``, with ``r`` in the conv's epilogue when it has the output's shape."""
    if x.dim() == 4 and type(r) is torch.Tensor and r.dtype == torch.float32 \
            and r.shape == (x.shape[0], layer.out_channels, *conv_out_size(
                x.shape[2], x.shape[3], layer.kernel_size, layer.stride, layer.padding,
                layer.dilation)):
        return layer.forward(x, act, r)
    y = layer.forward(x) + r
    return y if act is None else _ACTIVATION_FNS[act](y)


def _child_chain(module: nn.Module) -> list | None:
    """The ops of a child module running as a chain whose last op takes a fused residual (a
    frozen conv with no activation or pooling of its own), when its plan holds now (no hooks,
    nothing needing autograd), else None."""
    cf = module.__dict__.get("forward")
    if not isinstance(cf, ChainForward) or module._forward_hooks or module._forward_pre_hooks:
        return None
    ops = cf._current()
    if not ops or _residual_target(ops[-1]) != "conv" or (
            torch.is_grad_enabled() and any(p.requires_grad for p in cf.program[2])):
        return None
    return ops


def _residual_target(op: Any) -> str | None:
    """How ``op``, the last op of an ``apply``, can take a fused residual: ``"conv"`` (a frozen
    ternary conv with no activation or pooling of its own), ``"chain"`` (a module running as a
    chain whose last op is one), or None."""
    if isinstance(op, _ConvStep):
        return "conv" if op.act is None and op.pool is None else None
    if isinstance(op, nn.Module) and _child_chain(op) is not None:
        return "chain"
    return None


class _Run:
    __slots__ = ("ops", "src", "dest", "drop")

    def __init__(self, ops: list, src: int, dest: int) -> None:
        self.ops, self.src, self.dest, self.drop = ops, src, dest, ()

    def __call__(self, regs: list) -> None:
        x = regs[self.src]
        for op in self.ops:
            x = op(x)
        regs[self.dest] = x


class _Add:
    __slots__ = ("a", "b", "dest", "drop")

    def __init__(self, a: int, b: int, dest: int) -> None:
        self.a, self.b, self.dest, self.drop = a, b, dest, ()

    def __call__(self, regs: list) -> None:
        regs[self.dest] = regs[self.a] + regs[self.b]


class _RunResidual:
    """An ``apply`` whose last op adds the value in ``res`` in its epilogue (then ``act``)."""

    __slots__ = ("ops", "last", "kind", "src", "res", "dest", "act", "drop")

    def __init__(self, ops: list, kind: str, src: int, res: int, dest: int) -> None:
        self.ops, self.last, self.kind = ops[:-1], ops[-1], kind
        self.src, self.res, self.dest, self.act, self.drop = src, res, dest, None, ()

    def __call__(self, regs: list) -> None:
        x, r = regs[self.src], regs[self.res]
        for op in self.ops:
            x = op(x)
        last = self.last
        if self.kind == "conv":
            regs[self.dest] = _conv_residual(last.layer, self.act, x, r)
            return
        ops = _child_chain(last)   # a child running as a chain: its last conv
        if ops is not None:
            for op in ops[:-1]:
                x = op(x)
            regs[self.dest] = _conv_residual(ops[-1].layer, self.act, x, r)
            return
        y = last(x) + r
        regs[self.dest] = y if self.act is None else _ACTIVATION_FNS[self.act](y)


class _Builder:
    """The plan of a graph on a module: see the module docstring."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.guarded: list[tuple[str, Any]] = []
        self.attrs: list[tuple[str, Any]] = []
        self.params: list = []
        self.recs: list[list] = []   # ["run", steps, src, dest] / ["add", a, b, dest]
        self.slots = 1               # slot 0: the parameter

    def cond(self, c: Any) -> bool:
        if not isinstance(c, list) or not c or not isinstance(c[0], str):
            raise _Unsupported
        kind = c[0]
        if kind == "const" and len(c) == 2 and type(c[1]) in (bool, int):
            return bool(c[1])
        if kind == "present" and len(c) == 2 and isinstance(c[1], str):
            mod = self.module._modules.get(c[1])
            self.guarded.append((c[1], mod))
            return mod is not None
        if kind == "not" and len(c) == 2:
            return not self.cond(c[1])
        if kind in ("and", "or") and len(c) == 3:
            first = self.cond(c[1])
            if first == (kind == "or"):
                return first
            return self.cond(c[2])
        if kind == "cmp" and len(c) == 4 and c[1] in _COMPARE:
            return _COMPARE[c[1]](self.operand(c[2]), self.operand(c[3]))
        raise _Unsupported

    def operand(self, o: Any) -> int:
        if isinstance(o, list) and len(o) == 2 and o[0] == "const" and type(o[1]) in (int, bool):
            return o[1]
        if isinstance(o, list) and len(o) == 2 and o[0] == "attr" and isinstance(o[1], str):
            v = getattr(self.module, o[1], None)
            if type(v) not in (int, bool):
                raise _Unsupported
            self.attrs.append((o[1], v))
            return v
        raise _Unsupported

    def flatten(self, ops: Any, env: dict[str, int]) -> int | None:
        """Straight-line records of ``ops``; the slot returned, if a ``return`` was met."""
        if not isinstance(ops, list):
            raise _Unsupported
        for op in ops:
            if not isinstance(op, list) or not op or not isinstance(op[0], str):
                raise _Unsupported
            if op[0] == "if" and len(op) == 4:
                result = self.flatten(op[2] if self.cond(op[1]) else op[3], env)
                if result is not None:
                    return result
            elif op[0] == "return" and len(op) == 2:
                return self.ref(env, op[1])
            elif op[0] == "apply" and len(op) == 4 and isinstance(op[1], str) \
                    and isinstance(op[3], list):
                src = self.ref(env, op[2])
                if not op[3]:
                    env[op[1]] = src
                    continue
                env[op[1]] = self.new()
                self.recs.append(["run", list(op[3]), src, env[op[1]]])
            elif op[0] == "add" and len(op) == 4 and isinstance(op[1], str):
                a, b = self.ref(env, op[2]), self.ref(env, op[3])
                env[op[1]] = self.new()
                self.recs.append(["add", a, b, env[op[1]]])
            else:
                raise _Unsupported
        return None

    @staticmethod
    def ref(env: dict[str, int], name: Any) -> int:
        if not isinstance(name, str) or name not in env:
            raise _Unsupported
        return env[name]

    def new(self) -> int:
        self.slots += 1
        return self.slots - 1

    def compile_steps(self, steps: list) -> list:
        prog = _compile(self.module, steps)
        if prog is None:
            raise _Unsupported
        ops, guarded, params = prog
        self.guarded.extend(guarded)
        self.params.extend(params)
        return ops

    def build(self, graph: list) -> tuple[list, int]:
        """The ops to run and the slot of the result."""
        first = graph[0] if isinstance(graph, list) and graph else None
        if not (isinstance(first, list) and len(first) == 2 and first[0] == "input"
                and isinstance(first[1], str)):
            raise _Unsupported
        result = self.flatten(graph[1:], {first[1]: 0})
        if result is None:
            raise _Unsupported
        recs: list[list | None] = self.recs
        compiled: dict[int, list] = {}     # record index -> its compiled ops
        fused: dict[int, _RunResidual] = {}

        def users(slot: int) -> list[int]:
            return [k for k, r in enumerate(recs) if r is not None and (
                r[0] == "run" and r[2] == slot or r[0] == "add" and slot in (r[1], r[2]))]

        def defined_at(slot: int) -> int:
            return next((k for k, r in enumerate(recs) if r is not None and r[3] == slot), -1)

        def rename(old: int, new: int) -> int:
            for r in recs:
                if r is not None:
                    for i in ((2,) if r[0] == "run" else (1, 2)):
                        if r[i] == old:
                            r[i] = new
            return new if result == old else result

        for k, rec in enumerate(recs):
            if rec is None or rec[0] != "add":
                continue
            for c, r in ((rec[1], rec[2]), (rec[2], rec[1])):
                j = defined_at(c)
                if j < 0 or j in fused or c == r or c == result or recs[j][0] != "run" \
                        or len(users(c)) != 1 or defined_at(r) >= j:
                    continue
                if j not in compiled:
                    compiled[j] = self.compile_steps(recs[j][1])
                kind = _residual_target(compiled[j][-1]) if compiled[j] else None
                if kind is None:
                    continue
                run = fused[j] = _RunResidual(compiled[j], kind, recs[j][2], r, c)
                recs[k] = None
                result = rename(rec[3], c)
                after = users(c)
                if c != result and len(after) == 1 and recs[after[0]][0] == "run":
                    user = recs[after[0]]
                    step = user[1][0]
                    if isinstance(step, list) and len(step) == 2 and step[0] == "call" \
                            and step[1] in _EXACT_EPILOGUE:
                        run.act = step[1]
                        user[1] = user[1][1:]
                        if not user[1]:         # the activation was all of it
                            recs[after[0]] = None
                            result = rename(user[3], c)
                break
        out: list = []
        for k, rec in enumerate(recs):
            if rec is None:
                continue
            if k in fused:
                out.append(fused[k])
            elif rec[0] == "run":
                ops = compiled[k] if k in compiled else self.compile_steps(rec[1])
                out.append(_Run(ops, rec[2], rec[3]))
            else:
                out.append(_Add(rec[1], rec[2], rec[3]))
        # drop each value after its last use (never the parameter or the result)
        last: dict[int, int] = {}
        for i, e in enumerate(out):
            for s in ((e.a, e.b) if isinstance(e, _Add) else (e.src, e.res)
                      if isinstance(e, _RunResidual) else (e.src,)):
                last[s] = i
        for s, i in last.items():
            if s not in (0, result):
                out[i].drop += (s,)
        return out, result


class GraphForward(ChainForward):
    """The ``forward`` :func:`install_forwards` gives a frozen generated module whose compiler
    wrote its ``forward`` as dataflow ops: runs the plan (see the module docstring), or the
    generated ``forward`` whenever the plan does not hold for a call."""

    def _build(self) -> tuple:
        b = _Builder(self.module)
        try:
            ops, result = b.build(self.steps)
        except _Unsupported:
            # remembered until a child or an attribute read changes: the generated forward runs
            return (None, list(self.module._modules.items()), [], tuple(b.attrs))
        return ((ops, result, b.slots), b.guarded, b.params, tuple(b.attrs))

    def _run(self, program: tuple, x: torch.Tensor) -> torch.Tensor:
        ops, result, slots = program
        regs: list = [None] * slots
        regs[0] = x
        for op in ops:
            op(regs)
            for s in op.drop:
                regs[s] = None
        return regs[result]


def _graph_data(mod: nn.Module) -> list | None:
    graph = getattr(mod, "tritium_graph", None)
    if isinstance(graph, list) and graph and all(
            isinstance(op, list) and op and isinstance(op[0], str) for op in graph):
        return graph
    return None


def install_forwards(model: nn.Module) -> int:
    """Install the chains (:func:`~tritium.runtime.chain.install_chains`) and give every module
    of ``model`` whose compiler wrote its ``forward`` as dataflow ops (``tritium_graph``) and
    that holds a frozen ternary layer its :class:`GraphForward`. Returns how many modules run a
    plan. Idempotent; the generated ``forward`` stays the class's."""
    count = install_chains(model)
    for mod in model.modules():
        graph = _graph_data(mod)
        if graph is None:
            continue
        count += install_plan(mod, GraphForward, "tritium_graph", graph, lambda top=mod: any(
            isinstance(m, TernaryLayer) and m.frozen for m in top.modules()))
    return count
