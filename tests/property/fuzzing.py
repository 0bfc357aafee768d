"""The fuzz targets' shared settings: the number of examples comes from
TRITIUM_FUZZ_EXAMPLES (`make fuzz` runs 20,000 per target), else each target's default; no
deadline and no health checks (a target's first examples compile kernels or build models)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

N_ENV = os.environ.get("TRITIUM_FUZZ_EXAMPLES")


def fuzz(default: int):
    """Hypothesis settings for a fuzz target that runs ``default`` examples in `make test`."""
    return settings(max_examples=int(N_ENV) if N_ENV else default, deadline=None,
                    suppress_health_check=list(HealthCheck))


def run_main(python: str) -> str:
    """What `main()` of the generated module ``python`` prints (its top level included),
    after the validator accepted it."""
    import contextlib
    import io
    import types

    from tritium.backends.pytorch.validate import validate

    validate(python)
    mod = types.ModuleType("tritium_fuzz")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(python, "<fuzz>", "exec"), mod.__dict__)
        mod.main()
    return buf.getvalue()


def round_trip(src: str) -> None:
    """`tritium fmt` of ``src`` parses back to the same AST."""
    from tritium.frontend.formatter import format_source
    from tritium.frontend.parser import parse

    out = format_source(src)
    assert parse(out)[0] == parse(src)[0], (src, out)


def known_codes(result) -> None:
    """Every diagnostic of a check result has a documented code."""
    from tritium.frontend.diagnostics import CODES

    assert all(d.code in CODES for d in result.diagnostics), \
        [(d.code, d.message) for d in result.diagnostics]


def soup_check(src: str) -> None:
    """A token-soup program: diagnostics with documented codes, never a traceback; a program
    that checks formats back to the same AST, generates a module the validator accepts, and
    lowers to the IR or gives a LoweringError."""
    from tritium.backends.pytorch.codegen import generate
    from tritium.backends.pytorch.validate import validate
    from tritium.check import check_source
    from tritium.ir.lowering import LoweringError, lower

    result = check_source(src)
    known_codes(result)
    if not result.ok:
        return
    round_trip(src)
    validate(generate(result))
    try:
        lower(result)
    except LoweringError:
        pass
