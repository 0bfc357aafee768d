"""The CPU kernels as tuning problems: ``cpu.linear`` (int8 activations) and ``cpu.linear_f32``.

A :class:`CpuLinearProblem` is one ternary linear ``y = (x' @ W^T) * scale + bias`` of shape
(M, N, K) in one packed format on one ISA path. Its search space is the kernel template's
``KernelConfig.search_params(isa)``, canonicalized for the shape so that configs which run the
same code are not timed twice (``gemv_max_m`` only decides whether an M-row batch takes the
GEMV path; ``tok_chunk`` only matters on the tiled path). Each config is built as its own
specialization (cached by the kernel build cache) and checked against the runtime's PyTorch
reference: bit-exact for the int8 path, to a float tolerance for the fp32 path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tritium.tune.measure import InvalidConfig
from tritium.tune.space import Config, Param, SearchSpace

CPU_KERNELS = {"cpu.linear": "int8", "cpu.linear_f32": "none"}
FORMATS = ("t2", "t1.6")
# parameters that change how every path runs (thread count, thread pool), not which code
RUN_PARAMS = ("threads", "pool")


def act_quant_of(kernel: str) -> str:
    try:
        return CPU_KERNELS[kernel]
    except KeyError:
        raise ValueError(f"unknown CPU kernel {kernel!r}; expected one of "
                         f"{', '.join(CPU_KERNELS)}") from None


def kernel_of(act_quant: str) -> str:
    from tritium.runtime.tuned import kernel_of as _kernel_of

    return _kernel_of(act_quant)


def default_isa() -> str:
    from tritium.backends.cpu import isa as isa_mod

    return isa_mod.select_isa(None)


def source_hash() -> str:
    """A hash of the C kernel sources: tuned configs of other sources are not reused."""
    from tritium.backends.cpu.build import source_hash as _source_hash

    return _source_hash()


def kernel_source() -> str:
    """The C source of the kernels (what the LLM strategy reads)."""
    from tritium.backends.cpu.build import KernelConfig, render_source

    return render_source(KernelConfig(isa=default_isa()))


def device_info(isa: str | None = None) -> dict[str, Any]:
    """The machine as the tuner sees it (its fingerprint keys the archive and the records)."""
    from tritium.runtime.tuned import cpu_device_info

    return cpu_device_info(isa or default_isa())


def device_fingerprint(device: dict[str, Any]) -> str:
    """Same CPU model, core count and ISA path: same fingerprint (tunes move between them)."""
    from tritium.runtime.tuned import cpu_fingerprint

    return cpu_fingerprint(device)


def search_params(isa: str) -> tuple[Param, ...]:
    """The kernel template's tunable fields on ``isa`` as search-space parameters."""
    from tritium.backends.cpu.build import KernelConfig

    return tuple(Param(p.name, p.values, p.default, p.help)
                 for p in KernelConfig.search_params(isa))


def _is_g2_param(name: str) -> bool:
    """The G2 GEMM's own parameters (``gemm_mr``, ``gemm_nrv``, ...; not its switch)."""
    return name.startswith("gemm_") and name != "gemm_min_m"


def _path(m: int, config: Config, names: set[str], int8: bool) -> str:
    """Which code an int8 batch of ``m`` rows runs under ``config`` (the C kernel's dispatch:
    the G2 GEMM from ``gemm_min_m`` rows, else the GEMV up to ``gemv_max_m``, else tiles)."""
    if not int8:
        return "tile"
    if "gemm_min_m" in names and m >= config["gemm_min_m"]:
        return "g2"
    if "gemv_max_m" in names and m <= config["gemv_max_m"]:
        return "gemv"
    return "tile"


def _relevant(path: str, names: set[str]) -> set[str]:
    """The parameters (besides the run ones, ``threads`` and ``pool``, and the switches) that
    change the ``path`` code."""
    if path == "g2":
        return {n for n in names if _is_g2_param(n)}
    return {"tok_chunk"} & names if path == "tile" else set()


def linear_space(kernel: str, m: int, isa: str,
                 only: dict[str, tuple[Any, ...]] | None = None) -> SearchSpace:
    """The canonical search space of a CPU linear kernel for batch ``m`` on ``isa``.

    Configs that run the same code are collapsed: the path switches (``gemm_min_m``,
    ``gemv_max_m``) take their default when it selects the same path, else the first value
    that does, and the parameters of the paths a batch of ``m`` rows does not take stay at
    their defaults. Parameters no config can change for this ``m`` are left out. ``only``
    narrows parameters to some of their values (the default is always kept).
    """
    int8 = act_quant_of(kernel) == "int8"
    params = list(search_params(isa))
    if not int8:  # the GEMV and G2 switches are int8 paths
        params = [p for p in params
                  if p.name not in ("gemv_max_m", "gemm_min_m") and not _is_g2_param(p.name)]
    if only:
        unknown = sorted(set(only) - {p.name for p in params})
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for {kernel} on {isa}")
        params = [Param(p.name, tuple(v for v in p.values if v in only[p.name] or v == p.default),
                        p.default, p.help) if p.name in only else p for p in params]
    names = {p.name for p in params}
    by_name = {p.name: p for p in params}
    default = {p.name: p.default for p in params}

    def reachable_paths() -> set[str]:
        paths = set()
        for g in by_name.get("gemm_min_m", Param("x", (1 << 62,), 1 << 62)).values:
            for v in by_name.get("gemv_max_m", Param("x", (0,), 0)).values:
                cfg = {**default, "gemm_min_m": g, "gemv_max_m": v}
                paths.add(_path(m, cfg, names, int8))
        return paths

    paths = reachable_paths()
    relevant = set(RUN_PARAMS) | set().union(*(_relevant(p, names) for p in paths))
    if len(paths) > 1:
        relevant |= {n for n in ("gemm_min_m", "gemv_max_m") if n in names}
    params = [p for p in params if p.name in relevant]
    kept = {p.name for p in params}

    def canonical(config: Config) -> str | None:
        full = {**default, **config}
        path = _path(m, full, names, int8)
        for switch in ("gemm_min_m", "gemv_max_m"):
            if switch not in kept:
                continue
            p = by_name[switch]
            same = [v for v in p.values if _path(m, {**full, switch: v}, names, int8) == path]
            if path == "g2" and switch == "gemv_max_m":
                same = list(p.values)  # irrelevant on the G2 path: only the default
            canon = p.default if p.default in same else same[0]
            if full[switch] != canon:
                return (f"{switch}={full[switch]} runs the same code as {switch}={canon} "
                        f"for M={m} ({path} path)")
        for name in kept - {*RUN_PARAMS, "gemm_min_m", "gemv_max_m"} - _relevant(path, names):
            if full[name] != default[name]:
                return f"{name} has no effect on the {path} path taken for M={m}"
        return None

    return SearchSpace(kernel, tuple(params), constraint=canonical if len(paths) > 1 else None)


def kernel_config(isa: str, config: Config):
    from tritium.backends.cpu.build import KernelConfig

    try:
        return KernelConfig.from_params(isa, config)
    except (TypeError, ValueError) as e:
        raise InvalidConfig(str(e)) from None


@dataclass
class CpuLinearProblem:
    """One CPU linear kernel problem: (M, N, K), packed format, ISA path."""

    kernel: str
    shape: tuple[int, int, int]
    fmt: str = "t2"
    isa: str = field(default_factory=default_isa)

    def __post_init__(self) -> None:
        self.act_quant = act_quant_of(self.kernel)
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown format {self.fmt!r}; expected one of {', '.join(FORMATS)}")
        if len(self.shape) != 3 or any(int(d) < 1 for d in self.shape):
            raise ValueError(f"shape must be three positive integers M,N,K, got {self.shape}")
        self.shape = tuple(int(d) for d in self.shape)  # type: ignore[assignment]

    # -- the Problem protocol -------------------------------------------------------------

    def space(self) -> SearchSpace:
        # the thread pool stays the process's (tritium.runtime.tuned.foreign_pool: a config
        # on another pool, timed alone, may not run in a model beside the others' layers)
        from tritium.backends.cpu import process_pool

        own = process_pool()
        pools = {"pool": (own,)} if own is not None and "pool" in {
            p.name for p in search_params(self.isa)} else None
        return linear_space(self.kernel, self.shape[0], self.isa, only=pools)

    def inputs(self, seed: int) -> dict[str, Any]:
        import torch

        from tritium.runtime.packing import pack_ternary

        m, n, k = self.shape
        g = torch.Generator().manual_seed(seed)
        trits = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
        packed = pack_ternary(trits, self.fmt)
        return {
            "x": torch.randn(m, k, generator=g) * (1 + 3 * torch.rand(m, 1, generator=g)),
            "trits": trits, "wdata": packed.data,
            "scale": (0.5 + torch.rand(n, generator=g)).float().contiguous(),
            "bias": torch.randn(n, generator=g).float().contiguous(),
        }

    def reference(self, inputs: dict[str, Any]):
        from tritium.runtime.reference import reference_linear

        return reference_linear(inputs["x"], inputs["trits"], inputs["scale"], inputs["bias"],
                                 None, None, self.act_quant)

    def output(self, inputs: dict[str, Any]):
        import torch

        return torch.empty((self.shape[0], self.shape[1]), dtype=torch.float32)

    def runner(self, config: Config) -> Callable[[Any, Any], None]:
        return self.runner_for(kernel_config(self.isa, config))

    def runner_for(self, kc) -> Callable[[Any, Any], None]:
        """Run the specialization ``kc`` through the runtime's own call path (a fixed-config
        ``LinearPlan``, exactly what dispatch runs), writing the result straight into ``out``
        (which the measurement poisons before every checked run)."""
        from tritium.backends import cpu as cpu_backend
        from tritium.runtime import kernels

        lib = cpu_backend.load(config=kc)
        if lib is None:
            raise InvalidConfig(f"does not build or load: {cpu_backend.load_error(kc)}")
        if lib.pool != kc.pool:  # a compiler without OpenMP: do not time pthread as openmp
            raise InvalidConfig(f"the {kc.pool} pool is unavailable: {lib.built.pool_fallback}")
        n, k = self.shape[1], self.shape[2]
        fmt, aq = self.fmt, self.act_quant
        plans: dict[int, Any] = {}

        def plan_for(inputs: dict[str, Any]):
            plan = plans.get(id(inputs["wdata"]))
            if plan is None:
                plans.clear()
                plan = kernels.LinearPlan(lib, inputs["wdata"], n, k, fmt, inputs["scale"],
                                          inputs["bias"], aq, config=kc)
                plans[id(inputs["wdata"])] = plan
            return plan

        def run(inputs: dict[str, Any], out) -> None:
            plan_for(inputs)(inputs["x"], None, None, out=out)

        timed = run
        run.timed = timed  # type: ignore[attr-defined]
        return run

    def check(self, got, expected) -> str | None:
        import torch

        if self.act_quant == "int8":
            if torch.equal(got, expected):
                return None
            bad = ~(got == expected)
        else:
            tol = 1e-4 * float(expected.abs().max()) + 1e-6
            bad = ~torch.isclose(got, expected, rtol=1e-4, atol=tol)
            if not bool(bad.any()):
                return None
        count = int(bad.sum())
        r, c = (int(i) for i in bad.nonzero()[0])
        kind = "bit-exact int8" if self.act_quant == "int8" else "fp32"
        return (f"{count} of {got.numel()} outputs differ from the {kind} reference "
                f"(first at [{r}, {c}]: got {float(got[r, c])!r}, "
                f"expected {float(expected[r, c])!r})")

    def fp32_runner(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        import torch
        import torch.nn.functional as F

        w = (inputs["trits"].float() * inputs["scale"][:, None]).contiguous()
        x, b = inputs["x"], inputs["bias"]

        def run():
            with torch.no_grad():
                return F.linear(x, w, b)

        return run

    # -- extras -----------------------------------------------------------------------------

    def neighbour_shapes(self) -> list[tuple[int, int, int]]:
        """Nearby problems for the stability check: M±1, N+32 (a row block), K+128 (a t2 block)."""
        m, n, k = self.shape
        out = [(m + 1, n, k)]
        if m > 1:
            out.append((m - 1, n, k))
        out += [(m, n + 32, k), (m, n, k + 128)]
        return out

    def at(self, shape: tuple[int, int, int]) -> CpuLinearProblem:
        return CpuLinearProblem(self.kernel, shape, self.fmt, self.isa)
