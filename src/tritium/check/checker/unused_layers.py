"""A declared layer that no function calls is still built with its model (E0309 and the
other config errors, reported at the declaration).

A layer is interpreted where it is applied, with its input: the errors of its configuration
that only building it reveals (`embed_dim` not divisible by `num_heads`, a block whose
hyperparameters give one of its layers `out_features: -16`) were reported there, so a layer
declared but never called (W0002) passed check and failed when the module was built. Each
kind of such a layer is built here without an input: a builtin kind's rule runs on an input
of unknown shape (which only its configuration can fail), a block's or layer's body is
interpreted with the instance's config.
"""

from __future__ import annotations

from ...frontend.diagnostics import Label
from .. import library as L
from ..types import TensorT


def check_unused_layer(ck, name: str, inst) -> None:
    """Report the first configuration error building the unused layer `inst` would hit."""
    for kind in inst.kinds:
        if kind.spec is not None:
            try:
                kind.spec.rule(TensorT("float32", None), dict(kind.cfg))
            except L.ShapeError as e:
                if e.code.startswith("E05"):
                    continue   # about an input: there is none here
                sec = [Label(kind.spans[e.key], f"`{e.key}` is set here")] \
                    if e.key and e.key in kind.spans else []
                ck.report(e.code, f"layer `{name}` ({kind.kind}): {e.message}", kind.span,
                          label="cannot be built", help=e.help, secondary=sec)
                return
        elif kind.user is not None and kind.user.name not in ck.cycles:
            saved = ck.inner
            ck.inner = []
            ck.quiet += 1
            ck.instance_depth += 1
            try:
                ck.definition_env(kind.user.node, kind.cfg, abstract=False)
                problems = ck.inner
            finally:
                ck.quiet -= 1
                ck.instance_depth -= 1
                ck.inner = saved
            if problems:
                first = problems[0]
                sec = [Label(first.span, first.message)] if first.span else []
                ck.report(first.code, f"layer `{name}` ({kind.user.name}) cannot be built with "
                                      f"this config: {first.message}", kind.span,
                          label="cannot be built", help=first.help, secondary=sec)
                return
