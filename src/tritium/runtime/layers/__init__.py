"""Tritium layers: ternary, BitNet and low-bit ``nn.Module`` s with a training and a frozen mode.

Training mode (as constructed): each layer holds a latent float ``weight``
``nn.Parameter`` and quantizes it on the fly in ``forward``; the quantized weight reaches
the computation through a straight-through estimator (:mod:`tritium.runtime.ste`), so
gradients flow to the latent weight.

Frozen mode (after ``layer.freeze()``, in place): the weight is quantized once and packed,
the packed data and the scales become buffers, the float ``weight`` parameter is deleted
and ``forward`` calls the packed kernels (:func:`tritium.runtime.kernels.ternary_linear`,
:func:`tritium.runtime.kernels.ternary_conv2d`). A frozen layer's ``state_dict`` holds only
the packed uint8 (or int8) data, the float32 scales and the bias.

Batch-norm folding (:func:`fold_batchnorm`, done by :func:`freeze_model` for the pairs a
generated model lists in its ``tritium_folds`` attribute and for consecutive children of an
``nn.Sequential``, see :func:`fold_batchnorms`): an eval-mode ``BatchNorm1d``/
``BatchNorm2d`` applied directly to a frozen ternary layer's output becomes that layer's
per-output-channel scale and bias (the trits are untouched) and the batch norm is removed
(``None``, which the generated code skips, or ``nn.Identity`` in an ``nn.Sequential``).
A folded layer's ``weight_scale`` has one entry per output channel and it always has a
``bias``.

To load a frozen checkpoint, build the frozen skeleton first -- ``Layer.frozen_skeleton(...)`` or
``layer.freeze_skeleton(format)`` on a freshly constructed layer allocates correctly sized
buffers holding an all-zero weight without quantizing anything -- then ``load_state_dict``.

Buffer names of a frozen layer:

* ternary layers: ``weight_packed`` (uint8, ``(N, packed_row_bytes(K, format))`` where
  ``K`` is ``in_features`` or ``in_channels/groups * kh * kw``) and ``weight_scale``
  (float32 ``(1,)`` per tensor or ``(N,)`` per channel);
* :class:`Int8Linear`: ``weight_int8`` (int8 ``(N, K)``) and ``weight_scale`` (``(N,)``);
* :class:`Int4Linear`: ``weight_packed`` (uint8 ``(N, ceil(K/2))``, see
  :func:`tritium.runtime.quant.pack_int4`) and ``weight_scale`` (``(N, groups)``).

The modules, by job: :mod:`.ternary` (the base classes and the ternary layers),
:mod:`.integer` (the int8/int4 baselines), :mod:`.freeze` (a model's Tritium layers,
batch-norm folding, :func:`freeze_model`). Every name is importable from here.
"""

from tritium.runtime.layers.freeze import (  # noqa: F401 - the folding helpers others use
    _bn_fold_problem,
    _fold_pairs_of,
    fold_batchnorm,
    fold_batchnorms,
    folded_norm_replacement,
    freeze_model,
    tritium_layers,
)
from tritium.runtime.layers.integer import Int4Linear, Int8Linear
from tritium.runtime.layers.ternary import (
    ACT_QUANT_MODES,
    ACTIVATIONS,
    TERNARY_FORMATS,
    BitLinear,
    TernaryActivation,
    TernaryConv2d,
    TernaryLayer,
    TernaryLinear,
    TritiumLayer,
)

__all__ = [
    "TritiumLayer",
    "TernaryLayer",
    "TernaryLinear",
    "TernaryConv2d",
    "BitLinear",
    "TernaryActivation",
    "Int8Linear",
    "Int4Linear",
    "TERNARY_FORMATS",
    "ACT_QUANT_MODES",
    "ACTIVATIONS",
    "fold_batchnorm",
    "fold_batchnorms",
    "freeze_model",
    "tritium_layers",
]
