"""The kernel binary cache reads its files back as untrusted: sidecars and binaries that are
links, FIFOs, devices, too large or wrong mean a rebuild (never a hang or an OOM), and a
failed OpenMP build is remembered only when it was the compiler's verdict on the source."""

from __future__ import annotations

import json
import os
import stat
import textwrap
import time
from pathlib import Path

import pytest

from tritium.backends.cpu import build as build_mod
from tritium.backends.cpu.build import KernelConfig

pytestmark = pytest.mark.skipif(build_mod.find_compiler() is None, reason="no C compiler")

CONFIG = KernelConfig(isa="scalar", pool="pthread")


def _sidecar(built) -> Path:
    return built.path.with_suffix(".sha256")


def _damage(path: Path, kind: str, tmp_path: Path) -> None:
    path.unlink()
    if kind == "symlink-zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-good":
        target = tmp_path / "elsewhere.sha256"
        target.write_text(build_mod._sha256_file(path.with_suffix(".so")))
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_bytes(b"0" * (build_mod.MAX_SIDECAR_BYTES + 1))
    elif kind == "wrong":
        path.write_text("0" * 64)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["symlink-zero", "symlink-good", "fifo", "huge", "wrong"])
def test_a_sidecar_that_is_not_a_plain_matching_file_rebuilds(tmp_path, kind):
    cache = tmp_path / "kernels"
    first = build_mod.build(CONFIG, cache_dir=cache)
    assert build_mod.read_sidecar(first.path) is not None
    _damage(_sidecar(first), kind, tmp_path)
    assert build_mod.read_sidecar(first.path) is None or kind == "wrong"
    t = time.monotonic()
    again = build_mod.build(CONFIG, cache_dir=cache)
    assert time.monotonic() - t < 120
    assert again.built_now and again.path == first.path
    side = _sidecar(again)
    assert stat.S_ISREG(side.lstat().st_mode) and build_mod.read_sidecar(again.path)
    assert not build_mod.build(CONFIG, cache_dir=cache).built_now


def test_a_binary_that_is_a_link_rebuilds_and_its_target_is_untouched(tmp_path):
    cache = tmp_path / "kernels"
    first = build_mod.build(CONFIG, cache_dir=cache)
    elsewhere = tmp_path / "elsewhere.so"
    elsewhere.write_bytes(first.path.read_bytes())
    first.path.unlink()
    first.path.symlink_to(elsewhere)       # same bytes as the sidecar says, but via a link
    again = build_mod.build(CONFIG, cache_dir=cache)
    assert again.built_now and not again.path.is_symlink()
    assert elsewhere.read_bytes() == again.path.read_bytes()


def test_a_lock_file_that_is_a_link_creates_nothing_outside_the_cache(tmp_path):
    cache = tmp_path / "kernels"
    cache.mkdir()
    so_name = build_mod.build(CONFIG, cache_dir=cache).path.name
    for p in cache.iterdir():
        p.unlink()
    outside = tmp_path / "outside" / "created-by-lock"
    outside.parent.mkdir()
    (cache / f".{so_name}.lock").symlink_to(outside)
    assert build_mod.build(CONFIG, cache_dir=cache).built_now
    assert not outside.exists() and not (cache / f".{so_name}.lock").is_symlink()


def _cc(tmp_path: Path, body: str) -> str:
    real = build_mod.find_compiler()
    script = tmp_path / "cc-wrapper"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body).replace("REAL", str(real)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_a_compiler_killed_during_the_openmp_build_is_retried_by_the_next_build(
        tmp_path, monkeypatch):
    """The first OpenMP build's compiler dies of a signal: that process uses the pthread
    pool, the marker says why and when but is not honoured, and the next build retries and
    gets the OpenMP pool."""
    flag = tmp_path / "killed-once"
    monkeypatch.setenv("CC", _cc(tmp_path, f"""\
        for a in "$@"; do
          if [ "$a" = "-fopenmp" ] && [ ! -e {flag} ]; then
            : > {flag}; kill -KILL $$
          fi
        done
        exec REAL "$@"
    """))
    cache = tmp_path / "kernels"
    first = build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert first.config.pool == "pthread" and "killed by signal 9" in first.pool_fallback
    (marker,) = cache.glob("*.failed")
    record = json.loads(marker.read_text())
    assert record["deterministic"] is False and "killed by signal 9" in record["reason"]
    assert record["key"] and record["when_utc"].endswith("Z") and record["compiler"]
    again = build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert again.config.pool == "openmp" and again.pool_fallback == "" and again.built_now
    assert not list(cache.glob("*.failed"))            # success clears the marker


def test_a_compiler_verdict_is_remembered_for_the_same_key_and_a_bounded_time(
        tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    monkeypatch.setenv("CC", _cc(tmp_path, f"""\
        for a in "$@"; do
          if [ "$a" = "-fopenmp" ]; then
            echo x >> {calls}; echo "fake-cc: OpenMP is not supported" >&2; exit 1
          fi
        done
        exec REAL "$@"
    """))
    cache = tmp_path / "kernels"
    first = build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert first.config.pool == "pthread" and "OpenMP is not supported" in first.pool_fallback
    (marker,) = cache.glob("*.failed")
    record = json.loads(marker.read_text())
    assert record["deterministic"] is True
    again = build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert "OpenMP is not supported" in again.pool_fallback and "recorded" in again.pool_fallback
    assert calls.read_text().count("x") == 1            # the verdict was not paid for again
    # an old verdict, one for another key or a malformed marker is not honoured
    for edit in ({"when": time.time() - build_mod.FAILED_MARKER_TTL_S - 60},
                 {"when": time.time() + 3600}, {"key": "0" * 64}, {"when": "yesterday"},
                 {"compiler": "/usr/bin/other-cc"}):
        marker.write_text(json.dumps({**record, **edit}))
        build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert calls.read_text().count("x") == 6
    for junk in (b"[" * 100_000, b"\xff\xfe", b"{}"):
        marker.write_bytes(junk)
        build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert calls.read_text().count("x") == 9
    marker.unlink()
    marker.symlink_to("/dev/zero")
    build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert calls.read_text().count("x") == 10
