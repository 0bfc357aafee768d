"""Packing and unpacking throughput (trits per second) against a plain int8 copy, same run.

    .venv/bin/python benchmarks/packing.py            # 4096 x 4096 and 11008 x 4096
    .venv/bin/python benchmarks/packing.py --quick    # 1024 x 1024

Rows: the native packer/unpacker (C), the pure-PyTorch fallback, and packing from float32
input (one extra exactness check and conversion). The baseline is ``dst.copy_(src)`` of the
same int8 trits (a memory-bound copy of 1 byte per trit); each figure is the median of
interleaved repetitions.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import _timing
import torch
from _args import positive_int, shapes

from tritium.runtime import packing
from tritium.runtime.packing import pack_ternary, unpack_ternary


def _ops(trits: torch.Tensor, native: bool) -> dict[str, Callable[[], object]]:
    tf = trits.float()
    dst = torch.empty_like(trits)
    fns: dict[str, Callable[[], object]] = {"int8 copy (baseline)": lambda: dst.copy_(trits)}
    for fmt in ("t2", "t1.6"):
        p = pack_ternary(trits, fmt)
        if native:
            fns[f"{fmt} pack (native)"] = lambda fmt=fmt: pack_ternary(trits, fmt)
            fns[f"{fmt} unpack (native)"] = lambda p=p: unpack_ternary(p)
            fns[f"{fmt} validate (native)"] = lambda p=p: p.validate()
            fns[f"{fmt} pack from float32"] = lambda fmt=fmt: pack_ternary(tf, fmt)
        fns[f"{fmt} pack (torch)"] = lambda fmt=fmt: packing._pack_torch(trits, fmt)
        fns[f"{fmt} unpack (torch)"] = lambda p=p: packing._unpack_torch(p)
    return fns


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shapes", type=shapes, default=None, help="comma list of NxK")
    ap.add_argument("--rounds", type=positive_int, default=None)
    args = ap.parse_args(argv)
    shape_list = args.shapes or ([(1024, 1024)] if args.quick else [(4096, 4096), (11008, 4096)])
    rounds = args.rounds or (5 if args.quick else 11)
    native = packing._native_for(torch.zeros(1)) is not None
    rows = []
    for n, k in shape_list:
        trits = torch.randint(-1, 2, (n, k), dtype=torch.int8)
        fns = _ops(trits, native)
        t = _timing.per_call(fns, rounds)
        vs_copy = _timing.speedups(t, "int8 copy (baseline)")
        for name, sec in t.items():
            rows.append((f"{n}x{k}", name, n * k / sec / 1e9, vs_copy[name]))
    title = "Ternary packing throughput (G trits/s; ratio vs int8 copy in the same run)"
    headers = ["N x K", "operation", "G trits/s", "vs int8 copy"]
    body = [[a, b, f"{c:.2f}", f"{d:.2f}x"] for a, b, c, d in rows]
    _timing.print_table(title, headers, body, width=120)
    if not native:
        print("native kernels unavailable: only the PyTorch fallback was measured")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
