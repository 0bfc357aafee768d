"""Suite-wide isolation and ISA coverage.

- Every test gets its own cache root (compile cache, tuning archive, Triton sources), so no
  test sees another's entries or the user's own archive; only the kernel binaries, which are
  content-addressed (source, flags, compiler, CPU), are shared through a link to one
  directory, so each specialization is still built once. The tuned-config resolver and the
  dispatch answers are cleared around every test, and the environment variables that change
  how the kernels run (threads, pools, tuning) are removed: the suite does not depend on the
  shell it was started from. (``$TRITIUM_CPU_ISA`` is kept: ``TRITIUM_CPU_ISA=avx2 make
  test`` runs the whole suite on the AVX2 path; ``$TRITIUM_CPU_MAX_ISA`` too: ``make
  test-avx2`` sets it to ``avx2`` with torch's own ISA caps, and the suite then runs as on an
  AVX2-only machine, the ``every_isa`` paths included.)
- Tests that use the ``every_isa`` fixture (``pytestmark = pytest.mark.usefixtures(
  "every_isa")``) run once per ISA path this CPU can execute (``$TRITIUM_CPU_ISA``): on an
  AVX-512 machine also the AVX2 and scalar paths, so none of them can regress unseen.
  The session header says which paths those are and which ISA caps are set.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from tritium.backends.cpu import isa as isa_mod
from tritium.cachedir import cache_root

# The kernel binaries of the cache the suite was started with (built once, shared by all
# tests); everything else lives under a root private to this session, then to each test.
_SHARED_KERNELS = cache_root() / "kernels"
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="tritium-tests-"))

_RUNTIME_ENV = ("TRITIUM_TUNE_STORAGE", "TRITIUM_TUNED_CONFIGS", "TRITIUM_NUM_THREADS",
                "TRITIUM_CPU_POOL", "TRITIUM_POOL_ADAPTIVE", "TRITIUM_POOL_DEBUG")


def _private_root(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    _SHARED_KERNELS.mkdir(parents=True, exist_ok=True)
    link = path / "kernels"
    if not link.exists():
        link.symlink_to(_SHARED_KERNELS, target_is_directory=True)
    return path


# Before any test module imports the runtime (which installs tuned dispatch when an archive
# exists under the cache root): the session's own root, with no archive in it.
os.environ["TRITIUM_CACHE_DIR"] = str(_private_root(_SESSION_ROOT / "session"))
for _name in _RUNTIME_ENV:
    os.environ.pop(_name, None)


# A suite started with SIGINT ignored (a background job of a non-interactive shell: `make test
# &`) would pass that on to every child process and to the tests of Ctrl-C handling; give the
# suite Python's own handler, which the children then get as the default action.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Hypothesis: the suite (`make test`, CI) draws the same examples on every run
# (`derandomize`), so a red CI names a change, never a new random draw; the search for new
# failing cases is `make fuzz` (TRITIUM_FUZZ_EXAMPLES set) or TRITIUM_HYPOTHESIS=explore, which
# draw fresh examples each run. A case either finds is then pinned as an example test.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
_HYPOTHESIS_PROFILE = os.environ.get(
    "TRITIUM_HYPOTHESIS", "explore" if os.environ.get("TRITIUM_FUZZ_EXAMPLES") else "ci")
settings.load_profile(_HYPOTHESIS_PROFILE)


# The caps that make this machine compute as a lesser one (`make test-avx2`): Tritium's own
# and the libraries' (ATen's dispatch, oneDNN, MKL, numpy's OpenBLAS).
_ISA_CAPS = ("TRITIUM_CPU_MAX_ISA", "TRITIUM_CPU_ISA", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
             "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE")


def pytest_report_header(config):
    caps = [f"{name}={os.environ[name]}" for name in _ISA_CAPS if os.environ.get(name)]
    return (f"tritium ISA paths: {', '.join(_isa_paths())}"
            f" ({'; '.join(caps) if caps else 'no ISA caps'}); hypothesis profile "
            f"{_HYPOTHESIS_PROFILE}")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


def _reset_tuned_dispatch() -> None:
    # only if a test already imported them: importing torch here would slow torch-free tests
    if "tritium.tune.dispatch" in sys.modules:
        sys.modules["tritium.tune.dispatch"].reset()
    if "tritium.runtime.tuned" in sys.modules:   # the runtime's default: the records file
        sys.modules["tritium.runtime.tuned"].reset()
    if "tritium.runtime.kernels" in sys.modules:
        sys.modules["tritium.runtime.kernels"].set_config_resolver(None)


@pytest.fixture(autouse=True)
def _isolated_cache(request, monkeypatch):
    """A cache root and tuning archive of this test's own."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_SESSION_ROOT))
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(_private_root(root)))
    _reset_tuned_dispatch()
    yield
    _reset_tuned_dispatch()
    shutil.rmtree(root, ignore_errors=True)


def _isa_paths() -> list[str]:
    if os.environ.get("TRITIUM_DISABLE_NATIVE", "").strip().lower() in ("1", "true", "yes", "on"):
        return ["torch"]
    return isa_mod.supported_isas()


@pytest.fixture(params=_isa_paths(), ids=lambda p: f"isa={p}")
def every_isa(request, monkeypatch) -> str:
    """The ISA path of the native kernels for this run of the test."""
    if request.param != "torch":
        monkeypatch.setenv("TRITIUM_CPU_ISA", request.param)
    return request.param


_BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")


@pytest.fixture(scope="module")
def benchmark_module():
    """``importlib.import_module`` with ``benchmarks/`` on ``sys.path`` for the test module:
    a benchmark script as a module (``benchmark_module("llm")``; its sibling helpers,
    ``_args``, ``_timing``, ``_ggml``, import as it does)."""
    sys.path.insert(0, _BENCHMARKS)
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(_BENCHMARKS)
