"""Run every Triton kernel in this directory on the CPU through Triton's interpreter.

`@triton.jit` decides between compiled and interpreted kernels when a kernel module is
executed, reading TRITON_INTERPRET through `triton.knobs`. The variable is set here, when
pytest collects this directory and before any test imports a generated kernel module, so it
holds in every pytest-xdist worker whatever that worker ran before; `interpreted` checks it.
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
    from triton import knobs

    assert knobs.runtime.interpret, "TRITON_INTERPRET must be set before kernels load"
