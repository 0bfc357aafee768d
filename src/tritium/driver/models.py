"""Building trained models: from a .tri file or back from a checkpoint's metadata, their fp32
twins, their unpacked (exportable) twins, and the input shape a model declares.

A checkpoint written by `tritium train` carries in its `tritium.extra` metadata the `.tri`
source text and hash, the entry name, the hyperparameters, the dataset, the declared input
shape, the input normalization and the variant (`ternary` or `fp32`), so
:func:`model_from_checkpoint` rebuilds the model without the original file (when the file
still exists with the same hash, it is compiled from there, so its imports resolve too).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..frontend.diagnostics import Diagnostic
from .compile import CompileError, CompileResult, compile_program

__all__ = [
    "BuiltModel",
    "FloatConv2d",
    "FloatLinear",
    "ModelBuildError",
    "RunInfo",
    "build_model",
    "declared_input_shape",
    "float_twin",
    "model_from_checkpoint",
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
    input_shape: list[int] | None = None
    normalization: tuple[float, float] = (0.0, 1.0)
    num_classes: int = 10
    variant: str = "ternary"          # or "fp32"
    format: str = "t2"

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def to_extra(self, **more: str) -> dict[str, str]:
        out = {
            "tritium.source": self.source,
            "tritium.file": self.file,
            "tritium.entry": self.entry,
            "tritium.hyperparameters": json.dumps(self.hyperparameters, sort_keys=True),
            "tritium.dataset": self.dataset,
            "tritium.input_shape": json.dumps(self.input_shape),
            "tritium.normalization": json.dumps(list(self.normalization)),
            "tritium.num_classes": str(self.num_classes),
            "tritium.variant": self.variant,
            "tritium.format": self.format,
        }
        out.update(more)
        return out

    @classmethod
    def from_extra(cls, extra: dict[str, str], where: str) -> RunInfo:
        try:
            shape = json.loads(extra.get("tritium.input_shape", "null"))
            norm = json.loads(extra.get("tritium.normalization", "[0.0, 1.0]"))
            return cls(
                source=extra["tritium.source"],
                file=extra.get("tritium.file", "<checkpoint>"),
                entry=extra["tritium.entry"],
                hyperparameters=json.loads(extra.get("tritium.hyperparameters", "{}")),
                dataset=extra.get("tritium.dataset", "digits"),
                input_shape=[int(d) for d in shape] if shape is not None else None,
                normalization=(float(norm[0]), float(norm[1])),
                num_classes=int(extra.get("tritium.num_classes", "10")),
                variant=extra.get("tritium.variant", "ternary"),
                format=extra.get("tritium.format", "t2"),
            )
        except KeyError as exc:
            raise ModelBuildError(
                f"{where} lacks the metadata `{exc.args[0]}`: it was not written by "
                "`tritium train`", help="load it with tritium.runtime.load_checkpoint into "
                                        "a model you build yourself") from None
        except (ValueError, TypeError, IndexError) as exc:
            raise ModelBuildError(f"{where}: malformed run metadata ({exc})") from None


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
        return cls(**{py_local(k): v for k, v in hyper.items()}), target
    except (TypeError, ValueError) as exc:
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
            s = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127
            x = torch.clamp(torch.round(x / s), -127, 127) * s
        return _epilogue(F.linear(x, self.weight, self.bias), activation, residual)


class FloatConv2d(nn.Conv2d):
    """`nn.Conv2d` that accepts the ternary layers' fused `activation=`/`residual=` keywords."""

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


def float_twin(model: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy with every Tritium linear/conv layer replaced by its float32 equivalent,
    starting from the same latent weights (so both train from the same initialization)."""
    from ..runtime import BitLinear, Int4Linear, Int8Linear, TernaryConv2d, TernaryLinear

    def make(child: nn.Module) -> nn.Module | None:
        if isinstance(child, TernaryConv2d):
            if child.frozen:
                raise ModelBuildError("float_twin needs an unfrozen model")
            new: nn.Module = FloatConv2d(child.in_channels, child.out_channels,
                                         child.kernel_size, child.stride, child.padding,
                                         child.dilation, child.groups,
                                         bias=child.bias is not None)
        elif isinstance(child, TernaryLinear):
            if child.frozen:
                raise ModelBuildError("float_twin needs an unfrozen model")
            new = FloatLinear(child.in_features, child.out_features, child.bias is not None,
                              rms_eps=child.eps if isinstance(child, BitLinear) else None)
        elif isinstance(child, Int8Linear | Int4Linear):
            new = FloatLinear(child.in_features, child.out_features, child.bias is not None)
        else:
            return None
        with torch.no_grad():
            if hasattr(child, "weight") and isinstance(child.weight, torch.Tensor):
                new.weight.copy_(child.weight)
            if child.bias is not None:
                new.bias.copy_(child.bias)  # type: ignore[union-attr]
        return new

    return _replace(copy.deepcopy(model), make)


def unpacked_twin(model: nn.Module) -> nn.Module:
    """The frozen ternary model as plain torch layers: each packed weight becomes the float
    constant `trits * scale`, so the result exports to ONNX/TorchScript without Tritium's
    custom ops and computes the same function."""
    from ..runtime import BitLinear, TernaryConv2d, TernaryLinear

    def make(child: nn.Module) -> nn.Module | None:
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
            if child.act_quant == "int8":
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

def _compile_for(info: RunInfo) -> CompileResult:
    path = Path(info.file)
    if path.is_file():
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() == info.source_hash:
                return compile_program(str(path), with_ir=False)
        except OSError:
            pass
    return compile_program(info.source, with_ir=False, file=info.file)


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, RunInfo]:
    """Rebuild the model a `tritium train` checkpoint holds, load it (frozen ternary layers
    become packed), and return it in eval mode with its :class:`RunInfo`."""
    from ..runtime import fold_batchnorms, load_checkpoint, read_checkpoint_metadata

    meta = read_checkpoint_metadata(path)
    info = RunInfo.from_extra(meta.extra, str(path))
    compiled = _compile_for(info)
    model, _ = _instantiate(compiled, info.entry, info.hyperparameters)
    if info.variant == "fp32":
        model, _ = float_twin(model)
    load_checkpoint(path, model)
    # a checkpoint written before batch-norm folding (version 1 or 2) gets it now
    fold_batchnorms(model)
    return model.eval(), info
