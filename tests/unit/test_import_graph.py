"""Imports run one way: the layer order of docs/architecture.md, checked on the source.

Every module under src/tritium is parsed with ``ast``; every import counts, at module level
and inside functions, absolute and relative. An import is allowed when the imported module's
layer is the importer's own or one the importer's layer lists in :data:`LAYERS`; the test
prints every other edge as ``file:line importer -> imported``. Modules must also form no
cycle. ``from package import name`` is an edge to ``package.name`` when that is a module,
else to ``package``.

The root package ``tritium`` is a leaf at module level (it imports nothing when loaded);
its functions ``tritium.compile``/``load``/``ternarize`` are the public API and import the
driver and the runtime when a user calls them, after everything is loaded
(:data:`API_FACADE`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tritium"

# The layers, bottom to top: (name, modules, layers it may import besides its own).
# A module pattern is a module's exact name, or "pkg.*" for a package and everything in it;
# the most specific pattern wins. Every module must match one.
LAYERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # shared leaves that every stage reads: the cache root and bounded reader, the argument
    # checks and their one table of ranges, the torch-free vocabulary of every stage, the
    # QAT schedule of `training { }` (checker and trainer)
    ("shared", ("tritium", "tritium.cachedir", "tritium.argcheck", "tritium.vocab",
                "tritium.vocab.*", "tritium.compile_cache", "tritium.qat", "tritium.textsafe"),
     ()),
    # the compiler, one stage on the next
    ("frontend", ("tritium.frontend.*",), ("shared",)),
    ("check", ("tritium.check.*",), ("frontend", "shared")),
    ("ir", ("tritium.ir.*",), ("check", "frontend", "shared")),
    ("passes", ("tritium.passes.*",), ("ir", "check", "frontend", "shared")),
    # kernel sources and their build/load code: the C templates (backends.cpu) and the Triton
    # kernel templates rendered from a KernelSpec (no IR), reached by the code generators, the
    # runtime and the tuner alike
    ("kernels", ("tritium.backends", "tritium.backends.cpu.*", "tritium.backends.triton",
                 "tritium.backends.triton.specs", "tritium.backends.triton.codegen",
                 "tritium.backends.triton.compat", "tritium.backends.triton.loader"),
     ("shared",)),
    # the code generators that read the checked program or the IR
    ("backends", ("tritium.backends.pytorch.*", "tritium.backends.triton.extract",
                  "tritium.backends.triton.aot"),
     ("passes", "ir", "check", "frontend", "kernels", "shared")),
    # what generated modules and users' models run: never the compiler, tuner or driver
    ("runtime", ("tritium.runtime.*", "tritium.backends.triton.dispatch",
                 "tritium.backends.triton.launch"), ("kernels", "shared")),
    ("data", ("tritium.data.*",), ("shared",)),
    # above both towers: the pipeline, training and evaluation; then the tuner, which compiles
    # models to find their shapes and measures the kernels the runtime runs
    ("driver", ("tritium.driver.*",),
     ("data", "runtime", "backends", "kernels", "passes", "ir", "check", "frontend", "shared")),
    ("tune", ("tritium.tune.*",),
     ("driver", "data", "runtime", "backends", "kernels", "passes", "ir", "check", "frontend",
      "shared")),
    ("cli", ("tritium.cli", "tritium.__main__"),
     ("tune", "driver", "data", "runtime", "backends", "kernels", "passes", "ir", "check",
      "frontend", "shared")),
)

# modules whose function-level imports are the public API facade (see the module docstring)
API_FACADE = frozenset({"tritium"})

# Tolerated edges ("importer -> imported"), each with its reason; an entry that no longer
# occurs fails the test, so the set can only shrink. None today.
KNOWN_ELSEWHERE: frozenset[str] = frozenset()   # empty: every edge runs one way


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    path: Path
    line: int
    in_function: bool

    @property
    def key(self) -> str:
        return f"{self.importer} -> {self.imported}"

    def show(self, root: Path) -> str:
        where = "in a function" if self.in_function else "module level"
        return f"{self.path.relative_to(root.parent)}:{self.line}: {self.key} ({where})"


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under the package directory ``root``: name -> (file, is a package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts.pop()
        out[".".join(parts)] = (path, package)
    return out


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return True
    return False


def edges(root: Path) -> list[Edge]:
    """Every import among the modules under ``root`` (imports under ``if TYPE_CHECKING:``
    never run and do not count)."""
    mods = modules(root)
    top = root.name
    out = []
    for name, (path, package) in mods.items():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if _type_checking_only(node, parents):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = name.split(".") if package else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for a in node.names:
                    sub = f"{module}.{a.name}"
                    targets.append(sub if sub in mods else module)
            for target in targets:
                if target != top and not target.startswith(top + "."):
                    continue
                while target not in mods and "." in target:   # an attribute, not a module
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    out.append(Edge(name, target, path, node.lineno,
                                    _in_function(node, parents)))
    return out


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for layer, patterns, _ in LAYERS:
        for p in patterns:
            if p.endswith(".*"):
                base = p[:-2]
                hit = module == base or module.startswith(base + ".")
            else:
                hit = module == p
            if hit and (best is None or len(p) > best[0]):
                best = (len(p), layer)
    return None if best is None else best[1]


def back_edges(all_edges: Iterable[Edge]) -> list[Edge]:
    allowed = {layer: set(may) | {layer} for layer, _, may in LAYERS}
    out = []
    for e in all_edges:
        if e.in_function and e.importer in API_FACADE:
            continue
        a, b = layer_of(e.importer), layer_of(e.imported)
        if a is not None and b is not None and b not in allowed[a]:
            out.append(e)
    return out


def cycles(all_edges: Iterable[Edge], skip: frozenset[str] = frozenset()) -> list[list[str]]:
    """The module cycles (strongly connected components of more than one module)."""
    graph: dict[str, set[str]] = {}
    for e in all_edges:
        if e.key in skip or (e.in_function and e.importer in API_FACADE):
            continue
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:   # Tarjan's algorithm, iteratively
        nonlocal counter
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_edges(all_edges: list[Edge], comp: list[str]) -> list[Edge]:
    members = set(comp)
    return [e for e in all_edges if e.importer in members and e.imported in members]


def check_tree(root: Path, known: frozenset[str] = frozenset()) -> list[str]:
    """Every problem of the tree under ``root`` as a line (empty: the graph is one way)."""
    all_edges = edges(root)
    problems = []
    for name in modules(root):
        if layer_of(name) is None:
            problems.append(f"{name} is in no layer: add it to LAYERS")
    for e in back_edges(all_edges):
        if e.key not in known:
            problems.append("back-edge " + e.show(root))
    for comp in cycles(all_edges, skip=known):
        lines = "\n    ".join(e.show(root) for e in _cycle_edges(all_edges, comp))
        problems.append(f"cycle among {', '.join(comp)}:\n    {lines}")
    present = {e.key for e in all_edges}
    for entry in sorted(known - present):
        problems.append(f"KNOWN_ELSEWHERE lists {entry!r}, which no longer occurs: remove it")
    return problems


# --------------------------------------------------------------------------------- the tests

def test_the_layer_table_is_itself_one_way():
    seen: set[str] = set()
    for layer, _, may in LAYERS:
        assert set(may) <= seen, f"{layer} may import a layer above it: {set(may) - seen}"
        seen.add(layer)
    runtime = dict((name, set(may)) for name, _, may in LAYERS)["runtime"]
    assert not runtime & {"frontend", "check", "ir", "passes", "backends", "driver", "tune",
                          "cli"}


def test_imports_run_one_way_and_form_no_cycle():
    problems = check_tree(SRC, KNOWN_ELSEWHERE)
    assert not problems, "\n" + "\n".join(problems)


def _plant(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "tritium"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


CLEAN = {
    "__init__.py": "",
    "cachedir.py": "import os\n",
    "runtime/__init__.py": "from . import kernels\n",
    "runtime/kernels.py": "from tritium.cachedir import os\n",
    "tune/__init__.py": "",
    "tune/dispatch.py": "from tritium.runtime import kernels\n",
}


def test_a_clean_tree_passes(tmp_path):
    assert check_tree(_plant(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("text, line", [
    ("import os\n\n\ndef f():\n    from tritium.tune import dispatch\n", 5),
    ("def f():\n    from ..tune.dispatch import x\n", 2),
    ("import tritium.tune.dispatch\n", 1),
])
def test_a_planted_back_edge_fails_with_its_file_and_line(tmp_path, text, line):
    pkg = _plant(tmp_path, {**CLEAN, "runtime/kernels.py": text})
    problems = check_tree(pkg)
    back = [p for p in problems if p.startswith("back-edge")]
    assert back == [f"back-edge tritium/runtime/kernels.py:{line}: tritium.runtime.kernels -> "
                    f"tritium.tune.dispatch ({'in a function' if 'def' in text else 'module level'})"]
    assert any(p.startswith("cycle among tritium.runtime.kernels, tritium.tune.dispatch")
               for p in problems), problems


def test_a_cycle_within_one_layer_fails(tmp_path):
    pkg = _plant(tmp_path, {**CLEAN, "tune/a.py": "from . import b\n",
                            "tune/b.py": "def f():\n    from tritium.tune import a\n"})
    (problem,) = check_tree(pkg)
    assert problem.startswith("cycle among tritium.tune.a, tritium.tune.b")
    assert "tritium/tune/b.py:2: tritium.tune.b -> tritium.tune.a" in problem


def test_an_unplaced_module_and_a_stale_exception_fail(tmp_path):
    pkg = _plant(tmp_path, {**CLEAN, "newthing.py": ""})
    problems = check_tree(pkg, frozenset({"tritium.runtime -> tritium.tune"}))
    assert "tritium.newthing is in no layer: add it to LAYERS" in problems
    assert any("no longer occurs" in p for p in problems)


def test_a_known_exception_is_tolerated_only_for_its_own_edge(tmp_path):
    pkg = _plant(tmp_path, {**CLEAN, "runtime/kernels.py": "from tritium.tune import dispatch\n"})
    assert check_tree(pkg, frozenset({"tritium.runtime.kernels -> tritium.tune.dispatch"})) == []


def test_type_checking_imports_do_not_count(tmp_path):
    pkg = _plant(tmp_path, {**CLEAN, "runtime/kernels.py":
                            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from tritium.tune import dispatch\n"})
    assert check_tree(pkg) == []
