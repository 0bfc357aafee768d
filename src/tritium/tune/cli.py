"""`tritium tune`: search kernel parameters for one shape or for every shape a model uses.

Exit codes: 0 tuned (or exported/imported), 1 nothing could be measured (every trial failed),
2 usage error (bad shape, unknown kernel, unreadable storage, malformed export file, missing
model file), 3 a Triton tune on a machine without a CUDA GPU and without ``--device
interpret``: the configs were pruned by ahead-of-time compilation but not timed.

Triton kernels are tuned like the CPU ones (the same loop, archive and reports) on a CUDA GPU;
``--device interpret`` runs the same loop on Triton's interpreter on CPU tensors (real
correctness checks, timings that say nothing about a GPU; archived under an interpreter
fingerprint that GPU dispatch never uses).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from tritium.argcheck import number, path_arg, quote

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NO_GPU = 0, 1, 2, 3
STRATEGY_NAMES = ("grid", "random", "heuristic", "tpe", "llm")

_EPILOG = """examples:
  tritium tune --kernel cpu.linear --shape 1,4096,4096 --budget 20
  tritium tune --kernel cpu.linear --shape 64,1024,1024 --strategy tpe --report runs/tune
  tritium tune --model examples/mlp.tri --batch 1,64 --budget 12
  tritium tune --kernel cpu.linear_f32 --shape 8,512,512 --strategy grid
  tritium tune --kernel triton.linear_t2 --shape 64,4096,4096          # on a CUDA GPU
  tritium tune --kernel triton.linear_t2 --shape 3,40,200 --device interpret --budget 3
  tritium tune --export tuned.json          # move tuned configs to another machine
  tritium tune --import tuned.json --storage sqlite:///other.db

kernels: cpu.linear (int8 activations), cpu.linear_f32 (float activations) and the Triton
kernels (triton.linear_t2, triton.linear_t16, their fused variants such as
triton.linear_t2_q8, and triton.quantize_int8). Several processes given the same --storage
share one search. Triton kernels are timed on the CUDA GPU; without one, --device interpret
checks them on Triton's interpreter (timings meaningless), else they are only pruned.
exit codes: 0 done, 1 no config could be measured, 2 usage error, 3 Triton configs pruned
but not timed (no CUDA GPU here and no --device interpret)."""


class UsageError(Exception):
    """Bad input to ``tritium tune``: printed as one line, exit code 2."""


def register(sub: Any, formatter_class: Any) -> None:
    t = sub.add_parser("tune", help="autotune kernel parameters (CPU kernels, Triton configs)",
                       formatter_class=formatter_class, epilog=_EPILOG,
                       description="Closed-loop search over kernel parameters: every trial is "
                                   "checked against a reference, timed with a confidence "
                                   "interval and recorded in an archive that the runtime's "
                                   "dispatch reads.")
    what = t.add_argument_group("what to tune")
    what.add_argument("--kernel", default=None, metavar="NAME",
                      help="cpu.linear, cpu.linear_f32 or a triton.* kernel")
    what.add_argument("--shape", default=None, metavar="M,N,K",
                      help="batch rows M, output features N, input features K")
    what.add_argument("--model", default=None, metavar="FILE.tri", type=path_arg("input-file"),
                      help="tune every ternary linear/conv shape the model runs")
    what.add_argument("--entry", default=None, metavar="NAME",
                      help="the model in FILE.tri when it defines several")
    what.add_argument("--batch", default="1,64", metavar="B,B",
                      help="batch sizes for --model (default 1,64)")
    what.add_argument("--format", choices=("t2", "t1.6"), default="t2",
                      help="packed weight format (default t2)")
    what.add_argument("--isa", default=None, help="CPU kernel path (default: the best here)")
    what.add_argument("--target", default=None,
                      help="GPU target whose AOT compile prunes Triton configs (default: the "
                           "GPU's own, else cuda:sm_90)")
    what.add_argument("--device", choices=("auto", "cuda", "interpret"), default="auto",
                      help="where Triton configs run: the CUDA GPU (auto when there is one) "
                           "or Triton's interpreter on CPU tensors (checks correctness; its "
                           "timings say nothing about a GPU)")
    how = t.add_argument_group("how")
    how.add_argument("--strategy", choices=STRATEGY_NAMES, default="heuristic",
                     help="search strategy (default heuristic)")
    how.add_argument("--budget", type=number("budget"), default=24, metavar="N",
                     help="trials per shape (default 24)")
    how.add_argument("--time", type=number("time"), default=None, metavar="S",
                     help="stop a shape after S seconds")
    how.add_argument("--patience", type=number("patience"), default=None, metavar="K",
                     help="stop when the last K trials improved less than --min-improvement "
                          "(default 12; off for grid)")
    how.add_argument("--min-improvement", type=number("min_improvement"), default=1.0,
                     metavar="PCT",
                     help="early-stopping threshold in percent (default 1)")
    how.add_argument("--seed", type=number("seed"), default=0)
    how.add_argument("--quick", action="store_true",
                     help="fewer, shorter timing samples (faster, noisier)")
    how.add_argument("--max-ci", type=number("max_ci"), default=None, metavar="PCT",
                     help="a trial whose 95%% interval is wider than PCT%% of its median is "
                          "noisy (default 25; 50 with --quick)")
    how.add_argument("--no-stability", action="store_true",
                     help="skip the check of the winner on neighbouring sizes")
    how.add_argument("--llm-url", default=None, metavar="URL",
                     help="OpenAI-compatible endpoint of the llm strategy (key from "
                          "$TRITIUM_LLM_API_KEY)")
    out = t.add_argument_group("archive and output")
    out.add_argument("--storage", default=None, metavar="URL",
                     help="SQLAlchemy URL of the archive (default: SQLite in the cache dir)")
    out.add_argument("--report", default=None, metavar="DIR", type=path_arg("output-dir"),
                     help="write a markdown + PNG report per shape under DIR")
    out.add_argument("--export", default=None, metavar="FILE", type=path_arg("output-file"),
                     help="write the archive (or --kernel's studies) to a JSON file")
    out.add_argument("--import", dest="import_", default=None, metavar="FILE",
                     type=path_arg("input-file"),
                     help="merge a JSON export into the archive")
    out.add_argument("--top", type=number("top"), default=8, help="rows of the results table")
    out.add_argument("-q", "--quiet", action="store_true", help="no per-trial lines")
    t.set_defaults(func=cmd_tune)


def _err(message: str) -> int:
    print(f"tritium tune: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def parse_shape(text: str) -> tuple[int, int, int]:
    from tritium.argcheck import MAX_MATRIX, RANGES

    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    rng = RANGES["dim"]
    if len(dims) != 3 or any(rng.check(d) for d in dims):
        raise UsageError(f"--shape expects M,N,K (three integers from 1 to {int(rng.hi)}), "
                         f"got {quote(text)}")
    m, n, k = dims
    if max(m * k, n * k, m * n) > MAX_MATRIX:
        raise UsageError(f"--shape {m},{n},{k} is too large: a matrix of it would hold more "
                         f"than {MAX_MATRIX} elements")
    return dims  # type: ignore[return-value]


def parse_batches(text: str) -> list[int]:
    from tritium.argcheck import RANGES

    try:
        out = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        out = []
    rng = RANGES["dim"]
    if not out or any(rng.check(b) for b in out):
        raise UsageError(f"--batch expects a comma list of integers from 1 to {int(rng.hi)}, "
                         f"got {quote(text)}")
    return out


def _check_paths(args: Any) -> None:
    """Every file `tune` reads or writes, before any work (UsageError, one line)."""
    from tritium.argcheck import ArgError, check_input_file, check_output_dir, check_output_file

    try:
        if args.model is not None:
            check_input_file(args.model, "--model")
        if args.import_ is not None:
            check_input_file(args.import_, "--import")
        if args.export is not None:
            check_output_file(args.export, "--export")
        if args.report is not None:
            check_output_dir(args.report, "--report")
        for flag, url in (("--storage", args.storage), ("--llm-url", args.llm_url)):
            if url is not None and (len(url) > 2048 or "://" not in url or any(
                    ord(c) < 32 or ord(c) == 0x7F for c in url)):
                raise ArgError(f"{flag} expects a URL (scheme://...), got {quote(url)}")
    except ArgError as e:
        raise UsageError(e.message) from None


def cmd_tune(args: Any) -> int:
    import warnings

    # a warning (an archive row the runtime's dispatch ignores, ...) is one line on stderr,
    # never Python's two-line form that quotes a source line of tritium
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            code = _cmd_tune(args)
        except UsageError as e:
            code = _err(str(e))
    seen: set[str] = set()
    for w in caught:
        text = "".join(c if c.isprintable() else repr(c)[1:-1]
                       for c in " ".join(str(w.message).split()))
        if text not in seen:
            seen.add(text)
            print(f"tritium tune: warning: {text}", file=sys.stderr)
    return code


def _open_archive(url: str | None):
    from tritium.tune.archive import Archive, ArchiveError

    try:
        return Archive(url)
    except ArchiveError as e:
        raise UsageError(str(e)) from None
    except ImportError as e:  # pragma: no cover - the tune extra is missing
        raise UsageError(f"the tune extra is not installed ({e}); "
                         "pip install 'tritium[tune]'") from None


def _cmd_tune(args: Any) -> int:
    from tritium.tune.archive import ArchiveError

    _check_paths(args)
    if args.entry is not None:
        from tritium.argcheck import ArgError, check_name
        try:
            check_name(args.entry, "--entry")
        except ArgError as e:
            raise UsageError(e.message) from None
    for name in ("budget", "top"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    if args.time is not None and args.time <= 0:
        raise UsageError("--time must be positive")
    if args.patience is not None and args.patience < 0:
        raise UsageError("--patience must be 0 (off) or positive")
    if args.model and (args.kernel or args.shape):
        raise UsageError("give either --model FILE.tri or --kernel NAME --shape M,N,K")
    if args.kernel and not args.shape and not args.export:   # (--export: only its studies)
        raise UsageError("--kernel needs --shape M,N,K")
    if args.shape and not args.kernel:
        raise UsageError("--shape needs --kernel NAME")
    tuning = bool(args.model or args.shape)
    if not tuning and not (args.export or args.import_):
        raise UsageError("nothing to do: give --kernel NAME --shape M,N,K, --model FILE.tri, "
                         "--export FILE or --import FILE")
    if args.export and not tuning and not args.import_:
        from tritium.tune.archive import default_url, sqlite_file

        db = sqlite_file(args.storage or default_url())
        if db is not None and not db.exists():   # (opening it would create it, and its dirs)
            raise UsageError(f"nothing to export: there is no tuning archive at {db}")
    shape = parse_shape(args.shape) if args.shape else None
    batches = parse_batches(args.batch)
    if args.kernel and not args.kernel.startswith("triton."):
        from tritium.tune.cpu import CPU_KERNELS

        if args.kernel not in CPU_KERNELS:
            raise UsageError(f"unknown kernel {quote(args.kernel)}; expected cpu.linear, "
                             "cpu.linear_f32 or a triton.* kernel")
    if args.entry is not None and not args.model:
        raise UsageError("--entry is for --model FILE.tri")
    if args.target is not None and not (args.kernel or "").startswith("triton."):
        raise UsageError("--target is for triton.* kernels")
    if args.llm_url and args.strategy != "llm":
        raise UsageError("--llm-url is for --strategy llm")
    if args.strategy == "llm" and tuning:
        _strategy(args)  # a malformed endpoint URL is a usage error before any work
    triton = bool(tuning and args.kernel and args.kernel.startswith("triton."))
    if getattr(args, "device", "auto") != "auto" and not triton:
        raise UsageError("--device is for triton.* kernels")
    triton_plan = None
    if triton:
        triton_plan = _triton_plan(args, shape)  # type: ignore[arg-type]
        if triton_plan["device"] is None:
            return _prune_triton(args, shape, triton_plan)  # type: ignore[arg-type]

    import warnings

    archive = _open_archive(args.storage)
    try:
        if args.import_:
            try:
                added, skipped = archive.import_json(Path(args.import_))
            except ArchiveError as e:
                raise UsageError(str(e)) from None
            print(f"imported {added} trial{'s' if added != 1 else ''} from {args.import_}"
                  + (f" ({skipped} already present)" if skipped else ""))
        code = EXIT_OK
        if triton_plan is not None:
            code = _tune_triton(args, archive, shape, triton_plan)  # type: ignore[arg-type]
        elif tuning:
            problems = (_model_problems(args, batches) if args.model
                        else [(args.kernel, shape)])
            code = _tune_all(args, archive, problems)
        if args.export:
            try:
                n = archive.export_json(Path(args.export),
                                        args.kernel if args.kernel else None)
            except ArchiveError as e:
                raise UsageError(str(e)) from None
            print(f"exported {n} stud{'ies' if n != 1 else 'y'} to {args.export}")
            left_out = archive.left_out
            if left_out:   # printed as one escaped line by cmd_tune
                warnings.warn(f"left out {len(left_out)} archive "
                              f"row{'s' if len(left_out) != 1 else ''} that --import would "
                              f"refuse (the first: {left_out[0]})", RuntimeWarning, stacklevel=1)
        if tuning or args.import_:
            _refresh_records(archive)
        return code
    except ArchiveError as e:
        raise UsageError(str(e)) from None
    finally:
        archive.close()


def _refresh_records(archive: Any) -> None:
    """After a tune or an import into the default archive, rewrite the winning configs the
    runtime reads (``tritium.runtime.tuned``); another storage is not what the runtime uses."""
    from tritium.runtime import tuned
    from tritium.tune import dispatch
    from tritium.tune.archive import default_url

    if archive.url == default_url():
        dispatch.write_records(archive.url)
    tuned.reset()


# ----------------------------------------------------------------------------- model shapes

def model_shapes(path: str, entry: str | None, batches: list[int], fmt: str,
                 input_shape: list[int] | None = None) -> list[tuple[str, tuple[int, int, int]]]:
    """(kernel, (M, N, K)) of every native ternary linear the model runs at these batch sizes
    (convolutions as their im2col GEMM), recorded through the runtime's config resolver."""
    import torch

    from tritium.driver.compile import CompileError
    from tritium.driver.models import ModelBuildError, build_model, declared_input_shape
    from tritium.runtime import freeze_model, kernels
    from tritium.tune.cpu import kernel_of

    try:
        built = build_model(path, entry)
    except CompileError as e:
        first = e.diagnostics[0].message if getattr(e, "diagnostics", None) else str(e)
        raise UsageError(f"{path}: {first}") from None
    except ModelBuildError as e:
        raise UsageError(str(e)) from None
    dims = input_shape or declared_input_shape(path, built.entry)
    if dims is None:
        raise UsageError(f"{path}: the input shape of `{built.entry}` is not static; "
                         "its forward must declare Tensor[batch, ...] with known sizes")
    if not kernels.native_available():
        raise UsageError("the native CPU kernels are not available here, so there is "
                         "nothing to tune")
    model = freeze_model(built.model.eval(), fmt)
    seen: dict[tuple, None] = {}

    def record(m, n, k, fmt_, act_quant, isa):
        seen[(kernel_of(act_quant), (m, n, k))] = None
        return None

    previous = kernels.get_config_resolver()
    kernels.set_config_resolver(record)
    try:
        with torch.no_grad():
            for b in batches:
                model(torch.randn(b, *dims))
    finally:
        kernels.set_config_resolver(previous)
    return list(seen)  # type: ignore[arg-type]


def _model_problems(args: Any, batches: list[int]) -> list[tuple[str, tuple[int, int, int]]]:
    shapes = model_shapes(args.model, args.entry, batches, args.format)
    if not shapes:
        raise UsageError(f"{args.model} runs no ternary linear or conv layer on the native "
                         "kernels")
    print(f"{args.model}: {len(shapes)} kernel shape{'s' if len(shapes) != 1 else ''} "
          f"at batch {','.join(map(str, batches))}: "
          + ", ".join(f"{k} {m}x{n}x{kk}" for k, (m, n, kk) in shapes))
    return shapes


# ----------------------------------------------------------------------------- CPU tuning

def _strategy(args: Any):
    from tritium.tune.strategies import make_strategy

    if args.strategy == "llm":
        from tritium.tune.llm import LLMStrategy
        from tritium.tune.strategies import HeuristicStrategy

        try:
            return LLMStrategy(url=args.llm_url, fallback=HeuristicStrategy(seed=args.seed))
        except ValueError as e:
            raise UsageError(f"--llm-url: {e}") from None
    return make_strategy(args.strategy, seed=args.seed)


def _tune_all(args: Any, archive: Any, problems: list[tuple[str, tuple[int, int, int]]]) -> int:
    from rich.console import Console

    from tritium.tune import cpu
    from tritium.tune.loop import tune
    from tritium.tune.measure import Settings

    console = Console(highlight=False)
    settings = Settings.quick() if args.quick else Settings()
    if args.max_ci is not None:
        if args.max_ci <= 0:
            raise UsageError("--max-ci must be positive")
        settings = dataclasses.replace(settings, max_rel_ci=args.max_ci / 100)
    isa = args.isa
    if isa is not None:
        from tritium.backends.cpu import isa as isa_mod

        if isa not in isa_mod.ISA_FLAGS:
            raise UsageError(f"unknown --isa {quote(isa)}; expected one of "
                             f"{', '.join(isa_mod.ISA_ORDER)}")
    isa = isa or cpu.default_isa()
    device = cpu.device_info(isa)
    fp = cpu.device_fingerprint(device)
    patience = args.patience if args.patience is not None else (
        0 if args.strategy == "grid" else 12)
    any_ok = False
    for kernel, shape in problems:
        problem = cpu.CpuLinearProblem(kernel, shape, args.format, isa)
        space = problem.space()
        bound = math.prod(len(p.values) for p in space.params)
        console.print(f"[bold]{kernel}[/bold] M,N,K={','.join(map(str, shape))} "
                      f"{args.format} on {device['model']} ({isa}): up to {bound} configs, "
                      f"strategy {args.strategy}, budget {args.budget}")

        def show(trial, _console=console):
            if args.quiet:
                return
            ms = f"{trial.median_ms:.4f} ms" if trial.median_ms is not None else "-"
            why = f"  ({trial.reason})" if trial.reason and trial.status != "ok" else ""
            _console.print(f"  #{trial.number:<3} {trial.status:<7} {ms:>12}  "
                           f"{_config_text(trial.config)}{why}")

        result = tune(problem, _strategy(args), archive, budget=args.budget, time_s=args.time,
                      patience=patience, min_improvement=args.min_improvement / 100,
                      seed=args.seed, settings=settings, stability=not args.no_stability,
                      device=device, device_fingerprint=fp, source_hash=cpu.source_hash(),
                      source=cpu.kernel_source() if args.strategy == "llm" else "",
                      on_trial=show)
        any_ok = any_ok or result.best is not None
        _print_result(console, result, args.top)
        if args.report:
            _write_report(args, result, device)
    return EXIT_OK if any_ok else EXIT_FAIL


def _safe(text: object) -> str:
    """Text from the archive (untrusted) for the console: control characters escaped, rich
    markup inert."""
    from rich.markup import escape

    return escape("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text)))


def _config_text(config: dict) -> str:
    return " ".join(f"{_safe(k)}={_safe(v)}" for k, v in config.items())


def _ratio(base: float | None, v: float | None) -> str:
    return f"{base / v:.2f}x" if base and v else "-"


def _print_result(console: Any, result: Any, top: int) -> None:
    from rich.table import Table

    ok = sorted((t for t in result.history if t.ok), key=lambda t: t.median_ms)
    table = Table(title=f"{result.kernel} {','.join(map(str, result.shape))} {result.fmt}: "
                        f"top configs ({len(result.history)} trials in the archive, "
                        f"this run: {len(result.trials)}, stopped: {result.stopped})")
    table.add_column("#", justify="right")
    table.add_column("config")
    table.add_column("median ms", justify="right")
    table.add_column("95% CI ms", justify="right")
    table.add_column("vs default", justify="right")
    table.add_column("vs fp32", justify="right")
    table.add_column("strategy")
    for i, t in enumerate(ok[:top], 1):
        ci = f"{t.ci_ms[0]:.4f}..{t.ci_ms[1]:.4f}" if t.ci_ms else "-"
        table.add_row(str(i), _config_text(t.config), f"{t.median_ms:.4f}", ci,
                      _ratio(result.default_ms, t.median_ms),
                      _ratio(result.fp32_ms, t.median_ms), _safe(t.strategy))
    console.print(table)
    if result.default_ms:
        base = f"default config {result.default_ms:.4f} ms"
    elif result.default is not None and result.default.status == "noisy":
        base = (f"default config noisy ({result.default.reason}), recorded as not measured")
    elif result.default is not None:
        base = f"default config {result.default.status} ({result.default.reason})"
    else:
        base = "default config not measured"
    fp32 = f", torch fp32 {result.fp32_ms:.4f} ms" if result.fp32_ms else ""
    console.print(f"  baseline (this run): {base}{fp32}")
    console.print(f"  dispatch: {_dispatch_line(result)}")
    if result.best is None:
        console.print("  [red]no config passed the correctness check and timing[/red]")
    for row in result.stability:
        sp = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        console.print(f"  stability {','.join(map(str, row['shape']))}: tuned vs default {sp}")


def _dispatch_line(result: Any) -> str:
    """Whether the runtime will run this study's best config, and why (the rule of
    ``tritium.tune.dispatch``: a side-by-side win by ``MIN_SPEEDUP`` at the low end of the
    interval)."""
    from tritium.tune.measure import MIN_SPEEDUP

    c = result.confirmed
    if result.best is None:
        return "no config to apply; the default config runs"
    if c is None:
        if result.default is None:
            return ("the best config was not compared with the default config side by side "
                    "(no baselines): the default config runs")
        return "the default config was the fastest: it stays"
    if c["low"] is None:
        return ("the side-by-side comparison with the default config could not run: the "
                "default config runs")
    text = (f"side by side ({c['rounds']} rounds): default {c['default_ms']:.4f} ms, tuned "
            f"{c['tuned_ms']:.4f} ms, speedup {c['speedup']:.2f}x "
            f"(95% {c['low']:.2f}x..{c['high']:.2f}x): ")
    if c["wins"]:
        from tritium.backends.cpu import KernelConfig
        from tritium.runtime.tuned import foreign_pool

        why = foreign_pool(str(result.best.config.get("pool", KernelConfig.pool)))
        if why is not None:
            return text + f"but the default config runs: {why}"
        return text + "the tuned config runs for this shape"
    return text + (f"below {MIN_SPEEDUP:.2f}x at the low end, so the default config stays")


def _write_report(args: Any, result: Any, device: dict) -> None:
    from tritium.tune.report import write_report

    name = f"{result.kernel}_{'x'.join(map(str, result.shape))}_{result.fmt}".replace("/", "_")
    out = Path(args.report) / name if args.model else Path(args.report)
    exhaustive = result.best.median_ms if result.strategy == "grid" and result.best else None
    meta = {"kernel": result.kernel, "shape": list(result.shape), "device": device,
            "default_ms": result.default_ms, "fp32_ms": result.fp32_ms,
            "stability": result.stability}
    if exhaustive is not None and result.stopped == "exhausted":
        meta["exhaustive_best_ms"] = exhaustive
    path = write_report(out, {result.strategy: result.trials}, meta)
    print(f"  report: {path}")


# ----------------------------------------------------------------------------- Triton

def _settings(args: Any):
    from tritium.tune.measure import Settings

    settings = Settings.quick() if args.quick else Settings()
    if args.max_ci is not None:
        if args.max_ci <= 0:
            raise UsageError("--max-ci must be positive")
        settings = dataclasses.replace(settings, max_rel_ci=args.max_ci / 100)
    return settings


def _triton_plan(args: Any, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Where the Triton configs run and which target prunes them: ``device`` is "cuda",
    "interpret" or None (no GPU: prune only); ``target`` the AOT target of the search space;
    ``prune_target`` the one pruning configs (None: the GPU's compute capability is not one
    the tuner can compile for, so the GPU itself rejects what it cannot run)."""
    from tritium.tune import triton_run

    if args.device == "interpret":
        try:
            triton_run.use_interpreter()
        except triton_run.InterpreterUnavailable as e:
            raise UsageError(str(e)) from None
    try:
        from tritium.tune import triton_space as ts
    except ImportError as e:
        raise UsageError(f"the Triton search space is not available: {e}") from None
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        raise UsageError("triton is not installed; pip install 'tritium[triton]'")
    has_gpu = False
    if args.device != "interpret":
        import torch

        has_gpu = torch.cuda.is_available()
    info: dict[str, Any] | None = None
    device: str | None = None
    if args.device == "interpret":
        device = "interpret"
    elif has_gpu:
        device = "cuda"
        info = triton_run.cuda_device_info()
    target = args.target
    prune_target = target
    if info is not None:
        own = info["target"]
        if target is not None and target != own:
            print(f"tritium tune: this GPU ({info['model']}, {info['capability']}) prunes with "
                  f"its own target {own or 'none'}, not --target {target}", file=sys.stderr)
        target = own or target or "cuda:sm_90"
        prune_target = own
    target = target or "cuda:sm_90"
    if info is None:
        prune_target = target
    try:
        space = ts.triton_space(args.kernel, shape, target)
    except (ValueError, KeyError) as e:
        raise UsageError(str(e).strip("'\"")) from None
    return {"device": device, "target": target, "prune_target": prune_target, "space": space,
            "cuda": info}


def _triton_context(args: Any, shape: tuple[int, int, int], device: dict[str, Any]):
    from tritium.tune import triton_space as ts
    from tritium.tune.strategy import TuneContext

    return TuneContext(kernel=args.kernel, shape=shape, device=device,
                       source=ts.kernel_source(args.kernel) if args.strategy == "llm" else "")


def _prune_triton(args: Any, shape: tuple[int, int, int], plan: dict[str, Any]) -> int:
    """No GPU and no --device interpret: prune configs by AOT compilation, time nothing."""
    from tritium.tune import triton_space as ts
    from tritium.tune.space import Trial

    space, target = plan["space"], plan["target"]
    strategy = _strategy(args)
    ctx = _triton_context(args, shape, ts.device_description(target))
    history: list[Trial] = []
    while len(history) < args.budget:
        config = strategy.suggest(space, history, ctx)
        if config is None:
            break
        reason = space.validate(config) or ts.prune(space, config, target)
        history.append(Trial(config=config, strategy=strategy.name,
                             status="invalid" if reason else "ok", reason=reason,
                             number=len(history)))
        if not args.quiet:
            print(f"  #{len(history) - 1:<3} {'pruned' if reason else 'builds':<7} "
                  f"{_config_text(config)}" + (f"  ({reason})" if reason else ""))
    builds = sum(1 for t in history if t.reason is None)
    print(f"{args.kernel} {','.join(map(str, shape))} for {target}: {builds} of "
          f"{len(history)} configs build ahead of time, {len(history) - builds} pruned")
    print("tritium tune: timing Triton configs needs a CUDA GPU; none here, so only the "
          "ahead-of-time pruning ran (exit 3; --device interpret checks and times them on "
          "Triton's interpreter instead)", file=sys.stderr)
    return EXIT_NO_GPU


def _tune_triton(args: Any, archive: Any, shape: tuple[int, int, int],
                 plan: dict[str, Any]) -> int:
    """Tune a Triton kernel with the real loop on the GPU, or on the interpreter."""
    from rich.console import Console

    from tritium.tune import triton_run
    from tritium.tune import triton_space as ts
    from tritium.tune.loop import tune

    console = Console(highlight=False)
    target, prune_target = plan["target"], plan["prune_target"]
    interpret = plan["device"] == "interpret"
    settings = _settings(args)
    if interpret:
        settings = triton_run.interpreter_settings(settings)
        if args.max_ci is not None:
            settings = dataclasses.replace(settings, max_rel_ci=args.max_ci / 100)
        info = triton_run.interpreter_device_info(target)
    else:
        info = plan["cuda"]
    device = {**ts.device_description(target), **info}
    fp = triton_run.device_fingerprint(info)
    problem = triton_run.TritonProblem(args.kernel, shape, plan["device"], target)
    space = plan["space"]
    bound = math.prod(len(p.values) for p in space.params)
    where = ("Triton's interpreter on CPU tensors" if interpret
             else f"{info['model']} ({info['capability']})")
    console.print(f"[bold]{args.kernel}[/bold] M,N,K={','.join(map(str, shape))} on {where}: "
                  f"up to {bound} configs, pruned for {prune_target or 'nothing (unknown GPU)'}"
                  f", strategy {args.strategy}, budget {args.budget}")
    if interpret:
        console.print(f"  [yellow]note: {triton_run.INTERPRETER_NOTE}; archived under the "
                      f"interpreter fingerprint {fp}, which GPU dispatch never uses[/yellow]")

    def show(trial):
        if args.quiet:
            return
        ms = f"{trial.median_ms:.4f} ms" if trial.median_ms is not None else "-"
        why = f"  ({trial.reason})" if trial.reason and trial.status != "ok" else ""
        console.print(f"  #{trial.number:<3} {trial.status:<7} {ms:>12}  "
                      f"{_config_text(trial.config)}{why}")

    prune = None
    if prune_target is not None:
        def prune(sp, config):
            return ts.prune(sp, config, prune_target)

    patience = args.patience if args.patience is not None else (
        0 if args.strategy == "grid" else 12)
    result = tune(problem, _strategy(args), archive, budget=args.budget, time_s=args.time,
                  patience=patience, min_improvement=args.min_improvement / 100,
                  seed=args.seed, settings=settings, prune=prune,
                  stability=not args.no_stability, device=device, device_fingerprint=fp,
                  source_hash=triton_run.source_hash(args.kernel),
                  source=ts.kernel_source(args.kernel) if args.strategy == "llm" else "",
                  on_trial=show)
    _print_result(console, result, args.top)
    if interpret:
        console.print("  (interpreter timings: they rank nothing on a GPU)")
    if args.report:
        _write_report(args, result, device)
    return EXIT_OK if result.best is not None else EXIT_FAIL
