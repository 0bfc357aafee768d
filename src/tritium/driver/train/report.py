"""What a run reports: progress on the terminal, evaluation and latency measurements, the
metrics and their expectations, the plots and the final table."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...cachedir import atomic_write_bytes
from .settings import TrainError, TrainSettings, lr_at
from .state import _Diverged


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
        lm = ("" if "val_bpb" not in row else
              f" bpb {row['val_bpb']:.4f} ppl {row['val_perplexity']:.2f}")
        line = (f"{label} epoch {int(row['epoch'])}: loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.4f} | val loss {row['val_loss']:.4f} "
                f"acc {row['val_acc']:.4f}{lm} | lr {row['lr']:.3g}" + (" *" if best else ""))
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


def _diverged_error(d: _Diverged, s: TrainSettings, ckpt: Path | None,
                    best_epoch: int) -> TrainError:
    where = f"epoch {d.epoch}" + (f", step {d.step}" if d.step else "")
    if ckpt is not None and best_epoch >= 1:   # this run's (or the resumed run's) best epoch
        kept = f"; the last good checkpoint is kept: {ckpt} (epoch {best_epoch})"
    else:
        kept = "; no epoch finished, so no checkpoint was written" + (
            f" ({ckpt} is an earlier run's)" if ckpt is not None else "")
    return TrainError(f"training diverged: the {d.label} model's loss became {d.value} in "
                      f"{where} (learning rate {lr_at(s, d.epoch - 1):.3g}){kept}",
                      help="lower the learning rate (--lr) or set grad_clip in the training "
                           "block", code=1)


def _native() -> bool:
    from ...runtime import native_available
    return bool(native_available())


def _stored_tensor_bytes(path: Path) -> int:
    """The bytes of tensor data a checkpoint file holds (the file less its header): what
    `tritium summary` predicts as the packed size."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    return path.stat().st_size - 8 - n


def _weight_distribution(frozen: nn.Module) -> dict[str, dict[str, float]]:
    from ...runtime import TernaryLayer, tritium_layers
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
        elif key == "min_compression" and "ratio" in m:   # fp32 checkpoint / ternary one
            measured = m["ratio"]["checkpoint"]
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

    lm = m.get("task") == "lm"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, hist in m["history"].items():
        ep = [r["epoch"] for r in hist]
        ax1.plot(ep, [r["train_loss"] for r in hist], label=f"{label} train")
        ax1.plot(ep, [r["val_loss"] for r in hist], "--", label=f"{label} val")
        if lm:       # language models: validation bits per byte (perplexity in the JSON)
            ax2.plot(ep, [r["val_bpb"] for r in hist], "--", label=f"{label} val")
            continue
        ax2.plot(ep, [r["train_acc"] for r in hist], label=f"{label} train")
        ax2.plot(ep, [r["val_acc"] for r in hist], "--", label=f"{label} val")
    from matplotlib.ticker import MaxNLocator
    losses = [r[k] for hist in m["history"].values() for r in hist
              for k in ("train_loss", "val_loss")]
    if losses and all(math.isfinite(v) and v > 0 for v in losses):
        ax1.set_yscale("log")      # loss spans decades; a linear axis flattens the tail
    ax1.set(title="loss" + (" (log scale)" if ax1.get_yscale() == "log" else ""),
            xlabel="epoch")
    ax2.set(title="bits per byte" if lm else "accuracy", xlabel="epoch")
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


def _qat_summary(s: TrainSettings) -> dict[str, Any]:
    """The QAT schedule a run used, for metrics.json and the report: its name, where it came
    from (default, program, option), its epochs, one line describing it, and the quantization
    strength of every epoch."""
    sched = s.qat
    out: dict[str, Any] = {**sched.to_dict(), "source": s.qat_source,
                           "description": sched.describe(),
                           "strength": [sched.strength(e) for e in range(s.epochs)]}
    if s.qat_written_for is not None:
        out["scaled_from_epochs"] = s.qat_written_for
    return out


def _qat_line(m: dict[str, Any]) -> str | None:
    """The report's line on the QAT schedule (from `qat_schedule`, or the settings)."""
    q = m.get("qat_schedule")
    if q is None:
        d = (m.get("settings") or {}).get("qat")
        if not isinstance(d, dict):
            return None
        from ...qat import QatSchedule
        sched = QatSchedule(d["name"], d["warmup_epochs"], tuple(d["stages"]), d["gradual"])
        q = {"description": sched.describe(), "source": m["settings"].get("qat_source")}
    where = {"program": "from the training block", "option": "from --qat-schedule",
             "default": "default"}.get(q.get("source") or "", "")
    scaled = (f", scaled from the program's {q['scaled_from_epochs']} epochs"
              if q.get("scaled_from_epochs") else "")
    return f"QAT schedule ({where}{scaled}): {q['description']}"


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
    if m.get("task") == "lm":
        table.title = (f"{m['model']} on {m['dataset']} (held-out test windows: "
                       f"{m['splits']['test']} x {m['seq_len']} tokens, "
                       f"{m['tokenizer']['kind']} tokenizer)")
        rows = [
            ("test bits per byte", f"{t['test_bpb']:.4f}", b and f"{b['test_bpb']:.4f}",
             b and f"{m['ratio']['bpb']:.3f}x"),
            ("test perplexity", f"{t['test_perplexity']:.3f}",
             b and f"{b['test_perplexity']:.3f}",
             b and f"{t['test_perplexity'] / b['test_perplexity']:.3f}x"),
            ("next-token accuracy", f"{t['test_accuracy']:.4f}",
             b and f"{b['test_accuracy']:.4f}",
             b and f"{t['test_accuracy'] - b['test_accuracy']:+.4f}"),
        ]
    else:
        rows = [("test accuracy", f"{t['test_accuracy']:.4f}",
                 b and f"{b['test_accuracy']:.4f}",
                 b and f"{t['test_accuracy'] - b['test_accuracy']:+.4f}")]
    rows += [
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
    qat_line = _qat_line(m)
    if qat_line:
        console.print(qat_line, soft_wrap=True)
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
    for c in t.get("tuned_configs_refused") or []:
        console.print(f"  {c['m_bucket']}x{c['n']}x{c['k']}: the tuned config did not run "
                      f"({c['why']})", soft_wrap=True)
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
