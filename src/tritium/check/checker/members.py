"""Each member of a model, block or layer is defined once (E0206).

A definition's members share one namespace (they become the attributes and methods of one
generated class), layers and functions aside (a function is generated as a module-level def,
so a layer may share its name): its hyperparameters (in the signature of a `layer L(n: int)` or in a
`params { }` section, of which there is one), `param`s, `state`s and functions (`forward`
and the other methods). A second definition of a name would silently replace the first
(the later `param w` is the one allocated, the later `forward` the one that runs), so it is
reported where it is written. Layers and config constants are checked where the scope is
built (checker.core: the seed lets a constant and a later layer share a name); a name
repeated within one parameter list is checks.names'. Checked once per definition.
"""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.diagnostics import Label, Span
from ...frontend.parser import TENSOR_TYPES

_WHAT = {A.ParamDecl: "parameter", A.StateDecl: "state", A.FnDef: "function",
         A.LayerDecl: "layer", A.ConfigEntry: "constant"}


def check_members(ck, node) -> None:
    """Report E0206 for a member of `node` (a model, block or layer) defined twice."""
    seen: dict[str, tuple[Span, str]] = {}

    def define(name: str, span: Span, what: str, report: bool) -> None:
        prev = seen.get(name)
        if prev is not None and {prev[1], what} == {"layer", "function"}:
            return   # a layer and a function live apart (the function is a module-level def;
            #          `layer forward: ReLU` beside `forward(…)` is the seed's own hostile case)
        if prev is not None and report:
            ck.report("E0206", f"`{name}` is defined twice in `{node.name}` (a {prev[1]}, "
                               f"then a {what})" if prev[1] != what else
                      f"the {what} `{name}` is defined twice in `{node.name}`", span,
                      label="second definition", secondary=[Label(prev[0], "first defined here")],
                      help="rename or remove one of them")
        elif prev is None:
            seen[name] = (span, what)

    if isinstance(node, A.LayerDef):
        for p in node.params or []:
            weight = p.type is not None and p.type.name in TENSOR_TYPES
            define(p.name, p.span, "weight" if weight else "hyperparameter", False)
    sections: A.ParamsSection | None = None
    for item in node.body:
        if isinstance(item, A.ParamsSection):
            if sections is not None:
                ck.report("E0206", f"`{node.name}` has a second `params {{ }}` section",
                          item.span, label="second section",
                          secondary=[Label(sections.span, "first section")],
                          help="list every hyperparameter in one `params { }` section")
            for p in item.params:   # (in a second section: that section is the error)
                define(p.name, p.span, "hyperparameter", sections is None)
            sections = sections or item
        elif isinstance(item, A.ParamDecl | A.StateDecl | A.FnDef):
            define(item.name, item.span, _WHAT[type(item)], True)
        elif isinstance(item, A.LayerDecl):
            define(item.name, item.span, "layer", False)   # reported by checker.core
        elif isinstance(item, A.ConfigEntry):
            define(item.key, item.span, "constant", False)
