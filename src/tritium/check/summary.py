"""A static model summary from the checker: per layer, output shape, parameter counts by bit
width and memory, with totals, the fp32-equivalent size and the compression ratio (in the
spirit of `larq.models.summary`). It runs the checker's shape inference on the model's
`forward` with tracing on, so it needs no torch and no weights.

Packed sizes follow docs/formats.md: each weight row (one output channel) is packed alone in
32-byte blocks of 128 trits (`t2`) or 160 trits (`t1.6`), plus one fp32 scale per tensor or
per output channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..frontend import ast as A
from ..frontend.diagnostics import Diagnostic
from . import CheckResult
from .checker import Checker, Scope
from .types import TensorT, Value, shape_str

BLOCK_BYTES = 32
BLOCK_TRITS = {"t2": 128, "t1.6": 160}


@dataclass
class LayerRow:
    name: str
    kind: str
    output: str
    ternary: int = 0       # ternary weights
    int8: int = 0
    int4: int = 0
    fp32: int = 0          # full-precision parameters (biases, scales, norms, fp layers)
    buffers: int = 0       # fp32 non-trainable state (running statistics)
    packed_bytes: int = 0  # inference memory with packed ternary weights

    @property
    def params(self) -> int:
        return self.ternary + self.int8 + self.int4 + self.fp32

    @property
    def fp32_bytes(self) -> int:
        return 4 * (self.params + self.buffers)


@dataclass
class Summary:
    model: str
    rows: list[LayerRow] = field(default_factory=list)
    input: str = ""
    output: str = ""

    def total(self, attr: str) -> int:
        return sum(getattr(r, attr) for r in self.rows)

    @property
    def ratio(self) -> float:
        packed = self.total("packed_bytes")
        return self.total("fp32_bytes") / packed if packed else 1.0

    def to_json(self) -> dict:
        return {
            "model": self.model, "input": self.input, "output": self.output,
            "layers": [{"name": r.name, "kind": r.kind, "output": r.output, "params": r.params,
                        "ternary": r.ternary, "int8": r.int8, "int4": r.int4, "fp32": r.fp32,
                        "buffers": r.buffers, "packed_bytes": r.packed_bytes,
                        "fp32_bytes": r.fp32_bytes} for r in self.rows],
            "total_params": self.total("params"),
            "packed_bytes": self.total("packed_bytes"),
            "fp32_bytes": self.total("fp32_bytes"),
            "compression": round(self.ratio, 3),
        }


def packed_ternary_bytes(rows: int, k: int, fmt: str, per_channel: bool) -> int:
    per_row = -(-k // BLOCK_TRITS[fmt]) * BLOCK_BYTES
    return rows * per_row + 4 * (rows if per_channel else 1)


def _i(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _pair(v) -> tuple[int, int]:
    if isinstance(v, list) and len(v) == 2:
        return _i(v[0]), _i(v[1])
    return _i(v), _i(v)


def layer_row(name: str, kind: str, cfg: dict, out) -> LayerRow:
    row = LayerRow(name, kind, shape_str(out.shape) if isinstance(out, TensorT) else "?")
    fmt = cfg.get("format", "t2") if cfg.get("format") in BLOCK_TRITS else "t2"
    per_channel = bool(cfg.get("per_channel", False))
    bias = bool(cfg.get("bias", False))
    if kind in ("TernaryLinear", "BitLinear", "Linear", "Int8Linear", "Int4Linear"):
        n_in, n_out = _i(cfg.get("in_features")), _i(cfg.get("out_features"))
        rows, k = n_out, n_in
    elif kind in ("TernaryConv2d", "Conv2d"):
        kh, kw = _pair(cfg.get("kernel_size"))
        groups = max(_i(cfg.get("groups", 1)), 1)
        rows, k = _i(cfg.get("out_channels")), _i(cfg.get("in_channels")) // groups * kh * kw
    elif kind in ("TernaryAttention", "MultiheadAttention", "MultiHeadAttention"):
        e = _i(cfg.get("embed_dim"))
        rows, k = 4 * e, e
    else:
        rows = k = 0
    weights = rows * k
    if kind.startswith("Ternary") or kind == "BitLinear":
        row.ternary = weights
        row.fp32 = (rows if bias else 0)
        scales = rows if per_channel else 1
        row.packed_bytes = packed_ternary_bytes(rows, k, fmt, per_channel) + 4 * row.fp32
        row.buffers = scales   # the scale is derived, not trained, but stored
    elif kind == "Int8Linear":
        row.int8 = weights
        row.fp32 = rows if bias else 0
        row.packed_bytes = weights + 4 * rows + 4 * row.fp32
        row.buffers = rows
    elif kind == "Int4Linear":
        row.int4 = weights
        row.fp32 = rows if bias else 0
        row.packed_bytes = -(-weights // 2) + 4 * rows + 4 * row.fp32
        row.buffers = rows
    elif weights:
        row.fp32 = weights + (rows if bias else 0)
        row.packed_bytes = 4 * row.fp32
    elif kind in ("BatchNorm1d", "BatchNorm2d"):
        c = _i(cfg.get("num_features"))
        row.fp32 = 2 * c if cfg.get("affine", True) else 0
        row.buffers = 2 * c
        row.packed_bytes = 4 * (row.fp32 + row.buffers)
    elif kind in ("LayerNorm", "RMSNorm"):
        ns = cfg.get("normalized_shape", cfg.get("dim"))
        n = 1
        for d in ns if isinstance(ns, list) else [ns]:
            n *= _i(d)
        row.fp32 = (2 * n if kind == "LayerNorm" and cfg.get("elementwise_affine", True)
                    else n)
        row.packed_bytes = 4 * row.fp32
    elif kind == "Embedding":
        row.fp32 = _i(cfg.get("num_embeddings")) * _i(cfg.get("embedding_dim"))
        row.packed_bytes = 4 * row.fp32
    return row


def pick_definition(result: CheckResult, name: str | None):
    """The named model/block/layer, else the file's only model, else its last layer."""
    defs = {n: d for n, d in result.definitions.items() if d.kind != "fn"}
    if name is not None:
        return defs.get(name)
    main = [i for i in result.program.items if isinstance(i, A.ModelDef | A.BlockDef | A.LayerDef)]
    models = [i for i in main if isinstance(i, A.ModelDef)]
    if len(models) == 1:
        return defs.get(models[0].name)
    if not models and main:
        return defs.get(main[-1].name)
    return None


def summarize_definition(result: CheckResult, d, hyper: dict | None = None) -> Summary:
    checker = Checker(result.definitions, [])
    checker.trace = []
    scope, layers = checker.definition_env(d.node, {k: Value.of(v) for k, v in
                                                    (hyper or {}).items()}, abstract=False)
    fn = checker.forward_of(d.node)
    out = checker.check_function(fn, scope, layers,
                                 form_b=isinstance(d.node, A.LayerDef)
                                 and not checker.has_forward(d.node))
    summary = Summary(d.name)
    ins = [p for p in fn.params if p.type is not None]
    if ins:
        summary.input = ", ".join(str(checker.type_from_expr(p.type, Scope())) for p in ins)
    summary.output = str(out.ty)
    seen = set()
    for name, kind, cfg, _in, out_ty in checker.trace:
        if name in seen:
            continue
        seen.add(name)
        summary.rows.append(layer_row(name, kind.spec.name, cfg, out_ty))
    return summary


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def render_summary(s: Summary, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    t = Table(title=escape(f"{s.model}  (input {s.input or '?'} -> {s.output})"),
              show_footer=True)
    t.add_column("layer", footer="total")
    t.add_column("kind")
    t.add_column("output shape")
    cols = [("ternary", "ternary (2b)"), ("int8", "int8"), ("int4", "int4"),
            ("fp32", "fp32")]
    used = [(a, h) for a, h in cols if s.total(a)]
    for attr, head in used:
        t.add_column(head, justify="right", footer=f"{s.total(attr):,}")
    t.add_column("packed", justify="right", footer=_human(s.total("packed_bytes")))
    t.add_column("fp32 equiv.", justify="right", footer=_human(s.total("fp32_bytes")))
    for r in s.rows:
        t.add_row(escape(r.name), r.kind, escape(r.output), *[f"{getattr(r, a):,}" if getattr(r, a) else ""
                                              for a, _ in used],
                  _human(r.packed_bytes) if r.packed_bytes else "",
                  _human(r.fp32_bytes) if r.fp32_bytes else "")
    console.print(t)
    tern = s.total("ternary")
    total = s.total("params")
    console.print(f"parameters: {total:,} ({tern / total:.1%} ternary)" if total else
                  "parameters: 0")
    console.print(f"size: {_human(s.total('packed_bytes'))} packed vs "
                  f"{_human(s.total('fp32_bytes'))} fp32 -> {s.ratio:.1f}x smaller")


def summary_diagnostics(result: CheckResult, name: str | None) -> list[Diagnostic]:
    from ..frontend.diagnostics import did_you_mean
    defs = [n for n, d in result.definitions.items() if d.kind != "fn"]
    if name is not None:
        return [Diagnostic("E0304", f"no model, block or layer named `{name}`", None,
                           help=did_you_mean(name, defs) or f"defined: {', '.join(defs)}")]
    return [Diagnostic("E0304", "the file has several models; name one with --model", None,
                       help=f"defined: {', '.join(defs)}")]
