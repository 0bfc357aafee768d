"""`tritium train`: quantization-aware training of a .tri model, freezing, and the report.

    result = train(TrainOptions("examples/mlp.tri", out="runs/mlp"))
    result.metrics["ternary"]["test_accuracy"]

One run: compile the program, build its entry (seeded), take optimizer, learning rate,
schedule, batch size, epochs, loss and augmentation from its `training { }` block (options
override), train with the straight-through estimator, evaluate a held-out validation split
each epoch and keep the best model as a frozen, packed checkpoint; then train the fp32
twin (same architecture with float layers, same initialization, same data order) unless
`baseline=False`, measure both on the test split, and compare with the program's
`performance { }` expectations.

Files written to `out/` (only by rank 0 under `torchrun`): `model.safetensors` (frozen
ternary, best epoch), `fp32.safetensors` (the baseline), `train_state.safetensors` (latent
weights and optimizer state after the last finished epoch, for `--resume`), `model.py`
(the generated module), `metrics.json`, `curves.png`, `weights.png`. Every file is written
atomically, so an interrupted run leaves the last good checkpoint intact.

Reproducibility: the seed fixes the initialization, the data order and augmentation of
every epoch (each epoch reseeds from `(seed, epoch)`), so a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..argcheck import AUGMENTATIONS, LOSSES, OPTIMIZERS, RANGES, SCHEDULES, ArgError, quote
from ..cachedir import atomic_write_bytes, atomic_write_text
from ..data import Dataset, DatasetError, Normalization, adapt_inputs, load_dataset, split_holdout
from .models import (
    ModelBuildError,
    RunInfo,
    build_model,
    declared_input_shape,
    float_twin,
    keep_fp32,
)

__all__ = ["TrainError", "TrainOptions", "TrainResult", "TrainSettings", "resolve_settings",
           "train", "evaluate_model", "init_from_fp32", "measure_latency",
           "measure_latencies"]

EVAL_BATCH = 512
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


# ----------------------------------------------------------------------------- data

@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    norm: Normalization
    num_classes: int
    input_shape: list[int] | None


def prepare_splits(ds: Dataset, s: TrainSettings, input_shape: list[int] | None) -> Splits:
    if s.validation_split > 0:
        x_tr, y_tr, x_va, y_va = split_holdout(ds.x_train, ds.y_train, s.validation_split, seed=1)
    else:
        x_tr, y_tr, x_va, y_va = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    return Splits(x_tr, y_tr, x_va, y_va, ds.x_test, ds.y_test, Normalization.fit(x_tr),
                  ds.num_classes, input_shape)


def model_inputs(x: np.ndarray | torch.Tensor, norm: Normalization,
                 input_shape: list[int] | None) -> torch.Tensor:
    """Raw samples → normalized, adapted to the model's declared input shape."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    t = (t - norm.mean) / norm.std
    return adapt_inputs(t, tuple(input_shape) if input_shape else None)


def _augment(x: torch.Tensor, names: list[str], gen: torch.Generator) -> torch.Tensor:
    """Augment a raw batch `[N, C, H, W]` (flat samples are left alone by spatial ops)."""
    if not names:
        return x
    img = x.dim() == 4
    for name in names:
        if name in ("random_crop", "random_shift") and img:
            n, _, h, w = x.shape
            pad = max(1, min(h, w) // 8)
            padded = F.pad(x, (pad, pad, pad, pad))
            dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
            dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
            x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
        elif name in ("horizontal_flip", "hflip") and img:
            flip = torch.rand(x.shape[0], generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        elif name == "noise":
            x = x + 0.05 * x.std() * torch.randn(x.shape, generator=gen)
    return x


# ----------------------------------------------------------------------------- evaluation

def _loss(s: TrainSettings, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if s.loss == "mse":
        return F.mse_loss(logits, F.one_hot(y, logits.shape[-1]).float())
    return F.cross_entropy(logits, y, label_smoothing=s.label_smoothing)


@torch.no_grad()
def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                   batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """`(accuracy, mean loss)` of `model` in eval mode over prepared inputs `x`."""
    was = model.training
    model.eval()
    correct, total_loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        correct += int((logits.argmax(-1) == yb).sum())
        if loss is not None:
            total_loss += float(loss(logits, yb)) * len(yb)
    model.train(was)
    n = max(1, len(x))
    return correct / n, total_loss / n


def measure_latencies(models: dict[str, nn.Module], sample: torch.Tensor,
                      runs: int = 200) -> dict[str, float]:
    """Median batch-1 forward time in milliseconds of each model, after a warm-up. The
    models run in turn within every round (interleaved), so a change in machine load
    during the measurement affects them alike."""
    x = sample[:1].contiguous()
    for m in models.values():
        m.eval()
    times: dict[str, list[float]] = {name: [] for name in models}
    clock = time.perf_counter
    with torch.inference_mode():
        for _ in range(max(5, runs // 10)):
            for m in models.values():
                m(x)
        for _ in range(max(1, runs)):
            for name, m in models.items():
                t = clock()
                m(x)
                times[name].append(clock() - t)
    return {name: sorted(v)[len(v) // 2] * 1000.0 for name, v in times.items()}


def measure_latency(model: nn.Module, sample: torch.Tensor, runs: int = 200) -> float:
    """Median batch-1 forward time in milliseconds (after a warm-up)."""
    return measure_latencies({"model": model}, sample, runs)["model"]


# ----------------------------------------------------------------------------- distributed

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto") -> Dist:
        """The process group under torchrun (gloo on CPU, nccl on CUDA) and this rank's
        training device (`auto`: CUDA when available)."""
        if device not in ("auto", "cpu", "cuda"):
            raise TrainError(f"unknown device `{device}`", help="auto, cpu or cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA device is available", help="use --device cpu")
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device("cuda", local % max(1, torch.cuda.device_count())) if cuda \
            else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(dev)
        if world <= 1:
            return cls(device=dev)
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), dev)

    def sync_buffers(self, model: nn.Module) -> None:
        """BatchNorm statistics from rank 0 to every rank (DDP syncs only gradients)."""
        if self.world > 1:
            import torch.distributed as dist
            for b in model.buffers():
                dist.broadcast(b, 0)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


# ----------------------------------------------------------------------------- the loop

@dataclass
class _Run:
    """One model being trained: its optimizer, history and best epoch."""

    label: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: list[dict[str, float]] = field(default_factory=list)
    best_acc: float = -1.0
    best_epoch: int = -1
    stale: int = 0


class _Reporter:
    """Rich progress bars on a terminal. Otherwise (output redirected, CI) plain lines: one
    per epoch with the run's ETA, and within an epoch a progress line with the epoch's and
    the run's ETA whenever ``interval`` seconds passed since the last line, so a long run
    is never silent."""

    interval = 10.0

    def __init__(self, enabled: bool, quiet: bool) -> None:
        from rich.console import Console
        self.console = Console(quiet=quiet, highlight=False)
        self.enabled = enabled and not quiet
        self.quiet = quiet
        self.progress = None
        self._last_line = time.monotonic()
        self._plain: dict[str, Any] = {}        # the epoch in progress, off a terminal
        self._epoch_seconds: dict[str, list[float]] = {}
        self._epochs_left: dict[str, int] = {}
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                     TimeElapsedColumn(), console=self.console)

    def __enter__(self) -> _Reporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def task(self, label: str, total: int) -> Any:
        if self.progress is None:
            # label: "<run> <epoch>/<epochs>"
            run, _, frac = label.rpartition(" ")
            done, _, epochs = frac.partition("/")
            if done.isdigit() and epochs.isdigit():
                self._epochs_left[run] = int(epochs) - int(done)
            self._plain = {"label": label, "run": run, "total": total, "step": 0,
                           "start": time.monotonic()}
            return None
        return self.progress.add_task(label, total=total, stats="")

    def advance(self, task: Any, stats: str) -> None:
        if self.progress is not None and task is not None:
            self.progress.update(task, advance=1, stats=stats)
            return
        p = self._plain
        if not p:
            return
        p["step"] += 1
        now = time.monotonic()
        if now - self._last_line < self.interval or p["step"] >= p["total"]:
            return
        elapsed = now - p["start"]
        epoch_eta = elapsed / p["step"] * (p["total"] - p["step"])
        line = (f"{p['label']}: batch {p['step']}/{p['total']}, {stats}, "
                f"{p['step'] / max(elapsed, 1e-9):.1f} batch/s, epoch ETA {_duration(epoch_eta)}")
        run_eta = self._run_eta(p["run"], epoch_eta, elapsed + epoch_eta)
        if run_eta is not None:
            line += f", {p['run']} ETA {_duration(run_eta)}"
        self._print(line)

    def _run_eta(self, run: str, this_epoch_left: float, epoch_seconds: float
                 ) -> float | None:
        """Seconds left in the run's training: this epoch's rest, then the epochs after it
        at the mean epoch time so far (or this epoch's estimate)."""
        left = self._epochs_left.get(run)      # epochs after this one
        if left is None:
            return None
        done = self._epoch_seconds.get(run) or [epoch_seconds]
        return this_epoch_left + left * (sum(done) / len(done))

    def _print(self, line: str) -> None:
        self._last_line = time.monotonic()
        if self.progress is not None:
            self.progress.console.print(line, soft_wrap=True)
        else:
            self.console.print(line, soft_wrap=True)

    def epoch_done(self, label: str, row: dict[str, float], best: bool) -> None:
        line = (f"{label} epoch {int(row['epoch'])}: loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.4f} | val loss {row['val_loss']:.4f} "
                f"acc {row['val_acc']:.4f} | lr {row['lr']:.3g}" + (" *" if best else ""))
        p = self._plain
        if self.progress is None and p and p.get("run") == label:
            self._epoch_seconds.setdefault(label, []).append(time.monotonic() - p["start"])
            left = self._epochs_left.get(label, 0)
            if left > 0:
                secs = self._epoch_seconds[label]
                line += f" | ETA {_duration(left * sum(secs) / len(secs))}"
            self._plain = {}
        self._print(line)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def _duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class _Diverged(Exception):
    """The loss (or a weight) became NaN or infinite: training stops, the files of the last
    finished epoch stay as they are."""

    def __init__(self, label: str, epoch: int, value: float, step: int | None = None) -> None:
        self.label, self.epoch, self.value, self.step = label, epoch, value, step
        super().__init__(f"{label} diverged in epoch {epoch}")


def _finite_weights(model: nn.Module) -> bool:
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters()
                   if p.is_floating_point())


def _epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + rank)


def _train_epoch(run: _Run, wrapped: nn.Module, s: TrainSettings, sp: Splits, epoch: int,
                 dist_: Dist, rep: _Reporter) -> tuple[float, float]:
    lr = lr_at(s, epoch)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    torch.manual_seed(s.seed * 1_000_003 + epoch)      # dropout, stochastic quantizers
    order = torch.randperm(len(sp.x_train), generator=_epoch_generator(s.seed, epoch))
    per_rank = len(order) // dist_.world if dist_.world > 1 else len(order)
    mine = order[dist_.rank * per_rank:(dist_.rank + 1) * per_rank]
    bs = max(1, s.batch_size // dist_.world)
    steps = max(1, math.ceil(len(mine) / bs))
    if dist_.world > 1:
        steps = per_rank // bs or 1
    gen = _epoch_generator(s.seed, epoch, dist_.rank + 1)
    task = rep.task(f"{run.label} {epoch + 1}/{s.epochs}", steps)
    wrapped.train()
    total_loss, correct, seen = 0.0, 0, 0
    x_all = torch.as_tensor(sp.x_train)
    y_all = torch.as_tensor(sp.y_train)
    for step in range(steps):
        idx = mine[step * bs:(step + 1) * bs]
        if len(idx) == 0:
            break
        xb = _augment(x_all[idx], s.augmentation, gen)
        xb = model_inputs(xb, sp.norm, sp.input_shape).to(dist_.device)
        yb = y_all[idx].to(dist_.device)
        logits = wrapped(xb)
        loss = _loss(s, logits, yb)
        value = loss.item()
        if dist_.world == 1 and not math.isfinite(value):
            # (under DDP the epoch-end check of the synchronized weights stops every rank
            # together; one rank stopping here would leave the others in a collective)
            raise _Diverged(run.label, epoch + 1, value, step + 1)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip:
            nn.utils.clip_grad_norm_(run.model.parameters(), s.grad_clip)
        run.optimizer.step()
        total_loss += value * len(yb)
        correct += int((logits.argmax(-1) == yb).sum())
        seen += len(yb)
        rep.advance(task, f"loss {total_loss / seen:.4f} acc {correct / seen:.4f}")
    dist_.sync_buffers(run.model)
    if rep.progress is not None and task is not None:
        rep.progress.remove_task(task)
    return total_loss / max(1, seen), correct / max(1, seen)


# ----------------------------------------------------------------------------- state files


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold Ctrl-C (SIGINT) while the block writes the epoch's files, then raise it: an
    interrupt never lands between creating a temporary file and renaming it into place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT,
                      previous if previous is not None else signal.default_int_handler)
        if pending:
            raise KeyboardInterrupt

def _state_blob(run: _Run, epoch: int, settings: TrainSettings, info: RunInfo) -> bytes:
    import safetensors.torch
    tensors: dict[str, torch.Tensor] = {}
    for k, v in run.model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    opt = run.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in opt["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = val.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = val
    meta = {
        "tritium.train_state": "1",
        "epoch": str(epoch),
        "source_hash": info.source_hash,
        "entry": info.entry,
        "fp32_layers": json.dumps(info.fp32_layers),
        "history": json.dumps(run.history),
        "best_acc": repr(run.best_acc),
        "best_epoch": str(run.best_epoch),
        "stale": str(run.stale),
        "param_groups": json.dumps(opt["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        "settings": json.dumps(asdict(settings)),
    }
    return safetensors.torch.save(tensors, metadata=meta)


def _load_state(path: Path, run: _Run, info: RunInfo) -> int:
    """Restore `run` from a train_state file; returns the number of finished epochs."""
    import stat

    import safetensors
    import safetensors.torch
    try:   # a FIFO or a device is not a training state (and would block or never end)
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        mode = stat.S_IFREG   # missing or unreadable: reported below as safetensors sees it
    if not stat.S_ISREG(mode):
        raise TrainError(f"cannot resume: {path} is not a regular file", code=1)
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = safetensors.torch.load_file(str(path))
    except FileNotFoundError:
        raise TrainError(f"cannot resume: no training state at {path}",
                         help="--resume takes the run directory of an earlier `tritium train` "
                              "(holding train_state.safetensors) or that file") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means a damaged file
        raise TrainError(f"cannot resume: {path} is not a readable training state ({exc})",
                         code=1) from None
    if meta.get("tritium.train_state") != "1":
        raise TrainError(f"cannot resume: {path} is not a Tritium training state",
                         help="pass the run directory or its train_state.safetensors")
    if meta.get("source_hash") != info.source_hash or meta.get("entry") != info.entry:
        raise TrainError(f"cannot resume: {path} was trained from a different program or model",
                         help="resume with the same .tri file (unchanged) and --model", code=1)
    if meta.get("fp32_layers", "[]") != json.dumps(info.fp32_layers):
        raise TrainError(f"cannot resume: {path} kept other layers in fp32 "
                         f"({meta.get('fp32_layers', '[]')[:200]}) than this run "
                         f"({json.dumps(info.fp32_layers)[:200]})",
                         help="resume with the same --fp32-layers", code=1)
    try:
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        run.model.load_state_dict(model_state, strict=True)
        state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, key = k.split(".", 2)
                state.setdefault(int(pid), {})[key] = v
        for pid, sc in json.loads(meta["optim_scalars"]).items():
            state.setdefault(int(pid), {}).update(sc)
        run.optimizer.load_state_dict({"state": state,
                                       "param_groups": json.loads(meta["param_groups"])})
        run.history = json.loads(meta["history"])
        run.best_acc = float(meta["best_acc"])
        run.best_epoch = int(meta["best_epoch"])
        run.stale = int(meta.get("stale", "0"))
        return int(meta["epoch"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TrainError(f"cannot resume from {path}: {exc}", code=1) from None


# ----------------------------------------------------------------------------- --init

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def _listing(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def init_from_fp32(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load trained fp32 weights into the (unfrozen) model in place, so QAT starts from
    them: the latent weight of every ternary layer becomes the fp32 weight of the same name
    (the fp32 twin `tritium train` writes as `fp32.safetensors` shares every name with the
    ternary model). `path` is a safetensors file, Tritium's or a plain state_dict; names and
    shapes must match exactly (raises TrainError listing every mismatch)."""
    from ..runtime import CheckpointError, TernaryConv1d, read_state_dict

    shown = os.fspath(path)
    help_ = ("--init takes fp32 weights in safetensors (never pickle): the fp32.safetensors "
             "`tritium train` writes, or safetensors.torch.save_file(model.state_dict(), "
             "'fp32.safetensors') from a torch model of the same architecture")
    try:
        state, meta = read_state_dict(path)
    except CheckpointError as exc:
        suffix = Path(shown).suffix.lower()
        more = " (a pickle file?)" if suffix in _PICKLE_SUFFIXES else ""
        raise TrainError(f"--init: {exc}{more}", help=help_, code=1) from None
    if meta is not None and meta.frozen:
        raise TrainError(f"--init {shown}: a frozen ternary checkpoint (packed weights), not "
                         "fp32 weights", help=help_, code=1)
    expected = model.state_dict()
    modules = dict(model.named_modules())
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong: list[str] = []
    ready: dict[str, torch.Tensor] = {}
    for k, want in expected.items():
        if k not in state:
            continue
        got = state[k]
        owner = modules.get(k.rpartition(".")[0])
        if isinstance(owner, TernaryConv1d) and k.endswith("weight") and got.dim() == 3:
            got = got.unsqueeze(2)
        if tuple(got.shape) != tuple(want.shape) or                 got.dtype.is_floating_point != want.dtype.is_floating_point:
            wrong.append(f"{k} is {list(state[k].shape)} {str(state[k].dtype)[6:]} in the "
                         f"file, {list(want.shape)} {str(want.dtype)[6:]} in the model")
            continue
        ready[k] = got.to(want.dtype)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing from the file: {_listing(missing)}")
        if unexpected:
            parts.append(f"not in the model: {_listing(unexpected)}")
        if wrong:
            parts.append(f"different: {_listing(wrong, 3)}")
        raise TrainError(f"--init {shown} does not fit the model: " + "; ".join(parts),
                         help="start from the fp32 weights of the same architecture (names "
                              "and shapes must match exactly)", code=1)
    model.load_state_dict(ready, strict=True)


# ----------------------------------------------------------------------------- the command

def _progress_default() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI") and not os.environ.get("NO_PROGRESS")


def _freeze_copy(model: nn.Module, fmt: str) -> nn.Module:
    import copy

    from ..runtime import freeze_model
    return freeze_model(copy.deepcopy(model).cpu().eval(), fmt)


def _fit(run: _Run, s: TrainSettings, sp: Splits, dist_: Dist, rep: _Reporter, start: int,
         on_epoch: Callable[[_Run, int, bool], None], x_val: torch.Tensor,
         y_val: torch.Tensor) -> None:
    wrapped: nn.Module = run.model
    if dist_.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        on_cuda = dist_.device.type == "cuda"
        wrapped = DistributedDataParallel(run.model,
                                          device_ids=[dist_.device] if on_cuda else None)
    for epoch in range(start, s.epochs):
        t = time.perf_counter()
        loss, acc = _train_epoch(run, wrapped, s, sp, epoch, dist_, rep)
        if not _finite_weights(run.model):
            raise _Diverged(run.label, epoch + 1, loss)
        val_acc, val_loss = evaluate_model(run.model, x_val, y_val,
                                           lambda lg, yb: _loss(s, lg, yb))
        if not math.isfinite(val_loss):
            raise _Diverged(run.label, epoch + 1, val_loss)
        row = {"epoch": epoch + 1, "train_loss": loss, "train_acc": acc, "val_loss": val_loss,
               "val_acc": val_acc, "lr": lr_at(s, epoch), "seconds": time.perf_counter() - t}
        run.history.append(row)
        best = val_acc > run.best_acc
        if best:
            run.best_acc, run.best_epoch, run.stale = val_acc, epoch + 1, 0
        else:
            run.stale += 1
        rep.epoch_done(run.label, row, best)
        on_epoch(run, epoch + 1, best)
        if s.early_stopping and run.stale >= s.early_stopping:
            rep.console.print(f"{run.label}: no improvement for {run.stale} epochs, stopping")
            break


def _digest(model: nn.Module) -> str:
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(opts: TrainOptions) -> TrainResult:
    """Run `tritium train`; raises TrainError, DatasetError, ModelBuildError, CompileError."""
    dist_ = Dist.setup(opts.device)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    if opts.threads > 0:
        # small models train far faster on one thread (no intra-op sync); latency is
        # measured with the same setting for both models
        torch.set_num_threads(opts.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(opts, dist_)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        dist_.close()


def _train(opts: TrainOptions, dist_: Dist) -> TrainResult:
    from ..runtime import save_checkpoint, tritium_layers

    if opts.format not in ("t2", "t1.6"):
        raise TrainError(f"unknown packing format `{opts.format}`", help="t2 or t1.6")
    path = Path(opts.file)
    out = Path(opts.out) if opts.out else Path("runs") / path.stem
    try:                 # before the model is built or any data is loaded
        from ..argcheck import check_output_dir
        check_output_dir(out, "--out")
    except ArgError as exc:
        raise TrainError(exc.message) from None
    main = dist_.main
    # the model, seeded
    probe = build_model(path, opts.model, opts.hyperparameters)
    settings = resolve_settings(getattr(probe.model, "tritium_training", {}), opts)
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed % 2**32)
    built = build_model(path, opts.model, opts.hyperparameters)
    model = built.model
    fp32_names: list[str] = []
    if opts.fp32_layers:
        from ..runtime.ternarize import fp32_layer_names
        words = opts.fp32_layers.split(",") if isinstance(opts.fp32_layers, str) \
            else opts.fp32_layers
        try:
            fp32_names = fp32_layer_names(model, [w.strip() for w in words])
        except ValueError as exc:
            raise TrainError(f"--fp32-layers: {exc}") from None
        keep_fp32(model, fp32_names)
    if not tritium_layers(model):
        raise ModelBuildError(f"`{built.entry}` has no ternary layers to train and freeze",
                              help="use TernaryLinear/TernaryConv2d/BitLinear layers"
                                   + (" (--fp32-layers keeps every one in fp32)"
                                      if fp32_names else ""))
    if opts.init is not None:
        init_from_fp32(model, opts.init)
    shape = declared_input_shape(str(path), built.entry, opts.hyperparameters)
    ds = load_dataset(settings.dataset, opts.data_dir)
    sp = prepare_splits(ds, settings, shape)
    x_val = model_inputs(sp.x_val, sp.norm, shape)
    y_val = torch.as_tensor(sp.y_val)
    x_test = model_inputs(sp.x_test, sp.norm, shape)
    y_test = torch.as_tensor(sp.y_test)
    try:
        model.eval()
        with torch.no_grad():
            logits = model(x_val[:2])
    except Exception as exc:  # noqa: BLE001 - the user's model on the user's data
        raise DatasetError(f"`{built.entry}` cannot take the {ds.name} samples "
                           f"(shaped {list(x_val.shape[1:])}): {exc}",
                           help="declare the forward's input shape, e.g. "
                                "forward(x: Tensor[batch, 64])") from None
    if logits.dim() != 2 or logits.shape[-1] < ds.num_classes:
        raise DatasetError(f"`{built.entry}` outputs {list(logits.shape[1:])} per sample but "
                           f"{ds.name} has {ds.num_classes} classes",
                           help="the model must output one logit per class")
    model.to(dist_.device).train()
    x_val_dev, y_val_dev = x_val.to(dist_.device), y_val.to(dist_.device)
    info = RunInfo(source=built.source, file=str(path), entry=built.entry,
                   hyperparameters=dict(opts.hyperparameters), dataset=settings.dataset,
                   input_shape=shape, normalization=(sp.norm.mean, sp.norm.std),
                   num_classes=ds.num_classes, variant="ternary", format=opts.format,
                   fp32_layers=fp32_names)
    baseline_init = float_twin(model) if opts.baseline else None
    run = _Run("ternary", model, _optimizer(settings, model.parameters()))
    start = 0
    if opts.resume is not None:
        rp = Path(opts.resume)
        state_path = rp / "train_state.safetensors" if os.path.isdir(rp) else rp
        from ..argcheck import input_problem, show_path
        problem = input_problem(state_path)
        if problem is not None:      # never open a FIFO or a device: it could block forever
            raise TrainError(f"cannot resume: {show_path(state_path)} {problem}",
                             help="--resume takes the run directory of an earlier `tritium "
                                  "train` (holding train_state.safetensors) or that file")
        start = _load_state(state_path, run, info)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "model.py", built.compiled.python)
        if not opts.baseline and (out / "fp32.safetensors").exists():
            (out / "fp32.safetensors").unlink()     # a stale baseline of an earlier run
    ckpt = out / "model.safetensors"
    progress = _progress_default() if opts.progress is None else opts.progress

    def on_epoch(r: _Run, epoch: int, best: bool) -> None:
        if not main:
            return
        with _interrupts_deferred():
            _write_epoch(r, epoch, best)

    def _write_epoch(r: _Run, epoch: int, best: bool) -> None:
        if best or not ckpt.exists():
            frozen = _freeze_copy(r.model, opts.format)
            save_checkpoint(ckpt, frozen, source_hash=info.source_hash,
                            extra=info.to_extra(**{"tritium.epoch": str(epoch),
                                                   "tritium.val_accuracy": repr(r.best_acc)}))
        atomic_write_bytes(out / "train_state.safetensors",
                           _state_blob(r, epoch, settings, info))

    t0 = time.perf_counter()
    with _Reporter(progress and main, opts.quiet or not main) as rep:
        if main and start:
            rep.console.print(f"resuming after epoch {start} of {settings.epochs}")
        for w in run_warnings({"dataset": ds.name,
                               "settings": {"augmentation": settings.augmentation}},
                              [int(d) for d in sp.x_train.shape[1:]]):
            rep.warn(w)          # before training too: the report repeats it
        try:
            _fit(run, settings, sp, dist_, rep, start, on_epoch, x_val_dev, y_val_dev)
        except _Diverged as d:
            raise _diverged_error(d, settings, ckpt if main and ckpt.exists() else None,
                                  run.best_epoch) from None
        except KeyboardInterrupt:
            if main:
                rep.console.print(f"interrupted: the last good checkpoint is {ckpt} "
                                  f"(resume with --resume {out})")
            return TrainResult(out if main else None, {}, interrupted=True)
        ternary_seconds = time.perf_counter() - t0
        base_run = None
        base_seconds, replaced = 0.0, 0
        if baseline_init is not None:
            twin, replaced = baseline_init
            torch.manual_seed(settings.seed)
            base_run = _Run("fp32", twin, _optimizer(settings, twin.parameters()))
            base_best: dict[str, Any] = {}

            def on_base(r: _Run, epoch: int, best: bool) -> None:
                if best:
                    base_best["state"] = {k: v.clone() for k, v in r.model.state_dict().items()}

            t1 = time.perf_counter()
            try:
                _fit(base_run, settings, sp, dist_, rep, 0, on_base, x_val_dev, y_val_dev)
            except _Diverged as d:
                raise _diverged_error(d, settings, ckpt if main else None,
                                      run.best_epoch) from None
            except KeyboardInterrupt:
                if main:
                    rep.console.print(f"interrupted during the fp32 baseline: {ckpt} is complete")
                return TrainResult(out if main else None, {}, interrupted=True)
            base_seconds = time.perf_counter() - t1
            twin.load_state_dict(base_best["state"])
    if os.environ.get("TRITIUM_TEST_DIGEST_DIR"):
        digest_dir = Path(os.environ["TRITIUM_TEST_DIGEST_DIR"])
        digest_dir.mkdir(parents=True, exist_ok=True)
        (digest_dir / f"rank{dist_.rank}.txt").write_text(_digest(run.model))
    dist_.barrier()
    if not main:
        return TrainResult(None, {})

    # the report: everything measured from the files just written
    from .evaluate import load_for_eval
    frozen, _ = load_for_eval(ckpt)
    t_acc, _ = evaluate_model(frozen, x_test, y_test)
    v_acc, _ = evaluate_model(frozen, x_val, y_val)
    ternary = {"test_accuracy": t_acc, "val_accuracy": v_acc,
               "checkpoint_bytes": ckpt.stat().st_size,
               "tensor_bytes": _stored_tensor_bytes(ckpt),
               "latency_ms": 0.0,
               "best_epoch": run.best_epoch, "train_seconds": ternary_seconds,
               "params": sum(p.numel() for p in run.model.parameters()),
               "format": opts.format, "native_kernels": _native(),
               "threads": torch.get_num_threads()}
    metrics: dict[str, Any] = {
        "file": str(path), "model": built.entry, "dataset": ds.name,
        "splits": {"train": len(sp.y_train), "val": len(sp.y_val), "test": len(sp.y_test)},
        "input_shape": shape, "settings": asdict(settings), "world_size": dist_.world,
        "init": opts.init, "fp32_layers": fp32_names,
        "ternary": ternary,
        "history": {"ternary": run.history},
        "weight_distribution": _weight_distribution(frozen),
    }
    if base_run is not None:
        twin = base_run.model.cpu().eval()
        fp_path = out / "fp32.safetensors"
        save_checkpoint(fp_path, twin, source_hash=info.source_hash,
                        extra=RunInfo(**{**asdict(info), "variant": "fp32"}).to_extra(
                            **{"tritium.epoch": str(base_run.best_epoch)}))
        b_acc, _ = evaluate_model(twin, x_test, y_test)
        bv_acc, _ = evaluate_model(twin, x_val, y_val)
        metrics["fp32"] = {"test_accuracy": b_acc, "val_accuracy": bv_acc,
                           "checkpoint_bytes": fp_path.stat().st_size,
                           "tensor_bytes": _stored_tensor_bytes(fp_path),
                           "latency_ms": 0.0,
                           "best_epoch": base_run.best_epoch, "train_seconds": base_seconds,
                           "layers_replaced": replaced}
        metrics["history"]["fp32"] = base_run.history
    # batch-1 latency of both models from their checkpoints, measured interleaved; the fp32
    # model as it would be deployed (batch norms folded into the layers before them), and
    # torch's int8 dynamic quantization of it
    lat_models = {"ternary": frozen}
    if base_run is not None:
        lat_models["fp32"], _ = load_for_eval(out / "fp32.safetensors")
        lat_models["fp32"].eval()
        from tritium.runtime.baseline import fold_fp32_batchnorms
        metrics["fp32"]["batchnorms_folded"] = len(fold_fp32_batchnorms(lat_models["fp32"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantize_dynamic's deprecation notice
            lat_models["int8dyn"] = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(lat_models["fp32"]), {nn.Linear}, dtype=torch.qint8)
    for name, ms in measure_latencies(lat_models, x_test, opts.latency_runs).items():
        if name == "int8dyn":
            metrics["fp32"]["int8dyn_latency_ms"] = ms
        else:
            metrics[name]["latency_ms"] = ms
    # whether the autotuner's archive chose any kernel config of those runs
    from tritium.runtime.kernels import tuned_configs_used
    ternary["tuned_configs"] = tuned_configs_used()
    if base_run is not None:
        metrics["ratio"] = {
            "checkpoint": metrics["fp32"]["checkpoint_bytes"] / ternary["checkpoint_bytes"],
            "tensors": metrics["fp32"]["tensor_bytes"] / max(1, ternary["tensor_bytes"]),
            "latency_speedup": metrics["fp32"]["latency_ms"] / ternary["latency_ms"],
        }
    metrics["performance"] = _expectations(getattr(model, "tritium_performance", {}), metrics)
    metrics["warnings"] = run_warnings({**metrics, "num_classes": ds.num_classes},
                                       [int(d) for d in sp.x_train.shape[1:]])
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    _plots(out, metrics)
    _print_report(rep.console, metrics, out)
    return TrainResult(out, metrics)


def _diverged_error(d: _Diverged, s: TrainSettings, ckpt: Path | None,
                    best_epoch: int) -> TrainError:
    where = f"epoch {d.epoch}" + (f", step {d.step}" if d.step else "")
    kept = (f"; the last good checkpoint is kept: {ckpt} (epoch {best_epoch})" if ckpt
            else "; no epoch finished, so no checkpoint was written")
    return TrainError(f"training diverged: the {d.label} model's loss became {d.value} in "
                      f"{where} (learning rate {lr_at(s, d.epoch - 1):.3g}){kept}",
                      help="lower the learning rate (--lr) or set grad_clip in the training "
                           "block", code=1)


def _native() -> bool:
    from ..runtime import native_available
    return bool(native_available())


def _stored_tensor_bytes(path: Path) -> int:
    """The bytes of tensor data a checkpoint file holds (the file less its header): what
    `tritium summary` predicts as the packed size."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    return path.stat().st_size - 8 - n


def _weight_distribution(frozen: nn.Module) -> dict[str, dict[str, float]]:
    from ..runtime import TernaryLayer, tritium_layers
    out = {}
    for name, layer in tritium_layers(frozen):
        if isinstance(layer, TernaryLayer):
            t = layer.ternary_weight().trits
            n = max(1, t.numel())
            out[name] = {"-1": float((t == -1).sum()) / n, "0": float((t == 0).sum()) / n,
                         "+1": float((t == 1).sum()) / n}
    return out


def _expectations(perf: dict[str, Any], m: dict[str, Any]) -> list[dict[str, Any]]:
    t = m["ternary"]
    rows = []
    for key, want in (perf or {}).items():
        measured: float | None = None
        passed: bool | None = None
        if key == "min_accuracy":
            measured = t["test_accuracy"]
            passed = measured >= float(want)
        elif key == "max_size_kb":
            measured = t["checkpoint_bytes"] / 1024
            passed = measured <= float(want)
        elif key == "max_latency_ms":
            measured = t["latency_ms"]
            passed = measured <= float(want)
        elif key == "max_params":
            measured = t["params"]
            passed = measured <= float(want)
        elif key == "min_speedup" and "ratio" in m:
            measured = m["ratio"]["latency_speedup"]
            passed = measured >= float(want)
        rows.append({"key": key, "expected": want, "measured": measured, "passed": passed})
    return rows


def _plots(out: Path, m: dict[str, Any]) -> None:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig: Any, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(out / name, buf.getvalue())

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, hist in m["history"].items():
        ep = [r["epoch"] for r in hist]
        ax1.plot(ep, [r["train_loss"] for r in hist], label=f"{label} train")
        ax1.plot(ep, [r["val_loss"] for r in hist], "--", label=f"{label} val")
        ax2.plot(ep, [r["train_acc"] for r in hist], label=f"{label} train")
        ax2.plot(ep, [r["val_acc"] for r in hist], "--", label=f"{label} val")
    from matplotlib.ticker import MaxNLocator
    losses = [r[k] for hist in m["history"].values() for r in hist
              for k in ("train_loss", "val_loss")]
    if losses and all(math.isfinite(v) and v > 0 for v in losses):
        ax1.set_yscale("log")      # loss spans decades; a linear axis flattens the tail
    ax1.set(title="loss" + (" (log scale)" if ax1.get_yscale() == "log" else ""),
            xlabel="epoch")
    ax2.set(title="accuracy", xlabel="epoch")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))    # whole epochs
        ax.legend()
    fig.tight_layout()
    save(fig, "curves.png")

    dist = m["weight_distribution"]
    names = list(dist)
    # one horizontal bar per layer: names stay readable however many layers there are
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.28 * len(names) + 1.5)))
    left = np.zeros(len(names))
    pos = np.arange(len(names))
    for key, color in (("-1", "#d62728"), ("0", "#7f7f7f"), ("+1", "#2ca02c")):
        vals = np.array([dist[n][key] for n in names])
        ax.barh(pos, vals, left=left, label=key, color=color)
        left += vals
    ax.set_yticks(pos, names, fontsize=8 if len(names) > 12 else 10)
    ax.invert_yaxis()              # the first layer on top
    ax.set(title="ternary weights per layer", xlabel="share", xlim=(0, 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save(fig, "weights.png")


# Augmentations that change what a sample of these datasets is (a mirrored digit is
# another glyph, or none)
_MIRROR_SENSITIVE = {"digits", "mnist"}
_SPATIAL = {"random_crop", "random_shift", "horizontal_flip", "hflip"}


def run_warnings(m: dict[str, Any], raw_shape: list[int] | None = None) -> list[str]:
    """What the report should warn about: a run whose validation loss exploded or whose
    test accuracy is at chance (diverged, even if no loss became NaN), and augmentations
    that do not fit the data. ``raw_shape`` is one training sample's shape before the
    model's input adaptation (augmentation works on it)."""
    out: list[str] = []
    classes = int(m.get("num_classes") or 0) or 10
    chance = 1.0 / classes
    for label, hist in m.get("history", {}).items():
        vals = [r["val_loss"] for r in hist if math.isfinite(r.get("val_loss", math.nan))]
        if len(vals) >= 2:
            best, last, worst = min(vals), vals[-1], max(vals)
            if worst > max(10 * best, best + 5) and worst > 10 * vals[0]:
                out.append(f"{label}: the validation loss exploded to {worst:.4g} (epoch "
                           f"{vals.index(worst) + 1}; best {best:.4g}, last {last:.4g}): "
                           "the run diverged; lower the learning rate or set grad_clip")
        variant = m.get(label) or {}
        acc = variant.get("test_accuracy")
        if acc is not None and classes > 1 and acc <= chance + 0.5 * chance:
            out.append(f"{label}: test accuracy {acc:.4f} is at chance for {classes} classes "
                       f"({chance:.4f}): the model learned nothing (diverged, or a learning "
                       "rate too high or too low)")
    aug = [a for a in (m.get("settings") or {}).get("augmentation") or []]
    dataset = str(m.get("dataset", ""))
    for a in aug:
        if a in ("horizontal_flip", "hflip") and dataset in _MIRROR_SENSITIVE:
            out.append(f"augmentation {a} mirrors {dataset} images, and a mirrored digit is "
                       "not the same digit: it teaches the model wrong labels; remove it")
        elif a in _SPATIAL and raw_shape is not None and len(raw_shape) != 3:
            out.append(f"augmentation {a} needs images [C, H, W]; the {dataset} samples are "
                       f"shaped {raw_shape}, so it does nothing")
    return out


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def _print_report(console: Any, m: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    t, b = m["ternary"], m.get("fp32")
    table = Table(title=f"{m['model']} on {m['dataset']} (test split, {m['splits']['test']} samples)")
    table.add_column("")
    table.add_column(f"ternary ({t['format']}, frozen)", justify="right")
    if b:
        table.add_column("fp32 baseline", justify="right")
        table.add_column("ratio", justify="right")
    rows = [
        ("test accuracy", f"{t['test_accuracy']:.4f}", b and f"{b['test_accuracy']:.4f}",
         b and f"{t['test_accuracy'] - b['test_accuracy']:+.4f}"),
        ("checkpoint size", _kb(t["checkpoint_bytes"]), b and _kb(b["checkpoint_bytes"]),
         b and f"{m['ratio']['checkpoint']:.1f}x smaller"),
        ("checkpoint tensors", _kb(t["tensor_bytes"]), b and _kb(b["tensor_bytes"]),
         b and f"{m['ratio']['tensors']:.1f}x smaller"),
        (f"batch-1 latency ({t['threads']} thread{'s' if t['threads'] > 1 else ''})",
         f"{t['latency_ms']:.3f} ms",
         b and f"{b['latency_ms']:.3f} ms" + (" (BN folded)" if b.get("batchnorms_folded")
                                              else ""),
         b and f"{m['ratio']['latency_speedup']:.2f}x speed"),
        ("best epoch", str(t["best_epoch"]), b and str(b["best_epoch"]), b and ""),
        ("training time", f"{t['train_seconds']:.1f} s", b and f"{b['train_seconds']:.1f} s",
         b and ""),
    ]
    for r in rows:
        table.add_row(*[c for c in r if c is not None])
    console.print(table)
    for w in m.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    if not t["native_kernels"]:
        console.print("[yellow]note:[/] native kernels unavailable; latency is the pure-torch path")
    if b and b.get("int8dyn_latency_ms"):
        console.print(f"torch int8 dynamic quantization of the fp32 model: "
                      f"{b['int8dyn_latency_ms']:.3f} ms batch-1 latency "
                      f"(ternary {b['int8dyn_latency_ms'] / t['latency_ms']:.2f}x its speed)")
    tuned = t.get("tuned_configs") or []
    if tuned:
        shapes = ", ".join(f"{c['m_bucket']}x{c['n']}x{c['k']}" for c in tuned)
        console.print(f"kernel configs: tuned (from the tuning archive) for {shapes}; the "
                      "other layers ran the defaults (TRITIUM_TUNED_CONFIGS=0 turns tuning off)")
    else:
        console.print("kernel configs: the defaults (no tuned config applied)")
    if m["performance"]:
        perf = Table(title="performance { } expectations")
        for col in ("expectation", "required", "measured", "result"):
            perf.add_column(col)
        for r in m["performance"]:
            meas = "not measured" if r["measured"] is None else f"{r['measured']:.4g}"
            res = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "-"}[r["passed"]]
            perf.add_row(r["key"], str(r["expected"]), meas, res)
        console.print(perf)
    console.print(f"wrote {out}/: model.safetensors, "
                  f"{'fp32.safetensors, ' if b else ''}model.py, metrics.json, curves.png, "
                  f"weights.png, train_state.safetensors")
