"""The generated Triton kernels as tuning problems: launched with exactly one config, checked,
timed.

    problem = TritonProblem("triton.linear_t2", (64, 4096, 4096), device="cuda")
    trial = measure_config(problem, config, "grid", seed)          # tritium.tune.measure

A :class:`TritonProblem` is one generated kernel (``triton.linear_t2``, ``triton.linear_t16``,
their fused variants, ``triton.quantize_int8``; see :mod:`tritium.tune.triton_space`) on one
(M, N, K) problem. Its runner launches the kernel's ``@triton.jit`` function with exactly the
config's BLOCK_M/N/K, GROUP_M, num_warps and num_stages (the launchers' ``config=`` path, which
bypasses ``@triton.autotune``) into the caller's output buffer, so
:func:`tritium.tune.measure.measure_config` does the rest as for the CPU kernels: fresh random
inputs per trial, the output poisoned before each checked run and compared in full with the
PyTorch reference (the quantizer and int8 paths with an exact activation bit-exact; float
paths and gelu/silu/sigmoid/tanh within the Triton tests' tolerance, rtol 1e-5 and atol
1e-4), warm-up, repeated timing, median, confidence interval and the noisy rule.

Two devices:

- ``cuda``: CUDA tensors, compiled kernels, timed with CUDA events (each sample the mean of
  enough back-to-back launches to last ``min_sample_s``); a config the GPU cannot run (too
  much shared memory, too many registers) is ``invalid`` with Triton's reason. The device
  fingerprint is the GPU's model, compute capability and SM count.
- ``interpret``: CPU tensors under ``TRITON_INTERPRET=1`` (Triton's interpreter). The checks
  are real; the timings are not GPU timings and say nothing about a GPU. The device is
  recorded as ``{"kind": "triton-interpreter", ...}`` with a fingerprint starting
  ``interpreter-``, which the runtime's dispatch never uses on a GPU.

This module imports only the standard library at import time (the runtime's dispatch uses
:func:`cuda_device_info` and :func:`device_fingerprint`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

DEVICES = ("cuda", "interpret")
INTERPRETER_KIND = "triton-interpreter"
INTERPRETER_NOTE = ("timings of Triton's interpreter on CPU tensors: they check correctness "
                    "and the loop, and say nothing about a GPU")
RTOL, ATOL = 1e-5, 1e-4  # the float tolerance of tests/unit/backends/triton
RMS_EPS = 1e-6
# Activations computed exactly (comparisons and selects): an int8 kernel with one of these is
# compared bit for bit; gelu, silu, sigmoid and tanh go through erf/exp, which round
# differently from torch's, so those results are compared within the float tolerance.
EXACT_ACTIVATIONS = ("none", "relu", "relu6")


class InterpreterUnavailable(RuntimeError):
    """This process imported Triton for its compiler, so it cannot run the interpreter."""


def use_interpreter() -> None:
    """Make kernels loaded from now on run on Triton's interpreter (CPU tensors).

    Triton builds its standard library for the interpreter or the compiler when it is first
    imported, so this must happen before anything imports ``triton``; when it was already
    imported for the compiler, InterpreterUnavailable says so."""
    os.environ["TRITON_INTERPRET"] = "1"
    if "triton" not in sys.modules:
        return
    from tritium.backends.triton import compat

    if compat.compiler_stdlib_loaded():
        raise InterpreterUnavailable(
            "Triton was already imported for its compiler in this process, so its interpreter "
            "cannot run here; run `tritium tune --device interpret` in a fresh process (or set "
            "TRITON_INTERPRET=1)")
    compat.set_interpreting()


# ----------------------------------------------------------------------------- devices

def cuda_device_info(index: int | None = None) -> dict[str, Any]:
    """The CUDA GPU as the tuner sees it (its fingerprint keys the archive)."""
    from tritium.runtime.tuned import cuda_device_info as _cuda_device_info

    info = _cuda_device_info(index)
    cc = info["capability"].removeprefix("sm_")
    return {**info, "target": prune_target(int(cc[:-1]) * 10 + int(cc[-1]))}


def interpreter_device_info(target: str) -> dict[str, Any]:
    """The interpreter 'device': the CPU it runs on, and a warning about its timings."""
    from tritium.backends.cpu import isa as isa_mod

    return {"kind": INTERPRETER_KIND, "model": isa_mod.cpu_model(), "cores": os.cpu_count() or 1,
            "target": target, "timings": INTERPRETER_NOTE}


def device_fingerprint(device: dict[str, Any]) -> str:
    """Same GPU model, compute capability and SM count: same fingerprint. The interpreter's
    fingerprints start with ``interpreter-`` and never equal a GPU's."""
    from tritium.runtime.tuned import gpu_fingerprint

    return gpu_fingerprint(device)


def prune_target(capability: int) -> str | None:
    """The AOT target that prunes configs for a GPU of ``capability`` (90 for sm_90): the GPU's
    own when the tuner knows it, else the closest older one of the same family (sm_86 and
    sm_89 compile like sm_80), else None (no AOT pruning; the GPU rejects configs itself)."""
    from tritium.tune.triton_space import SHARED_MEMORY_LIMIT

    known = sorted((int(t.rsplit("_", 1)[1]), t) for t in SHARED_MEMORY_LIMIT)
    older = [t for cc, t in known if cc <= capability and cc // 10 == capability // 10]
    return older[-1] if older else None


@cache
def source_hash(kernel: str) -> str:
    """A hash of the generated Triton module: tuned configs of other sources are not reused."""
    from tritium.backends.triton.loader import tuning_hash
    from tritium.tune.triton_space import kernel_source

    return tuning_hash(kernel_source(kernel))


def cuda_time_calls(fn: Callable[[], Any], settings: Any) -> list[float]:
    """Per-call GPU times in milliseconds from CUDA events, one per sample (each the mean of a
    batch of back-to-back launches); :func:`tritium.tune.measure.time_calls` for the GPU."""
    import math

    import torch

    for _ in range(max(settings.warmup, 0)):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    fn()
    end.record()
    end.synchronize()
    once = max(start.elapsed_time(end) / 1e3, 1e-7)
    calls = max(1, min(settings.max_calls_per_sample, math.ceil(settings.min_sample_s / once)))
    out = []
    for _ in range(settings.samples):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / calls)
    return out


def interpreter_settings(settings: Any) -> Any:
    """Timing settings for the interpreter: one call per sample (a call takes milliseconds)
    and a loose noise bound, since what is timed is the interpreter, not a GPU."""
    import dataclasses

    return dataclasses.replace(settings, warmup=1, samples=min(settings.samples, 5),
                               min_sample_s=0.0, max_rel_ci=max(settings.max_rel_ci, 2.0))


# ----------------------------------------------------------------------------- the problem

def _torch_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    return "cuda" if device == "cuda" else "cpu"


@dataclass
class TritonProblem:
    """One generated Triton kernel on one (M, N, K) problem (the quantizer uses M and K)."""

    kernel: str
    shape: tuple[int, int, int]
    device: str = "cuda"
    target: str = "cuda:sm_90"
    spec: Any = field(init=False, repr=False)
    fmt: str = field(init=False)

    def __post_init__(self) -> None:
        from tritium.backends.triton.specs import QuantInt8Spec
        from tritium.tune import triton_space as ts

        self.spec = ts.kernel_spec(self.kernel)
        self.shape = ts._check_shape(self.shape)
        ts._check_target(self.target)
        self._dev = _torch_device(self.device)
        self.quant = isinstance(self.spec, QuantInt8Spec)
        self.fmt = "int8" if self.quant else self.spec.format
        # the per-output tolerance of the last reference (RMSNorm + int8 paths only)
        self._step = None

    # -- the Problem protocol -------------------------------------------------------------

    def space(self):
        from tritium.tune.triton_space import triton_space

        return triton_space(self.kernel, self.shape, self.target)

    def inputs(self, seed: int) -> dict[str, Any]:
        import torch

        from tritium.runtime.packing import pack_ternary

        m, n, k = self.shape
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(m, k, generator=g) * (1 + 3 * torch.rand(m, 1, generator=g))
        if self.quant:
            return {"x": x.to(self._dev)}
        spec = self.spec
        trits = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
        packed = pack_ternary(trits, spec.format)
        out: dict[str, Any] = {
            "x": x, "trits": trits,
            "w": type(packed)(packed.format, packed.data.to(self._dev), packed.shape),
            "scale": 0.5 + torch.rand(n, generator=g),
            "bias": torch.randn(n, generator=g) if spec.has_bias else None,
            "residual": torch.randn(m, n, generator=g) if spec.has_residual else None,
            "norm_weight": (0.5 + torch.rand(k, generator=g)
                            if spec.prenorm == "rms_weight" else None),
        }
        out["dev"] = {name: (v.to(self._dev) if torch.is_tensor(v) else v)
                      for name, v in out.items() if name in (
                          "x", "scale", "bias", "residual", "norm_weight")}
        return out

    def _activation(self) -> str | None:
        return None if self.spec.activation == "none" else self.spec.activation

    def reference(self, inputs: dict[str, Any]):
        """The runtime's PyTorch reference, computed on the CPU, as the output buffer's bytes
        for the quantizer (its q and s must be equal bit for bit)."""
        import torch
        import torch.nn.functional as F

        from tritium.runtime import reference

        if self.quant:
            q, s = reference.quantize_activations_int8(inputs["x"].cpu().float())
            buf = self._quant_buffer("cpu")
            qv, sv = self._quant_views(buf)
            qv.copy_(q)
            sv.copy_(s.reshape(-1))
            return buf.to(self._dev)
        x = inputs["x"]
        if self.spec.prenorm != "none":
            x = F.rms_norm(x, (x.shape[-1],), inputs["norm_weight"], RMS_EPS)
        y = reference.reference_linear(x, inputs["trits"], inputs["scale"], inputs["bias"],
                                       inputs["residual"], self._activation(),
                                       self.spec.act_quant)
        self._step = None
        if self.spec.prenorm != "none" and self.spec.act_quant == "int8":
            # The kernel's normalization sums in another order than torch's, so a token's
            # int8 scale may differ in its last bit and a value on a rounding tie may move one
            # quantization step (the rule of tests/unit/backends/triton): one step per output.
            step = x.abs().amax(-1, keepdim=True) / 127 * inputs["scale"].reshape(1, -1)
            self._step = step.expand_as(y).to(self._dev)
        return y.to(torch.float32).to(self._dev)

    def _quant_buffer(self, dev: str):
        import torch

        m, _n, k = self.shape
        qbytes = -(-m * k // 16) * 16
        return torch.empty(qbytes + 4 * m, dtype=torch.uint8, device=dev)

    def _quant_views(self, buf):
        import torch

        m, _n, k = self.shape
        qbytes = -(-m * k // 16) * 16
        return (buf[: m * k].view(torch.int8).view(m, k),
                buf[qbytes: qbytes + 4 * m].view(torch.float32))

    def output(self, inputs: dict[str, Any]):
        import torch

        if self.quant:
            return self._quant_buffer(self._dev)
        return torch.empty((self.shape[0], self.shape[1]), dtype=torch.float32, device=self._dev)

    def runner(self, config: dict[str, Any]) -> Callable[[Any, Any], None]:
        """Launch exactly ``config`` (``@triton.autotune`` bypassed) into ``out``."""
        from tritium.backends.triton import launch
        from tritium.tune.measure import InvalidConfig

        meta = {name: int(v) for name, v in config.items()}
        spec = self.spec

        def launch_once(inputs: dict[str, Any], out) -> None:
            if self.quant:
                launch.triton_quantize_int8(inputs["x"], config=meta,
                                            out=self._quant_views(out))
                return
            d = inputs["dev"]
            act = self._activation()
            if spec.prenorm != "none":
                launch.triton_rmsnorm_bitlinear(
                    d["x"], inputs["w"], d["scale"], d["norm_weight"], RMS_EPS, d["bias"], act,
                    spec.act_quant, d["residual"], config=meta, out=out)
            else:
                launch.triton_ternary_linear(d["x"], inputs["w"], d["scale"], d["bias"], act,
                                             spec.act_quant, d["residual"], config=meta,
                                             out=out)

        def run(inputs: dict[str, Any], out) -> None:
            try:
                launch_once(inputs, out)
            except Exception as e:  # noqa: BLE001 - sorted into invalid configs below
                if type(e).__name__ in ("OutOfResources", "CompilationError",
                                        "PTXASError"):
                    raise InvalidConfig(f"{type(e).__name__}: {_first_line(e)}") from None
                raise

        run.timed = launch_once  # type: ignore[attr-defined]
        if self._dev == "cuda":
            run.timer = cuda_time_calls  # type: ignore[attr-defined]
        return run

    def check(self, got, expected) -> str | None:
        import torch

        if self.quant:
            qg, sg = self._quant_views(got)
            qe, se = self._quant_views(expected)
            bad_q = int((qg != qe).sum())
            bad_s = int((sg.view(torch.int32) != se.view(torch.int32)).sum())
            if not bad_q and not bad_s:
                return None
            return (f"{bad_q} of {qg.numel()} int8 values and {bad_s} of {sg.numel()} scales "
                    "differ from the bit-exact reference")
        step = getattr(self, "_step", None)
        if step is not None:
            bad = ~((got - expected).abs() <= step * 1.01 + 1e-5)
            kind = "int8 reference (one quantization step allowed after the RMSNorm)"
        elif self.spec.act_quant == "int8" and self.spec.activation in EXACT_ACTIVATIONS:
            if torch.equal(got, expected):
                return None
            bad = ~(got == expected)
            kind = "bit-exact int8 reference"
        else:  # float paths, and int8 cores under a transcendental activation (the
            # kernel's erf/exp round differently from torch's in the last bits)
            bad = ~torch.isclose(got, expected, rtol=RTOL, atol=ATOL)
            kind = f"float reference (rtol {RTOL}, atol {ATOL})"
        if not bool(bad.any()):
            return None
        count = int(bad.sum())
        r, c = (int(i) for i in bad.nonzero()[0])
        return (f"{count} of {got.numel()} outputs differ from the {kind} "
                f"(first at [{r}, {c}]: got {float(got[r, c])!r}, "
                f"expected {float(expected[r, c])!r})")

    def fp32_runner(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        """torch fp32 on the same device: F.linear on the dequantized weight (the quantizer's
        baseline is the runtime's torch quantizer)."""
        import torch
        import torch.nn.functional as F

        if self.quant:
            from tritium.runtime import kernels

            x = inputs["x"]

            def run_q():
                return kernels.quantize_activations_int8(x)

            fn = run_q
        else:
            d = inputs["dev"]
            w = (inputs["trits"].float() * inputs["scale"][:, None]).to(self._dev).contiguous()
            x, b = d["x"], d["bias"]

            def run_linear():
                with torch.no_grad():
                    return F.linear(x, w, b)

            fn = run_linear
        if self._dev == "cuda":
            fn.timer = cuda_time_calls  # type: ignore[attr-defined]
        return fn

    # -- extras -----------------------------------------------------------------------------

    def neighbour_shapes(self) -> list[tuple[int, int, int]]:
        """Nearby problems for the stability check: M±1, N+32, K plus one packed block."""
        from tritium.backends.triton.specs import BLOCK_TRITS

        m, n, k = self.shape
        out = [(m + 1, n, k)]
        if m > 1:
            out.append((m - 1, n, k))
        if not self.quant:
            out.append((m, n + 32, k))
        out.append((m, n, k + (64 if self.quant else BLOCK_TRITS[self.spec.format])))
        return out

    def at(self, shape: tuple[int, int, int]) -> TritonProblem:
        return TritonProblem(self.kernel, shape, self.device, self.target)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
