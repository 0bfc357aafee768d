"""The tuning archive read back by the runtime is untrusted and never waited for: malformed
studies and trials are skipped, every config is checked against the kernel's legal values
before it configures anything (one warning per process), and a tuner holding the database
locked leaves inference untuned instead of blocking it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.backends.cpu.build import _PARAMS, KernelConfig
from tritium.runtime import kernels
from tritium.tune import archive as archive_mod
from tritium.tune import cpu, dispatch
from tritium.tune.archive import Archive, ArchiveError, read_export
from tritium.tune.space import Trial

ROOT = Path(__file__).resolve().parents[3]
ISA = cpu.default_isa()
SHAPE = (16, 64, 64)


def _make_archive(db: Path, config: dict | None = None) -> None:
    ar = Archive(f"sqlite:///{db}")
    fp = cpu.device_fingerprint(cpu.device_info(ISA))
    sid = ar.study("cpu.linear", cpu.source_hash(), SHAPE, "t2", fp, {})
    ar.set_baseline(sid, 1.0, 2.0)
    ar.set_confirmed_speedup(sid, 2.0)   # won side by side: dispatch may run it
    cfg = config if config is not None else {"threads": 1}
    tid = ar.claim(sid, cfg, "grid")
    ar.record(tid, Trial(config=cfg, strategy="grid", status="ok", median_ms=0.5,
                         times_ms=[0.5]))
    ar.close()


def _sql(db: Path, statement: str, *params) -> None:
    with sqlite3.connect(db) as c:
        c.execute(statement, params)


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "tune.db"
    monkeypatch.setenv("TRITIUM_TUNE_STORAGE", f"sqlite:///{path}")
    kernels.set_config_resolver(None)
    dispatch.reset()
    _make_archive(path)
    yield path
    kernels.set_config_resolver(None)
    dispatch.reset()


def _resolve() -> object:
    return dispatch.resolve(*SHAPE, "t2", "int8", ISA)


def test_a_valid_archive_is_used(db):
    assert _resolve() == KernelConfig(isa=ISA, threads=1)


@pytest.mark.parametrize("statement, params, why", [
    ("UPDATE trials SET config = ?", ('{"threads": 100000}',), "illegal CPU kernel config"),
    ("UPDATE trials SET config = ?", ('{"tok_chunk": 3}',), "illegal CPU kernel config"),
    ("UPDATE trials SET config = ?", ('{"threads": "4"}',), "illegal CPU kernel config"),
    ("UPDATE trials SET config = ?", ('{"threads": true}',), "illegal CPU kernel config"),
    ("UPDATE trials SET config = ?", ('{"evil": "__import__(\'os\')"}',), "illegal"),
    ("UPDATE trials SET config = ?", ("[" * 100_000,), "malformed entry"),
    ("UPDATE trials SET config = ?", ('{"a": {"b": 1}}',), "malformed entry"),
    ("UPDATE trials SET config = ?", ('{"threads": NaN}',), "malformed entry"),
    ("UPDATE trials SET config = ?", ("not json",), "malformed entry"),
    ("UPDATE trials SET median_ms = ?", (-1.0,), "malformed entry"),
    ("UPDATE trials SET median_ms = ?", (float("inf"),), "malformed entry"),
    ("UPDATE trials SET median_ms = ?", ("fast",), "malformed entry"),
    ("UPDATE studies SET shape = ?", ("a,b,c",), "malformed entry"),
    ("UPDATE studies SET shape = ?", ("1" * 5000,), "malformed entry"),
    ("UPDATE studies SET default_ms = ?", (float("-inf"),), "malformed entry"),
    ("UPDATE studies SET confirmed_speedup = ?", (float("inf"),), "malformed entry"),
])
def test_a_malformed_archive_is_ignored_with_one_warning(db, statement, params, why):
    _sql(db, statement, *params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _resolve() is None
        for m in (1, 2, 4, 8, 32):               # other problems: no second warning
            dispatch.resolve(m, 64, 64, "t2", "int8", ISA)
    ours = [w for w in caught if "tuning archive" in str(w.message)]
    assert len(ours) == 1 and why in str(ours[0].message), [str(w.message) for w in caught]
    assert any(why in e for e in dispatch.errors())


def test_nan_and_a_deep_device_are_harmless(db):
    _sql(db, "UPDATE trials SET median_ms = ?", float("nan"))   # SQLite stores NULL
    assert _resolve() is None
    dispatch.reset()
    _sql(db, "UPDATE trials SET median_ms = 0.5")
    _sql(db, "UPDATE studies SET device = ?", "[" * 100_000)
    assert _resolve() == KernelConfig(isa=ISA, threads=1)


@pytest.mark.parametrize("planted", [{"threads": 1_000_000_000}, {"threads": 1, "bogus": 3}])
def test_an_illegal_best_row_gives_way_to_the_studys_next_legal_config(tmp_path, monkeypatch,
                                                                       planted):
    """A planted (or corrupt) row faster than the study's real winner: the runtime runs the
    next legal config of that shape, from the archive and from the records file alike (the
    whole study's tuning was ignored, with a warning that the default kernels ran)."""
    path = tmp_path / "t.db"
    monkeypatch.setenv("TRITIUM_TUNE_STORAGE", f"sqlite:///{path}")
    ar = Archive(f"sqlite:///{path}")
    device = cpu.device_info(ISA)
    sid = ar.study("cpu.linear", cpu.source_hash(), SHAPE, "t2", cpu.device_fingerprint(device),
                   device)
    ar.set_baseline(sid, 1.0, 2.0)
    ar.set_confirmed_speedup(sid, 2.0)
    for config, ms in (({"threads": 2}, 0.7), ({"threads": 1}, 0.5), (planted, 0.001)):
        ar.record(ar.claim(sid, config, "grid"),
                  Trial(config=config, strategy="grid", status="ok", median_ms=ms, times_ms=[ms]))
    ar.close()
    kernels.set_config_resolver(None)
    dispatch.reset()
    try:
        with pytest.warns(RuntimeWarning, match="illegal CPU kernel config"):
            assert _resolve() == KernelConfig(isa=ISA, threads=1)
        records = dispatch.build_records()
        assert [(r["shape"], r["config"]) for r in records] == [(list(SHAPE), {"threads": 1})]
    finally:
        kernels.set_config_resolver(None)
        dispatch.reset()


VALUES = st.one_of(st.integers(-10, 100_000), st.booleans(), st.text(max_size=8),
                   st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([v for p in _PARAMS for v in p.values]))
NAMES = st.sampled_from([p.name for p in _PARAMS] + ["isa", "bogus", "__class__", ""])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(NAMES, VALUES, max_size=5))
def test_generated_archived_configs_configure_only_legal_kernels(db, config):
    _sql(db, "UPDATE trials SET config = ?", json.dumps(config))
    dispatch.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        answer = _resolve()
    if answer is None:
        return
    assert isinstance(answer, KernelConfig) and answer.isa == ISA
    legal = {p.name: p.values for p in KernelConfig.search_params(ISA)}
    assert set(config) <= set(legal)
    for name, value in config.items():
        assert value in legal[name] and type(value) is type(getattr(answer, name))
        assert getattr(answer, name) == value


@pytest.mark.parametrize("kernel", ["triton.linear_t2", "triton.quantize_int8"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_generated_triton_configs_are_used_only_when_legal(kernel, data):
    pytest.importorskip("tritium.tune.triton_space")
    from tritium.tune.triton_space import triton_space

    shape = (16, 256, 256)
    space = triton_space(kernel, shape)
    values = st.sampled_from([v for p in space.params for v in p.values] + [0, 3, 10**6, "x"])
    names = st.sampled_from(list(space.names) + ["BLOCK_Q", "num_ctas"])
    config = data.draw(st.one_of(
        st.just(space.default()),
        st.dictionaries(names, values, max_size=7),
        st.builds(lambda d, extra: {**d, **extra}, st.just(space.default()),
                  st.dictionaries(names, values, max_size=2))))
    dispatch.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = dispatch._legal_triton_config(kernel, shape, config)
    if got is not None:
        assert space.validate(got) is None
    else:
        assert space.validate(config) is not None


_HOLDER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("BEGIN EXCLUSIVE")
c.execute("UPDATE studies SET created_at = created_at + 1")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold(db: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_dispatch_does_not_wait_while_another_process_holds_the_archive(db):
    holder = _hold(db, 120)
    try:
        t = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert _resolve() is None
        assert time.monotonic() - t < 2
        assert not [w for w in caught if "tuning archive" in str(w.message)]   # busy: quiet
        assert any("busy" in e for e in dispatch.errors())
    finally:
        holder.kill()
        holder.wait()
    dispatch.reset()
    assert _resolve() == KernelConfig(isa=ISA, threads=1)        # free again: tuned


def test_predict_takes_its_usual_time_while_the_tuner_holds_the_archive(db, tmp_path):
    import numpy as np

    samples = tmp_path / "x.npy"
    np.save(samples, np.random.default_rng(0).random((4, 64), dtype=np.float32) * 16)
    ckpt = ROOT / "tests" / "unit" / "driver" / "data" / "mlp_v2.safetensors"
    env = {**os.environ, "TRITIUM_CACHE_DIR": str(tmp_path / "cache"),
           "TRITIUM_TUNE_STORAGE": f"sqlite:///{db}", "PYTHONPATH": str(ROOT / "src")}

    def predict() -> float:
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "tritium", "predict", str(ckpt), str(samples)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0 and "class" in r.stdout, r.stderr
        return time.monotonic() - t

    usual = predict()
    holder = _hold(db, 300)
    try:
        held = predict()
    finally:
        holder.kill()
        holder.wait()
    assert held < usual + 5, (usual, held)


def test_the_reader_opens_only_regular_files_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TRITIUM_TUNE_STORAGE", raising=False)
    default = archive_mod.default_db_path()
    default.parent.mkdir(parents=True)
    os.mkfifo(default)
    with pytest.raises(ArchiveError, match="not a regular file"):
        Archive(read_only=True)
    default.unlink()
    real = tmp_path / "real.db"
    _make_archive(real)
    default.symlink_to(real)          # the cache's own file is never a link
    with pytest.raises(ArchiveError, match="not a regular file"):
        Archive(read_only=True)
    monkeypatch.setenv("TRITIUM_TUNE_STORAGE", f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(ArchiveError, match="No such file"):
        Archive(read_only=True)
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "deep", "nan", "not-utf8"])
def test_a_hostile_export_file_is_one_clear_error(tmp_path, kind):
    path = tmp_path / "export.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "deep":
        path.write_text("[" * 100_000)
    elif kind == "nan":
        path.write_text('{"format": "tritium-tune-archive", "version": 1, "studies": '
                        '[{"default_ms": NaN}]}')
    else:
        path.write_bytes(b"\xff\xfe{}")
    t = time.monotonic()
    with pytest.raises(ArchiveError) as err:
        read_export(path)
    assert time.monotonic() - t < 5 and str(path) in str(err.value)
