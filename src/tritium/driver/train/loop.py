"""The training loop: data splits and augmentation, one epoch, early stopping and the best
epoch, and `train()` itself, which runs the ternary model and its fp32 twin."""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...argcheck import ArgError
from ...cachedir import atomic_write_bytes, atomic_write_text
from ...data import (
    Dataset,
    DatasetError,
    Normalization,
    dataset_digest,
    load_dataset,
    recorded_spec,
    split_holdout,
)
from ...qat import QatSchedule
from ..evaluate import evaluate_model, load_for_eval, model_inputs
from ..models import (
    ModelBuildError,
    RunInfo,
    build_model,
    declared_input_shape,
    float_twin,
    keep_fp32,
)
from .distributed import Dist
from .report import (
    _diverged_error,
    _expectations,
    _native,
    _plots,
    _print_report,
    _qat_line,
    _qat_summary,
    _Reporter,
    _stored_tensor_bytes,
    _weight_distribution,
    measure_latencies,
    run_warnings,
)
from .settings import (
    TrainError,
    TrainOptions,
    TrainResult,
    TrainSettings,
    _optimizer,
    lr_at,
    resolve_settings,
)
from .state import (  # noqa: F401 - the run helpers are re-exported from here too
    _carry_best,
    _digest,
    _Diverged,
    _epoch_generator,
    _finite_weights,
    _freeze_copy,
    _interrupts_deferred,
    _load_state,
    _progress_default,
    _quant_context,
    _Run,
    _state_blob,
    init_from_fp32,
)

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
        if len(y_va) == 0:   # an empty split would choose epoch 1 whatever came after it
            raise DatasetError(f"{ds.name}: no validation split can be held out of its "
                               f"{len(ds.y_train)} training samples (every class has a single "
                               "one), so no epoch could be chosen as the best",
                               help="--val-split 0 chooses the best epoch on the test split; "
                                    "or give two or more samples of a class")
    else:
        x_tr, y_tr, x_va, y_va = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    return Splits(x_tr, y_tr, x_va, y_va, ds.x_test, ds.y_test, Normalization.fit(x_tr),
                  ds.num_classes, input_shape)


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


# ----------------------------------------------------------------------------- the command





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
        with _quant_context(run, epoch) as strength:
            loss, acc = _train_epoch(run, wrapped, s, sp, epoch, dist_, rep)
        if not _finite_weights(run.model):
            raise _Diverged(run.label, epoch + 1, loss)
        val_acc, val_loss = evaluate_model(run.model, x_val, y_val,
                                           lambda lg, yb: _loss(s, lg, yb))
        if not math.isfinite(val_loss):
            raise _Diverged(run.label, epoch + 1, val_loss)
        row = {"epoch": epoch + 1, "train_loss": loss, "train_acc": acc, "val_loss": val_loss,
               "val_acc": val_acc, "lr": lr_at(s, epoch), "seconds": time.perf_counter() - t}
        if run.schedule is not None and run.schedule.active:
            row["qat_strength"] = strength
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
        result = _train(opts, dist_)
        # the ranks tear the process group down together: a rank that destroyed its gloo
        # group while rank 0 still wrote the report was seen to abort under load ("terminate
        # called without an active exception"); after a failure no barrier (the other ranks
        # may never reach it)
        dist_.barrier()
        return result
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        dist_.close()


def _train(opts: TrainOptions, dist_: Dist) -> TrainResult:
    from ...runtime import save_checkpoint, tritium_layers

    if opts.format not in ("t2", "t1.6"):
        raise TrainError(f"unknown packing format `{opts.format}`", help="t2 or t1.6")
    path = Path(opts.file)
    out = Path(opts.out) if opts.out else Path("runs") / path.stem
    try:                 # before the model is built or any data is loaded
        from ...argcheck import check_output_dir
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
        from ...runtime.ternarize import fp32_layer_names
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
    from ...data.text import is_text_spec
    if is_text_spec(settings.dataset):
        from .lm import train_lm
        return train_lm(opts, dist_, built, settings, fp32_names, path, out)
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
                   hyperparameters=dict(opts.hyperparameters),
                   dataset=recorded_spec(settings.dataset), dataset_digest=dataset_digest(ds),
                   input_shape=shape, normalization=(sp.norm.mean, sp.norm.std),
                   num_classes=ds.num_classes, variant="ternary", format=opts.format,
                   fp32_layers=fp32_names)
    baseline_init = float_twin(model) if opts.baseline else None
    run = _Run("ternary", model, _optimizer(settings, model.parameters()),
               schedule=settings.qat)
    start = 0
    resume_note = None
    if opts.resume is not None:
        rp = Path(opts.resume)
        state_path = rp / "train_state.safetensors" if os.path.isdir(rp) else rp
        from ...argcheck import input_problem, show_path
        problem = input_problem(state_path)
        if problem is not None:      # never open a FIFO or a device: it could block forever
            raise TrainError(f"cannot resume: {show_path(state_path)} {problem}",
                             help="--resume takes the run directory of an earlier `tritium "
                                  "train` (holding train_state.safetensors) or that file")
        start = _load_state(state_path, run, info, settings.qat_spec)
        settings.qat = run.schedule or QatSchedule()   # the checkpoint's, continued
        # every rank alike (early stopping counts from the best epoch), rank 0 writes
        resume_note = _carry_best(run, state_path, out / "model.safetensors", copy=main)
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
        if main and resume_note:
            from rich.markup import escape
            rep.warn(escape(resume_note))
        if main and settings.qat.active and not opts.quiet:
            rep.console.print(_qat_line({"qat_schedule": _qat_summary(settings)}), soft_wrap=True)
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
        "qat_schedule": _qat_summary(settings),
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
    from tritium.runtime.kernels import tuned_configs_refused, tuned_configs_used
    ternary["tuned_configs"] = tuned_configs_used()
    ternary["tuned_configs_refused"] = tuned_configs_refused()
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
