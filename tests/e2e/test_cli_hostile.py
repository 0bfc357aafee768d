"""Hostile command lines: bad values for every flag of every subcommand and bad paths of
every kind, generated from the argparse definitions (not a hand list).

Each case runs `tritium.cli.main(argv)` in this process (no process start per case) and
must end with exit code 2 and one clear error line naming what is wrong, with no traceback,
within a few seconds (an alarm turns a hang into a failure), leaving no file behind. The
walk also fails when an option is added without a checked type: a numeric option must use
`tritium.argcheck.number(...)` (a range from the one table) and a path `path_arg(role)`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tritium.argcheck import Range, show_path
from tritium.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.tri")
CASE_SECONDS = 10         # the most one refused command line may take (a few ms here)
HANG_SECONDS = 30         # still running after this: a hang (stopped by an alarm)


# ----------------------------------------------------------------------------- the walk

def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _options(sub: argparse.ArgumentParser):
    for a in sub._actions:
        if isinstance(a, argparse._HelpAction | argparse._VersionAction):
            continue
        yield a


def _flag(a: argparse.Action) -> str | None:
    longs = [o for o in a.option_strings if o.startswith("--")]
    return (longs or a.option_strings or [None])[0]


def _bad_numbers(rng: Range) -> list[str]:
    """Out-of-range and malformed words for a range: the generic ones every numeric flag
    must refuse, and the values just outside both ends."""
    words = ["inf", "-inf", "nan", "1e309", "-1e309", "", "abc", "1,5", str(2**64),
             str(-(2**64)), "9" * 5000, "0x10"]
    if rng.kind is int:
        words += ["1.5", "2e3"]
        lo = int(rng.lo) if not rng.lo_open else int(rng.lo) + 1
        hi = int(rng.hi) if not rng.hi_open else int(rng.hi) - 1
        words += [str(lo - 1), str(hi + 1), str(hi * 1000 + 7)]
    else:
        below = rng.lo if rng.lo_open else rng.lo - max(1e-6, abs(rng.lo) * 1e-3)
        above = rng.hi if rng.hi_open else rng.hi + max(1e-6, abs(rng.hi) * 1e-3)
        words += [repr(below), repr(above), repr(-abs(rng.hi) - 1)]
    out = []
    for w in words:
        try:
            v = (int if rng.kind is int else float)(w)
        except ValueError:
            out.append(w)
            continue
        if not (isinstance(v, float) and not math.isfinite(v)) and rng.contains(v):
            continue      # "0x10"-like words never parse; a bad word that is in range: none
        out.append(w)
    return out


def _good_numbers(rng: Range) -> list[str]:
    if rng.kind is int:
        lo = int(rng.lo) + 1 if rng.lo_open else int(rng.lo)
        hi = int(rng.hi) - 1 if rng.hi_open else int(rng.hi)
        return [str(lo), str(hi), str((lo + hi) // 2)]
    lo = rng.lo + 1e-9 if rng.lo_open else rng.lo
    hi = rng.hi - 1e-9 if rng.hi_open else rng.hi
    return [repr(lo), repr(hi), repr((lo + hi) / 2)]


def _bad_choices(a: argparse.Action) -> list[str]:
    first = str(next(iter(a.choices)))
    return ["", "bogus", "\n", first.upper() if first.upper() not in a.choices else first + "x",
            first + " ", "{", "x" * 5000]


# ----------------------------------------------------------------------------- running

@contextlib.contextmanager
def _deadline(seconds: float, what: str):
    def fire(signum, frame):
        raise TimeoutError(f"{what}: still running after {seconds} s (a hang)")
    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(argv: list[str]) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            _deadline(HANG_SECONDS, " ".join(map(repr, argv))[:200]):
        try:
            code = main(argv)
        except SystemExit as exc:     # main returns codes; a SystemExit is a defect too
            code = f"SystemExit({exc.code!r})"
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - t


def _tree(root: Path) -> set[tuple[str, int]]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            out.add((str(p.relative_to(root)), st.st_size if stat.S_ISREG(st.st_mode) else -1))
    return out


def assert_usage_error(argv: list[str], work: Path, named: str | None = None,
                       codes: tuple[int, ...] = (2,), cache_ok: bool = False) -> str:
    """Exit code in `codes`, one clear error line (naming `named`), no traceback, no hang,
    no file left behind (outside the compile cache when `cache_ok`)."""
    before = _tree(work)
    code, out, err, secs = run(argv)
    shown = " ".join(map(repr, argv))[:300]
    assert code in codes, f"{shown}: exit {code!r}, want {codes}\nstderr: {err[-2000:]}"
    assert "Traceback" not in err + out, f"{shown}: traceback\n{err[-3000:]}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, f"{shown}: no error message"
    assert "error" in lines[0].lower(), f"{shown}: first line is not the error: {lines[0]!r}"
    assert len(lines) <= 2 and all(len(ln) < 600 for ln in lines), \
        f"{shown}: not one clear line:\n{err[:2000]}"
    if named is not None:
        assert named in lines[0], f"{shown}: the message does not name {named!r}: {lines[0]!r}"
    assert secs < CASE_SECONDS, f"{shown}: took {secs:.1f} s"
    after = _tree(work)
    if cache_ok:
        after = {f for f in after if not f[0].startswith(".cache")}
        before = {f for f in before if not f[0].startswith(".cache")}
    assert after == before, f"{shown}: left files behind: {sorted(after - before)[:5]}"
    return lines[0]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A working directory with the files the base command lines use."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / ".cache"))
    monkeypatch.setenv("NO_COLOR", "1")
    (tmp_path / "model.tri").write_text(Path(MLP).read_text())
    (tmp_path / "model.ir").write_text(
        "func @f(%x: tensor<[n, 4], f32>) -> (tensor<[n, 4], f32>) {\n"
        "  %0 = relu(%x) : (tensor<[n, 4], f32>) -> tensor<[n, 4], f32>\n"
        "  return(%0) : (tensor<[n, 4], f32>) -> ()\n}\n")
    (tmp_path / "ckpt.safetensors").write_bytes(b"\0" * 64)
    (tmp_path / "x.npy").write_bytes(b"\0" * 64)
    (tmp_path / ".cache").mkdir()
    (tmp_path / "run").mkdir()
    return tmp_path


#: one command line per subcommand whose inputs exist; each case swaps one value in
def _base(cmd: str, work: Path) -> list[str]:
    store = f"sqlite:///{work / '.cache' / 'tune.db'}"
    return {
        "check": ["check", "model.tri"],
        "fmt": ["fmt", "model.tri"],
        "summary": ["summary", "model.tri"],
        "compile": ["compile", "model.tri"],
        "cache": ["cache", "info"],
        "profile": ["profile", "model.tri"],
        "opt": ["opt", "model.ir"],
        "run": ["run", "model.tri"],
        "train": ["train", "model.tri", "--out", "run/a", "--epochs", "1", "--no-baseline",
                  "--latency-runs", "1", "-q"],
        "eval": ["eval", "ckpt.safetensors"],
        "generate": ["generate", "ckpt.safetensors", "--prompt", "x"],
        "predict": ["predict", "ckpt.safetensors", "x.npy"],
        "export": ["export", "ckpt.safetensors", "--format", "onnx", "-o", "run/m.onnx"],
        "import": ["import", "hf", "a_dir"],
        "tune": ["tune", "--kernel", "cpu.linear", "--shape", "1,8,8", "--budget", "1",
                 "--quick", "--no-stability", "--storage", store],
    }[cmd]


def _with(base: list[str], action: argparse.Action, value: str) -> list[str]:
    """`base` with `action` set to `value` (replacing a positional or the flag's value)."""
    argv = list(base)
    if not action.option_strings:          # the bases put the positionals first
        positionals = [a for a in _subcommands()[argv[0]]._actions if not a.option_strings]
        argv[1 + [p.dest for p in positionals].index(action.dest)] = value
        return argv
    flag = _flag(action)
    for opt in action.option_strings:
        if opt in argv:
            i = argv.index(opt)
            argv[i:i + 2] = [f"{opt}={value}"] if value.startswith("-") or value == "" \
                else [opt, value]
            return argv
    if value.startswith("-") or value == "":    # `--lr=-1`, `-D-1`: a value, not an option
        return argv + [f"{flag}={value}" if flag.startswith("--") else flag + value]
    return argv + [flag, value]


# ----------------------------------------------------------------------------- numbers, choices

def _cases(kind: str):
    for cmd, sub in _subcommands().items():
        for a in _options(sub):
            if kind == "number" and hasattr(a.type, "range"):
                yield pytest.param(cmd, a, id=f"{cmd}-{_flag(a) or a.dest}")
            elif kind == "choice" and a.choices is not None and not isinstance(
                    a, argparse._SubParsersAction):
                yield pytest.param(cmd, a, id=f"{cmd}-{_flag(a) or a.dest}")
            elif kind == "path" and hasattr(a.type, "role"):
                yield pytest.param(cmd, a, id=f"{cmd}-{_flag(a) or a.dest}")
            elif kind == "text" and a.type is None and a.choices is None and a.nargs != 0 \
                    and not isinstance(a, argparse._SubParsersAction):
                yield pytest.param(cmd, a, id=f"{cmd}-{_flag(a) or a.dest}")


def test_every_option_has_a_checked_type():
    """No numeric option without a range, no path without a role: the walk below can then
    generate bad values for every one of them."""
    unchecked = []
    for cmd, sub in _subcommands().items():
        for a in _options(sub):
            if a.type in (int, float):
                unchecked.append(f"{cmd} {_flag(a)}: type={a.type.__name__} without a range")
            meta = str(a.metavar or "")
            if a.type is None and a.choices is None and a.nargs != 0 and (
                    meta in ("FILE", "DIR", "CKPT", "INPUT", "PATH") or "FILE" in meta):
                unchecked.append(f"{cmd} {_flag(a) or a.dest}: a path without path_arg(role)")
    assert not unchecked, "\n".join(unchecked)
    # and the walk finds what it should
    assert len(list(_cases("number"))) >= 19 and len(list(_cases("path"))) >= 15


@pytest.mark.parametrize("cmd,action", list(_cases("number")))
def test_bad_numbers_exit_2_before_any_work(cmd, action, work):
    rng = action.type.range
    for good in _good_numbers(rng):         # the range's own ends are accepted
        action.type(good)
    flag = _flag(action)
    for word in _bad_numbers(rng):
        with pytest.raises(argparse.ArgumentTypeError):
            action.type(word)
        line = assert_usage_error(_with(_base(cmd, work), action, word), work, named=flag)
        assert "must be" in line


@pytest.mark.parametrize("cmd,action", list(_cases("choice")))
def test_bad_choices_exit_2(cmd, action, work):
    for word in _bad_choices(action):
        if word in action.choices:
            continue
        assert_usage_error(_with(_base(cmd, work), action, word), work)


@pytest.mark.parametrize("cmd,action", list(_cases("text")))
def test_bad_text_values_are_refused_clearly(cmd, action, work):
    """Names and specs (a model name, NAME=VALUE, M,N,K, a URL): control characters, a
    brace, a huge word are refused (exit 1 for a name the program lacks, else 2)."""
    for word in ("\n", "{", "x" * 5000, "\x1b[31mred", "a=b=c\n"):
        assert_usage_error(_with(_base(cmd, work), action, word), work, codes=(1, 2),
                           cache_ok=True)


# ----------------------------------------------------------------------------- paths

def _bad_paths(role: str, work: Path) -> list[tuple[str, str]]:
    """(path, label) for a path role; every one must be refused with exit 2."""
    (work / "a_file").write_text("x\n")
    (work / "a_dir").mkdir(exist_ok=True)
    (work / "a_dir.npz").mkdir(exist_ok=True)
    ro = work / "read_only"
    ro.mkdir(exist_ok=True)
    if not (work / "fifo").exists():
        os.mkfifo(work / "fifo")
        os.mkfifo(work / "fifo.npz")
        os.symlink("/dev/zero", work / "zero.npz")
        os.symlink("/dev/zero", work / "zero.tri")
    (work / "garbage.npz").write_bytes(os.urandom(512))
    ro.chmod(0o555)
    long = "n" * 300
    common = [("", "empty"), (long, "name over 255 bytes"), (f"a_dir/{long}/x", "long inner"),
              ("a" * 5000, "path over 4096 bytes")]
    missing = [("missing", "missing"), ("new\nline", "newline"), ("x{y}", "brace"),
               ("a_file/x", "file as directory")]
    inputs = [("fifo", "FIFO"), ("/dev/zero", "/dev/zero"), ("zero.tri", "link to /dev/zero")]
    if role == "input-file":
        return common + missing + inputs + [("a_dir", "directory")]
    if role == "input-dir":
        return common + [("missing", "missing"), ("a_file", "file"), ("fifo", "FIFO"),
                         ("new\nline", "newline")]
    if role == "data":
        return common[1:] + [("missing.npz", "missing"), ("garbage.npz", "garbage"),
                             ("fifo.npz", "FIFO"), ("zero.npz", "link to /dev/zero"),
                             ("a_dir.npz", "directory"), ("bogus", "unknown name"),
                             ("a_file", "plain file"), ("new\nline.npz", "newline")]
    if role == "resume":
        return common + missing + inputs + [("a_dir", "a directory without a state")]
    outputs = [("a_file/run", "FILE/run"), ("read_only/x", "in a read-only dir"),
               ("read_only/sub/x", "under a read-only dir"), ("new\nline", "newline"),
               ("tab\there", "tab"), ("fifo/x", "FIFO as directory")]
    if role == "output-dir":
        return common + outputs + [("a_file", "existing file"), ("read_only", "read-only"),
                                   ("fifo", "FIFO"), ("/dev/null", "device")]
    if role == "output-file":
        return common + outputs + [("a_dir", "existing directory"), ("run/", "trailing slash"),
                                   ("fifo", "FIFO"), ("/dev/null", "device")]
    if role == "output":                   # compile -o: a file, or a directory for several
        return common + outputs + [("fifo", "FIFO"), ("/dev/null", "device"),
                                   ("read_only", "read-only directory")]
    raise AssertionError(f"no bad paths for role {role!r}")


@pytest.mark.parametrize("cmd,action", list(_cases("path")))
def test_bad_paths_exit_2_naming_the_path(cmd, action, work):
    role = action.type.role
    try:
        for path, label in _bad_paths(role, work):
            argv = _with(_base(cmd, work), action, path)
            named = show_path(path)[:40] if path else None
            try:
                assert_usage_error(argv, work, named=named)
            except AssertionError as exc:
                raise AssertionError(f"[{role}: {label}] {exc}") from None
    finally:
        (work / "read_only").chmod(0o755)


def test_several_inputs_need_an_output_directory(work):
    (work / "b.tri").write_text(Path(MLP).read_text())
    assert_usage_error(["compile", "model.tri", "b.tri", "-o", "one.py"], work, named="one.py")
    assert not (work / "one.py").exists()
    assert_usage_error(["compile", "model.tri", "-o", "model.tri"], work, named="model.tri")
    code, _, err, _ = run(["compile", "model.tri", "b.tri", "-o", "build"])
    assert code == 0, err
    assert sorted(p.name for p in (work / "build").iterdir()) == ["b.py", "model.py"]


def test_outputs_are_whole_files_with_the_umask_mode(work):
    old = os.umask(0o027)
    try:
        code, _, err, _ = run(["compile", "model.tri", "-o", "out/m.py"])
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((work / "out" / "m.py").stat().st_mode) == 0o640
    compile(( work / "out" / "m.py").read_text(), "m.py", "exec")
    assert [p.name for p in (work / "out").iterdir()] == ["m.py"]     # no temporary left


def test_file_names_with_braces_and_newlines_are_paths(work):
    import tritium
    from tritium.driver.compile import CompileError

    for name in ("odd{name}.tri", "two\nlines.tri", "brace{.tri"):
        (work / name).write_text(Path(MLP).read_text())
        code, out, err, _ = run(["compile", name])
        assert code == 0 and "class DigitsMLP" in out, err
        assert tritium.compile(name, with_ir=False).file == name
        code, out, err, _ = run(["profile", name, "--top", "1"])
        assert code == 0 and "compiled at -O2" in out, err
        if "\n" not in name:  # (a newline in a file name reaching the generated module's
            # comments is the code generator's to escape: the issue 11 fix)
            assert type(tritium.load(name)).__name__ == "DigitsMLP"
        with pytest.raises(CompileError, match="no such file"):
            tritium.compile("model {" + name, with_ir=False)
    text = Path(MLP).read_text()
    assert "DigitsMLP" in tritium.compile(source=text, with_ir=False).classes
    with pytest.raises(CompileError, match="cannot read .* name of .* bytes"):
        tritium.compile(text)       # a positional str is a path (here a too-long name)
    with pytest.raises(TypeError):
        tritium.compile(MLP, source=text)
    assert type(tritium.load_source(text)).__name__ == "DigitsMLP"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(work, monkeypatch):
    """Disk full in the middle of an output (here: at fsync): the previous file is intact
    and no temporary file remains; the command reports it in one line (exit 2)."""
    import errno

    (work / "out.py").write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    line = assert_usage_error(["compile", "model.tri", "--no-cache", "-o", "out.py"], work,
                              named="out.py")
    assert "No space left" in line
    assert (work / "out.py").read_text() == "old\n"


def test_fmt_write_keeps_the_file_mode(work):
    f = work / "messy.tri"
    f.write_text(Path(MLP).read_text().replace("    layer", "      layer"))
    f.chmod(0o640)
    code, _, err, _ = run(["fmt", "--write", "messy.tri"])
    assert code == 0, err
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert run(["fmt", "--check", "messy.tri"])[0] == 0


def test_bad_values_are_refused_before_torch_is_imported(tmp_path):
    """In a fresh interpreter: numbers, choices and paths of train/eval/predict/export are
    checked without importing torch (which costs seconds)."""
    code = (
        "import sys\n"
        "from tritium.cli import main\n"
        "cases = [['train', 'model.tri', '--lr', 'inf'], ['train', 'model.tri', '--seed', "
        "str(2**64)], ['train', 'model.tri', '--threads', '100000'],"
        " ['train', 'model.tri', '--out', 'model.tri/run'],"
        " ['train', 'model.tri', '--data', 'nothing.npz'],"
        " ['eval', '/dev/zero'], ['predict', 'model.tri', '/dev/zero'],"
        " ['export', 'model.tri', '--format', 'onnx', '-o', 'a_dir/'],"
        " ['tune', '--kernel', 'cpu.linear', '--shape', '1,8,8', '--budget', 'nan']]\n"
        "codes = [main(c) for c in cases]\n"
        "assert codes == [2] * len(cases), codes\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    (tmp_path / "model.tri").write_text(Path(MLP).read_text())
    (tmp_path / "model.ir").write_text(
        "func @f(%x: tensor<[n, 4], f32>) -> (tensor<[n, 4], f32>) {\n"
        "  %0 = relu(%x) : (tensor<[n, 4], f32>) -> tensor<[n, 4], f32>\n"
        "  return(%0) : (tensor<[n, 4], f32>) -> ()\n}\n")
    (tmp_path / "a_dir").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TRITIUM_CACHE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
