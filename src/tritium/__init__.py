"""Tritium: a compiler and runtime for ternary neural networks.

Importing `tritium` is cheap: it never imports torch. The compiler lives in
`tritium.frontend`, `tritium.check`, `tritium.ir`, `tritium.passes` and
`tritium.backends`; the runtime that generated modules use is `tritium.runtime`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
