"""A static model summary from the checker: per layer, output shape, parameter counts by bit
width, multiply-accumulates and sizes, with totals, the fp32-equivalent size, the
compression ratio and the ternary share of the MACs (in the spirit of
`larq.models.summary`). It runs the checker's shape inference on the model's `forward`
with tracing on, so it needs no torch and no weights.

Two packed sizes (docs/formats.md):

* ``memory`` -- the kernels' layout for ``fmt``: each weight row (one output channel)
  packed alone in 32-byte blocks of 128 trits (`t2`) or 160 trits (`t1.6`), plus one fp32
  scale per tensor or per output channel;
* ``checkpoint`` -- the tensor bytes of the frozen checkpoint `tritium train` writes
  (the file less its header): trits dense at 5 a byte whatever the format, a ternary
  layer's scales and bias as float16, a batch norm that directly follows a ternary layer
  (``bn(layer(x))``) folded into it (per-channel scale and bias), everything else as
  stored (float32; a batch norm's step counter 8 bytes).

MACs are per sample (the batch dimension left out): a linear layer's output elements
times its input features, a convolution's output elements times ``in/groups * kh * kw``,
an attention layer's four projections and its two ``T x T`` products; ``None`` when a
non-batch dimension is symbolic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import vocab
from ..frontend import ast as A
from ..frontend.diagnostics import Diagnostic
from ..frontend.names import py_attr
from . import CheckResult
from .checker import Checker, Scope
from .types import TensorT, Value, shape_str

BLOCK_BYTES = vocab.BLOCK_BYTES
BLOCK_TRITS = vocab.BLOCK_TRITS


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
    checkpoint_bytes: int = 0   # tensor bytes in a frozen checkpoint file
    macs: int | None = 0   # multiply-accumulates per sample (None: not static)
    ternary_macs: int = 0

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
    format: str = "t2"

    def total(self, attr: str) -> int:
        return sum(getattr(r, attr) or 0 for r in self.rows)

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates per sample (None when a layer's count is not static)."""
        if any(r.macs is None for r in self.rows):
            return None
        return self.total("macs")

    @property
    def ternary_mac_share(self) -> float | None:
        m = self.macs
        return self.total("ternary_macs") / m if m else None

    @property
    def ratio(self) -> float:
        packed = self.total("packed_bytes")
        return self.total("fp32_bytes") / packed if packed else 1.0

    def to_json(self) -> dict:
        return {
            "model": self.model, "input": self.input, "output": self.output,
            "format": self.format,
            "layers": [{"name": r.name, "kind": r.kind, "output": r.output, "params": r.params,
                        "ternary": r.ternary, "int8": r.int8, "int4": r.int4, "fp32": r.fp32,
                        "buffers": r.buffers, "packed_bytes": r.packed_bytes,
                        "checkpoint_bytes": r.checkpoint_bytes, "macs": r.macs,
                        "ternary_macs": r.ternary_macs,
                        "fp32_bytes": r.fp32_bytes} for r in self.rows],
            "total_params": self.total("params"),
            "packed_bytes": self.total("packed_bytes"),
            "checkpoint_bytes": self.total("checkpoint_bytes"),
            "fp32_bytes": self.total("fp32_bytes"),
            "macs": self.macs,
            "ternary_mac_share": self.ternary_mac_share,
            "compression": round(self.ratio, 3),
        }


class MissingHyperparameters(ValueError):
    """A block or layer summarized without values for hyperparameters that have no
    default."""

    def __init__(self, name: str, missing: list[str], unknown: list[str],
                 wrong: list[str] | None = None) -> None:
        self.name, self.missing, self.unknown = name, missing, unknown
        self.wrong = list(wrong or [])
        parts = list(self.wrong)
        if missing:
            sets = " ".join(f"--set {m}=VALUE" for m in missing)
            parts.append(f"`{name}` needs values for its hyperparameters "
                         f"{', '.join(missing)} (no default): pass {sets}")
        if unknown:
            parts.append(f"`{name}` has no hyperparameter {', '.join(unknown)}")
        super().__init__("; ".join(parts))


def packed_ternary_bytes(rows: int, k: int, fmt: str, per_channel: bool) -> int:
    per_row = -(-k // BLOCK_TRITS[fmt]) * BLOCK_BYTES
    return rows * per_row + 4 * (rows if per_channel else 1)


def _i(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _pair(v) -> tuple[int, int]:
    if isinstance(v, list) and len(v) == 2:
        return _i(v[0]), _i(v[1])
    return _i(v), _i(v)


def _per_sample(ty) -> int | None:
    """Elements of one sample of a tensor type (its first dimension is the batch)."""
    if not isinstance(ty, TensorT) or ty.shape is None:
        return None
    n = 1
    for d in list(ty.shape)[1:]:
        if not isinstance(d, int) or isinstance(d, bool):
            return None
        n *= d
    return n


def layer_row(name: str, kind: str, cfg: dict, out, fmt: str | None = None) -> LayerRow:
    row = LayerRow(name, kind, shape_str(out.shape) if isinstance(out, TensorT) else "?")
    if fmt is None:
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
    if kind not in ("TernaryAttention", "MultiheadAttention", "MultiHeadAttention"):
        e = 0
    weights = rows * k
    ternary = kind.startswith("Ternary") or kind == "BitLinear"
    per = _per_sample(out)
    if weights:
        if per is None:
            row.macs = None
        elif kind in ("TernaryAttention", "MultiheadAttention", "MultiHeadAttention"):
            tokens = per // e if e else 0
            row.macs = per * 4 * e + 2 * tokens * tokens * e
        else:
            row.macs = per * k
        if ternary and row.macs is not None:
            row.ternary_macs = per * 4 * e if kind == "TernaryAttention" else row.macs
    if ternary:
        row.ternary = weights
        row.fp32 = (rows if bias else 0)
        scales = rows if per_channel else 1
        row.packed_bytes = packed_ternary_bytes(rows, k, fmt, per_channel) + 4 * row.fp32
        row.buffers = scales   # the scale is derived, not trained, but stored
        # the checkpoint: dense trits (5 a byte), float16 scales and bias
        row.checkpoint_bytes = -(-weights // 5) + 2 * scales + 2 * row.fp32
    elif kind == "Int8Linear":
        row.int8 = weights
        row.fp32 = rows if bias else 0
        row.packed_bytes = weights + 4 * rows + 4 * row.fp32
        row.buffers = rows
        row.checkpoint_bytes = row.packed_bytes
    elif kind == "Int4Linear":
        row.int4 = weights
        row.fp32 = rows if bias else 0
        row.packed_bytes = -(-weights // 2) + 4 * rows + 4 * row.fp32
        row.buffers = rows
        row.checkpoint_bytes = row.packed_bytes
    elif weights:
        row.fp32 = weights + (rows if bias else 0)
        row.packed_bytes = 4 * row.fp32
    elif kind in ("BatchNorm1d", "BatchNorm2d"):
        c = _i(cfg.get("num_features"))
        row.fp32 = 2 * c if cfg.get("affine", True) else 0
        row.buffers = 2 * c
        row.packed_bytes = 4 * (row.fp32 + row.buffers)
        row.checkpoint_bytes = row.packed_bytes + 8    # and num_batches_tracked (int64)
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
    if not row.checkpoint_bytes:
        row.checkpoint_bytes = row.packed_bytes
    return row


_FOLDS = {"TernaryLinear": "BatchNorm1d", "TernaryConv2d": "BatchNorm2d"}


def _fold_checkpoint_bytes(rows: list[LayerRow], trace: list) -> None:
    """What freezing does to the checkpoint: a batch norm applied directly to a ternary
    linear/convolution's output (the next call in the same block, on that output) is
    folded into it: the layer stores a float16 scale and bias per output channel, the
    batch norm nothing."""
    calls = {name: (kind.spec.name, cfg, x, y) for name, kind, cfg, x, y in trace}
    order = [r.name for r in rows]
    by_name = {r.name: r for r in rows}
    for a, b in zip(order, order[1:]):
        ka, cfg, _, ya = calls[a]
        kb, _, xb, _ = calls[b]
        if _FOLDS.get(ka) != kb or a.rpartition(".")[0] != b.rpartition(".")[0] or xb != ya:
            continue
        layer, bn = by_name[a], by_name[b]
        n = _i(cfg.get("out_features" if ka == "TernaryLinear" else "out_channels"))
        layer.checkpoint_bytes = -(-layer.ternary // 5) + 2 * n + 2 * n
        bn.checkpoint_bytes = 0


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


_WANT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _fits(t: str, v) -> bool:
    """A `--set` value (parse_sets: int, float, bool or str) of the hyperparameter type t."""
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "float":
        return isinstance(v, int | float) and not isinstance(v, bool)
    return isinstance(v, bool) if t == "bool" else isinstance(v, str)


def summarize_definition(result: CheckResult, d, hyper: dict | None = None,
                         fmt: str = "t2") -> Summary:
    """Summarize definition ``d`` with hyperparameter values ``hyper``; raises
    :class:`MissingHyperparameters` when one without a default has no value (or a value
    names no hyperparameter). ``fmt`` is the packing of the ``memory`` size (a layer's own
    ``format:`` key wins, as freezing does)."""
    checker = Checker(result.definitions, [])
    hyper = dict(hyper or {})
    declared = checker.user_params(d.node)
    missing = [p.name for p in declared if p.default is None and p.name not in hyper]
    unknown = sorted(set(hyper) - {p.name for p in declared})
    wrong = [f"--set {p.name}={hyper[p.name]!r}: `{p.name}` of `{d.name}` must be "
             f"{_WANT[t]}" for p in declared if p.name in hyper
             and (t := checker.key_of_user_param(p).type) in _WANT
             and not _fits(t, hyper[p.name])]
    if missing or unknown or wrong:
        raise MissingHyperparameters(d.name, missing, unknown, wrong)
    checker.trace = []
    checker.param_trace = []
    scope, layers = checker.definition_env(d.node, {k: Value.of(v) for k, v in
                                                    (hyper or {}).items()}, abstract=False)
    fn = checker.forward_of(d.node)
    out = checker.check_function(fn, scope, layers,
                                 form_b=isinstance(d.node, A.LayerDef)
                                 and not checker.has_forward(d.node))
    summary = Summary(d.name, format=fmt)
    ins = [p for p in fn.params if p.type is not None]
    if ins:
        summary.input = ", ".join(str(checker.type_from_expr(p.type, Scope())) for p in ins)
    summary.output = str(out.ty)
    seen = set()
    for name, kind, cfg, _in, out_ty in checker.trace:
        if name in seen:
            continue
        seen.add(name)
        explicit = "format" in (getattr(kind, "spans", None) or {})
        own = cfg["format"] if explicit and cfg.get("format") in BLOCK_TRITS else fmt
        summary.rows.append(layer_row(name, kind.spec.name, cfg, out_ty, own))
    _fold_checkpoint_bytes(summary.rows, [t for t in checker.trace])
    for name, ty in checker.param_trace:
        if name in seen:
            continue
        seen.add(name)
        summary.rows.append(param_row(name, ty))
    for r in summary.rows:   # named as the state_dict and the IR name them
        r.name = state_key(r.name)
    return summary


def state_key(name: str) -> str:
    """The state_dict path of the layer or parameter the program calls ``name``
    (`train.state_dict` -> `train_.state_dict_`: a name the generated nn.Module reserves is
    renamed, `frontend.names.py_attr`); a repeated block's index stays."""
    return ".".join(py_attr(p) if p.isidentifier() else p for p in name.split("."))


def param_row(name: str, ty) -> LayerRow:
    """A ``param`` declaration: a tensor the model holds itself (quantized on the fly when
    ternary, so stored as float32 in memory and in checkpoints)."""
    row = LayerRow(name, "param", str(ty))
    n = 1
    shape = ty.shape if isinstance(ty, TensorT) and ty.shape is not None else []
    for d in shape:
        n *= _i(d)
    if isinstance(ty, TensorT) and ty.ternary:
        row.ternary = n
    else:
        row.fp32 = n
    row.packed_bytes = row.checkpoint_bytes = 4 * n
    return row


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
    macs = s.macs
    t.add_column("MACs", justify="right", footer=_count(macs))
    t.add_column(f"memory ({s.format})", justify="right",
                 footer=_human(s.total("packed_bytes")))
    t.add_column("checkpoint", justify="right", footer=_human(s.total("checkpoint_bytes")))
    t.add_column("fp32 equiv.", justify="right", footer=_human(s.total("fp32_bytes")))
    for r in s.rows:
        t.add_row(escape(r.name), r.kind, escape(r.output),
                  *[f"{getattr(r, a):,}" if getattr(r, a) else "" for a, _ in used],
                  _count(r.macs) if r.macs != 0 else "",
                  _human(r.packed_bytes) if r.packed_bytes else "",
                  _human(r.checkpoint_bytes) if r.checkpoint_bytes else "",
                  _human(r.fp32_bytes) if r.fp32_bytes else "")
    console.print(t)
    tern = s.total("ternary")
    total = s.total("params")
    console.print(f"parameters: {total:,} ({tern / total:.1%} ternary)" if total else
                  "parameters: 0")
    share = s.ternary_mac_share
    console.print(f"MACs per sample: {_count(macs)}"
                  + (f" ({share:.1%} ternary)" if share is not None else ""))
    console.print(f"size: {_human(s.total('packed_bytes'))} in memory ({s.format} kernels), "
                  f"{_human(s.total('checkpoint_bytes'))} of checkpoint tensors, vs "
                  f"{_human(s.total('fp32_bytes'))} fp32 -> {s.ratio:.1f}x smaller in memory")


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("G", 10 ** 9), ("M", 10 ** 6), ("k", 10 ** 3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


def summary_diagnostics(result: CheckResult, name: str | None) -> list[Diagnostic]:
    from ..frontend.diagnostics import did_you_mean
    defs = [n for n, d in result.definitions.items() if d.kind != "fn"]
    if name is None and not defs:
        return [Diagnostic("E0304", "the file defines no model, block or layer to summarize",
                           None, help="summary reports the layers of a model: define one, "
                                      "or pass a file that does")]
    if name is not None:
        return [Diagnostic("E0304", f"no model, block or layer named `{name}`", None,
                           help=did_you_mean(name, defs) or f"defined: {', '.join(defs)}")]
    return [Diagnostic("E0304", "the file has several models; name one with --model", None,
                       help=f"defined: {', '.join(defs)}")]
