"""The Tritium runtime: what generated models import (``from tritium import runtime as trt``).

Quantizers (:mod:`.quant`), straight-through estimators (:mod:`.ste`), layers with a
training and a frozen (packed) mode (:mod:`.layers`), ternary packing (:mod:`.packing`),
kernels (:mod:`.kernels`), safetensors checkpoints (:mod:`.checkpoint`) and model
summaries (:mod:`.summary`). The runtime never imports the compiler.
"""

from tritium.runtime.attention import SelfAttention
from tritium.runtime.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    CheckpointMetadata,
    TensorInfo,
    load_checkpoint,
    read_checkpoint_metadata,
    read_state_dict,
    save_checkpoint,
)
from tritium.runtime.functional import (
    cast,
    init_weight,
    norm,
    random_ternary,
    repeat_configs,
    same_padding,
    ternary_weight,
    with_format,
)
from tritium.runtime.kernels import native_available, ternary_conv2d, ternary_linear
from tritium.runtime.layers import (
    BitLinear,
    Int4Linear,
    Int8Linear,
    TernaryActivation,
    TernaryConv2d,
    TernaryLayer,
    TernaryLinear,
    TritiumLayer,
    fold_batchnorm,
    fold_batchnorms,
    freeze_model,
    tritium_layers,
)
from tritium.runtime.packing import (
    FORMAT_VERSION,
    PackedTernary,
    TernaryValueError,
    pack_ternary,
    packed_row_bytes,
    unpack_ternary,
)
from tritium.runtime.quant import (
    DEFAULT_ACTIVATION_THRESHOLD,
    QUANTIZER_NAMES,
    IntQuant,
    TernaryQuant,
    canonical_quantizer_name,
    dequantize_int,
    dequantize_ternary,
    get_quantizer,
    pack_int4,
    quantize_absmean,
    quantize_activations_int8,
    quantize_int4_weights,
    quantize_int8_weights,
    quantize_stochastic,
    quantize_threshold,
    quantize_twn,
    quantize_weight,
    ternarize_activations,
    unpack_int4,
)
from tritium.runtime.ste import (
    STE_NAMES,
    ClippedSTE,
    IdentitySTE,
    fake_quant_int8,
    get_ste,
    ste_clipped,
    ste_identity,
    ternary_activation,
)
from tritium.runtime.summary import LayerSummary, Summary, render_summary, summarize
from tritium.runtime.ternarize import TernarizeReport, TernaryConv1d, ternarize

__all__ = [
    # generated-code helpers
    "SelfAttention",
    "cast",
    "init_weight",
    "norm",
    "random_ternary",
    "repeat_configs",
    "same_padding",
    "ternary_weight",
    "with_format",
    # layers
    "TritiumLayer",
    "TernaryLayer",
    "TernaryLinear",
    "TernaryConv2d",
    "TernaryConv1d",
    "BitLinear",
    "TernaryActivation",
    "Int8Linear",
    "Int4Linear",
    "fold_batchnorm",
    "fold_batchnorms",
    "freeze_model",
    "tritium_layers",
    # quantizers
    "QUANTIZER_NAMES",
    "TernaryQuant",
    "IntQuant",
    "get_quantizer",
    "canonical_quantizer_name",
    "DEFAULT_ACTIVATION_THRESHOLD",
    "quantize_twn",
    "quantize_absmean",
    "quantize_threshold",
    "quantize_stochastic",
    "quantize_weight",
    "dequantize_ternary",
    "quantize_activations_int8",
    "ternarize_activations",
    "quantize_int8_weights",
    "quantize_int4_weights",
    "dequantize_int",
    "pack_int4",
    "unpack_int4",
    # straight-through estimators
    "IdentitySTE",
    "ClippedSTE",
    "STE_NAMES",
    "ste_identity",
    "ste_clipped",
    "get_ste",
    "fake_quant_int8",
    "ternary_activation",
    # packing and kernels
    "FORMAT_VERSION",
    "PackedTernary",
    "TernaryValueError",
    "packed_row_bytes",
    "native_available",
    "pack_ternary",
    "unpack_ternary",
    "ternary_linear",
    "ternary_conv2d",
    # checkpoints
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "CheckpointMetadata",
    "TensorInfo",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "read_state_dict",
    # existing PyTorch models
    "ternarize",
    "TernarizeReport",
    # summaries
    "LayerSummary",
    "Summary",
    "summarize",
    "render_summary",
]

# Tuned kernel configs (`tritium tune`): when the tuner has recorded winning configs, the
# kernels' config resolver answers them per exact shape on this machine. Here it is only a
# stat; the records file is read on the first kernel call (docs/tuning.md;
# TRITIUM_TUNED_CONFIGS=0: off). The runtime reads the data and never imports the tuner.
from tritium.runtime.kernels import (  # noqa: E402
    use_tuned_configs_if_recorded as _use_tuned_configs_if_recorded,
)

_use_tuned_configs_if_recorded()
