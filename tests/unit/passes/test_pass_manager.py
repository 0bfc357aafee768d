"""PassManager: registry, option parsing, reports, IR dumps, fixpoint bound, verify_each."""

from __future__ import annotations

import io

import pytest

from tritium.ir import Module, Op, parse_module, print_module
from tritium.passes import (
    PASSES,
    Fixpoint,
    Pass,
    PassError,
    PassManager,
    bindings_for,
    parse_pass,
    pipeline,
    run_opt,
)

TEXT = '''\
func @f(%x: tensor<[b, 4], f32>) -> (tensor<[b, 4], f32>) {
  %0 = constant() {value = -0.0} : () -> f32
  %1 = add(%x, %0) : (tensor<[b, 4], f32>, f32) -> tensor<[b, 4], f32>
  %2 = exp(%1) : (tensor<[b, 4], f32>) -> tensor<[b, 4], f32>
  %3 = exp(%1) : (tensor<[b, 4], f32>) -> tensor<[b, 4], f32>
  %4 = add(%2, %3) : (tensor<[b, 4], f32>, tensor<[b, 4], f32>) -> tensor<[b, 4], f32>
  return(%4) : (tensor<[b, 4], f32>) -> ()
}
'''


def test_registry_has_every_pass() -> None:
    assert set(PASSES) == {"verify", "canonicalize", "constant-fold", "dce", "cse",
                           "quant-dequant-elim", "bn-fold", "fuse", "shape-specialize"}


def test_parse_pass_options_and_errors() -> None:
    p = parse_pass("constant-fold{max_elements=8}")
    assert p.opts == {"max_elements": 8}
    assert parse_pass("quant-dequant-elim{lossy=true}").opts["lossy"] is True
    assert parse_pass("shape-specialize{batch=1, seq=16}").opts == {"batch": 1, "seq": 16}
    with pytest.raises(ValueError, match="unknown pass 'frobnicate'"):
        parse_pass("frobnicate")
    with pytest.raises(ValueError, match="has no option"):
        parse_pass("cse{aggressive=true}")
    with pytest.raises(ValueError, match="must be key=value"):
        parse_pass("constant-fold{8}")


def test_report_counts_ops_and_time() -> None:
    m = parse_module(TEXT)
    report = PassManager.from_spec("canonicalize,cse,dce").run(m)
    assert [r.name for r in report.records] == ["canonicalize", "cse", "dce"]
    assert [(r.ops_before, r.ops_after, r.changed) for r in report.records] == [
        (6, 5, True), (5, 4, True), (4, 3, True)]
    assert all(r.seconds >= 0 for r in report.records) and report.total_seconds >= 0
    table = report.table()
    assert "canonicalize" in table and "ops before" in table and "total" in table


def test_print_ir_after_all_callback_and_stream() -> None:
    seen: list[tuple[str, str]] = []
    pipeline(1, print_ir_after_all=lambda name, text: seen.append((name, text))).run(parse_module(TEXT))
    assert [n for n, _ in seen] == ["constant-fold", "canonicalize", "dce"]
    assert "add(%x" in seen[0][1] and "add(%x" not in seen[-1][1]
    buf = io.StringIO()
    PassManager.from_spec("dce", print_ir_after_all=buf).run(parse_module(TEXT))
    assert buf.getvalue().startswith("// -----// IR Dump After dce //----- //\nfunc @f")


class Flip(Pass):
    """Always reports a change: a fixpoint over it must stop at its bound."""

    name = "flip"

    def run(self, module: Module) -> bool:
        return True


class Break(Pass):
    """Corrupts the IR: verify_each must catch it and name the pass."""

    name = "break"

    def run(self, module: Module) -> bool:
        f = module.functions[0]
        f.body.ops.insert(0, Op("relu", [f.body.ops[-1].operands[0]], {}, [f.result_types[0]]))
        f.body.ops[0].parent = f.body
        return True


def test_fixpoint_bound() -> None:
    report = PassManager([Fixpoint([Flip()], max_iterations=3)]).run(parse_module(TEXT))
    assert [r.iteration for r in report.records] == [0, 1, 2] and not report.converged
    report = PassManager([Fixpoint([PASSES["cse"](), PASSES["dce"]()], 10)]).run(parse_module(TEXT))
    assert report.converged and report.records[-1].iteration == 1


def test_verify_each_names_the_pass() -> None:
    with pytest.raises(PassError, match="invalid IR after pass 'break': .*op 'relu'.* not defined before its use"):
        PassManager([Break()], verify_each=True).run(parse_module(TEXT))
    PassManager([Break()], verify_each=False).run(parse_module(TEXT))


def test_run_opt_passes_and_pipelines() -> None:
    assert run_opt(TEXT, []) == TEXT
    assert run_opt(TEXT, "cse,dce") == run_opt(TEXT, ["cse", "dce"])
    o3 = run_opt(TEXT, pipeline="O3")
    assert o3.count("exp(") == 1 and "constant" not in o3
    assert run_opt(TEXT, pipeline="-O0") == TEXT
    with pytest.raises(ValueError, match="not both"):
        run_opt(TEXT, ["cse"], pipeline="O1")
    assert "tensor<[2, 4], f32>" in print_module(_specialized())


def _specialized() -> Module:
    m = parse_module(TEXT)
    pipeline(3, bindings=bindings_for(m.functions[0], [(2, 4)])).run(m)
    return m


def test_bindings_for() -> None:
    f = parse_module(TEXT).functions[0]
    assert bindings_for(f, [(7, 4)]) == {"b": 7}
    with pytest.raises(ValueError, match="does not fit"):
        bindings_for(f, [(7, 5)])
    with pytest.raises(ValueError, match="1 arguments, got 2"):
        bindings_for(f, [(7, 4), (1,)])


def test_parse_pipeline_spec() -> None:
    from tritium.passes import parse_pipeline_spec

    assert parse_pipeline_spec("O3{batch=1, seq=16}") == (3, {"batch": 1, "seq": 16})
    assert parse_pipeline_spec("-O2") == (2, {}) and parse_pipeline_spec("1") == (1, {})
    with pytest.raises(ValueError, match="unknown pipeline"):
        parse_pipeline_spec("O7")
    with pytest.raises(ValueError, match="must be name=size"):
        parse_pipeline_spec("O3{batch=x}")
