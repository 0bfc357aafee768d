"""Shared helpers (imported by path, as tests/property/strategies.py is) of the lowering tests: check + lower a file or source, random inputs and
parameters for the interpreter, and the checker's declared output shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tritium.check import CheckResult, check_file, check_source
from tritium.check.checker import Checker
from tritium.check.summary import pick_definition
from tritium.check.types import TensorT, Value
from tritium.frontend import ast as A
from tritium.ir import Function, TensorType, interpret
from tritium.ir.lowering import LoweredModel, lower

ROOT = Path(__file__).resolve().parents[4]
EXAMPLES = sorted((ROOT / "examples").glob("*.tri"))
DATA = Path(__file__).resolve().parent / "data"

NP_DTYPES = {"f64": np.float64, "f32": np.float32, "f16": np.float16, "bf16": np.float32,
             "i64": np.int64, "i32": np.int32, "i16": np.int16, "i8": np.int8, "bool": np.bool_,
             "trit": np.int8, "u8": np.uint8}


def checked(path_or_text: str | Path) -> CheckResult:
    if isinstance(path_or_text, Path):
        r = check_file(path_or_text)
    else:
        r = check_source(path_or_text, "<test>")
    assert r.ok, [d.message for d in r.errors]
    return r


def random_inputs(f: Function, sizes: dict[str, int], rng: np.random.Generator,
                  vocab: int = 8) -> list[np.ndarray]:
    out = []
    for t in f.arg_types:
        assert isinstance(t, TensorType)
        shape = [d if isinstance(d, int) else sizes.get(d, 3) if isinstance(d, str) else 3
                 for d in t.shape]
        if t.dtype in ("i64", "i32", "i16", "i8"):
            out.append(rng.integers(0, vocab, size=shape).astype(NP_DTYPES[t.dtype]))
        else:
            out.append(rng.standard_normal(shape).astype(NP_DTYPES[t.dtype]))
    return out


def random_params(low: LoweredModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {}
    for name, (shape, dtype, _init, _q) in low.params.items():
        x = rng.standard_normal(shape) * 0.5
        if name.endswith("running_var"):
            x = np.abs(x) + 0.5
        params[name] = x.astype(NP_DTYPES[dtype])
    return params


def run(low: LoweredModel, sizes: dict[str, int] | None = None, seed: int = 0,
        vocab: int = 8) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    f = low.module.function(low.entry)
    assert f is not None
    xs = random_inputs(f, sizes or {}, rng, vocab)
    params = random_params(low, rng)
    return interpret(low.module, low.entry, xs, params), xs, params


def declared_output(result: CheckResult, entry: str | None = None,
                    hyper: dict[str, Any] | None = None) -> tuple | None:
    """The output shape the checker infers for the entry's forward (dims: int or name)."""
    d = pick_definition(result, entry)
    checker = Checker(result.definitions, [])
    scope, layers = checker.definition_env(d.node, {k: Value.of(v) for k, v in
                                                    (hyper or {}).items()}, abstract=False)
    fn = checker.forward_of(d.node)
    out = checker.check_function(fn, scope, layers,
                                 form_b=isinstance(d.node, A.LayerDef)
                                 and not checker.has_forward(d.node))
    return out.ty.shape if isinstance(out.ty, TensorT) else None


def assert_shape(actual: tuple, declared: tuple | None, sizes: dict[str, int]) -> None:
    assert declared is not None
    assert len(actual) == len(declared)
    for a, d in zip(actual, declared):
        if isinstance(d, int):
            assert a == d, (actual, declared)
        elif isinstance(d, str) and d.isidentifier() and d in sizes:
            assert a == sizes[d], (actual, declared)


def lower_text(text: str, entry: str | None = None,
               hyper: dict[str, Any] | None = None) -> LoweredModel:
    return lower(checked(text), entry, hyper)
