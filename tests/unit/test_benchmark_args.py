"""The benchmarks' shared argument types (benchmarks/_args.py) and the scripts that time in
rounds refusing a round count or shape they cannot run, with a usage error that names the
option (not a StatisticsError or ValueError traceback after the set-up)."""

from __future__ import annotations

import argparse

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_module):
    return benchmark_module


def test_shapes_and_positive_int(bench):
    args = bench("_args")
    assert args.shapes("4096x4096, 1024X512,") == [(4096, 4096), (1024, 512)]
    for text, needle in (("4096", "shapes are NxK"), ("0x5", "must be positive"),
                         (",", "no shape"), ("axb", "shapes are NxK")):
        with pytest.raises(argparse.ArgumentTypeError, match=needle):
            args.shapes(text)
    assert args.positive_int("9") == 9
    for text in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer"):
            args.positive_int(text)


@pytest.mark.parametrize("script, argv, option", [
    ("packing", ["--rounds", "-1"], "--rounds"),
    ("packing", ["--shapes", "1024"], "--shapes"),
    ("ternary_kernels", ["--rounds", "0"], "--rounds"),
    ("ternary_kernels", ["--batches", "1,x"], "--batches"),
    ("mlp_latency", ["--rounds", "0"], "--rounds"),
])
def test_bad_rounds_and_shapes_are_usage_errors(bench, capsys, script, argv, option):
    mod = bench(script)
    with pytest.raises(SystemExit) as exc:
        mod.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and ("positive" in err or "NxK" in err
                                            or "integers" in err), err
