"""Training state on disk: the resumable state file (`train_state.safetensors`), deferred
interrupts while it is written, and initialization from an fp32 checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...qat import QatSchedule, ScheduleError
from ...qat import parse as qat_parse
from ..models import (
    RunInfo,
)
from .settings import TrainError, TrainSettings

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
    schedule: QatSchedule | None = None   # the QAT schedule (None: fully quantized throughout)


def _quant_context(run: _Run, epoch: int) -> contextlib.AbstractContextManager[float]:
    """The forward passes of `run`'s (0-based) `epoch` run inside this: the quantization
    strength its QAT schedule gives the epoch (:func:`tritium.runtime.quantization_strength`)."""
    from ...runtime.quant import quantization_strength
    return quantization_strength(run.schedule.strength(epoch) if run.schedule else 1.0)


class _Diverged(Exception):
    """The loss (or a weight) became NaN or infinite: training stops, the files of the last
    finished epoch stay as they are."""

    def __init__(self, label: str, epoch: int, value: float, step: int | None = None) -> None:
        self.label, self.epoch, self.value, self.step = label, epoch, value, step
        super().__init__(f"{label} diverged in epoch {epoch}")


# ----------------------------------------------------------------------------- run helpers

def _finite_weights(model: nn.Module) -> bool:
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters()
                   if p.is_floating_point())


def _epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + rank)


def _progress_default() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI") and not os.environ.get("NO_PROGRESS")


def _freeze_copy(model: nn.Module, fmt: str) -> nn.Module:
    import copy

    from ...runtime import freeze_model
    return freeze_model(copy.deepcopy(model).cpu().eval(), fmt)


def _digest(model: nn.Module) -> str:
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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

def _state_blob(run: _Run, epoch: int, settings: TrainSettings, info: RunInfo,
                extra: dict[str, str] | None = None) -> bytes:
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
        "dataset": info.dataset,
        "dataset_digest": info.dataset_digest or "",
        "history": json.dumps(run.history),
        "best_acc": repr(run.best_acc),
        "best_epoch": str(run.best_epoch),
        "stale": str(run.stale),
        "param_groups": json.dumps(opt["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        "settings": json.dumps(asdict(settings)),
        "qat_schedule": _schedule_json(run.schedule),
        "qat_spec": settings.qat_spec or "null",
        **(extra or {}),
    }
    return safetensors.torch.save(tensors, metadata=meta)


def _schedule_json(schedule: QatSchedule | None) -> str:
    active = schedule is not None and schedule.active
    return json.dumps(schedule.to_dict() if active else None, sort_keys=True)


def _stored_schedule(text: str) -> QatSchedule | None:
    """The QAT schedule a train_state holds (None: fully quantized throughout), validated as
    a written schedule is (tritium.qat); raises ValueError for anything else."""
    from ...cachedir import parse_json
    d = parse_json(text, max_depth=4)
    if d is None:
        return None
    if not isinstance(d, dict) or set(d) != {"name", "warmup_epochs", "quantization_epochs",
                                             "gradual"} or not isinstance(d["name"], str) \
            or not isinstance(d["gradual"], bool) or len(d["name"]) > 64:
        raise ValueError("not a QAT schedule")
    sched = qat_parse({"warmup_epochs": d["warmup_epochs"], "gradual_quantization": d["gradual"],
                       "quantization_epochs": d["quantization_epochs"]}, None)
    return QatSchedule(d["name"], sched.warmup_epochs, sched.stages, sched.gradual)


def _load_state(path: Path, run: _Run, info: RunInfo, spec: str | None = None) -> int:
    """Restore `run` from a train_state file; returns the number of finished epochs.
    `spec`: this run's QAT schedule as written (TrainSettings.qat_spec); when the state's
    was written the same but resolved to other epochs (another `--epochs`), the run
    continues the state's schedule (`run.schedule` becomes it)."""
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
    stored_data = meta.get("dataset_digest") or None   # absent from older states
    if stored_data is not None and info.dataset_digest is not None \
            and stored_data != info.dataset_digest:
        before = meta.get("dataset", "?")
        raise TrainError(f"cannot resume: {path} was trained on other data "
                         + (f"(the file {_shown(before)} changed since)"
                            if before == info.dataset else
                            f"({_shown(before)}) than this run's ({_shown(info.dataset)})"),
                         help="resume with the same --data (or training block), its file "
                              "unchanged; or train afresh without --resume", code=1)
    # the strength of an epoch is a function of the epoch and the schedule alone, so the same
    # schedule continues at the stage the interrupted run had reached (a state written before
    # schedules existed trained fully quantized throughout)
    stored = meta.get("qat_schedule", "null")
    if stored != _schedule_json(run.schedule) and spec is not None \
            and meta.get("qat_spec") == spec:
        # the same schedule as written, for a run of another length: continue the one the
        # interrupted run was following (its strength is a function of the epoch alone)
        try:
            run.schedule = _stored_schedule(stored)
        except (ValueError, TypeError, ScheduleError):
            raise TrainError(f"cannot resume: {path} holds a damaged QAT schedule",
                             code=1) from None
        stored = _schedule_json(run.schedule)
    if stored != _schedule_json(run.schedule):
        def shown(text: str) -> str:
            from ...cachedir import parse_json
            d = parse_json(text, max_depth=4)
            return "none (fully quantized throughout)" if d is None else \
                QatSchedule(d["name"], d["warmup_epochs"], tuple(d["quantization_epochs"]),
                            d["gradual"]).describe()
        try:
            before = shown(stored)
        except (ValueError, KeyError, TypeError):
            before = stored[:200]
        raise TrainError(f"cannot resume: {path} was trained with another QAT schedule "
                         f"({before}) than this run's ({shown(_schedule_json(run.schedule))})",
                         help="resume with the same training block, --epochs and "
                              "--qat-schedule", code=1)
    try:
        r = _resume_state(meta, tensors, run)
    except _BadState as exc:
        raise TrainError(f"cannot resume: {path} holds a damaged training state: {exc}",
                         help="resume from an undamaged train_state.safetensors, or train "
                              "afresh without --resume", code=1) from None
    try:
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        run.model.load_state_dict(model_state, strict=True)
        run.optimizer.load_state_dict({"state": r.optim_state,
                                       "param_groups": r.param_groups})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TrainError(f"cannot resume from {path}: {exc}", code=1) from None
    run.history = r.history
    run.best_acc, run.best_epoch, run.stale = r.best_acc, r.best_epoch, r.stale
    return r.epoch


def _carry_best(run: _Run, state_path: Path, ckpt: Path, copy: bool = True) -> str | None:
    """Make ``ckpt`` (this run's model.safetensors) hold the resumed run's best epoch, which
    a new epoch replaces only when it is better: it does already, or the resumed run's own
    (beside ``state_path``, resuming into another --out) does and is copied; otherwise the
    best is forgotten, so the next finished epoch is written as the best (a note says so).
    Without this, a resumed run into another directory wrote its first epoch, however bad,
    as model.safetensors and reported the resumed best epoch beside it. Every rank decides
    alike (early stopping counts from the best epoch); only ``copy`` (rank 0) writes."""
    from ...cachedir import atomic_write_bytes
    from ...runtime import CheckpointError, read_checkpoint_metadata

    def epoch_of(path: Path) -> int | None:
        try:
            return int(read_checkpoint_metadata(path).extra.get("tritium.epoch", ""))
        except (CheckpointError, OSError, ValueError):
            return None

    if run.best_epoch < 1 or epoch_of(ckpt) == run.best_epoch:
        return None
    src = state_path.parent / "model.safetensors"
    if os.path.abspath(src) != os.path.abspath(ckpt) and epoch_of(src) == run.best_epoch:
        if copy:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(ckpt, src.read_bytes())
        return None
    best = run.best_epoch
    run.best_acc, run.best_epoch, run.stale = float("-inf"), -1, 0
    other = "" if os.path.abspath(src) == os.path.abspath(ckpt) else f", and neither does {src}"
    return (f"{ckpt} does not hold the resumed run's best epoch ({best}){other}: the next "
            "finished epoch is written as the best")


# ----------------------------------------------------------------------------- resume checks

#: The most epochs a resumed state may have finished (a larger count is a damaged file).
MAX_RESUME_EPOCHS = 1_000_000
#: The keys of every history row (`_fit` writes them); a language model's rows add these.
_ROW_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
_LM_ROW_KEYS = ("val_bpb", "val_perplexity")
_ROW_OPTIONAL = ("qat_strength",)


class _BadState(Exception):
    """One field of a training state is malformed (the message names it)."""


@dataclass
class _Resumed:
    epoch: int
    history: list[dict[str, float]]
    best_acc: float
    best_epoch: int
    stale: int
    param_groups: list[dict[str, Any]]
    optim_state: dict[int, dict[str, Any]]


def _shown(text: str) -> str:
    r = repr(text)
    return r if len(r) <= 60 else r[:40] + "…" + r[-12:]


def _meta_int(meta: dict[str, str], key: str, lo: int, hi: int,
              default: str | None = None) -> int:
    text = meta.get(key, default)
    if text is None:
        raise _BadState(f"`{key}` is missing")
    body = text[1:] if text.startswith("-") else text
    if not (isinstance(text, str) and body.isascii() and body.isdigit() and len(body) <= 18) \
            or not lo <= int(text) <= hi:
        raise _BadState(f"`{key}` must be a whole number from {lo} to {hi}, got {_shown(text)}")
    return int(text)


def _meta_json(meta: dict[str, str], key: str, max_depth: int) -> Any:
    from ...cachedir import parse_json
    if key not in meta:
        raise _BadState(f"`{key}` is missing")
    try:
        return parse_json(meta[key], max_depth=max_depth)
    except ValueError as exc:
        raise _BadState(f"`{key}` is not valid JSON ({exc})") from None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v \
        and v not in (float("inf"), float("-inf"))


def _resume_state(meta: dict[str, str], tensors: dict[str, torch.Tensor],
                  run: _Run) -> _Resumed:
    """Every field `_load_state` restores, checked (types, ranges, JSON nesting) against the
    run being resumed before anything is restored; _BadState names the first bad field."""
    epoch = _meta_int(meta, "epoch", 0, MAX_RESUME_EPOCHS)
    best_epoch = _meta_int(meta, "best_epoch", -1, epoch)
    stale = _meta_int(meta, "stale", 0, epoch, default="0")
    text = meta.get("best_acc")
    try:
        best_acc = float(text) if isinstance(text, str) and len(text) <= 40 else float("nan")
    except ValueError:
        best_acc = float("nan")
    # an accuracy (-1 before the first epoch) or a language model's negated loss (-inf)
    if not (best_acc == float("-inf") or _number(best_acc) and best_acc <= 1.0):
        raise _BadState(f"`best_acc` must be a number of at most 1, got {_shown(str(text))}")

    history = _meta_json(meta, "history", 2)
    lm = meta.get("tritium.task") == "lm"
    need = _ROW_KEYS + (_LM_ROW_KEYS if lm else ())
    if not isinstance(history, list) or len(history) != epoch:
        raise _BadState(f"`history` must be a list of one row per finished epoch ({epoch}), "
                        f"got {type(history).__name__}"
                        + (f" of {len(history)}" if isinstance(history, list) else ""))
    for i, row in enumerate(history):
        if not isinstance(row, dict) or any(k not in row for k in need) \
                or any(k not in need + _ROW_OPTIONAL for k in row) \
                or not all(_number(v) for v in row.values()) or row["epoch"] != i + 1:
            raise _BadState(f"`history` row {i} is not the row of epoch {i + 1} (numbers "
                            f"{', '.join(need)})")

    current = run.optimizer.state_dict()["param_groups"]
    groups = _meta_json(meta, "param_groups", 4)
    if not isinstance(groups, list) or len(groups) != len(current):
        raise _BadState(f"`param_groups` must be a list of {len(current)} parameter group(s)")
    for i, (got, want) in enumerate(zip(groups, current)):
        where = f"`param_groups` group {i}"
        # the numbers (and `params`) must be there; a flag another torch version does not
        # write takes the optimizer's default, one it writes and this one lacks is kept
        need = sorted(k for k, w in want.items() if k == "params" or _number(w)
                      or isinstance(w, list | tuple))
        if not isinstance(got, dict) or any(k not in got for k in need):
            raise _BadState(f"{where} must hold the keys {', '.join(need)}")
        for key, v in got.items():
            if key not in want and not (v is None or isinstance(v, bool | str) and
                                        len(str(v)) <= 64 or _number(v)):
                raise _BadState(f"{where}: `{str(key)[:40]}` is not a flag or a number")
        for key, w in want.items():
            if key not in got:
                continue
            v = got[key]
            if key == "params":
                ok = v == w
            elif isinstance(w, bool):
                ok = isinstance(v, bool)
            elif w is None:
                ok = v is None or isinstance(v, bool)
            elif isinstance(w, int | float):
                ok = _number(v) and v >= 0
            elif isinstance(w, list | tuple):
                ok = isinstance(v, list) and len(v) == len(w) and \
                    all(_number(x) and x >= 0 for x in v)
            elif isinstance(w, str):
                ok = isinstance(v, str) and len(v) <= 64
            else:
                ok = True
            if not ok:
                raise _BadState(f"{where}: `{key}` = {_shown(json.dumps(v))[:60]} is not "
                                f"like this run's ({_shown(json.dumps(w, default=str))[:60]})")

    for k, v in tensors.items():
        if k.startswith("model.") and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise _BadState(f"tensor `{k[:80]}` holds NaN or infinity")
    params = [p for g in run.optimizer.param_groups for p in g["params"]]
    ids = [i for g in current for i in g["params"]]
    shapes = dict(zip(ids, (tuple(p.shape) for p in params)))
    optim_state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if not k.startswith("optim."):
            continue
        _, pid, key = (k.split(".", 2) + ["", ""])[:3]
        if not (pid.isascii() and pid.isdigit() and len(pid) <= 9 and int(pid) in shapes) \
                or not key:
            raise _BadState(f"tensor `{k[:80]}` is not the state of a parameter of this model")
        if v.dim() and tuple(v.shape) != shapes[int(pid)]:
            raise _BadState(f"tensor `{k[:80]}` has shape {list(v.shape)}, its parameter "
                            f"{list(shapes[int(pid)])}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise _BadState(f"tensor `{k[:80]}` holds NaN or infinity")
        optim_state.setdefault(int(pid), {})[key] = v
    scalars = _meta_json(meta, "optim_scalars", 2)
    if not isinstance(scalars, dict):
        raise _BadState("`optim_scalars` must be an object of parameter ids to objects")
    for pid, sc in scalars.items():
        if not (pid.isascii() and pid.isdigit() and len(pid) <= 9 and int(pid) in shapes) \
                or not isinstance(sc, dict) \
                or not all(_number(x) or isinstance(x, bool) for x in sc.values()):
            raise _BadState(f"`optim_scalars` entry {_shown(pid)} is not an object of numbers "
                            "for a parameter of this model")
        optim_state.setdefault(int(pid), {}).update(sc)
    return _Resumed(epoch, history, best_acc, best_epoch, stale, groups, optim_state)


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
    from ...runtime import CheckpointError, TernaryConv1d, read_state_dict

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
