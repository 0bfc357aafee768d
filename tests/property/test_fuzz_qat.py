"""Fuzzing the QAT schedule of `training { }` (`qat_schedule`, `quantization_schedule`):
whatever the value, the checker answers with diagnostics of known codes (never a
traceback) and what checks compiles to safe Python; every schedule the checks accept
ends fully quantized, its strength never falls and stays in [0, 1], also when stretched
to another run length. TRITIUM_FUZZ_EXAMPLES sets the count (`make fuzz`)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium import qat
from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source
from tritium.frontend.diagnostics import CODES

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402

NUMBERS = st.one_of(st.integers(-5, 120), st.sampled_from(["1.5", "-0", "1e3", "0x10",
                                                           "99999999999999999999"]))
WORDS = st.sampled_from(["\"progressive\"", "\"gradual\"", "\"none\"", "\"immediate\"",
                         "\"delayed\"", "\"linear\"", "\"cosine\"", "\"\"", "true", "false",
                         "\"a\\\"b\"", "\"{x}\"", "none", "x", "[]", "{}", "\"'''\""])


def value(depth: int = 0):
    scalar = st.one_of(NUMBERS.map(str), WORDS)
    if depth >= 2:
        return scalar
    lists = st.lists(st.one_of(NUMBERS.map(str), WORDS), max_size=5).map(
        lambda xs: "[" + ", ".join(xs) + "]")
    return st.one_of(scalar, lists, dicts(depth + 1))


KEYS = st.sampled_from(["warmup_epochs", "gradual_quantization", "quantization_epochs",
                        "type", "stages", "ramp", "warmup_epochs"])


def dicts(depth: int = 0):
    entry = st.tuples(KEYS, st.deferred(lambda: value(depth))).map(lambda kv: f"{kv[0]}: {kv[1]}")
    return st.tuples(st.lists(entry, max_size=4), st.sampled_from([", ", "\n"])).map(
        lambda t: "{ " + t[1].join(t[0]) + " }")


HEAD = """model M {
    layer fc: TernaryLinear { in_features: 4, out_features: 2 }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
        return fc(x)
    }
"""


@fuzz(300)
@given(st.sampled_from(["qat_schedule", "quantization_schedule"]), value(),
       st.one_of(st.none(), st.integers(-1, 120)), st.booleans(), st.integers(0, 400))
def test_any_schedule_value_gives_known_diagnostics(key, val, epochs, twice, cut):
    lines = [f"        {key}: {val}"]
    if epochs is not None:
        lines.insert(0 if cut % 2 else 1, f"        epochs: {epochs}")
    if twice:
        lines.append("        qat_schedule: \"progressive\"")
    src = HEAD + "    training {\n" + "\n".join(lines) + "\n    }\n}\n"
    for text in (src, src[:len(HEAD) + cut]):
        result = check_source(text)
        for d in result.diagnostics:
            assert d.code in CODES, d
        if not result.errors and result.definitions:
            validate(generate(result))


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(allow_nan=True),
              st.text(max_size=6), st.sampled_from(list(qat.NAMES) + list(qat.ALIASES))),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.sampled_from([*qat.SUBKEYS, "x"]), inner,
                                            max_size=4)),
    max_leaves=12)


@fuzz(400)
@given(JSONISH, st.one_of(st.none(), st.integers(1, 300)), st.integers(1, 300))
def test_accepted_schedules_end_fully_quantized(spec, epochs, run):
    sched, problems = qat.check(spec, epochs)
    assert all(isinstance(p, qat.Problem) and p.message for p in problems)
    if sched is None:
        assert any(not p.warning for p in problems)
        return
    assert not any(not p.warning for p in problems)
    n = epochs or 10
    for s, length in ((sched, n), (sched.scaled(n, run), run)):
        lam = [s.strength(e) for e in range(length)]
        assert all(0.0 <= x <= 1.0 for x in lam)
        assert all(a <= b for a, b in zip(lam, lam[1:], strict=False))
        if epochs is not None or not s.stages or s.stages[-1] < length:
            assert lam[-1] == 1.0
        assert s.describe()
