"""The Triton version layer (`tritium.backends.triton.compat`): version checks, options, and
the interpreter fix for Triton 3.5/3.6 with NumPy >= 2.4, on whatever Triton is installed
(tests/unit/backends/triton/test_triton_versions.py runs the kernel tests under the other versions)."""

from __future__ import annotations

import operator
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.triton import compat


@given(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
       st.sampled_from(["", "rc1", "+git1a2b3c", ".post1", "a0"]))
def test_parse_version_reads_the_leading_numbers(major, minor, patch, suffix):
    assert compat.parse_version(f"{major}.{minor}.{patch}{suffix}") == (major, minor, patch)
    assert compat.parse_version(f"{major}.{minor}") == (major, minor, 0)
    assert compat.version_supported(f"{major}.{minor}.{patch}{suffix}") == (
        (major, minor) >= compat.MIN_VERSION)


@pytest.mark.parametrize("text", ["", "three", "v3.5", "3"])
def test_parse_version_rejects_non_versions(text):
    with pytest.raises(ValueError, match="not a version"):
        compat.parse_version(text)
    assert not compat.version_supported(text)


def test_installed_triton_is_supported():
    version = compat.installed_version()
    assert version is not None and compat.version_supported(version)
    assert compat.require() == version


@pytest.mark.parametrize("version, ok", [("3.4.0", False), ("2.3.1", False), ("3.5.0", True),
                                         ("3.6.0", True), ("4.0.0", True)])
def test_available_rejects_old_triton_with_one_warning(monkeypatch, version, ok):
    monkeypatch.setattr(compat, "installed_version", lambda: version)
    compat.available.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert compat.available() is ok
            assert compat.available() is ok  # cached: warned once
        assert len(seen) == (0 if ok else 1)
        if not ok:
            assert f"triton {version} is older than the 3.5" in str(seen[0].message)
            with pytest.raises(RuntimeError, match=f"needs triton >=3.5, found {version}"):
                compat.require()
    finally:
        compat.available.cache_clear()


def test_missing_triton(monkeypatch):
    monkeypatch.setattr(compat, "installed_version", lambda: None)
    compat.available.cache_clear()
    try:
        assert compat.available() is False
        with pytest.raises(RuntimeError, match="needs the triton package"):
            compat.require()
    finally:
        compat.available.cache_clear()


def test_numeric_options_follow_the_nvidia_backend():
    from dataclasses import fields

    from triton.backends.nvidia.compiler import CUDAOptions

    names = {f.name for f in fields(CUDAOptions)}
    opts = compat.numeric_options()
    assert opts["enable_fp_fusion"] is False
    assert set(opts) <= names  # never an option this Triton would reject
    assert compat.exact_division() == ("enable_reflect_ftz" in names)
    assert ("enable_reflect_ftz" in opts) == compat.exact_division()
    assert compat.compile_options(4, 3) == {"num_warps": 4, "num_stages": 3, **opts}


class _Handle:
    def __init__(self, data):
        self.data = data


def _scalar(cls, value):
    t = cls()
    t.handle = _Handle(np.array([value], dtype=np.int32))
    return t


@given(st.integers(-(2**31), 2**31 - 1))
def test_interpreter_scalars_index_after_prepare(value):
    """After prepare_interpreter, the interpreter's tensor patch reads a one-element scalar as
    an int on the installed Triton and NumPy (`range(0, tl.cdiv(K, BLOCK_K))`)."""
    from triton.runtime import interpreter

    compat.prepare_interpreter()
    cls = type("T", (), {})
    compat._patch_probe(interpreter._patch_lang_tensor, cls)
    assert operator.index(_scalar(cls, value)) == value


def test_interpreter_fix_installs_only_where_needed(monkeypatch):
    """A patch that fails on one-element scalars (Triton 3.5/3.6 on NumPy >= 2.4) is wrapped;
    one that works is left alone."""
    from triton.runtime import interpreter

    def broken(tensor):
        tensor.__index__ = lambda self: operator.index(self.handle.data)  # rejects shape (1,)

    def working(tensor):
        tensor.__index__ = lambda self: int(self.handle.data.reshape(-1)[0])

    for patch, fixed in ((broken, True), (working, False)):
        monkeypatch.setattr(interpreter, "_patch_lang_tensor", patch)
        monkeypatch.setattr(compat, "_INTERPRETER_FIX", [])
        assert compat.prepare_interpreter() is fixed
        assert compat.prepare_interpreter() is fixed  # idempotent
        assert (interpreter._patch_lang_tensor is patch) is not fixed
        cls = type("T", (), {})
        interpreter._patch_lang_tensor(cls)
        assert operator.index(_scalar(cls, 41)) == 41


def test_interpreter_mode_scopes_the_knob():
    was = compat.interpreting()
    with compat.interpret_mode(not was):
        assert compat.interpreting() is (not was)
    assert compat.interpreting() is was
