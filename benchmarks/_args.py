"""Argument types shared by the benchmark scripts (run as `python benchmarks/NAME.py`, which
puts this directory on sys.path)."""

from __future__ import annotations

import argparse


def positive_ints(text: str) -> list[int]:
    """A comma-separated list of positive integers (``--batches 1,64``)."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def positive_int(text: str) -> int:
    """A positive integer (``--rounds 9``)."""
    try:
        val = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if val < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return val


def shapes(text: str) -> list[tuple[int, int]]:
    """``4096x4096,1024x1024``: comma-separated N x K weight shapes, both positive."""
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            n, k = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"shapes are NxK, comma-separated; got {part!r}"
                                             ) from None
        if n < 1 or k < 1:
            raise argparse.ArgumentTypeError(f"shape {part!r} must be positive")
        out.append((n, k))
    if not out:
        raise argparse.ArgumentTypeError(f"no shape in {text!r}")
    return out
