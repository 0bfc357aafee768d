"""Find the kernels a model needs in its optimized IR.

    uses = extract_kernels(module)       # one KernelUse per fused op, in program order
    source = model_source(module, "DigitsMLP")

Every `fused_linear` / `fused_conv2d` whose weight is ternary (a `trit` tensor, or packed
`u8` bytes with a `format`) becomes a kernel use. The packed format comes from the op's
`format` attribute, else from the quantization spec of the parameter the trits were
quantized from (`quantize_ternary(param)`), else `t2`. A `fused_linear` whose input is an
`rms_norm` over the last dim becomes the fused RMSNorm (+ BitLinear) kernel: the kernel
recomputes the normalization in its prologue, so every such user can share one `rms_norm`.
Fused ops with float weights are not ternary and stay with the PyTorch backend.

No torch, no triton: this runs inside `tritium compile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...ir import Function, LayerDef, Module, Op, TensorType, Value
from .codegen import generate_source
from .specs import Conv2dSpec, KernelSpec, LinearSpec

DEFAULT_FORMAT = "t2"


@dataclass(frozen=True)
class ConvGeometry:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    def constexprs(self) -> dict[str, int]:
        return {"KH": self.kernel[0], "KW": self.kernel[1], "SH": self.stride[0],
                "SW": self.stride[1], "PH": self.padding[0], "PW": self.padding[1],
                "DH": self.dilation[0], "DW": self.dilation[1]}


@dataclass(frozen=True)
class KernelUse:
    """One fused op served by a kernel: the GEMM view is M x N x K (M None when it depends
    on a symbolic dim such as the batch)."""

    spec: KernelSpec
    site: str
    m: int | None
    n: int
    k: int
    per_channel: bool
    conv: ConvGeometry | None = None

    def describe(self) -> str:
        """`Net.forward %5: M=? N=40 K=96`, then `per-channel` (scale) and, for a convolution,
        `conv 3x3 s2 p1 d1 g1`."""
        m = "?" if self.m is None else str(self.m)
        text = f"{self.site}: M={m} N={self.n} K={self.k}"
        if self.per_channel:
            text += " per-channel"
        if self.conv is not None:
            g = self.conv

            def pair(v: tuple[int, int]) -> str:
                return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"

            text += (f" conv {g.kernel[0]}x{g.kernel[1]} s{pair(g.stride)} p{pair(g.padding)} "
                     f"d{pair(g.dilation)} g{g.groups}")
        return text


def _pair(v: object) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        vals = [int(i) for i in v]
        return (vals[0], vals[-1])
    return (int(v), int(v))  # type: ignore[call-overload]


def _static(t: object, i: int) -> int | None:
    if isinstance(t, TensorType) and -t.rank <= i < t.rank:
        d = t.shape[i]
        return d if isinstance(d, int) else None
    return None


def _product(dims: Sequence[object]) -> int | None:
    out = 1
    for d in dims:
        if not isinstance(d, int):
            return None
        out *= d
    return out


def _weight_format(op: Op, w: Value, layer: LayerDef | None) -> str:
    fmt = op.attrs.get("format", "none")
    if fmt in ("t2", "t1.6"):
        return str(fmt)
    producer = w.op
    if producer is not None and producer.name == "quantize_ternary":
        src = producer.operands[0].op
        if src is not None and src.name == "param" and layer is not None:
            pdef = layer.param(str(src.attrs["name"]))
            if pdef is not None and pdef.quant is not None and pdef.quant.format in ("t2", "t1.6"):
                return pdef.quant.format
    return DEFAULT_FORMAT


def _is_ternary_weight(op: Op, w: Value) -> bool:
    t = w.type
    if not isinstance(t, TensorType):
        return False
    return t.dtype == "trit" or (t.dtype == "u8" and op.attrs.get("format") in ("t2", "t1.6"))


def _operands(op: Op) -> tuple[Value, Value, Value | None, Value | None, Value | None]:
    it = iter(op.operands[2:])
    scale = next(it) if op.attrs.get("has_scale") else None
    bias = next(it) if op.attrs.get("has_bias") else None
    res = next(it) if op.attrs.get("has_residual") else None
    return op.operands[0], op.operands[1], scale, bias, res


def _activation(op: Op) -> str:
    act = op.attrs.get("activation", "none")
    return "none" if act in (None, "none") else str(act)


def _number_results(fn: Function) -> dict[int, int]:
    """id(result value) → its printed number (%N), as the IR printer numbers them."""
    numbers: dict[int, int] = {}
    for op in fn.walk():
        for r in op.results:
            numbers[id(r)] = len(numbers)
    return numbers


def _use_of(op: Op, layer: LayerDef | None, site: str) -> KernelUse | None:
    x, w, scale, bias, res = _operands(op)
    if not _is_ternary_weight(op, w):
        return None
    wt = w.type
    assert isinstance(wt, TensorType)
    fmt = _weight_format(op, w, layer)
    act_quant = str(op.attrs.get("act_quant", "none") or "none")
    per_channel = scale is not None and isinstance(scale.type, TensorType) \
        and scale.type.rank == 1 and _static(scale.type, 0) != 1
    n = _static(wt, 0)
    if n is None:
        return None
    xt = x.type
    if op.name == "fused_linear":
        k = int(op.attrs["in_features"]) if wt.dtype == "u8" else _static(wt, 1)
        if k is None:
            k = _static(xt, -1)
        if k is None:
            return None
        prenorm = "none"
        src = x.op
        if src is not None and src.name == "rms_norm" and int(src.attrs.get("normalized_ndim", 1)) == 1:
            prenorm = "rms_weight" if len(src.operands) > 1 else "rms"
        spec: KernelSpec = LinearSpec(fmt, _activation(op), act_quant, bias is not None,
                                      res is not None, prenorm)
        m = _product(xt.shape[:-1]) if isinstance(xt, TensorType) else None
        return KernelUse(spec, site, m, n, k, per_channel)
    geo = ConvGeometry((_static(wt, 2) or 1, _static(wt, 3) or 1),
                       _pair(op.attrs.get("stride", 1)), _pair(op.attrs.get("padding", 0)),
                       _pair(op.attrs.get("dilation", 1)), int(op.attrs.get("groups", 1)))
    cg = _static(wt, 1)
    if cg is None:
        return None
    spec = Conv2dSpec(fmt, _activation(op), act_quant, bias is not None, res is not None)
    out = op.results[0].type
    m = _product([out.shape[0], *out.shape[2:]]) if isinstance(out, TensorType) else None
    return KernelUse(spec, site, m, n // geo.groups, cg * geo.kernel[0] * geo.kernel[1],
                     per_channel, geo)


def extract_kernels(module: Module) -> list[KernelUse]:
    """The kernel uses of every function of `module`, in program order."""
    uses: list[KernelUse] = []
    for layer, fn in module.all_functions():
        numbers = _number_results(fn)
        owner = f"{layer.name}.{fn.name}" if layer is not None else fn.name
        for op in fn.walk():
            if op.name not in ("fused_linear", "fused_conv2d"):
                continue
            site = f"{owner} %{numbers[id(op.results[0])]}"
            use = _use_of(op, layer, site)
            if use is not None:
                uses.append(use)
    return uses


def model_source(module: Module, title: str) -> str:
    """The Triton source of every kernel `module` needs, each annotated with its uses."""
    uses = extract_kernels(module)
    by_spec: dict[KernelSpec, list[str]] = {}
    for u in uses:
        by_spec.setdefault(u.spec, []).append(u.describe())
    return generate_source(by_spec, title=title, uses=by_spec)
