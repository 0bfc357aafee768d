"""Runtime dispatch of tuned configs: the archive's best config for this machine and shape.

:func:`install` registers :func:`resolve` with ``tritium.runtime.kernels.set_config_resolver``.
For a problem (batch bucket M, N, K, format, activation mode, ISA) the resolver answers the
best archived config of the same kernel, kernel source, format and device fingerprint (CPU
model, core count, ISA path) measured at exactly this shape (the batch bucket, N and K),
provided it beat the default config there by at least 5% (:data:`MIN_SPEEDUP`; side by
side when the search confirmed it, else against the baseline). A config is never borrowed
from a neighbouring shape: a tile, a path switch or a thread count that won at one size can
lose badly at another (a 64x128x64 layer that borrowed the 2-thread config of a larger shape
ran 100x slower on a busy machine). The
runtime caps a tuned thread count at the user's own (``torch.set_num_threads``,
``$TRITIUM_NUM_THREADS``) and records which tuned configs ran
(``tritium.runtime.kernels.tuned_configs_used``). Answers are cached in memory; the archive
is read once per process (one query for all studies of a kernel), and a missing, unreadable or
corrupt archive means the default config, never an exception.

:func:`install_if_tuned` installs the resolver only when the default archive file exists (a
``stat``: it imports neither torch nor SQLAlchemy), so an untuned machine pays nothing.
``$TRITIUM_TUNED_CONFIGS=0`` turns tuned dispatch off.

The generated Triton kernels on a CUDA GPU ask :func:`triton_config` (from
``tritium.backends.triton.dispatch``): the best archived config of the same Triton kernel,
generated source and GPU fingerprint (model, compute capability, SM count) at the same
shape, under the same rules; None leaves the choice to ``@triton.autotune``. Studies
measured on Triton's interpreter are never used (their fingerprints start with
``interpreter-`` and their device is not a GPU). A tuned config that fails to launch is
dropped for the process (:func:`triton_config_failed`) and autotuning takes over.

The archive is read as untrusted input and never waited for: it is opened read-only with a
busy timeout of ``archive.READER_BUSY_TIMEOUT_S`` (:func:`_open_archive`), so inference goes
on untuned while a tuner holds it locked; malformed studies and trials are skipped
(``Archive.best_per_study``), and every config is checked against the kernel's legal values
before it configures anything (:func:`_legal_cpu_config`, :func:`_legal_triton_config`). A
corrupt archive or an illegal config is reported by one warning per process
(:func:`_warn_once`) and means the default config.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

# a tuned config is used only where it beat the default by this factor when it was tuned
MIN_SPEEDUP = 1.05

_lock = threading.Lock()
_answers: dict[tuple, Any] = {}
_tables: dict[tuple, list[tuple[tuple[int, ...], dict[str, Any], float]]] = {}
_storage: str | None = None
_errors: list[str] = []
_warned = False


def enabled() -> bool:
    return os.environ.get("TRITIUM_TUNED_CONFIGS", "1").strip().lower() not in (
        "0", "false", "no", "off")


Rows = list[tuple[tuple[int, ...], dict[str, Any], float]]


def _useful_rows(url: str, kernel: str, fingerprint: str, fmt: str, source_hash: str,
                 keep: Callable[[dict[str, Any]], bool] | None = None) -> Rows:
    """(shape, best config, median) of every study of ``kernel`` on this device whose best
    config beat the default by at least :data:`MIN_SPEEDUP`: side by side when the search
    confirmed it, else against the baseline measured before the search. A smaller win is
    within the noise of the measurement, and a config chosen by noise can lose at run time."""
    rows: Rows = []
    ar = _open_archive(url)
    try:
        for study, config, ms in ar.best_per_study(kernel, fingerprint, fmt, source_hash):
            if keep is not None and not keep(study):
                continue
            confirmed = study.get("confirmed_speedup")
            default_ms = study.get("default_ms")
            if confirmed is not None:
                if confirmed < MIN_SPEEDUP:
                    continue  # side by side, the default was (about) as fast
            elif default_ms is not None and ms * MIN_SPEEDUP > default_ms:
                continue  # the default was about as good: nothing sure to gain
            rows.append((tuple(study["shape"]), config, ms))
    finally:
        _note_skipped(ar)
        ar.close()
    return rows


# ------------------------------------------------------- reading the archive (untrusted)

def _open_archive(url: str):
    """The archive, read-only and without waiting for a lock a tuner holds."""
    from tritium.tune import archive as archive_mod

    return archive_mod.Archive(url, read_only=True)


def _warn_once(message: str) -> None:
    """Record why tuned dispatch ignored something; the first time, warn."""
    global _warned
    _errors.append(message)
    if not _warned:
        _warned = True
        warnings.warn(f"tritium: ignoring the tuning archive's {message}; the default kernel "
                      "configs run", RuntimeWarning, stacklevel=3)


def _note_skipped(ar: Any) -> None:
    for why in getattr(ar, "skipped", [])[:20]:
        _warn_once(f"malformed entry ({why})")


def _unreadable(e: BaseException) -> None:
    """An archive that could not be read: busy (a tuner holds it) is expected and silent,
    anything else (corrupt, not a database) warns once."""
    text = f"{type(e).__name__}: {e}"
    if "locked" in text or "busy" in text:
        _errors.append(f"{text} (the archive is busy: running untuned)")
    else:
        _warn_once(f"unreadable data ({text})")


def _legal_cpu_config(isa: str, config: dict[str, Any]):
    """The ``KernelConfig`` of an archived config when every value is legal on ``isa``, else
    None (with one warning): an archive never configures an illegal kernel."""
    from tritium.backends.cpu.build import KernelConfig

    try:
        return KernelConfig.from_params(isa, config)
    except (TypeError, ValueError) as e:
        _warn_once(f"illegal CPU kernel config ({e})")
        return None


def _legal_triton_config(kernel: str, shape: tuple[int, int, int],
                         config: dict[str, Any] | None) -> dict[str, Any] | None:
    """An archived Triton config when the kernel's search space for ``shape`` accepts it,
    else None: illegal names, types or values warn once (a corrupt archive); legal values
    that the space's constraint rejects for this shape just mean autotuning."""
    if config is None:
        return None
    try:
        from tritium.tune.space import SearchSpace
        from tritium.tune.triton_space import triton_space

        space = triton_space(kernel, shape)
        why = SearchSpace(kernel, space.params).validate(config)   # names, types, values
        misfit = None if why is not None or space.constraint is None \
            else space.constraint(config)
    except Exception as e:  # noqa: BLE001 - an unknown kernel or shape: not legal here
        why, misfit = f"{type(e).__name__}: {e}", None
    if why is not None:
        _warn_once(f"illegal {kernel} config ({why})")
        return None
    if misfit is not None:   # legal values that do not fit this problem: autotune instead
        _errors.append(f"{kernel} {shape}: the tuned config does not fit ({misfit})")
        return None
    return config


def _exact(rows: Rows, m: int, n: int, k: int) -> dict[str, Any] | None:
    """The config tuned at exactly this shape (several studies of it: the fastest)."""
    best: tuple[float, dict[str, Any]] | None = None
    for shape, config, ms in rows:
        if tuple(shape) == (m, n, k) and (best is None or ms < best[0]):
            best = (ms, config)
    return None if best is None else dict(best[1])


def _table(kernel: str, fmt: str, isa: str) -> Rows:
    """(shape, best config, median) of every useful study of this kernel on this machine."""
    key = (kernel, fmt, isa)
    if key in _tables:
        return _tables[key]
    rows: Rows = []
    try:
        from tritium.tune import archive as archive_mod
        from tritium.tune import cpu

        url = _storage or archive_mod.default_url()
        path = archive_mod.default_db_path() if _storage is None else None
        if path is None or path.is_file():
            fp = cpu.device_fingerprint(cpu.device_info(isa))
            rows = _useful_rows(url, kernel, fp, fmt, cpu.source_hash())
    except Exception as e:  # noqa: BLE001 - dispatch must never break inference
        _unreadable(e)
        rows = []
    _tables[key] = rows
    return rows


def lookup(m: int, n: int, k: int, fmt: str, act_quant: str, isa: str
           ) -> dict[str, Any] | None:
    """The tuned config (a tuner config dict) for this problem, or None."""
    from tritium.tune.cpu import kernel_of

    return _exact(_table(kernel_of(act_quant), fmt, isa), m, n, k)


def resolve(m: int, n: int, k: int, fmt: str, act_quant: str, isa: str):
    """The resolver the runtime calls: a ``KernelConfig`` or None (the default config)."""
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
                config = lookup(m, n, k, fmt, act_quant, isa)
                if config is not None:
                    answer = _legal_cpu_config(isa, config)
            except Exception as e:  # noqa: BLE001 - a stale or foreign config: default
                _errors.append(f"{type(e).__name__}: {e}")
                answer = None
        _answers[key] = answer
        return answer


# ----------------------------------------------------------------------------- Triton on CUDA

_triton_answers: dict[tuple, dict[str, Any] | None] = {}
_triton_tables: dict[tuple, list[tuple[tuple[int, ...], dict[str, Any], float]]] = {}


def _m_bucket(m: int) -> int:
    """The batch bucket of the CPU resolver (1, 2, 3, 4, then powers of two)."""
    return m if m <= 4 else 1 << (m - 1).bit_length()


def _is_gpu_study(study: dict[str, Any]) -> bool:
    fp = str(study.get("device_fingerprint") or "")
    device = study.get("device") or {}
    return not fp.startswith("interpreter-") and device.get("kind") == "cuda"


def _archive_exists() -> bool:
    """Whether there is an archive to read (a stat for the default SQLite file)."""
    if _storage is not None:
        return True
    from tritium.tune.archive import default_db_path

    path = default_db_path()
    if path is None:
        return bool(os.environ.get("TRITIUM_TUNE_STORAGE"))
    return path.is_file()


def triton_table(kernel: str, fmt: str, fingerprint: str, source_hash: str) -> Rows:
    """(shape, best config, median) of every useful GPU study of a Triton kernel."""
    key = (kernel, fmt, fingerprint, source_hash)
    if key in _triton_tables:
        return _triton_tables[key]
    rows: Rows = []
    if fingerprint.startswith("interpreter-"):
        _triton_tables[key] = rows
        return rows
    try:
        if _archive_exists():
            from tritium.tune import archive as archive_mod

            rows = _useful_rows(_storage or archive_mod.default_url(), kernel, fingerprint, fmt,
                                source_hash, keep=_is_gpu_study)
    except Exception as e:  # noqa: BLE001 - dispatch must never break inference
        _unreadable(e)
        rows = []
    _triton_tables[key] = rows
    return rows


def triton_lookup(kernel: str, fmt: str, m: int, n: int, k: int, fingerprint: str,
                  source_hash: str) -> dict[str, Any] | None:
    """The tuned config of a Triton kernel for this problem on the GPU ``fingerprint``."""
    return _exact(triton_table(kernel, fmt, fingerprint, source_hash), m, n, k)


def triton_config(kernel: str, fmt: str, m: int, n: int, k: int,
                  device_index: int | None = None) -> dict[str, Any] | None:
    """What the Triton launcher should run on this CUDA device: the tuned config (BLOCK_*,
    GROUP_M, num_warps, num_stages) or None (``@triton.autotune`` chooses). Never raises."""
    key = (kernel, fmt, _m_bucket(m), n, k, device_index)
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
                if _archive_exists():
                    from tritium.tune import triton_run

                    fp = triton_run.device_fingerprint(
                        triton_run.cuda_device_info(device_index))
                    answer = _legal_triton_config(kernel, (key[2], n, k), triton_lookup(
                        kernel, fmt, key[2], n, k, fp, triton_run.source_hash(kernel)))
            except Exception as e:  # noqa: BLE001 - no tuned config: autotuning
                _errors.append(f"{type(e).__name__}: {e}")
                answer = None
        _triton_answers[key] = answer
        return answer


def triton_config_failed(kernel: str, fmt: str, m: int, n: int, k: int,
                         device_index: int | None, error: BaseException) -> None:
    """A tuned config did not launch: use autotuning for this problem from now on."""
    with _lock:
        _triton_answers[(kernel, fmt, _m_bucket(m), n, k, device_index)] = None
        _errors.append(f"{kernel} {m}x{n}x{k}: the tuned config failed to launch "
                       f"({type(error).__name__}: {error})")


def reset(storage: str | None = None) -> None:
    """Forget cached answers (after a tune) and optionally read another storage URL."""
    global _storage, _warned
    with _lock:
        _warned = False
        _answers.clear()
        _tables.clear()
        _triton_answers.clear()
        _triton_tables.clear()
        _errors.clear()
        _storage = storage


def errors() -> list[str]:
    """Why lookups fell back to the default config (for `tritium tune --show` and tests)."""
    return list(_errors)


def install(storage: str | None = None) -> None:
    """Register the resolver with the runtime (reading ``storage`` or the default archive)."""
    from tritium.runtime import kernels

    reset(storage)
    kernels.set_config_resolver(resolve)


def uninstall() -> None:
    from tritium.runtime import kernels

    if kernels.get_config_resolver() is resolve:
        kernels.set_config_resolver(None)
    reset()


def install_if_tuned() -> bool:
    """Install the resolver when tuned dispatch is enabled and the default archive exists."""
    if not enabled():
        return False
    try:
        from tritium.tune.archive import default_db_path, default_url

        path = default_db_path()
        if path is None:
            if not os.environ.get("TRITIUM_TUNE_STORAGE"):
                return False
            install(default_url())
            return True
        if not path.is_file():
            return False
    except OSError:
        return False
    install()
    return True
