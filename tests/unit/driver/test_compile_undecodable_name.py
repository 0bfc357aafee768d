"""A program file whose name holds bytes that are not UTF-8 (Python gives such names lone
surrogates) compiles: the compile cache key hashed the name and raised UnicodeEncodeError."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tritium.driver.compile import compile_program

MLP = Path(__file__).resolve().parents[3] / "examples" / "mlp.tri"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes")
def test_a_file_name_with_undecodable_bytes_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    target = os.path.join(os.fsencode(tmp_path), b"a\xff.tri")
    shutil.copyfile(MLP, target)
    result = compile_program(os.fsdecode(target), with_ir=False)
    assert "DigitsMLP" in result.stages["py"]
