"""`tritium train`: quantization-aware training of a .tri model, freezing, and the report.

    result = train(TrainOptions("examples/mlp.tri", out="runs/mlp"))
    result.metrics["ternary"]["test_accuracy"]

One run: compile the program, build its entry (seeded), take optimizer, learning rate,
schedule, batch size, epochs, loss and augmentation from its `training { }` block (options
override), train with the straight-through estimator, evaluate a held-out validation split
each epoch and keep the best model as a frozen, packed checkpoint; then train the fp32
twin (same architecture with float layers, same initialization, same data order) unless
`baseline=False`, measure both on the test split, and compare with the program's
`performance { }` expectations.

Files written to `out/` (only by rank 0 under `torchrun`): `model.safetensors` (frozen
ternary, best epoch), `fp32.safetensors` (the baseline), `train_state.safetensors` (latent
weights and optimizer state after the last finished epoch, for `--resume`), `model.py`
(the generated module), `metrics.json`, `curves.png`, `weights.png`. Every file is written
atomically, so an interrupted run leaves the last good checkpoint intact.

Reproducibility: the seed fixes the initialization, the data order and augmentation of
every epoch (each epoch reseeds from `(seed, epoch)`), so a resumed run ends with the same
weights as an uninterrupted one.

The package splits the job in five modules: `settings` (options, the `training { }`
block, schedules), `loop` (data splits, epochs, `train()`), `distributed` (torchrun),
`state` (the resumable state file, fp32 initialization) and `report` (progress,
evaluation, metrics, plots). Every name is importable from here as before.
"""

from __future__ import annotations

from ..evaluate import EVAL_BATCH, evaluate_model, model_inputs  # noqa: F401 - re-exported
from .distributed import (  # noqa: F401 - re-exported
    Dist,
)
from .loop import (  # noqa: F401 - re-exported
    Splits,
    _augment,
    _digest,
    _epoch_generator,
    _finite_weights,
    _fit,
    _freeze_copy,
    _loss,
    _progress_default,
    _train,
    _train_epoch,
    prepare_splits,
    train,
)
from .report import (  # noqa: F401 - re-exported
    _MIRROR_SENSITIVE,
    _SPATIAL,
    _diverged_error,
    _duration,
    _expectations,
    _kb,
    _native,
    _plots,
    _print_report,
    _Reporter,
    _stored_tensor_bytes,
    _weight_distribution,
    measure_latencies,
    measure_latency,
    run_warnings,
)
from .settings import (  # noqa: F401 - re-exported
    _BLOCK_NUMBERS,
    TrainError,
    TrainOptions,
    TrainResult,
    TrainSettings,
    _num,
    _optimizer,
    _schedule,
    lr_at,
    resolve_settings,
)
from .state import (  # noqa: F401 - re-exported
    _PICKLE_SUFFIXES,
    _Diverged,
    _interrupts_deferred,
    _listing,
    _load_state,
    _Run,
    _state_blob,
    init_from_fp32,
)

__all__ = ["TrainError", "TrainOptions", "TrainResult", "TrainSettings", "resolve_settings",
           "train", "evaluate_model", "init_from_fp32", "measure_latency",
           "measure_latencies"]
