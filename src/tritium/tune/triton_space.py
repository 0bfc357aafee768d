"""Search spaces of the generated Triton kernels, and pruning by ahead-of-time compilation.

    space = triton_space("triton.linear_t2", (64, 4096, 4096), "cuda:sm_90")
    why = prune(space, config, "cuda:sm_80")   # None, or why the config cannot run there

Kernel names are ``triton.`` + the generated kernel's name without its ``tri_`` prefix:
``triton.linear_t2`` and ``triton.linear_t16`` (the plain ternary linears, t2 and t1.6),
their fused variants (``triton.linear_t2_q8`` for int8 activations, ``..._relu_bias``,
``triton.linear_t16_rmsw_q8`` for RMSNorm + BitLinear, ...: every ``LinearSpec``), and
``triton.quantize_int8`` (the per-token int8 quantizer). The shape is (M, N, K); the
quantizer uses M and K.

Parameters of the linear kernels: ``BLOCK_M``, ``BLOCK_N`` (the output tile), ``BLOCK_K``
(trits per K-loop iteration, a multiple of the packed block: 128 for t2, 160 for t1.6),
``GROUP_M`` (row tiles that sweep the column tiles together), ``num_warps``, ``num_stages``
(software-pipeline depth). The quantizer has ``BLOCK_M``, ``BLOCK_K``, ``num_warps`` and
``num_stages``. The space's constraint rejects tiles far larger than the problem (a block
larger than the dimension rounded up to a power of two, the rule the kernels' own autotuning
prune uses), a K step of more packed blocks than K has, a pipeline deeper than the number of
K steps, and GROUP_M values that cannot change the program order. The default config is the
one the AOT build picks (the largest autotuning config that fits the problem).

``prune`` compiles the config with ``triton.compile`` for the target (no GPU needed) and
rejects it when the compile fails or when the binary needs more shared memory per block
than the target offers (``metadata.shared`` against ``SHARED_MEMORY_LIMIT``: the most a
block may use with the dynamic opt-in, 163 KiB = 166912 bytes on sm_80 (A100) and 227 KiB =
232448 bytes on sm_90 (H100), from the CUDA programming guide's compute-capability table).
Binaries go to the compile cache as ``aot`` builds do, and every verdict, failures included,
is cached there too, so asking twice costs one compile.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

from tritium import vocab
from tritium.backends.triton.codegen import GEMM_CONFIGS, QUANT_CONFIGS, runtime_source
from tritium.backends.triton.specs import (
    ACT_QUANTS,
    ACTIVATIONS,
    BLOCK_TRITS,
    FORMATS,
    PRENORMS,
    KernelSpec,
    LinearSpec,
    QuantInt8Spec,
)
from tritium.tune.space import Config, Param, SearchSpace

SHARED_MEMORY_LIMIT = {"cuda:sm_80": 166912, "cuda:sm_90": 232448}
TARGET_NAMES = {"cuda:sm_80": "NVIDIA Ampere (sm_80, A100)",
                "cuda:sm_90": "NVIDIA Hopper (sm_90, H100)"}

# the values each parameter takes (one home: tritium.vocab, which the runtime's check of
# tuned records reads too)
GEMM_BLOCK_M = vocab.TRITON_GEMM_BLOCK_M
GEMM_BLOCK_N = vocab.TRITON_GEMM_BLOCK_N
GEMM_K_BLOCKS = vocab.TRITON_GEMM_K_BLOCKS  # packed blocks per K-loop iteration
GEMM_GROUP_M = vocab.TRITON_GEMM_GROUP_M
NUM_WARPS = vocab.TRITON_NUM_WARPS
NUM_STAGES = vocab.TRITON_NUM_STAGES
QUANT_BLOCK_M = vocab.TRITON_QUANT_BLOCK_M
QUANT_BLOCK_K = vocab.TRITON_QUANT_BLOCK_K
QUANT_NUM_WARPS = vocab.TRITON_QUANT_NUM_WARPS
QUANT_NUM_STAGES = vocab.TRITON_QUANT_NUM_STAGES
# triton.Config's default pipeline depth, which the quantizer's autotuning configs use.
QUANT_DEFAULT_STAGES = 3


@functools.cache
def _kernels() -> dict[str, KernelSpec]:
    out: dict[str, KernelSpec] = {"triton.quantize_int8": QuantInt8Spec()}
    for fmt, act, quant, bias, res, pre in itertools.product(
            FORMATS, ACTIVATIONS, ACT_QUANTS, (False, True), (False, True), PRENORMS):
        spec = LinearSpec(fmt, act, quant, bias, res, pre)
        out["triton." + spec.name.removeprefix("tri_")] = spec
    return out


def triton_kernels() -> list[str]:
    """Every kernel name ``triton_space`` knows, sorted."""
    return sorted(_kernels())


def kernel_spec(kernel: str) -> KernelSpec:
    """The generated kernel behind a tuner kernel name; ValueError for an unknown one."""
    try:
        return _kernels()[kernel]
    except KeyError:
        raise ValueError(
            f"unknown Triton kernel {kernel!r}; expected triton.linear_<format>[_<fusions>] "
            "(e.g. triton.linear_t2, triton.linear_t16, triton.linear_t2_q8_relu_bias) or "
            "triton.quantize_int8") from None


def kernel_source(kernel: str) -> str:
    """The generated Triton module of ``kernel`` (what the LLM strategy shows the model)."""
    return runtime_source(kernel_spec(kernel))


def _check_shape(shape: Any) -> tuple[int, int, int]:
    if (not isinstance(shape, tuple | list) or len(shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ValueError(f"a Triton kernel shape is three positive integers (M, N, K), got {shape!r}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def _check_target(target: str) -> str:
    if target not in SHARED_MEMORY_LIMIT:
        raise ValueError(f"unknown target {target!r}; expected one of "
                         f"{', '.join(SHARED_MEMORY_LIMIT)}")
    return target


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _fits(block: int, size: int, floor: int) -> bool:
    """The kernels' own rule: a tile no larger than the dim rounded up to a power of two."""
    return block <= max(floor, _pow2_at_least(size))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _gemm_default(m: int, n: int, k: int, trits: int) -> Config:
    """What the AOT build (and the autotuner's prune) picks: the largest fitting config."""
    k_blocks = max(1, _cdiv(k, trits))
    fit = [c for c in GEMM_CONFIGS
           if _fits(c[0], m, 16) and _fits(c[1], n, 32) and c[3] <= max(2, k_blocks)]
    bm, bn, warps, stages = (max(fit, key=lambda c: c[0] * c[1]) if fit
                             else min(GEMM_CONFIGS, key=lambda c: c[0] * c[1]))
    return {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": trits, "GROUP_M": 1,
            "num_warps": warps, "num_stages": stages}


def _quant_default(m: int, k: int) -> Config:
    fit = [c for c in QUANT_CONFIGS if _fits(c[0], m, 4) and _fits(c[1], k, 64)]
    bm, bk, warps = (max(fit, key=lambda c: c[0] * c[1]) if fit
                     else min(QUANT_CONFIGS, key=lambda c: c[0] * c[1]))
    return {"BLOCK_M": bm, "BLOCK_K": bk, "num_warps": warps,
            "num_stages": QUANT_DEFAULT_STAGES}


def default_config(kernel: str, shape: tuple[int, int, int]) -> Config:
    """The config the runtime's AOT build uses for ``kernel`` at ``shape``."""
    spec = kernel_spec(kernel)
    m, n, k = _check_shape(shape)
    if isinstance(spec, QuantInt8Spec):
        return _quant_default(m, k)
    return _gemm_default(m, n, k, BLOCK_TRITS[spec.format])


def _gemm_constraint(m: int, n: int, k: int, trits: int):
    def check(c: Config) -> str | None:
        if not _fits(c["BLOCK_M"], m, 16):
            return f"BLOCK_M={c['BLOCK_M']} is far larger than M={m}"
        if not _fits(c["BLOCK_N"], n, 32):
            return f"BLOCK_N={c['BLOCK_N']} is far larger than N={n}"
        if c["BLOCK_K"] // trits > max(1, _cdiv(k, trits)):
            return f"BLOCK_K={c['BLOCK_K']} covers more packed blocks than K={k} has"
        steps = _cdiv(k, c["BLOCK_K"])
        if c["num_stages"] > max(2, steps):
            return (f"num_stages={c['num_stages']} is deeper than the {steps} K step(s) of "
                    f"BLOCK_K={c['BLOCK_K']}")
        row_tiles = _cdiv(m, c["BLOCK_M"])
        smaller = [g for g in GEMM_GROUP_M if g < c["GROUP_M"]]
        if c["GROUP_M"] > 1 and (row_tiles < 2 or (smaller and smaller[-1] >= row_tiles)):
            return (f"GROUP_M={c['GROUP_M']} orders the {row_tiles} row tile(s) like "
                    f"GROUP_M={smaller[-1] if row_tiles >= 2 else 1}")
        return None
    return check


def _quant_constraint(m: int, k: int):
    def check(c: Config) -> str | None:
        if not _fits(c["BLOCK_M"], m, 4):
            return f"BLOCK_M={c['BLOCK_M']} is far larger than M={m}"
        if not _fits(c["BLOCK_K"], k, 64):
            return f"BLOCK_K={c['BLOCK_K']} is far larger than K={k}"
        return None
    return check


def triton_space(kernel: str, shape: tuple[int, int, int],
                 target: str = "cuda:sm_90") -> SearchSpace:
    """The tunable parameters of ``kernel`` for an (M, N, K) problem on ``target``."""
    spec = kernel_spec(kernel)
    m, n, k = _check_shape(shape)
    _check_target(target)
    d = default_config(kernel, (m, n, k))
    if isinstance(spec, QuantInt8Spec):
        params = (
            Param("BLOCK_M", QUANT_BLOCK_M, d["BLOCK_M"], "rows (tokens) per program"),
            Param("BLOCK_K", QUANT_BLOCK_K, d["BLOCK_K"], "elements of a row per loop step"),
            Param("num_warps", QUANT_NUM_WARPS, d["num_warps"], "warps per program"),
            Param("num_stages", QUANT_NUM_STAGES, d["num_stages"], "software-pipeline depth"),
        )
        return SearchSpace(kernel, params, _quant_constraint(m, k))
    trits = BLOCK_TRITS[spec.format]
    params = (
        Param("BLOCK_M", GEMM_BLOCK_M, d["BLOCK_M"], "output rows (tokens) per program"),
        Param("BLOCK_N", GEMM_BLOCK_N, d["BLOCK_N"], "output columns (features) per program"),
        Param("BLOCK_K", tuple(trits * b for b in GEMM_K_BLOCKS), d["BLOCK_K"],
              f"trits per K-loop iteration (a multiple of the {trits}-trit packed block)"),
        Param("GROUP_M", GEMM_GROUP_M, d["GROUP_M"],
              "row tiles that sweep the column tiles together (L2 reuse of weights)"),
        Param("num_warps", NUM_WARPS, d["num_warps"], "warps per program"),
        Param("num_stages", NUM_STAGES, d["num_stages"], "software-pipeline depth of the K loop"),
    )
    return SearchSpace(kernel, params, _gemm_constraint(m, n, k, trits))


def device_description(target: str) -> dict[str, Any]:
    """What the tuner tells strategies (and the LLM) about a GPU target."""
    _check_target(target)
    return {"target": target, "gpu": TARGET_NAMES[target],
            "shared_memory_per_block_bytes": SHARED_MEMORY_LIMIT[target],
            "warp_size": 32, "registers_per_sm": 65536}


def aot_request(space: SearchSpace, config: Config):
    """The ``aot.AotRequest`` that builds ``config`` of ``space``'s kernel."""
    from tritium.backends.triton.aot import AotRequest

    spec = kernel_spec(space.kernel)
    if isinstance(spec, QuantInt8Spec):
        cx: tuple = (("BLOCK_M", config["BLOCK_M"]), ("BLOCK_K", config["BLOCK_K"]))
    else:
        cx = (("PER_CHANNEL", False), ("BLOCK_M", config["BLOCK_M"]),
              ("BLOCK_N", config["BLOCK_N"]), ("BLOCK_K", config["BLOCK_K"]),
              ("GROUP_M", config["GROUP_M"]))
    return AotRequest(spec, cx, int(config["num_warps"]), int(config["num_stages"]))


def _clip(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compile_error(message: str) -> str:
    """Triton's error without the source excerpt: its first line and its last (the cause)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return _clip(message)
    return _clip(f"{lines[0].rstrip(':')}: {lines[-1]}")


def prune(space: SearchSpace, config: Config, target: str) -> str | None:
    """Why ``config`` cannot run on ``target`` (it is not legal in the space, it does not
    compile, or it needs more shared memory per block than the target has), or None."""
    import triton

    from tritium.backends.triton import aot
    from tritium.cachedir import digest
    from tritium.compile_cache import CompileCache

    _check_target(target)
    why = space.validate(config)
    if why is not None:
        return why
    req = aot_request(space, config)
    try:
        store: CompileCache | None = CompileCache()
    except OSError:
        store = None
    key = digest("tritium-tune-prune", aot._key(req, target, triton.__version__))
    if store is not None:
        hit = store.get(key)
        if hit is not None and "reason" in hit:
            return hit["reason"]
    reason: str | None
    shared: int | None = None
    try:
        built = aot.compile_request(req, target, store)
        if built.shared is None:  # a build cached before shared memory was recorded
            built = aot.compile_request(req, target, store, use_cache=False)
        shared = built.shared
        limit = SHARED_MEMORY_LIMIT[target]
        if shared is not None and shared > limit:
            reason = (f"needs {shared} bytes of shared memory per block; {target} allows at "
                      f"most {limit} bytes")
        else:
            reason = None
    except aot.AotError as exc:
        message = str(exc)
        if not message.startswith(f"{req.name} failed to compile"):
            raise  # the compiler process itself failed: not a verdict on this config
        reason = f"does not compile for {target}: {_compile_error(message.split(': ', 1)[-1])}"
    if store is not None:
        try:
            store.put(key, {"kernel": space.kernel, "target": target, "config": config,
                            "reason": reason, "shared": shared})
        except OSError:
            pass
    return reason
