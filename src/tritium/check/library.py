"""The builtin layer kinds: one `LayerSpec` record per kind (the functions are in
`tritium.check.builtins`).

Each layer kind lists its config keys (type, default, whether required) and a shape rule
from the input tensor type to the output type, and, for the later stages, its lowering
family and its PyTorch constructor. Shape rules raise `ShapeError` with a code, a message,
the config key to point at (if any) and a help text. docs/language.md is written from
these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .. import vocab
from .types import Dim, TensorT

QUANTIZERS = vocab.QUANTIZER_NAMES
ACT_QUANT = vocab.ACT_QUANTS
FORMATS = vocab.FORMATS
STE_KINDS = vocab.STE_KINDS


class ShapeError(Exception):
    def __init__(self, code: str, message: str, key: str | None = None, help: str | None = None):
        super().__init__(message)
        self.code, self.message, self.key, self.help = code, message, key, help


@dataclass(frozen=True, slots=True)
class Key:
    """A config key. `type` is one of: int, float, bool, str, pair (int or [int, int]),
    ints (int or list of ints), padding (pair or "same"/"valid"), list, dict, any."""
    type: str
    default: object = None
    required: bool = False
    choices: tuple = ()
    min: float | None = None
    doc: str = ""
    max: float | None = None     # every number must also be finite, and an int below 2**31


def _req(type_: str, doc: str = "", min: float | None = 1) -> Key:
    return Key(type_, None, True, min=min, doc=doc)



TERNARY_ACTIVATION_METHODS = ("deterministic", "threshold", "sign", "ste")

_QUANT_KEYS = {
    "quantizer": Key("str", "twn", choices=QUANTIZERS, doc="weight quantizer"),
    "quantization": Key("str", None, choices=QUANTIZERS, doc="alias of `quantizer`"),
    "threshold": Key("float", None, min=0, doc="fixed threshold (threshold quantizer) or TWN factor"),
    "per_channel": Key("bool", False, doc="one scale per output channel"),
    "act_quant": Key("str", "none", choices=ACT_QUANT, doc="activation quantization"),
    "ste": Key("str", "identity", choices=STE_KINDS, doc="straight-through estimator"),
    "format": Key("str", "t2", choices=FORMATS, doc="packed format at inference"),
}


@dataclass(frozen=True, slots=True)
class Torch:
    """How the PyTorch code generator builds a layer kind: the constructor, the config keys
    passed positionally and by keyword (only when the program gives them, except `always`:
    keys whose library default differs from the constructor's), and literal extra
    arguments."""
    ctor: str
    args: tuple[str, ...] = ()
    kwargs: tuple[str, ...] = ()
    always: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One builtin layer kind: its config keys and shape rule (the checker), its lowering
    (`lowering`: the family in tritium.ir.lowering.layers, with `ir_op` for the one-op
    families and `weights` saying how the weights are quantized), and its PyTorch
    constructor (`torch`). docs/architecture.md, "Adding a builtin layer kind"."""
    name: str
    keys: dict[str, Key]
    rule: object            # callable(TensorT, cfg: dict) -> TensorT
    doc: str = ""
    ternary: bool = False
    min_rank: int = 1
    positional: tuple[str, ...] = field(default=())   # order for call-style `Kind(a, b)`
    int_input: bool = False  # accepts integer/bool/trit tensors (else a floating one)
    lowering: str = ""       # linear, conv2d, batch_norm, layer_norm, rms_norm, embedding, op,
    #                          identity, softmax, dropout, flatten, pool, adaptive_pool,
    #                          attention, ternarize
    ir_op: str | None = None
    weights: str = "float"   # float | ternary (quantizer from the config) | bitnet | int8 | int4
    torch: Torch | None = None
    key_aliases: tuple[tuple[str, str], ...] = ()   # (alias, key) spellings of one key


# ----------------------------------------------------------------------------- shape helpers

def pair(v) -> tuple[int, int] | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                   for x in v):
        return (v[0], v[1])
    return None


def conv_out(size: Dim, k: int, s: int, p: int, d: int = 1, key: str = "kernel_size",
             ceil: bool = False) -> Dim:
    """Output length of a convolution or pooling window, symbolic when `size` is."""
    for what, v, lo in (("stride", s, 1), ("dilation", d, 1), ("padding", p, 0)):
        if isinstance(v, int) and v < lo:
            raise ShapeError("E0820", f"`{what}` must be >= {lo}, got {v}", key=what)
    if isinstance(size, int):
        num = size + 2 * p - d * (k - 1) - 1
        out = (-(-num // s) if ceil else num // s) + 1
        if ceil and num >= 0 and (out - 1) * s >= size + p:
            out -= 1   # as PyTorch: the last window must start inside the input or left padding
        if out <= 0 or num < 0:
            raise ShapeError("E0509", f"an input of size {size} is too small for a window of "
                             f"{k} (dilation {d}) with padding {p}: the output would be empty",
                             key=key, help="reduce the kernel or stride, or pad the input")
        return out
    if size is None:
        return None
    if s == 1 and 2 * p == d * (k - 1):
        return size
    num = 2 * p - d * (k - 1) - 1
    inner = f"{size}{num:+d}" if num else size
    return f"({inner})//{s}+1" if s != 1 else f"{inner}+1"


def _last_dim_check(x: TensorT, n, key: str, what: str) -> None:
    if x.shape is None or not x.shape or n is None:
        return
    last = x.shape[-1]
    if isinstance(last, int) and isinstance(n, int) and last != n:
        raise ShapeError("E0503", f"this layer expects {n} {what} but its input has {last}",
                         key=key, help=f"set `{key}: {last}`, or change the layer before it to "
                                       f"produce {n}")
    if isinstance(last, str) and isinstance(n, str) and last != n and last.isidentifier() \
            and n.isidentifier():
        return


def _channel_check(x: TensorT, c, key: str, rank: int, kind: str) -> None:
    if x.shape is None or c is None:
        return
    if len(x.shape) != rank:
        layout = "[batch, channels, height, width]" if rank == 4 else "[batch, features]"
        raise ShapeError("E0507", f"`{kind}` expects a rank-{rank} input {layout}, "
                                  f"got rank {len(x.shape)}", help="reshape or flatten the input")
    ch = x.shape[1]
    if isinstance(ch, int) and isinstance(c, int) and ch != c:
        raise ShapeError("E0503", f"this layer expects {c} input channels but its input has {ch}",
                         key=key, help=f"set `{key}: {ch}`, or change the layer before it to "
                                       f"produce {c} channels")


def _out_dtype(x: TensorT) -> str | None:
    if x.dtype in (None, "trit") or (x.dtype and x.dtype.startswith("int")) or x.ternary:
        return "float32"
    return x.dtype


def _linear(x: TensorT, cfg: dict) -> TensorT:
    _last_dim_check(x, cfg.get("in_features"), "in_features", "input features")
    if x.shape is None:
        return TensorT(_out_dtype(x), None)
    if len(x.shape) == 0:
        raise ShapeError("E0507", "a linear layer needs at least a rank-1 input")
    return TensorT(_out_dtype(x), x.shape[:-1] + (cfg.get("out_features"),))


def _conv2d(x: TensorT, cfg: dict) -> TensorT:
    cin, cout, groups = cfg.get("in_channels"), cfg.get("out_channels"), cfg.get("groups", 1)
    _channel_check(x, cin, "in_channels", 4, "conv2d")
    for key, val in (("in_channels", cin), ("out_channels", cout)):
        if isinstance(val, int) and isinstance(groups, int) and groups > 0 and val % groups:
            raise ShapeError("E0309", f"`{key}` ({val}) must be divisible by `groups` ({groups})",
                             key="groups")
    k = pair(cfg.get("kernel_size"))
    s = pair(cfg.get("stride", 1)) or (1, 1)
    d = pair(cfg.get("dilation", 1)) or (1, 1)
    pad = cfg.get("padding", 0)
    if pad == "same":
        if k is None:
            return TensorT("float32", None)
        if s != (1, 1):
            raise ShapeError("E0309", "`padding: \"same\"` requires `stride: 1`", key="padding")
        if any(isinstance(dd, int) and isinstance(kk, int) and dd * (kk - 1) % 2
               for dd, kk in zip(d, k)):
            raise ShapeError("E0309", f"`padding: \"same\"` with kernel size {list(k)} would pad "
                             "one side more than the other, and convolutions here pad both "
                             "sides alike", key="padding",
                             help="use an odd `kernel_size`, or give `padding` as numbers")
        p = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
    elif pad == "valid":
        p = (0, 0)
    else:
        p = pair(pad) or (0, 0)
    if x.shape is not None and len(x.shape) != 4:
        raise ShapeError("E0507", f"conv2d expects a rank-4 input [batch, channels, height, "
                                  f"width], got rank {len(x.shape)}")
    if x.shape is None or k is None:
        return TensorT("float32", None)
    b, _, h, w = x.shape
    oh = conv_out(h, k[0], s[0], p[0], d[0])
    ow = conv_out(w, k[1], s[1], p[1], d[1])
    return TensorT("float32", (b, cout, oh, ow))


def _pool2d(x: TensorT, cfg: dict, ceil_key: bool = False) -> TensorT:
    if x.shape is None:
        return x
    if len(x.shape) not in (3, 4):
        raise ShapeError("E0507", f"2-d pooling expects a rank-4 input [batch, channels, height, "
                                  f"width], got rank {len(x.shape)}")
    k = pair(cfg.get("kernel_size"))
    st = cfg.get("stride")
    s = pair(st) if st is not None else k
    p = pair(cfg.get("padding", 0)) or (0, 0)
    d = pair(cfg.get("dilation", 1)) or (1, 1)
    if k is None or s is None:
        return TensorT(x.dtype, x.shape[:-2] + (None, None))
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise ShapeError("E0309", "pooling padding must be at most half the kernel size",
                         key="padding")
    ceil = bool(cfg.get("ceil_mode", False))
    h, w = x.shape[-2:]
    return TensorT(x.dtype, x.shape[:-2] + (conv_out(h, k[0], s[0], p[0], d[0], ceil=ceil),
                                            conv_out(w, k[1], s[1], p[1], d[1], ceil=ceil)))


def _adaptive_pool(x: TensorT, cfg: dict) -> TensorT:
    o = cfg.get("output_size")
    op = pair(o) if o is not None else None
    if x.shape is None:
        return x
    if len(x.shape) not in (3, 4):
        raise ShapeError("E0507", f"adaptive pooling expects a rank-4 input, got rank "
                                  f"{len(x.shape)}")
    if op is None:
        return TensorT(x.dtype, x.shape[:-2] + (None, None))
    return TensorT(x.dtype, x.shape[:-2] + op)


def _batchnorm(rank_ok: tuple[int, ...]):
    def rule(x: TensorT, cfg: dict) -> TensorT:
        if x.shape is not None:
            if len(x.shape) not in rank_ok:
                raise ShapeError("E0507", f"expects an input of rank {' or '.join(map(str, rank_ok))}"
                                          f", got rank {len(x.shape)}",
                                 help="BatchNorm1d takes [batch, features] or [batch, C, L]; "
                                      "BatchNorm2d takes [batch, C, H, W]")
            ch = x.shape[1]
            n = cfg.get("num_features")
            if isinstance(ch, int) and isinstance(n, int) and ch != n:
                raise ShapeError("E0503", f"this layer normalizes {n} features but its input has "
                                          f"{ch}", key="num_features",
                                 help=f"set `num_features: {ch}`")
        return TensorT(_out_dtype(x), x.shape)
    return rule


def _norm_last(x: TensorT, cfg: dict) -> TensorT:
    ns = cfg.get("normalized_shape", cfg.get("dim"))
    if ns is None and "normalized_shape" not in cfg and "dim" not in cfg:
        raise ShapeError("E0302", "the normalized shape is not set", key="normalized_shape",
                         help="add `normalized_shape: N` (the size of the last dim)")
    dims = [ns] if isinstance(ns, int) else ns if isinstance(ns, list) else None
    if x.shape is not None and dims:
        tail = x.shape[-len(dims):] if len(dims) <= len(x.shape) else None
        if tail is None:
            raise ShapeError("E0507", f"normalized shape {dims} has more dims than the input")
        for got, want in zip(tail, dims):
            if isinstance(got, int) and isinstance(want, int) and got != want:
                raise ShapeError("E0503", f"this layer normalizes over {dims} but the input ends "
                                          f"with {list(tail)}", key="normalized_shape",
                                 help=f"set `normalized_shape: {list(tail) if len(tail) > 1 else tail[0]}`")
    return TensorT(_out_dtype(x), x.shape)


def _same(x: TensorT, cfg: dict) -> TensorT:
    return x


def _float_same(x: TensorT, cfg: dict) -> TensorT:
    return TensorT(_out_dtype(x), x.shape)


def _softmax(x: TensorT, cfg: dict) -> TensorT:
    d = cfg.get("dim", -1)
    if x.shape is not None and isinstance(d, int) and not -max(len(x.shape), 1) <= d \
            < max(len(x.shape), 1):
        r = len(x.shape)
        raise ShapeError("E0508", f"`dim` {d} is out of range for a rank-{r} input "
                                  f"(from {-max(r, 1)} to {max(r, 1) - 1})", key="dim")
    return _float_same(x, cfg)


def _ternary_act(x: TensorT, cfg: dict) -> TensorT:
    return TensorT("float32", x.shape)


def _flatten_rule(x: TensorT, cfg: dict) -> TensorT:
    return flatten_shape(x, cfg.get("start_dim", 1), cfg.get("end_dim", -1))


def flatten_shape(x: TensorT, start, end) -> TensorT:
    if x.shape is None or not isinstance(start, int) or not isinstance(end, int):
        return TensorT(x.dtype, None, x.ternary)
    r = len(x.shape)
    if r == 0:
        return TensorT(x.dtype, (1,), x.ternary)
    s = start + r if start < 0 else start
    e = end + r if end < 0 else end
    if not (0 <= s < r) or not (0 <= e < r):
        raise ShapeError("E0508", f"flatten dims ({start}, {end}) are out of range for a "
                                  f"rank-{r} tensor")
    if s > e:
        raise ShapeError("E0508", f"flatten start_dim {start} comes after end_dim {end}")
    prod: Dim = 1
    for d in x.shape[s:e + 1]:
        if isinstance(prod, int) and isinstance(d, int):
            prod *= d
        else:
            prod = None
    return TensorT(x.dtype, x.shape[:s] + (prod,) + x.shape[e + 1:], x.ternary)


def _embedding(x: TensorT, cfg: dict) -> TensorT:
    if x.dtype is not None and x.dtype not in ("int", "int32", "int64", "int8", "int16"):
        raise ShapeError("E0404", f"an embedding takes integer token ids, got {x.dtype} values",
                         help="declare the input as `Tensor<int64, [batch, seq]>`")
    shape = None if x.shape is None else x.shape + (cfg.get("embedding_dim"),)
    return TensorT("float32", shape)


def _attention(x: TensorT, cfg: dict) -> TensorT:
    e, h = cfg.get("embed_dim"), cfg.get("num_heads")
    if isinstance(e, int) and isinstance(h, int) and h > 0 and e % h:
        raise ShapeError("E0309", f"`embed_dim` ({e}) must be divisible by `num_heads` ({h})",
                         key="num_heads")
    if x.shape is not None and len(x.shape) != 3:
        raise ShapeError("E0507", f"attention expects [batch, seq, embed], got rank "
                                  f"{len(x.shape)}")
    _last_dim_check(x, e, "embed_dim", "embedding features")
    return TensorT("float32", x.shape)


def _mlp_keys(extra: dict | None = None) -> dict[str, Key]:
    keys = {
        "in_features": _req("int", "input features (last dim of the input)"),
        "out_features": _req("int", "output features"),
        "bias": Key("bool", True, doc="learned additive bias"),
    }
    keys.update(extra or {})
    return keys


def _conv_keys(quant: bool) -> dict[str, Key]:
    keys = {
        "in_channels": _req("int", "input channels"),
        "out_channels": _req("int", "output channels"),
        "kernel_size": _req("pair", "window size: int or [h, w]"),
        "stride": Key("pair", 1, min=1),
        "padding": Key("padding", 0, min=0, doc="int, [h, w], \"same\" or \"valid\""),
        "dilation": Key("pair", 1, min=1),
        "groups": Key("int", 1, min=1, doc="depthwise when equal to in_channels"),
        "bias": Key("bool", True),
    }
    if quant:
        keys.update(_QUANT_KEYS)
        keys["act_quant"] = Key("str", "none", choices=vocab.CONV_ACT_QUANTS,
                                doc="activation quantization (`int8_image`: one int8 scale per "
                                    "sample)")
    return keys


_POOL_KEYS = {
    "kernel_size": _req("pair", "window size"),
    "stride": Key("pair", None, min=1, doc="defaults to kernel_size"),
    "padding": Key("pair", 0, min=0),
    "dilation": Key("pair", 1, min=1),
    "ceil_mode": Key("bool", False),
}

LAYERS: dict[str, LayerSpec] = {}


def _add(spec: LayerSpec, **backends) -> None:
    LAYERS[spec.name] = replace(spec, **backends)


_TORCH_QUANT = ("quantizer", "per_channel", "threshold", "act_quant", "ste")
_TORCH_CONV = ("stride", "padding", "dilation", "groups", "bias")


_add(LayerSpec("TernaryLinear", _mlp_keys(dict(_QUANT_KEYS)), _linear,
               "linear layer with ternary weights", True, positional=("in_features", "out_features")),
     lowering="linear", weights="ternary", key_aliases=(("quantization", "quantizer"),),
     torch=Torch("trt.TernaryLinear", ("in_features", "out_features"), ("bias", *_TORCH_QUANT)))
_add(LayerSpec("BitLinear", _mlp_keys({"bias": Key("bool", False), "eps": Key("float", 1e-5, min=0),
                                       **{k: _QUANT_KEYS[k] for k in ("format",)}}),
               _linear, "BitNet b1.58 linear: RMSNorm, int8 activations, absmean ternary weights",
               True, positional=("in_features", "out_features")),
     lowering="linear", weights="bitnet",
     torch=Torch("trt.BitLinear", ("in_features", "out_features"), ("bias", "eps")))
_add(LayerSpec("Linear", _mlp_keys(), _linear, "full-precision linear layer",
               positional=("in_features", "out_features")),
     lowering="linear", torch=Torch("nn.Linear", ("in_features", "out_features"), ("bias",)))
_add(LayerSpec("Int8Linear", _mlp_keys(), _linear, "linear layer with int8 per-channel weights",
               positional=("in_features", "out_features")),
     lowering="linear", weights="int8",
     torch=Torch("trt.Int8Linear", ("in_features", "out_features"), ("bias",)))
_add(LayerSpec("Int4Linear", _mlp_keys(), _linear, "linear layer with int4 per-channel weights",
               positional=("in_features", "out_features")),
     lowering="linear", weights="int4",
     torch=Torch("trt.Int4Linear", ("in_features", "out_features"), ("bias",)))
_add(LayerSpec("TernaryConv2d", _conv_keys(True), _conv2d, "2-d convolution with ternary weights",
               True, positional=("in_channels", "out_channels", "kernel_size")),
     lowering="conv2d", weights="ternary", key_aliases=(("quantization", "quantizer"),),
     torch=Torch("trt.TernaryConv2d", ("in_channels", "out_channels", "kernel_size"),
                 (*_TORCH_CONV, *_TORCH_QUANT)))
_add(LayerSpec("Conv2d", _conv_keys(False), _conv2d, "full-precision 2-d convolution",
               positional=("in_channels", "out_channels", "kernel_size")),
     lowering="conv2d",
     torch=Torch("nn.Conv2d", ("in_channels", "out_channels", "kernel_size"), _TORCH_CONV))
_add(LayerSpec("BatchNorm1d", {"num_features": _req("int"), "eps": Key("float", 1e-5, min=0),
                               "momentum": Key("float", 0.1, min=0, max=1), "affine": Key("bool", True)},
               _batchnorm((2, 3)), "batch normalization over [batch, C] or [batch, C, L]",
               positional=("num_features",)),
     lowering="batch_norm",
     torch=Torch("nn.BatchNorm1d", ("num_features",), ("eps", "momentum", "affine")))
_add(LayerSpec("BatchNorm2d", {"num_features": _req("int"), "eps": Key("float", 1e-5, min=0),
                               "momentum": Key("float", 0.1, min=0, max=1), "affine": Key("bool", True)},
               _batchnorm((4,)), "batch normalization over [batch, C, H, W]",
               positional=("num_features",)),
     lowering="batch_norm",
     torch=Torch("nn.BatchNorm2d", ("num_features",), ("eps", "momentum", "affine")))
_add(LayerSpec("LayerNorm", {"normalized_shape": _req("ints"), "eps": Key("float", 1e-5, min=0),
                             "elementwise_affine": Key("bool", True)}, _norm_last,
               "layer normalization over the trailing dims", positional=("normalized_shape",)),
     lowering="layer_norm",
     torch=Torch("nn.LayerNorm", ("normalized_shape",), ("eps", "elementwise_affine")))
_add(LayerSpec("RMSNorm", {"normalized_shape": Key("ints", None, min=1), "dim": Key("int", None, min=1),
                           "eps": Key("float", 1e-6, min=0)}, _norm_last,
               "root-mean-square normalization over the trailing dims (`dim` or `normalized_shape`)",
               positional=("normalized_shape",)),
     lowering="rms_norm", key_aliases=(("dim", "normalized_shape"),),
     torch=Torch("nn.RMSNorm", ("normalized_shape",), ("eps",), always=("eps",)))
for _n, _d in (("ReLU", "max(x, 0)"), ("ReLU6", "min(max(x, 0), 6)"), ("GELU", "exact (erf) GELU"),
               ("SiLU", "x * sigmoid(x)"), ("Sigmoid", "logistic sigmoid"), ("Tanh", "tanh"),
               ("Identity", "returns its input")):
    _add(LayerSpec(_n, {}, _same if _n == "Identity" else _float_same, _d,
                   int_input=_n == "Identity"),
         lowering="identity" if _n == "Identity" else "op",
         ir_op=None if _n == "Identity" else _n.lower(), torch=Torch(f"nn.{_n}"))
_add(LayerSpec("Softmax", {"dim": Key("int", -1, min=None)}, _softmax, "softmax along `dim`",
               positional=("dim",)),
     lowering="softmax", torch=Torch("nn.Softmax", (), ("dim",), always=("dim",)))
_add(LayerSpec("Dropout", {"p": Key("float", 0.5, min=0, max=1)}, _same, "dropout (training only)",
               positional=("p",)),
     lowering="dropout", torch=Torch("nn.Dropout", (), ("p",)))
_add(LayerSpec("Flatten", {"start_dim": Key("int", 1, min=None), "end_dim": Key("int", -1, min=None)},
               _flatten_rule, "flatten dims start_dim..end_dim into one",
               positional=("start_dim", "end_dim"), int_input=True),
     lowering="flatten", torch=Torch("nn.Flatten", (), ("start_dim", "end_dim")))
_add(LayerSpec("MaxPool2d", dict(_POOL_KEYS), _pool2d, "2-d max pooling", positional=("kernel_size",)),
     lowering="pool", ir_op="max_pool2d",
     torch=Torch("nn.MaxPool2d", ("kernel_size",), ("stride", "padding", "dilation", "ceil_mode")))
_add(LayerSpec("AvgPool2d", {k: v for k, v in _POOL_KEYS.items() if k != "dilation"}, _pool2d,
               "2-d average pooling", positional=("kernel_size",)),
     lowering="pool", ir_op="avg_pool2d",
     torch=Torch("nn.AvgPool2d", ("kernel_size",), ("stride", "padding", "ceil_mode")))
_add(LayerSpec("AdaptiveAvgPool2d", {"output_size": _req("pair")}, _adaptive_pool,
               "2-d average pooling to a fixed output size", positional=("output_size",)),
     lowering="adaptive_pool", torch=Torch("nn.AdaptiveAvgPool2d", ("output_size",)))
_add(LayerSpec("Embedding", {"num_embeddings": _req("int"), "embedding_dim": _req("int")},
               _embedding, "lookup table of learned vectors",
               positional=("num_embeddings", "embedding_dim"), int_input=True),
     lowering="embedding",
     torch=Torch("nn.Embedding", ("num_embeddings", "embedding_dim")))
_attn_keys = {"embed_dim": _req("int"), "num_heads": _req("int"), "bias": Key("bool", False),
              "causal": Key("bool", False), "dropout": Key("float", 0.0, min=0, max=1)}
_add(LayerSpec("MultiheadAttention", dict(_attn_keys), _attention,
               "multi-head self-attention with full-precision projections",
               positional=("embed_dim", "num_heads")),
     lowering="attention",
     torch=Torch("trt.SelfAttention", ("embed_dim", "num_heads"), ("bias", "causal", "dropout")))
_add(LayerSpec("TernaryAttention", {**_attn_keys, **_QUANT_KEYS}, _attention,
               "multi-head self-attention with ternary q/k/v/o projections", True,
               positional=("embed_dim", "num_heads")),
     lowering="attention", weights="ternary", key_aliases=(("quantization", "quantizer"),),
     torch=Torch("trt.SelfAttention", ("embed_dim", "num_heads"),
                 ("bias", "causal", "dropout", *_TORCH_QUANT), extra=("ternary=True",)))
_add(LayerSpec("TernaryActivation", {
    "threshold": Key("float", 0.5, min=0),
    "clip": Key("float", 1.0, min=0, doc="the gradient passes where |x| <= clip"),
    "clip_value": Key("float", None, min=0, doc="alias of `clip`"),
    "method": Key("str", "deterministic", choices=TERNARY_ACTIVATION_METHODS,
                  doc="how activations are ternarized (all: sign where |x| > threshold)")},
    _ternary_act, "maps activations to {-1, 0, +1} (straight-through gradient)"),
     lowering="ternarize", key_aliases=(("clip_value", "clip"),),
     torch=Torch("trt.TernaryActivation", (), ("threshold", "clip")))

# ---------------------------------------------------------------- model-wide quantization

DEFAULT_THRESHOLD = 0.05
"""The threshold of the fixed-threshold (`"deterministic"`) quantizer when a program names
the quantizer without one: weights with |w| > 0.05 become ±1 (the seed language's default)."""

SECTION_QUANT_KEYS = {"quantizer": "quantizer", "weights": "quantizer",
                      "quantization": "quantizer", "method": "quantizer",
                      "per_channel": "per_channel", "threshold": "threshold",
                      "act_quant": "act_quant", "activations": "act_quant", "ste": "ste",
                      "format": "format"}
"""The keys of a model's `quantization { }` section that are settings of its ternary
layers (section key -> layer key). A layer's own key wins over the section's."""


GRADIENT_ESTIMATORS = {"ste": "identity", "straight_through": "identity",
                       "straight-through": "identity", "identity": "identity",
                       "clipped_ste": "clipped", "clipped": "clipped", "hardtanh": "clipped"}
"""`training { gradient_estimator: … }`: the straight-through estimator of every ternary
layer (its `ste` key)."""

FORMAT_KEYS = ("format", "weight_format", "packing")
"""`optimization { format: "t2" }`: the packed inference format of every ternary layer."""

PERFORMANCE_KEYS = {
    # the seed language's spelling -> (the expectation `tritium train` measures, factor)
    "expected_accuracy": ("min_accuracy", 1), "target_accuracy": ("min_accuracy", 1),
    "accuracy": ("min_accuracy", 1), "min_accuracy": ("min_accuracy", 1),
    "model_size_mb": ("max_size_kb", 1024), "size_mb": ("max_size_kb", 1024),
    "max_size_mb": ("max_size_kb", 1024), "max_size_kb": ("max_size_kb", 1),
    "model_size_kb": ("max_size_kb", 1),
    "inference_ms": ("max_latency_ms", 1), "latency_ms": ("max_latency_ms", 1),
    "inference_time_ms": ("max_latency_ms", 1), "max_latency_ms": ("max_latency_ms", 1),
    "params": ("max_params", 1), "parameters": ("max_params", 1),
    "num_params": ("max_params", 1), "max_params": ("max_params", 1),
    "compression_ratio": ("min_compression", 1), "min_compression": ("min_compression", 1),
    "speedup": ("min_speedup", 1), "min_speedup": ("min_speedup", 1),
}
"""`performance { }` keys `tritium train` checks after training (the others, such as
`target_device`, are notes)."""


TERNARY_COUNTERPARTS = {"Linear": "TernaryLinear", "Conv2d": "TernaryConv2d",
                        "MultiheadAttention": "TernaryAttention"}
"""The ternary kind a full-precision kind becomes with `quantization: "ternary"` (or a
quantizer name) in its config."""

TERNARY_WORDS = ("ternary", "trit", "trits", "1.58bit", "1.58-bit", "2bit")
FULL_PRECISION_WORDS = ("none", "fp32", "float32", "float", "full", "full_precision")
QUANT_KEY_NAMES = ("quantization", "quantizer")


def quantized_kind(spec: LayerSpec, q: object) -> tuple[LayerSpec, bool] | None:
    """A layer's `quantization:` value `q` (a string) read against its kind: the kind to
    build (a full-precision kind with a ternary `q` becomes its ternary counterpart) and
    whether the key stays in the config (False: it only says what the kind already is).
    None: a ternary setting on a kind with no ternary counterpart."""
    if not isinstance(q, str):
        return spec, True
    word = q.strip().lower()
    if spec.weights == "ternary":
        return (spec, False) if word in TERNARY_WORDS else (spec, True)
    if word in FULL_PRECISION_WORDS:
        return spec, False
    target = TERNARY_COUNTERPARTS.get(spec.name)
    if target is None or not (word in TERNARY_WORDS or vocab.canonical_quantizer(word)):
        return None
    return LAYERS[target], word not in TERNARY_WORDS


def performance_expectations(values: dict[str, object]) -> dict[str, object]:
    """A `performance { }` section's values under the names `tritium train` measures
    (accuracies written as percentages, `expected_accuracy: 92.5`, become fractions)."""
    out: dict[str, object] = {}
    for key, v in values.items():
        canon, factor = PERFORMANCE_KEYS.get(key, (key, 1))
        if isinstance(v, bool) or not isinstance(v, int | float):
            out[canon] = v
            continue
        if canon == "min_accuracy" and v > 1:
            v = v / 100
        out[canon] = v * factor if factor != 1 else v
    return out


def section_defaults(spec: LayerSpec, given: set[str], section: dict[str, object]) -> dict:
    """The config keys a ternary layer of kind `spec` takes from the `quantization { }`
    section (`section`: layer key -> value, see SECTION_QUANT_KEYS) where the layer gives
    none itself (`given`: the keys it gives, aliases resolved)."""
    if spec.weights != "ternary":
        return {}
    out = {k: v for k, v in section.items() if k in spec.keys and k not in given}
    if "quantizer" in given and "threshold" in out:
        out.pop("threshold")     # the layer chose its own quantizer: the section's threshold
    if "quantizer" in given and vocab.quantizer_per_channel(section.get("quantizer")):
        out.pop("per_channel", None)   # and `adaptive_ternary`'s per-channel setting
    return out                   # belonged to the section's quantizer


def needs_default_threshold(quantizer: object, has_threshold: bool) -> bool:
    """`quantization: "deterministic"` (the fixed-threshold quantizer) without a threshold
    takes DEFAULT_THRESHOLD."""
    return (isinstance(quantizer, str) and not has_threshold
            and vocab.canonical_quantizer(quantizer) == "threshold")


def weight_elements(spec: LayerSpec, cfg: dict) -> int | None:
    """The element count of the largest weight a builtin layer allocates when it is built
    (None when a size is not known), so that the checker can bound it."""
    def get(key: str, default=1):
        v = cfg.get(key, default)
        if isinstance(v, list):
            p = pair(v)
            return None if p is None else p[0] * p[1]
        return v if isinstance(v, int) and not isinstance(v, bool) else None
    if "in_features" in spec.keys:
        sizes = [get("in_features"), get("out_features")]
    elif "in_channels" in spec.keys:
        groups = get("groups")
        sizes = [get("in_channels"), get("out_channels"), get("kernel_size")]
        if isinstance(sizes[0], int) and isinstance(groups, int) and groups > 0:
            sizes[0] //= groups
    elif "num_embeddings" in spec.keys:
        sizes = [get("num_embeddings"), get("embedding_dim")]
    elif "embed_dim" in spec.keys:
        sizes = [4, get("embed_dim"), get("embed_dim")]
    else:
        return None
    if any(v is None for v in sizes):
        return None
    n = 1
    for v in sizes:
        n *= max(v, 0)
    return n


LAYER_ALIASES = {"MultiHeadAttention": "MultiheadAttention", "BatchNorm": "BatchNorm1d",
                 "TernaryDense": "TernaryLinear", "Dense": "Linear"}
