"""Every name of a program that can reach generated code is a plain name (E0311).

The lexer only makes identifiers of ASCII letters, digits and `_`, but a config constant can
be written with a quoted key (`"in features": 3`), and that key becomes a variable and an
attribute. Names starting with `__` are reserved for Python (dunders and private-name
mangling would change what generated code means). This walk looks at every binding and use
of a name in a definition: definition, parameter, layer, `let`, loop variable, config
constant, `repeat { }` key, named argument, symbolic dim and called kind; and a parameter
list never names one parameter twice (E0206: Python refuses duplicate arguments). The keys of
`training`, `performance` and `quantization` sections and of dict literals are data (they
are emitted as string literals), so any text is fine there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..frontend import ast as A
from ..frontend.diagnostics import Span
from ..frontend.names import is_name

_DATA_SECTIONS = ("training", "performance", "quantization")


def _children(node) -> Iterator[object]:
    for slot in getattr(node, "__slots__", ()):
        v = getattr(node, slot, None)
        if isinstance(v, list):
            yield from v
        elif hasattr(v, "__slots__") and not isinstance(v, str | Span):
            yield v


def _named(node) -> Iterator[tuple[str, str]]:
    """(name, what) pairs that node binds or uses as a name."""
    if isinstance(node, A.Name):
        yield node.id, "name"
    elif isinstance(node, A.ModelDef | A.BlockDef | A.LayerDef | A.FnDef):
        yield node.name, "definition name"
    elif isinstance(node, A.Let | A.ParamSpec | A.LayerDecl | A.ParamDecl | A.StateDecl):
        yield node.name, "name"
    elif isinstance(node, A.For):
        yield node.var, "loop variable"
    elif isinstance(node, A.Arg) and node.name is not None:
        yield node.name, "argument name"
    elif isinstance(node, A.LayerKind):
        yield node.kind, "layer kind"
    elif isinstance(node, A.Dim) and isinstance(node.value, str):
        yield node.value, "dimension name"


def check_names(root, report: Callable[..., None]) -> None:
    """Report E0311 for every name under `root` (a definition) that is not a plain name."""
    stack: list[tuple[object, bool]] = [(root, True)]
    while stack:
        node, keys_are_names = stack.pop()
        for name, what in _named(node):
            _check(name, what, getattr(node, "span", None), report)
        if isinstance(node, A.ConfigEntry) and keys_are_names:
            _check(node.key, "config key", node.span, report)
        params = node.params if isinstance(node, A.ParamsSection | A.FnDef | A.LayerDef) \
            else None
        seen: dict[str, object] = {}
        for p in params or []:
            if p.name in seen:
                report("E0206", f"parameter `{p.name}` is defined twice", p.span,
                       label="second definition", help="rename or remove one of them")
            seen[p.name] = p
        if isinstance(node, A.Section):
            inner = node.name not in _DATA_SECTIONS
        elif isinstance(node, A.DictLit | A.LayerKind):
            inner = False   # dict keys are data; a kind's keys are checked against its keys
        elif isinstance(node, A.ModelDef | A.BlockDef | A.LayerDef):
            inner = True
        else:
            inner = keys_are_names
        for child in _children(node):
            stack.append((child, inner))


def _check(name: str, what: str, span, report: Callable[..., None]) -> None:
    if is_name(name):
        return
    shown = name if len(name) <= 60 else name[:57] + "..."
    if isinstance(name, str) and (name == "_" or name.startswith("__")
                                  and is_name("x" + name[2:])):
        report("E0311", f"`{shown}`: `_` and names starting with `__` are reserved", span,
               label="reserved name", help="rename it; one leading `_` is fine")
        return
    report("E0311", f"{what} {shown!r} is not a valid name", span, label="not a name",
           help="names are letters, digits and `_`, and do not start with a digit")
