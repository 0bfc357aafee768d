"""Language-model training: `tritium train MODEL.tri --data text[:PATH]`.

The model takes int64 token ids `[batch, seq]` and returns logits `[batch, seq, vocab]`.
The corpus (see :mod:`tritium.data.text`) is tokenized (`--tokenizer bytes|bpe[:VOCAB]`;
a BPE tokenizer is learned from the training split), packed into windows of `seq + 1`
tokens and trained with next-token cross-entropy over the last dim. Each epoch visits
the training windows in a seeded order (at most `--steps-per-epoch` batches of them).
Validation (every epoch) and test (the report) measure the loss, next-token accuracy,
bits per byte and perplexity on windows of the held-out files; the best epoch is the one
with the lowest validation loss. The fp32 twin is trained the same way. Checkpoints and
the resumable state record the tokenizer (`tritium.tokenizer`), so `tritium generate`
and a resumed run use the same one.

The window length `seq` is the forward's declared input length when it is a number
(`forward(tokens: Tensor<int64, [batch, 128]>)`), else `--seq-len` (option) or the
training block's `seq_len` key. The training block may also set `dataset: "text"`,
`tokenizer`, `steps_per_epoch` and `max_bytes` (the options override them).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...cachedir import atomic_write_bytes, atomic_write_text
from ...data import DatasetError, recorded_spec
from ...data.text import encode_split, load_text, pack_windows
from ...data.tokenizer import (
    ByteTokenizer,
    Tokenizer,
    TokenizerError,
    parse_tokenizer_spec,
    tokenizer_from_json,
    train_bpe,
)
from ...qat import QatSchedule
from ..models import TOKENIZER_KEY, RunInfo, declared_input_shape, float_twin
from .distributed import Dist
from .report import (
    _diverged_error,
    _expectations,
    _native,
    _plots,
    _print_report,
    _Reporter,
    _stored_tensor_bytes,
    _weight_distribution,
    measure_latencies,
    run_warnings,
)
from .settings import TrainError, TrainOptions, TrainResult, TrainSettings, _optimizer, lr_at
from .state import (
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
)

#: held-out windows measured per evaluation at most (evenly spread over the split)
MAX_EVAL_WINDOWS = 256
MAX_SEQ_LEN = 1 << 16
EVAL_BATCH = 32
#: text the BPE tokenizer learns from at most (the start of the training split)
BPE_TRAIN_BYTES = 8 << 20


def tokenizer_extra(tok: Tokenizer) -> dict[str, str]:
    return {TOKENIZER_KEY: json.dumps(tok.to_json(), separators=(",", ":")),
            "tritium.task": "lm"}


def model_tokenizer(extra: dict[str, str], info: RunInfo, where: str) -> Tokenizer:
    """:func:`tokenizer_of` a language-model checkpoint whose model `info` describes; a
    TokenizerError when the tokenizer has more tokens than the model's vocabulary (an edited
    record: its ids past the embedding table would fail inside the model)."""
    tok = tokenizer_of(extra, where)
    if "tritium.num_classes" in extra and tok.vocab_size > info.num_classes:
        raise TokenizerError(f"{where}: its tokenizer, {tok.describe()}, has more tokens "
                             f"than the model's vocabulary of {info.num_classes}",
                             help="the tokenizer record does not belong to this model: train "
                                  "or import the model again")
    return tok


def tokenizer_of(extra: dict[str, str], where: str) -> Tokenizer:
    """The tokenizer a checkpoint (or training state) records; bytes when it records none.
    A damaged or hostile record is a TokenizerError naming the file."""
    text = extra.get(TOKENIZER_KEY)
    if text is None:
        return ByteTokenizer()
    try:
        blob = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TokenizerError(f"{where}: the recorded tokenizer is not JSON ({exc})") from None
    try:
        return tokenizer_from_json(blob)
    except TokenizerError as exc:
        raise TokenizerError(f"{where}: {exc.message}", exc.help) from None


def resolve_seq_len(path: Path, entry: str, hyper: dict[str, Any], option: int | None,
                    block: dict[str, Any]) -> tuple[int, str]:
    """The window length and where it came from (`forward`, `--seq-len`, `seq_len`)."""
    shape = declared_input_shape(str(path), entry, hyper)
    if shape is not None and len(shape) == 1:
        if option is not None and option != shape[0]:
            raise TrainError(f"--seq-len {option} differs from the length {shape[0]} the "
                             f"forward of `{entry}` declares",
                             help="drop --seq-len, or declare the length symbolic "
                                  "(Tensor<int64, [batch, seq]>)")
        return shape[0], "the forward's input shape"
    if shape is not None:
        raise TrainError(f"`{entry}` takes inputs shaped {shape} per sample; a language "
                         "model takes token ids [batch, seq]",
                         help="declare forward(tokens: Tensor<int64, [batch, seq]>)")
    if option is not None:
        return int(option), "--seq-len"
    if "seq_len" in (block or {}):
        v = block["seq_len"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SEQ_LEN:
            raise TrainError(f"training block: `seq_len` must be a whole number from 1 to "
                             f"{MAX_SEQ_LEN}, got {v!r}", code=1)
        return int(v), "the training block's seq_len"
    raise TrainError(f"the forward of `{entry}` does not fix the sequence length",
                     help="pass --seq-len N, set `seq_len: N` in the training block, or "
                          "declare it: forward(tokens: Tensor<int64, [batch, 128]>)")


def _block_int(block: dict[str, Any], key: str, hi: int) -> int | None:
    if key not in (block or {}):
        return None
    v = block[key]
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
        raise TrainError(f"training block: `{key}` must be a whole number from 1 to {hi}, "
                         f"got {v!r}", code=1)
    return int(v)


def _stored_tokenizer(resume: Path | None) -> Tokenizer | None:
    if resume is None or not resume.is_file():
        return None
    import safetensors
    try:
        with safetensors.safe_open(str(resume), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception:  # noqa: BLE001 - _load_state reports a damaged file
        return None
    if TOKENIZER_KEY not in meta:
        return None
    return tokenizer_of(meta, str(resume))


def make_tokenizer(spec: str | None, train_docs: list[tuple[str, str]]) -> Tokenizer:
    kind, vocab = parse_tokenizer_spec(spec or "bytes")
    if kind == "bytes":
        return ByteTokenizer()
    texts, used = [], 0
    for _, t in train_docs:
        if used >= BPE_TRAIN_BYTES:
            break
        texts.append(t[:BPE_TRAIN_BYTES - used])
        used += len(texts[-1])
    return train_bpe(texts, vocab)


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def lm_evaluate(model: nn.Module, windows: torch.Tensor, token_bytes: torch.Tensor,
                device: torch.device | None = None) -> dict[str, float]:
    """Next-token loss (nats per token), accuracy, bits per byte and perplexity of `model`
    (eval mode) over `windows` `[N, seq + 1]`."""
    was = model.training
    model.eval()
    nll, correct, tokens, nbytes = 0.0, 0, 0, 0
    for i in range(0, len(windows), EVAL_BATCH):
        w = windows[i:i + EVAL_BATCH].long()
        if device is not None:
            w = w.to(device)
        x, y = w[:, :-1], w[:, 1:]
        logits = model(x)
        flat = logits.reshape(-1, logits.shape[-1]).float()
        nll += float(F.cross_entropy(flat, y.reshape(-1), reduction="sum"))
        correct += int((flat.argmax(-1) == y.reshape(-1)).sum())
        tokens += y.numel()
        nbytes += int(token_bytes[y.reshape(-1).cpu()].sum())
    model.train(was)
    loss = nll / max(1, tokens)
    return {"loss": loss, "accuracy": correct / max(1, tokens),
            "bpb": nll / math.log(2) / max(1, nbytes),
            "perplexity": math.exp(min(loss, 700.0))}


def _spread(windows: np.ndarray, limit: int) -> np.ndarray:
    if len(windows) <= limit:
        return windows
    idx = np.linspace(0, len(windows) - 1, limit).round().astype(np.int64)
    return windows[idx]


# ----------------------------------------------------------------------------- the loop

def _lm_epoch(run: _Run, wrapped: nn.Module, s: TrainSettings, train_w: torch.Tensor,
              epoch: int, steps_cap: int | None, dist_: Dist, rep: _Reporter
              ) -> tuple[float, float]:
    lr = lr_at(s, epoch)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    torch.manual_seed(s.seed * 1_000_003 + epoch)
    order = torch.randperm(len(train_w), generator=_epoch_generator(s.seed, epoch))
    per_rank = len(order) // dist_.world if dist_.world > 1 else len(order)
    mine = order[dist_.rank * per_rank:(dist_.rank + 1) * per_rank]
    bs = max(1, s.batch_size // dist_.world)
    steps = max(1, math.ceil(len(mine) / bs))
    if dist_.world > 1:
        steps = per_rank // bs or 1
    if steps_cap:
        steps = min(steps, steps_cap)
    task = rep.task(f"{run.label} {epoch + 1}/{s.epochs}", steps)
    wrapped.train()
    total, correct, seen = 0.0, 0, 0
    for step in range(steps):
        idx = mine[step * bs:(step + 1) * bs]
        if len(idx) == 0:
            break
        w = train_w[idx].long().to(dist_.device)
        x, y = w[:, :-1], w[:, 1:]
        logits = wrapped(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                               label_smoothing=s.label_smoothing)
        value = loss.item()
        if dist_.world == 1 and not math.isfinite(value):
            raise _Diverged(run.label, epoch + 1, value, step + 1)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip:
            nn.utils.clip_grad_norm_(run.model.parameters(), s.grad_clip)
        run.optimizer.step()
        n = y.numel()
        total += value * n
        correct += int((logits.detach().argmax(-1) == y).sum())
        seen += n
        rep.advance(task, f"loss {total / seen:.4f} ({total / seen / math.log(2):.3f} bits/token)")
    dist_.sync_buffers(run.model)
    if rep.progress is not None and task is not None:
        rep.progress.remove_task(task)
    return total / max(1, seen), correct / max(1, seen)


def _lm_fit(run: _Run, s: TrainSettings, train_w: torch.Tensor, val_w: torch.Tensor,
            token_bytes: torch.Tensor, steps_cap: int | None, dist_: Dist, rep: _Reporter,
            start: int, on_epoch) -> None:
    wrapped: nn.Module = run.model
    if dist_.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        on_cuda = dist_.device.type == "cuda"
        wrapped = DistributedDataParallel(run.model,
                                          device_ids=[dist_.device] if on_cuda else None)
    for epoch in range(start, s.epochs):
        t = time.perf_counter()
        with _quant_context(run, epoch):     # the QAT schedule's strength of the epoch
            loss, acc = _lm_epoch(run, wrapped, s, train_w, epoch, steps_cap, dist_, rep)
        if not _finite_weights(run.model):
            raise _Diverged(run.label, epoch + 1, loss)
        v = lm_evaluate(run.model, val_w, token_bytes, dist_.device)
        if not math.isfinite(v["loss"]):
            raise _Diverged(run.label, epoch + 1, v["loss"])
        row = {"epoch": epoch + 1, "train_loss": loss, "train_acc": acc,
               "val_loss": v["loss"], "val_acc": v["accuracy"], "val_bpb": v["bpb"],
               "val_perplexity": v["perplexity"], "lr": lr_at(s, epoch),
               "seconds": time.perf_counter() - t}
        run.history.append(row)
        # best_acc holds the negated validation loss: higher is better, as for classifiers
        best = -v["loss"] > run.best_acc
        if best:
            run.best_acc, run.best_epoch, run.stale = -v["loss"], epoch + 1, 0
        else:
            run.stale += 1
        rep.epoch_done(run.label, row, best)
        on_epoch(run, epoch + 1, best)
        if s.early_stopping and run.stale >= s.early_stopping:
            rep.console.print(f"{run.label}: no improvement for {run.stale} epochs, stopping")
            break


def _check_model_output(model: nn.Module, entry: str, sample: torch.Tensor, seq: int,
                        tok: Tokenizer) -> int:
    try:
        model.eval()
        with torch.no_grad():
            logits = model(sample)
    except Exception as exc:  # noqa: BLE001 - the user's model on token ids
        raise DatasetError(f"`{entry}` cannot take token ids shaped [batch, {seq}] (int64): "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                           help="a language model's forward takes tokens: "
                                "Tensor<int64, [batch, seq]> and returns [batch, seq, vocab]"
                           ) from None
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(sample.shape):
        raise DatasetError(f"`{entry}` returns {list(logits.shape)} for token ids "
                           f"{list(sample.shape)}; a language model returns logits "
                           "[batch, seq, vocab]")
    vocab = int(logits.shape[-1])
    if vocab < tok.vocab_size:
        raise DatasetError(f"`{entry}` predicts {vocab} tokens but the {tok.kind} tokenizer "
                           f"has a vocabulary of {tok.vocab_size}",
                           help="the model's vocabulary must be at least the tokenizer's: "
                                "raise the model's vocab or use a smaller tokenizer "
                                "(--tokenizer bytes, bpe:VOCAB)")
    return vocab


def train_lm(opts: TrainOptions, dist_: Dist, built: Any, settings: TrainSettings,
             fp32_names: list[str], path: Path, out: Path) -> TrainResult:
    """The language-model half of :func:`tritium.driver.train.train` (called by it)."""
    from ...runtime import save_checkpoint
    from ..evaluate import load_for_eval

    model = built.model
    main = dist_.main
    block = getattr(model, "tritium_training", {}) or {}
    seq, seq_from = resolve_seq_len(path, built.entry, opts.hyperparameters, opts.seq_len,
                                    block)
    max_bytes = opts.max_bytes if opts.max_bytes is not None else \
        _block_int(block, "max_bytes", 1 << 40)
    holdout = settings.validation_split or 0.1
    corpus = load_text(settings.dataset, max_bytes, holdout)
    state_path: Path | None = None
    if opts.resume is not None:
        rp = Path(opts.resume)
        state_path = rp / "train_state.safetensors" if os.path.isdir(rp) else rp
    tok = _stored_tokenizer(state_path)
    spec = opts.tokenizer
    if spec is None and "tokenizer" in block:
        if not isinstance(block["tokenizer"], str):
            raise TrainError(f"training block: `tokenizer` must be \"bytes\", \"bpe\" or "
                             f"\"bpe:VOCAB\", got {block['tokenizer']!r}", code=1)
        spec = block["tokenizer"]
    if tok is None:
        tok = make_tokenizer(spec, corpus.train)
    elif opts.tokenizer is not None and parse_tokenizer_spec(opts.tokenizer)[0] != tok.kind:
        raise TrainError(f"cannot resume: the run used the {tok.describe()} tokenizer, not "
                         f"--tokenizer {opts.tokenizer}", code=2)
    windows = {}
    for split in ("train", "val", "test"):
        w = pack_windows(encode_split(tok, getattr(corpus, split)), seq)
        if len(w) == 0:
            raise DatasetError(f"the {split} split of {corpus.name} holds fewer than "
                               f"{seq + 1} tokens, less than one window of the model's "
                               f"sequence length {seq} ({seq_from})",
                               help="give more text (or a larger --max-bytes), or a shorter "
                                    "--seq-len")
        windows[split] = torch.from_numpy(w.astype(np.int32))   # int64 per batch
    val_w = torch.from_numpy(_spread(windows["val"].numpy(), MAX_EVAL_WINDOWS))
    test_w = torch.from_numpy(_spread(windows["test"].numpy(), 4 * MAX_EVAL_WINDOWS))
    token_bytes = torch.tensor(tok.token_bytes(), dtype=torch.long)
    # token 0 probes the shapes: any id could be outside a model vocabulary too small
    vocab = _check_model_output(model, built.entry, torch.zeros(1, seq, dtype=torch.long),
                                seq, tok)
    model.to(dist_.device).train()
    info = RunInfo(source=built.source, file=str(path), entry=built.entry,
                   hyperparameters=dict(opts.hyperparameters),
                   dataset=recorded_spec(settings.dataset), input_shape=[seq], normalization=(0.0, 1.0), num_classes=vocab,
                   variant="ternary", format=opts.format, fp32_layers=fp32_names)
    tok_extra = {**tokenizer_extra(tok), "tritium.text_holdout": repr(float(holdout)),
                 "tritium.text_max_bytes": str(max_bytes or 0)}
    baseline_init = float_twin(model) if opts.baseline else None
    run = _Run("ternary", model, _optimizer(settings, model.parameters()),
               best_acc=-math.inf, schedule=settings.qat)
    start = 0
    resume_note = None
    if state_path is not None:
        from ...argcheck import input_problem, show_path
        problem = input_problem(state_path)
        if problem is not None:
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
            (out / "fp32.safetensors").unlink()
    ckpt = out / "model.safetensors"
    progress = _progress_default() if opts.progress is None else opts.progress
    steps_cap = opts.steps_per_epoch if opts.steps_per_epoch is not None else \
        _block_int(block, "steps_per_epoch", 1 << 30)

    def on_epoch(r: _Run, epoch: int, best: bool) -> None:
        if not main:
            return
        with _interrupts_deferred():
            if best or not ckpt.exists():
                frozen = _freeze_copy(r.model, opts.format)
                save_checkpoint(ckpt, frozen, source_hash=info.source_hash,
                                extra=info.to_extra(**tok_extra, **{
                                    "tritium.epoch": str(epoch),
                                    "tritium.val_loss": repr(-r.best_acc)}))
            blob = _state_blob(r, epoch, settings, info, extra=tok_extra)
            atomic_write_bytes(out / "train_state.safetensors", blob)

    t0 = time.perf_counter()
    with _Reporter(progress and main, opts.quiet or not main) as rep:
        if main:
            rep.console.print(
                f"{corpus.name}: {corpus.files} files, split by {corpus.split_by}; "
                f"{tok.describe()} tokenizer; windows of {seq} tokens ({seq_from}): "
                f"{len(windows['train'])} train, {len(windows['val'])} val, "
                f"{len(windows['test'])} test")
            if start:
                rep.console.print(f"resuming after epoch {start} of {settings.epochs}")
            if resume_note:
                from rich.markup import escape
                rep.warn(escape(resume_note))
        try:
            _lm_fit(run, settings, windows["train"], val_w, token_bytes, steps_cap, dist_,
                    rep, start, on_epoch)
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
            base_run = _Run("fp32", twin, _optimizer(settings, twin.parameters()),
                            best_acc=-math.inf)
            base_best: dict[str, Any] = {}

            def on_base(r: _Run, epoch: int, best: bool) -> None:
                if best:
                    base_best["state"] = {k: v.clone() for k, v in r.model.state_dict().items()}

            t1 = time.perf_counter()
            try:
                _lm_fit(base_run, settings, windows["train"], val_w, token_bytes, steps_cap,
                        dist_, rep, 0, on_base)
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

    frozen, _ = load_for_eval(ckpt)
    tst = lm_evaluate(frozen, test_w, token_bytes)
    val = lm_evaluate(frozen, val_w, token_bytes)
    ternary = {"test_bpb": tst["bpb"], "test_perplexity": tst["perplexity"],
               "test_loss": tst["loss"], "test_accuracy": tst["accuracy"],
               "val_bpb": val["bpb"], "val_perplexity": val["perplexity"],
               "val_loss": val["loss"], "val_accuracy": val["accuracy"],
               "checkpoint_bytes": ckpt.stat().st_size,
               "tensor_bytes": _stored_tensor_bytes(ckpt), "latency_ms": 0.0,
               "best_epoch": run.best_epoch, "train_seconds": ternary_seconds,
               "params": sum(p.numel() for p in run.model.parameters()),
               "format": opts.format, "native_kernels": _native(),
               "threads": torch.get_num_threads()}
    metrics: dict[str, Any] = {
        "task": "lm", "file": str(path), "model": built.entry, "dataset": corpus.name,
        "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size},
        "seq_len": seq, "seq_len_from": seq_from, "model_vocab": vocab,
        "corpus": {"files": corpus.files, "split_by": corpus.split_by,
                   "bytes": {s: corpus.nbytes(s) for s in ("train", "val", "test")},
                   "skipped_files": len(corpus.skipped)},
        "splits": {"train": len(windows["train"]), "val": len(val_w), "test": len(test_w)},
        "input_shape": [seq], "settings": asdict(settings), "world_size": dist_.world,
        "steps_per_epoch": steps_cap, "init": opts.init, "fp32_layers": fp32_names,
        "ternary": ternary, "history": {"ternary": run.history},
        "weight_distribution": _weight_distribution(frozen),
    }
    if base_run is not None:
        twin = base_run.model.cpu().eval()
        fp_path = out / "fp32.safetensors"
        save_checkpoint(fp_path, twin, source_hash=info.source_hash,
                        extra=RunInfo(**{**asdict(info), "variant": "fp32"}).to_extra(
                            **tok_extra, **{"tritium.epoch": str(base_run.best_epoch)}))
        bt = lm_evaluate(twin, test_w, token_bytes)
        bv = lm_evaluate(twin, val_w, token_bytes)
        metrics["fp32"] = {"test_bpb": bt["bpb"], "test_perplexity": bt["perplexity"],
                           "test_loss": bt["loss"], "test_accuracy": bt["accuracy"],
                           "val_bpb": bv["bpb"], "val_perplexity": bv["perplexity"],
                           "val_loss": bv["loss"], "val_accuracy": bv["accuracy"],
                           "checkpoint_bytes": fp_path.stat().st_size,
                           "tensor_bytes": _stored_tensor_bytes(fp_path), "latency_ms": 0.0,
                           "best_epoch": base_run.best_epoch, "train_seconds": base_seconds,
                           "layers_replaced": replaced}
        metrics["history"]["fp32"] = base_run.history
    lat_models = {"ternary": frozen}
    if base_run is not None:
        lat_models["fp32"], _ = load_for_eval(out / "fp32.safetensors")
        lat_models["fp32"].eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import copy
            lat_models["int8dyn"] = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(lat_models["fp32"]), {nn.Linear}, dtype=torch.qint8)
    sample = windows["test"][:1, :-1].contiguous()
    for name, ms in measure_latencies(lat_models, sample, opts.latency_runs).items():
        if name == "int8dyn":
            metrics["fp32"]["int8dyn_latency_ms"] = ms
        else:
            metrics[name]["latency_ms"] = ms
    from tritium.runtime.kernels import tuned_configs_refused, tuned_configs_used
    ternary["tuned_configs"] = tuned_configs_used()
    ternary["tuned_configs_refused"] = tuned_configs_refused()
    if base_run is not None:
        metrics["ratio"] = {
            "checkpoint": metrics["fp32"]["checkpoint_bytes"] / ternary["checkpoint_bytes"],
            "tensors": metrics["fp32"]["tensor_bytes"] / max(1, ternary["tensor_bytes"]),
            "latency_speedup": metrics["fp32"]["latency_ms"] / ternary["latency_ms"],
            "bpb": ternary["test_bpb"] / metrics["fp32"]["test_bpb"],
        }
    metrics["performance"] = _expectations(getattr(model, "tritium_performance", {}), metrics)
    metrics["warnings"] = [w for w in run_warnings({**metrics, "num_classes": vocab})
                           if "at chance" not in w]
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    _plots(out, metrics)
    _print_report(rep.console, metrics, out)
    return TrainResult(out, metrics)


# ----------------------------------------------------------------------------- tritium eval

def evaluate_lm_checkpoint(path: str | Path, data: str | None = None) -> dict[str, Any]:
    """Loss, next-token accuracy, bits per byte and perplexity of a language-model
    checkpoint on the test windows of its text corpus (or `data`), read, split and
    tokenized as `tritium train` did (the checkpoint records the tokenizer, the window
    length, the held-out share and the byte cap)."""
    from ...runtime import read_checkpoint_metadata
    from ..evaluate import load_for_eval

    extra = read_checkpoint_metadata(path).extra
    tokenizer_of(extra, str(path))     # a damaged record is named before the model loads
    model, info = load_for_eval(path)
    tok = model_tokenizer(extra, info, str(path))
    spec = data or info.dataset
    if not (spec.strip().lower() == "text" or spec.startswith("text:")):
        raise DatasetError(f"{path} is a language model: evaluate it on text",
                           help="--data text or --data text:PATH", code=2)
    try:
        holdout = float(extra.get("tritium.text_holdout", "0.1"))
        max_bytes = int(extra.get("tritium.text_max_bytes", "0")) or None
    except ValueError:
        holdout, max_bytes = 0.1, None
    if not (0.0 < holdout < 0.9) or (max_bytes is not None and max_bytes < 1):
        holdout, max_bytes = 0.1, None
    if not info.input_shape or len(info.input_shape) != 1:
        raise DatasetError(f"{path} records no sequence length for its text windows")
    seq = int(info.input_shape[0])
    corpus = load_text(spec, None if data else max_bytes, holdout)
    w = pack_windows(encode_split(tok, corpus.test), seq)
    if len(w) == 0:
        raise DatasetError(f"the test split of {corpus.name} holds less than one window of "
                           f"{seq + 1} tokens")
    test_w = torch.from_numpy(_spread(w, 4 * MAX_EVAL_WINDOWS).astype(np.int64))
    r = lm_evaluate(model, test_w, torch.tensor(tok.token_bytes(), dtype=torch.long))
    return {"checkpoint": str(path), "model": info.entry, "variant": info.variant,
            "dataset": corpus.name, "windows": len(test_w), "seq_len": seq,
            "tokenizer": tok.kind, **r}
