"""The trial archive: claims, queries, two concurrent workers, export/import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tritium.tune.archive import Archive, ArchiveError, read_export
from tritium.tune.space import Trial


def _url(tmp_path: Path, name: str = "a.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _study(ar: Archive, shape=(8, 64, 64), kernel="cpu.linear") -> int:
    return ar.study(kernel, "src1", shape, "t2", "dev1", {"isa": "avx2"})


def test_claim_is_unique_per_study_and_config(tmp_path):
    ar = Archive(_url(tmp_path))
    sid = _study(ar)
    assert _study(ar) == sid
    tid = ar.claim(sid, {"a": 1, "b": 2}, "grid")
    assert tid is not None
    assert ar.claim(sid, {"b": 2, "a": 1}, "random") is None  # same config, other key order
    other = _study(ar, shape=(1, 64, 64))
    assert ar.claim(other, {"a": 1, "b": 2}, "grid") is not None
    assert [t.status for t in ar.history(sid)] == ["running"]
    ar.record(tid, Trial({"a": 1, "b": 2}, "grid", median_ms=0.5, ci_ms=(0.4, 0.6),
                         times_ms=[0.4, 0.5, 0.6]))
    (t,) = ar.history(sid)
    assert (t.status, t.median_ms, t.ci_ms, t.times_ms) == ("ok", 0.5, (0.4, 0.6),
                                                            [0.4, 0.5, 0.6])


def test_best_history_and_statistics(tmp_path):
    ar = Archive(_url(tmp_path))
    sid = _study(ar)
    for i, (status, ms) in enumerate([("ok", 2.0), ("ok", 1.0), ("wrong", None),
                                      ("noisy", 0.1), ("ok", 1.5)]):
        tid = ar.claim(sid, {"a": i}, "tpe" if i % 2 else "random")
        ar.record(tid, Trial({"a": i}, "x", status=status, median_ms=ms))
    ar.set_baseline(sid, 2.5, 30.0)
    assert ar.best(sid).config == {"a": 1}  # the noisy 0.1 is not trusted
    stats = ar.statistics(sid)
    assert stats["by_status"] == {"ok": 3, "wrong": 1, "noisy": 1}
    assert stats["by_strategy"] == {"random": 3, "tpe": 2}
    assert (stats["best_ms"], stats["default_ms"], stats["fp32_ms"]) == (1.0, 2.5, 30.0)
    rows = ar.best_per_study("cpu.linear", "dev1", "t2", "src1")
    assert [(s["shape"], c, ms) for s, c, ms in rows] == [((8, 64, 64), {"a": 1}, 1.0)]
    assert ar.best_per_study("cpu.linear", "other-device") == []


_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from tritium.tune.archive import Archive
    from tritium.tune.loop import tune
    from tritium.tune.measure import Settings
    from tritium.tune.space import Param, SearchSpace
    from tritium.tune.strategies import make_strategy

    class Slow:
        kernel, shape, fmt = "fake.slow", (2, 3, 4), "t2"
        def space(self):
            return SearchSpace(self.kernel, (Param("a", tuple(range(6)), 0),
                                             Param("b", tuple(range(5)), 0)))
        def inputs(self, seed):
            return torch.full((3,), float(seed))
        def reference(self, x):
            return x * 2
        def output(self, x):
            return torch.empty(3)
        def runner(self, config):
            def run(x, out):
                time.sleep(0.002)
                torch.mul(x, 2, out=out)
            return run
        def check(self, got, want):
            return None if torch.equal(got, want) else "differs"
        def fp32_runner(self, x):
            return lambda: x * 2

    url, go, strategy, seed = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    ar = Archive(url)
    go.with_name("ready-" + sys.argv[5]).touch()   # imported: the start line is the same
    while not go.exists():
        time.sleep(0.01)
    r = tune(Slow(), make_strategy(strategy, seed=seed), ar, baseline=False, stability=False,
             settings=Settings(warmup=0, samples=3, min_sample_s=0.0, max_rel_ci=100.0),
             device_fingerprint="d", source_hash="s")
    print(len(r.trials))
""")


def test_two_worker_processes_share_one_search_without_loss_or_duplicates(tmp_path):
    url, go = _url(tmp_path), tmp_path / "go"
    Archive(url).close()  # tables exist before the race
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, url, str(go), strategy, "1",
                               str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i, strategy in enumerate(("grid", "grid"))]
    # both workers start together once both have imported torch and the tuner (on a busy
    # machine one import could take longer than the other's whole search of 30 configs)
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    counts = [int(out.split()[-1]) for out, _ in outs]
    ar = Archive(url)
    (study,) = ar.find_studies("fake.slow")
    hist = ar.history(study["id"])
    keys = [json.dumps(t.config, sort_keys=True) for t in hist]
    assert len(hist) == 30 == len(set(keys)) == sum(counts)  # every config once, none lost
    assert all(t.status == "ok" for t in hist)
    assert min(counts) > 0  # both workers measured part of the same search
    assert ar.statistics(study["id"])["workers"] == 2


def test_export_import_round_trip(tmp_path):
    from tritium.tune.cpu import linear_space

    # an export carries legal configs of the study's search space (import checks them)
    default = linear_space("cpu.linear", 8, "avx2").default()

    def cfg(i: int) -> dict:
        return {**default, "threads": (1, 2, 4, 0)[i % 4], "pool": ("openmp", "pthread")[i > 3]}

    a = Archive(_url(tmp_path, "a.db"))
    sid = _study(a)
    for i, ms in enumerate([3.0, 1.0, 2.0]):
        a.record(a.claim(sid, cfg(i), "tpe"),
                 Trial(cfg(i), "tpe", median_ms=ms, ci_ms=(ms - 0.1, ms + 0.1),
                       times_ms=[ms]))
    a.record(a.claim(sid, cfg(4), "tpe"),
             Trial(cfg(4), "tpe", status="invalid", reason="too big"))
    a.claim(sid, cfg(5), "tpe")  # still running: not exported
    a.set_baseline(sid, 2.5, 20.0)
    path = tmp_path / "tuned.json"
    assert a.export_json(path) == 1
    doc = json.loads(path.read_text())
    assert doc["format"] == "tritium-tune-archive" and doc["version"] == 1
    b = Archive(_url(tmp_path, "b.db"))
    assert b.import_json(path) == (4, 0)
    assert b.import_json(path) == (0, 4)  # idempotent
    (s,) = b.find_studies("cpu.linear")
    assert (s["shape"], s["default_ms"], s["fp32_ms"]) == ((8, 64, 64), 2.5, 20.0)
    best = b.best(s["id"])
    assert best.config == cfg(1) and best.ci_ms == (0.9, 1.1)
    assert [t.status for t in b.history(s["id"])] == ["ok", "ok", "ok", "invalid"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("[]", "top level: expected an object"),
    ('{"format": "other", "version": 1, "studies": []}', "format: expected"),
    ('{"format": "tritium-tune-archive", "version": 99, "studies": []}', "newer than"),
    ('{"format": "tritium-tune-archive", "version": 1, "studies": {}}', "studies: expected a list"),
    ('{"format": "tritium-tune-archive", "version": 1, "studies": [{"kernel": "k", '
     '"source_hash": "s", "format": "t2", "device_fingerprint": "d", "shape": [1, -2], '
     '"trials": []}]}', "studies[0].shape"),
    ('{"format": "tritium-tune-archive", "version": 1, "studies": [{"kernel": "k", '
     '"source_hash": "s", "format": "t2", "device_fingerprint": "d", "shape": [1, 2, 3], '
     '"trials": [{"config": {"a": 1}, "status": "great", "median_ms": 1.0}]}]}',
     "studies[0].trials[0].status: 'great' is not one of"),
    ('{"format": "tritium-tune-archive", "version": 1, "studies": [{"kernel": "k", '
     '"source_hash": "s", "format": "t2", "device_fingerprint": "d", "shape": [1, 2, 3], '
     '"trials": [{"config": {"a": 1}, "status": "ok", "median_ms": null}]}]}',
     "an ok trial needs a median"),
])
def test_malformed_exports_are_rejected_with_the_place_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ArchiveError) as e:
        read_export(path)
    assert message in str(e.value)
    ar = Archive(_url(tmp_path))
    with pytest.raises(ArchiveError):
        ar.import_json(path)
    assert ar.find_studies() == []  # nothing half-imported


def test_unusable_storage_gives_a_one_line_error(tmp_path):
    with pytest.raises(ArchiveError, match="invalid storage URL"):
        Archive("nosuchdialect://x")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(ArchiveError, match="cannot open the tuning archive") as e:
        Archive(f"sqlite:///{corrupt}")
    assert "\n" not in str(e.value)
