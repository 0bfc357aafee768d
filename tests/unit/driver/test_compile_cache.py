"""The compile driver and its cache: hits, corruption, invalidation by imports, eviction."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.compile_cache import CompileCache
from tritium.driver import CompileError, compile_program
from tritium.tune.archive import Archive

ROOT = Path(__file__).resolve().parents[3]
MLP = ROOT / "examples" / "mlp.tri"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    return CompileCache()


def test_second_compile_is_a_cache_hit_with_same_output(cache):
    a = compile_program(MLP, with_ir=False, cache=cache)
    b = compile_program(MLP, with_ir=False, cache=cache)
    assert not a.cached and b.cached
    assert a.python == b.python and "class DigitsMLP(nn.Module)" in b.python
    assert len(cache.entries()) == 1


def test_options_are_part_of_the_key(cache):
    compile_program(MLP, with_ir=False, opt_level=1, cache=cache)
    r = compile_program(MLP, with_ir=False, opt_level=2, cache=cache)
    assert not r.cached and len(cache.entries()) == 2


def test_the_compiler_itself_is_part_of_the_key(cache, monkeypatch):
    from tritium.driver import compile as driver_compile

    assert not compile_program(MLP, with_ir=False, cache=cache).cached
    assert compile_program(MLP, with_ir=False, cache=cache).cached
    # another compiler (an upgrade, or an edited source file) never reuses the entry
    monkeypatch.setattr(driver_compile, "_COMPILER_FINGERPRINT", "another compiler")
    assert not compile_program(MLP, with_ir=False, cache=cache).cached


def test_fingerprint_follows_compiler_sources_only(tmp_path):
    from tritium.driver.compile import fingerprint_sources

    pkg = tmp_path / "pkg"
    for rel in ("frontend/parser.py", "backends/pytorch/codegen.py", "runtime/layers.py",
                "tune/space.py"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(f"# {rel}\n")
    first = fingerprint_sources(pkg)
    (pkg / "runtime/layers.py").write_text("# edited runtime\n")
    (pkg / "tune/space.py").write_text("# edited tuner\n")
    assert fingerprint_sources(pkg) == first
    (pkg / "backends/pytorch/codegen.py").write_text("# edited code generator\n")
    second = fingerprint_sources(pkg)
    assert second != first
    (pkg / "frontend/new_pass.py").write_text("")
    assert fingerprint_sources(pkg) != second


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupted_entry_is_detected_and_rebuilt(cache, damage):
    first = compile_program(MLP, with_ir=False, cache=cache)
    (entry,) = cache.entries()
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"\x00\xff not json")
    else:
        i = data.index(b"class DigitsMLP")
        entry.write_bytes(data[:i] + b"class DigitsMLQ" + data[i + 15:])
    again = compile_program(MLP, with_ir=False, cache=cache)
    assert not again.cached and again.python == first.python
    assert compile_program(MLP, with_ir=False, cache=cache).cached


def test_editing_an_import_invalidates_the_importer(cache, tmp_path):
    lib = tmp_path / "lib.tri"
    main = tmp_path / "main.tri"
    lib.write_text("block D {\n params { n: int }\n layer fc: Linear { in_features: n, out_features: 2 }\n"
                   " forward(x: Tensor[b, n]) -> Tensor[b, 2] { return fc(x) }\n}\n")
    main.write_text('import "lib.tri"\nmodel M {\n layer d: D { n: 4 }\n'
                    ' forward(x: Tensor[b, 4]) -> Tensor[b, 2] { return d(x) }\n}\n')
    first = compile_program(main, with_ir=False, cache=cache)
    assert compile_program(main, with_ir=False, cache=cache).cached
    lib.write_text(lib.read_text().replace("return fc(x)", "return relu(fc(x))"))
    after = compile_program(main, with_ir=False, cache=cache)
    assert not after.cached and "torch.relu(self.fc(x))" in after.python
    assert after.python != first.python


def test_lru_eviction_respects_the_size_cap(cache, tmp_path, monkeypatch):
    files = []
    for i in range(4):
        f = tmp_path / f"m{i}.tri"
        f.write_text(MLP.read_text().replace("hidden: 128", f"hidden: {100 + i}"))
        files.append(f)
    compile_program(files[0], with_ir=False, cache=cache)
    size = cache.stats().bytes
    monkeypatch.setenv("TRITIUM_CACHE_MAX_BYTES", str(int(size * 2.5)))
    for f in files[1:]:
        compile_program(f, with_ir=False, cache=cache)
    assert cache.stats().bytes <= size * 2.5 and len(cache.entries()) == 2
    assert compile_program(files[3], with_ir=False, cache=cache).cached
    assert not compile_program(files[0], with_ir=False, cache=cache).cached


def test_no_cache_option(cache):
    compile_program(MLP, with_ir=False, use_cache=False)
    assert cache.entries() == []


def test_errors_are_compile_errors(tmp_path):
    with pytest.raises(CompileError) as err:
        compile_program(tmp_path / "missing.tri")
    assert err.value.diagnostics[0].code == "E0001"
    with pytest.raises(CompileError, match="unknown optimization level"):
        compile_program(MLP, opt_level=7)


def _run(*args, env_dir):
    import os
    env = dict(os.environ, TRITIUM_CACHE_DIR=str(env_dir))
    return subprocess.run([sys.executable, "-m", "tritium", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=env)


def test_cli_compile_outputs_and_cache_commands(tmp_path):
    out = tmp_path / "mlp.py"
    r = _run("compile", str(MLP), "-o", str(out), env_dir=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "class DigitsMLP(nn.Module)" in out.read_text()
    r = _run("compile", "examples/mlp.tri", "examples/lenet5.tri", "-o", str(tmp_path / "b"),
             "-j", "2", env_dir=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["lenet5.py", "mlp.py"]
    r = _run("compile", "examples/mlp.tri", "--emit", "tokens", env_dir=tmp_path / "c")
    assert r.returncode == 0 and "KEYWORD\tmodel" in r.stdout
    r = _run("compile", "examples/mlp.tri", "--emit", "ast", env_dir=tmp_path / "c")
    assert r.returncode == 0 and re.search(r"ModelDef @\d+:1\n", r.stdout)
    r = _run("cache", "info", env_dir=tmp_path / "c")
    assert r.returncode == 0 and "entries: 3" in r.stdout   # the shown path is part of the key
    assert "tuning archive:" in r.stdout and "(none yet)" in r.stdout
    assert "kernel binaries:" in r.stdout
    archive = tmp_path / "c" / "tune" / "archive.db"
    archive.parent.mkdir(parents=True)
    Archive(f"sqlite:///{archive}").close()
    r = _run("cache", "info", env_dir=tmp_path / "c")
    assert r.returncode == 0 and f"{archive}: 0 studies" in r.stdout
    r = _run("cache", "clear", "compile", env_dir=tmp_path / "c")
    assert r.returncode == 0 and "removed 3" in r.stdout and archive.is_file()
    r = _run("cache", "clear", env_dir=tmp_path / "c")  # every area, the archive too
    assert r.returncode == 0 and f"removed the tuning archive {archive}" in r.stdout
    assert not archive.exists()
    r = _run("cache", "clear", "bogus", env_dir=tmp_path / "c")
    assert r.returncode == 2 and "unknown cache area 'bogus'" in r.stderr
    bad = tmp_path / "bad.tri"
    bad.write_text("model M { forward(x: Tensor) -> Tensor { return relux(x) } }")
    r = _run("compile", str(bad), env_dir=tmp_path / "c")
    assert r.returncode == 1 and "E0305" in r.stderr and "Traceback" not in r.stderr
    r = _run("profile", "examples/mlp.tri", env_dir=tmp_path / "c")
    assert r.returncode == 0 and "peak traced memory" in r.stdout and "parse+check" in r.stdout


def test_cli_emits_ir_stages_and_pass_dumps(tmp_path):
    r = _run("compile", "examples/mlp.tri", "--emit", "ir", "-O0", env_dir=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "model @DigitsMLP" in r.stdout and "quantize_ternary" in r.stdout
    assert "batch_norm" in r.stdout   # -O0: nothing folded
    r = _run("compile", "examples/mlp.tri", "--emit", "ir-opt", "-O3", env_dir=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "fused_linear" in r.stdout and "batch_norm" not in r.stdout   # bn folded, fused
    r = _run("compile", "examples/mlp.tri", "--emit", "ir-opt", "--print-ir-after-all",
             env_dir=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "// -----// IR Dump After fuse //----- //" in r.stderr


def test_api_returns_every_requested_stage(cache):
    r = compile_program(MLP, opt_level=2, cache=cache, stages=("py", "ir-opt"))
    assert set(r.stages) >= {"py", "ir", "ir-opt"}
    assert "parse+check" in r.timings and "passes" in r.timings
    assert "fuse" in r.pass_report
    again = compile_program(MLP, opt_level=2, cache=cache, stages=("py", "ir-opt"))
    assert again.cached and {k: again.stages[k] for k in ("py", "ir", "ir-opt")} == \
        {k: r.stages[k] for k in ("py", "ir", "ir-opt")}
    assert again.pass_report == r.pass_report


def test_the_api_lowers_only_when_a_stage_needs_it(cache):
    r = compile_program(MLP, cache=cache)
    assert "py" in r.stages and "ir" not in r.stages and "lower" not in r.timings
    ir_opt = r.stages["ir-opt"]                      # produced on first access...
    assert "lower" in r.timings and "passes" in r.timings and ir_opt.startswith("model @")
    again = compile_program(MLP, cache=cache, stages=("ir-opt",))
    assert again.cached and again.stages["ir-opt"] == ir_opt    # ...and added to the entry


def test_a_lowering_failure_is_a_diagnostic_with_a_span(tmp_path):
    f = tmp_path / "loop.tri"
    f.write_text("layer L {\n    fn forward(x: Tensor[n, 4]) -> Tensor[n, 4] {\n"
                 "        let y = x\n        for i in range(5000) { y = y + x }\n"
                 "        return y\n    }\n}\n")
    r = compile_program(f, use_cache=False)          # the PyTorch source builds
    assert "class L(" in r.python
    with pytest.raises(CompileError) as info:
        r.stage("ir")
    (d,) = info.value.diagnostics
    assert d.code == "E0701" and "5000" in d.message
    assert (d.span.line, d.span.col) == (4, 9)
    from tritium.frontend.diagnostics import render
    assert "for i in range(5000)" in render(d, info.value.sources)


def test_unknown_options_and_stages_are_e0006():
    for kwargs in ({"opt_level": 7}, {"target": "tpu"}, {"stages": ("llvm",)},
                   {"stages": ("ptx",)}):
        with pytest.raises(CompileError) as info:
            compile_program(MLP, use_cache=False, **kwargs)
        assert [d.code for d in info.value.diagnostics] == ["E0006"], kwargs


def test_cli_reports_a_lowering_failure(tmp_path):
    f = tmp_path / "rec.tri"
    f.write_text("fn f(x: Tensor[n, 4]) -> Tensor[n, 4] { return g(x) + g(x) }\n"
                 "fn g(x: Tensor[n, 4]) -> Tensor[n, 4] { return f(x) + f(x) }\n"
                 "layer L {\n    fn forward(x: Tensor[n, 4]) -> Tensor[n, 4] { return f(x) }\n}\n")
    for emit in ("ir", "ir-opt"):
        r = _run("compile", str(f), "--emit", emit, env_dir=tmp_path / "c")
        assert r.returncode == 1 and "calls itself too deeply" in r.stderr
        assert "error[E0701]" in r.stderr and " | " in r.stderr      # a code and a snippet
    r = _run("compile", str(f), env_dir=tmp_path / "c")     # the PyTorch source still builds
    assert r.returncode == 0 and "def f(x):" in r.stdout


def test_a_malformed_cache_cap_warns_and_uses_the_default(monkeypatch):
    from tritium import compile_cache as cache_mod

    monkeypatch.setenv("TRITIUM_CACHE_MAX_BYTES", "lots")
    with pytest.warns(RuntimeWarning, match="TRITIUM_CACHE_MAX_BYTES='lots'"):
        assert cache_mod.max_bytes() == cache_mod.DEFAULT_MAX_BYTES
    monkeypatch.setenv("TRITIUM_CACHE_MAX_BYTES", "1000")
    assert cache_mod.max_bytes() == 1000


# ------------------------------------------------------------------ entries are untrusted

LENET = ROOT / "examples" / "lenet5.tri"


def test_an_entry_copied_under_another_key_is_a_miss_and_rebuilt(cache):
    """A valid entry of one program placed under another program's key is never served."""
    mlp = compile_program(MLP, with_ir=False, cache=cache)
    (mlp_entry,) = cache.entries()
    lenet = compile_program(LENET, with_ir=False, cache=cache)
    (lenet_entry,) = [p for p in cache.entries() if p != mlp_entry]
    mlp_entry.write_bytes(lenet_entry.read_bytes())        # LeNet-5's entry, MLP's name
    again = compile_program(MLP, with_ir=False, cache=cache)
    assert not again.cached and again.python == mlp.python and "LeNet" not in again.python
    assert compile_program(MLP, with_ir=False, cache=cache).cached      # rewritten
    assert compile_program(LENET, with_ir=False, cache=cache).python == lenet.python


@pytest.mark.parametrize("kind", ["symlink-zero", "symlink-file", "fifo", "directory",
                                  "deep", "huge"])
def test_an_entry_that_is_not_a_plain_small_file_is_a_miss(cache, tmp_path, kind, monkeypatch):
    import os

    from tritium import compile_cache as cache_mod

    first = compile_program(MLP, with_ir=False, cache=cache)
    (entry,) = cache.entries()
    good = entry.read_bytes()
    entry.unlink()
    if kind == "symlink-zero":
        entry.symlink_to("/dev/zero")
    elif kind == "symlink-file":
        target = tmp_path / "elsewhere.json"
        target.write_bytes(good)                  # even a valid entry is not read via a link
        entry.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(entry)
    elif kind == "directory":
        entry.mkdir()
    elif kind == "deep":
        entry.write_bytes(b"[" * 100_000)
    else:
        monkeypatch.setattr(cache_mod, "MAX_ENTRY_BYTES", len(good) - 1)
        entry.write_bytes(good)
    again = compile_program(MLP, with_ir=False, cache=cache)   # no hang, no RecursionError
    assert not again.cached and again.python == first.python
    if kind == "symlink-file":
        assert (tmp_path / "elsewhere.json").read_bytes() == good   # the target is untouched
    if kind not in ("directory", "huge"):
        assert entry.is_file() and not entry.is_symlink()          # rewritten atomically
        assert compile_program(MLP, with_ir=False, cache=cache).cached


def test_a_forged_entry_with_a_valid_checksum_but_a_bad_payload_is_a_miss(cache):
    from tritium import compile_cache as cache_mod

    first = compile_program(MLP, with_ir=False, cache=cache)
    (entry,) = cache.entries()
    key = entry.stem
    for payload in ({"python": 1, "stages": {}}, {"python": "x", "stages": []},
                    {"python": "x", "stages": {"py": "x"}, "deps": {"/dev/zero": 3}},
                    {"python": "x", "stages": {"evil": "x"}}):
        entry.write_bytes(cache_mod._entry_bytes(key, payload))
        assert cache.get(key) == payload                    # a well-formed entry...
        again = compile_program(MLP, with_ir=False, cache=cache)   # ...but not a compile one
        assert not again.cached and again.python == first.python


def test_dependencies_named_by_an_entry_are_read_safely(cache, tmp_path):
    """An entry's dependency list names files: a FIFO or device there is a changed
    dependency (a rebuild), never a hang."""
    from tritium import compile_cache as cache_mod

    first = compile_program(MLP, with_ir=False, cache=cache)
    (entry,) = cache.entries()
    import os
    fifo = tmp_path / "dep.tri"
    os.mkfifo(fifo)
    payload = {"python": "forged = 1\n", "stages": {"py": "forged = 1\n"}, "entry": None,
               "deps": {str(fifo): "0" * 64, "/dev/zero": "0" * 64}, "pass_report": ""}
    entry.write_bytes(cache_mod._entry_bytes(entry.stem, payload))
    again = compile_program(MLP, with_ir=False, cache=cache)
    assert not again.cached and again.python == first.python


def test_cache_keys_are_hex_digests(cache):
    for key in ("../../etc/passwd", "", "A" * 64, "ab/cd" * 20):
        with pytest.raises(ValueError, match="hex digests"):
            cache.get(key)


def test_clear_removes_links_and_fifos_but_never_their_targets(cache, tmp_path):
    import os

    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (cache.root / ("a" * 64 + ".json")).symlink_to(target)
    os.mkfifo(cache.root / ("b" * 64 + ".json"))
    assert len(cache.entries()) == 2
    assert cache.clear() == 2 and cache.entries() == []
    assert target.read_text() == "keep me"


def test_cache_without_an_action_names_only_what_is_missing(capsys):
    """`tritium cache` alone said `required: action, AREA`; AREA is optional."""
    from tritium.cli import main

    assert main(["cache"]) == 2
    err = capsys.readouterr().err
    assert "required: action " in err and "AREA" not in err
