"""Tuned kernel configs as data the runtime reads: the records file and the resolver.

The autotuner (``tritium tune``, :mod:`tritium.tune`) measures kernel configs and keeps every
trial in its archive. What the runtime needs of that is small: for each kernel, packed format,
machine and kernel source, the winning config per exact shape. After each tuning run the tuner
writes those winners into one JSON file in the cache directory (:func:`records_path`,
:func:`write_records`); the runtime reads that file, never the archive, and never imports the
tuner. ``import tritium.runtime`` only ``stat``s the file
(``tritium.runtime.kernels.use_tuned_configs_if_recorded``), and the file is read on the first
kernel call.

A record holds ``kernel`` (``cpu.linear``, ``cpu.linear_f32``, ``triton.<spec>``), ``fmt``,
``fingerprint`` (the machine: :func:`cpu_fingerprint`, :func:`gpu_fingerprint`),
``source_hash`` (the kernel sources), ``shape`` ``[M, N, K]``, ``config`` and ``ms`` (its
median). The file also lists, under ``refused``, the studies whose best config must not run
(``kernel``, ``fmt``, ``fingerprint``, ``source_hash``, ``shape`` and ``why``: not measured
against the default side by side, or not faster by the tuner's margin), so that a shape that
runs the default config can say why (:func:`refusals`, ``kernel_info()["tuned_configs"]``,
the ``tritium train`` report). A config is used only at exactly its shape (a tile, a path switch or a thread count
that won at one size can lose badly at another) and only on the machine and sources it was
measured on; of several records of one shape the fastest wins. The file is untrusted input:
it is read through ``cachedir.read_file_bounded``/``parse_json``, malformed records are
skipped and every CPU config is checked against the kernel's legal values before it
configures anything; each problem is reported by one warning per process.

The tuner can also hand the resolver its archive directly (``tritium.tune.dispatch.install``, through ``tritium.runtime.kernels.use_tuned_configs``:
a *source* object with ``rows(kernel, fmt, fingerprint, source_hash)`` and
``check_triton(kernel, shape, config)``), which is what its tests and ``--show`` use; the
lookup rules are these same ones.

``$TRITIUM_TUNED_CONFIGS=0`` turns tuned dispatch off.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Protocol

from tritium.cachedir import tuned_configs_enabled, tuned_configs_path
from tritium.vocab import triton_tile_values

RECORDS_VERSION = 1
MAX_RECORDS_BYTES = 16 << 20
# the tile parameters a Triton launcher accepts from a record (checked again by the launch)
TRITON_PARAMS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")

Rows = list[tuple[tuple[int, ...], dict[str, Any], float]]


class Source(Protocol):
    """Where tuned configs come from. A source may also have ``refused(kernel, fmt,
    fingerprint, source_hash)``: (shape, why) of the studies whose config may not run."""

    def rows(self, kernel: str, fmt: str, fingerprint: str, source_hash: str) -> Rows: ...

    def check_triton(self, kernel: str, shape: tuple[int, int, int],
                     config: dict[str, Any]) -> dict[str, Any] | None: ...


_lock = threading.RLock()
_answers: dict[tuple, Any] = {}
_triton_answers: dict[tuple, dict[str, Any] | None] = {}
_tables: dict[tuple, Rows] = {}
_refused_tables: dict[tuple, list[tuple[tuple[int, ...], str]]] = {}
# (m bucket, n, k, fmt, act_quant, isa) -> why a tuned study of that shape did not run
_refused: dict[tuple, str] = {}
_errors: list[str] = []
_warned = False
_source: Source | None = None   # None: the records file


def enabled() -> bool:
    """Whether tuned configs run (``$TRITIUM_TUNED_CONFIGS=0`` turns them off)."""
    return tuned_configs_enabled()


def records_path() -> Path:
    """Where the tuner writes the winning configs and the runtime reads them."""
    return tuned_configs_path()


# ----------------------------------------------------------------------- machine fingerprints

def cpu_device_info(isa: str) -> dict[str, Any]:
    """The CPU as a tuned config's machine: model, core count, ISA path."""
    from tritium.backends.cpu import isa as isa_mod

    return {
        "kind": "cpu", "isa": isa, "model": isa_mod.cpu_model(), "cores": os.cpu_count() or 1,
        "machine": os.uname().machine if hasattr(os, "uname") else "",
    }


def cpu_fingerprint(device: dict[str, Any]) -> str:
    """Same CPU model, core count and ISA path: same fingerprint (tunes move between them)."""
    text = "|".join(f"{k}={device.get(k)}" for k in ("kind", "isa", "model", "cores", "machine"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cuda_device_info(index: int | None = None) -> dict[str, Any]:
    """A CUDA GPU as a tuned config's machine: model, compute capability, SM count, memory."""
    import torch

    index = torch.cuda.current_device() if index is None else int(index)
    props = torch.cuda.get_device_properties(index)
    return {"kind": "cuda", "model": props.name, "capability": f"sm_{props.major}{props.minor}",
            "sms": int(props.multi_processor_count),
            "memory_gb": round(props.total_memory / 2**30, 1)}


def gpu_fingerprint(device: dict[str, Any]) -> str:
    """Same GPU model, compute capability and SM count: same fingerprint. Triton's interpreter
    (``kind`` other than ``cuda``) gets fingerprints that start with ``interpreter-`` and never
    equal a GPU's."""
    keys = ("kind", "model", "capability", "sms") if device.get("kind") == "cuda" else (
        "kind", "model", "cores")
    text = "|".join(f"{k}={device.get(k)}" for k in keys)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return digest if device.get("kind") == "cuda" else f"interpreter-{digest}"


def kernel_of(act_quant: str) -> str:
    """The CPU kernel a linear with ``act_quant`` runs (the tuner's kernel names)."""
    return "cpu.linear" if act_quant == "int8" else "cpu.linear_f32"


def m_bucket(m: int) -> int:
    """The batch-size bucket a tuned config answers for (the CPU resolver's and the Triton
    dispatch's): 1, 2, 3, 4, then the next power of two."""
    return m if m <= 4 else 1 << (m - 1).bit_length()


# ----------------------------------------------------------------------------- warnings

def warn_once(message: str) -> None:
    """Record why tuned dispatch ignored something; the first time, warn."""
    global _warned
    _errors.append(message)
    if not _warned:
        _warned = True
        warnings.warn(f"tritium: ignoring the tuning archive's {message}; it configures no "
                      "kernel", RuntimeWarning, stacklevel=3)


def note(message: str) -> None:
    """Record a reason for a fallback that is expected (no warning)."""
    _errors.append(message)


def errors() -> list[str]:
    """Why lookups fell back to the default config (for `tritium tune --show` and tests)."""
    return list(_errors)


# ------------------------------------------------------------------------- the records file

def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _scalar(v: Any) -> bool:
    return isinstance(v, str | bool) or _int(v) or (isinstance(v, float) and math.isfinite(v))


def check_record(r: Any) -> str | None:
    """Why ``r`` is not a well-formed record, or None."""
    why = _check_head(r)
    if why is not None:
        return why
    config = r.get("config")
    if (not isinstance(config, dict) or len(config) > 64
            or not all(isinstance(k, str) and len(k) <= 64 and _scalar(v)
                       for k, v in config.items())):
        return "config is not an object of names and scalars"
    ms = r.get("ms")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not (
            math.isfinite(ms) and ms >= 0):
        return "ms is not a finite time"
    return None


def _check_head(r: Any) -> str | None:
    if not isinstance(r, dict):
        return "a record is not an object"
    for key in ("kernel", "fmt", "fingerprint", "source_hash"):
        if not isinstance(r.get(key), str) or not 0 < len(r[key]) <= 200:
            return f"{key} is not a short string"
    shape = r.get("shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(_int(d) and 0 < d < 1 << 40 for d in shape)):
        return "shape is not three positive integers"
    return None


def check_refusal(r: Any) -> str | None:
    """Why ``r`` is not a well-formed refused-study entry, or None."""
    why = _check_head(r)
    if why is None and (not isinstance(r.get("why"), str) or not 0 < len(r["why"]) <= 400):
        why = "why is not a short string"
    return why


def write_records(records: list[dict[str, Any]], path: Path | None = None,
                  refused: list[dict[str, Any]] | None = None) -> Path:
    """Write the winning configs and the refused studies (the tuner calls this after a tuning
    run), atomically."""
    from tritium.cachedir import atomic_write_text

    for r in records:
        why = check_record(r)
        if why is not None:
            raise ValueError(f"not a tuned-config record ({why}): {r!r}")
    for r in refused or []:
        why = check_refusal(r)
        if why is not None:
            raise ValueError(f"not a refused-study entry ({why}): {r!r}")
    path = path or records_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"version": RECORDS_VERSION, "configs": records,
                                        "refused": list(refused or [])},
                                       indent=1, sort_keys=True) + "\n")
    return path


class RecordsFile:
    """The records file as a source of rows (read once, on the first lookup)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._records: list[dict[str, Any]] | None = None
        self._refused: list[dict[str, Any]] = []

    def records(self) -> list[dict[str, Any]]:
        if self._records is not None:
            return self._records
        self._records = []
        self._refused = []
        path = self.path or records_path()
        if not path.is_file():
            return self._records
        from tritium.cachedir import parse_json, read_file_bounded

        try:
            doc = parse_json(read_file_bounded(path, MAX_RECORDS_BYTES))
        except (OSError, ValueError) as e:
            warn_once(f"unreadable data ({type(e).__name__}: {e})")
            return self._records
        if not isinstance(doc, dict) or doc.get("version") != RECORDS_VERSION \
                or not isinstance(doc.get("configs"), list):
            warn_once(f"malformed entry ({path.name}: not a version {RECORDS_VERSION} "
                      "records file)")
            return self._records
        for r in doc["configs"]:
            why = check_record(r)
            if why is not None:
                warn_once(f"malformed entry ({why})")
                continue
            self._records.append(r)
        refused = doc.get("refused", [])   # absent from files written before it existed
        for r in refused if isinstance(refused, list) else [None]:
            why = check_refusal(r)
            if why is not None:
                warn_once(f"malformed entry (refused: {why})")
                continue
            self._refused.append(r)
        return self._records

    def rows(self, kernel: str, fmt: str, fingerprint: str, source_hash: str) -> Rows:
        return [(tuple(r["shape"]), dict(r["config"]), float(r["ms"])) for r in self.records()
                if (r["kernel"], r["fmt"], r["fingerprint"], r["source_hash"])
                == (kernel, fmt, fingerprint, source_hash)]

    def refused(self, kernel: str, fmt: str, fingerprint: str, source_hash: str
                ) -> list[tuple[tuple[int, ...], str]]:
        self.records()
        return [(tuple(r["shape"]), str(r["why"])) for r in self._refused
                if (r["kernel"], r["fmt"], r["fingerprint"], r["source_hash"])
                == (kernel, fmt, fingerprint, source_hash)]

    def check_triton(self, kernel: str, shape: tuple[int, int, int],
                     config: dict[str, Any]) -> dict[str, Any] | None:
        """The tuner wrote only configs legal for their shape; here the names, the types and
        the values (each one the tuner may choose for its parameter: a record of BLOCK_M =
        65536 or num_warps = 65536 would make the first call compile a tile no GPU holds)."""
        allowed = triton_tile_values()
        bad = [k for k, v in config.items()
               if k not in TRITON_PARAMS or not _int(v) or v not in allowed.get(k, ())]
        if bad:
            warn_once(f"illegal {kernel} config ({', '.join(sorted(bad))})")
            return None
        return config


# ------------------------------------------------------------------------------- lookups

def source() -> Source:
    global _source
    if _source is None:
        _source = RecordsFile()
    return _source


def table(kernel: str, fmt: str, fingerprint: str, source_hash: str) -> Rows:
    """(shape, config, median) of every record of this kernel, machine and source."""
    key = (kernel, fmt, fingerprint, source_hash)
    with _lock:
        if key not in _tables:
            try:
                _tables[key] = source().rows(kernel, fmt, fingerprint, source_hash)
            except Exception as e:  # noqa: BLE001 - dispatch must never break inference
                unreadable(e)
                _tables[key] = []
        return _tables[key]


def refused_table(kernel: str, fmt: str, fingerprint: str, source_hash: str
                  ) -> list[tuple[tuple[int, ...], str]]:
    """(shape, why) of every study of this kernel, machine and source whose config may not
    run (empty for a source that does not say)."""
    key = (kernel, fmt, fingerprint, source_hash)
    with _lock:
        if key not in _refused_tables:
            get = getattr(source(), "refused", None)
            try:
                _refused_tables[key] = list(get(*key)) if get is not None else []
            except Exception as e:  # noqa: BLE001 - dispatch must never break inference
                unreadable(e)
                _refused_tables[key] = []
        return _refused_tables[key]


def refusals() -> list[dict[str, Any]]:
    """The problems the runtime ran with the default config although the tuner had studied
    their shape, and why (the study's config did not win side by side by the margin, was never
    compared with the default, or is illegal here): batch bucket, shape, format, activation
    mode, ISA and ``why``. Filled as problems are first looked up."""
    with _lock:
        return [{"m_bucket": key[0], "n": key[1], "k": key[2], "fmt": key[3],
                 "act_quant": key[4], "isa": key[5], "why": why}
                for key, why in _refused.items()]


def unreadable(e: BaseException) -> None:
    """Data that could not be read: busy (a tuner holds the archive) is expected and silent,
    anything else (corrupt, not a database) warns once."""
    text = f"{type(e).__name__}: {e}"
    if "locked" in text or "busy" in text:
        note(f"{text} (the archive is busy: running untuned)")
    else:
        warn_once(f"unreadable data ({text})")


def exact(rows: Rows, m: int, n: int, k: int) -> dict[str, Any] | None:
    """The config tuned at exactly this shape (several of it: the fastest)."""
    best: tuple[float, dict[str, Any]] | None = None
    for shape, config, ms in rows:
        if tuple(shape) == (m, n, k) and (best is None or ms < best[0]):
            best = (ms, config)
    return None if best is None else dict(best[1])


def legal_cpu_config(isa: str, config: dict[str, Any]):
    """The ``KernelConfig`` of a tuned config when every value is legal on ``isa``, else None
    (with one warning): tuned data never configures an illegal kernel."""
    from tritium.backends.cpu.build import KernelConfig

    try:
        return KernelConfig.from_params(isa, config)
    except (TypeError, ValueError) as e:
        warn_once(f"illegal CPU kernel config ({e})")
        return None


def cpu_lookup(m: int, n: int, k: int, fmt: str, act_quant: str, isa: str
               ) -> dict[str, Any] | None:
    """The tuned config (a dict) of a CPU linear problem on this machine, or None."""
    from tritium.backends.cpu.build import source_hash

    fp = cpu_fingerprint(cpu_device_info(isa))
    return exact(table(kernel_of(act_quant), fmt, fp, source_hash()), m, n, k)


def foreign_pool(pool: str) -> str | None:
    """Why a tuned config on thread pool ``pool`` may not run in this process (None: it
    may): the process's other layers run on its own pool (``$TRITIUM_CPU_POOL``, default
    openmp), and two pools in one process keep two teams of threads waiting for work on the
    same cores. A config timed alone on the other pool won its trial with the cores to
    itself, yet in a model its layer and its neighbours hand the cores from one team to the
    other at every layer (the digits MLP's whole model 9-11% slower at batch 64 with one
    layer on the pthread pool, threads.py on a 2-core Zen 3)."""
    from tritium.backends import cpu

    own = cpu.process_pool()
    if own is None or pool == own:
        return None
    return (f"its thread pool ({pool}) is not this process's ({own}): two pools in one "
            f"process hand the cores back and forth between layers (TRITIUM_CPU_POOL={pool} "
            "runs it)")


def resolve(m: int, n: int, k: int, fmt: str, act_quant: str, isa: str):
    """The resolver the kernels call (``kernels.set_config_resolver``): a ``KernelConfig``
    or None (the default config). Never raises."""
    key = (m, n, k, fmt, act_quant, isa)
    try:
        return _answers[key]
    except KeyError:
        pass
    with _lock:
        if key in _answers:
            return _answers[key]
        answer = None
        if enabled():
            try:
                config = cpu_lookup(m, n, k, fmt, act_quant, isa)
                if config is not None:
                    answer = legal_cpu_config(isa, config)
                    if answer is None:
                        _refused[key] = "its config is not legal for the kernels here"
                    else:
                        why = foreign_pool(answer.pool)
                        if why is not None:
                            _refused[key], answer = why, None
                else:
                    why = cpu_refusal(m, n, k, fmt, act_quant, isa)
                    if why is not None:
                        _refused[key] = why
            except Exception as e:  # noqa: BLE001 - a stale or foreign config: default
                note(f"{type(e).__name__}: {e}")
                answer = None
        _answers[key] = answer
        return answer


def cpu_refusal(m: int, n: int, k: int, fmt: str, act_quant: str, isa: str) -> str | None:
    """Why the tuner's study of exactly this CPU problem does not run (None: no such study)."""
    from tritium.backends.cpu.build import source_hash

    fp = cpu_fingerprint(cpu_device_info(isa))
    for shape, why in refused_table(kernel_of(act_quant), fmt, fp, source_hash()):
        if tuple(shape) == (m, n, k):
            return why
    return None


def triton_lookup(kernel: str, fmt: str, m: int, n: int, k: int, fingerprint: str,
                  source_hash: str) -> dict[str, Any] | None:
    """The tuned config of a Triton kernel for this problem on the GPU ``fingerprint``."""
    if fingerprint.startswith("interpreter-"):
        return None   # the interpreter's timings say nothing about a GPU
    return exact(table(kernel, fmt, fingerprint, source_hash), m, n, k)


def triton_config(kernel: str, fmt: str, m: int, n: int, k: int, device_index: int | None,
                  source_hash: str) -> dict[str, Any] | None:
    """What the Triton launcher should run on this CUDA device: the tuned config (BLOCK_*,
    GROUP_M, num_warps, num_stages) or None (``@triton.autotune`` chooses). Never raises."""
    key = (kernel, fmt, m_bucket(m), n, k, device_index, source_hash)
    try:
        return _triton_answers[key]
    except KeyError:
        pass
    with _lock:
        if key in _triton_answers:
            return _triton_answers[key]
        answer = None
        if enabled():
            try:
                fp = gpu_fingerprint(cuda_device_info(device_index))
                config = triton_lookup(kernel, fmt, key[2], n, k, fp, source_hash)
                if config is not None:
                    answer = source().check_triton(kernel, (key[2], n, k), config)
            except Exception as e:  # noqa: BLE001 - no tuned config: autotuning
                note(f"{type(e).__name__}: {e}")
                answer = None
        _triton_answers[key] = answer
        return answer


def triton_config_failed(kernel: str, fmt: str, m: int, n: int, k: int,
                         device_index: int | None, error: BaseException) -> None:
    """A tuned config did not launch: use autotuning for this problem from now on."""
    with _lock:
        for key in [key for key in _triton_answers
                    if key[:6] == (kernel, fmt, m_bucket(m), n, k, device_index)]:
            _triton_answers[key] = None
        note(f"{kernel} {m}x{n}x{k}: the tuned config failed to launch "
             f"({type(error).__name__}: {error})")


# --------------------------------------------------------------------------- installation

def reset(new_source: Source | None = None) -> None:
    """Forget cached answers and read ``new_source`` (None: the records file) from now on."""
    global _source, _warned
    with _lock:
        _warned = False
        _answers.clear()
        _tables.clear()
        _refused_tables.clear()
        _refused.clear()
        _triton_answers.clear()
        _errors.clear()
        _source = new_source
