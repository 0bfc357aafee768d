"""Model summaries: per layer, parameter counts by bit width and packed vs fp32 memory.

:func:`summarize` walks a module tree and returns a :class:`Summary`; with a sample input
it also records each layer's output shape through forward hooks (the model runs once in
eval mode under ``torch.no_grad``; its train/eval state is restored afterwards).
:func:`render_summary` turns a summary into a ``rich.table.Table``.

Accounting:

* ternary weights count as ``ternary`` parameters. A frozen layer's packed bytes are the
  bytes of its packed buffer; an unfrozen layer is costed as it would be frozen with
  ``ternary_format`` (``"t2"``: 2 bits a trit, ``"t1.6"``: 5 trits a byte). Their scales
  (float32) add to the packed bytes only: a float model has none.
* int8 / int4 weights count in their columns, packed bytes ``K`` / ``ceil(K/2)`` a row plus
  scales.
* every other floating tensor (bias, norm parameters, running statistics) counts as
  ``fp32`` and costs its stored size on both sides; non-float buffers (e.g. BatchNorm's
  ``num_batches_tracked``) cost their bytes on both sides without counting as parameters.
* ``fp32_bytes`` is the size of the same model with every weight in float32.
* ``checkpoint_bytes`` is what the module's tensors take in a checkpoint
  :func:`~tritium.runtime.save_checkpoint` writes of the model as it is (frozen ternary
  weights as dense trits, scales and biases float16 where exact; the file less its header
  is the total).
* ``macs`` (with a sample input) are the multiply-accumulates per sample of each linear
  and convolution layer (output elements times the weight's fan-in), ``ternary_macs``
  those of ternary layers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from rich.table import Table
from torch import nn

from tritium.runtime.layers import (
    TERNARY_FORMATS,
    Int4Linear,
    Int8Linear,
    TernaryLayer,
    TritiumLayer,
)
from tritium.runtime.packing import packed_row_bytes

__all__ = ["LayerSummary", "Summary", "summarize", "render_summary"]

TERNARY_BITS_IDEAL = math.log2(3)
"""Information content of a trit, about 1.58 bits."""


@dataclass
class LayerSummary:
    """One row of a summary."""

    name: str
    kind: str
    output_shape: tuple[int, ...] | None = None
    ternary_params: int = 0
    int8_params: int = 0
    int4_params: int = 0
    fp32_params: int = 0
    packed_bytes: int = 0
    fp32_bytes: int = 0
    packing_format: str | None = None
    checkpoint_bytes: int = 0
    macs: int | None = None
    ternary_macs: int = 0

    @property
    def params(self) -> int:
        return self.ternary_params + self.int8_params + self.int4_params + self.fp32_params


@dataclass
class Summary:
    """Per-layer rows and totals of a model."""

    model_name: str
    layers: list[LayerSummary] = field(default_factory=list)

    @property
    def ternary_params(self) -> int:
        return sum(r.ternary_params for r in self.layers)

    @property
    def int8_params(self) -> int:
        return sum(r.int8_params for r in self.layers)

    @property
    def int4_params(self) -> int:
        return sum(r.int4_params for r in self.layers)

    @property
    def fp32_params(self) -> int:
        return sum(r.fp32_params for r in self.layers)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def packed_bytes(self) -> int:
        return sum(r.packed_bytes for r in self.layers)

    @property
    def fp32_bytes(self) -> int:
        return sum(r.fp32_bytes for r in self.layers)

    @property
    def checkpoint_bytes(self) -> int:
        return sum(r.checkpoint_bytes for r in self.layers)

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates per sample (``None`` without a sample input)."""
        counted = [r.macs for r in self.layers if r.macs is not None]
        return sum(counted) if counted else None

    @property
    def ternary_mac_share(self) -> float | None:
        m = self.macs
        return sum(r.ternary_macs for r in self.layers) / m if m else None

    @property
    def compression_ratio(self) -> float:
        """``fp32_bytes / packed_bytes`` (1.0 for an empty model)."""
        return self.fp32_bytes / self.packed_bytes if self.packed_bytes else 1.0

    @property
    def bits_per_param(self) -> float:
        """Average stored bits per parameter, packed."""
        return 8.0 * self.packed_bytes / self.total_params if self.total_params else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON output)."""
        return {
            "model": self.model_name,
            "layers": [asdict(r) for r in self.layers],
            "totals": {
                "ternary_params": self.ternary_params,
                "int8_params": self.int8_params,
                "int4_params": self.int4_params,
                "fp32_params": self.fp32_params,
                "total_params": self.total_params,
                "packed_bytes": self.packed_bytes,
                "fp32_bytes": self.fp32_bytes,
                "compression_ratio": self.compression_ratio,
                "checkpoint_bytes": self.checkpoint_bytes,
                "macs": self.macs,
                "ternary_mac_share": self.ternary_mac_share,
            },
        }

    def table(self) -> Table:
        return render_summary(self)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _own_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    out: list[tuple[str, torch.Tensor]] = []
    for name, p in module.named_parameters(recurse=False):
        out.append((name, p))
    for name, b in module.named_buffers(recurse=False):
        if b is not None:
            out.append((name, b))
    return out


def _plain_tensor(row: LayerSummary, t: torch.Tensor) -> None:
    """A tensor stored as is: float counts as fp32 parameters, anything else only as bytes."""
    nb = _nbytes(t)
    if t.is_floating_point():
        row.fp32_params += t.numel()
        row.packed_bytes += nb
        row.fp32_bytes += t.numel() * 4
    else:
        row.packed_bytes += nb
        row.fp32_bytes += nb


def _layer_row(name: str, module: nn.Module, ternary_format: str) -> LayerSummary:
    row = LayerSummary(name=name, kind=type(module).__name__)
    handled: set[str] = set()
    if isinstance(module, TritiumLayer):
        n, k = module.weight_shape[0], math.prod(module.weight_shape[1:])
        count = n * k
        row.fp32_bytes += 4 * count
        if isinstance(module, TernaryLayer):
            row.ternary_params += count
            if module.frozen:
                row.packed_bytes += _nbytes(module.weight_packed) + _nbytes(module.weight_scale)
                row.packing_format = module.format
                handled |= {"weight_packed", "weight_scale"}
            else:
                scales = n if module.per_channel else 1
                row.packed_bytes += n * packed_row_bytes(k, ternary_format) + 4 * scales
                row.packing_format = ternary_format
                handled.add("weight")
        elif isinstance(module, Int8Linear):
            row.int8_params += count
            row.packing_format = "int8"
            row.packed_bytes += count + 4 * n
            handled |= {"weight", "weight_int8", "weight_scale"}
        elif isinstance(module, Int4Linear):
            row.int4_params += count
            row.packing_format = "int4"
            row.packed_bytes += n * (-(-k // 2)) + 4 * n * module.n_groups
            handled |= {"weight", "weight_packed", "weight_scale"}
    for tname, t in _own_tensors(module):
        if tname not in handled:
            _plain_tensor(row, t)
    return row


def summarize(
    module: nn.Module,
    sample_input: Any = None,
    *,
    ternary_format: str = "t2",
    name: str | None = None,
) -> Summary:
    """Summarize ``module``: one row per leaf module or module with its own tensors.

    ``sample_input`` (a tensor, or a tuple of positional arguments) runs one forward pass
    to record output shapes; without it the shapes are ``None``. ``ternary_format`` is the
    packing assumed for unfrozen ternary layers.
    """
    if ternary_format not in TERNARY_FORMATS:
        raise ValueError(
            f"unknown ternary format {ternary_format!r}; valid values are: "
            + ", ".join(repr(f) for f in TERNARY_FORMATS)
        )
    rows: list[LayerSummary] = []
    by_module: dict[int, LayerSummary] = {}
    for mname, m in module.named_modules():
        is_leaf = next(iter(m.children()), None) is None
        if not (is_leaf or _own_tensors(m) or isinstance(m, TritiumLayer)):
            continue
        row = _layer_row(mname or "(root)", m, ternary_format)
        rows.append(row)
        by_module[id(m)] = row
    from tritium.runtime.checkpoint import stored_tensor_bytes
    stored = stored_tensor_bytes(module)
    for mname, m in module.named_modules():
        row = by_module.get(id(m))
        if row is None:
            continue
        dot = f"{mname}." if mname else ""
        row.checkpoint_bytes = sum(v for k, v in stored.items()
                                   if k.startswith(dot) and "." not in k[len(dot):])
    summary = Summary(model_name=name or type(module).__name__, layers=rows)
    if sample_input is None:
        return summary

    def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
        row = by_module.get(id(mod))
        if row is not None and isinstance(out, torch.Tensor):
            row.output_shape = tuple(out.shape)
            k = _fan_in(mod)
            if k is not None and out.dim() >= 1 and out.shape[0]:
                row.macs = out.numel() // out.shape[0] * k
                if isinstance(mod, TernaryLayer):
                    row.ternary_macs = row.macs

    handles = [m.register_forward_hook(hook) for m in module.modules() if id(m) in by_module]
    modes = {id(m): m.training for m in module.modules()}
    try:
        module.eval()
        args = sample_input if isinstance(sample_input, tuple) else (sample_input,)
        with torch.no_grad():
            module(*args)
    finally:
        for h in handles:
            h.remove()
        for m in module.modules():
            m.training = modes[id(m)]
    return summary


def _fan_in(mod: nn.Module) -> int | None:
    """The multiply-accumulates per output element of a linear or convolution layer."""
    if isinstance(mod, TritiumLayer):
        return math.prod(mod.weight_shape[1:])
    if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return math.prod(mod.weight.shape[1:])
    return None


def _fmt_count(n: int) -> str:
    return f"{n:,}" if n else "-"


def _fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.2f} MiB"


def render_summary(summary: Summary) -> Table:
    """A ``rich`` table of the rows and a totals footer."""
    table = Table(title=f"{summary.model_name}", show_footer=True)
    table.add_column("layer", footer="total")
    table.add_column("kind")
    table.add_column("output shape")
    table.add_column("format")
    table.add_column("ternary", justify="right", footer=_fmt_count(summary.ternary_params))
    table.add_column("int8", justify="right", footer=_fmt_count(summary.int8_params))
    table.add_column("int4", justify="right", footer=_fmt_count(summary.int4_params))
    table.add_column("fp32", justify="right", footer=_fmt_count(summary.fp32_params))
    table.add_column("packed", justify="right", footer=_fmt_bytes(summary.packed_bytes))
    table.add_column("checkpoint", justify="right", footer=_fmt_bytes(summary.checkpoint_bytes))
    table.add_column("fp32 equiv.", justify="right", footer=_fmt_bytes(summary.fp32_bytes))
    table.add_column("MACs", justify="right",
                     footer="-" if summary.macs is None else _fmt_count(summary.macs))
    for r in summary.layers:
        shape = "-" if r.output_shape is None else "×".join(str(d) for d in r.output_shape)
        table.add_row(
            r.name,
            r.kind,
            shape,
            r.packing_format or "-",
            _fmt_count(r.ternary_params),
            _fmt_count(r.int8_params),
            _fmt_count(r.int4_params),
            _fmt_count(r.fp32_params),
            _fmt_bytes(r.packed_bytes),
            _fmt_bytes(r.checkpoint_bytes),
            _fmt_bytes(r.fp32_bytes),
            "-" if r.macs is None else _fmt_count(r.macs),
        )
    table.caption = (
        f"{summary.total_params:,} parameters · {_fmt_bytes(summary.packed_bytes)} packed vs "
        f"{_fmt_bytes(summary.fp32_bytes)} fp32 · compression {summary.compression_ratio:.1f}× "
        f"· {summary.bits_per_param:.2f} bits/param"
        + (f" · {summary.macs:,} MACs a sample, {summary.ternary_mac_share:.1%} ternary"
           if summary.macs else "")
    )
    return table
