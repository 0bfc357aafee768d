"""The trial archive: every tuning trial in a database, shared by concurrent workers.

SQLAlchemy Core over any URL (SQLite under ``cache_subdir("tune")`` by default, PostgreSQL or
any other by ``--storage``). Two tables:

- ``studies``: one search problem, unique by (kernel, kernel source hash, shape, format,
  device fingerprint); it also keeps the last baseline times (default config and torch fp32).
- ``trials``: one config of one study, unique by (study, config key). A worker *claims* a
  config by inserting its row (status ``running``) before measuring it; a second worker that
  wants the same config gets an IntegrityError and asks its strategy again, so several
  ``tritium tune`` processes on one storage share one search with no trial lost or duplicated.
  The row is then updated with the result.

SQLite runs in WAL mode with a busy timeout so concurrent writers wait instead of failing.
``export_json``/``import_json`` move studies between machines as a versioned JSON document.

Readers that must never wait -- the runtime's dispatch, on every ``tritium predict`` -- open
the archive with ``Archive(url, read_only=True)``: an SQLite file is opened read-only
(``mode=ro``, ``query_only``) with a busy timeout of :data:`READER_BUSY_TIMEOUT_S`, only when it
is a regular file (the default file under the cache root also not through a symbolic link),
and no table is created; a tuner holding the database locked makes the read fail at once
(``ArchiveError``), and the caller goes on untuned. Everything read back is untrusted:
:meth:`Archive.best_per_study` skips (and lists in ``skipped``) studies and trials whose
shape, numbers or config are malformed -- NaN or negative times, configs that are not flat
objects of scalars, JSON nested too deeply.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tritium.tune.space import Config, Trial, config_key

EXPORT_FORMAT = "tritium-tune-archive"
EXPORT_VERSION = 1
STATUSES = ("ok", "invalid", "wrong", "noisy", "error", "running")
DB_NAME = "archive.db"
READER_BUSY_TIMEOUT_S = 0.05
MAX_CONFIG_CHARS = 16 * 1024
MAX_TRIAL_TIMES_CHARS = 1 << 20


class ArchiveError(Exception):
    """The storage cannot be opened or read, or an export file is malformed (one line)."""


def default_url() -> str:
    """``$TRITIUM_TUNE_STORAGE`` or the SQLite file under the cache root's ``tune`` area."""
    env = os.environ.get("TRITIUM_TUNE_STORAGE")
    if env:
        return env
    from tritium.cachedir import cache_subdir

    return f"sqlite:///{cache_subdir('tune') / DB_NAME}"


def default_db_path() -> Path | None:
    """The SQLite file behind the default URL (None when the storage is not a local file)."""
    env = os.environ.get("TRITIUM_TUNE_STORAGE")
    if not env:
        from tritium.cachedir import cache_root

        return cache_root() / "tune" / DB_NAME
    if env.startswith("sqlite:///"):
        return Path(env[len("sqlite:///"):])
    return None


def _default_reader_url() -> str:
    """The default storage URL without creating any directory (a reader creates nothing)."""
    env = os.environ.get("TRITIUM_TUNE_STORAGE")
    if env:
        return env
    path = default_db_path()
    return f"sqlite:///{path}"


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite storage URL (None: another database, or in memory)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" and not path.startswith("file:") \
        else None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def shape_text(shape: Iterable[int]) -> str:
    return ",".join(str(int(d)) for d in shape)


def parse_shape_text(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(","))


def checked_shape(text: Any) -> tuple[int, ...]:
    """A study's shape from the archive: 1 to 8 positive integers (ValueError otherwise)."""
    if not isinstance(text, str) or len(text) > 128:
        raise ValueError(f"shape {str(text)[:40]!r} is not a shape")
    parts = text.split(",")
    if not 1 <= len(parts) <= 8 or not all(p.isascii() and p.isdigit() and len(p) <= 12
                                           for p in parts):
        raise ValueError(f"shape {text[:40]!r} is not a list of positive integers")
    shape = tuple(int(p) for p in parts)
    if not all(d > 0 for d in shape):
        raise ValueError(f"shape {text[:40]!r} has a zero size")
    return shape


def checked_config(text: Any) -> Config:
    """A config read back from the archive: a flat JSON object of parameter names to finite
    numbers, booleans or short strings (ValueError otherwise). Whether its values are legal
    for a kernel is the caller's question (``SearchSpace.validate``, ``KernelConfig``)."""
    from tritium.cachedir import parse_json

    if not isinstance(text, str) or len(text) > MAX_CONFIG_CHARS:
        raise ValueError("the config is not a short JSON text")
    config = parse_json(text, max_depth=1)
    if not isinstance(config, dict):
        raise ValueError("the config is not a JSON object")
    for k, v in config.items():
        if not (isinstance(v, bool | int | str) or (isinstance(v, float) and math.isfinite(v))):
            raise ValueError(f"config value {k[:40]!r} is not a number, boolean or string")
        if isinstance(v, str) and len(v) > 256 or isinstance(v, int) and abs(v) > 1 << 62:
            raise ValueError(f"config value {k[:40]!r} is out of range")
    return config


def _ms(v: Any, *, required: bool = False) -> float | None:
    """A time (or ratio) read back from the archive: None, or a finite non-negative float."""
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{v!r} is not a finite non-negative number")
    return float(v)


def readable_sqlite_file(path: Path, follow_symlinks: bool) -> None:
    """Raise ArchiveError unless ``path`` is a regular file (a FIFO, a device or, when
    ``follow_symlinks`` is false, a symbolic link is not an archive)."""
    import stat as stat_mod

    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except (OSError, ValueError) as e:
        raise ArchiveError(f"cannot read the tuning archive {path}: "
                           f"{getattr(e, 'strerror', None) or e}") from None
    if not stat_mod.S_ISREG(st.st_mode):
        raise ArchiveError(f"the tuning archive {path} is not a regular file")


def _tables():
    import sqlalchemy as sa

    md = sa.MetaData()
    studies = sa.Table(
        "studies", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kernel", sa.String(128), nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("shape", sa.String(128), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("device_fingerprint", sa.String(64), nullable=False),
        sa.Column("device", sa.Text, nullable=False, default="{}"),
        sa.Column("default_ms", sa.Float, nullable=True),
        sa.Column("fp32_ms", sa.Float, nullable=True),
        # default time / best config's time, measured side by side after a search
        sa.Column("confirmed_speedup", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("kernel", "source_hash", "shape", "format", "device_fingerprint",
                            name="uq_study"),
    )
    trials = sa.Table(
        "trials", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False,
                  index=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("config_key", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("median_ms", sa.Float, nullable=True),
        sa.Column("ci_lo_ms", sa.Float, nullable=True),
        sa.Column("ci_hi_ms", sa.Float, nullable=True),
        sa.Column("times_ms", sa.Text, nullable=False, default="[]"),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("study_id", "config_key", name="uq_trial"),
    )
    return md, studies, trials


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Archive:
    """One storage URL: create the tables on first use, claim, record and query trials."""

    def __init__(self, url: str | None = None, *, read_only: bool = False) -> None:
        import sqlalchemy as sa
        from sqlalchemy import exc

        self.read_only = read_only
        self.skipped: list[str] = []
        """Why rows of the last :meth:`best_per_study` were left out (malformed data)."""
        try:
            self.url = url or (_default_reader_url() if read_only else default_url())
        except OSError as e:
            raise ArchiveError(f"cannot create the tuning archive's directory: "
                               f"{e.strerror or e}") from None
        if read_only:
            self._open_reader(self.url)
            return
        try:
            kwargs: dict[str, Any] = {}
            if self.url.startswith("sqlite"):
                kwargs["connect_args"] = {"timeout": 60}
                db = sqlite_file(self.url)
                if db is not None:
                    db.parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(self.url, **kwargs)
            if self.engine.dialect.name == "sqlite":
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            self.md, self.studies, self.trials = _tables()
            self.md.create_all(self.engine)
        except (exc.ArgumentError, exc.NoSuchModuleError) as e:
            raise ArchiveError(f"invalid storage URL {self.url!r}: {_first_line(e)}") from None
        except (exc.SQLAlchemyError, OSError, ImportError) as e:
            raise ArchiveError(f"cannot open the tuning archive {self.url!r}: "
                               f"{_first_line(e)}") from None

    def _open_reader(self, url: str) -> None:
        """A read-only engine that never waits for a lock and never creates anything."""
        import sqlalchemy as sa
        from sqlalchemy import exc

        try:
            self.md, self.studies, self.trials = _tables()
            if url.startswith("sqlite"):
                db = sqlite_file(url)
                if db is None:
                    raise ArchiveError(f"cannot read the tuning archive {url!r} read-only: "
                                       "not an SQLite file")
                default = default_db_path()
                readable_sqlite_file(db, follow_symlinks=default is None or db != default)
                uri = "file:" + urllib.parse.quote(os.path.abspath(db)) + "?mode=ro"

                def connect():
                    import sqlite3

                    conn = sqlite3.connect(uri, uri=True, timeout=READER_BUSY_TIMEOUT_S,
                                           check_same_thread=False)
                    conn.execute("PRAGMA query_only=1")
                    return conn

                self.engine = sa.create_engine("sqlite://", creator=connect,
                                               poolclass=sa.pool.NullPool)
            else:
                self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        except (exc.ArgumentError, exc.NoSuchModuleError) as e:
            raise ArchiveError(f"invalid storage URL {url!r}: {_first_line(e)}") from None
        except (exc.SQLAlchemyError, OSError, ImportError) as e:
            raise ArchiveError(f"cannot open the tuning archive {url!r}: "
                               f"{_first_line(e)}") from None

    def close(self) -> None:
        self.engine.dispose()

    def _run(self, fn, *args):
        """Run ``fn(conn, *args)`` in a transaction; database failures become ArchiveError."""
        from sqlalchemy import exc

        try:
            with self.engine.begin() as conn:
                return fn(conn, *args)
        except exc.IntegrityError:
            raise
        except exc.SQLAlchemyError as e:
            raise ArchiveError(f"tuning archive {self.url!r}: {_first_line(e)}") from None

    # ------------------------------------------------------------------ studies

    def study(self, kernel: str, source_hash: str, shape: Iterable[int], fmt: str,
              device_fingerprint: str, device: dict[str, Any] | None = None) -> int:
        """The id of the study for this problem, created if needed (safe under races)."""
        import sqlalchemy as sa
        from sqlalchemy import exc

        key = dict(kernel=kernel, source_hash=source_hash, shape=shape_text(shape), format=fmt,
                   device_fingerprint=device_fingerprint)
        s = self.studies

        def find(conn):
            q = sa.select(s.c.id).where(*(s.c[k] == v for k, v in key.items()))
            return conn.execute(q).scalar()

        found = self._run(find)
        if found is not None:
            return int(found)
        try:
            return int(self._run(lambda conn: conn.execute(s.insert().values(
                **key, device=json.dumps(device or {}, sort_keys=True),
                created_at=time.time())).inserted_primary_key[0]))
        except exc.IntegrityError:
            return int(self._run(find))

    def set_baseline(self, study_id: int, default_ms: float | None,
                     fp32_ms: float | None) -> None:
        s = self.studies
        self._run(lambda conn: conn.execute(
            s.update().where(s.c.id == study_id).values(default_ms=default_ms, fp32_ms=fp32_ms)))

    def set_confirmed_speedup(self, study_id: int, speedup: float | None) -> None:
        s = self.studies
        self._run(lambda conn: conn.execute(
            s.update().where(s.c.id == study_id).values(confirmed_speedup=speedup)))

    def study_info(self, study_id: int) -> dict[str, Any]:
        import sqlalchemy as sa

        s = self.studies
        row = self._run(lambda conn: conn.execute(
            sa.select(s).where(s.c.id == study_id)).mappings().first())
        if row is None:
            raise ArchiveError(f"no study with id {study_id} in {self.url!r}")
        return _study_dict(row)

    def find_studies(self, kernel: str | None = None, device_fingerprint: str | None = None,
                     fmt: str | None = None, source_hash: str | None = None
                     ) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        s = self.studies
        conds = [c for c in (
            s.c.kernel == kernel if kernel is not None else None,
            s.c.device_fingerprint == device_fingerprint if device_fingerprint else None,
            s.c.format == fmt if fmt is not None else None,
            s.c.source_hash == source_hash if source_hash is not None else None,
        ) if c is not None]
        rows = self._run(lambda conn: conn.execute(
            sa.select(s).where(*conds).order_by(s.c.id)).mappings().all())
        return [_study_dict(r) for r in rows]

    # ------------------------------------------------------------------ trials

    def claim(self, study_id: int, config: Config, strategy: str,
              worker: str | None = None) -> int | None:
        """Reserve ``config`` in the study; its trial id, or None when it is already taken."""
        from sqlalchemy import exc

        t = self.trials
        try:
            return int(self._run(lambda conn: conn.execute(t.insert().values(
                study_id=study_id, config=json.dumps(config, sort_keys=True),
                config_key=config_key(config), status="running", strategy=strategy,
                worker=worker or worker_id(), times_ms="[]", created_at=time.time(),
            )).inserted_primary_key[0]))
        except exc.IntegrityError:
            return None

    def record(self, trial_id: int, trial: Trial) -> None:
        """Store the outcome of a claimed trial."""
        t = self.trials
        lo, hi = trial.ci_ms if trial.ci_ms is not None else (None, None)
        self._run(lambda conn: conn.execute(t.update().where(t.c.id == trial_id).values(
            status=trial.status, median_ms=trial.median_ms, ci_lo_ms=lo, ci_hi_ms=hi,
            times_ms=json.dumps([round(x, 6) for x in trial.times_ms]), reason=trial.reason)))

    def release(self, trial_id: int) -> None:
        """Give a claimed config back (the measurement was interrupted before a result)."""
        t = self.trials
        self._run(lambda conn: conn.execute(
            t.delete().where(t.c.id == trial_id, t.c.status == "running")))

    def history(self, study_id: int) -> list[Trial]:
        """Every trial of the study in claim order (``running`` ones are still measured)."""
        import sqlalchemy as sa

        t = self.trials
        rows = self._run(lambda conn: conn.execute(
            sa.select(t).where(t.c.study_id == study_id).order_by(t.c.id)).mappings().all())
        try:
            return [_trial(r, i) for i, r in enumerate(rows)]
        except (ValueError, TypeError) as e:
            raise ArchiveError(f"tuning archive {self.url!r}: a trial of study {study_id} is "
                               f"malformed ({e})") from None

    def best(self, study_id: int) -> Trial | None:
        ok = [t for t in self.history(study_id) if t.ok]
        return min(ok, key=lambda t: t.median_ms) if ok else None  # type: ignore[arg-type,return-value]

    def best_per_study(self, kernel: str | None = None, device_fingerprint: str | None = None,
                       fmt: str | None = None, source_hash: str | None = None,
                       legal: Callable[[dict[str, Any], Config], str | None] | None = None
                       ) -> list[tuple[dict[str, Any], Config, float]]:
        """(study, best config, its median) for each matching study with a successful trial.

        ``legal(study, config)`` says why a config may not be used (None: it may); such a
        trial is skipped (and listed in ``skipped``) and the study's next best one stands in,
        as for a malformed trial: one planted row does not take its study's tuning away."""
        import sqlalchemy as sa

        self.skipped = []
        studies = {}
        for s in self.find_studies(kernel, device_fingerprint, fmt, source_hash):
            why = s.get("malformed")
            if why:
                self.skipped.append(f"study {s['id']}: {why}")
            else:
                studies[s["id"]] = s
        if not studies:
            return []
        t = self.trials
        q = (sa.select(t.c.study_id, t.c.config, t.c.median_ms)
             .where(t.c.study_id.in_(list(studies)), t.c.status == "ok",
                    t.c.median_ms.is_not(None))
             .order_by(t.c.study_id, t.c.median_ms, t.c.id))
        rows = self._run(lambda conn: conn.execute(q).all())
        out: dict[int, tuple[dict[str, Any], Config, float]] = {}
        for sid, cfg, med in rows:
            if sid not in out:
                try:
                    row = (studies[sid], checked_config(cfg), _ms(med, required=True))
                except ValueError as e:   # a malformed trial: the next best one may do
                    self.skipped.append(f"study {sid}: a trial's {e}")
                    continue
                why = legal(row[0], row[1]) if legal is not None else None
                if why is not None:       # an illegal config: the next best one may do
                    self.skipped.append(f"study {sid}: {why}")
                    continue
                out[sid] = row  # type: ignore[assignment]
        return [out[k] for k in sorted(out)]

    def statistics(self, study_id: int) -> dict[str, Any]:
        """Counts by status and strategy, the best and the default/fp32 baselines."""
        hist = self.history(study_id)
        info = self.study_info(study_id)
        by_status: dict[str, int] = {}
        by_strategy: dict[str, int] = {}
        for t in hist:
            by_status[t.status] = by_status.get(t.status, 0) + 1
            by_strategy[t.strategy] = by_strategy.get(t.strategy, 0) + 1
        best = min((t for t in hist if t.ok), key=lambda t: t.median_ms, default=None)  # type: ignore[arg-type,return-value]
        return {
            "trials": len(hist), "by_status": by_status, "by_strategy": by_strategy,
            "best_ms": best.median_ms if best else None,
            "best_config": best.config if best else None,
            "default_ms": info["default_ms"], "fp32_ms": info["fp32_ms"],
            "workers": len(self._workers(study_id)),
        }

    def _workers(self, study_id: int) -> list[str]:
        import sqlalchemy as sa

        t = self.trials
        return list(self._run(lambda conn: conn.execute(
            sa.select(t.c.worker).where(t.c.study_id == study_id).distinct()).scalars().all()))

    # ------------------------------------------------------------------ export / import

    def export_json(self, path: Path, kernel: str | None = None) -> int:
        """Write every study (of ``kernel``) with its finished trials; the number of studies.

        Only what :meth:`import_json` accepts is written: a study or trial the import would
        refuse (a malformed or planted row, a config outside its kernel's search space, a
        study of an unknown kernel) is left out and listed in ``left_out``, so one bad row
        never makes the whole export unreadable."""
        from tritium.cachedir import atomic_write_text

        self.left_out = []
        doc: dict[str, Any] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                               "exported_at": time.time(), "studies": []}
        for s in self.find_studies(kernel):
            where = f"study {s['id']}"
            if s.get("malformed"):
                self.left_out.append(f"{where}: {s['malformed']}")
                continue
            study = {
                "kernel": s["kernel"], "source_hash": s["source_hash"], "shape": list(s["shape"]),
                "format": s["format"], "device_fingerprint": s["device_fingerprint"],
                "device": s["device"], "default_ms": s["default_ms"], "fp32_ms": s["fp32_ms"],
                "confirmed_speedup": s["confirmed_speedup"], "trials": [],
            }
            try:
                _check_study(study, where)
                space = _study_space(study, where)
            except ArchiveError as e:
                self.left_out.append(str(e).removeprefix("malformed tuning export: "))
                continue
            for row in self._trial_rows(s["id"]):
                if row["status"] == "running":
                    continue
                try:
                    t = _trial(row, 0)
                except (ValueError, TypeError) as e:
                    self.left_out.append(f"{where}, trial {row['id']}: {e}")
                    continue
                trial = {
                    "config": t.config, "status": t.status, "median_ms": t.median_ms,
                    "ci_ms": list(t.ci_ms) if t.ci_ms else None, "times_ms": t.times_ms,
                    "reason": t.reason, "strategy": t.strategy,
                }
                try:
                    _check_trial(trial, f"{where}, trial {row['id']}")
                    _check_config(trial, f"{where}, trial {row['id']}", space)
                except ArchiveError as e:
                    self.left_out.append(str(e).removeprefix("malformed tuning export: "))
                    continue
                study["trials"].append(trial)
            doc["studies"].append(study)
        try:
            atomic_write_text(Path(path), json.dumps(doc, indent=1, sort_keys=True) + "\n")
        except OSError as e:
            raise ArchiveError(f"cannot write {path}: {e.strerror or e}") from None
        return len(doc["studies"])

    def _trial_rows(self, study_id: int) -> list[Any]:
        import sqlalchemy as sa

        t = self.trials
        return list(self._run(lambda conn: conn.execute(
            sa.select(t).where(t.c.study_id == study_id).order_by(t.c.id)).mappings().all()))

    def import_json(self, path: Path) -> tuple[int, int]:
        """Merge an export file; (trials added, trials already present). Validates everything
        first, so a malformed file changes nothing."""
        doc = read_export(path)
        added = skipped = 0
        for s in doc["studies"]:
            sid = self.study(s["kernel"], s["source_hash"], s["shape"], s["format"],
                             s["device_fingerprint"], s["device"])
            if s["default_ms"] is not None or s["fp32_ms"] is not None:
                info = self.study_info(sid)
                if info["default_ms"] is None:
                    self.set_baseline(sid, s["default_ms"], s["fp32_ms"])
            if s["confirmed_speedup"] is not None and \
                    self.study_info(sid)["confirmed_speedup"] is None:
                # the side-by-side verdict of the exporting machine (same fingerprint: same
                # CPU model, cores and ISA path), which dispatch needs to run the config
                self.set_confirmed_speedup(sid, s["confirmed_speedup"])
            for t in s["trials"]:
                tid = self.claim(sid, t["config"], t["strategy"], worker="import")
                if tid is None:
                    skipped += 1
                    continue
                self.record(tid, Trial(
                    config=t["config"], strategy=t["strategy"], status=t["status"],
                    median_ms=t["median_ms"],
                    ci_ms=tuple(t["ci_ms"]) if t["ci_ms"] else None,  # type: ignore[arg-type]
                    times_ms=list(t["times_ms"]), reason=t["reason"]))
                added += 1
        return added, skipped


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _study_dict(row: Any) -> dict[str, Any]:
    """A study row as a dict; ``malformed`` holds why its shape or numbers cannot be
    trusted (then ``shape`` is ``()`` and the numbers are None)."""
    from tritium.cachedir import parse_json

    d = dict(row)
    try:
        d["shape"] = checked_shape(d["shape"])
        for key in ("default_ms", "fp32_ms", "confirmed_speedup"):
            d[key] = _ms(d.get(key))
    except ValueError as e:
        d["malformed"] = str(e)
        d["shape"] = ()
        for key in ("default_ms", "fp32_ms", "confirmed_speedup"):
            d[key] = None
    try:
        device = parse_json(d["device"] or "{}", max_depth=8)
        d["device"] = device if isinstance(device, dict) else {}
    except (ValueError, TypeError):
        d["device"] = {}
    return d


def _trial(row: Any, number: int) -> Trial:
    """A trial row (ValueError when its config, times or status are malformed)."""
    from tritium.cachedir import parse_json

    lo, hi = _ms(row["ci_lo_ms"]), _ms(row["ci_hi_ms"])
    if row["status"] not in STATUSES:
        raise ValueError(f"status {str(row['status'])[:40]!r} is not one of {STATUSES}")
    times = row["times_ms"] or "[]"
    if not isinstance(times, str) or len(times) > MAX_TRIAL_TIMES_CHARS:
        raise ValueError("times_ms is not a short JSON list")
    times_ms = parse_json(times, max_depth=1)
    if not isinstance(times_ms, list):
        raise ValueError("times_ms is not a JSON list")
    return Trial(
        config=checked_config(row["config"]), strategy=str(row["strategy"]),
        status=row["status"], median_ms=_ms(row["median_ms"]),
        ci_ms=(lo, hi) if lo is not None and hi is not None else None,
        times_ms=[_ms(t, required=True) for t in times_ms],  # type: ignore[misc]
        reason=row["reason"], number=number,
    )


# ---------------------------------------------------------------------- export validation

def _fail(where: str, what: str) -> None:
    raise ArchiveError(f"malformed tuning export: {where}: {what}")


def _num_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool)
                         and math.isfinite(v) and v >= 0)


MAX_EXPORT_BYTES = 256 * 1024 * 1024


def read_export(path: Path) -> dict[str, Any]:
    """Load and validate an export file (a regular file of at most
    :data:`MAX_EXPORT_BYTES`, JSON nested at most 8 levels, no NaN); ArchiveError names the
    first problem."""
    from tritium.cachedir import UnsafeFileError, parse_json, read_file_bounded

    try:
        data = read_file_bounded(path, MAX_EXPORT_BYTES, follow_symlinks=True)
    except FileNotFoundError:
        raise ArchiveError(f"cannot import {path}: no such file") from None
    except UnsafeFileError as e:
        raise ArchiveError(f"cannot import {path}: it {e.reason}") from None
    except (OSError, ValueError) as e:
        raise ArchiveError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        doc = parse_json(data, max_depth=8)
    except ValueError as e:
        raise ArchiveError(f"{path} is not valid JSON: {e}") from None
    validate_export(doc)
    return doc


def validate_export(doc: Any) -> None:
    if not isinstance(doc, dict):
        _fail("top level", f"expected an object, got {type(doc).__name__}")
    if doc.get("format") != EXPORT_FORMAT:
        _fail("format", f"expected {EXPORT_FORMAT!r}, got {doc.get('format')!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        _fail("version", f"expected an integer, got {version!r}")
    if version > EXPORT_VERSION:
        _fail("version", f"{version} is newer than this tritium reads ({EXPORT_VERSION})")
    if version < 1:
        _fail("version", f"{version} is not a valid version")
    studies = doc.get("studies")
    if not isinstance(studies, list):
        _fail("studies", "expected a list")
    for i, s in enumerate(studies):
        w = f"studies[{i}]"
        _check_study(s, w)
        trials = s.get("trials")
        if not isinstance(trials, list):
            _fail(f"{w}.trials", "expected a list")
        for j, t in enumerate(trials):
            _check_trial(t, f"{w}.trials[{j}]")
        space = _study_space(s, w)
        for j, t in enumerate(trials):
            _check_config(t, f"{w}.trials[{j}]", space)


def _check_study(s: Any, w: str) -> None:
    """One study of an export, less its trials (ArchiveError names the first problem; the
    optional numbers and the device are filled in)."""
    if not isinstance(s, dict):
        _fail(w, "expected an object")
    for key in ("kernel", "source_hash", "format", "device_fingerprint"):
        if not isinstance(s.get(key), str) or not s[key]:
            _fail(f"{w}.{key}", "expected a non-empty string")
    shape = s.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 10**12
                       for d in shape)):   # what the archive reads back (checked_shape)
        _fail(f"{w}.shape", f"expected a list of positive integers, got {shape!r}")
    if not isinstance(s.get("device", {}), dict):
        _fail(f"{w}.device", "expected an object")
    s.setdefault("device", {})
    for key in ("default_ms", "fp32_ms", "confirmed_speedup"):
        s.setdefault(key, None)
        if not _num_or_none(s[key]):
            _fail(f"{w}.{key}", f"expected a non-negative number or null, got {s[key]!r}")


def _check_trial(t: Any, tw: str) -> None:
    """The fields of one trial of an export (the missing optional ones filled in)."""
    if not isinstance(t, dict):
        _fail(tw, "expected an object")
    cfg = t.get("config")
    if not isinstance(cfg, dict) or not all(
            isinstance(v, int | str | bool | float) for v in cfg.values()):
        _fail(f"{tw}.config", "expected an object of scalar parameter values")
    if t.get("status") not in STATUSES[:-1]:
        _fail(f"{tw}.status", f"{t.get('status')!r} is not one of "
                              f"{', '.join(STATUSES[:-1])}")
    t.setdefault("median_ms", None)
    if not _num_or_none(t["median_ms"]):
        _fail(f"{tw}.median_ms", f"expected a non-negative number or null, "
                                 f"got {t['median_ms']!r}")
    if t["status"] == "ok" and t["median_ms"] is None:
        _fail(f"{tw}.median_ms", "an ok trial needs a median")
    ci = t.setdefault("ci_ms", None)
    if ci is not None and (not isinstance(ci, list) or len(ci) != 2
                           or not all(_num_or_none(v) and v is not None for v in ci)):
        _fail(f"{tw}.ci_ms", f"expected [low, high] or null, got {ci!r}")
    times = t.setdefault("times_ms", [])
    if not isinstance(times, list) or not all(
            _num_or_none(v) and v is not None for v in times):
        _fail(f"{tw}.times_ms", "expected a list of non-negative numbers")
    if not isinstance(t.setdefault("strategy", "import"), str):
        _fail(f"{tw}.strategy", "expected a string")
    if not isinstance(t.setdefault("reason", None), str | None):
        _fail(f"{tw}.reason", "expected a string or null")


def _check_config(t: dict[str, Any], tw: str, space: Any) -> None:
    """A checked trial's config is legal in its study's ``space`` (so that no strategy or
    runtime ever meets a value the kernel does not have)."""
    why = space.validate(t["config"])
    if why is not None:
        _fail(f"{tw}.config", f"not a {space.kernel} config: {why}")


def known_kernels() -> list[str]:
    """Every kernel name the tuner has a search space for (CPU and Triton)."""
    from tritium.tune.cpu import CPU_KERNELS
    from tritium.tune.triton_space import triton_kernels

    return [*CPU_KERNELS, *triton_kernels()]


def study_space(kernel: str, shape: Any, device: Any):
    """The search space of a study (a known kernel, its shape, its device), the one its
    configs were drawn from, without the space's constraint (a legal config the constraint
    rejects is an ``invalid`` trial, not a malformed one). ValueError says why there is none."""
    from tritium.tune.cpu import CPU_KERNELS, linear_space
    from tritium.tune.space import SearchSpace
    from tritium.tune.triton_space import triton_space

    if not isinstance(kernel, str) or kernel not in known_kernels():
        raise ValueError(f"unknown kernel {str(kernel)[:60]!r}; expected cpu.linear, "
                         "cpu.linear_f32 or a triton.* kernel this tritium generates")
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"a {kernel} shape is three positive integers (M, N, K), "
                         f"got {list(shape)}")
    if kernel in CPU_KERNELS:
        isa = device.get("isa") if isinstance(device, dict) else None
        if not isinstance(isa, str):
            raise ValueError(f"a {kernel} study needs its device's ISA (device.isa)")
        space = linear_space(kernel, shape[0], isa)
    else:
        space = triton_space(kernel, shape)
    return SearchSpace(space.kernel, space.params)


def _study_space(s: dict[str, Any], w: str):
    """The search space a checked study's trials must be legal in (ArchiveError: none)."""
    if not isinstance(s["kernel"], str) or s["kernel"] not in known_kernels():
        _fail(f"{w}.kernel", f"unknown kernel {s['kernel'][:60]!r}; expected cpu.linear, "
                             "cpu.linear_f32 or a triton.* kernel this tritium generates")
    try:
        return study_space(s["kernel"], s["shape"], s["device"])
    except ValueError as e:
        _fail(f"{w} ({s['kernel']})", str(e))
