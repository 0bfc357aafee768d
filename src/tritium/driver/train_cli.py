"""The `train`, `eval`, `predict` and `export` subcommands of `tritium`.

`register(subparsers, formatter_class)` adds them to the main parser. Importing this module
is cheap (no torch): the commands import the trainer when they run, so `tritium check`
stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from typing import Any

from ..argcheck import AUGMENTATIONS, LOSSES, OPTIMIZERS, SCHEDULES, number, path_arg
from ..qat import NAMES as QAT_NAMES
from .console import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    USAGE_CODES,
    emit_diagnostics,
    parse_sets,
)

_TRAIN_EPILOG = """examples:
  tritium train examples/mlp.tri --out runs/mlp
  tritium train examples/lenet5.tri --epochs 5 --out runs/lenet5
  tritium train examples/mlp.tri --data mnist --data-dir ~/datasets --no-baseline
  tritium train examples/mlp.tri --out runs/mlp --resume            # continue runs/mlp
  torchrun --nproc-per-node 2 -m tritium train examples/mlp.tri     # DDP on CPU (gloo)
  tritium train examples/lenet5.tri --init runs/lenet5/fp32.safetensors --fp32-layers first,last
  tritium train examples/bitnet_b158.tri --data text --out runs/bitnet     # a language model

data: digits (embedded, default), mnist and fashion-mnist (IDX files in DIR/mnist/ or
DIR/fashion-mnist/), cifar10 (binary batches in DIR/cifar10/cifar-10-batches-bin/), or an
.npz with arrays x and y. DIR is --data-dir, $TRITIUM_DATA_DIR or ~/.cache/tritium/data
(where that has no copy, /usr/share/datasets: apt-get install dataset-fashion-mnist).
Language models: text (the *.py files of Python's standard library) or text:PATH (a UTF-8
file or a directory of them), held out by file. Nothing is downloaded."""


def _error(message: str, help: str | None = None) -> None:  # noqa: A002
    from rich.console import Console
    from rich.markup import escape
    err = Console(stderr=True, highlight=False)
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if help:
        err.print(f"  [bold]help:[/] {escape(help)}", soft_wrap=True)


def _guard(fn: Any) -> Any:
    """Run a command; turn every expected failure into a message and an exit code."""
    def run(args: argparse.Namespace) -> int:
        from ..argcheck import ArgError
        from ..data import DatasetError
        from .compile import CompileError
        try:
            return fn(args)
        except ArgError as err:
            print(f"tritium: error: {err.message}", file=sys.stderr)
            return err.code
        except CompileError as err:
            emit_diagnostics(err.diagnostics, err.sources, "human")
            return EXIT_USAGE if any(d.code in USAGE_CODES for d in err.diagnostics) \
                else EXIT_FAIL
        except DatasetError as err:
            _error(err.message, err.help)
            return err.code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as err:  # noqa: BLE001 - sorted below; unknown ones re-raise
            from ..data.tokenizer import TokenizerError
            from ..runtime import CheckpointError
            from .evaluate import ExportError
            from .models import ModelBuildError
            from .train import TrainError
            if isinstance(err, TrainError):
                _error(err.message, err.help)
                return err.code
            if isinstance(err, TokenizerError):
                _error(err.message, err.help)
                return EXIT_FAIL
            if isinstance(err, CheckpointError):
                _error(str(err), "pass a model.safetensors written by `tritium train`")
                return EXIT_USAGE if err.problem == "no such file" else EXIT_FAIL
            if isinstance(err, ModelBuildError | ExportError):
                _error(err.message, err.help)
                return EXIT_FAIL
            raise
    return run


def _sets(items: list[str] | None) -> dict[str, Any]:
    return parse_sets(items or [])


def _source_file(path: str) -> None:
    """The program file: a readable regular file (a usage error otherwise)."""
    from ..argcheck import input_error
    from ..frontend.diagnostics import Diagnostic
    from .compile import CompileError

    err = input_error(path)
    if err is not None:
        raise CompileError([Diagnostic(*err, None)])


def check_data_args(args: argparse.Namespace) -> None:
    """`--data NAME|PATH` and `--data-dir DIR`, before anything is loaded (ArgError)."""
    from ..argcheck import ArgError, check_input_file, input_problem, show_path
    from ..data import DATASETS

    if args.data_dir is not None:
        problem = input_problem(os.path.expanduser(args.data_dir))
        if problem is None:
            raise ArgError(f"--data-dir {show_path(args.data_dir)} is a file; it needs a "
                           "directory")
        if not problem.startswith("is a directory"):
            raise ArgError(f"--data-dir {show_path(args.data_dir)} {problem}; it needs a "
                           "directory")
    if args.data is None:
        return
    name = args.data.strip().lower().replace("_", "-")
    if name in (*DATASETS, "sklearn-digits", "fashionmnist", "cifar-10", "text"):
        return
    if args.data.startswith("text:"):          # a text file or a directory of them
        target = os.path.expanduser(args.data[5:])
        problem = input_problem(target) if target else "is empty"
        if problem is not None and not problem.startswith("is a directory"):
            raise ArgError(f"--data {show_path(args.data)}: the path after `text:` {problem} "
                           "(text:PATH takes a UTF-8 text file or a directory of text files)")
        return
    path = os.path.expanduser(args.data)
    if name.endswith(".npz"):
        from ..data import DatasetError, sniff_numpy
        check_input_file(path, "--data")
        try:
            sniff_numpy(path, "--data")
        except DatasetError as exc:
            raise ArgError(exc.message) from None
        return
    problem = input_problem(path)
    if problem is not None and problem.startswith("is a directory"):
        return                      # a directory holding mnist/, fashion-mnist/ or cifar10/
    raise ArgError(f"--data {show_path(args.data)}: "
                   + ("not a dataset name or an .npz file" if problem in (None, "does not exist")
                      else problem)
                   + f" (datasets: {', '.join(DATASETS)}, or a path to an .npz file)")


def check_train_paths(args: argparse.Namespace) -> None:
    """Every path `train` reads or writes, before anything is loaded or built (ArgError)."""
    from pathlib import Path

    from ..argcheck import ArgError, check_output_dir, input_problem, show_path
    out = args.out if args.out is not None else str(Path("runs") / Path(args.file).stem)
    check_output_dir(out, "--out")
    check_data_args(args)
    if getattr(args, "init", None) is not None:
        from ..argcheck import check_input_file
        check_input_file(args.init, "--init")
    if args.resume is not None:
        resume = args.resume or out      # bare --resume: the --out directory
        problem = input_problem(resume)
        if problem is not None and problem.startswith("is a directory"):
            state = Path(resume) / "train_state.safetensors"
            if input_problem(state) is not None:
                raise ArgError(f"--resume {show_path(resume)} holds no readable "
                               "train_state.safetensors (not a run directory of `tritium "
                               "train`)")
        elif problem is not None:
            raise ArgError(f"--resume {show_path(resume)} {problem}")


_LAYER_TOKEN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,256}")


def _fp32_layers(text: str | None) -> list[str] | None:
    """`--fp32-layers first,last,NAME,GLOB`: words separated by commas (checked against the
    model once it is built)."""
    from ..argcheck import ArgError, quote
    if text is None:
        return None
    tokens = [t.strip() for t in text.split(",")]
    bad = [t for t in tokens if not _LAYER_TOKEN.fullmatch(t)]
    if bad:
        raise ArgError(f"--fp32-layers: {quote(bad[0])} is not `first`, `last`, a layer name "
                       "or a glob; separate them with commas")
    return tokens


@contextlib.contextmanager
def _trusting(trust: bool, entry_point: str | None) -> Any:
    from .models import trusted_entry_point
    with trusted_entry_point(trust, entry_point):
        yield


def _entry_policy(args: argparse.Namespace) -> Any:
    """The `--trust-entry-point` / `--entry-point` of eval, predict and export, as a context
    for the command's work (ArgError for a malformed entry point, before anything is read
    or torch imported)."""
    from ..argcheck import ArgError, entry_point_problem
    if args.entry_point is not None:
        problem = entry_point_problem(args.entry_point)
        if problem is not None:
            raise ArgError(f"--entry-point: {problem}")
    return _trusting(args.trust_entry_point, args.entry_point)


def _augmentations(text: str | None) -> list[str] | None:
    """`--augment A,B` or `none`: names separated by commas (the trainer knows which)."""
    from ..argcheck import ArgError, quote
    if text is None:
        return None
    names = [a.strip() for a in text.split(",")]
    if names == ["none"]:
        return names
    bad = [a for a in names if a not in AUGMENTATIONS]
    if bad:
        raise ArgError(f"--augment: unknown augmentation {quote(bad[0])}; expected names from "
                       f"{', '.join(AUGMENTATIONS)} separated by commas, or `none`")
    return names


def cmd_train(args: argparse.Namespace) -> int:
    from ..argcheck import ArgError, check_name
    hyper = _sets(args.set)
    check_name(args.model, "--model")
    aug = _augmentations(args.augment)
    fp32_layers = _fp32_layers(args.fp32_layers)
    _source_file(args.file)
    check_train_paths(args)
    from .train import TrainOptions, train

    opts = TrainOptions(
        file=args.file, out=args.out, data=args.data, data_dir=args.data_dir, model=args.model,
        hyperparameters=hyper, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
        momentum=args.momentum, loss=args.loss, lr_schedule=args.lr_schedule,
        qat_schedule=args.qat_schedule, augmentation=aug, seed=args.seed, validation_split=args.val_split, format=args.format,
        baseline=not args.no_baseline, resume=args.resume, latency_runs=args.latency_runs,
        progress=False if args.no_progress else None, quiet=args.quiet,
        threads=args.threads, device=args.device, init=args.init, fp32_layers=fp32_layers,
        tokenizer=args.tokenizer, seq_len=args.seq_len, max_bytes=args.max_bytes,
        steps_per_epoch=args.steps_per_epoch)
    if args.tokenizer is not None:
        from ..data.tokenizer import TokenizerError, parse_tokenizer_spec
        try:
            parse_tokenizer_spec(args.tokenizer)
        except TokenizerError as exc:
            raise ArgError(f"--tokenizer: {exc.message}") from None
    if opts.resume == "":
        opts.resume = opts.out or f"runs/{__import__('pathlib').Path(args.file).stem}"
    result = train(opts)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK


def _checkpoint(path: str) -> None:
    from ..argcheck import check_input_file
    check_input_file(path, "checkpoint")


def cmd_eval(args: argparse.Namespace) -> int:
    policy = _entry_policy(args)
    _checkpoint(args.checkpoint)
    check_data_args(args)
    from ..runtime import CheckpointError, read_checkpoint_metadata
    try:
        lm = "tritium.tokenizer" in read_checkpoint_metadata(args.checkpoint).extra
    except CheckpointError:
        lm = False               # evaluate_checkpoint reports what is wrong with the file
    if lm:
        from .train.lm import evaluate_lm_checkpoint  # a language model
        with policy:
            m = evaluate_lm_checkpoint(args.checkpoint, args.data)
        if args.json:
            print(json.dumps(m))
        else:
            print(f"{m['checkpoint']}: {m['model']} ({m['variant']}) on {m['dataset']} test "
                  f"split, {m['windows']} windows of {m['seq_len']} tokens: bits per byte "
                  f"{m['bpb']:.4f}, perplexity {m['perplexity']:.3f}, loss {m['loss']:.4f}, "
                  f"next-token accuracy {m['accuracy']:.4f}")
        return EXIT_OK
    from .evaluate import evaluate_checkpoint
    with policy:
        r = evaluate_checkpoint(args.checkpoint, args.data, args.data_dir)
    if args.json:
        print(json.dumps(r.__dict__))
    else:
        print(f"{r.checkpoint}: {r.model} ({r.variant}) on {r.dataset} test split, "
              f"{r.samples} samples: accuracy {r.accuracy:.4f}, loss {r.loss:.4f}")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from ..argcheck import check_input_file
    policy = _entry_policy(args)
    _checkpoint(args.checkpoint)
    check_input_file(args.input, "INPUT")
    from .evaluate import load_for_eval, load_samples, predict
    with policy:
        model, info = load_for_eval(args.checkpoint)
    probs = predict(model, info, load_samples(args.input))
    top = max(1, min(args.top, probs.shape[-1]))
    for i, p in enumerate(probs):
        values, classes = p.topk(top)
        if args.json:
            print(json.dumps({"index": i, "class": int(classes[0]),
                              "probabilities": [round(float(v), 6) for v in p]}))
        else:
            alts = ", ".join(f"{int(c)}: {float(v):.3f}" for v, c in zip(values, classes))
            print(f"{i}: class {int(classes[0])}  ({alts})")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from ..argcheck import check_output_file
    if args.matmul_nbits and args.format != "onnx-packed":
        _error(f"--matmul-nbits applies to --format onnx-packed, not {args.format}")
        return EXIT_USAGE
    if args.format == "gguf":
        from .gguf_export import cmd_export_gguf
        _checkpoint(args.checkpoint)
        return cmd_export_gguf(args)
    if args.output is None or args.type is not None:
        _error("-o is required" if args.output is None else "--type applies to --format gguf")
        return EXIT_USAGE
    policy = _entry_policy(args)
    _checkpoint(args.checkpoint)
    check_output_file(args.output, "-o")
    from .evaluate import export_checkpoint
    with policy:
        r = export_checkpoint(args.checkpoint, args.format, args.output,
                              matmul_nbits=args.matmul_nbits)
    what = {"onnx-packed": "2-bit ternary weights unpacked in the graph",
            "onnx": "float weights trits*scale"}.get(r["format"], "the unpacked ternary model")
    if r["variant"] != "ternary":
        what = f"the {r['variant']} model's float weights"
    if r["matmul_nbits_layers"]:
        what = (f"2-bit ternary weights, {r['matmul_nbits_layers']} linear layers as "
                "com.microsoft.MatMulNBits, the others unpacked in the graph")
    raw = (", raw samples: normalization and resize are in the graph"
           if r.get("raw_inputs") else "")
    print(f"wrote {r['output']} ({r['format']}, {r['bytes']:,} bytes): {r['model']}, {what}; "
          f"input [batch, {', '.join(map(str, r['input_shape']))}]{raw}; "
          f"max |difference| from the "
          f"{'packed' if r['variant'] == 'ternary' else 'checkpoint' + chr(39) + 's'} model "
          f"on a test input: {r['max_abs_diff']:.2e}")
    return EXIT_OK


def _entry_point_options(parser: Any) -> None:
    """`--trust-entry-point` and `--entry-point`, shared by eval, predict and export."""
    parser.add_argument("--trust-entry-point", action="store_true",
                        help="a checkpoint saved from Python names the code that builds its "
                             "model; import and run it (only for checkpoints you trust)")
    parser.add_argument("--entry-point", default=None, metavar="MODULE:CALLABLE",
                        help="build the model by calling this Python code (instead of what the "
                             "checkpoint records)")


def register(sub: Any, formatter_class: Any) -> None:
    """Add `train`, `eval`, `predict` and `export` to the `tritium` subcommands."""
    t = sub.add_parser("train", help="train a .tri model (QAT), freeze it, compare with fp32",
                       formatter_class=formatter_class, epilog=_TRAIN_EPILOG,
                       description="Quantization-aware training with the program's training "
                                   "{ } block (flags override); writes a packed checkpoint, "
                                   "the generated module, metrics.json and plots to --out.")
    t.add_argument("file", metavar="FILE", type=path_arg("input-file"))
    t.add_argument("--data", default=None, metavar="NAME|PATH", type=path_arg("data"),
                   help="digits (default), mnist, fashion-mnist, cifar10, an .npz; for "
                        "language models text (the Python standard library's source) or "
                        "text:PATH (a text file or a directory of them)")
    t.add_argument("--data-dir", default=None, metavar="DIR", type=path_arg("input-dir"),
                   help="where local datasets live (default $TRITIUM_DATA_DIR or "
                        "~/.cache/tritium/data, else Debian's /usr/share/datasets)")
    t.add_argument("--out", default=None, metavar="DIR", type=path_arg("output-dir"),
                   help="output directory (runs/<file>)")
    t.add_argument("--model", default=None, help="the model to train when the file has several")
    t.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter of the model (repeatable)")
    t.add_argument("--epochs", type=number("epochs"), default=None)
    t.add_argument("--batch-size", type=number("batch_size"), default=None)
    t.add_argument("--lr", type=number("learning_rate"), default=None, help="learning rate")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    t.add_argument("--weight-decay", type=number("weight_decay"), default=None)
    t.add_argument("--momentum", type=number("momentum"), default=None)
    t.add_argument("--loss", choices=LOSSES, default=None)
    t.add_argument("--lr-schedule", choices=SCHEDULES, default=None)
    t.add_argument("--qat-schedule", choices=tuple(QAT_NAMES), default=None,
                   help="the quantization schedule (overrides the training block's "
                        "qat_schedule / quantization_schedule; docs/training.md)")
    t.add_argument("--augment", default=None, metavar="A,B",
                   help="augmentations (random_crop, horizontal_flip, noise) or `none`")
    t.add_argument("--seed", type=number("seed"), default=None)
    t.add_argument("--val-split", type=number("validation_split"), default=None,
                   help="share of the training split held out for validation (default 0.1)")
    t.add_argument("--format", choices=("t2", "t1.6"), default="t2",
                   help="packing of the frozen ternary weights (default t2)")
    t.add_argument("--no-baseline", action="store_true", help="skip the fp32 baseline")
    t.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   type=path_arg("resume"),
                   help="continue from a run directory or its train_state.safetensors "
                        "(default: --out)")
    t.add_argument("--no-progress", action="store_true", help="plain lines, no progress bars")
    t.add_argument("--latency-runs", type=number("latency_runs"), default=200,
                   help="timed batch-1 forwards")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="training device (default: CUDA when available); the frozen model "
                        "is measured on the CPU")
    t.add_argument("--threads", type=number("threads"), default=1,
                   help="torch threads for training and latency (default 1; 0: torch's "
                        "default)")
    t.add_argument("--init", default=None, metavar="FILE", type=path_arg("input-file"),
                   help="start QAT from these fp32 weights (safetensors: the fp32.safetensors "
                        "of an earlier run, or a torch state_dict); names and shapes must "
                        "match")
    t.add_argument("--fp32-layers", default=None, metavar="first,last,NAME",
                   help="keep these layers in full precision: first, last, layer names or "
                        "globs, separated by commas")
    lm = t.add_argument_group("language models (--data text, text:PATH)")
    lm.add_argument("--tokenizer", default=None, metavar="bytes|bpe[:VOCAB]",
                    help="bytes (default: vocabulary 256) or a byte-level BPE learned from "
                         "the training text (bpe: 1024 tokens)")
    lm.add_argument("--seq-len", type=number("seq_len"), default=None,
                    help="tokens per training window when the forward's input length is "
                         "symbolic (else the training block's seq_len)")
    lm.add_argument("--max-bytes", type=number("max_bytes"), default=None,
                    help="read at most this many bytes of text (each split its share)")
    lm.add_argument("--steps-per-epoch", type=number("steps_per_epoch"), default=None,
                    help="at most this many batches per epoch")
    t.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    t.set_defaults(func=_guard(cmd_train))

    e = sub.add_parser("eval", help="accuracy of a checkpoint on its test split",
                       formatter_class=formatter_class,
                       epilog="examples:\n  tritium eval runs/mlp/model.safetensors\n"
                              "  tritium eval runs/mlp/fp32.safetensors --json")
    e.add_argument("checkpoint", metavar="CKPT", type=path_arg("input-file"))
    e.add_argument("--data", default=None, metavar="NAME|PATH", type=path_arg("data"),
                   help="another dataset than the one it was trained on")
    e.add_argument("--data-dir", default=None, metavar="DIR", type=path_arg("input-dir"))
    e.add_argument("--json", action="store_true")
    _entry_point_options(e)
    e.set_defaults(func=_guard(cmd_eval))

    p = sub.add_parser("predict", help="classify samples with a checkpoint",
                       formatter_class=formatter_class,
                       epilog="examples:\n  tritium predict runs/mlp/model.safetensors x.npy\n"
                              "  tritium predict runs/mlp/model.safetensors samples.csv --json\n\n"
                              "INPUT: .npy (one sample or a batch), .npz (array x) or .csv "
                              "(one sample per row),\nin the raw scale of the training data "
                              "(the stored normalization is applied).")
    p.add_argument("checkpoint", metavar="CKPT", type=path_arg("input-file"))
    p.add_argument("input", metavar="INPUT", type=path_arg("input-file"))
    p.add_argument("--top", type=number("top"), default=3, help="how many classes to show")
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
    _entry_point_options(p)
    p.set_defaults(func=_guard(cmd_predict))

    x = sub.add_parser("export", help="export a checkpoint to ONNX, TorchScript, safetensors "
                                      "or GGUF (llama.cpp)",
                       formatter_class=formatter_class,
                       epilog="examples:\n"
                              "  tritium export runs/mlp/model.safetensors --format onnx -o mlp.onnx\n"
                              "  tritium export runs/mlp/model.safetensors --format onnx-packed "
                              "-o mlp.onnx\n"
                              "  tritium export runs/mlp/model.safetensors --format torchscript "
                              "-o mlp.pt\n"
                              "  tritium export runs/bitnet/model.safetensors --format gguf "
                              "--type tq2_0\n\nONNX exports take raw samples (normalization and "
                              "resize in the graph;\nlabels and normalization in metadata_props). "
                              "onnx-packed stores 2-bit ternary\ncodes unpacked in the graph; the "
                              "others hold the weights as float trits*scale.")
    x.add_argument("checkpoint", metavar="CKPT", type=path_arg("input-file"))
    x.add_argument("--format", choices=("onnx", "onnx-packed", "torchscript", "safetensors",
                                        "gguf"), required=True)
    x.add_argument("-o", "--output", default=None, metavar="FILE", type=path_arg("output-file"),
                   help="the file to write (required; gguf: default CKPT with .gguf)")
    x.add_argument("--type", choices=("tq2_0", "tq1_0"), default=None,
                   help="gguf: the llama.cpp type of the ternary weights (default tq2_0)")
    x.add_argument("--matmul-nbits", action="store_true",
                   help="onnx-packed: linear layers as onnxruntime's com.microsoft.MatMulNBits "
                        "(2-bit); the file then needs onnxruntime")
    _entry_point_options(x)
    x.set_defaults(func=_guard(cmd_export))
