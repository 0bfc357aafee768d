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
