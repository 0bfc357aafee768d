"""Ahead-of-time builds: every kernel of a model through `triton.compile` for a CUDA target.

    build = build_model(module, "cuda:sm_90")          # module: optimized Tritium IR
    for k in build.kernels:
        k.name, k.constexprs, k.seconds, k.entries()    # PTX .entry names
        k.stages["ptx"], k.stages["cubin"]              # ttir, ttgir, llir, ptx (text), cubin (bytes)
    print(build.dump("ttgir"))

No GPU is needed: Triton's CUDA backend lowers TTIR → TTGIR → LLIR → PTX and runs `ptxas`
for the cubin on any machine. A kernel is compiled from exactly the one-kernel module the
runtime launchers load (`codegen.runtime_source`), with one tile configuration: the largest
autotuning config that fits the largest problem the model runs through that kernel (an
unknown M, such as the batch, counts as `ASSUMED_M`). One binary is built per distinct
(kernel, constexprs) pair.

`triton.compile` needs a process whose Triton was imported without TRITON_INTERPRET (Triton
builds its standard library, `tl.cdiv`, `tl.max`, …, for one or the other at import time);
in a process that runs the interpreter, the cache misses of a build are compiled in one
helper process (`python -m tritium.backends.triton.aot`, JSON on stdin and stdout).

Every build is stored in the compile cache (`tritium.compile_cache.CompileCache`, under the
shared cache root) keyed by the kernel source's hash, the target, the constexprs, the
compile options, the alignment assumptions, the generator version and the Triton and Tritium
versions; each stage is kept, the cubin base64-encoded. Like Triton's JIT for typical
arguments, the binaries assume 16-byte aligned tensor pointers and a packed row stride that
is a multiple of 16 (it always is: whole 32-byte blocks).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ... import __version__
from ...cachedir import digest
from ...compile_cache import CompileCache
from ...ir import Module
from . import compat
from .codegen import GENERATOR_VERSION, runtime_source
from .extract import KernelUse, extract_kernels
from .loader import interpret_mode, load_source, source_digest
from .specs import BLOCK_TRITS, Conv2dSpec, KernelSpec, LinearSpec, QuantInt8Spec

TARGETS = {"cuda:sm_80": 80, "cuda:sm_90": 90}
STAGES = ("ttir", "ttgir", "llir", "ptx", "cubin")
TEXT_STAGES = ("ttir", "ttgir", "llir", "ptx")
ASSUMED_M = 64

_ARG_TYPES = {
    "x_ptr": "*fp32", "w_ptr": "*u8", "scale_ptr": "*fp32", "norm_w_ptr": "*fp32",
    "bias_ptr": "*fp32", "res_ptr": "*fp32", "y_ptr": "*fp32", "q_ptr": "*i8", "s_ptr": "*fp32",
    "eps": "fp32",
}
_ENTRY = re.compile(r"^\s*\.(?:visible\s+)?\.entry\s+([A-Za-z_][A-Za-z0-9_$]*)", re.M)


class AotError(Exception):
    """A kernel failed to compile for the target (the message names kernel and target)."""


def parse_target(target: str) -> int:
    """`cuda:sm_80` → 80. Raises ValueError for an unknown target."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return TARGETS[target]


def ptx_entries(ptx: str) -> list[str]:
    """The names of the `.entry` points a PTX module declares."""
    return _ENTRY.findall(ptx)


@dataclass(frozen=True)
class AotRequest:
    """One binary to build: a kernel, its constexprs and launch options."""

    spec: KernelSpec
    constexprs: tuple[tuple[str, int | bool], ...]
    num_warps: int
    num_stages: int
    uses: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class AotKernel:
    name: str
    target: str
    constexprs: dict[str, int | bool]
    num_warps: int
    num_stages: int
    stages: dict[str, str | bytes]
    seconds: float
    cached: bool
    key: str
    uses: list[str] = field(default_factory=list)
    shared: int | None = None  # bytes of shared memory one block needs (`metadata.shared`)

    def text(self, stage: str) -> str:
        value = self.stages[stage]
        if isinstance(value, bytes):
            raise ValueError(f"the {stage} stage is binary")
        return value

    def entries(self) -> list[str]:
        return ptx_entries(self.text("ptx"))

    def label(self) -> str:
        cx = ", ".join(f"{k}={int(v) if isinstance(v, bool) else v}"
                       for k, v in self.constexprs.items())
        return f"{self.name} [{cx}; num_warps={self.num_warps}, num_stages={self.num_stages}]"


@dataclass
class AotBuild:
    target: str
    kernels: list[AotKernel]

    @property
    def seconds(self) -> float:
        return sum(k.seconds for k in self.kernels if not k.cached)

    def dump(self, stage: str) -> str:
        """Every kernel's `stage` as one text, each under a header comment."""
        if stage not in TEXT_STAGES:
            raise ValueError(f"`{stage}` is not a text stage ({', '.join(TEXT_STAGES)})")
        mark = ";" if stage == "llir" else "//"
        parts = []
        for k in self.kernels:
            how = "cache" if k.cached else f"compiled in {k.seconds:.2f} s"
            head = [f"{mark} ===== {k.label()} for {self.target} ({how})"]
            head += [f"{mark}   used by {u}" for u in k.uses]
            parts.append("\n".join(head) + "\n" + k.text(stage).rstrip("\n") + "\n")
        return "\n".join(parts)


def _gemm_requests(uses: Sequence[KernelUse], assumed_m: int) -> list[AotRequest]:
    groups: dict[tuple, list[KernelUse]] = {}
    for u in uses:
        geo = tuple(sorted(u.conv.constexprs().items())) if u.conv is not None else ()
        groups.setdefault((u.spec, geo, u.per_channel), []).append(u)
    out = []
    for (spec, geo, per_channel), group in groups.items():
        mod = load_source(runtime_source(spec), interpret=False)
        m = max((u.m if u.m is not None else assumed_m) for u in group)
        n = max(u.n for u in group)
        k = max(u.k for u in group)
        fit = mod.fitting_gemm_configs(mod.GEMM_CONFIGS, m, n, k, BLOCK_TRITS[spec.format])
        best = max(fit, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])
        cx: dict[str, int | bool] = dict(geo)
        cx["PER_CHANNEL"] = per_channel
        cx.update(best.kwargs)
        out.append(AotRequest(spec, tuple(cx.items()), best.num_warps, best.num_stages,
                              tuple(u.describe() for u in group)))
    return out


def quant_request(m: int = ASSUMED_M, k: int = 4096) -> AotRequest:
    """The standalone int8 quantizer, tiled for an M x K activation."""
    spec = QuantInt8Spec()
    mod = load_source(runtime_source(spec), interpret=False)
    fit = mod.fitting_quant_configs(mod.QUANT_CONFIGS, m, k)
    best = max(fit, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_K"])
    return AotRequest(spec, tuple(best.kwargs.items()), best.num_warps, best.num_stages)


def requests_for(uses: Sequence[KernelUse], assumed_m: int = ASSUMED_M) -> list[AotRequest]:
    """The binaries that serve `uses`, sorted by kernel name and constexprs."""
    reqs = _gemm_requests([u for u in uses if isinstance(u.spec, (LinearSpec, Conv2dSpec))],
                          assumed_m)
    return sorted(reqs, key=lambda r: (r.name, r.constexprs))


def _signature(jit_fn) -> dict[str, str]:
    sig = {}
    for p in jit_fn.params:
        sig[p.name] = "constexpr" if p.is_constexpr else _ARG_TYPES.get(p.name, "i32")
    return sig


# Specialization the runtime's JIT also applies to typical arguments: every tensor pointer is
# 16-byte aligned (torch allocations are) and a packed row is a whole number of 32-byte blocks.
_DIVISIBLE_BY_16 = ("x_ptr", "w_ptr", "scale_ptr", "norm_w_ptr", "bias_ptr", "res_ptr", "y_ptr",
                    "q_ptr", "s_ptr", "stride_wn")


def _attrs(jit_fn) -> dict[tuple[int], list[list]]:
    return {(i,): [["tt.divisibility", 16]] for i, p in enumerate(jit_fn.params)
            if p.name in _DIVISIBLE_BY_16}


def _options(req: AotRequest) -> dict[str, int | bool]:
    # No FMA contraction (the epilogue rounds like the CPU kernels, int8 stays bit-exact) and
    # no libdevice flush-to-zero where the installed Triton allows it (`compat`).
    return compat.compile_options(req.num_warps, req.num_stages)


def _key(req: AotRequest, target: str, triton_version: str) -> str:
    return digest("tritium-triton-aot", __version__, str(GENERATOR_VERSION),
                  source_digest(runtime_source(req.spec)), req.name, target,
                  json.dumps(dict(req.constexprs), sort_keys=True),
                  json.dumps(_options(req), sort_keys=True), ",".join(_DIVISIBLE_BY_16),
                  triton_version)


def _process_can_compile() -> bool:
    """Whether `triton.compile` works in this process. Triton decides at import time whether
    its standard library (`tl.cdiv`, `tl.max`, …) is built for the interpreter
    (TRITON_INTERPRET=1) or for compilation; only the latter can be compiled."""
    return compat.compiler_stdlib_loaded()


def _constexprs(jit_fn, req: AotRequest) -> dict[str, int | bool]:
    """The request's constexprs, with the kernel's defaults for those it leaves out
    (`triton.compile` does not apply Python defaults itself)."""
    out = {p.name: p.default for p in jit_fn.params if p.is_constexpr and p.has_default}
    out.update(dict(req.constexprs))
    return out


def _compile_here(req: AotRequest, target: str) -> dict:
    """Compile in this process: {"stages": {...text, "cubin": base64}, "seconds": s,
    "shared": bytes of shared memory per block} or {"error": message}."""
    mod = load_source(runtime_source(req.spec), interpret=False)
    jit_fn = getattr(mod, req.name).fn
    t = time.perf_counter()
    try:
        with interpret_mode(False):
            compiled = compat.compile_kernel(jit_fn, _signature(jit_fn), _constexprs(jit_fn, req),
                                             _attrs(jit_fn), parse_target(target), _options(req))
    except Exception as exc:  # noqa: BLE001 - Triton raises many types; report them as one
        return {"error": f"{type(exc).__name__}: {exc}"}
    stages = {s: compiled.asm[s] for s in TEXT_STAGES}
    stages["cubin"] = base64.b64encode(bytes(compiled.asm["cubin"])).decode()
    return {"stages": stages, "seconds": time.perf_counter() - t,
            "shared": int(compiled.metadata.shared)}


def _spec_to_json(spec: KernelSpec) -> dict:
    return {"kind": spec.kind, "fields": dataclasses.asdict(spec)}


def _spec_from_json(data: dict) -> KernelSpec:
    cls = {"linear": LinearSpec, "conv2d": Conv2dSpec, "quant_int8": QuantInt8Spec}[data["kind"]]
    return cls(**data["fields"])


def _compile_in_subprocess(reqs: Sequence[AotRequest], target: str) -> list[dict]:
    """Compile in a fresh interpreter without TRITON_INTERPRET (this process imported
    Triton for its interpreter)."""
    payload = json.dumps({"target": target, "requests": [
        {"spec": _spec_to_json(r.spec), "constexprs": list(r.constexprs),
         "num_warps": r.num_warps, "num_stages": r.num_stages} for r in reqs]})
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-m", "tritium.backends.triton.aot"], input=payload,
                          capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise AotError(f"the Triton compiler process failed (exit {done.returncode}): "
                       f"{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def _worker_main() -> int:
    """`python -m tritium.backends.triton.aot`: compile the JSON requests read from stdin."""
    job = json.loads(sys.stdin.read())
    out = []
    for r in job["requests"]:
        req = AotRequest(_spec_from_json(r["spec"]), tuple((k, v) for k, v in r["constexprs"]),
                         int(r["num_warps"]), int(r["num_stages"]))
        out.append(_compile_here(req, job["target"]))
    sys.stdout.write(json.dumps(out))
    return 0


def _cache_entry_problem(entry: dict) -> str | None:
    """Why a compile-cache entry is not a build this module wrote (None: it is). Entries are
    untrusted (their checksum anyone can recompute): a malformed one is dropped and rebuilt,
    never served (it raised binascii.Error, AttributeError or ValueError mid-build)."""
    stages = entry.get("stages")
    if not isinstance(stages, dict):
        return "no stages"
    for s in TEXT_STAGES:
        if not isinstance(stages.get(s), str):
            return f"stage {s} is not text"
    try:
        base64.b64decode(stages.get("cubin"), validate=True)
    except (TypeError, ValueError):
        return "the cubin is not base64"
    seconds, shared = entry.get("seconds", 0.0), entry.get("shared")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return "seconds is not a number"
    if shared is not None and (isinstance(shared, bool) or not isinstance(shared, int)):
        return "shared is not an integer"
    return None


def _kernel(req: AotRequest, target: str, result: dict, cached: bool, key: str) -> AotKernel:
    stages: dict[str, str | bytes] = {s: result["stages"][s] for s in TEXT_STAGES}
    stages["cubin"] = base64.b64decode(result["stages"]["cubin"])
    shared = result.get("shared")
    return AotKernel(req.name, target, dict(req.constexprs), req.num_warps, req.num_stages,
                     stages, float(result.get("seconds", 0.0)), cached, key, list(req.uses),
                     int(shared) if shared is not None else None)


def build(requests: Iterable[AotRequest], target: str, cache: CompileCache | None = None,
          use_cache: bool = True) -> AotBuild:
    """Build (or fetch from the cache) every requested binary for `target`. Cache misses
    are compiled in this process, or in one helper process when this one runs the Triton
    interpreter. Raises AotError naming the first kernel that fails."""
    import triton

    parse_target(target)
    reqs = list(requests)
    store = None
    if use_cache:
        try:
            store = cache or CompileCache()
        except OSError:
            store = None
    keys = [_key(r, target, triton.__version__) for r in reqs]
    found: dict[int, AotKernel] = {}
    if store is not None:
        for i, (r, key) in enumerate(zip(reqs, keys)):
            hit = store.get(key, _cache_entry_problem)
            if hit is not None:
                found[i] = _kernel(r, target, hit, True, key)
    missing = [i for i in range(len(reqs)) if i not in found]
    if missing:
        todo = [reqs[i] for i in missing]
        if _process_can_compile():
            results = [_compile_here(r, target) for r in todo]
        else:
            results = _compile_in_subprocess(todo, target)
        for i, result in zip(missing, results):
            r = reqs[i]
            if "error" in result:
                raise AotError(f"{r.name} failed to compile for {target}: {result['error']}")
            if store is not None:
                try:
                    store.put(keys[i], {"kernel": r.name, "target": target,
                                        "constexprs": dict(r.constexprs), "options": _options(r),
                                        "triton": triton.__version__, **result})
                except OSError:
                    pass
            found[i] = _kernel(r, target, result, False, keys[i])
    return AotBuild(target, [found[i] for i in range(len(reqs))])


def compile_request(req: AotRequest, target: str, cache: CompileCache | None = None,
                    use_cache: bool = True) -> AotKernel:
    """Build (or fetch from the cache) one kernel binary for `target`."""
    return build([req], target, cache, use_cache).kernels[0]


def build_model(module: Module, target: str, cache: CompileCache | None = None,
                use_cache: bool = True, assumed_m: int = ASSUMED_M) -> AotBuild:
    """Compile every kernel the (optimized) IR `module` needs for `target`."""
    return build(requests_for(extract_kernels(module), assumed_m), target, cache, use_cache)


if __name__ == "__main__":
    sys.exit(_worker_main())
