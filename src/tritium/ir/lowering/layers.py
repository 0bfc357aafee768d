"""Builtin layer kinds: the parameters each declares and the inline ops it applies.

A layer kind's record (tritium.check.library `LayerSpec`) names its lowering family; each
family here is a pair of functions: `declare(lw, build, path, spec, cfg, span)` adds the
parameters, `apply(lw, b, layer, path, spec, cfg, x, span)` emits the ops. A new kind of an
existing family (another activation, another linear variant by `weights`) needs only its
record; a new family adds one pair here (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...check import library as L
from ...frontend.diagnostics import Span
from ..builder import Builder
from ..core import LayerDef, QuantSpec, Value
from ..ops import INDEX_DTYPES
from ..types import ScalarType, TensorType
from .values import (
    LayerBuild,
    LoweringError,
    QuantCfg,
    _is_int,
    _pair,
)

Declare = Callable[..., None]
Apply = Callable[..., Value]
FAMILIES: dict[str, tuple[Declare | None, Apply]] = {}


def family(name: str, declare: Declare | None = None) -> Callable[[Apply], Apply]:
    """Register the lowering of layer family `name`: `declare` adds its parameters (None:
    it has none), the decorated function applies it."""
    def deco(apply: Apply) -> Apply:
        FAMILIES[name] = (declare, apply)
        return apply
    return deco


class LayersMixin:
    def declare_builtin(self, build: LayerBuild, p: str, spec: L.LayerSpec, cfg: dict,
                        span: Span | None) -> None:
        declare = self.family_of(spec, span)[0]
        if declare is not None:
            declare(self, build, p, spec, cfg, span)

    def apply_builtin(self, b: Builder, layer: LayerDef, p: str, spec: L.LayerSpec, cfg: dict,
                      x: Value, span: Span | None) -> Value:
        """The inline ops of builtin layer `spec` (instance path `p`) applied to `x`."""
        return self.family_of(spec, span)[1](self, b, layer, p, spec, cfg, x, span)

    @staticmethod
    def family_of(spec: L.LayerSpec, span: Span | None) -> tuple[Declare | None, Apply]:
        f = FAMILIES.get(spec.lowering)
        if f is None:
            raise LoweringError(f"cannot lower the builtin layer `{spec.name}`", span)
        return f

    def norm_shape(self, cfg: dict, span: Span | None) -> list[int]:
        ns = cfg.get("normalized_shape")
        if ns is None:
            ns = cfg.get("dim")
        dims = [ns] if _is_int(ns) else ns if isinstance(ns, list) else None
        if not dims or not all(_is_int(d) for d in dims):
            raise LoweringError("a normalization layer needs `normalized_shape` (or `dim`)", span)
        return list(dims)

    def ternary(self, b: Builder, w: Value, q: QuantCfg) -> Value:
        """The dequantized ternary weight (what the runtime computes with in eval mode)."""
        if q.quantizer == "stochastic":
            return self.stochastic_nearest(b, w, q.per_channel)
        t, s = self.quantize(b, w, q)
        return b.dequantize(t, s)

    @staticmethod
    def quantize(b: Builder, w: Value, q: QuantCfg) -> tuple[Value, Value]:
        attrs: dict[str, Any] = {"quantizer": q.quantizer}
        if q.per_channel:
            attrs["per_channel"] = True
        if q.quantizer == "threshold":
            attrs["threshold"] = float(q.threshold)  # type: ignore[arg-type]
        return b.quantize_ternary(w, **attrs)

    def stochastic_nearest(self, b: Builder, w: Value, per_channel: bool) -> Value:
        """runtime quantize_stochastic_nearest: scale = max|W| (per tensor or per channel);
        sign(W) where 2|W| >= scale and scale > 0, else 0; times the scale."""
        t = w.type
        assert isinstance(t, TensorType)
        mag = b.abs(w)
        if per_channel and t.rank == 1:
            m = mag
        else:
            m = b.max(mag, dims=list(range(1, t.rank)) if per_channel else [], keepdim=True)
        f = ScalarType("f32")
        zero = b.constant(0.0, f)
        keep = b.logical_and(b.ge(b.mul(mag, b.constant(2.0, f)), m), b.gt(m, zero))
        pos = b.logical_and(keep, b.gt(w, zero))
        neg = b.logical_and(keep, b.lt(w, zero))
        return b.select(pos, m, b.select(neg, b.neg(m), zero))

    @staticmethod
    def load(b: Builder, layer: LayerDef, name: str) -> Value:
        p = layer.param(name)
        if p is None:
            raise LoweringError(f"internal error: `{layer.name}` has no parameter `{name}`")
        return b.param(name, p.type)

    def int8_linear(self, b: Builder, x: Value, w: Value, bias: list[Value], q: QuantCfg) -> Value:
        """int8 per-token activation fake quantization + ternary weight, as one fused_linear
        (the IR has no rounding op; fused_linear's act_quant is exactly the runtime's
        fake_quant_int8)."""
        attrs: dict[str, Any] = {"act_quant": "int8"}
        if bias:
            attrs["has_bias"] = True
        if q.quantizer == "stochastic":
            ops = [x, self.stochastic_nearest(b, w, q.per_channel), *bias]
        else:
            t, s = self.quantize(b, w, q)
            ops = [x, t, s, *bias]
            attrs["has_scale"] = True
        return b.create("fused_linear", ops, attrs).result

    @staticmethod
    def conv_attrs(cfg: dict, span: Span | None) -> dict[str, Any]:
        k = _pair(cfg["kernel_size"], "kernel_size", span)
        s = _pair(cfg.get("stride", 1), "stride", span)
        d = _pair(cfg.get("dilation", 1), "dilation", span)
        pad = cfg.get("padding", 0)
        if pad == "valid":
            p = [0, 0]
        elif pad == "same":
            if any(dd * (kk - 1) % 2 for dd, kk in zip(d, k)):
                raise LoweringError("`padding: \"same\"` with an even kernel pads asymmetrically, "
                                    "which the IR cannot express", span)
            p = [dd * (kk - 1) // 2 for dd, kk in zip(d, k)]
        else:
            p = _pair(pad, "padding", span)
        return {"stride": s, "padding": p, "dilation": d, "groups": int(cfg.get("groups", 1))}

    @staticmethod
    def pool(b: Builder, x: Value, op: str, cfg: dict, span: Span | None) -> Value:
        attrs: dict[str, Any] = {"kernel_size": _pair(cfg["kernel_size"], "kernel_size", span),
                                 "padding": _pair(cfg.get("padding", 0), "padding", span)}
        if cfg.get("stride") is not None:
            attrs["stride"] = _pair(cfg["stride"], "stride", span)
        dilation = _pair(cfg.get("dilation", 1), "dilation", span)
        if dilation != [1, 1]:
            if op != "max_pool2d":
                raise LoweringError("average pooling has no dilation", span)
            attrs["dilation"] = dilation
        if cfg.get("ceil_mode"):
            attrs["ceil_mode"] = True
        return b.op(op, x, **attrs)

    def attention_layer(self, b: Builder, layer: LayerDef, p: str, spec: L.LayerSpec,
                        cfg: dict, x: Value, span: Span | None) -> Value:
        """q/k/v/o projections (ternary for TernaryAttention), heads split from the last dim,
        scaled dot-product attention per head, heads merged, output projection."""
        e, h = cfg["embed_dim"], cfg["num_heads"]
        if not isinstance(x.type, TensorType) or x.type.rank != 3:
            raise LoweringError(f"{spec.name} expects [batch, seq, embed], got {x.type}", span)
        q = self.quant_cfg(cfg, "twn", span) if spec.weights == "ternary" else None
        act_int8 = q is not None and cfg.get("act_quant") == "int8"

        def proj(name: str, inp: Value) -> Value:
            w = self.load(b, layer, f"{p}.{name}.weight")
            bias = [self.load(b, layer, f"{p}.{name}.bias")] if cfg.get("bias") else []
            if q is None:
                return b.linear(inp, w, *bias)
            if act_int8:
                return self.int8_linear(b, inp, w, bias, q)
            return b.linear(inp, self.ternary(b, w, q), *bias)

        qv, kv, vv = proj("q_proj", x), proj("k_proj", x), proj("v_proj", x)
        # [B, L, E] -> reshape [B, L, h, E/h] -> permute [B, h, L, E/h]
        heads = [b.permute(b.reshape(t, shape=[0, 0, h, e // h]), dims=[0, 2, 1, 3])
                 for t in (qv, kv, vv)]
        o = b.scaled_dot_product_attention(*heads, causal=bool(cfg.get("causal", False)))
        merged = b.reshape(b.permute(o, dims=[0, 2, 1, 3]), shape=[0, 0, e])
        return proj("o_proj", merged)


# ----------------------------------------------------------------------------- families

def _prm(lw, b: Builder, layer: LayerDef, p: str, name: str) -> Value:
    return lw.load(b, layer, f"{p}.{name}")


def _weight_quant(lw, spec: L.LayerSpec, cfg: dict, span: Span | None) -> QuantSpec | None:
    """The QuantSpec of a layer's weight, from its record's `weights`."""
    if spec.weights == "ternary":
        return lw.quant_cfg(cfg, "twn", span).spec
    if spec.weights == "bitnet":
        return QuantSpec("absmean", False, cfg.get("format") or "t2")
    if spec.weights in ("int8", "int4"):
        return QuantSpec(spec.weights, True, "none")
    return None


def _declare_linear(lw, build: LayerBuild, p: str, spec: L.LayerSpec, cfg: dict,
                    span: Span | None) -> None:
    lw.param(build, f"{p}.weight", [cfg["out_features"], cfg["in_features"]], "kaiming_uniform",
             _weight_quant(lw, spec, cfg, span), span=span)
    if cfg.get("bias"):
        lw.param(build, f"{p}.bias", [cfg["out_features"]], "zeros", span=span)


@family("linear", _declare_linear)
def _linear(lw, b: Builder, layer: LayerDef, p: str, spec: L.LayerSpec, cfg: dict, x: Value,
            span: Span | None) -> Value:
    w = _prm(lw, b, layer, p, "weight")
    bias = [_prm(lw, b, layer, p, "bias")] if cfg.get("bias") else []
    if spec.weights == "float":
        return b.linear(x, w, *bias)
    if spec.weights in ("int8", "int4"):
        q, s = (b.quantize_int8 if spec.weights == "int8" else b.quantize_int4)(
            w, per_channel=True, axis=0)
        return b.linear(x, b.dequantize(q, s, axis=0), *bias)
    if spec.weights == "bitnet":
        qc = QuantCfg("absmean", False, None, cfg.get("format") or "t2")
        x = b.rms_norm(x, eps=float(cfg.get("eps", 1e-5)))
        act_int8 = True
    else:
        qc = lw.quant_cfg(cfg, "twn", span)
        act_int8 = cfg.get("act_quant") == "int8"
    if act_int8:
        return lw.int8_linear(b, x, w, bias, qc)
    return b.linear(x, lw.ternary(b, w, qc), *bias)


def _declare_conv(lw, build: LayerBuild, p: str, spec: L.LayerSpec, cfg: dict,
                  span: Span | None) -> None:
    kh, kw = _pair(cfg["kernel_size"], "kernel_size", span)
    g = cfg.get("groups", 1)
    lw.param(build, f"{p}.weight", [cfg["out_channels"], cfg["in_channels"] // g, kh, kw],
             "kaiming_uniform", _weight_quant(lw, spec, cfg, span), span=span)
    if cfg.get("bias"):
        lw.param(build, f"{p}.bias", [cfg["out_channels"]], "zeros", span=span)


@family("conv2d", _declare_conv)
def _conv2d(lw, b: Builder, layer: LayerDef, p: str, spec: L.LayerSpec, cfg: dict, x: Value,
            span: Span | None) -> Value:
    attrs = lw.conv_attrs(cfg, span)
    w = _prm(lw, b, layer, p, "weight")
    bias = [_prm(lw, b, layer, p, "bias")] if cfg.get("bias") else []
    if spec.weights == "ternary":
        if cfg.get("act_quant") == "int8":
            raise LoweringError(f"{spec.name} with `act_quant: \"int8\"` (per-im2col-column "
                                "activation quantization) cannot be expressed in the IR", span)
        w = lw.ternary(b, w, lw.quant_cfg(cfg, "twn", span))
        if cfg.get("act_quant") == "int8_image":
            # one int8 absmax scale per sample (dim 0): quantized once, then the conv
            q, s = b.quantize_int8(x, per_channel=True, axis=0)
            x = b.dequantize(q, s, axis=0)
    return b.conv2d(x, w, *bias, **attrs)


def _declare_batch_norm(lw, build: LayerBuild, p: str, spec: L.LayerSpec, cfg: dict,
                        span: Span | None) -> None:
    c = cfg["num_features"]
    if cfg.get("affine", True):
        lw.param(build, f"{p}.weight", [c], "ones", span=span)
        lw.param(build, f"{p}.bias", [c], "zeros", span=span)
    lw.param(build, f"{p}.running_mean", [c], "zeros", span=span)
    lw.param(build, f"{p}.running_var", [c], "ones", span=span)


@family("batch_norm", _declare_batch_norm)
def _batch_norm(lw, b: Builder, layer: LayerDef, p: str, spec: L.LayerSpec, cfg: dict,
                x: Value, span: Span | None) -> Value:
    c = cfg["num_features"]
    if cfg.get("affine", True):
        wt, bs = _prm(lw, b, layer, p, "weight"), _prm(lw, b, layer, p, "bias")
    else:
        vt = TensorType((c,), "f32")
        wt, bs = b.constant(1.0, vt), b.constant(0.0, vt)
    return b.batch_norm(x, _prm(lw, b, layer, p, "running_mean"),
                        _prm(lw, b, layer, p, "running_var"), wt, bs,
                        eps=float(cfg.get("eps", 1e-5)))


def _declare_norm(lw, build: LayerBuild, p: str, spec: L.LayerSpec, cfg: dict,
                  span: Span | None) -> None:
    shape = lw.norm_shape(cfg, span)
    lw.param(build, f"{p}.weight", shape, "ones", span=span)
    if spec.lowering == "layer_norm" and cfg.get("elementwise_affine", True):
        lw.param(build, f"{p}.bias", shape, "zeros", span=span)


@family("layer_norm", _declare_norm)
def _layer_norm(lw, b: Builder, layer: LayerDef, p: str, spec: L.LayerSpec, cfg: dict,
                x: Value, span: Span | None) -> Value:
    nd = len(lw.norm_shape(cfg, span))
    ws = [_prm(lw, b, layer, p, "weight"), _prm(lw, b, layer, p, "bias")] \
        if cfg.get("elementwise_affine", True) else []
    return b.layer_norm(x, *ws, normalized_ndim=nd, eps=float(cfg.get("eps", 1e-5)))


@family("rms_norm", _declare_norm)
def _rms_norm(lw, b: Builder, layer: LayerDef, p: str, spec: L.LayerSpec, cfg: dict,
              x: Value, span: Span | None) -> Value:
    nd = len(lw.norm_shape(cfg, span))
    return b.rms_norm(x, _prm(lw, b, layer, p, "weight"), normalized_ndim=nd,
                      eps=float(cfg.get("eps", 1e-6)))


def _declare_embedding(lw, build: LayerBuild, p: str, spec: L.LayerSpec, cfg: dict,
                       span: Span | None) -> None:
    lw.param(build, f"{p}.weight", [cfg["num_embeddings"], cfg["embedding_dim"]], "normal",
             span=span)


@family("embedding", _declare_embedding)
def _embedding(lw, b: Builder, layer: LayerDef, p: str, spec: L.LayerSpec, cfg: dict,
               x: Value, span: Span | None) -> Value:
    if not isinstance(x.type, TensorType) or x.type.dtype not in INDEX_DTYPES:
        raise LoweringError(f"{spec.name} takes integer token ids, got {x.type}", span)
    return b.embedding(x, _prm(lw, b, layer, p, "weight"))


@family("op")
def _one_op(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return b.op(spec.ir_op, x)


@family("identity")
def _identity(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return x


@family("softmax")
def _softmax(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return b.softmax(x, dim=cfg.get("dim", -1))


@family("dropout")
def _dropout(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return b.dropout(x, p=float(cfg.get("p", 0.5)))


@family("flatten")
def _flatten(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return b.flatten(x, start_dim=cfg.get("start_dim", 1), end_dim=cfg.get("end_dim", -1))


@family("pool")
def _pool(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return lw.pool(b, x, spec.ir_op, cfg, span)


@family("adaptive_pool")
def _adaptive_pool(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return b.adaptive_avg_pool2d(x, output_size=_pair(cfg["output_size"], "output_size", span))


def _declare_attention(lw, build: LayerBuild, p: str, spec: L.LayerSpec, cfg: dict,
                       span: Span | None) -> None:
    e = cfg["embed_dim"]
    quant = _weight_quant(lw, spec, cfg, span)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        lw.param(build, f"{p}.{proj}.weight", [e, e], "kaiming_uniform", quant, span=span)
        if cfg.get("bias"):
            lw.param(build, f"{p}.{proj}.bias", [e], "zeros", span=span)


@family("attention", _declare_attention)
def _attention(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return lw.attention_layer(b, layer, p, spec, cfg, x, span)


@family("ternarize")
def _ternarize(lw, b, layer, p, spec, cfg, x, span) -> Value:
    return b.ternarize(x, threshold=float(cfg.get("threshold", 0.5)))
