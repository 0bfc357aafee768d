"""A layer kind defined in a sibling file without an import (ex_attention_mechanism.tri uses
CustomTernaryLinear from ex_custom_conv.tri): read from the one file of the program's
directory that defines it (W1000); several candidates are E1000; nothing outside the
directory is read."""

from __future__ import annotations

import os

import pytest

from tritium.check import check_file, check_source

MAIN = """model Net {
    layer fc: Scaled { features: 4 }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> { return fc(x) }
}
"""
LIB = """layer Scaled {
    params { features: int }
    param g: Tensor[features] { init: "ones" }
    forward(x: Tensor) -> Tensor { return x * g }
}
"""


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


def test_one_sibling_defines_it(tmp_path):
    (tmp_path / "main.tri").write_text(MAIN)
    (tmp_path / "lib.tri").write_text(LIB)
    (tmp_path / "other.tri").write_text("layer Other { forward(x: Tensor) -> Tensor { return x } }\n")
    r = check_file(tmp_path / "main.tri")
    assert not r.errors, r.errors
    w = [d for d in r.diagnostics if d.code == "W1000"]
    assert len(w) == 1 and "`lib.tri`" in w[0].message and 'import "lib.tri"' in w[0].help
    assert (w[0].span.line, w[0].span.col) == (2, 15)
    assert "Scaled" in r.definitions and "Other" not in r.definitions


def test_several_siblings_is_an_error_naming_them(tmp_path):
    (tmp_path / "main.tri").write_text(MAIN)
    (tmp_path / "a.tri").write_text(LIB)
    (tmp_path / "b.tri").write_text(LIB)
    r = check_file(tmp_path / "main.tri")
    assert codes(r) == ["E1000"]
    assert "`a.tri`, `b.tri`" in r.errors[0].message


def test_none_stays_unknown_and_an_import_needs_no_search(tmp_path):
    (tmp_path / "main.tri").write_text(MAIN)
    assert "E0303" in codes(check_file(tmp_path / "main.tri"))
    (tmp_path / "lib.tri").write_text(LIB)
    (tmp_path / "main.tri").write_text('import "lib.tri"\n' + MAIN)
    assert codes(check_file(tmp_path / "main.tri")) == []
    # source text without a file has no directory to search
    assert "E0303" in codes(check_source(MAIN))


def test_nothing_outside_the_directory_is_read(tmp_path):
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "main.tri").write_text(MAIN)
    (tmp_path / "prog" / "sub").mkdir()
    (tmp_path / "prog" / "sub" / "lib.tri").write_text(LIB)     # a subdirectory
    (tmp_path / "outside.tri").write_text(LIB)                  # the parent directory
    try:
        os.symlink(tmp_path / "outside.tri", tmp_path / "prog" / "link.tri")
    except OSError:
        pytest.skip("no symlinks here")
    r = check_file(tmp_path / "prog" / "main.tri")
    assert "E0303" in codes(r) and "W1000" not in codes(r)


def test_the_sibling_is_compiled_with_the_program(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    torch = pytest.importorskip("torch")
    import tritium
    (tmp_path / "main.tri").write_text(MAIN)
    (tmp_path / "lib.tri").write_text(LIB)
    model = tritium.load(tmp_path / "main.tri")
    x = torch.randn(2, 4)
    assert torch.equal(model(x), x)
