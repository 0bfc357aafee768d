"""The Triton backend under the other supported Triton versions: 3.5 (the oldest, torch 2.9's
pin) and 3.6 (torch 2.10/2.11's pin and the GPU machine's). The rest of the suite runs under
the newest, the one the project installs.

Each version gets a second virtual environment holding only that Triton; a `.pth` file puts
this interpreter's site-packages (torch, numpy, pytest, ...) behind it, so only Triton
differs. The environment is built once and kept under the Tritium cache root
(`<cache root>/triton-venvs/triton-<version>-py<major><minor>`); installing needs pip to
reach the package registry, and the test skips, saying so, when it cannot. Then the
interpreter-equivalence tests, the version layer's tests and the AOT build tests run under it
in a fresh pytest process with fresh Tritium and Triton caches (every kernel really compiles).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tritium.cachedir import cache_root

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[4]
VERSIONS = ("3.5.1", "3.6.0")
TESTS = (
    "tests/unit/backends/triton/test_kernels_interp.py",
    "tests/unit/backends/triton/test_tile_params_interp.py",
    "tests/unit/backends/triton/test_compat.py",
    "tests/unit/backends/triton/test_dispatch.py",
    "tests/e2e/test_triton_aot.py",
)
# Read while collecting: the directory's conftest points TRITIUM_CACHE_DIR at a temporary
# root during each test, and the environments should outlive a test session.
VENV_ROOT = cache_root() / "triton-venvs"
_OFFLINE = re.compile(
    r"No matching distribution|Could not find a version|NewConnectionError|Max retries exceeded"
    r"|Temporary failure in name resolution|Name or service not known|Network is unreachable"
    r"|Connection refused|Read timed out|ConnectTimeout|SSLError|ProxyError", re.I)


def _base_paths() -> list[str]:
    paths = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        paths.append(site.getusersitepackages())
    return [p for p in dict.fromkeys(paths) if os.path.isdir(p)]


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def _link_base(venv: Path) -> None:
    """(Re)write the .pth that puts this interpreter's packages behind the venv's Triton."""
    (_site_packages(venv) / "zz_tritium_base.pth").write_text("\n".join(_base_paths()) + "\n")


def _venv(version: str) -> Path:
    """The environment for ``triton==version``, built on first use (skip: no registry)."""
    name = f"triton-{version}-py{sys.version_info[0]}{sys.version_info[1]}"
    venv = VENV_ROOT / name
    marker = venv / "tritium-venv.json"
    if not (marker.is_file() and (venv / "bin" / "python").exists()):
        VENV_ROOT.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=VENV_ROOT))
        try:
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], check=True,
                           capture_output=True, text=True, timeout=300)
            pip = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--target", str(_site_packages(tmp)),
                 "--no-deps", "--no-input", "--disable-pip-version-check", "--retries", "1",
                 "--timeout", "60", f"triton=={version}"],
                capture_output=True, text=True, timeout=1200)
            if pip.returncode != 0:
                text = (pip.stdout + pip.stderr).strip()
                last = text.splitlines()[-1] if text else f"exit {pip.returncode}"
                if _OFFLINE.search(text) or "No module named pip" in text:
                    pytest.skip(f"pip could not install triton=={version} (is the package "
                                f"registry reachable?): {last}")
                pytest.fail(f"pip install triton=={version} failed:\n{text[-4000:]}")
            (tmp / "tritium-venv.json").write_text(json.dumps(
                {"triton": version, "python": sys.version.split()[0]}))
            try:
                os.replace(tmp, venv)
            except OSError:  # another process finished the same environment first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _link_base(venv)
    return venv


@pytest.mark.parametrize("version", VERSIONS)
def test_backend_under_triton(version, tmp_path):
    python = _venv(version) / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if k != "TRITON_INTERPRET" and not k.startswith(("PYTEST_", "TRITIUM_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [
        os.environ.get("PYTHONPATH")])])
    env["TRITIUM_CACHE_DIR"] = str(tmp_path / "tritium-cache")
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    probe = subprocess.run(
        [str(python), "-c", "import triton, tritium.backends.triton.compat as c; "
                            "print(triton.__version__, c.installed_version(), c.available())"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert probe.stdout.split() == [version, version, "True"], probe.stdout + probe.stderr
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *TESTS],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, f"the Triton backend's tests fail under triton {version}:\n{tail}"
    assert re.search(r"\b\d+ passed\b", run.stdout) and " failed" not in run.stdout, tail
