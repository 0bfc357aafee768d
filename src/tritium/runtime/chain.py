"""A frozen generated model's ``forward`` run as one plan, from the chain its compiler wrote.

When a definition's ``forward`` is one chain of unary steps -- declared layers called on the
running value, elementwise activations, ``flatten`` -- the code generator writes the steps
into the module as data (``self.tritium_chain``: ``["layer", attr]`` and
``["call", fn, *constants]``, see ``tritium.backends.pytorch.chain``). :func:`install_chains`
(run by :func:`tritium.runtime.freeze_model` and by checkpoint loading) turns them into a
:class:`ChainForward`, installed as that module's ``forward``:

- consecutive frozen :class:`~tritium.runtime.layers.TernaryLinear` layers, each with the
  ``relu``/``relu6`` that follows it fused into its epilogue (exact; other activations run
  as the torch functions, between native calls), run in one native call
  (``tri_chain_planned``: the intermediate activations never reach Python);
- a frozen :class:`~tritium.runtime.layers.TernaryConv2d` runs its own plan with the
  following ``relu``/``relu6`` fused, and the ``nn.MaxPool2d``/``nn.AvgPool2d`` right after
  it in the same native call (``tri_conv2d_pool_planned``: the conv's output planes are
  pooled while they are in cache, never written whole);
- a full-precision ``nn.Conv2d`` (a first layer kept in fp32) runs with the
  ``nn.BatchNorm2d`` in inference form, the ``relu``/``relu6`` and the max/avg pooling after
  it in one native call (``tri_conv2d_f32``, :class:`~tritium.runtime.plan.FloatConvPlan`):
  the flat convolution on the model's float weights, the batch norm folded into its epilogue.
  This is the one step whose values are not the generated forward's bit for bit: its sums
  run in another order than oneDNN's (within float rounding; the modules run whenever the
  plan does not hold: a batch norm in training mode, autograd, hooks);
- any other ``nn.MaxPool2d``/``nn.AvgPool2d`` runs natively (``tri_pool2d``, the same values
  as torch's, bit for bit: :class:`~tritium.runtime.plan.PoolPlan`);
- folded batch norms (``nn.Identity``) vanish; every other step runs as the generated code
  would run it (the module is called, or the same torch function).

Nothing is guessed from Python source: the steps are the compiler's, and the modules they
name are checked when the plan is built. Each call checks, cheaply, that the plan still
holds (the same modules, of the same classes, under those names, no hooks on the fused ones,
unchanged weights, one float32 CPU tensor argument, nothing that needs autograd, not under
``torch.compile``); a ternary layer of a subclass with its own ``forward``, or with a
parametrization, runs as a module;
otherwise the generated ``forward`` runs, so results and errors are the generated code's
(bit for bit, but for a full-precision conv's rounding, above).
"""

from __future__ import annotations

import ctypes
import inspect
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _nn_module

from tritium.backends import cpu as cpu_backend
from tritium.runtime import plan as _plan
from tritium.runtime.capture import capturing
from tritium.runtime.layers.ternary import TernaryConv2d, TernaryLayer, TernaryLinear
from tritium.runtime.native import _ACT_CODE, _g2_layout

__all__ = ["ChainForward", "install_chains"]

_ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh,
}
# the activations the kernels' epilogue computes exactly as torch does (NaN included), so
# fusing them changes no bit; the others (gelu, silu, ...) run as the torch functions
_EXACT_EPILOGUE = frozenset({"relu", "relu6"})


def _no_hooks(mod: nn.Module) -> bool:
    return not (mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks
                or mod._backward_pre_hooks)


def _native_linear(mod: Any) -> bool:
    """A frozen ternary linear layer whose forward is the plain product (not BitLinear's
    RMSNorm first, nor a subclass's own forward)."""
    cls = type(mod)
    return (isinstance(mod, TernaryLinear) and mod.frozen
            and cls._pre is TernaryLinear._pre and cls.forward is TernaryLinear.forward)


def _chain_args(plans: list, codes: list[int], caps: list[int] | None = None) -> tuple:
    """The ``TriChainPlan`` of ``plans`` (consecutive layers of one kernel library) with their
    activation codes and, when any is set, their thread caps: (its address, what keeps it and
    the arrays it points into alive)."""
    count = len(plans)
    structs = (cpu_backend.LinearPlanArgs * count)(*[p.args for p in plans])
    acts = (ctypes.c_int32 * count)(*codes)
    cap_arr = (ctypes.c_int32 * count)(*caps) if caps is not None and any(caps) else None
    args = cpu_backend.ChainPlanArgs(
        nlayers=count, layers=ctypes.addressof(structs), acts=ctypes.addressof(acts),
        max_n=max([p.n for p in plans[:-1]], default=1),
        caps=None if cap_arr is None else ctypes.addressof(cap_arr))
    return ctypes.addressof(args), (args, structs, acts, cap_arr)


class _LinearRun:
    """Consecutive frozen ternary linear layers, each with its fused activation, in one native
    call; the layers' own forwards when the call does not fit (shape, autograd, no native
    kernels). Under a tuned config resolver each layer runs the config it resolves to, and
    consecutive layers that resolve to the same kernel library still run in one native call
    (that library's chain, each layer with its own thread cap): tuning changes the kernels,
    not the fusion."""

    __slots__ = ("layers", "acts", "codes", "k0", "n_last", "plans", "args_ptr", "keep", "gws",
                 "g2_min", "env_threads", "fn", "biases", "guard", "tuned")

    def __init__(self, layers: list[TernaryLinear], acts: list[str | None]) -> None:
        self.layers, self.acts = layers, acts
        self.codes = [_ACT_CODE[a] for a in acts]
        self.k0, self.n_last = layers[0].in_features, layers[-1].out_features
        self.biases = [layer.bias for layer in layers if layer.bias is not None]
        self.plans: list | None = None

    def _stale(self) -> bool:
        """Whether a layer's weight, scale or bias is another tensor, was changed in place or
        got another storage (``.data =``), or its activation mode changed, since the plans
        were built (what each layer's ``_current_plan`` checks, in one loop)."""
        if self.plans is None:
            return True
        holds = _plan.stamp_holds
        for layer, aq, bufs, params, w, s, b, versions in self.guard:
            if bufs["weight_packed"] is not w or bufs["weight_scale"] is not s \
                    or params.get("bias") is not b or layer.act_quant != aq \
                    or not holds(versions, w, s, b):
                return True
        return False

    def _build(self) -> bool:
        """(Re)build the native chain from the layers' current plans; False without one."""
        plans = [layer._current_plan() for layer in self.layers]
        if any(p is None for p in plans) or len({p.lib.lib._handle for p in plans}) != 1:
            self.plans = None
            return False
        self.args_ptr, self.keep = _chain_args(plans, self.codes)
        self.fn = plans[0].lib.call.tri_chain_planned
        int8 = [p.g2_min for p in plans if p.aq]
        self.g2_min = min(int8) if int8 else 1 << 62
        self.gws = None
        self.env_threads = plans[0].env_threads
        self.guard = [(layer, p.act_quant, layer._buffers, layer._parameters, *p.tensors,
                       p.versions) for layer, p in zip(self.layers, plans, strict=True)]
        self.tuned = {}
        self.plans = plans
        return True

    def _tuned_calls(self, m: int) -> list[tuple] | None:
        """The native calls of ``m`` rows under the installed config resolver, kept until it
        changes (None when every layer resolved to the default kernels: the default call
        runs): one per run of consecutive layers whose resolved configs share a kernel
        library (configs that differ only in threads share one; each layer keeps its own
        thread cap in the call), as (that library's ``tri_chain_planned``, its chain
        arguments, the run's output width, its layers' G2 layouts, what keeps the arguments
        alive)."""
        hit = self.tuned.get(m)
        if hit is not None and hit[0] == _plan._RESOLVER_GENERATION:
            return hit[1]
        if len(self.tuned) >= 64:   # batch sizes come and go: keep a bounded few
            self.tuned.clear()
        plans = self.plans
        if all(p.runs_default(m) for p in plans):
            self.tuned[m] = (_plan._RESOLVER_GENERATION, None)
            return None
        choices = [p.chain_choice(m) for p in plans]
        calls = []
        i = 0
        while i < len(plans):
            lib = choices[i][0]
            j = i + 1
            while j < len(plans) and choices[j][0].lib._handle == lib.lib._handle:
                j += 1
            group, picked = plans[i:j], choices[i:j]
            args_ptr, keep = _chain_args(group, self.codes[i:j], [cap for _, cap, _ in picked])
            ptrs = []
            for p, (_, _, g2_min) in zip(group, picked, strict=True):
                if p.aq == 1 and m >= g2_min and p.g2 is None:
                    p.g2 = _g2_layout(p.lib, p.tensors[0], p.n, p.k, p.fmt)
                ptrs.append(p.g2.data_ptr() if p.aq == 1 and m >= g2_min
                            and p.g2 is not None else None)
            gws = (ctypes.c_void_p * len(ptrs))(*ptrs)
            # (the array's address is what the call takes; `keep` holds the array alive)
            calls.append((lib.call.tri_chain_planned, args_ptr, group[-1].n,
                          ctypes.addressof(gws), (*keep, gws)))
            i = j
        self.tuned[m] = (_plan._RESOLVER_GENERATION, calls)
        return calls

    def _g2_layouts(self):
        """The address of the G2 layouts of the int8 layers (made on first use): a
        ``const uint8_t *[]`` the chain keeps."""
        if self.gws is None:
            ptrs = []
            for p in self.plans:
                if p.aq and p.g2 is None:
                    p.g2 = _g2_layout(p.lib, p.tensors[0], p.n, p.k, p.fmt)
                ptrs.append(None if not p.aq or p.g2 is None else p.g2.data_ptr())
            arr = (ctypes.c_void_p * len(ptrs))(*ptrs)
            self.gws = (arr, ctypes.addressof(arr))
        return self.gws[1]

    def slow(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.layers, self.acts, strict=True):
            x = layer(x, act)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        # (the chain's input is float32, but a module before the run may make another dtype)
        if len(shape) != 2 or shape[1] != self.k0 or x.dtype is not torch.float32 \
                or not x.is_cpu or x.requires_grad and torch.is_grad_enabled():
            return self.slow(x)
        if self._stale() and not self._build():
            return self.slow(x)
        m = shape[0]
        if not x.is_contiguous():
            x = x.contiguous()
        if _plan._RESOLVER is not None:   # tuned configs: each layer's resolved kernels
            calls = self._tuned_calls(m)
            if calls is not None:
                threads = _plan._call_threads(self.env_threads, 0)
                for fn, args_ptr, n_out, gws, _ in calls:
                    y = x.new(m, n_out)
                    if fn(args_ptr, x.data_ptr(), m, y.data_ptr(), threads, gws):
                        raise MemoryError("tritium: the native chain of ternary linear layers "
                                          "could not allocate its buffers")
                    x = y
                return x
        y = x.new(m, self.n_last)   # float32 CPU, like x; cheaper than torch.empty(dtype=)
        rc = self.fn(self.args_ptr, x.data_ptr(), m, y.data_ptr(),
                     _plan._call_threads(self.env_threads, 0),
                     self._g2_layouts() if m >= self.g2_min else None)
        if rc != 0:
            raise MemoryError("tritium: the native chain of ternary linear layers could not "
                              "allocate its buffers")
        return y


class _ConvStep:
    """A frozen ternary conv2d with its fused activation (its forward runs its plan), and the
    max/avg pooling that follows it, when one does, run in the same native call.

    With ``reuse`` (set by :func:`_compile` when the next op is another conv step, which reads
    this output and makes a new tensor, so the output dies inside the plan) the output is
    written into the calling thread's buffer of the previous call when the shapes agree: a
    batch-64 activation of MobileNetV2 is 38 MB, above glibc's 32 MB ceiling for reusing freed
    memory, so a new tensor is freshly mapped pages on every call (page faults and zeroing,
    a tenth of the model's time). The buffer stays allocated between calls."""

    __slots__ = ("layer", "act", "pool", "reuse")

    def __init__(self, layer: TernaryConv2d, act: str | None,
                 pool: _plan.PoolPlan | None = None) -> None:
        self.layer, self.act, self.pool = layer, act, pool
        self.reuse: threading.local | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pool, layer, reuse = self.pool, self.layer, self.reuse
        if (pool is not None or reuse is not None) and x.dim() == 4 \
                and x.shape[1] == layer.in_channels:
            plan = layer._frozen_plan(x, None)
            if plan is not None:
                y = plan.conv2d(x if x.is_contiguous() else x.contiguous(), layer.kernel_size,
                                layer.stride, layer.padding, layer.dilation, self.act, None,
                                pool, layer.groups,
                                None if reuse is None else getattr(reuse, "out", None))
                if y is not None:
                    if reuse is not None:
                        reuse.out = y
                    return y
        y = layer.forward(x, self.act)
        return y if pool is None else pool(y)


class _FloatConvStep:
    """A full-precision ``nn.Conv2d`` with the inference-form batch norm, exact activation and
    pooling that follow it, in one native call (:class:`~tritium.runtime.plan.FloatConvPlan`);
    the modules one after the other when the plan does not take the call (a batch norm in
    training mode, autograd, ...)."""

    __slots__ = ("conv", "bn", "act", "pool", "plan")

    def __init__(self, conv: nn.Conv2d, bn: nn.Module | None, act: str | None,
                 pool: _plan.PoolPlan | None) -> None:
        self.conv, self.bn, self.act, self.pool = conv, bn, act, pool
        self.plan = _plan.FloatConvPlan(conv, bn)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.plan(x, self.act, self.pool)
        if y is not None:
            return y
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        if self.act is not None:
            y = _ACTIVATION_FNS[self.act](y)
        return y if self.pool is None else self.pool(y)


def _function(step: list) -> Callable[[torch.Tensor], torch.Tensor] | None:
    name = step[1]
    if name in _ACTIVATION_FNS and len(step) == 2:
        return _ACTIVATION_FNS[name]
    if name == "flatten" and len(step) == 4:
        start, end = int(step[2]), int(step[3])
        return lambda x: torch.flatten(x, start, end)
    return None


def _compile(module: nn.Module, steps: list) -> tuple[list, list, list] | None:
    """The program of ``steps`` on ``module``'s current children: (ops, the names and modules
    whose identity the plan depends on, the parameters whose ``requires_grad`` rules the plan
    out), or None when a step is not understood."""
    ops: list = []
    guarded: list[tuple[str, nn.Module]] = []
    params: list = []
    pending: list = []   # (layer, activation) of the ternary linear run being gathered

    def layer_at(j: int) -> nn.Module | None:
        """The module of step ``j`` when it is a ``["layer", name]`` step."""
        if j < len(steps) and list(steps[j][:1]) == ["layer"] and len(steps[j]) == 2 \
                and isinstance(steps[j][1], str):
            return module._modules.get(steps[j][1])
        return None

    def skip_identities(j: int) -> int:
        """The first step from ``j`` that is not an ``nn.Identity`` without hooks (a folded
        batch norm), guarding the ones skipped."""
        while type(nxt := layer_at(j)) is nn.Identity and _no_hooks(nxt):
            guarded.append((steps[j][1], nxt))
            j += 1
        return j

    def fused_act(j: int) -> tuple[str | None, int]:
        """The activation an epilogue computes exactly at step ``j`` (past folded batch
        norms), and the step after it; else (None, ``j``)."""
        k = skip_identities(j)
        if k < len(steps) and list(steps[k][:1]) == ["call"] and len(steps[k]) == 2 \
                and steps[k][1] in _EXACT_EPILOGUE:
            return steps[k][1], k + 1
        return None, k

    def fused_pool(j: int) -> tuple[_plan.PoolPlan | None, int]:
        """The native max/avg pooling of step ``j``, and the step after it; else (None,
        ``j``)."""
        nxt = layer_at(j)
        pool = _plan.pool_plan(nxt) if nxt is not None and _no_hooks(nxt) else None
        if pool is None:
            return None, j
        guarded.append((steps[j][1], nxt))
        return pool, j + 1

    def flush() -> None:
        if pending:
            run = _LinearRun([lay for lay, _ in pending], [a for _, a in pending])
            params.extend(run.biases)
            ops.append(run)
            pending.clear()

    i = 0
    while i < len(steps):
        step = steps[i]
        if not isinstance(step, list | tuple) or len(step) < 2:
            return None
        if step[0] == "call":
            fn = _function(list(step))
            if fn is None:
                return None
            flush()
            ops.append(fn)
            i += 1
            continue
        if step[0] != "layer" or not isinstance(step[1], str):
            return None
        name = step[1]
        mod = module._modules.get(name)
        if mod is None:
            return None
        guarded.append((name, mod))
        i += 1
        if type(mod) is nn.Identity and _no_hooks(mod):
            continue
        fusable = isinstance(mod, TernaryLayer) and mod.frozen and _no_hooks(mod) \
            and "parametrizations" not in mod._modules and (
            _native_linear(mod) or isinstance(mod, TernaryConv2d)
            and type(mod).forward is TernaryConv2d.forward)
        if not fusable and type(mod) is nn.Conv2d and _no_hooks(mod) \
                and _plan._float_conv_params(mod) is not None:
            # a full-precision conv: the batch norm, activation and pooling after it (past
            # nn.Identity steps) in one native call
            flush()
            i, bn = skip_identities(i), None
            nxt = layer_at(i)
            if type(nxt) is nn.BatchNorm2d and _no_hooks(nxt):
                guarded.append((steps[i][1], nxt))
                bn, i = nxt, i + 1
            act, i = fused_act(i)
            pool, i = fused_pool(i)
            ops.append(_FloatConvStep(mod, bn, act, pool))
            continue
        if not fusable:
            flush()
            pool = _plan.pool_plan(mod) if _no_hooks(mod) else None
            ops.append(mod if pool is None else pool)   # max/avg pooling: natively
            continue
        # the activation that follows (past folded batch norms) goes into the epilogue
        act, i = fused_act(i)
        if isinstance(mod, TernaryConv2d):
            flush()
            # a max/avg pooling right after (past the activation) runs in the conv's call
            pool, i = fused_pool(i)
            ops.append(_ConvStep(mod, act, pool))
            continue
        if pending and pending[-1][0].out_features != mod.in_features:
            flush()
        pending.append((mod, act))
    flush()
    for op, nxt in zip(ops, ops[1:]):
        if isinstance(op, _ConvStep) and op.pool is None and isinstance(nxt, _ConvStep):
            op.reuse = threading.local()
    return ops, guarded, params


class ChainForward:
    """The ``forward`` :func:`install_chains` gives a frozen generated module whose code is
    one chain: runs the compiled steps (see the module docstring), or the generated
    ``forward`` whenever the plan does not hold for a call."""

    def __init__(self, module: nn.Module, steps: list) -> None:
        self.module = module
        self.steps = [list(s) for s in steps]
        self.generated = type(module).forward
        self.original = self.generated.__get__(module)
        self.program: tuple | None = None
        self.types: tuple = ()   # (name, module, its class) of each module the program reads
        try:
            self.__signature__ = inspect.signature(self.original)
        except (TypeError, ValueError):
            pass
        self.__doc__ = type(module).forward.__doc__

    def __reduce__(self):   # copies and pickles rebuild the plan (ctypes pointers stay here)
        return (type(self), (self.module, self.steps))

    def _build(self) -> tuple | None:
        """(ops, the (name, module) pairs the plan depends on, the parameters whose
        ``requires_grad`` rules it out, the (attribute, value) pairs it depends on)."""
        prog = _compile(self.module, self.steps)
        return None if prog is None else (*prog, ())

    def _program(self) -> tuple | None:
        """The plan (see :meth:`_build`) for the module as it is now."""
        self._current()
        return self.program

    def _current(self) -> list | None:
        """The ops to run, or None when the generated forward must: a step's module has hooks
        (they must see their calls), or the steps are not understood. Rebuilds when a module
        (or an attribute the plan read) was replaced."""
        prog = self.program
        if prog is not None:
            mods = self.module._modules
            # (the class too: ``mod.__class__ = Sub``, as parametrizations do, changes what
            # its call computes)
            for name, mod, cls in self.types:
                if mods.get(name) is not mod or type(mod) is not cls:
                    break
                if mod is not None and (mod._forward_hooks or mod._forward_pre_hooks):
                    return None
            else:
                attrs = prog[3]
                if not attrs or all(getattr(self.module, a, None) == v for a, v in attrs):
                    return prog[0]
        prog = self.program = self._build()
        self.types = () if prog is None else tuple((n, m, type(m)) for n, m in prog[1])
        if prog is None or any(m is not None and (m._forward_hooks or m._forward_pre_hooks)
                               for _, m in prog[1]):
            return None
        return prog[0]

    def _run(self, ops: list, x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x = op(x)
        return x

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if type(self.module).forward is not self.generated:   # the class changed since
            return type(self.module).forward(self.module, *args, **kwargs)
        if len(args) != 1 or kwargs or capturing():
            return self.original(*args, **kwargs)
        x = args[0]
        if type(x) is not torch.Tensor or x.dtype != torch.float32 or not x.is_cpu \
                or _nn_module._global_forward_hooks or _nn_module._global_forward_pre_hooks:
            return self.original(x)
        ops = self._current()
        if ops is None or torch.is_grad_enabled() and (
                x.requires_grad or any(p.requires_grad for p in self.program[2])):
            return self.original(x)
        return self._run(ops, x)


def install_plan(mod: nn.Module, cls: type, attr: str, data: list,
                 worth_it: Callable[[], bool]) -> bool:
    """Give ``mod`` the ``forward`` ``cls(mod, data)`` (data: its ``attr``) unless it has one
    already; not when its instance has another ``forward``, when the class whose forward runs
    is not the one that wrote ``attr``, or when ``worth_it()`` says there is nothing to plan.
    Whether ``mod`` runs such a plan."""
    if isinstance(mod.__dict__.get("forward"), cls):
        return True
    if "forward" in mod.__dict__ or not written_by_the_forwards_class(mod, attr) \
            or not worth_it():
        return False
    mod.forward = cls(mod, data)
    return True


def written_by_the_forwards_class(mod: nn.Module, attr: str) -> bool:
    """Whether the class whose ``forward`` runs is the one whose ``__init__`` wrote ``attr``
    (a subclass that overrides ``forward`` keeps it: the data describe another forward)."""
    for cls in type(mod).__mro__:
        if "forward" in cls.__dict__:
            init = cls.__dict__.get("__init__")
            code = getattr(init, "__code__", None)
            return code is not None and attr in code.co_names
    return False


def install_chains(model: nn.Module) -> int:
    """Give every module of ``model`` whose compiler listed its ``forward`` as a chain
    (``tritium_chain``) and that holds a frozen ternary layer the :class:`ChainForward` of it.
    Returns how many were installed. Idempotent; the generated ``forward`` stays the class's."""
    count = 0
    for mod in model.modules():
        steps = getattr(mod, "tritium_chain", None)
        if not isinstance(steps, list) or not steps or not all(
                isinstance(s, list | tuple) and len(s) >= 2 and isinstance(s[0], str)
                and isinstance(s[1], str) for s in steps):
            continue
        count += install_plan(mod, ChainForward, "tritium_chain", steps, lambda m=mod, st=steps: any(
            isinstance(m._modules.get(s[1]), TernaryLayer) and m._modules[s[1]].frozen
            for s in st if s[0] == "layer"))
    return count
