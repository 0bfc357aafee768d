"""Building trained models: from a .tri file or back from a checkpoint's metadata, their fp32
twins, their unpacked (exportable) twins, and the input shape a model declares.

A checkpoint written by `tritium train` carries in its `tritium.extra` metadata the `.tri`
source text and hash, the entry name, the hyperparameters, the dataset, the declared input
shape, the input normalization, the variant (`ternary` or `fp32`) and the layers kept in
full precision (`--fp32-layers`), so :func:`model_from_checkpoint` rebuilds the model
without the original file (when the file still exists with the same hash, it is compiled
from there, so its imports resolve too).

A model written from Python (`tritium.ternarize` on a plain PyTorch model, then
`save_checkpoint(..., entry_point="pkg.module:build")`) is rebuilt by importing that module
and calling the callable: running code named by a file, so only when the caller trusts it
(`trust_entry_point=True`, `tritium eval --trust-entry-point`) or names the code itself
(`entry_point=...`, `--entry-point`); see docs/security.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..frontend.diagnostics import Diagnostic
from .compile import CompileError, CompileResult, compile_program
from .run_fields import (
    _entry_field,
    _FieldError,
    _hyper_field,
    _input_fields,
    _kwargs_field,
    _layers_field,
    _name_field,
    _source_field,
    _ternarize_field,
    _text_field,
)

#: the metadata key of a language model's tokenizer (its presence marks a language model;
#: here, below both the trainer and eval/export, which ask)
TOKENIZER_KEY = "tritium.tokenizer"
#: the metadata key of an imported language model's generation settings (hf_tokenizer.py's
#: generation_record: its end-of-sequence ids, the ids its tokenizer puts around a prompt)
GENERATION_KEY = "tritium.generation"

__all__ = [
    "BuiltModel",
    "FloatConv1d",
    "FloatConv2d",
    "FloatLinear",
    "ModelBuildError",
    "RunInfo",
    "build_model",
    "declared_input_shape",
    "float_twin",
    "keep_fp32",
    "model_from_checkpoint",
    "trusted_entry_point",
    "unpacked_twin",
]


class ModelBuildError(Exception):
    """The model cannot be built (bad hyperparameters, checkpoint from elsewhere…)."""

    def __init__(self, message: str, help: str | None = None) -> None:  # noqa: A002
        self.message = message
        self.help = help
        super().__init__(message)


@dataclass
class RunInfo:
    """What a checkpoint must record to rebuild its model and its inputs."""

    source: str
    file: str
    entry: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    dataset_digest: str | None = None   # tritium.data.dataset_digest of the data trained on
    input_shape: list[int] | None = None
    normalization: tuple[float, float] = (0.0, 1.0)
    num_classes: int = 10
    variant: str = "ternary"          # or "fp32"
    format: str = "t2"
    fp32_layers: list[str] = field(default_factory=list)   # ternary layers kept in fp32
    python_entry: str | None = None   # "pkg.module:callable" (instead of a .tri source)
    python_kwargs: dict[str, Any] = field(default_factory=dict)
    ternarize: list[dict[str, Any]] | None = None   # tritium.ternarize's calls, replayed

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def to_extra(self, **more: str) -> dict[str, str]:
        out = {
            "tritium.source": self.source,
            # a file name with bytes that are not UTF-8 (held as lone surrogates) is recorded
            # with those bytes escaped: a checkpoint's strings must be Unicode text
            "tritium.file": self.file.encode("utf-8", "surrogateescape")
                                     .decode("utf-8", "backslashreplace"),
            "tritium.entry": self.entry,
            "tritium.hyperparameters": json.dumps(self.hyperparameters, sort_keys=True),
            "tritium.dataset": self.dataset,
            "tritium.input_shape": json.dumps(self.input_shape),
            "tritium.normalization": json.dumps(list(self.normalization)),
            "tritium.num_classes": str(self.num_classes),
            "tritium.variant": self.variant,
            "tritium.format": self.format,
        }
        if self.dataset_digest is not None:
            out["tritium.dataset_digest"] = self.dataset_digest
        if self.fp32_layers:
            out["tritium.fp32_layers"] = json.dumps(self.fp32_layers)
        if self.python_entry is not None:
            for key in ("tritium.source", "tritium.file", "tritium.entry",
                        "tritium.hyperparameters"):
                del out[key]
            out["tritium.python_entry"] = self.python_entry
            out["tritium.python_kwargs"] = json.dumps(self.python_kwargs, sort_keys=True)
        if self.ternarize is not None:
            out["tritium.ternarize"] = json.dumps(self.ternarize, sort_keys=True)
        out.update(more)
        return out

    @classmethod
    def _from_python_extra(cls, extra: dict[str, str], where: str) -> RunInfo:
        from ..runtime import CheckpointError

        try:
            entry = _entry_field(extra["tritium.python_entry"])
            return cls(source="", file="<python>", entry=entry, python_entry=entry,
                       python_kwargs=_kwargs_field(extra.get("tritium.python_kwargs", "{}")),
                       ternarize=_ternarize_field(extra.get("tritium.ternarize")),
                       **_input_fields(extra))
        except _FieldError as exc:
            raise CheckpointError(where, f"run metadata field {exc.field!r}: {exc.problem}"
                                  ) from None

    @classmethod
    def from_extra(cls, extra: dict[str, str], where: str) -> RunInfo:
        """The run metadata of a checkpoint, every field validated (a checkpoint is
        untrusted input): raises :class:`~tritium.runtime.CheckpointError` naming the file
        and the field."""
        from ..runtime import CheckpointError

        if "tritium.source" not in extra and "tritium.python_entry" in extra:
            return cls._from_python_extra(extra, where)
        for key in ("tritium.source", "tritium.entry"):
            if key not in extra:
                raise ModelBuildError(
                    f"{where} lacks the metadata `{key}`: it was not written by "
                    "`tritium train` nor saved with an entry point",
                    help="name the Python code that builds the model: --entry-point "
                         "MODULE:CALLABLE (or load it with tritium.runtime.load_checkpoint "
                         "into a model you build yourself)")
        try:
            return cls(
                source=_source_field(extra["tritium.source"]),
                file=_text_field(extra.get("tritium.file", "<checkpoint>"), "tritium.file"),
                entry=_name_field(extra["tritium.entry"]),
                hyperparameters=_hyper_field(extra.get("tritium.hyperparameters", "{}")),
                fp32_layers=_layers_field(extra.get("tritium.fp32_layers", "[]")),
                **_input_fields(extra),
            )
        except _FieldError as exc:
            raise CheckpointError(where, f"run metadata field {exc.field!r}: {exc.problem}"
                                  ) from None


@dataclass
class BuiltModel:
    model: nn.Module
    compiled: CompileResult
    entry: str
    source: str


def _instantiate(compiled: CompileResult, entry: str | None,
                 hyper: dict[str, Any]) -> tuple[nn.Module, str]:
    from ..frontend.diagnostics import did_you_mean
    from ..frontend.names import class_name, py_local

    classes = compiled.classes
    target = entry or compiled.entry
    if target is None or (target not in classes and class_name(target) not in classes):
        what = f"no model, block or layer named `{entry}`" if entry else \
            "the file has several models; choose one with --model NAME"
        raise CompileError([Diagnostic("E0304", f"{compiled.file}: {what}", None,
                                       help=did_you_mean(entry or "", list(classes)) or
                                       f"defined: {', '.join(classes) or 'nothing'}")])
    cls = classes.get(target) or classes[class_name(target)]
    try:
        import inspect

        takes = {name: p for name, p in inspect.signature(cls).parameters.items()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    except (TypeError, ValueError):
        takes = None
    unknown = [k for k in hyper if takes is not None and py_local(k) not in takes]
    if unknown:
        raise ModelBuildError(f"`{target}` has no hyperparameter "
                              f"{', '.join(f'`{k}`' for k in unknown)}",
                              help=(f"{did_you_mean(py_local(unknown[0]), list(takes)) or ''}"
                                    f" its hyperparameters: {', '.join(takes)}".lstrip()
                                    if takes
                                    else f"`{target}` takes none (values written in its "
                                         "body are not hyperparameters: declare them in "
                                         "`params { }`)"))
    try:
        return cls(**{py_local(k): v for k, v in hyper.items()}), target
    except (TypeError, ValueError, OverflowError, MemoryError, RuntimeError) as exc:
        raise ModelBuildError(f"cannot build `{target}`: {exc}",
                              help="pass its hyperparameters with --set NAME=VALUE") from None


def build_model(path: str | Path, entry: str | None = None,
                hyper: dict[str, Any] | None = None) -> BuiltModel:
    """Compile `path` and instantiate its entry (raises CompileError/ModelBuildError)."""
    compiled = compile_program(str(path), with_ir=False)
    model, name = _instantiate(compiled, entry, dict(hyper or {}))
    from ..frontend.source import read_source
    source = read_source(str(path)).text
    return BuiltModel(model, compiled, name, source)


def declared_input_shape(path_or_source: str, entry: str,
                         hyper: dict[str, Any] | None = None,
                         file: str | None = None) -> list[int] | None:
    """The per-sample input shape the entry's `forward` declares (batch dim dropped), when
    every dim is a known int; `None` when it is not static."""
    from ..check import check_file, check_source
    from ..check.checker import Checker, Scope
    from ..check.types import TensorT, Value

    if file is None:
        result = check_file(path_or_source)
    else:
        result = check_source(path_or_source, file, Path(file) if Path(file).is_file() else None)
    d = result.definitions.get(entry)
    if d is None or d.kind == "fn":
        return None
    checker = Checker(result.definitions, [])
    try:
        scope, _ = checker.definition_env(
            d.node, {k: Value.of(v) for k, v in (hyper or {}).items()}, abstract=False)
        fn = checker.forward_of(d.node)
        params = [p for p in fn.params if p.type is not None]
        if len(params) != 1:
            return None
        ty = checker.type_from_expr(params[0].type, scope)
    except Exception:  # noqa: BLE001 - an unresolvable declaration just means "not static"
        try:
            ty = checker.type_from_expr(params[0].type, Scope())  # type: ignore[possibly-undefined]
        except Exception:  # noqa: BLE001
            return None
    if not isinstance(ty, TensorT) or ty.shape is None or len(ty.shape) < 2:
        return None
    dims = ty.shape[1:]
    if all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in dims):
        return [int(x) for x in dims]  # type: ignore[arg-type]
    return None


# ----------------------------------------------------------------------------- float twins

class FloatLinear(nn.Linear):
    """`nn.Linear` that accepts the ternary layers' fused `activation=`/`residual=` keywords;
    optionally with BitLinear's RMSNorm and per-token int8 fake quantization of its input."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rms_eps: float | None = None, act_int8: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.rms_eps = rms_eps
        self.act_int8 = act_int8

    def forward(self, x: torch.Tensor, activation: str | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.rms_eps is not None:
            x = F.rms_norm(x, (self.in_features,), eps=self.rms_eps)
        if self.act_int8:
            x = token_fake_quant_int8(x)
        return _epilogue(F.linear(x, self.weight, self.bias), activation, residual)


def token_fake_quant_int8(x: torch.Tensor) -> torch.Tensor:
    """Per-token (last dim) absmax int8 quantization of ``x``, dequantized: what the int8
    kernels compute with, in float ops an exporter can trace."""
    s = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127
    return torch.clamp(torch.round(x / s), -127, 127) * s


class FloatConv2d(nn.Conv2d):
    """`nn.Conv2d` that accepts the ternary layers' fused `activation=`/`residual=` keywords."""

    def forward(self, x: torch.Tensor, activation: str | None = None,  # type: ignore[override]
                residual: torch.Tensor | None = None) -> torch.Tensor:
        return _epilogue(super().forward(x), activation, residual)


class FloatConv1d(nn.Conv1d):
    """`nn.Conv1d` that accepts the ternary layers' fused `activation=`/`residual=` keywords."""

    def forward(self, x: torch.Tensor, activation: str | None = None,  # type: ignore[override]
                residual: torch.Tensor | None = None) -> torch.Tensor:
        return _epilogue(super().forward(x), activation, residual)


_ACTS = {"relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu,
         "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _epilogue(y: torch.Tensor, activation: str | None,
              residual: torch.Tensor | None) -> torch.Tensor:
    if residual is not None:
        y = y + residual
    return y if activation is None else _ACTS[activation](y)


def _replace(model: nn.Module, make) -> tuple[nn.Module, int]:
    """Replace every child for which `make(child)` returns a module; count replacements."""
    count = 0
    for mod in list(model.modules()):
        for cname, child in list(mod.named_children()):
            new = make(child)
            if new is not None:
                setattr(mod, cname, new)
                count += 1
    return model, count


def _float_layer(child: nn.Module, what: str) -> nn.Module | None:
    """The float32 layer equivalent to an unfrozen Tritium layer, holding its latent weights
    (None for other modules)."""
    from ..runtime import (
        BitLinear,
        Int4Linear,
        Int8Linear,
        TernaryConv1d,
        TernaryConv2d,
        TernaryLinear,
    )

    if isinstance(child, TernaryConv2d | TernaryLinear) and child.frozen:
        raise ModelBuildError(f"{what} needs an unfrozen model")
    w = getattr(child, "weight", None)
    if isinstance(child, TernaryConv1d):
        new: nn.Module = FloatConv1d(child.in_channels, child.out_channels,
                                     child.kernel_size[1], child.stride[1], child.padding[1],
                                     child.dilation[1], child.groups,
                                     bias=child.bias is not None)
        w = None if w is None else w.squeeze(2)
    elif isinstance(child, TernaryConv2d):
        new = FloatConv2d(child.in_channels, child.out_channels, child.kernel_size,
                          child.stride, child.padding, child.dilation, child.groups,
                          bias=child.bias is not None)
    elif isinstance(child, TernaryLinear):
        new = FloatLinear(child.in_features, child.out_features, child.bias is not None,
                          rms_eps=child.eps if isinstance(child, BitLinear) else None)
    elif isinstance(child, Int8Linear | Int4Linear):
        new = FloatLinear(child.in_features, child.out_features, child.bias is not None)
    else:
        return None
    with torch.no_grad():
        if isinstance(w, torch.Tensor):
            new.weight.copy_(w)  # type: ignore[union-attr]
        if child.bias is not None:
            new.bias.copy_(child.bias)  # type: ignore[union-attr]
    return new.to(w.device) if isinstance(w, torch.Tensor) else new


def float_twin(model: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy with every Tritium linear/conv layer replaced by its float32 equivalent,
    starting from the same latent weights (so both train from the same initialization)."""
    return _replace(copy.deepcopy(model), lambda c: _float_layer(c, "float_twin"))


def keep_fp32(model: nn.Module, names: list[str]) -> nn.Module:
    """Replace the Tritium layers named (dotted names) by their float32 equivalents, in
    place, keeping their weights: the layers `--fp32-layers` keeps in full precision."""
    want = set(names)
    modules = dict(model.named_modules())
    missing = sorted(want - set(modules))
    if missing:
        raise ModelBuildError(f"no layer named {', '.join(missing[:5])} in the model")
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        new = _float_layer(modules[name], "keep_fp32")
        if new is None:
            raise ModelBuildError(f"`{name}` is a {type(modules[name]).__name__}, not a "
                                  "Tritium layer")
        setattr(modules[parent_name], attr, new)
    return model


def unpacked_twin(model: nn.Module) -> nn.Module:
    """The frozen ternary model as plain torch layers: each packed weight becomes the float
    constant `trits * scale`, so the result exports to ONNX/TorchScript without Tritium's
    custom ops and computes the same function."""
    from ..runtime import BitLinear, TernaryConv1d, TernaryConv2d, TernaryLinear

    def make(child: nn.Module) -> nn.Module | None:
        if isinstance(child, TernaryConv1d):
            if not child.frozen:
                raise ModelBuildError("unpacked_twin needs a frozen model")
            if child.act_quant != "none":
                raise ModelBuildError(
                    "a ternary convolution with int8 activation quantization cannot be "
                    "exported as plain layers", help="export as safetensors instead")
            new1 = FloatConv1d(child.in_channels, child.out_channels, child.kernel_size[1],
                               child.stride[1], child.padding[1], child.dilation[1],
                               child.groups, bias=child.bias is not None)
            q = child.ternary_weight()
            scale = q.scale.float().reshape(-1, 1, 1)
            with torch.no_grad():
                new1.weight.copy_(q.trits.float().squeeze(2) * scale)
                if child.bias is not None:
                    new1.bias.copy_(child.bias)  # type: ignore[union-attr]
            return new1
        if isinstance(child, TernaryLinear):
            if not child.frozen:
                raise ModelBuildError("unpacked_twin needs a frozen model")
            new: nn.Module = FloatLinear(
                child.in_features, child.out_features, child.bias is not None,
                rms_eps=child.eps if isinstance(child, BitLinear) else None,
                act_int8=child.act_quant == "int8")
        elif isinstance(child, TernaryConv2d):
            if not child.frozen:
                raise ModelBuildError("unpacked_twin needs a frozen model")
            if child.act_quant != "none":
                raise ModelBuildError(
                    "a ternary convolution with int8 activation quantization cannot be "
                    "exported as plain layers", help="export as safetensors instead")
            new = FloatConv2d(child.in_channels, child.out_channels, child.kernel_size,
                              child.stride, child.padding, child.dilation, child.groups,
                              bias=child.bias is not None)
        else:
            return None
        q = child.ternary_weight()
        scale = q.scale.float().reshape(-1, *([1] * (q.trits.dim() - 1)))
        with torch.no_grad():
            new.weight.copy_(q.trits.float() * scale)  # type: ignore[union-attr]
            if child.bias is not None:
                new.bias.copy_(child.bias)  # type: ignore[union-attr]
        return new

    twin, _ = _replace(copy.deepcopy(model), make)
    return twin.eval()


# ----------------------------------------------------------------------------- checkpoints

def _compile_for(info: RunInfo, path: str | Path) -> CompileResult:
    """Compile the program of the checkpoint at `path`. Its source is text from the
    checkpoint (untrusted, never taken for a path); the file it names is used instead only
    when it is a regular file holding exactly that text (then its imports resolve), read
    with a bound. The stored text alone reads no other file: an `import` in it is a
    CheckpointError, and its diagnostics name the checkpoint ("<path> (stored source)"),
    not the file it names, which does not hold that text."""
    from ..cachedir import read_file_bounded

    want = info.source.encode("utf-8", "surrogatepass")
    try:
        if hashlib.sha256(read_file_bounded(info.file, len(want), follow_symlinks=True)
                          ).hexdigest() == info.source_hash:
            return compile_program(Path(info.file), with_ir=False)
    except (OSError, ValueError):
        pass   # gone, edited, not a regular file, a name the system refuses: use the text
    shown = f"{path} (stored source)"
    _refuse_stored_imports(info.source, shown, path)
    return compile_program(source=info.source, with_ir=False, file=shown)


def _refuse_stored_imports(source: str, shown: str, path: str | Path) -> None:
    """A CheckpointError when the stored program text imports a file: what another file
    holds is not recorded in the checkpoint, and reading it (any path the text names) would
    let the checkpoint show that file's content in a diagnostic."""
    from ..frontend import ast as A
    from ..frontend.parser import parse
    from ..runtime import CheckpointError

    program, _, _ = parse(source, shown)
    for item in program.items:
        if isinstance(item, A.Import):
            name = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in item.path[:80])
            raise CheckpointError(str(path), f"its stored source (run metadata field "
                                             f"'tritium.source') imports \"{name}\" at line "
                                             f"{item.span.line}: a checkpoint's program is "
                                             f"compiled from the text it carries, which may "
                                             f"not read other files; keep the program file "
                                             f"the checkpoint names with its imports beside it")


_ENTRY_POLICY: contextvars.ContextVar[tuple[bool, str | None]] = contextvars.ContextVar(
    "tritium_entry_policy", default=(False, None))


@contextlib.contextmanager
def trusted_entry_point(trust: bool = False, entry_point: str | None = None):
    """Within the block, :func:`model_from_checkpoint` (and so `load_for_eval`,
    `evaluate_checkpoint`, `export_checkpoint`) runs the entry point a checkpoint names when
    `trust`, and `entry_point` instead of it when given (the CLI's `--trust-entry-point` and
    `--entry-point`)."""
    token = _ENTRY_POLICY.set((bool(trust), entry_point))
    try:
        yield
    finally:
        _ENTRY_POLICY.reset(token)


def _call_entry_point(entry: str, kwargs: dict[str, Any]) -> nn.Module:
    """Import `module` of `module:callable` (the working directory first on the path, as
    `python -m` has it) and call the callable with `kwargs`: the user's own code, run only
    when trusted. Every failure is a ModelBuildError naming the entry point."""
    module_name, _, attr = entry.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - the user's module: any error is theirs
            raise ModelBuildError(
                f"cannot import `{module_name}` for the entry point `{entry}`: "
                f"{type(exc).__name__}: {exc}",
                help="run from the directory that holds it, or add it to PYTHONPATH") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ModelBuildError(f"the entry point `{entry}`: `{module_name}` has no "
                                      f"attribute `{attr}`")
            obj = getattr(obj, part)
        if not callable(obj):
            raise ModelBuildError(f"the entry point `{entry}` is not callable")
        try:
            model = obj(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's code
            raise ModelBuildError(f"calling the entry point `{entry}` failed: "
                                  f"{type(exc).__name__}: {exc}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    if not isinstance(model, nn.Module):
        raise ModelBuildError(f"the entry point `{entry}` returned a "
                              f"{type(model).__name__}, not an nn.Module")
    return model


def _python_model(info: RunInfo, where: str) -> nn.Module:
    from ..runtime import tritium_layers
    from ..runtime.ternarize import apply_ternarize_record

    assert info.python_entry is not None
    model = _call_entry_point(info.python_entry, info.python_kwargs)
    if info.ternarize is not None and not tritium_layers(model):
        try:
            model, _ = apply_ternarize_record(model, info.ternarize)
        except (ValueError, TypeError) as exc:
            raise ModelBuildError(f"{where}: cannot ternarize the model `{info.python_entry}` "
                                  f"built as the checkpoint recorded: {exc}") from None
    return model


def model_from_checkpoint(path: str | Path, *, trust_entry_point: bool | None = None,
                          entry_point: str | None = None) -> tuple[nn.Module, RunInfo]:
    """Rebuild the model a checkpoint holds, load it (frozen ternary layers become packed),
    and return it in eval mode with its :class:`RunInfo`.

    A `tritium train` checkpoint is rebuilt from its `.tri` source. One saved from Python
    with an entry point is rebuilt by running that code, only with `trust_entry_point`;
    `entry_point` ("pkg.module:callable") names the code instead of the checkpoint (then a
    checkpoint without any recorded way to rebuild it works too). Both default to the
    :func:`trusted_entry_point` block the call runs in."""
    from ..argcheck import entry_point_problem
    from ..runtime import (
        CheckpointError,
        fold_batchnorms,
        load_checkpoint,
        read_checkpoint_metadata,
    )
    from ..runtime.checkpoint_read import materialize_frozen
    from ..runtime.heap import release_free_memory

    policy = _ENTRY_POLICY.get()
    trust = policy[0] if trust_entry_point is None else trust_entry_point
    entry_point = policy[1] if entry_point is None else entry_point
    meta = read_checkpoint_metadata(path)
    if entry_point is not None:
        problem = entry_point_problem(entry_point)
        if problem is not None:
            raise ModelBuildError(f"--entry-point: {problem}")
        extra = {k: v for k, v in meta.extra.items() if k != "tritium.source"}
        info = RunInfo.from_extra({**extra, "tritium.python_entry": entry_point}, str(path))
        model = _python_model(info, str(path))
    else:
        info = RunInfo.from_extra(meta.extra, str(path))
        if info.python_entry is not None:
            if not trust:
                raise ModelBuildError(
                    f"{path} was saved from Python: rebuilding its model imports and runs "
                    f"`{info.python_entry}`, code the checkpoint names",
                    help="if you trust that code, pass --trust-entry-point (Python: "
                         "trust_entry_point=True), or name the code yourself: --entry-point "
                         "MODULE:CALLABLE")
            model = _python_model(info, str(path))
        else:
            compiled = _compile_for(info, path)
            # an imported LM's program holds only what its checkpoint fills: built on the
            # meta device, its float32 latent weights are never allocated
            lazy = meta.extra.get("tritium.imported_from") == "huggingface"
            with torch.device("meta") if lazy else contextlib.nullcontext():
                model, _ = _instantiate(compiled, info.entry, info.hyperparameters)
            if lazy:
                model = materialize_frozen(model, meta)
            if info.fp32_layers:
                try:
                    keep_fp32(model, info.fp32_layers)
                except ModelBuildError as exc:
                    raise CheckpointError(str(path), f"run metadata field "
                                                     f"'tritium.fp32_layers': {exc.message}"
                                          ) from None
            if info.variant == "fp32":
                model, _ = float_twin(model)
    load_checkpoint(path, model)
    release_free_memory()      # the checkpoint's state, read beside the model, is gone
    # a checkpoint written before batch-norm folding (version 1 or 2) gets it now
    fold_batchnorms(model)
    return model.eval(), info
