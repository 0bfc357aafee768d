"""A checkpoint's stored program text (`tritium.source`) is untrusted: compiled from the text,
it reads no other file, and its diagnostics name the checkpoint, not the file it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.driver.compile import CompileError
from tritium.driver.models import model_from_checkpoint
from tritium.runtime import CheckpointError, read_checkpoint_metadata, save_checkpoint

V2 = Path(__file__).parent / "data" / "mlp_v2.safetensors"   # DigitsMLP, version 2
GOOD = read_checkpoint_metadata(V2).extra
SECRET = "model Secret { s3cr3t-c0ntent }\n"


@pytest.fixture(scope="module")
def model():
    m, _ = model_from_checkpoint(V2)
    return m


def _write(tmp_path: Path, model, **changes: str) -> Path:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, extra={**GOOD, **changes})
    return path


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_stored_source_may_not_import_files(tmp_path, model, monkeypatch, how):
    secret = tmp_path / "secret.tri"
    secret.write_text(SECRET)
    monkeypatch.chdir(tmp_path)
    target = str(secret) if how == "absolute" else "secret.tri"
    path = _write(tmp_path, model, **{
        "tritium.source": f'import "{target}"\n' + GOOD["tritium.source"],
        "tritium.file": str(tmp_path / "gone.tri")})
    with pytest.raises(CheckpointError) as err:
        model_from_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "imports" in msg and "tritium.source" in msg
    assert "s3cr3t" not in msg


def test_cli_eval_never_shows_an_imported_file(tmp_path, model):
    secret = tmp_path / "secret.tri"
    secret.write_text(SECRET)
    path = _write(tmp_path, model, **{
        "tritium.source": f'import "{secret}"\n' + GOOD["tritium.source"]})
    r = subprocess.run([sys.executable, "-m", "tritium", "eval", str(path)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TRITIUM_CACHE_DIR": str(tmp_path / "c")})
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "s3cr3t" not in out and "Traceback" not in out and "imports" in out


def test_stored_source_errors_name_the_checkpoint(tmp_path, model):
    named = tmp_path / "mlp.tri"
    named.write_text("// some other program\n")
    path = _write(tmp_path, model, **{
        "tritium.source": GOOD["tritium.source"] + "\nfn broken( {\n",
        "tritium.file": str(named)})
    with pytest.raises(CompileError) as err:
        model_from_checkpoint(path)
    files = {d.span.file for d in err.value.diagnostics if d.span is not None}
    assert files == {f"{path} (stored source)"}
