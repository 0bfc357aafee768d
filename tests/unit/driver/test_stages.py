"""The driver's table of stages: order, on-demand production, the GPU stages driven from
the driver (not the CLI), error codes of failing stages, and the CLI helpers' home."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tritium.driver import STAGES, CompileError, build_aot, compile_program
from tritium.driver import stages as S

ROOT = Path(__file__).resolve().parents[3]
MLP = ROOT / "examples" / "mlp.tri"


def test_every_stage_follows_the_one_it_consumes():
    names = list(STAGES)
    for s in STAGES.values():
        assert s.after is None or names.index(s.after) < names.index(s.name), s
    assert S.chain("cubin") == ["tokens", "ast", "check", "ir", "ir-opt", "ttir", "ttgir",
                                "llir", "ptx", "cubin"]
    assert S.chain("py") == ["tokens", "ast", "check", "py"]
    assert set(S.IR_STAGES) == {n for n in STAGES if "ir" in S.chain(n)}


def test_the_cli_offers_exactly_the_stages_of_the_table():
    from tritium.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    emit = next(a for a in sub.choices["compile"]._actions if a.dest == "emit")
    assert set(emit.choices) == set(STAGES)


def test_stages_are_produced_on_demand_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path))
    r = compile_program(MLP, stages=("triton",), opt_level=3)
    assert {"ir", "ir-opt", "triton"} <= set(r.stages) and "py" not in r.stages
    assert "@triton.jit" in r.stages["triton"] and "mlp.tri, -O3" in r.stages["triton"]
    assert re.match(r"\d+:1\tKEYWORD\tmodel\n", r.stage("tokens"))
    assert "model DigitsMLP" in r.stage("check")
    with pytest.raises(CompileError) as info:
        r.stage("ptx")                         # an AOT stage comes from build_aot
    assert info.value.diagnostics[0].code == "E0006"


def test_aot_failures_are_diagnostics(monkeypatch):
    pytest.importorskip("triton")
    from tritium.backends.triton import aot

    r = compile_program(MLP, use_cache=False, stages=("ir-opt",))

    def fail(*a, **k):
        raise aot.AotError("kernel k does not build for sm_80")
    monkeypatch.setattr(aot, "build_model", fail)
    with pytest.raises(CompileError) as info:
        build_aot(r, "cuda:sm_80")
    assert [d.code for d in info.value.diagnostics] == ["E0022"]
    assert "does not build" in info.value.diagnostics[0].message
    with pytest.raises(CompileError) as info:
        build_aot(r, "pytorch")
    assert [d.code for d in info.value.diagnostics] == ["E0006"]


def test_annotate_reaches_a_code_generator_that_takes_it(monkeypatch):
    from tritium.backends.pytorch import codegen

    seen = {}
    real = codegen.generate

    def generate(result, annotate=False):
        seen["annotate"] = annotate
        return real(result)
    monkeypatch.setattr(codegen, "generate", generate)
    assert S.codegen_annotates()
    compile_program(MLP, use_cache=False, annotate=True)
    assert seen == {"annotate": True}


def test_a_code_generator_without_annotate_gets_no_such_keyword(monkeypatch):
    from tritium.backends.pytorch import codegen

    real = codegen.generate
    monkeypatch.setattr(codegen, "generate", lambda result: real(result))
    assert not S.codegen_annotates()
    assert "class DigitsMLP" in compile_program(MLP, use_cache=False, annotate=True).python


def test_a_code_generator_failure_is_e0021(monkeypatch):
    from tritium.backends.pytorch import codegen

    def fail(result, **kwargs):
        raise codegen.CodegenError("no template for this")
    monkeypatch.setattr(codegen, "generate", fail)
    with pytest.raises(CompileError) as info:
        compile_program(MLP, use_cache=False)
    assert [d.code for d in info.value.diagnostics] == ["E0021"]


def test_no_driver_module_imports_the_cli():
    """The CLI imports the driver, never the other way round: what both need lives in
    driver.console."""
    for path in (ROOT / "src" / "tritium" / "driver").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                depth = len(path.relative_to(ROOT / "src").parts) - 1
                target = node.module or ""
                if node.level:
                    base = list(path.relative_to(ROOT / "src").parts[:depth - node.level + 1])
                    target = ".".join([*base, *([target] if target else [])])
                assert target != "tritium.cli" and not target.startswith("tritium.cli."), \
                    f"{path.name} imports {target}"


def test_front_stages_need_no_checked_program(tmp_path):
    """`--emit tokens` and `--emit ast` of a program with a type error still print: those
    stages come before the checker and do not run it; `check` reports the error."""
    f = tmp_path / "bad.tri"
    f.write_text("fn f(x: Tensor[n, 4]) -> Tensor[n, 4] { return y }\n")
    r = compile_program(f, use_cache=False, stages=("tokens", "ast"))
    assert "IDENT\ty" in r.stages["tokens"] and r.stages["ast"].startswith("Program @1:1")
    assert "parse+check" not in r.timings
    with pytest.raises(CompileError) as info:
        r.stage("check")
    assert [d.code for d in info.value.diagnostics] == ["E0304"]


def test_front_stages_leave_the_cache_alone(tmp_path, monkeypatch):
    from tritium.compile_cache import CompileCache

    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path))
    cache = CompileCache()
    compile_program(MLP, cache=cache, stages=("tokens",))
    assert list(cache.entries()) == []
    compile_program(MLP, cache=cache)
    assert compile_program(MLP, cache=cache, stages=("tokens", "py")).stages["py"]
    assert compile_program(MLP, cache=cache).cached
