"""Small functions the generated PyTorch modules call (`trt.<name>`).

The quantizers here honour the quantization strength of progressive QAT
(:func:`tritium.runtime.quant.quantization_strength`): below full strength they return
``(1 - lam) * x + lam * q(x)``, their float input at strength 0."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from tritium.runtime.quant import blend_quantized, quantize_weight
from tritium.runtime.ste import ste_clipped, ste_identity

_DTYPES = {
    "bool": torch.bool, "int": torch.int64, "int8": torch.int8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8, "float": torch.float32,
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64,
}


def ternary_weight(w: torch.Tensor, quantizer: str = "twn", per_channel: bool = False,
                   threshold: float | None = None, training: bool = False) -> torch.Tensor:
    """The ternarized view `trits * scale` of a latent weight, with an identity
    straight-through gradient to `w` (used for `param`/`let` weights of explicit layers)."""
    q = quantize_weight(quantizer, w.detach(), per_channel=per_channel and w.dim() > 1,
                        threshold=threshold, training=training)
    scale = q.scale.reshape((-1,) + (1,) * (w.dim() - 1)) if q.scale.numel() > 1 else q.scale
    w_q = q.trits.to(w.dtype).reshape(w.shape) * scale.to(w.dtype).reshape(
        scale.shape if q.scale.numel() > 1 else ())
    return ste_identity(w, w_q)


def init_weight(shape: Sequence[int]) -> torch.Tensor:
    """Initial latent values for a declared parameter: Kaiming-uniform for matrices and
    kernels (as nn.Linear), zeros for vectors and scalars."""
    shape = tuple(int(d) for d in shape)
    t = torch.empty(shape)
    if len(shape) >= 2:
        nn.init.kaiming_uniform_(t, a=math.sqrt(5))
    else:
        nn.init.zeros_(t)
    return t


def random_ternary(shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformly random trits in {-1, 0, 1} (int8)."""
    return torch.randint(-1, 2, tuple(int(d) for d in shape), generator=generator,
                         dtype=torch.int8)


def norm(bn: nn.Module | None, y: torch.Tensor) -> torch.Tensor:
    """``bn(y)``, or ``y`` itself once freezing has folded the batch norm ``bn`` into the
    layer that produced ``y`` (the generated code calls the batch norms of its
    ``tritium_folds`` pairs through this, and a folded one is ``None``: no module call)."""
    return y if bn is None else bn(y)


def same_padding(kernel_size: int | Sequence[int], dilation: int | Sequence[int] = 1
                 ) -> tuple[int, int]:
    """The zero padding that keeps the spatial size at stride 1 (odd kernels)."""
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    d = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


def repeat_configs(cls: type, first: dict, n: int, update: Callable[[dict], dict]
                   ) -> list[nn.Module]:
    """`Block[n] { … }`: n instances, each later one configured by `update(previous)`."""
    if int(n) < 1:
        raise ValueError(f"a repetition count must be at least 1, got {n}")
    cfgs = [dict(first)]
    for _ in range(int(n) - 1):
        cfgs.append({**cfgs[-1], **update(cfgs[-1])})
    return [cls(**c) for c in cfgs]


def cast(x, dtype: str):
    """`cast(x, "int8")`, `int32(x)`, `trit(x)`: tensors convert (trit rounds and clips),
    Python numbers follow Python (float -> int truncates)."""
    if isinstance(x, torch.Tensor):
        if dtype == "trit":
            return torch.clamp(torch.round(x), -1, 1).to(torch.int8)
        return x.to(_DTYPES[dtype])
    if dtype == "trit":
        return max(-1, min(1, round(x)))
    if dtype == "bool":
        return bool(x)
    if dtype.startswith(("int", "uint")):
        return int(x)
    return float(x)


class closure:   # noqa: N801 (called like a function in generated code)
    """A .tri function that reads names of the function around it, as a value: `fn` with
    the values `captured` appended to the arguments of every call. When the function's own
    `own` parameters end in `defaults` (the generated def cannot hold them before the
    appended values), a call that passes fewer arguments gets the defaults it leaves out."""

    def __init__(self, fn, *captured, own: int | None = None, defaults: tuple = ()) -> None:
        self.fn, self.captured = fn, captured
        self.own, self.defaults = own, tuple(defaults)

    def __call__(self, *args):
        if self.own is not None and len(args) < self.own:
            missing = self.own - len(args)
            if missing <= len(self.defaults):
                args = (*args, *self.defaults[len(self.defaults) - missing:])
        return self.fn(*args, *self.captured)


def register_hook(x, hook) -> None:
    """The seed's `x.register_hook(f)`: `f(grad)` runs in the backward pass (its result, when
    a tensor, replaces the gradient); a tensor that has no gradient has none to hook."""
    if isinstance(x, torch.Tensor) and x.requires_grad:
        x.register_hook(hook)


def construct_layer(cls, hyper: dict, dims: dict, **weights) -> nn.Module:
    """The seed's `Affine(w: w0, b: b0)`: an instance of the generated layer class `cls`
    with the hyperparameters `hyper`, each of `dims` (name -> (weight, axis)) read from the
    shape of a given weight, and each given weight's values copied into its parameter."""
    kw = dict(hyper)
    for name, (w, axis) in dims.items():
        kw[name] = int(weights[w].shape[axis])
    layer = cls(**kw)
    with torch.no_grad():
        for name, value in weights.items():
            p = getattr(layer, name)
            p.copy_(torch.as_tensor(value).to(p.dtype).reshape(p.shape))
    return layer


def with_format(layer: nn.Module, fmt: str) -> nn.Module:
    """Set the packed format a ternary layer (or every ternary layer inside `layer`) freezes
    to by default; returns `layer` (used for a .tri layer's `format:` key)."""
    from tritium.runtime.layers import TernaryLayer

    for m in layer.modules():
        if isinstance(m, TernaryLayer):
            m.preferred_format = fmt
    return layer


# --- the seed language's builtin functions (tritium.check.builtins records name these) ------

def _torch_dtype(dtype: str | None) -> torch.dtype | None:
    if dtype is None:
        return None
    if dtype == "trit":
        return torch.int8
    return _DTYPES[dtype]


def tensor(data, dtype: str | None = None, requires_grad: bool = False) -> torch.Tensor:
    """`tensor([...], dtype=)`: a tensor from nested lists, float32 unless `dtype` says
    otherwise (`"trit"` keeps int8 values -1, 0, 1)."""
    t = torch.tensor(data, dtype=_torch_dtype(dtype or "float32"))
    if dtype == "trit":
        t = torch.clamp(t, -1, 1)
    return t.requires_grad_(True) if requires_grad and t.is_floating_point() else t


def with_dtype(t: torch.Tensor, dtype: str | None = None, requires_grad: bool = False
               ) -> torch.Tensor:
    """A new tensor (zeros, ones, ...) converted to `dtype` and marked `requires_grad`."""
    if dtype is not None:
        t = t.to(_torch_dtype(dtype))
    return t.requires_grad_(True) if requires_grad and t.is_floating_point() else t


def arange(start, end=None, step=1, dtype: str | None = None) -> torch.Tensor:
    """torch.arange: int64 when every bound is an integer, else float32. (Positions made by
    it in a decode session's step over cached tokens are recorded: see
    :func:`tritium.runtime.decoding.note_positions`.)"""
    from .decoding import note_positions
    note_positions("arange")
    if end is None:
        start, end = 0, start
    t = torch.arange(start, end, step)
    if dtype is not None:
        return t.to(_torch_dtype(dtype))
    return t if not t.is_floating_point() else t.to(torch.float32)


def std(x: torch.Tensor, dim=None, keepdim: bool = False, unbiased: bool = True,
        var: bool = False) -> torch.Tensor:
    """Standard deviation (or variance) over `dim` (all dims when None), Bessel-corrected
    unless `unbiased` is false."""
    dims = tuple(range(x.dim())) if dim is None else dim
    v = torch.var(x, dim=dims, correction=1 if unbiased else 0, keepdim=keepdim)
    return v if var else torch.sqrt(v)


def split(x: torch.Tensor, size, dim: int = 0) -> list[torch.Tensor]:
    """torch.split as a list (a size, or a list of section sizes)."""
    return list(torch.split(x, size, dim=dim))


def rope(x: torch.Tensor, base: float = 10000.0, offset: int | None = None) -> torch.Tensor:
    """Rotary position embedding of `x` [..., seq, head_dim] (Llama's "rotate half" form):
    feature i and i + head_dim/2 of position p rotate by the angle p * base^(-2i/head_dim).
    Positions start at `offset`; by default at the number of tokens the active decode
    session (:mod:`tritium.runtime.decoding`) has cached, 0 outside one."""
    session = None
    if offset is None:
        from .decoding import current_session
        session = current_session()
        offset = session.offset if session is not None else 0
    seq, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"rope: the head dim {d} is odd; it must be even")
    half = d // 2
    if session is not None:     # the session keeps the tables (the same values)
        cos, sin = session.rope_tables(d, base, offset, seq, x.dtype, x.device)
    else:
        from .decoding import rope_tables
        cos, sin = rope_tables(d, base, offset, offset + seq, x.dtype, x.device)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask=None,
              is_causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention `softmax(q kᵀ / √d) v` of `[batch, heads, seq, head_dim]`
    tensors; inside a decode session (:mod:`tritium.runtime.decoding`) over the cached keys
    and values too."""
    from .decoding import current_session
    session = current_session()
    if session is not None:
        return session.attend(q, k, v, attn_mask, is_causal)
    return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                                      is_causal=is_causal)


def layer_norm(x: torch.Tensor, shape=None, weight=None, bias=None, eps: float = 1e-5
               ) -> torch.Tensor:
    """F.layer_norm over `shape` (the last dim when None)."""
    if shape is None:
        shape = x.shape[-1:]
    elif isinstance(shape, int):
        shape = (shape,)
    return nn.functional.layer_norm(x, tuple(shape), weight, bias, eps)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """F.batch_norm: batch statistics when `training` (running ones updated), else running."""
    return nn.functional.batch_norm(x, running_mean, running_var, weight, bias,
                                    training=training, momentum=momentum, eps=eps)


def mse_loss(x: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return nn.functional.mse_loss(x, torch.as_tensor(target, dtype=x.dtype).expand_as(x)
                                  if not isinstance(target, torch.Tensor) else target,
                                  reduction=reduction)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
                  ) -> torch.Tensor:
    """Cross-entropy of logits [.., C] against integer class indices [..]."""
    logits = logits if logits.is_floating_point() else logits.float()
    flat = logits.reshape(-1, logits.shape[-1])
    out = nn.functional.cross_entropy(flat, torch.as_tensor(targets).reshape(-1).long(),
                                      reduction=reduction)
    return out.reshape(logits.shape[:-1]) if reduction == "none" else out


def _generator(seed: int | None, device) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def _ternarize(v: torch.Tensor, threshold) -> torch.Tensor:
    return torch.sign(v) * (v.abs() > threshold).to(v.dtype)


def threshold_quantize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """sign(x) where |x| > threshold, else 0 (values -1, 0, 1 as floats); the gradient passes
    straight through (identity STE)."""
    return ste_identity(x, _ternarize(x.detach(), threshold))


def adaptive_threshold_quantize(x: torch.Tensor, factor: float = 0.7,
                                per_channel: bool = False) -> torch.Tensor:
    """TWN's threshold: delta = factor * mean|x| (per output channel, dim 0, when
    `per_channel`); sign(x) where |x| > delta, else 0; identity STE."""
    d = x.detach()
    if per_channel and d.dim() > 1:
        delta = factor * d.abs().reshape(d.shape[0], -1).mean(dim=1).reshape(
            (-1,) + (1,) * (d.dim() - 1))
    else:
        delta = factor * d.abs().mean()
    return ste_identity(x, _ternarize(d, delta))


def stochastic_quantize(x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """Stochastic rounding to {-1, 0, 1}: sign(x) with probability min(|x|, 1), else 0, so
    E[q] = clamp(x, -1, 1); `seed` makes the draw reproducible; identity STE."""
    d = x.detach()
    u = torch.rand(d.shape, generator=_generator(seed, d.device), device=d.device,
                   dtype=torch.float32)
    q = torch.sign(d) * (u < d.abs().clamp(max=1.0).to(torch.float32)).to(d.dtype)
    return ste_identity(x, q)


def learned_quantize(x: torch.Tensor, scale, threshold: float = 0.5) -> torch.Tensor:
    """A learned step (LSQ for three levels): scale * t, t = sign(x/scale) where
    |x/scale| > threshold else 0; the gradient reaches x (clipped STE, |x/scale| <= 1) and
    the scale."""
    v = x / scale
    t = _ternarize(v.detach(), threshold)
    v_c = torch.clamp(v, -1.0, 1.0)
    return blend_quantized(x, scale * (v_c + (t - v_c).detach()))


def soft_quantize(x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """A differentiable staircase onto {-1, 0, 1}: (tanh((x - 1/2)/T) + tanh((x + 1/2)/T)) / 2,
    the hard ternary step as T -> 0."""
    return blend_quantized(x, 0.5 * (torch.tanh((x - 0.5) / temperature)
                                     + torch.tanh((x + 0.5) / temperature)))


def gumbel_softmax_quantize(x: torch.Tensor, temperature: float = 1.0, hard: bool = True,
                            seed: int | None = None) -> torch.Tensor:
    """Gumbel-softmax over the levels {-1, 0, 1}, logits -(x - level)^2: a sample of
    softmax((logits + Gumbel noise) / T) weighting the levels; `hard` takes the arg-max level
    with a straight-through gradient (values -1, 0, 1)."""
    levels = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
    logits = -(x.unsqueeze(-1) - levels) ** 2
    u = torch.rand(logits.shape, generator=_generator(seed, x.device), device=x.device,
                   dtype=torch.float32).to(x.dtype)
    g = -torch.log(-torch.log(u.clamp(min=1e-10, max=1.0 - 1e-7)))
    y = torch.softmax((logits + g) / temperature, dim=-1)
    if hard:
        onehot = nn.functional.one_hot(y.argmax(dim=-1), 3).to(y.dtype)
        y = onehot + (y - y.detach())
    return blend_quantized(x, (y * levels).sum(dim=-1))


def xnor_quantize(x: torch.Tensor) -> torch.Tensor:
    """XNOR-Net: mean|x| * sign(x) (sign 0 counts as +1); clipped STE (|x| <= 1)."""
    d = x.detach()
    q = d.abs().mean() * torch.where(d >= 0, 1.0, -1.0).to(d.dtype)
    return ste_clipped(x, q, 1.0)


def xnor_quantize_pair(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed's `let (values, scale) = xnor_quantize(x)`: sign(x) (sign 0 counts as +1)
    with the clipped STE (|x| <= 1), and the per-tensor scale mean|x| (a 0-d tensor);
    values * scale is `xnor_quantize(x)`."""
    d = x.detach()
    sign = torch.where(d >= 0, 1.0, -1.0).to(d.dtype)
    return ste_clipped(x, sign, 1.0), x.abs().mean()


def ste_quantize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """sign(x) where |x| > threshold, else 0, with the identity straight-through gradient."""
    return ste_identity(x, _ternarize(x.detach(), threshold))


def clipped_ste_quantize(x: torch.Tensor, threshold: float = 0.5, clip: float = 1.0
                         ) -> torch.Tensor:
    """As ste_quantize, but the gradient passes only where |x| <= clip (hard-tanh STE)."""
    return ste_clipped(x, _ternarize(x.detach(), threshold), clip)


def dequantize(q, scale, zero_point=None, axis: int = 0) -> torch.Tensor:
    """(q - zero_point) * scale as float32; a scale (and zero point) with one value per
    channel of dim `axis` broadcasts along it."""
    t = torch.as_tensor(q).to(torch.float32)

    def along(v):
        v = torch.as_tensor(v, dtype=torch.float32, device=t.device)
        if v.numel() == 1 or t.dim() == 0:
            return v.reshape(())
        shape = [1] * t.dim()
        shape[axis] = -1
        return v.reshape(shape)
    if zero_point is not None:
        t = t - along(zero_point)
    return t * along(scale)


def ternary_weights(w, quantizer: str = "twn") -> torch.Tensor:
    """The trits (int8 -1, 0, 1) of a weight under `quantizer`, without the scale; a shape
    gives uniformly random trits."""
    if not isinstance(w, torch.Tensor):
        return random_ternary(w if isinstance(w, list | tuple) else [w])
    return quantize_weight(quantizer, w.detach(), per_channel=False, threshold=None,
                           training=False).trits


def quantized_linear(x: torch.Tensor, w: torch.Tensor, bias=None, quantizer: str = "twn",
                     training: bool = False) -> torch.Tensor:
    """x @ ternary(w)ᵀ + bias, w [out, in], with the STE to the latent w."""
    return nn.functional.linear(x, ternary_weight(w, quantizer, training=training), bias)


def quantized_conv2d(x: torch.Tensor, w: torch.Tensor, bias=None, stride=1, padding=0,
                     dilation=1, groups: int = 1, quantizer: str = "twn",
                     training: bool = False) -> torch.Tensor:
    """conv2d with the ternarized kernel (STE to the latent w)."""
    return nn.functional.conv2d(x, ternary_weight(w, quantizer, training=training), bias,
                                stride=stride, padding=padding, dilation=dilation, groups=groups)


def float_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` where an operand holds trits or integers: both taken as float32 (a float
    operand keeps its dtype when the other is not float), the product a float."""
    fa, fb = a.is_floating_point(), b.is_floating_point()
    if not fa:
        a = a.to(b.dtype if fb else torch.float32)
    if not fb:
        b = b.to(a.dtype)
    return torch.matmul(a, b)


def quantized_matmul(x: torch.Tensor, w: torch.Tensor, quantizer: str = "twn",
                     training: bool = False) -> torch.Tensor:
    """x @ ternary(w) (matmul semantics, w [in, out]) with the STE to the latent w."""
    return torch.matmul(x, ternary_weight(w, quantizer, training=training))


def random_tensor(kind: str, shape, seed: int | None = None, dtype: str | None = None,
                  requires_grad: bool = False) -> torch.Tensor:
    """`randn`/`rand`/`random_ternary(shape, seed=)`: a draw from a generator seeded with
    `seed` (the same tensor on every run), converted like `with_dtype`."""
    g = _generator(seed, "cpu")
    dims = tuple(int(d) for d in ([shape] if isinstance(shape, int) else shape))
    if kind == "random_ternary":
        t = random_ternary(dims, g)
    elif kind == "randn":
        t = torch.randn(dims, generator=g)
    else:
        t = torch.rand(dims, generator=g)
    return with_dtype(t, dtype, requires_grad)
