"""Tritium: a compiler and runtime for ternary neural networks.

    import tritium
    result = tritium.compile("examples/mlp.tri")      # generated source, classes
    result.stages["ir-opt"]                            # a later stage, produced on demand
    result = tritium.compile(source=text)              # program text, not a path
    model = tritium.load("examples/mlp.tri")           # an instantiated nn.Module
    block = tritium.load("examples/resnet18.tri", "BasicBlock", c_in=64, c_out=128)
    model = tritium.load_source(text, "Tiny")          # from program text
    model, report = tritium.ternarize(torch_model)     # an existing nn.Module, in place
    r = tritium.generate("runs/lm/model.safetensors", "def main(", max_new_tokens=64)

A path is always a path (whatever characters its name holds: `{`, newlines) and program
text is only ever given as `source=` (or to `load_source`): the API never guesses which
one a string is.

Importing `tritium` is cheap: it never imports torch. The compiler lives in
`tritium.frontend`, `tritium.check`, `tritium.ir`, `tritium.passes` and
`tritium.backends`; the runtime that generated modules use is `tritium.runtime`.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "compile", "generate", "load", "load_source", "ternarize"]


def compile(path=None, *, source=None, **options):  # noqa: A001 - the public API is tritium.compile
    """Compile the .tri file at `path`, or program text given as `source=` (exactly one);
    see `tritium.driver.compile_program`. Only the stages asked for run (`py` by default;
    `stages=("py", "ir-opt")` for more): the IR is lowered when a stage needs it."""
    from .driver import compile_program

    return compile_program(path, source=source, **options)


def load(path, name=None, **hyperparameters):
    """An instantiated `nn.Module` from the .tri file at `path`; see
    `tritium.driver.load_module`. For program text use :func:`load_source`."""
    from .driver import load_module

    if path is None:
        raise TypeError("tritium.load takes the path of a .tri file; for program text use "
                        "tritium.load_source(text)")
    return load_module(path, name, **hyperparameters)


def load_source(text, name=None, *, file="<input>", **hyperparameters):
    """An instantiated `nn.Module` from program text (`file` names it in diagnostics)."""
    from .driver import load_module

    return load_module(None, name, source=text, file=file, **hyperparameters)


def ternarize(model, include=None, exclude=None, **options):
    """Convert an existing ``nn.Module``'s Linear/Conv1d/Conv2d layers into ternary layers in
    place, starting from their weights; returns ``(model, report)``. See
    :func:`tritium.runtime.ternarize.ternarize` (this imports torch)."""
    from .runtime.ternarize import ternarize as _ternarize

    return _ternarize(model, include, exclude, **options)


def generate(checkpoint, prompt, max_new_tokens=128, **options):
    """Text after `prompt` from a language-model checkpoint of `tritium train --data text`:
    a :class:`tritium.driver.generate.GenerationResult` (`.text`, `.tokens`, prefill and
    decode tokens/s). Options: temperature, top_k, top_p, greedy, seed, use_cache,
    on_text (a callable receiving the text as it streams). This imports torch."""
    from .driver.generate import generate as _generate

    return _generate(checkpoint, prompt, max_new_tokens, **options)
