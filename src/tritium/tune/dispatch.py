"""From the archive to the runtime: which tuned configs the kernels run.

The runtime reads tuned configs as data (:mod:`tritium.runtime.tuned`: a records file in the
cache directory) and never imports the tuner. This module decides what goes into that data:
for every study in the archive, the best config of its kernel, kernel source, format and
device fingerprint (CPU model, core count, ISA path; or GPU model, compute capability, SM
count) at its exact shape, provided it beat the default config there, side by side, by at least
5% at the low end of the 95% interval of the paired speedup (:data:`MIN_SPEEDUP`,
:func:`refusal`); the studies that did not qualify are written too, with why, so the runtime
can say why a shape runs the default.
Studies measured on Triton's interpreter never reach a GPU (their fingerprints start with
``interpreter-`` and their device is not a GPU), and every config is checked against its
kernel's legal values (:func:`_legal_cpu_config`, :func:`_legal_triton_config`) before it is
written. :func:`write_records` writes the file after each ``tritium tune`` run.

The same rows can be served straight from an archive (:class:`ArchiveSource`;
:func:`install`, :func:`reset` with a storage URL, :func:`install_if_tuned`): the lookup rules
are the runtime's own (exact shape only, the fastest of several studies of one shape, a tuned
thread count capped at the user's). The archive is read as untrusted input and never waited
for: it is opened read-only with a busy timeout of ``archive.READER_BUSY_TIMEOUT_S``, so
inference goes on untuned while a tuner holds it locked; malformed studies and trials are
skipped (``Archive.best_per_study``). A corrupt archive or an illegal config is reported by
one warning per process and means the default config.

``$TRITIUM_TUNED_CONFIGS=0`` turns tuned dispatch off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tritium.cachedir import tuned_configs_enabled as enabled
from tritium.tune.measure import MIN_SPEEDUP as _MIN_SPEEDUP

# the runtime's side (tritium.runtime.tuned) is imported on first use: `tritium cache info`
# asks `enabled()` without importing torch
Rows = list[tuple[tuple[int, ...], dict[str, Any], float]]


def _tuned():
    from tritium.runtime import tuned

    return tuned


def errors() -> list[str]:
    """Why lookups fell back to the default config (for `tritium tune --show` and tests)."""
    return _tuned().errors()

# a tuned config is used only where, side by side with the default, it won by this factor at
# the low end of the 95% interval of the paired speedup (tritium.tune.measure.compare_speedup)
MIN_SPEEDUP = _MIN_SPEEDUP

_storage: str | None = None


def refusal(study: dict[str, Any]) -> str | None:
    """Why the runtime must not run ``study``'s best config (None: it may).

    The rule: a tuning archive never makes a layer slower than the untuned default, so a
    config runs only where it was measured against the default config on the same shape and
    machine, side by side, and won by :data:`MIN_SPEEDUP` at the lower end of the 95%
    interval of the paired speedup (``confirmed_speedup``; the noise of both configs is in
    it). A baseline measured minutes before the search is not enough (load drifts), and a
    study without a decided comparison (the default's baseline too noisy to measure, a
    comparison that could not run, an import from an older export) keeps the default."""
    confirmed = study.get("confirmed_speedup")
    if confirmed is None:
        if study.get("default_ms") is None:
            return ("the default config was never measured on this shape (its baseline was "
                    "noisy or not taken) nor compared side by side")
        return "the best config was never compared side by side with the default config"
    if confirmed < MIN_SPEEDUP:
        return (f"side by side it beat the default config by only {confirmed:.2f}x at the low "
                f"end of the 95% interval ({MIN_SPEEDUP:.2f}x needed)")
    return None


def _useful_rows(url: str, kernel: str, fingerprint: str, fmt: str, source_hash: str,
                 keep: Callable[[dict[str, Any]], bool] | None = None) -> Rows:
    """(shape, best config, median) of every study of ``kernel`` on this device whose best
    config may run (:func:`refusal`)."""
    return [(tuple(s["shape"]), config, ms) for s, config, ms, why
            in _judged_studies(url, kernel, fingerprint, fmt, source_hash, keep) if why is None]


def _refused_rows(url: str, kernel: str, fingerprint: str, fmt: str, source_hash: str,
                  keep: Callable[[dict[str, Any]], bool] | None = None
                  ) -> list[tuple[tuple[int, ...], str]]:
    """(shape, why) of every study of ``kernel`` on this device whose best config may not
    run."""
    return [(tuple(s["shape"]), why) for s, _config, _ms, why
            in _judged_studies(url, kernel, fingerprint, fmt, source_hash, keep)
            if why is not None]


def _useful_studies(url: str, kernel: str | None = None, fingerprint: str | None = None,
                    fmt: str | None = None, source_hash: str | None = None,
                    keep: Callable[[dict[str, Any]], bool] | None = None
                    ) -> list[tuple[dict[str, Any], dict[str, Any], float]]:
    return [(s, c, ms) for s, c, ms, why
            in _judged_studies(url, kernel, fingerprint, fmt, source_hash, keep) if why is None]


def _judged_studies(url: str, kernel: str | None = None, fingerprint: str | None = None,
                    fmt: str | None = None, source_hash: str | None = None,
                    keep: Callable[[dict[str, Any]], bool] | None = None
                    ) -> list[tuple[dict[str, Any], dict[str, Any], float, str | None]]:
    """(study, best config, its median, why it may not run or None) of every study."""
    out = []
    ar = _open_archive(url)
    try:
        for study, config, ms in ar.best_per_study(kernel, fingerprint, fmt, source_hash,
                                                   legal=_why_illegal):
            if keep is not None and not keep(study):
                continue
            out.append((study, config, ms, refusal(study)))
    finally:
        _note_skipped(ar)
        ar.close()
    return out


# ------------------------------------------------------- reading the archive (untrusted)

def _open_archive(url: str):
    """The archive, read-only and without waiting for a lock a tuner holds."""
    from tritium.tune import archive as archive_mod

    return archive_mod.Archive(url, read_only=True)


def _warn_once(message: str) -> None:
    _tuned().warn_once(message)


def _unreadable(e: BaseException) -> None:
    _tuned().unreadable(e)


def _exact(rows: Rows, m: int, n: int, k: int) -> dict[str, Any] | None:
    return _tuned().exact(rows, m, n, k)


def _note_skipped(ar: Any) -> None:
    for why in getattr(ar, "skipped", [])[:20]:
        _warn_once(f"malformed entry ({why})")


def _legal_cpu_config(isa: str, config: dict[str, Any]):
    return _tuned().legal_cpu_config(isa, config)


def _why_illegal(study: dict[str, Any], config: dict[str, Any]) -> str | None:
    """Why a study's archived config may not configure a kernel (None: it may), so that the
    study's next best legal config stands in for an illegal (corrupt or planted) best one.
    A CPU study that does not record its ISA is left to the runtime's check with its own."""
    kernel = str(study.get("kernel"))
    if kernel.startswith("triton."):
        why, misfit = _triton_config_problems(kernel, tuple(study.get("shape") or ()), config)
        return None if why is None and misfit is None else \
            f"illegal {kernel} config ({why or misfit})"
    isa = (study.get("device") or {}).get("isa")
    if not isinstance(isa, str):
        return None
    from tritium.backends.cpu.build import KernelConfig

    try:
        KernelConfig.from_params(isa, config)
    except (TypeError, ValueError) as e:
        return f"illegal CPU kernel config ({e})"
    return None


def _triton_config_problems(kernel: str, shape: tuple[int, ...], config: dict[str, Any]
                            ) -> tuple[str | None, str | None]:
    """(why the names, types or values are illegal, why legal values do not fit ``shape``)."""
    try:
        from tritium.tune.space import SearchSpace
        from tritium.tune.triton_space import triton_space

        space = triton_space(kernel, shape)
        why = SearchSpace(kernel, space.params).validate(config)   # names, types, values
        misfit = None if why is not None or space.constraint is None \
            else space.constraint(config)
    except Exception as e:  # noqa: BLE001 - an unknown kernel or shape: not legal here
        why, misfit = f"{type(e).__name__}: {e}", None
    return why, misfit


def _legal_triton_config(kernel: str, shape: tuple[int, int, int],
                         config: dict[str, Any] | None) -> dict[str, Any] | None:
    """An archived Triton config when the kernel's search space for ``shape`` accepts it,
    else None: illegal names, types or values warn once (a corrupt archive); legal values
    that the space's constraint rejects for this shape just mean autotuning."""
    if config is None:
        return None
    why, misfit = _triton_config_problems(kernel, shape, config)
    if why is not None:
        _warn_once(f"illegal {kernel} config ({why})")
        return None
    if misfit is not None:   # legal values that do not fit this problem: autotune instead
        _tuned().note(f"{kernel} {shape}: the tuned config does not fit ({misfit})")
        return None
    return config


def _is_gpu_study(study: dict[str, Any]) -> bool:
    fp = str(study.get("device_fingerprint") or "")
    device = study.get("device") or {}
    return not fp.startswith("interpreter-") and device.get("kind") == "cuda"


def _url() -> str:
    from tritium.tune import archive as archive_mod

    return _storage or archive_mod.default_url()


def _archive_exists() -> bool:
    """Whether there is an archive to read (a stat for the default SQLite file)."""
    if _storage is not None:
        return True
    from tritium.tune.archive import default_db_path

    path = default_db_path()
    if path is None:
        return bool(os.environ.get("TRITIUM_TUNE_STORAGE"))
    return path.is_file()


class ArchiveSource:
    """The archive as the runtime resolver's source of tuned configs."""

    def rows(self, kernel: str, fmt: str, fingerprint: str, source_hash: str) -> Rows:
        if not _archive_exists():
            return []
        keep = _is_gpu_study if kernel.startswith("triton.") else None
        return _useful_rows(_url(), kernel, fingerprint, fmt, source_hash, keep=keep)

    def refused(self, kernel: str, fmt: str, fingerprint: str, source_hash: str
                ) -> list[tuple[tuple[int, ...], str]]:
        if not _archive_exists():
            return []
        keep = _is_gpu_study if kernel.startswith("triton.") else None
        return _refused_rows(_url(), kernel, fingerprint, fmt, source_hash, keep=keep)

    def check_triton(self, kernel: str, shape: tuple[int, int, int],
                     config: dict[str, Any]) -> dict[str, Any] | None:
        return _legal_triton_config(kernel, shape, config)


# ------------------------------------------------------------------------- CPU lookups

def _table(kernel: str, fmt: str, isa: str) -> Rows:
    """(shape, best config, median) of every useful study of this kernel on this machine."""
    from tritium.backends.cpu.build import source_hash

    tuned = _tuned()
    return tuned.table(kernel, fmt, tuned.cpu_fingerprint(tuned.cpu_device_info(isa)),
                       source_hash())


def lookup(m: int, n: int, k: int, fmt: str, act_quant: str, isa: str
           ) -> dict[str, Any] | None:
    """The tuned config (a tuner config dict) for this problem, or None."""
    return _exact(_table(_tuned().kernel_of(act_quant), fmt, isa), m, n, k)


def resolve(m: int, n: int, k: int, fmt: str, act_quant: str, isa: str):
    """The runtime's resolver (``tritium.runtime.tuned.resolve``) on the current source."""
    return _tuned().resolve(m, n, k, fmt, act_quant, isa)


# ----------------------------------------------------------------------------- Triton on CUDA

def triton_table(kernel: str, fmt: str, fingerprint: str, source_hash: str) -> Rows:
    """(shape, best config, median) of every useful GPU study of a Triton kernel."""
    if fingerprint.startswith("interpreter-"):
        return []
    return _tuned().table(kernel, fmt, fingerprint, source_hash)


def triton_lookup(kernel: str, fmt: str, m: int, n: int, k: int, fingerprint: str,
                  source_hash: str) -> dict[str, Any] | None:
    """The tuned config of a Triton kernel for this problem on the GPU ``fingerprint``."""
    return _tuned().triton_lookup(kernel, fmt, m, n, k, fingerprint, source_hash)


def triton_config_failed(kernel: str, fmt: str, m: int, n: int, k: int,
                         device_index: int | None, error: BaseException) -> None:
    """A tuned config did not launch: autotuning for this problem from now on."""
    _tuned().triton_config_failed(kernel, fmt, m, n, k, device_index, error)


def triton_config(kernel: str, fmt: str, m: int, n: int, k: int,
                  device_index: int | None = None) -> dict[str, Any] | None:
    """What the Triton launcher runs for this problem: the tuned config or None. Never raises."""
    try:
        from tritium.tune import triton_run

        sh = triton_run.source_hash(kernel)
    except Exception as e:  # noqa: BLE001 - an unknown kernel: autotuning
        _tuned().note(f"{type(e).__name__}: {e}")
        return None
    return _tuned().triton_config(kernel, fmt, m, n, k, device_index, sh)


# ------------------------------------------------------------------------ the records file

def build_records(storage: str | None = None) -> list[dict[str, Any]]:
    """The records of every useful, legal study in the archive (what the runtime reads)."""
    return _build(storage)[0]


def build_refusals(storage: str | None = None) -> list[dict[str, Any]]:
    """The studies whose best config may not run, each with why (:func:`refusal`): the
    runtime reports them for the shapes it runs (``tuned_configs_refused``)."""
    return _build(storage)[1]


def _build(storage: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tritium.backends.cpu.build import KernelConfig

    out: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    url = storage or _url()
    for study, config, ms, why in _judged_studies(url):
        kernel = str(study.get("kernel"))
        shape = tuple(study["shape"])
        if kernel.startswith("triton.") and not _is_gpu_study(study):
            continue
        head = {"kernel": kernel, "fmt": study.get("format"),
                "fingerprint": study.get("device_fingerprint"),
                "source_hash": study.get("source_hash"), "shape": list(shape)}
        if why is not None:
            if _tuned().check_refusal({**head, "why": why}) is None:
                refused.append({**head, "why": why})
            continue
        if kernel.startswith("triton."):
            if _legal_triton_config(kernel, shape, config) is None:
                continue
        else:
            isa = (study.get("device") or {}).get("isa")
            try:
                KernelConfig.from_params(str(isa), config)
            except (TypeError, ValueError) as e:
                _warn_once(f"illegal CPU kernel config ({e})")
                continue
        record = {**head, "config": dict(config), "ms": float(ms)}
        if _tuned().check_record(record) is None:
            out.append(record)
    return out, refused


def write_records(storage: str | None = None, path: Path | None = None) -> Path | None:
    """Write the archive's winning configs (and the refused studies, with why) for the
    runtime (after a tuning run); None when the archive could not be read (the old file
    then stays)."""
    try:
        records, refused = _build(storage)
    except Exception as e:  # noqa: BLE001 - a tune still succeeded; dispatch stays as it was
        _unreadable(e)
        return None
    return _tuned().write_records(records, path, refused=refused)


# --------------------------------------------------------------------------- installation

def reset(storage: str | None = None) -> None:
    """Forget cached answers and serve the archive (``storage`` or the default) from now on."""
    global _storage
    _storage = storage
    _tuned().reset(ArchiveSource())


def install(storage: str | None = None) -> None:
    """Register the resolver with the runtime, reading ``storage`` or the default archive."""
    from tritium.runtime import kernels

    global _storage
    _storage = storage
    kernels.use_tuned_configs(ArchiveSource())


def uninstall() -> None:
    from tritium.runtime import kernels

    global _storage
    _storage = None
    kernels.stop_tuned_configs()


def install_if_tuned() -> bool:
    """Install the archive's resolver when tuned dispatch is enabled and the default archive
    exists."""
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
