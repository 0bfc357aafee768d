"""The GPU backend: OpenAI Triton kernels generated from the optimized IR.

* `specs`    — what each kernel computes (`LinearSpec`, `Conv2dSpec`, `QuantInt8Spec`)
* `codegen`  — specs → readable, deterministic Triton source
* `extract`  — optimized IR → the kernel specs (and problem sizes) a model needs
* `loader`   — generated source → an imported module (interpreter or JIT)
* `launch`   — launchers with the CPU kernels' contract (`triton_ternary_linear`, …)
* `aot`      — ahead-of-time builds through `triton.compile` for a `GPUTarget`, cached per stage
* `dispatch` — the entry the runtime calls for CUDA tensors
* `compat`   — what differs between the supported Triton versions (3.5 and newer)

Importing this package imports neither torch nor triton; `launch` needs both, `aot` needs
triton, `specs`, `codegen` and `extract` need neither (so `tritium compile --emit triton`
works without them).
"""

from .codegen import generate_source, kernel_names
from .specs import Conv2dSpec, KernelSpec, LinearSpec, QuantInt8Spec

__all__ = ["Conv2dSpec", "KernelSpec", "LinearSpec", "QuantInt8Spec", "generate_source",
           "kernel_names"]
