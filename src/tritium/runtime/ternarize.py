"""The way in from existing PyTorch code: :func:`ternarize` turns the ``nn.Linear``,
``nn.Conv1d`` and ``nn.Conv2d`` layers of any ``nn.Module`` into Tritium's ternary layers, in
place, starting quantization-aware training from the weights they hold.

    model = MyResNet()                                   # plain PyTorch, maybe pretrained
    model, report = tritium.ternarize(model)             # first and last layers stay fp32
    print(report)                                        # what was replaced, what kept, why
    ...train...                                          # QAT from the pretrained weights
    tritium.runtime.freeze_model(model)                  # packed, batch norms folded

What is converted: layers of exactly the types ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d``
(a subclass may compute something else and is kept) and transformers' ``Conv1D`` (a linear
layer with its weight stored transposed: GPT-2's projections), including the query/key/value/output
``nn.Linear`` projections of hand-written (Hugging Face style) attention modules and the
feed-forward layers of ``nn.TransformerEncoderLayer`` (whose fused inference path, which would
bypass them, is then turned off for that layer). Kept, each
with its reason in the report: layers inside ``nn.MultiheadAttention`` (it reads its
projection weights directly, never calling them), layers with hooks or parametrizations,
lazy layers, convolutions with a padding mode other than ``"zeros"`` or an asymmetric
``padding="same"``, layers whose weight is tied to a module not converted with them (layers
that share a weight and are all converted keep sharing it), and, by default, the first and
the last of the model's linear and convolution layers in execution order
(``keep_first_last``; the ternary papers keep them in full precision, where they cost little
and matter most).

Selection: ``include`` and ``exclude`` take a pattern or a list of them; a pattern is a glob
over dotted module names (``"layer1.*"``, ``"*.q_proj"``, ``"fc"``) or a module class
(``nn.Conv2d``, ``MyAttention``), and a module matches when it or one of its ancestors
does, so ``exclude="encoder"`` keeps everything under ``encoder``. A pattern that matches no
module is an error (a typo would otherwise silently change nothing).

Batch-norm folding: :func:`tritium.runtime.freeze_model` folds ``bn(layer(x))`` pairs it
can prove. Consecutive children of an ``nn.Sequential`` it finds itself; for other modules
(a torchvision-style ``BasicBlock``: ``self.bn1(self.conv1(x))``) :func:`ternarize` traces
the model with ``torch.fx`` and declares each pair whose layer's only consumer is the batch
norm and whose batch norm reads nothing else (both called once, siblings of one parent) in
the parent's ``tritium_identity_folds`` list; a folded batch norm becomes ``nn.Identity``.
When the model cannot be traced, only the ``nn.Sequential`` pairs fold and the report says
why.

Replaying: every call's options are recorded on the model (``model.tritium_ternarize``), and a
checkpoint written by :func:`tritium.runtime.save_checkpoint` stores them, so a model
rebuilt from a Python entry point (``tritium eval --trust-entry-point``) is ternarized again
the same way before the weights are loaded.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tritium.runtime.layers import TernaryConv2d, TernaryLayer, TernaryLinear, TritiumLayer

__all__ = ["TernarizeReport", "TernaryConv1d", "ternarize", "ternarize_record_problem",
           "apply_ternarize_record", "fp32_layer_names"]

_CONVERTIBLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
SPEC_VERSION = 1


def _is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2, GPT-J style projections): a linear layer whose weight
    is stored transposed, ``[in, out]``, computing ``x @ W + b``. Matched by exact type (a
    subclass may compute something else); transformers itself is never imported here."""
    t = type(module)
    return t.__name__ == "Conv1D" and t.__module__ == "transformers.pytorch_utils"


def _convertible(module: nn.Module) -> bool:
    """A layer ternarize considers: a linear or convolution layer, or transformers' Conv1D."""
    return isinstance(module, _CONVERTIBLE) or _is_hf_conv1d(module)


class TernaryConv1d(TernaryConv2d):
    """1-D convolution with ternary weights (arguments as ``nn.Conv1d`` plus the quantizer
    ones of :class:`~tritium.runtime.TernaryLinear`): a :class:`TernaryConv2d` with a
    ``(1, k)`` kernel over inputs viewed as ``[N, C, 1, L]``, so it freezes, packs and
    checkpoints as one. Its latent weight is ``[out, in/groups, 1, k]``; a 3-D
    ``nn.Conv1d`` weight loads into it (``load_state_dict`` inserts the unit axis). The
    batch norm that folds into it is a ``BatchNorm1d``, as after an ``nn.Conv1d``."""

    folds_batchnorm = nn.BatchNorm1d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int],
                 stride: int | tuple[int] = 1, padding: int | tuple[int] = 0,
                 dilation: int | tuple[int] = 1, groups: int = 1, bias: bool = True,
                 **quant: Any) -> None:
        def one(v: int | tuple[int], what: str) -> int:
            t = (v,) if isinstance(v, int) else tuple(v)
            if len(t) != 1:
                raise ValueError(f"{what} of a 1-D convolution must be one int, got {v!r}")
            return int(t[0])

        super().__init__(in_channels, out_channels, (1, one(kernel_size, "kernel_size")),
                         (1, one(stride, "stride")), (0, one(padding, "padding")),
                         (1, one(dilation, "dilation")), groups, bias, **quant)

    def forward(self, x: torch.Tensor, activation: str | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() not in (2, 3):
            raise ValueError(f"TernaryConv1d takes [N, C, L] or [C, L] inputs, got shape "
                             f"{tuple(x.shape)}")
        batched = x.dim() == 3
        x4 = x.unsqueeze(2) if batched else x.unsqueeze(0).unsqueeze(2)
        r4 = None
        if residual is not None:
            r4 = residual.unsqueeze(2) if batched else residual.unsqueeze(0).unsqueeze(2)
        y = super().forward(x4, activation, r4).squeeze(2)
        return y if batched else y.squeeze(0)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        key = prefix + "weight"
        w = state_dict.get(key)
        if isinstance(w, torch.Tensor) and w.dim() == 3 and not self.frozen:
            state_dict[key] = w.unsqueeze(2)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size=({self.kernel_size[1]},), "
             f"stride=({self.stride[1]},), padding=({self.padding[1]},)")
        if self.dilation[1] != 1:
            s += f", dilation=({self.dilation[1]},)"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + f", bias={self.bias is not None}, {self._quant_repr()}"


# ----------------------------------------------------------------------------- patterns

def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class _Pattern:
    """A module-name glob, or a class given by its qualified name (matched over the MRO, so
    a recorded pattern replays without importing anything)."""

    glob: str | None = None
    cls: str | None = None

    @classmethod
    def of(cls, p: Any, what: str) -> _Pattern:
        if isinstance(p, _Pattern):
            return p
        if isinstance(p, str):
            if not p or len(p) > 1000 or any(ord(c) < 32 or ord(c) == 127 for c in p):
                raise ValueError(f"{what}: {p[:60]!r} is not a module-name pattern")
            return cls(glob=p)
        if isinstance(p, type) and issubclass(p, nn.Module):
            return cls(cls=_qualname(p))
        raise TypeError(f"{what} takes module-name globs (str) or nn.Module classes, "
                        f"got {p!r}")

    def hits(self, name: str, module: nn.Module) -> bool:
        if self.glob is not None:
            return fnmatch.fnmatchcase(name, self.glob)
        # a class defined in a script (`__main__`) is found again under its module's name
        # when the model is rebuilt from an entry point importing that script
        main = self.cls is not None and self.cls.startswith("__main__.")
        return any(_qualname(c) == self.cls or (main and c.__qualname__ == self.cls[9:])
                   for c in type(module).__mro__)

    def to_json(self) -> str:
        return f"glob:{self.glob}" if self.glob is not None else f"class:{self.cls}"

    @classmethod
    def from_json(cls, text: Any) -> _Pattern:
        if isinstance(text, str) and text.startswith("glob:") and len(text) > 5:
            return _Pattern.of(text[5:], "pattern")
        if isinstance(text, str) and text.startswith("class:") and len(text) > 6 \
                and all(p.isidentifier() for p in text[6:].split(".")):
            return cls(cls=text[6:])
        raise ValueError(f"{str(text)[:60]!r} is not a recorded pattern")

    def __str__(self) -> str:
        return repr(self.glob) if self.glob is not None else (self.cls or "").rpartition(".")[2]


def _patterns(value: Any, what: str) -> list[_Pattern] | None:
    if value is None:
        return None
    if isinstance(value, str | type | _Pattern):
        value = [value]
    return [_Pattern.of(p, what) for p in value]


def _matches(pats: list[_Pattern], name: str, chain: list[tuple[str, nn.Module]]) -> bool:
    """Whether the module ``name`` or one of its ancestors (``chain``: root first, the
    module last) matches one of ``pats``."""
    return any(p.hits(n, m) for p in pats for n, m in chain if n or p.glob is None)


# ----------------------------------------------------------------------------- the report

@dataclass
class TernarizeReport:
    """What :func:`ternarize` did: ``replaced`` maps module names to ``"Linear -> TernaryLinear"``
    descriptions, ``kept`` maps the linear/convolution layers left as they were to the
    reason, ``folds`` lists the ``(layer, batch norm)`` pairs declared for folding, and
    ``order`` says how first and last were found (``"torch.fx trace"`` or
    ``"registration order"``); ``fold_note`` explains a skipped trace."""

    replaced: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    folds: list[tuple[str, str]] = field(default_factory=list)
    order: str = "registration order"
    fold_note: str = ""
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"ternarized {len(self.replaced)} layer(s), kept {len(self.kept)}"]
        lines += [f"  replaced {n}: {d}" for n, d in self.replaced.items()]
        lines += [f"  kept     {n}: {r}" for n, r in self.kept.items()]
        if self.folds:
            lines.append("  batch norms to fold at freeze: "
                         + ", ".join(f"{b} into {a}" for a, b in self.folds))
        if self.fold_note:
            lines.append(f"  note: {self.fold_note}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- analysis

def _unsupported(module: nn.Module, parent: nn.Module | None) -> str | None:
    """Why a linear/convolution layer cannot be converted (None: it can)."""
    if isinstance(parent, nn.MultiheadAttention):
        return "inside nn.MultiheadAttention, which reads its projection weights directly"
    if isinstance(module, nn.modules.lazy.LazyModuleMixin):
        return "a lazy layer whose shape is not known yet (run one forward first)"
    if type(module) not in _CONVERTIBLE and not _is_hf_conv1d(module):
        return (f"{type(module).__name__} subclasses {type(module).__mro__[1].__name__} and may "
                "compute something else")
    if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks:
        return "it has hooks, which the ternary layer would not carry"
    if torch.nn.utils.parametrize.is_parametrized(module):
        return "its weight is parametrized (weight or spectral norm)"
    if module.weight.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        return f"its weight is {module.weight.dtype}, not a float"
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        if module.padding_mode != "zeros":
            return (f"padding_mode={module.padding_mode!r}: the ternary convolutions pad with "
                    "zeros only")
        if module.transposed:
            return "a transposed convolution"
        if isinstance(module.padding, str) and module.padding == "same":
            for k, d in zip(module.kernel_size, module.dilation):
                if d * (k - 1) % 2:
                    return "padding='same' with an even kernel pads asymmetrically"
    return None


def _padding(module: nn.Conv1d | nn.Conv2d) -> tuple[int, ...]:
    if isinstance(module.padding, str):
        if module.padding == "valid":
            return tuple(0 for _ in module.kernel_size)
        return tuple(d * (k - 1) // 2 for k, d in zip(module.kernel_size, module.dilation))
    return tuple(int(p) for p in module.padding)


def _linear_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a converted linear layer: ``act_quant="int8_image"`` (one scale per
    sample, for convolutions) quantizes a linear layer's input per token, which for the usual
    (batch, features) input of a classifier's head is the same thing."""
    o = dict(options)
    if o.get("act_quant") == "int8_image":
        o["act_quant"] = "int8"
    return o


def _convert(module: nn.Module, options: Mapping[str, Any]) -> TernaryLayer:
    """The ternary layer equivalent of ``module`` holding a copy of its weight and bias
    (latent weights), on its device and in its dtype and training mode."""
    w = module.weight
    factory = {"device": w.device, "dtype": w.dtype}
    new: TernaryLayer
    if isinstance(module, nn.Linear) or _is_hf_conv1d(module):
        options = _linear_options(options)
    if isinstance(module, nn.Linear):
        new = TernaryLinear(module.in_features, module.out_features, module.bias is not None,
                            **options, **factory)
        src = w
    elif _is_hf_conv1d(module):     # weight [in, out]: the same linear layer, transposed
        new = TernaryLinear(w.shape[0], w.shape[1], module.bias is not None, **options,
                            **factory)
        src = w.t()
    elif isinstance(module, nn.Conv2d):
        new = TernaryConv2d(module.in_channels, module.out_channels, module.kernel_size,
                            module.stride, _padding(module), module.dilation, module.groups,
                            module.bias is not None, **options, **factory)
        src = w
    else:
        assert isinstance(module, nn.Conv1d)
        new = TernaryConv1d(module.in_channels, module.out_channels, module.kernel_size,
                            module.stride, _padding(module), module.dilation, module.groups,
                            module.bias is not None, **options, **factory)
        src = w.unsqueeze(2)
    with torch.no_grad():
        new.weight.copy_(src)
        if module.bias is not None:
            assert new.bias is not None
            new.bias.copy_(module.bias)
    new.weight.requires_grad_(w.requires_grad)
    if module.bias is not None and new.bias is not None:
        new.bias.requires_grad_(module.bias.requires_grad)
    new.train(module.training)
    return new


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, TritiumLayer) or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> tuple[torch.fx.Graph | None, str]:
    try:
        return _Tracer().trace(model), ""
    except Exception as exc:  # noqa: BLE001 - any failure of symbolic tracing means "unknown"
        text = " ".join(str(exc).split())[:160] or type(exc).__name__
        return None, f"torch.fx cannot trace the model ({text})"


def _call_order(graph: torch.fx.Graph | None) -> list[str]:
    if graph is None:
        return []
    return [str(n.target) for n in graph.nodes if n.op == "call_module"]


def _proven_folds(graph: torch.fx.Graph, modules: dict[str, nn.Module]
                  ) -> list[tuple[str, str]]:
    """``(layer, batch norm)`` dotted names whose dataflow in the traced graph is exactly
    ``bn(layer(x))``: each module called once, the layer's output used only by the batch
    norm, which takes nothing else; both children of one parent."""
    calls: dict[str, list[torch.fx.Node]] = {}
    for n in graph.nodes:
        if n.op == "call_module":
            calls.setdefault(str(n.target), []).append(n)
    pairs: list[tuple[str, str]] = []
    for name, nodes in calls.items():
        mod = modules.get(name)
        if len(nodes) != 1 or not (mod is not None and _convertible(mod)
                                   or isinstance(mod, TernaryLayer)):
            continue
        node = nodes[0]
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            continue
        bn_node = users[0]
        bn_name = str(bn_node.target)
        bn = modules.get(bn_name)
        # a batch norm without running statistics normalizes by each batch's own: nothing
        # to fold (freeze_model keeps it)
        if not isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d) or bn.running_mean is None \
                or len(calls.get(bn_name, ())) != 1 \
                or bn_node.args != (node,) or bn_node.kwargs:
            continue
        if name.rpartition(".")[0] != bn_name.rpartition(".")[0]:
            continue
        pairs.append((name, bn_name))
    return pairs


# ----------------------------------------------------------------------------- ternarize

def ternarize(
    model: nn.Module,
    include: Any = None,
    exclude: Any = None,
    *,
    quantizer: str = "twn",
    act_quant: str = "none",
    per_channel: bool = False,
    threshold: float | None = None,
    ste: str = "identity",
    keep_first_last: bool | str = True,
    fold_bn: bool = True,
) -> tuple[nn.Module, TernarizeReport]:
    """Convert the linear and convolution layers of ``model`` into ternary layers in place;
    returns ``(model, report)``.

    Each converted layer starts from the existing weight and bias (its latent weights, so
    QAT continues from them). ``include``/``exclude``: module-name globs or module classes
    (see the module documentation); ``quantizer``, ``per_channel``, ``threshold``,
    ``act_quant`` and ``ste`` go to every new layer (as :class:`TernaryLinear` takes them;
    ``act_quant="int8_image"`` quantizes a convolution's input once per sample, the fast
    native int8 convolution, and a linear layer's per token, as ``"int8"``).
    ``keep_first_last``: ``True`` (default) keeps the first and the last linear/convolution
    layer of the model (in ``torch.fx`` execution order, else registration order) in full
    precision, ``"first"`` or ``"last"`` only that one, ``False`` neither. ``fold_bn``:
    declare the batch norms provably applied to a converted layer's output for
    :func:`~tritium.runtime.freeze_model` to fold. When ``model`` is itself one layer and
    is converted, the returned model is the new layer.
    """
    if keep_first_last not in (True, False, "first", "last"):
        raise ValueError(f"keep_first_last must be True, False, 'first' or 'last', got "
                         f"{keep_first_last!r}")
    inc = _patterns(include, "include")
    exc = _patterns(exclude, "exclude")
    options = {"quantizer": quantizer, "act_quant": act_quant, "per_channel": per_channel,
               "threshold": threshold, "ste": ste}
    _validate_options(options)              # before anything changes
    spec = {"version": SPEC_VERSION, "include": None if inc is None else [p.to_json() for p in inc],
            "exclude": None if exc is None else [p.to_json() for p in exc],
            "options": options, "keep_first_last": keep_first_last, "fold_bn": fold_bn}
    return _ternarize(model, inc, exc, options, keep_first_last, fold_bn, spec)


def _ternarize(model: nn.Module, inc: list[_Pattern] | None, exc: list[_Pattern] | None,
               options: dict[str, Any], keep_first_last: bool | str, fold_bn: bool,
               spec: dict[str, Any]) -> tuple[nn.Module, TernarizeReport]:
    report = TernarizeReport()
    modules = dict(model.named_modules())
    parents: dict[str, nn.Module | None] = {"": None}
    for name, mod in modules.items():
        for cname, _child in mod.named_children():
            parents.setdefault(f"{name}.{cname}" if name else cname, mod)

    def chain(name: str) -> list[tuple[str, nn.Module]]:
        parts = name.split(".") if name else []
        names = [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return [(n, modules[n]) for n in names if n in modules]

    for what, pats in (("include", inc), ("exclude", exc)):
        for p in pats or ():
            if not any(p.hits(n, m) for n, m in modules.items() if n or p.glob is None):
                raise ValueError(f"ternarize: {what} pattern {p} matches no module of the "
                                 f"{type(model).__name__}")
    graph, note = _trace(model)
    linear_like = [n for n, m in modules.items() if _convertible(m)]
    order = [n for n in dict.fromkeys(_call_order(graph)) if n in set(linear_like)]
    if graph is not None and set(order) == set(linear_like):
        report.order = "torch.fx trace"
    else:
        order = linear_like
    edge: dict[str, str] = {}
    if order and keep_first_last in (True, "first"):
        edge[order[0]] = "the first layer (kept in full precision: keep_first_last)"
    if order and keep_first_last in (True, "last"):
        edge.setdefault(order[-1], "the last layer (kept in full precision: keep_first_last)")
    chosen: dict[str, nn.Module] = {}
    for name in linear_like:
        mod = modules[name]
        if inc is not None and not _matches(inc, name, chain(name)):
            continue
        if exc is not None and _matches(exc, name, chain(name)):
            report.kept[name] = "excluded"
            continue
        why = edge.get(name) or _unsupported(mod, parents.get(name))
        if why:
            report.kept[name] = why
            continue
        chosen[name] = mod
    groups = _tied_groups(modules, chosen, report)
    grouped = [n for n, m in chosen.items()
               if isinstance(m, nn.Conv1d | nn.Conv2d) and m.groups > 1]
    if grouped and options.get("act_quant") == "int8":
        report.notes.append(
            f"act_quant='int8' quantizes each patch of a grouped or depthwise convolution on "
            f"its own ({', '.join(grouped[:3])}{', ...' if len(grouped) > 3 else ''}): that "
            f"runs in PyTorch, slower than the fp32 layer; act_quant='int8_image' (one scale "
            f"per sample, the native int8 convolution) or 'none' keeps them fast")
    new_of: dict[int, TernaryLayer] = {}
    for name, mod in chosen.items():
        if id(mod) not in new_of:
            new_of[id(mod)] = _convert(mod, options)
        new = new_of[id(mod)]
        report.replaced[name] = f"{type(mod).__name__} -> {type(new).__name__}"
    # layers that shared a weight (or bias) Parameter share the new layers' one
    for members in groups:
        first = new_of[id(members[0][0])]
        for other, pname in members[1:]:
            setattr(new_of[id(other)], pname, getattr(first, pname))
    # replace every reference (a module shared by several parents is replaced everywhere)
    root_new = new_of.get(id(model))
    for mod in modules.values():
        for cname, child in list(mod._modules.items()):
            if child is not None and id(child) in new_of:
                setattr(mod, cname, new_of[id(child)])
    result = root_new if root_new is not None else model
    _disable_fused_transformer_paths(result)
    if fold_bn and graph is not None:
        current = dict(result.named_modules())
        for lname, bname in _proven_folds(graph, modules):
            if not isinstance(current.get(lname), TernaryLayer):
                continue
            parent_name = lname.rpartition(".")[0]
            parent = current[parent_name]
            if type(parent) is nn.Sequential:
                pass       # freeze_model folds consecutive Sequential children itself
            else:
                pair = (lname.rpartition(".")[2], bname.rpartition(".")[2])
                declared = list(getattr(parent, "tritium_identity_folds", None) or ())
                if pair not in declared:
                    parent.tritium_identity_folds = declared + [pair]
            report.folds.append((lname, bname))
    if graph is None:
        report.fold_note = note + ("; first and last were taken in registration order" if
                                   keep_first_last else "")
        if fold_bn:
            report.fold_note += ("; only batch norms that directly follow a layer in an "
                                 "nn.Sequential will be folded")
    # every call is recorded, in order, so that a rebuilt model replays them all
    result.tritium_ternarize = [*(getattr(model, "tritium_ternarize", None) or []), spec]
    return result, report


def _tied_groups(modules: dict[str, nn.Module], chosen: dict[str, nn.Module],
                 report: TernarizeReport) -> list[list[tuple[nn.Module, str]]]:
    """Tied weights: a layer whose weight or bias Parameter another module also holds (a
    language model's output layer tied to its embedding, layers sharing one matrix). When
    every holder is a chosen layer of the same kind and shape, they are converted together
    and share the new layers' Parameter (returned: per tied Parameter, its ``(module, name)``
    holders); when a holder stays as it is (an embedding, a kept layer), the layer is kept too
    (removed from ``chosen``, its reason in ``report.kept``): untied, QAT would train two
    copies that drift apart, and the checkpoint would store both."""
    holders: dict[int, list[tuple[str, nn.Module, str]]] = {}
    for mname, mod in modules.items():
        for pname, p in mod._parameters.items():
            if p is not None:
                holders.setdefault(id(p), []).append((mname, mod, pname))

    def signature(mod: nn.Module) -> tuple:
        return (type(mod), tuple(mod.weight.shape), mod.bias is None)

    changed = True
    while changed:      # keeping one layer may leave another's tie partner unconverted
        changed = False
        for name, mod in list(chosen.items()):
            for pname in ("weight", "bias"):
                p = mod._parameters.get(pname)
                others = [h for h in holders.get(id(p), ()) if h[1] is not mod] if p is not None \
                    else []
                bad = [h for h in others if chosen.get(h[0]) is not h[1] or h[2] != pname
                       or signature(h[1]) != signature(mod)]
                if bad:
                    who = ", ".join(f"{h[0] or 'the model'}.{h[2]}" for h in bad[:3])
                    report.kept[name] = (f"its {pname} is tied to {who}, which is not converted "
                                         "with it (untied, QAT would train two copies)")
                    del chosen[name]
                    changed = True
                    break
    groups: list[list[tuple[nn.Module, str]]] = []
    seen: set[int] = set()
    for mod in chosen.values():
        for pname in ("weight", "bias"):
            p = mod._parameters.get(pname)
            if p is None or id(p) in seen or len({id(h[1]) for h in holders[id(p)]}) < 2:
                continue
            seen.add(id(p))
            members = list({id(h[1]): (h[1], pname) for h in holders[id(p)]}.values())
            groups.append(members)
    return groups


def _disable_fused_transformer_paths(model: nn.Module) -> None:
    """Keep PyTorch's fused inference paths of ``nn.TransformerEncoderLayer`` (and the nested
    tensor path of ``nn.TransformerEncoder``) away from converted layers: in eval mode without
    gradients they read ``linear1.weight``/``linear2.weight`` directly, never calling the
    layers, so a ternarized encoder would run its fp32 latent weights and a frozen one (no
    ``weight`` left) would fail. Each fast path checks ``activation_relu_or_gelu`` (the layer)
    or ``use_nested_tensor`` (the stack) first; the ordinary path they fall back to calls the
    layers and applies ``activation`` as before."""
    touched = set()
    for mod in model.modules():
        if isinstance(mod, nn.TransformerEncoderLayer) and any(
                isinstance(getattr(mod, n, None), TritiumLayer) for n in ("linear1", "linear2")):
            mod.activation_relu_or_gelu = 0
            touched.add(id(mod))
    for mod in model.modules():
        if isinstance(mod, nn.TransformerEncoder) and any(
                id(layer) in touched for layer in mod.layers):
            mod.use_nested_tensor = False


# ----------------------------------------------------------------------------- replaying

def ternarize_record_problem(record: Any) -> str | None:
    """What is wrong with a recorded list of ternarize calls (``model.tritium_ternarize``,
    from a checkpoint: untrusted), or None."""
    if not isinstance(record, list) or not 1 <= len(record) <= 100:
        return "expected a list of 1 to 100 ternarize calls"
    for i, spec in enumerate(record):
        problem = ternarize_spec_problem(spec)
        if problem is not None:
            return f"call {i + 1}: {problem}"
    return None


def ternarize_spec_problem(spec: Any) -> str | None:
    """What is wrong with one recorded ternarize call, or None."""
    if not isinstance(spec, dict) or spec.get("version") != SPEC_VERSION:
        return f"not a version {SPEC_VERSION} ternarize record"
    want = {"include", "exclude", "options", "keep_first_last", "fold_bn"}
    if set(spec) - {"version"} != want:
        return f"expected the keys {sorted(want)}"
    for key in ("include", "exclude"):
        v = spec[key]
        if v is not None:
            if not isinstance(v, list) or len(v) > 1000:
                return f"{key} is not a list of patterns"
            for p in v:
                try:
                    _Pattern.from_json(p)
                except ValueError as e:
                    return f"{key}: {e}"
    if spec["keep_first_last"] not in (True, False, "first", "last") \
            or not isinstance(spec["fold_bn"], bool):
        return "keep_first_last or fold_bn has a wrong value"
    o = spec["options"]
    if not isinstance(o, dict) or set(o) != {"quantizer", "act_quant", "per_channel",
                                             "threshold", "ste"}:
        return "options are not the ternary layer options"
    try:
        _validate_options(o)
    except (TypeError, ValueError) as e:
        return f"options: {e}"
    return None


def _validate_options(options: Mapping[str, Any]) -> None:
    """Raises for options a converted linear or convolution layer would refuse."""
    TernaryLinear(1, 1, **_linear_options(options))
    TernaryConv2d(1, 1, 1, **options)


def apply_ternarize_record(model: nn.Module, record: list[dict[str, Any]]
                           ) -> tuple[nn.Module, list[TernarizeReport]]:
    """Ternarize ``model`` again as a recorded list of calls (``model.tritium_ternarize``,
    stored in checkpoints) says: the same conversions, in the same order."""
    problem = ternarize_record_problem(record)
    if problem is not None:
        raise ValueError(f"the recorded ternarize options are malformed: {problem}")
    reports = []
    for spec in record:
        inc = None if spec["include"] is None else [_Pattern.from_json(p)
                                                    for p in spec["include"]]
        exc = None if spec["exclude"] is None else [_Pattern.from_json(p)
                                                    for p in spec["exclude"]]
        model, report = _ternarize(model, inc, exc, dict(spec["options"]),
                                   spec["keep_first_last"], spec["fold_bn"], spec)
        reports.append(report)
    return model, reports


# ----------------------------------------------------------------------------- fp32 layers

def fp32_layer_names(model: nn.Module, tokens: Iterable[str]) -> list[str]:
    """The Tritium layers of ``model`` that ``tokens`` name: ``first``/``last`` (in
    ``torch.fx`` execution order when the model traces, else registration order), exact
    dotted names or globs. Raises ``ValueError`` naming a token that matches no layer."""
    layers = [n for n, m in model.named_modules() if isinstance(m, TernaryLayer)]
    graph, _ = _trace(model)
    order = [n for n in dict.fromkeys(_call_order(graph)) if n in set(layers)]
    if graph is None or set(order) != set(layers):
        order = layers
    chosen: list[str] = []
    for tok in tokens:
        if tok in ("first", "last"):
            hit = order[:1] if tok == "first" else order[-1:]
        else:
            hit = [n for n in layers if fnmatch.fnmatchcase(n, tok)]
        if not hit:
            shown = ", ".join(layers[:12]) + (", ..." if len(layers) > 12 else "")
            raise ValueError(f"{tok[:60]!r} names no ternary layer (layers: {shown or 'none'})")
        chosen += [h for h in hit if h not in chosen]
    return chosen

