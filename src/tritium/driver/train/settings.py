"""The settings of a training run: the options a user gives, the `training { }` block they
override, and the resolved settings, learning-rate schedule and optimizer."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ... import qat
from ...argcheck import AUGMENTATIONS, LOSSES, OPTIMIZERS, RANGES, SCHEDULES, quote
from ...qat import QatSchedule

#: the numeric `training { }` keys read straight into TrainSettings (ranges: RANGES)
_BLOCK_NUMBERS = ("learning_rate", "epochs", "batch_size", "weight_decay", "momentum",
                  "warmup_epochs", "seed", "label_smoothing", "validation_split")


class TrainError(Exception):
    """A wrong option, training block or resume state: a message and optional help; `code`
    is the CLI's exit code (2: usage, 1: the program or a state file is wrong)."""

    def __init__(self, message: str, help: str | None = None, code: int = 2) -> None:  # noqa: A002
        self.message = message
        self.help = help
        self.code = code
        super().__init__(message)


@dataclass
class TrainOptions:
    """What the command line gives; `None` means "from the training block or the default"."""

    file: str
    out: str | None = None
    data: str | None = None
    data_dir: str | None = None
    model: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    loss: str | None = None
    lr_schedule: str | None = None
    qat_schedule: str | None = None    # a QAT schedule name (tritium.qat.NAMES)
    augmentation: list[str] | None = None
    seed: int | None = None
    validation_split: float | None = None
    format: str = "t2"
    baseline: bool = True
    resume: str | None = None          # a train_state file or a run directory
    progress: bool | None = None       # None: when stdout is a terminal and not under CI
    latency_runs: int = 200
    quiet: bool = False
    device: str = "auto"               # training device: auto (CUDA when available), cpu, cuda
    threads: int = 1                   # torch intra-op threads; 0: torch's default
    init: str | None = None            # fp32 weights (safetensors) QAT starts from
    fp32_layers: list[str] | str | None = None   # "first", "last", names or globs kept fp32
    # language models (--data text[:PATH])
    tokenizer: str | None = None       # bytes (default), bpe, bpe:VOCAB
    seq_len: int | None = None         # when the forward's input length is symbolic
    max_bytes: int | None = None       # read at most this much text
    steps_per_epoch: int | None = None  # at most this many batches per epoch


@dataclass
class TrainSettings:
    """The resolved training recipe."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    epochs: int = 10
    batch_size: int = 64
    loss: str = "cross_entropy"
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: dict[str, Any] = field(default_factory=lambda: {"type": "constant"})
    warmup_epochs: int = 0
    augmentation: list[str] = field(default_factory=list)
    seed: int = 0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    early_stopping: int | None = None
    validation_split: float = 0.1
    dataset: str = "digits"
    # the QAT schedule (the quantization strength of each epoch) and where it came from:
    # "default", "program" (its `training { }` key) or "option" (--qat-schedule)
    qat: QatSchedule = field(default_factory=QatSchedule)
    qat_source: str = "default"
    qat_written_for: int | None = None   # the program's `epochs` the schedule was scaled from
    # the schedule as written (JSON of the block's value or --qat-schedule): a resumed run
    # whose schedule was written the same continues the checkpoint's (state._load_state)
    qat_spec: str | None = None


@dataclass
class TrainResult:
    out: Path | None
    metrics: dict[str, Any]
    interrupted: bool = False


# ----------------------------------------------------------------------------- settings

def _num(block: dict, key: str, range_key: str | None = None, where: str = "training block",
         code: int = 1) -> Any:
    """`block[key]` checked against its entry in the one table of ranges
    (:data:`tritium.argcheck.RANGES`, which the command-line flags use too)."""
    rng = RANGES[range_key or key]
    v = block[key]
    problem = rng.check(v)
    if problem is not None:
        raise TrainError(f"{where}: `{key}` {problem}", code=code)
    return rng.kind(v)


def _schedule(spec: Any) -> dict[str, Any]:
    if spec is None:
        return {"type": "constant"}
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise TrainError(f"lr_schedule must be a name or a dictionary with `type`, got {spec!r}",
                         help='e.g. { type: "multistep", milestones: [5, 8] } or "cosine"')
    kind = spec["type"].lower()
    if kind not in SCHEDULES:
        raise TrainError(f"unknown lr_schedule type `{spec['type']}`",
                         help=f"one of {', '.join(SCHEDULES)}")
    out = {**spec, "type": kind}
    if kind == "multistep":
        ms = out.get("milestones", [])
        if not isinstance(ms, list) or any(RANGES["milestone"].check(m) for m in ms):
            raise TrainError(f"multistep milestones must be a list of positive epochs "
                             f"({RANGES['milestone'].describe()}), got {ms!r}")
    if kind == "step":
        if "step_size" not in out:
            raise TrainError("the step schedule needs a positive integer `step_size`")
        out["step_size"] = _num(out, "step_size", where="lr_schedule", code=2)
    for key in ("gamma", "eta_min"):
        if key in out:
            out[key] = _num(out, key, where="lr_schedule", code=2)
    return out


def resolve_settings(block: dict[str, Any], opts: TrainOptions) -> TrainSettings:
    """The program's `training { }` block with the command line's overrides applied."""
    s = TrainSettings()
    b = dict(block or {})
    if "lr" in b and "learning_rate" not in b:
        b["learning_rate"] = b["lr"]
    if "optimizer" in b:
        s.optimizer = str(b["optimizer"]).lower()
    for key in _BLOCK_NUMBERS:
        if key in b:
            setattr(s, key, _num(b, key))
    if "loss" in b:
        s.loss = str(b["loss"]).lower()
    if "nesterov" in b:
        s.nesterov = bool(b["nesterov"])
    if "betas" in b:
        betas = b["betas"]
        if not (isinstance(betas, list) and len(betas) == 2
                and not any(RANGES["beta"].check(x) for x in betas)):
            raise TrainError(f"training block: `betas` must be two numbers, each "
                             f"{RANGES['beta'].describe()}, got {betas!r}", code=1)
        s.betas = (float(betas[0]), float(betas[1]))
    s.schedule = _schedule(b.get("lr_schedule", b.get("scheduler")))
    if "augmentation" in b:
        aug = b["augmentation"]
        s.augmentation = [aug] if isinstance(aug, str) else list(aug or [])
    if "grad_clip" in b:
        s.grad_clip = _num(b, "grad_clip") or None
    if "early_stopping" in b:
        es = b["early_stopping"]
        s.early_stopping = None if es is False else (5 if es is True else _num(b, "early_stopping"))
    if "dataset" in b or "data" in b:
        s.dataset = str(b.get("dataset", b.get("data")))
    # command-line overrides
    for name in ("optimizer", "learning_rate", "epochs", "batch_size", "loss", "weight_decay",
                 "momentum", "seed", "validation_split"):
        v = getattr(opts, name)
        if v is None:
            continue
        if name in RANGES:       # the same ranges as the flags (for API callers)
            v = _num({name: v}, name, where="option", code=2)
        setattr(s, name, v.lower() if isinstance(v, str) else v)
    if opts.lr_schedule is not None:
        s.schedule = _schedule(opts.lr_schedule)
    if opts.augmentation is not None:
        s.augmentation = [a for a in opts.augmentation if a and a != "none"]
    if opts.data is not None:
        s.dataset = opts.data
    _qat_schedule(s, b, opts)
    # validation
    if s.optimizer not in OPTIMIZERS:
        raise TrainError(f"unknown optimizer `{s.optimizer}`", help=f"one of {', '.join(OPTIMIZERS)}")
    if s.loss not in LOSSES:
        raise TrainError(f"unknown loss `{s.loss}`", help=f"one of {', '.join(LOSSES)}")
    bad = [a for a in s.augmentation if a not in AUGMENTATIONS]
    if bad:
        raise TrainError(f"unknown augmentation {', '.join(map(quote, bad))}",
                         help=f"known: {', '.join(AUGMENTATIONS)}")
    return s


def _qat_schedule(s: TrainSettings, b: dict[str, Any], opts: TrainOptions) -> None:
    """The QAT schedule of the run (`qat_schedule` or `quantization_schedule` in the block,
    `--qat-schedule` overriding it; when the block gives both, the first written). A schedule written in epochs for the program's
    `epochs` is scaled to a run of another length (`--epochs`), so a short run keeps its
    shape; a name is resolved for the run's epochs."""
    given = [k for k in b if k in qat.SCHEDULE_KEYS]     # the first one written is used
    if opts.qat_schedule is not None:
        spec, key, where, code, written_for = (opts.qat_schedule, "--qat-schedule", "option",
                                               2, None)
    elif given:
        spec, key, where, code = b[given[0]], given[0], "program", 1
        e = b.get("epochs")
        written_for = e if isinstance(e, int) and not isinstance(e, bool) and e > 0 \
            and not isinstance(spec, str) else None    # a name is resolved for the run
    else:
        return
    try:
        sched = qat.parse(spec, written_for or s.epochs, key)
    except qat.ScheduleError as exc:
        p = exc.problem
        part = "".join(f".{x}" if isinstance(x, str) else f"[{x}]" for x in p.path)
        raise TrainError(f"{'training block: ' if code == 1 else ''}`{key}{part}`: "
                         f"{p.message}", help=p.help, code=code) from None
    if written_for is not None and written_for != s.epochs:
        sched = sched.scaled(written_for, s.epochs)
        s.qat_written_for = written_for
    s.qat, s.qat_source = sched, where
    s.qat_spec = json.dumps(spec, sort_keys=True, default=str)


def lr_at(s: TrainSettings, epoch: int) -> float:
    """The learning rate of (0-based) `epoch`: warm-up, then the schedule."""
    base = s.learning_rate
    if epoch < s.warmup_epochs:
        return base * (epoch + 1) / (s.warmup_epochs + 1)
    kind = s.schedule["type"]
    gamma = float(s.schedule.get("gamma", 0.1))
    if kind == "multistep":
        return base * gamma ** sum(1 for m in s.schedule.get("milestones", []) if epoch >= m)
    if kind == "step":
        return base * gamma ** (epoch // int(s.schedule["step_size"]))
    if kind == "cosine":
        span = max(1, s.epochs - s.warmup_epochs)
        t = (epoch - s.warmup_epochs) / span
        floor = float(s.schedule.get("eta_min", 0.0))
        return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return base


def _optimizer(s: TrainSettings, params) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.learning_rate, momentum=s.momentum,
                               nesterov=s.nesterov and s.momentum > 0, weight_decay=s.weight_decay)
    cls = torch.optim.Adam if s.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=s.learning_rate, betas=s.betas, weight_decay=s.weight_decay)
