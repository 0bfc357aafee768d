"""What `eval`/`predict`/`export` say when handed a program instead of a checkpoint, and
what `profile` reports apart from the compile itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tritium.cli import main

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.tri")


@pytest.mark.parametrize("argv", [
    ["eval", MLP],
    ["predict", MLP, MLP],
    ["export", MLP, "--format", "onnx", "-o", "OUT/m.onnx"],
])
def test_a_tri_source_where_a_checkpoint_goes_says_train_it_first(argv, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert ".tri source, not a checkpoint" in err and "tritium train" in err
    assert "Traceback" not in err and "header length" not in err


@pytest.mark.parametrize("name", ["model.py", "model.safetensors"])
def test_a_generated_module_is_not_called_a_tri_source(name, tmp_path, capsys):
    """`tritium eval runs/mlp/model.py` said `is a .tri source ... tritium train
    runs/mlp/model.py`: the generated module holds the words `layer fc1`, and training it
    is no answer."""
    assert main(["compile", MLP, "-o", str(tmp_path / "model.py")]) == 0
    (tmp_path / "model.py").rename(tmp_path / name)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert "is Python source" in err and ".tri source" not in err and "tritium train " not in err


@pytest.mark.parametrize("text", ["just some notes\n" * 3, "{\"a\": 1}\n", "x" * 600])
def test_other_text_is_named_as_text(text: str, tmp_path: Path, capsys):
    f = tmp_path / "notes.safetensors"
    f.write_text(text)
    assert main(["eval", str(f)]) == 2
    assert "is a text file, not a safetensors checkpoint" in capsys.readouterr().err


def test_profile_reports_the_first_compile_apart(capsys):
    assert main(["profile", MLP, "--top", "2"]) == 0
    out = capsys.readouterr().out
    head = re.search(r"compiled at -O\d in ([\d.]+) ms", out)
    first = re.search(r"first compile in this process took ([\d.]+) ms", out)
    assert head and first, out
    assert float(first.group(1)) >= 0 and "importing" in out


@pytest.mark.parametrize("text, said", [
    ("1;2;3\n", "holds no rows of numbers (its one row ['1;2;3'] was read as a header)"),
    ("x,y\n", "holds no rows of numbers (its one row ['x', 'y'] was read as a header)"),
    ("\n\n", "holds no rows of numbers"),
])
def test_a_csv_without_a_row_of_numbers_says_so(tmp_path, text, said):
    """A semicolon-separated or header-only .csv said `rows must all hold the same number of
    values` (its one row had been skipped as a header: there were no rows at all)."""
    from tritium.data import DatasetError
    from tritium.driver.evaluate import load_samples

    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(DatasetError) as err:
        load_samples(path)
    assert said in str(err.value) and "same number of values" not in str(err.value)
