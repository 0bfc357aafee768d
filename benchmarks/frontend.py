"""Front-end speed: lexing+parsing and checking a generated ~10,000-line program, and the wall
time of `tritium check examples/resnet18.tri` as a whole process (interpreter start included).
Also verifies that `tritium check` never imports torch.

    .venv/bin/python benchmarks/frontend.py [--lines 10000] [--runs 7] [--profile]

Prints a table of measured values against their targets; with --profile (or when parsing is
below target) it prints the lexer/parser functions that dominate a cProfile run.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _timing import median_time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tritium.check import check_source  # noqa: E402
from tritium.frontend.lexer import tokenize  # noqa: E402
from tritium.frontend.parser import parse  # noqa: E402

PARSE_TARGET = 50_000      # lines per second
CHECK_PROCESS_TARGET = 0.3  # seconds for `tritium check examples/resnet18.tri`

# ----------------------------------------------------------------------------- the program


def _block(i: int, rng: random.Random) -> str:
    k = rng.choice([1, 3])
    pad = k // 2
    return f"""// Residual block {i}: two ternary convolutions and an optional projection.
block Res{i} {{
    params {{
        c_in: int
        c_out: int
        stride: int = 1
    }}
    layer conv1: TernaryConv2d {{ in_channels: c_in, out_channels: c_out, kernel_size: {k}, stride: stride, padding: {pad}, bias: false }}
    layer bn1: BatchNorm2d {{ num_features: c_out }}
    layer conv2: TernaryConv2d {{ in_channels: c_out, out_channels: c_out, kernel_size: 3, padding: 1, bias: false }}
    layer bn2: BatchNorm2d {{ num_features: c_out }}
    layer shortcut: if (stride != 1 or c_in != c_out) {{
        TernaryConv2d {{ in_channels: c_in, out_channels: c_out, kernel_size: 1, stride: stride, bias: false }}
        BatchNorm2d {{ num_features: c_out }}
    }}

    forward(x: Tensor[b, c_in, h, w]) -> Tensor {{
        identity = x
        if shortcut is not None {{
            identity = shortcut(x)
        }}
        out = relu(bn1(conv1(x)))
        out = bn2(conv2(out))
        out += identity
        return relu(out)
    }}
}}
"""


def _mlp(i: int, rng: random.Random) -> str:
    n_in = rng.choice([64, 128, 256, 784])
    hidden = rng.choice([64, 128, 256, 512])
    classes = rng.choice([10, 100])
    quant = rng.choice(["twn", "absmean", "bitnet"])
    lr = rng.choice([0.1, 0.01, 0.001, 3e-4])
    return f"""/* MLP {i} */
model Mlp{i} {{
    in_size: {n_in}
    hidden: {hidden}
    classes: {classes}

    layer fc1: TernaryLinear {{ in_features: in_size, out_features: hidden, quantizer: "{quant}" }}
    layer bn1: BatchNorm1d {{ num_features: hidden }}
    layer fc2: TernaryLinear {{ in_features: hidden, out_features: hidden }}
    layer bn2: BatchNorm1d {{ num_features: hidden }}
    layer fc3: TernaryLinear {{ in_features: hidden, out_features: classes }}

    forward(x: Tensor[batch, {n_in}]) -> Tensor[batch, {classes}] {{
        let h = relu(bn1(fc1(x)))     # first layer
        h = relu(bn2(fc2(h)))
        let scale = 1.0 / (1.0 + {lr} * 2.0 ** -1)
        return fc3(h) * scale
    }}

    training {{
        optimizer: "adam"
        learning_rate: {lr}
        epochs: {rng.randint(5, 50)}
        batch_size: {rng.choice([32, 64, 128])}
        loss: "cross_entropy"
        lr_schedule: {{ type: "multistep", milestones: [5, 8] }}
    }}
    performance {{ min_accuracy: 0.9, max_size_kb: {rng.randint(8, 64)} }}
}}
"""


def _net(i: int, blocks: list[int], rng: random.Random) -> str:
    b1, b2 = rng.choice(blocks), rng.choice(blocks)
    return f"""model Net{i} {{
    num_classes: 10

    layer stem: Conv2d {{ in_channels: 3, out_channels: 64, kernel_size: 3, padding: 1, bias: false }}
    layer bn: BatchNorm2d {{ num_features: 64 }}
    layer stage1: Res{b1}[2] {{ c_in: 64, c_out: 64 }}
    layer stage2: Res{b2}[2] {{ c_in: 64, c_out: 128, stride: 2 }}
    layer pool: AdaptiveAvgPool2d {{ output_size: 1 }}
    layer fc: Linear {{ in_features: 128, out_features: num_classes }}

    forward(x: Tensor[batch, 3, 32, 32]) -> Tensor[batch, 10] {{
        x = relu(bn(stem(x)))
        x = stage2(stage1(x))
        x = flatten(pool(x), start_dim: 1)
        return fc(x)
    }}

    training {{ optimizer: "sgd", learning_rate: 0.1, momentum: 0.9, epochs: 100, batch_size: 128, loss: "cross_entropy" }}
}}
"""


def _layer(i: int, rng: random.Random) -> str:
    n_in, n_out = rng.choice([64, 128, 256]), rng.choice([10, 32, 64])
    return f"""layer Proj{i}(in_features: int, out_features: int) {{
    let W: TernaryTensor<trit, [out_features, in_features]> = random_ternary([out_features, in_features])
    param alpha: Tensor[1] = ones([1])
    fn forward(x: Tensor<float32, [?, in_features]>) -> Tensor<float32, [?, out_features]> {{
        return alpha * ternary_matmul(x, W)
    }}
}}

layer Affine{i}(w: TernaryTensor<trit, [{n_in}, {n_out}]>, b: Tensor<float32, [{n_out}]>,
                x: Tensor<float32, [?, {n_in}]>) -> Tensor<float32, [?, {n_out}]> {{
    return x @ w + b
}}
"""


def generate_program(lines: int = 10_000, seed: int = 1234) -> str:
    """A deterministic program of about `lines` lines: residual blocks, ResNet-like models
    that repeat them, MLPs and explicit layers."""
    rng = random.Random(seed)
    parts: list[str] = []
    blocks: list[int] = []
    i = 0
    total = 0
    while total < lines:
        kind = i % 4
        if kind == 0:
            text = _block(i, rng)
            blocks.append(i)
        elif kind == 1:
            text = _mlp(i, rng)
        elif kind == 2:
            text = _net(i, blocks, rng)
        else:
            text = _layer(i, rng)
        parts.append(text)
        total += text.count("\n") + 1
        i += 1
    return "\n".join(parts)


# ----------------------------------------------------------------------------- measuring

def median_time_without_gc(fn: Callable[[], object], runs: int) -> float:
    """The same with the cyclic garbage collector off: the share of the time it takes."""
    was = gc.isenabled()
    gc.disable()
    try:
        return median_time(fn, runs)
    finally:
        if was:
            gc.enable()


def tritium_command() -> list[str]:
    exe = Path(sys.executable).with_name("tritium")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tritium"]


def process_time(cmd: list[str], runs: int) -> tuple[float, int]:
    times = []
    code = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        code = proc.returncode
    return statistics.median(times), code


def torch_imported_by_check() -> tuple[bool, bool]:
    """(torch imported by the check API, torch imported by the `tritium check` command)."""
    api = subprocess.run(
        [sys.executable, "-c",
         "import sys; from tritium.check import check_file; "
         "r = check_file('examples/resnet18.tri'); "
         "print('torch' in sys.modules)"],
        cwd=ROOT, capture_output=True, text=True)
    cli = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import sys; sys.argv = ['tritium', 'check', 'examples/resnet18.tri']; "
         "from tritium.cli import main; main()"],
        cwd=ROOT, capture_output=True, text=True)
    imported = [line.split("|")[-1].strip() for line in cli.stderr.splitlines()
                if line.startswith("import time:")]
    return api.stdout.strip() == "True", any(m == "torch" or m.startswith("torch.")
                                             for m in imported)


def profile_parse(text: str, top: int = 15) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        parse(text, "<bench>")
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(r"frontend", top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="always print the parse profile")
    args = ap.parse_args(argv)

    text = generate_program(args.lines)
    n_lines = text.count("\n") + 1
    program, diags, _ = parse(text, "<bench>")
    errors = [d for d in diags if d.is_error]
    if errors:
        print(f"generated program does not parse: {errors[0].message} at {errors[0].span}")
        return 1
    result = check_source(text, "<bench>")
    n_check_errors = len(result.errors)

    t_lex = median_time(lambda: tokenize(text, "<bench>"), args.runs)
    t_parse = median_time(lambda: parse(text, "<bench>"), args.runs)
    t_parse_nogc = median_time_without_gc(lambda: parse(text, "<bench>"), args.runs)
    t_check = median_time(lambda: check_source(text, "<bench>"), max(3, args.runs // 2))
    t_proc, code = process_time([*tritium_command(), "check", "examples/resnet18.tri"], 5)
    torch_api, torch_cli = torch_imported_by_check()

    parse_rate = n_lines / t_parse
    check_rate = n_lines / t_check
    rows = [
        ("parse (lex+parse)", f"{parse_rate:,.0f} lines/s", f"> {PARSE_TARGET:,} lines/s",
         parse_rate > PARSE_TARGET),
        ("  of which lexing alone", f"{n_lines / t_lex:,.0f} lines/s", "(reported)", True),
        ("  parse with the GC disabled", f"{n_lines / t_parse_nogc:,.0f} lines/s",
         "(reported)", True),
        ("parse + check", f"{check_rate:,.0f} lines/s", "(reported)", True),
        ("`tritium check examples/resnet18.tri`", f"{t_proc:.3f} s (exit {code})",
         f"< {CHECK_PROCESS_TARGET} s", t_proc < CHECK_PROCESS_TARGET and code == 0),
        ("torch imported by the check API", str(torch_api), "False", not torch_api),
        ("torch imported by `tritium check`", str(torch_cli), "False", not torch_cli),
    ]
    print(f"program: {n_lines:,} lines, {len(program.items)} items, "
          f"{n_check_errors} checker errors; median of {args.runs} runs\n")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    print(f"{'measure':<{w0}}  {'measured':>{w1}}  {'target':<{w2}}  status")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * w2}  ------")
    for name, value, target, ok in rows:
        print(f"{name:<{w0}}  {value:>{w1}}  {target:<{w2}}  {'ok' if ok else 'MISSED'}")
    print(f"\nlex {t_lex * 1000:.1f} ms, parse {t_parse * 1000:.1f} ms "
          f"({t_parse_nogc * 1000:.1f} ms without GC), parse+check {t_check * 1000:.1f} ms "
          f"for {n_lines:,} lines")
    if args.profile or parse_rate <= PARSE_TARGET:
        print("\nwhere parsing spends its time (cProfile, 3 parses, by own time):")
        print(profile_parse(text))
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
