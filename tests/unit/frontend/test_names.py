"""The name mapping from .tri to Python is injective, never reserved, never internal."""

from __future__ import annotations

import builtins
import keyword

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.frontend.names import (
    IMPORTS,
    INTERNAL_BASES,
    MODULE_ATTRS,
    BadName,
    attr_reserved,
    internal,
    is_name,
    py_attr,
    py_local,
)

RESERVED_WORDS = sorted(set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))
                        | IMPORTS | MODULE_ATTRS | {"self", "training", "tritium_folds"})
_FIRST = "abcxyzABZ_"
_REST = "abcxyzABZ_019"

# names: plain identifiers, biased towards reserved words and trailing/leading underscores
names = st.one_of(
    st.sampled_from([w for w in RESERVED_WORDS if is_name(w)]),
    st.builds(lambda w, k: w + "_" * k, st.sampled_from([w for w in RESERVED_WORDS
                                                         if is_name(w)]), st.integers(0, 3)),
    st.builds(lambda a, b: a + b, st.sampled_from(_FIRST), st.text(_REST, max_size=8)),
    st.builds(lambda a, w: a + w, st.sampled_from(["_", "q_", "u_", "tritium_", "_q_"]),
              st.text(_REST, min_size=1, max_size=6)),
).filter(is_name)


@settings(max_examples=500, deadline=None)
@given(st.lists(names, min_size=2, max_size=8, unique=True))
def test_mappings_are_injective(ns: list[str]) -> None:
    for f in (py_local, py_attr):
        out = [f(n) for n in ns]
        assert len(set(out)) == len(ns), dict(zip(ns, out))
    internals = [internal(b, n) for b in INTERNAL_BASES for n in ns] + \
        [internal(b) for b in INTERNAL_BASES]
    assert len(set(internals)) == len(internals)
    # no program name maps to an internal name
    for n in ns:
        assert py_local(n) not in internals and py_attr(n) not in internals


GENERATED_ATTRS = {"tritium_folds", "tritium_training", "tritium_performance",
                   "tritium_quantization", "training"}


def _attr_output(a: str) -> bool:
    """Whether some program name maps to attribute `a`."""
    if not is_name(a):
        return False
    if not a.endswith("_"):
        return not attr_reserved(a)
    return attr_reserved(a[:-1]) or a[:-1].endswith("_") if is_name(a[:-1]) else False


@settings(max_examples=500, deadline=None)
@given(names)
def test_outputs_are_safe(n: str) -> None:
    loc, att = py_local(n), py_attr(n)
    for out in (loc, att):
        assert out.isidentifier() and not keyword.iskeyword(out)
        assert not keyword.issoftkeyword(out) and not out.startswith("__")
        assert not out.startswith("_") or out.endswith("_")
    assert loc not in dir(builtins) and loc not in IMPORTS and loc != "self"
    assert att not in MODULE_ATTRS and att not in IMPORTS and att not in GENERATED_ATTRS
    assert _attr_output(att)
    for b in INTERNAL_BASES:
        i = internal(b, n)
        assert i.isidentifier() and i.startswith("_") and not i.startswith("__")
        assert not i.endswith("_")


def test_reserved_examples() -> None:
    assert py_attr("training") == "training_" and py_attr("training_") == "training__"
    assert py_local("lambda") == "lambda_" and py_local("lambda_") == "lambda__"
    assert py_local("self") == "self_" and py_local("torch") == "torch_"
    assert py_local("inf") == "inf" and py_local("x_") == "x__" and py_local("_x") == "_x_"
    assert py_attr("tritium_folds") == "tritium_folds_"
    assert internal("q", "W") == "_W_q" and internal("q", "_W") == "_W_qu"
    assert internal("i") == "_i"


@pytest.mark.parametrize("bad", ["", "1x", "a b", "a.b", "__init__", "__x", "_", "é", "a\nb",
                                 "z = open('x', 'w'); q", "x-y", None, 3])
def test_non_names_are_refused(bad) -> None:
    assert not is_name(bad)
    for f in (py_local, py_attr):
        with pytest.raises(BadName):
            f(bad)


def test_module_attrs_cover_torch() -> None:
    """No program name maps to an attribute of an nn.Module instance (dunders aside, which
    programs cannot name), so `self.<program name>` never shadows one."""
    torch = pytest.importorskip("torch")
    m = torch.nn.Module()
    attrs = set(dir(m)) | set(vars(m))
    for a in sorted(attrs):
        if not a.startswith("__"):
            assert not _attr_output(a), a


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_rendered_diagnostics_hold_no_terminal_controls(payload: str) -> None:
    """Whatever a program's strings or file name hold, rendering its diagnostics writes no
    control character, separator or bidi override to the terminal."""
    from tritium.check import check_source
    from tritium.frontend.diagnostics import render
    lit = "".join(f"\\u{{{ord(c):x}}}" if not c.isalnum() else c for c in payload)
    text = f'model M {{\n    layer l: Softmax {{ dim: "{lit}" }}\n    # {payload.replace(chr(10), " ")}\n}}\n'
    result = check_source(text, f"f{payload}.tri")
    for d in result.diagnostics:
        out = render(d, result.sources, color=False)
        for line in out.split("\n"):
            assert line.isprintable(), repr(line)
