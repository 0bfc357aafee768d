"""The pass manager, the -O0..-O3 pipelines and `run_opt`.

    pm = PassManager.from_spec("canonicalize,cse,shape-specialize{batch=1}", verify_each=True)
    report = pm.run(module)           # report.table(): pass, seconds, ops before/after
    pm = pipeline("O3", bindings={"batch": 1}, print_ir_after_all=sys.stderr)
    run_opt(text, pipeline="O2") -> printed IR

Pipelines:
    O0  verify
    O1  constant-fold, canonicalize, dce
    O2  constant-fold, canonicalize, cse, quant-dequant-elim, dce, fuse, dce
    O3  bn-fold, [shape-specialize], fixpoint(constant-fold, canonicalize, cse,
        quant-dequant-elim, dce), fuse, fixpoint(canonicalize, cse, dce)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..ir.core import Module, count_ops
from ..ir.parser import parse_module
from ..ir.printer import print_module
from ..ir.verifier import VerifyError, verify
from .base import PASSES, Pass


@dataclass
class Fixpoint:
    """Run `passes` in order, again and again, until none changes the module."""

    passes: list[Pass]
    max_iterations: int = 8

    @property
    def name(self) -> str:
        return "fixpoint(" + ",".join(p.name for p in self.passes) + ")"


@dataclass
class PassRecord:
    name: str
    seconds: float
    ops_before: int
    ops_after: int
    changed: bool
    iteration: int = 0


@dataclass
class PassReport:
    records: list[PassRecord] = field(default_factory=list)
    converged: bool = True  # every fixpoint group stopped before its iteration bound

    @property
    def total_seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def table(self) -> str:
        lines = [f"{'pass':<22} {'iter':>4} {'ms':>9} {'ops before':>10} {'ops after':>9} changed"]
        for r in self.records:
            lines.append(f"{r.name:<22} {r.iteration:>4} {r.seconds * 1e3:>9.3f} "
                         f"{r.ops_before:>10} {r.ops_after:>9} {'yes' if r.changed else 'no'}")
        lines.append(f"{'total':<22} {'':>4} {self.total_seconds * 1e3:>9.3f}")
        return "\n".join(lines)


IRSink = Callable[[str, str], None] | TextIO


class PassError(RuntimeError):
    """A pass left the module invalid (raised in verify_each mode)."""


def _parse_value(v: str) -> Any:
    if v in ("true", "false"):
        return v == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_pass(spec: str) -> Pass:
    """`name` or `name{key=value,key=value}` → a Pass instance."""
    m = re.fullmatch(r"\s*([\w-]+)\s*(?:\{(.*)\})?\s*", spec)
    if m is None or m.group(1) not in PASSES:
        known = ", ".join(sorted(PASSES))
        raise ValueError(f"unknown pass '{spec.strip()}' (known: {known})")
    opts: dict[str, Any] = {}
    if m.group(2):
        for item in m.group(2).split(","):
            k, sep, v = item.partition("=")
            if not sep:
                raise ValueError(f"pass option '{item}' must be key=value")
            opts[k.strip()] = _parse_value(v.strip())
    return PASSES[m.group(1)](**opts)


def split_pipeline(spec: str) -> list[str]:
    """Split `a,b{x=1,y=2},c` at the commas outside braces."""
    out, depth, cur = [], 0, ""
    for ch in spec:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [s for s in out if s.strip()]


class PassManager:
    def __init__(self, passes: list[Pass | Fixpoint] | None = None, *, verify_each: bool = False,
                 print_ir_after_all: IRSink | None = None, max_iterations: int = 8) -> None:
        self.passes: list[Pass | Fixpoint] = list(passes or [])
        self.verify_each = verify_each
        self.print_ir_after_all = print_ir_after_all
        self.max_iterations = max_iterations

    @classmethod
    def from_spec(cls, spec: str, **kw: Any) -> PassManager:
        return cls([parse_pass(s) for s in split_pipeline(spec)], **kw)

    def add(self, p: str | Pass | Fixpoint) -> PassManager:
        self.passes.append(parse_pass(p) if isinstance(p, str) else p)
        return self

    def run(self, module: Module) -> PassReport:
        report = PassReport()
        if self.verify_each:
            self._verify(module, "the input")
        for item in self.passes:
            if isinstance(item, Fixpoint):
                for i in range(min(item.max_iterations, self.max_iterations)):
                    changed = False
                    for p in item.passes:
                        changed |= self._run_one(p, module, report, i)
                    if not changed:
                        break
                else:
                    report.converged = False
            else:
                self._run_one(item, module, report, 0)
        return report

    def _run_one(self, p: Pass, module: Module, report: PassReport, iteration: int) -> bool:
        before = count_ops(module)
        t0 = time.perf_counter()
        changed = bool(p.run(module))
        dt = time.perf_counter() - t0
        report.records.append(PassRecord(p.name, dt, before, count_ops(module), changed, iteration))
        if self.verify_each:
            self._verify(module, f"pass '{p.name}'")
        if self.print_ir_after_all is not None:
            text = print_module(module)
            if callable(self.print_ir_after_all):
                self.print_ir_after_all(p.name, text)
            else:
                self.print_ir_after_all.write(f"// -----// IR Dump After {p.name} //----- //\n{text}\n")
        return changed

    @staticmethod
    def _verify(module: Module, after: str) -> None:
        try:
            verify(module)
        except VerifyError as e:
            raise PassError(f"invalid IR after {after}: {e}") from None


CLEANUP = ("constant-fold", "canonicalize", "cse", "quant-dequant-elim", "dce")


def pipeline_passes(level: int | str, bindings: dict[str, int] | None = None,
                    max_iterations: int = 8) -> list[Pass | Fixpoint]:
    lvl = int(str(level).upper().removeprefix("-").removeprefix("O"))
    if lvl <= 0:
        return [PASSES["verify"]()]
    if lvl == 1:
        return [PASSES[n]() for n in ("constant-fold", "canonicalize", "dce")]
    if lvl == 2:
        return [PASSES[n]() for n in (*CLEANUP, "fuse", "dce")]
    out: list[Pass | Fixpoint] = [PASSES["bn-fold"]()]
    if bindings:
        out.append(PASSES["shape-specialize"](**bindings))
    out.append(Fixpoint([PASSES[n]() for n in CLEANUP], max_iterations))
    out.append(PASSES["fuse"]())
    out.append(Fixpoint([PASSES[n]() for n in ("canonicalize", "cse", "dce")], max_iterations))
    return out


def pipeline(level: int | str, *, bindings: dict[str, int] | None = None,
             verify_each: bool = False, print_ir_after_all: IRSink | None = None,
             max_iterations: int = 8) -> PassManager:
    """The PassManager of -O0..-O3 (`level` 0..3, "O2" or "-O2")."""
    return PassManager(pipeline_passes(level, bindings, max_iterations), verify_each=verify_each,
                       print_ir_after_all=print_ir_after_all, max_iterations=max_iterations)


def parse_pipeline_spec(spec: str) -> tuple[int, dict[str, int]]:
    """`O3`, `-O2`, `2` or `O3{batch=1,seq=16}` → (level, shape bindings)."""
    m = re.fullmatch(r"\s*-?O?([0-3])\s*(?:\{(.*)\})?\s*", spec)
    if m is None:
        raise ValueError(f"unknown pipeline '{spec}' (expected O0..O3, optionally with {{name=size,...}})")
    bindings: dict[str, int] = {}
    for item in filter(None, (m.group(2) or "").split(",")):
        k, sep, v = item.partition("=")
        v = v.strip()
        if not sep or not (v.isascii() and v.isdigit()) or len(v) > 18:
            raise ValueError(f"pipeline binding '{item}' must be name=size "
                             "(a size of at most 18 digits)")
        bindings[k.strip()] = int(v)
    return int(m.group(1)), bindings


def run_opt(text: str, passes: list[str] | str | None = None, pipeline: str | int | None = None,
            verify_each: bool = True) -> str:
    """Parse `text`, run the passes (names with optional `{k=v}` options) or a pipeline
    (`O2`, or `O3{batch=1}` with shape bindings), and return the printed result. The input
    and every intermediate result are verified."""
    m = parse_module(text)
    if passes is not None and pipeline is not None:
        raise ValueError("give passes or a pipeline, not both")
    if pipeline is not None:
        level, bindings = parse_pipeline_spec(str(pipeline))
        pm = PassManager(pipeline_passes(level, bindings), verify_each=verify_each)
    else:
        specs = split_pipeline(passes) if isinstance(passes, str) else list(passes or [])
        pm = PassManager([parse_pass(s) for s in specs], verify_each=verify_each)
    if verify_each and not pm.passes:
        PassManager._verify(m, "the input")
    pm.run(m)
    return print_module(m)
