"""Generated PyTorch source: nothing from a program leaves a string literal or a checked
identifier, non-finite floats cannot be shadowed, and the validator refuses every module
shape the code generator does not write (issue 11)."""

from __future__ import annotations

import ast
import math
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import _text, generate
from tritium.backends.pytorch.validate import UnsafeSourceError, validate
from tritium.check import check_source

MLP = """model M {
    layer fc: Linear { in_features: 4, out_features: 2 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 2] { return relu(fc(x)) }
}
"""


def _gen(text: str, file: str = "m.tri") -> str:
    result = check_source(text, file)
    assert result.ok, [(d.code, d.message) for d in result.errors]
    return generate(result)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_characters="\x00"), max_size=60))
def test_file_names_stay_inside_comments_and_docstrings(name: str) -> None:
    """Any file name (newlines, backslashes, quotes, line separators, surrogates) is inert:
    the module parses, its only statements are the generator's, and the docstrings say the
    real name (a lone surrogate, which no encoder takes, as its escape)."""
    src = _gen(MLP, name or "x")
    tree = validate(src)
    shown = "".join(f"\\u{ord(c):04x}" if "\ud800" <= c <= "\udfff" else c
                    for c in (name or "x"))
    doc = ast.get_docstring(tree, clean=False)
    assert doc is not None and shown in doc
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assert shown in ast.get_docstring(cls, clean=False)
    src.encode("utf-8")
    for c in "\r\u2028\u2029\x85\x0b\x0c\x00":
        assert c not in src


def test_text_escapes_everything_that_ends_a_comment() -> None:
    for c in "\n\r\u2028\u2029\x85\x0b\x0c\x00":
        assert c not in _text(f"a{c}b")
    assert _text('a\\b"') == 'a\\\\b\\"'

    assert _text("é{}'") == "é{}'"
    # a lone surrogate (an undecodable byte of a file name) shows as its escape: written as
    # `\udc80` in a docstring it would be read back as the surrogate, which no encoder takes
    # (training a file named m<0xff>.tri raised UnicodeEncodeError building the model)
    assert _text("\udc80") == "\\\\udc80"
    doc = eval('"""' + _text("m\udcff.tri") + '"""')
    assert doc == "m\\udcff.tri" and doc.encode("utf-8")


@pytest.mark.parametrize("lit,expected", [("1e309", math.inf), ("-1e309", -math.inf)])
def test_non_finite_floats_cannot_be_shadowed(lit: str, expected: float) -> None:
    text = (f"model M {{\n    inf: 3\n    nan: 4\n    k: {lit}\n"
            "    forward(x: Tensor[b, 4]) -> Tensor[b, 4] { return x * k }\n}\n")
    src = _gen(text)
    assert f"float({str(expected)!r})" in src
    torch = pytest.importorskip("torch")
    mod = types.ModuleType("g")
    exec(compile(src, "g", "exec"), mod.__dict__)
    m = mod.M()
    assert m.k == expected and m.inf == 3
    assert torch.isinf(m(torch.ones(1, 4))).all()


def test_layers_differing_by_underscores_stay_apart() -> None:
    torch = pytest.importorskip("torch")
    text = """model M {
    layer training: Linear { in_features: 4, out_features: 3 }
    layer training_: Linear { in_features: 3, out_features: 2 }
    layer training__: ReLU
    forward(x: Tensor[b, 4]) -> Tensor[b, 2] { return training__(training_(training(x))) }
}
"""
    src = _gen(text)
    mod = types.ModuleType("g")
    exec(compile(src, "g", "exec"), mod.__dict__)
    m = mod.M()
    assert isinstance(m.training, bool)
    assert m.training_.out_features == 3 and m.training__.out_features == 2
    assert m(torch.ones(2, 4)).shape == (2, 2)


@pytest.mark.parametrize("key", ["z = open('x', 'w'); q", "a b", "1x", "x\ny", "__class__",
                                 "é", ""])
def test_quoted_config_keys_must_be_names(key: str) -> None:
    esc = key.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    text = f'model M {{\n    "{esc}": 1\n    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{ return x }}\n}}\n'
    result = check_source(text, "m.tri")
    assert any(d.code == "E0311" for d in result.errors)


def test_quoted_keys_that_are_names_work() -> None:
    src = _gen('model M {\n    "k": 2\n    forward(x: Tensor[b, 4]) -> Tensor[b, 4] '
               '{ return x * k }\n}\n')
    assert "self.k = k" in src


# ----------------------------------------------------------------------------- validator

INJECTIONS = [
    "import os",
    "from os import system",
    "open('x', 'w')",
    "__import__('os')",
    "eval('1')",
    "exec('1')",
    "getattr(torch, 'save')",
    "torch.save(1, 'x')",
    "torch.load('x')",
    "trt.load_checkpoint('x')",
    "x = (1).__class__",
    "globals()",
    "breakpoint()",
    "x = [c for c in ().__class__.__base__.__subclasses__()]",
    "nn.Module.__subclasses__()",
    "torch.nn.functional.pad",
    "F.__dict__",
    "self.register_forward_hook(print)",
    "compile('1', 'x', 'exec')",
    "with open('x') as f: pass",
    "global torch",
    "lambda: __import__('os')",
    "async def f(): pass",
    "del self.fc",
    "x = f'{open(1)}'",
]


@pytest.mark.parametrize("stmt", INJECTIONS)
@pytest.mark.parametrize("where", ["module", "method"])
def test_validator_refuses_injected_code(stmt: str, where: str) -> None:
    src = _gen(MLP)
    validate(src)
    if where == "module":
        bad = src + "\n" + stmt + "\n"
    else:
        marker = "        super().__init__()\n"
        assert marker in src
        body = "\n".join("        " + line for line in stmt.splitlines())
        bad = src.replace(marker, marker + body + "\n", 1)
    with pytest.raises(UnsafeSourceError):
        validate(bad)


@pytest.mark.parametrize("header_change", [
    ("import torch\n", "import torch\nimport os\n"),
    ("from torch import nn\n", "from torch import nn\n\nfrom tritium import checkpoint as trt\n"),
    ("import torch\n", "import torch.nn.functional as torch\n"),
    ("class M(nn.Module):", "class M(nn.Module, metaclass=type):"),
    ("class M(nn.Module):", "@staticmethod\nclass M(nn.Module):"),
])
def test_validator_refuses_changed_structure(header_change) -> None:
    src = _gen(MLP)
    old, new = header_change
    assert old in src
    with pytest.raises(UnsafeSourceError):
        validate(src.replace(old, new, 1))


def test_validator_refuses_non_python() -> None:
    with pytest.raises(UnsafeSourceError):
        validate("def (")
    with pytest.raises(UnsafeSourceError):
        validate("(" * 100000)


def test_driver_validates_before_exec(tmp_path, monkeypatch) -> None:
    """A compile result whose source was swapped (e.g. a planted cache entry) is refused
    with a diagnostic, and nothing of it runs."""
    from tritium.driver.compile import CompileError, compile_program
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "m.tri"
    f.write_text(MLP)
    result = compile_program(f)
    result.python = result.python + "\nopen('PWNED', 'w')\n"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CompileError) as err:
        result.module  # noqa: B018
    assert err.value.diagnostics[0].code == "E0020"
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("text", [
    "block B {\n    params {\n        c: int\n        c: int\n    }\n"
    "    forward(x: Tensor) -> Tensor { return x }\n}\n",
    "fn f(x: int, x: int) -> int { return x }\n",
    "layer L(n: int, n: int) {\n    param w: Tensor[n]\n"
    "    fn forward(x: Tensor[n]) -> Tensor[n] { return x * w }\n}\n",
])
def test_duplicate_parameters_are_check_errors(text: str) -> None:
    """Python refuses a duplicate argument; the checker says so first (E0206)."""
    assert "E0206" in {d.code for d in check_source(text, "m.tri").errors}


def test_validator_compiles_without_running() -> None:
    src = _gen(MLP).replace("def forward(self, x):", "def forward(self, x, x):", 1)
    assert "def forward(self, x, x):" in src
    with pytest.raises(UnsafeSourceError, match="does not compile"):
        validate(src)


@pytest.mark.parametrize("decl,code", [
    ("let W: TernaryTensor<trit, [n, nope]> = random_ternary([n, n])", "E0304"),
    ("param w: Tensor[n, nope]", "E0304"),
    ("param w: Tensor[?, n]", "E0508"),
])
def test_parameter_shapes_must_be_known_when_built(decl: str, code: str) -> None:
    """A parameter shape naming something unbound checked clean and failed in codegen."""
    text = (f"layer L(n: int) {{\n    {decl}\n"
            "    fn forward(x: Tensor[b, n]) -> Tensor[b, n] { return x }\n}\n")
    assert code in {d.code for d in check_source(text, "m.tri").errors}
