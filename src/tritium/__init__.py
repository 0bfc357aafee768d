"""Tritium: a compiler and runtime for ternary neural networks.

    import tritium
    result = tritium.compile("examples/mlp.tri")      # stages, generated source, classes
    model = tritium.load("examples/mlp.tri")           # an instantiated nn.Module
    block = tritium.load("examples/resnet18.tri", "BasicBlock", c_in=64, c_out=128)

Importing `tritium` is cheap: it never imports torch. The compiler lives in
`tritium.frontend`, `tritium.check`, `tritium.ir`, `tritium.passes` and
`tritium.backends`; the runtime that generated modules use is `tritium.runtime`.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "compile", "load"]


def compile(path_or_source, **options):  # noqa: A001 - the public API is tritium.compile
    """Compile a .tri file or program text; see `tritium.driver.compile_program`."""
    from .driver import compile_program

    return compile_program(path_or_source, **options)


def load(path, name=None, **hyperparameters):
    """An instantiated `nn.Module` from a .tri file; see `tritium.driver.load_module`."""
    from .driver import load_module

    return load_module(path, name, **hyperparameters)
