"""Lowering: a checked Tritium program to Tritium IR.

    lowered = lower(check_file("examples/resnet18.tri"))
    lowered.module    # tritium.ir.Module (verified)
    lowered.entry     # "ResNet18.forward"
    lowered.params    # "layer1.0.conv1.weight" -> ((64, 64, 3, 3), "f32", "kaiming_uniform", QuantSpec)

Every (definition, concrete hyperparameters) pair that is used becomes its own IR LayerDef
(monomorphization), so shapes and conditional layers are concrete. Builtin sub-layers are
emitted inline as ops on dotted parameters; user blocks/layers become `sublayer` instances
called with `call {callee = "forward", instance = …}`. Statements are lowered to SSA: `if` on
a condition known at lowering time picks its branch, other conditions become structured IR
`if` ops, `for` loops are unrolled. See docs/ir.md, "Lowering", for the rules.
"""


from .lowerer import Lowerer, lower
from .values import QUANTIZER_MAP, LoweredModel, LoweringError, mono_name

__all__ = ["LoweredModel", "LoweringError", "Lowerer", "lower", "QUANTIZER_MAP", "mono_name"]
