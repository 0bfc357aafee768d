"""Run every Triton kernel in this directory on the CPU through Triton's interpreter.

`@triton.jit` decides between compiled and interpreted kernels when a kernel module is
executed, and Triton builds its own standard library for one or the other when it is first
imported, both from TRITON_INTERPRET. The variable is set here, while pytest collects (before
any test runs, in every pytest-xdist worker); nothing collected earlier imports triton. The
`interpreted` fixture checks both. AOT builds in these processes compile in a helper process
(see `tritium.backends.triton.aot`).
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _cache_root(tmp_path_factory, monkeypatch):
    # Generated kernel sources are written under the cache root; one root per worker session.
    root = tmp_path_factory.getbasetemp() / "tritium-cache"
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(root))


@pytest.fixture
def interpreted() -> None:
    """Fail loudly (instead of with a Triton error deep inside a kernel) when this process
    imported Triton before this file set TRITON_INTERPRET: Triton builds its standard library
    (`tl.cdiv`, `tl.max`, ...) for the interpreter or the compiler when it is imported."""
    from tritium.backends.triton import compat

    assert compat.interpreting(), "TRITON_INTERPRET must be set before kernels load"
    assert not compat.compiler_stdlib_loaded(), (
        "triton was imported before tests/unit/backends/triton/conftest.py set TRITON_INTERPRET=1 "
        "(a test module imported torch._dynamo or triton at collection time?)")
