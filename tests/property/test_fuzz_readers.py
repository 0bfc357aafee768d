"""Fuzzing the readers of Tritium's own files: the compile cache, the kernel cache's sidecars
and failure markers, and checkpoints. Each target starts from a valid file and mutates it --
truncation, bit flips, byte insertions, JSON edits with adversarial values (NaN, 1e999,
huge integers, wrong types, deep nesting), forged checksums, and files that are symbolic
links, FIFOs, devices or directories -- and asserts that the reader

* raises nothing but its documented error (or reports a miss),
* never hangs (each example runs under an alarm),
* creates no file outside the cache,
* never silently accepts a corrupt file: what it accepts is what was written.

The number of examples per target comes from TRITIUM_FUZZ_EXAMPLES (default 300, about
15 s for the four targets; `make fuzz` runs 20,000).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

N = int(os.environ.get("TRITIUM_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=N, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SECONDS = 10


@contextmanager
def no_hang(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    """Fail the example (instead of hanging the run) when a read blocks."""
    def expired(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"a reader took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Fixture(tuple):
    """A fixture's values, shown briefly when hypothesis reports a failing example."""

    def __repr__(self) -> str:
        return f"<fixture {self[0]}>"


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ------------------------------------------------------------------------ mutations

ADVERSARIAL: list[Any] = [
    None, True, False, 0, -1, 1, 2 ** 63, -(2 ** 63), 10 ** 30, 1e308, -0.0, 0.5,
    "", "x", "NaN", "\x00", "\n", "a" * 300, "../../etc/passwd", "/dev/zero", "{", "[",
    [], [1, 2], [[[[]]]], {}, {"a": 1}, {"__class__": "x"},
]
# raw JSON tokens json.dumps cannot produce (parsed by Python's json, so they must be refused)
RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "1" * 5000, "[" * 5000, "{" * 3000,
              '"\\ud800"']


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON document."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return obj


MARK = "\u0001TRITIUM-FUZZ\u0001"


@st.composite
def value_edits(draw, doc: Any) -> Any:
    """``doc`` with one value (anywhere, or the whole) replaced by an adversarial one."""
    doc = json.loads(json.dumps(doc))
    path = draw(st.sampled_from(_paths(doc)))
    return _set(doc, path, json.loads(json.dumps(draw(st.sampled_from(ADVERSARIAL)))))


@st.composite
def json_edits(draw, doc: Any) -> bytes:
    """``doc`` with one value (anywhere) replaced by an adversarial one, serialized; or a
    raw token spliced in as text."""
    if draw(st.booleans()):
        return json.dumps(draw(value_edits(doc)), sort_keys=True).encode()
    doc = json.loads(json.dumps(doc))
    path = draw(st.sampled_from(_paths(doc)))
    token = draw(st.sampled_from(RAW_TOKENS))
    text = json.dumps(_set(doc, path, MARK), sort_keys=True)
    return text.replace(json.dumps(MARK), token).encode()


@st.composite
def byte_edits(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "replace", "append"]))
    if not data:
        return draw(st.binary(max_size=64))
    i = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:i]
    if kind == "flip":
        bit = draw(st.integers(0, 7))
        return data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1:]
    if kind == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    if kind == "delete":
        n = draw(st.integers(1, 16))
        return data[:i] + data[i + n:]
    if kind == "replace":
        chunk = draw(st.binary(min_size=1, max_size=16))
        return data[:i] + chunk + data[i + len(chunk):]
    return data + draw(st.binary(min_size=1, max_size=64))


FILE_KINDS = ["symlink-dev-zero", "symlink-file", "symlink-dangling", "fifo", "directory",
              "dev-zero"]


def _make_special(path: Path, kind: str, good: bytes, scratch: Path) -> Path:
    """Put something that is not a plain file at ``path``; returns the path to read (the
    ``dev-zero`` kind reads /dev/zero itself where the reader takes a path)."""
    if kind == "symlink-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-file":
        target = scratch / "target"
        target.write_bytes(good)
        path.symlink_to(target)
    elif kind == "symlink-dangling":
        path.symlink_to(scratch / "created-through-a-link")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        return Path("/dev/zero")
    return path


def _clear(path: Path) -> None:
    if path.is_symlink() or path.exists():
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()


# ------------------------------------------------------------------------ compile cache

@pytest.fixture(scope="module")
def compile_entry(tmp_path_factory):
    from tritium.compile_cache import CompileCache
    from tritium.driver import compile_program

    root = tmp_path_factory.mktemp("compile-cache")
    cache = CompileCache(root / "compile")
    compile_program(ROOT / "examples" / "mlp.tri", with_ir=False, cache=cache)
    (entry,) = cache.entries()
    data = entry.read_bytes()
    return Fixture((root, entry.stem, data, json.loads(data)))


@st.composite
def compile_mutations(draw, data: bytes, outer: dict) -> tuple[str, bytes | str]:
    from tritium.compile_cache import _entry_bytes

    kind = draw(st.sampled_from(["bytes", "json", "forged", "foreign", "special"]))
    if kind == "bytes":
        return kind, draw(byte_edits(data))
    if kind == "json":
        return kind, draw(json_edits(outer))
    if kind == "forged":   # a payload edit with its checksum recomputed for this key
        payload = draw(value_edits(outer["payload"]))
        try:
            return kind, _entry_bytes(outer["key"], payload)
        except (ValueError, TypeError, AttributeError):
            return kind, json.dumps({**outer, "payload": payload}).encode()
    if kind == "foreign":  # a valid entry of another key
        return kind, _entry_bytes(hashlib.sha256(b"another program").hexdigest(),
                                  outer["payload"])
    return kind, draw(st.sampled_from(FILE_KINDS))


def _forgeable_payload(raw: bytes) -> Any:
    try:
        return json.loads(raw)["payload"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


@FUZZ
@given(data=st.data())
def test_fuzz_compile_cache_reader(compile_entry, data) -> None:
    from tritium.compile_cache import CompileCache
    from tritium.driver.compile import _valid_payload

    root, key, good, outer = compile_entry
    cache = CompileCache(root / "compile")
    path = cache._path(key)
    kind, mutated = data.draw(compile_mutations(good, outer))
    _clear(path)
    scratch = Path(tempfile.mkdtemp(dir=root))
    if kind == "special":
        _make_special(path, mutated, good, scratch)   # type: ignore[arg-type]
    else:
        path.write_bytes(mutated)                     # type: ignore[arg-type]
    before = _tree(scratch)
    with no_hang():
        got = cache.get(key, _valid_payload)
    assert _tree(scratch) == before, "a file was created outside the cache"
    if got is not None:
        if kind == "forged":
            # a well-formed payload under a checksum recomputed for its own key is what the
            # cache can serve; it must still be a valid compile payload
            assert got == _forgeable_payload(mutated) and _valid_payload(got) is None
        else:
            assert got == outer["payload"], f"a corrupt entry ({kind}) was accepted"
    _clear(path)
    path.write_bytes(good)
    for p in scratch.iterdir():
        p.unlink()
    scratch.rmdir()


# ------------------------------------------------------------------------ kernel cache

@pytest.fixture(scope="module")
def kernel_build(tmp_path_factory):
    from tritium.backends.cpu import build as build_mod

    if build_mod.find_compiler() is None:
        pytest.skip("no C compiler")
    root = tmp_path_factory.mktemp("kernel-cache")
    built = build_mod.build(build_mod.KernelConfig(isa="scalar", pool="pthread"),
                            cache_dir=root / "kernels")
    digest = built.path.with_suffix(".sha256").read_text()
    return Fixture((root, built, digest))


@st.composite
def sidecar_mutations(draw, digest: str) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["bytes", "text", "special"]))
    if kind == "bytes":
        return kind, draw(byte_edits(digest.encode()))
    if kind == "text":
        return kind, draw(st.one_of(
            st.just(digest.upper()), st.just(digest + "\n"), st.just(" " + digest + " \n"),
            st.just(digest * 2), st.just("0" * 64), st.text(max_size=80),
            st.just(digest[:-1]), st.just(digest + "0" * 10_000))).encode("utf-8",
                                                                          "surrogatepass")
    return kind, draw(st.sampled_from(FILE_KINDS))


@FUZZ
@given(data=st.data())
def test_fuzz_kernel_sidecar_reader(kernel_build, data) -> None:
    from tritium.backends.cpu import build as build_mod

    root, built, digest = kernel_build
    side = built.path.with_suffix(".sha256")
    kind, mutated = data.draw(sidecar_mutations(digest))
    _clear(side)
    scratch = Path(tempfile.mkdtemp(dir=root))
    if kind == "special":
        _make_special(side, mutated, digest.encode(), scratch)
    else:
        side.write_bytes(mutated)
    before = _tree(scratch)
    with no_hang():
        verified = build_mod._verified(built.path)
    assert _tree(scratch) == before, "a file was created outside the cache"
    if verified:   # accepted only when the sidecar is a plain file naming the real digest
        assert kind != "special" and mutated.decode("ascii").strip() == digest
    _clear(side)
    side.write_text(digest)
    for p in scratch.iterdir():
        p.unlink()
    scratch.rmdir()
    assert build_mod._verified(built.path)


@FUZZ
@given(data=st.data())
def test_fuzz_kernel_failure_marker_reader(kernel_build, data) -> None:
    """A ``.failed`` marker is honoured only when it is a well-formed, recent, deterministic
    record for exactly this build."""
    from tritium.backends.cpu import build as build_mod

    root, built, _ = kernel_build
    marker = root / "kernels" / "fuzz.failed"
    now = 1_800_000_000.0     # fixed: the drawn edits must not depend on the clock
    record = {"format": 1, "key": "k" * 64, "compiler": "/usr/bin/cc",
              "compiler_version": "cc 1.0", "when": now - 10,
              "when_utc": "2026-01-01T00:00:00Z", "deterministic": True, "reason": "no omp"}
    kind = data.draw(st.sampled_from(["bytes", "json", "special", "good"]))
    _clear(marker)
    scratch = Path(tempfile.mkdtemp(dir=root))
    raw = json.dumps(record).encode()
    if kind == "special":
        _make_special(marker, data.draw(st.sampled_from(FILE_KINDS)), raw, scratch)
        mutated = None
    else:
        mutated = {"bytes": lambda: data.draw(byte_edits(raw)),
                   "json": lambda: data.draw(json_edits(record)),
                   "good": lambda: raw}[kind]()
        marker.write_bytes(mutated)
    with no_hang():
        got = build_mod.honoured_failure(marker, "k" * 64, "/usr/bin/cc", "cc 1.0\nmore",
                                         now=now)
    if got is not None:
        assert mutated is not None
        parsed = json.loads(mutated)
        assert parsed["deterministic"] is True and parsed["key"] == "k" * 64
        assert parsed["compiler"] == "/usr/bin/cc" and parsed["compiler_version"] == "cc 1.0"
        assert 0 <= now - parsed["when"] <= build_mod.FAILED_MARKER_TTL_S
        assert parsed["reason"] in got
    elif kind == "good":
        raise AssertionError("a valid marker was not honoured")
    _clear(marker)
    for p in scratch.iterdir():
        p.unlink()
    scratch.rmdir()


# ------------------------------------------------------------------------ checkpoints

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch
    from torch import nn

    from tritium.runtime import load_checkpoint, save_checkpoint
    from tritium.runtime.layers import Int8Linear, TernaryLinear, freeze_model

    torch.manual_seed(0)
    model = nn.Sequential(TernaryLinear(24, 16), nn.BatchNorm1d(16), nn.ReLU(),
                          TernaryLinear(16, 8, quantizer="absmean"), Int8Linear(8, 4))
    model.train()
    model(torch.randn(8, 24))
    model = freeze_model(model.eval())
    root = tmp_path_factory.mktemp("checkpoints")
    path = root / "good.safetensors"
    extra = {"tritium.source": "model M {\n}\n", "tritium.entry": "M",
             "tritium.normalization": "[0.0, 1.0]", "tritium.input_shape": "[24]"}
    save_checkpoint(path, model, source_hash="h", extra=extra)
    data = path.read_bytes()
    state, _ = load_checkpoint(path)
    return Fixture((root, data, state))


def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header_text: bytes, rest: bytes) -> bytes:
    return struct.pack("<Q", len(header_text)) + header_text + rest


def _v3_encode(raw: bytes) -> str:
    from tritium.runtime.checkpoint_format import _V3_ZDICT

    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _V3_ZDICT)
    return base64.b85encode(c.compress(raw) + c.flush()).decode("ascii")


@st.composite
def checkpoint_mutations(draw, data: bytes) -> tuple[str, Any]:
    from tritium.runtime.checkpoint_format import _v4_blob

    header, rest = _split(data)
    kind = draw(st.sampled_from(["bytes", "header", "field", "blob3", "extra", "length",
                                 "special"]))
    meta = header["__metadata__"]
    if kind == "bytes":
        return kind, draw(byte_edits(data))
    if kind == "header":
        return kind, _join(draw(json_edits(header)), rest)
    if kind == "field":   # one of version 4's plain JSON fields
        key = draw(st.sampled_from(["tritium.layers", "tritium.packed", "tritium.float16",
                                    "tritium.folds"]))
        meta[key] = draw(json_edits(json.loads(meta[key]))).decode("utf-8", "replace")
        return kind, _join(json.dumps(header).encode(), rest)
    if kind == "blob3":   # the same checkpoint as version 3, its compressed field edited
        edited = draw(json_edits(_v4_blob(meta)))
        header["__metadata__"] = {"tritium.checkpoint_version": "3",
                                  "tritium": _v3_encode(edited)}
        return kind, _join(json.dumps(header).encode(), rest)
    if kind == "extra":   # the run metadata strings a `tritium train` checkpoint carries
        key = draw(st.sampled_from(["tritium.normalization", "tritium.input_shape",
                                    "tritium.num_classes", "tritium.hyperparameters",
                                    "tritium.entry", "tritium.source", "tritium.file",
                                    "tritium.variant", "tritium.format",
                                    "tritium.packing_version", "tritium.digest",
                                    "tritium.version"]))
        meta[key] = draw(st.one_of(
            st.sampled_from(["[NaN, 1.0]", "[0, Infinity]", "[1e999]", "[" * 5000, "0",
                             "-1", "1" * 5000, "{}", "null", "", "\x00", "/dev/zero"]),
            st.text(max_size=30)))
        return kind, _join(json.dumps(header).encode(), rest)
    if kind == "length":
        n = draw(st.sampled_from([0, 1, 2 ** 63, 2 ** 64 - 1, 100 * 1024 * 1024 + 1,
                                  len(data), len(data) - 8]))
        return kind, struct.pack("<Q", n) + data[8:]
    return kind, draw(st.sampled_from(FILE_KINDS))


def _same_state(a: dict, b: dict) -> bool:
    import torch

    if set(a) != set(b):
        return False
    return all(a[k].shape == b[k].shape and torch.equal(a[k].double(), b[k].double())
               for k in a)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_reader(checkpoint, data) -> None:
    from tritium.driver.models import ModelBuildError, RunInfo
    from tritium.runtime import CheckpointError, load_checkpoint

    root, good, state = checkpoint
    path = root / "fuzz.safetensors"
    _clear(path)
    kind, mutated = data.draw(checkpoint_mutations(good))
    scratch = Path(tempfile.mkdtemp(dir=root))
    target = path
    if kind == "special":
        target = _make_special(path, mutated, good, scratch)
    else:
        path.write_bytes(mutated)
    before = _tree(scratch)
    try:
        with no_hang():
            got, meta = load_checkpoint(target)
    except CheckpointError as err:
        assert str(target) in str(err) and err.problem
        got = None
    assert _tree(scratch) == before, "a file was created"
    if got is not None:
        assert _same_state(got, state), f"a corrupt checkpoint ({kind}) loaded other tensors"
        try:   # the run metadata a train checkpoint carries: validated or a clear error
            RunInfo.from_extra(meta.extra, str(target))
        except (CheckpointError, ModelBuildError):
            pass
    _clear(path)
    for p in scratch.iterdir():
        p.unlink()
    scratch.rmdir()
