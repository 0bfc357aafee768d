"""Imported and archived tuning configs are checked against the kernel's search space: an
illegal value or an unknown kernel name is one clear error on import, and a planted archive
row never crashes a strategy (hostile archives, tuning archives are untrusted)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tritium.cli import main
from tritium.tune.archive import Archive, ArchiveError, read_export
from tritium.tune.cpu import linear_space
from tritium.tune.space import Trial
from tritium.tune.strategies import HeuristicStrategy, RandomStrategy, TPEStrategy
from tritium.tune.strategy import TuneContext

SPACE = linear_space("cpu.linear", 1, "avx2")
GOOD = {**SPACE.default(), "threads": 2}


def _export(config, kernel="cpu.linear", device=None) -> dict:
    return {"format": "tritium-tune-archive", "version": 1, "studies": [{
        "kernel": kernel, "source_hash": "src", "shape": [1, 256, 256], "format": "t2",
        "device_fingerprint": "dev", "device": device or {"isa": "avx2", "kind": "cpu"},
        "trials": [
            {"config": SPACE.default(), "status": "ok", "median_ms": 1.0},
            {"config": config, "status": "ok", "median_ms": 0.5},
        ]}]}


@pytest.mark.parametrize("change, message", [
    ({"threads": 1_000_000_000}, "studies[0].trials[1].config: not a cpu.linear config: "
                                 "threads=1000000000 is not one of"),
    ({"threads": "2"}, "threads='2' is not one of"),
    ({"threads": True}, "threads=True is not one of"),
    ({"threads": 2.0}, "threads=2.0 is not one of"),
    ({"pool": "evil"}, "pool='evil' is not one of"),
    ({"bogus": 1}, "unknown parameter(s) 'bogus'"),
])
def test_an_illegal_config_is_rejected_on_import(tmp_path, capsys, change, message):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_export({**GOOD, **change})))
    with pytest.raises(ArchiveError, match="malformed tuning export"):
        read_export(path)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert main(["tune", "--storage", url, "--import", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert Archive(url).find_studies() == []   # nothing half-imported


@pytest.mark.parametrize("kernel", ["\x1b]0;PWNED\x07", "cpu.linear\n", "gpu.magic", "../x"])
def test_an_unknown_or_hostile_kernel_name_is_rejected_on_import(tmp_path, capsys, kernel):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_export(GOOD, kernel=kernel)))
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert main(["tune", "--storage", url, "--import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "studies[0].kernel: unknown kernel" in err and "\x1b" not in err
    assert "\x07" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("shape", [[1, 2**62, 256], [1] * 9, [1, 256]])
def test_a_shape_the_archive_cannot_read_back_is_rejected_on_import(tmp_path, shape):
    doc = _export(GOOD)
    doc["studies"][0]["shape"] = shape
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ArchiveError, match=r"studies\[0\]"):
        read_export(path)


def test_a_cpu_study_without_an_isa_is_rejected_and_a_legal_one_imports(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_export(GOOD, device={"kind": "cpu"})))
    with pytest.raises(ArchiveError, match=r"device's ISA"):
        read_export(path)
    path.write_text(json.dumps(_export(GOOD)))
    assert Archive(f"sqlite:///{tmp_path / 'a.db'}").import_json(path) == (2, 0)


@pytest.mark.parametrize("planted", [
    {**GOOD, "threads": 1_000_000_000},
    {"threads": 1_000_000_000, "pool": "openmp"},
    {**GOOD, "threads": "2"},
])
@pytest.mark.parametrize("strategy", [HeuristicStrategy, RandomStrategy, TPEStrategy])
def test_strategies_skip_archived_configs_outside_the_space(strategy, planted):
    history = [Trial(SPACE.default(), "x", median_ms=1.0, number=0),
               Trial(planted, "x", median_ms=0.1, number=1),
               Trial({**GOOD, "threads": 4}, "x", median_ms=0.9, number=2)]
    ctx = TuneContext("cpu.linear", (1, 256, 256), {}, prior=[((1, 256, 256), planted, 0.1)])
    s = strategy(seed=0)
    for i in range(5):
        config = s.suggest(SPACE, history, ctx)
        assert config is not None and SPACE.validate(config) is None
        history.append(Trial(config, "x", median_ms=0.95 + i / 100, number=3 + i))
    assert list(SPACE.neighbours(planted)) == []


def test_a_planted_archive_row_does_not_crash_the_next_tune(tmp_path, capsys):
    """The tester's case: the archive's best trial holds threads=10**9 (or lacks parameters);
    the heuristic strategy then crashed with `tuple.index(x): x not in tuple` / KeyError."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ar = Archive(url)
    sid = ar.study("cpu.linear", "src", (1, 256, 256), "t2", "dev", {"isa": "avx2"})
    for config, ms in ((SPACE.default(), 1.0), ({**GOOD, "threads": 4}, 0.9), (GOOD, 0.8)):
        ar.record(ar.claim(sid, config, "x"), Trial(config, "x", median_ms=ms))
    ar.close()
    db = sqlite3.connect(tmp_path / "a.db")
    db.execute("update trials set config=? where config_key=?",
               (json.dumps({"threads": 1_000_000_000, "pool": "openmp"}),
                json.dumps(GOOD, sort_keys=True, separators=(",", ":"))))
    db.commit()
    db.close()
    ar = Archive(url)
    history = ar.history(sid)
    s = HeuristicStrategy(seed=0)
    ctx = TuneContext("cpu.linear", (1, 256, 256), {"isa": "avx2"})
    config = s.suggest(SPACE, history, ctx)
    assert config is not None and SPACE.validate(config) is None


def test_export_leaves_out_what_import_would_refuse(tmp_path, capsys):
    """Planted or corrupt archive rows (an illegal config, a config that is not JSON, a study
    of an unknown kernel or without its ISA) are left out of `--export` with one warning, so
    the file imports on another machine (it held them and `--import` refused it whole)."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ar = Archive(url)
    sid = ar.study("cpu.linear", "src", (1, 256, 256), "t2", "dev", {"isa": "avx2"})
    rows = [(SPACE.default(), 1.0), (GOOD, 0.8), ({"threads": 1_000_000_000}, 0.1),
            ({**GOOD, "threads": 4}, 0.9)]
    for config, ms in rows:
        ar.record(ar.claim(sid, config, "x"), Trial(config, "x", median_ms=ms))
    for kernel, device in (("gpu.magic", {"isa": "avx2"}), ("cpu.linear", {})):
        other = ar.study(kernel, "src", (1, 256, 256), "t2", "dev2", device)
        ar.record(ar.claim(other, GOOD, "x"), Trial(GOOD, "x", median_ms=0.5))
    ar.close()
    db = sqlite3.connect(tmp_path / "a.db")
    db.execute("update trials set config='not json' where config_key=?",
               (json.dumps({**GOOD, "threads": 4}, sort_keys=True, separators=(",", ":")),))
    db.commit()
    db.close()
    path = tmp_path / "x.json"
    assert main(["tune", "--storage", url, "--export", str(path)]) == 0
    err = capsys.readouterr().err
    assert "left out 4 archive rows that --import would refuse" in err
    assert len(err.splitlines()) == 1
    doc = read_export(path)
    assert [[t["config"] for t in s["trials"]] for s in doc["studies"]] == [
        [SPACE.default(), GOOD]]
    other = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["tune", "--storage", other, "--import", str(path)]) == 0
    assert "imported 2 trials" in capsys.readouterr().out


def test_export_names_a_missing_archive_and_filters_by_kernel_alone(tmp_path, capsys):
    """`--export` of a storage with no archive created it (and its directories: a typo'd
    path) and wrote an empty export; `--kernel K --export F`, the documented filter, said
    `--kernel needs --shape`."""
    missing = tmp_path / "typo" / "a.db"
    assert main(["tune", "--storage", f"sqlite:///{missing}", "--export",
                 str(tmp_path / "x.json")]) == 2
    assert "nothing to export: there is no tuning archive at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists() and not (tmp_path / "x.json").exists()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ar = Archive(url)
    for kernel in ("cpu.linear", "cpu.linear_f32"):
        space = linear_space(kernel, 1, "avx2")
        sid = ar.study(kernel, "src", (1, 256, 256), "t2", "dev", {"isa": "avx2"})
        ar.record(ar.claim(sid, space.default(), "x"), Trial(space.default(), "x", median_ms=1))
    ar.close()
    assert main(["tune", "--storage", url, "--kernel", "cpu.linear_f32", "--export",
                 str(tmp_path / "x.json")]) == 0
    assert [s["kernel"] for s in read_export(tmp_path / "x.json")["studies"]] == [
        "cpu.linear_f32"]


def test_cache_info_never_prints_a_control_character_of_the_archive(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TRITIUM_TUNE_STORAGE", raising=False)
    ar = Archive()
    ar.study("\x1b]0;PWNED\x07\x1b[2J", "src", (1, 8, 8), "t2", "dev", {"isa": "avx2"})
    ar.close()
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;PWNED" in out


def test_a_dispatch_warning_during_tune_is_one_line(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("TRITIUM_TUNE_STORAGE", url)
    ar = Archive(url)
    sid = ar.study("cpu.linear", "src", (1, 256, 256), "t2", "dev", {"isa": "avx2"})
    bad = {**GOOD, "pool": "\x1b[31mevil"}
    ar.record(ar.claim(sid, bad, "x"), Trial(bad, "x", median_ms=0.5))
    ar.set_confirmed_speedup(sid, 2.0)
    ar.close()
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_export(GOOD)))
    assert main(["tune", "--import", str(path)]) == 0
    err = capsys.readouterr().err
    assert "tritium tune: warning: " in err and "illegal CPU kernel config" in err
    assert "\x1b" not in err and "_warn_once(" not in err and len(err.splitlines()) == 1


def test_a_planted_row_is_neither_the_best_nor_shown_and_nothing_prints_raw(tmp_path):
    """A planted archive row faster than anything (and one with control characters and rich
    markup in a legal config's strategy) never wins, never shows as a top config, and the
    table never prints a control character or interprets markup."""
    import io

    from rich.console import Console

    from tritium.tune.cli import _print_result
    from tritium.tune.loop import tune
    from tritium.tune.strategies import GridStrategy

    from .test_loop import FAST, Doubler

    url = f"sqlite:///{tmp_path / 'a.db'}"
    ar = Archive(url)
    p = Doubler()
    sid = ar.study(p.kernel, "", p.shape, p.fmt, "", {})
    planted = {"a": 0, "b": "\x1b]0;PWNED\x07"}
    ar.record(ar.claim(sid, planted, "x"), Trial(planted, "x", median_ms=1e-9))
    legal = {"a": 3, "b": 2}
    ar.record(ar.claim(sid, legal, "[/bogus]\x1b[31m"),
              Trial(legal, "[/bogus]\x1b[31m", median_ms=1e-8))
    result = tune(p, GridStrategy(), ar, budget=2, settings=FAST, stability=False)
    assert result.best is not None and result.best.config == legal
    assert planted not in [t.config for t in result.history]
    buf = io.StringIO()
    _print_result(Console(file=buf, width=200), result, 5)
    out = buf.getvalue()
    assert "\x1b" not in out and "\x07" not in out and "[/bogus]" in out


def test_the_markdown_report_escapes_control_characters(tmp_path):
    from tritium.tune.report import write_report

    trials = [Trial({"pool": "\x1b]0;PWNED\x07", "x": i}, "grid", median_ms=1.0 + i, number=i)
              for i in range(3)]
    md = write_report(tmp_path, {"grid": trials}, {"kernel": "k"}).read_text()
    assert "\x1b" not in md and "\x07" not in md and "\\x1b]0;PWNED" in md
