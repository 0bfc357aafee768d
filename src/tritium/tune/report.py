"""Tuning reports: one markdown file plus PNG plots.

    path = write_report(Path("report"), {"tpe": trials, "grid": grid_trials}, meta)

``runs`` maps a strategy name to its trials in order. ``meta`` describes the problem and the
baselines measured in the same run; every key is optional:

- ``kernel``, ``shape``, ``device`` (a dict or a string): the header;
- ``default_ms``: the default config's median, ``fp32_ms``: torch's fp32 reference (the
  speedup columns of the top-configs table);
- ``exhaustive_best_ms``: the optimum found by an exhaustive search (a horizontal line on
  the convergence plot; the trials each strategy needed to reach 95% of it);
- ``stability``: rows ``{"shape": ..., "default_ms": ..., "tuned_ms": ...}`` (the tuned
  config's speedup on neighbouring sizes).

The markdown stands on its own (every plot also has a table). Plots are drawn with
matplotlib's Agg renderer (the ``data`` extra); without matplotlib the report says so and
keeps the tables.

Parameter importance is the fraction of the variance of log(median time) over the successful
trials that each parameter's value groups explain on their own (a one-way ANOVA ``R²``,
between-group sum of squares over the total): 1 means the parameter alone decides the time,
0 that its value does not matter. Parameters interact, so the fractions need not add to 1.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from tritium.tune.space import Trial, best_so_far, config_key

TOP_CONFIGS = 10
STATUSES = ("ok", "invalid", "wrong", "noisy", "error")
PLOTS = ("convergence.png", "importance.png", "impact.png", "stability.png")


def cell(value: Any) -> str:
    """A value as one markdown table cell: `|` escaped, line breaks flattened, other control
    characters (from an untrusted archive) escaped as `\\xNN`."""
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    text = " ".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")).strip()
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _ratio(base: Any, v: float | None) -> str:
    if not isinstance(base, int | float) or isinstance(base, bool) or base <= 0 or not v:
        return "n/a"
    return f"{base / v:.2f}x"


def _config_text(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(cell(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def top_configs(runs: dict[str, list[Trial]], n: int = TOP_CONFIGS) -> list[Trial]:
    """The fastest distinct configs over all runs (each config's best trial), fastest first."""
    best: dict[str, Trial] = {}
    for trials in runs.values():
        for t in trials:
            if not t.ok:
                continue
            key = config_key(t.config)
            if key not in best or t.median_ms < best[key].median_ms:  # type: ignore[operator]
                best[key] = t
    return sorted(best.values(), key=lambda t: t.median_ms)[:n]  # type: ignore[arg-type,return-value]


def _param_names(trials: list[Trial]) -> list[str]:
    names: list[str] = []
    for t in trials:
        for k in t.config:
            if k not in names:
                names.append(k)
    return names


def _value_order(values: list[Any]) -> list[Any]:
    uniq = list(dict.fromkeys(values))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in uniq):
        return sorted(uniq)
    return sorted(uniq, key=str)


def importance(trials: list[Trial]) -> dict[str, float]:
    """Each parameter's share of the variance of log(median time) (one-way ANOVA R²), over
    the successful trials; parameters with a single value (or no variance at all) get 0."""
    ok = [t for t in trials if t.ok and t.median_ms > 0]  # type: ignore[operator]
    out: dict[str, float] = {}
    if len(ok) < 2:
        return {name: 0.0 for name in _param_names(trials)}
    y = [math.log(t.median_ms) for t in ok]  # type: ignore[arg-type]
    mean = statistics.fmean(y)
    total = sum((v - mean) ** 2 for v in y)
    for name in _param_names(ok):
        groups: dict[str, list[float]] = {}
        for t, v in zip(ok, y):
            groups.setdefault(json.dumps(t.config.get(name), default=str), []).append(v)
        if total <= 0 or len(groups) < 2:
            out[name] = 0.0
            continue
        between = sum(len(g) * (statistics.fmean(g) - mean) ** 2 for g in groups.values())
        out[name] = min(1.0, between / total)
    return out


def impact(trials: list[Trial]) -> dict[str, list[tuple[Any, float, int]]]:
    """Per parameter: (value, median time of the successful trials with it, count)."""
    ok = [t for t in trials if t.ok]
    out: dict[str, list[tuple[Any, float, int]]] = {}
    for name in _param_names(ok):
        by: dict[str, tuple[Any, list[float]]] = {}
        for t in ok:
            v = t.config.get(name)
            by.setdefault(json.dumps(v, default=str), (v, []))[1].append(t.median_ms)  # type: ignore[arg-type]
        values = _value_order([v for v, _ in by.values()])
        rows = []
        for v in values:
            times = by[json.dumps(v, default=str)][1]
            rows.append((v, statistics.median(times), len(times)))
        out[name] = rows
    return out


def trials_to_reach(trials: list[Trial], target_ms: float) -> int | None:
    """The 1-based trial count after which the best-so-far is within ``target_ms``."""
    for i, b in enumerate(best_so_far(trials)):
        if b is not None and b <= target_ms:
            return i + 1
    return None


# ----------------------------------------------------------------------------- plots


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _plot_convergence(path: Path, runs: dict[str, list[Trial]], meta: dict) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    values: list[float] = []
    for name, trials in runs.items():
        curve = best_so_far(trials)
        xs = [i + 1 for i, b in enumerate(curve) if b is not None]
        ys = [b for b in curve if b is not None]
        if ys:
            ax.step(xs, ys, where="post", label=name, marker="o", markersize=3)
            values += ys
    opt = meta.get("exhaustive_best_ms")
    if isinstance(opt, int | float) and opt > 0:
        ax.axhline(opt, color="black", linestyle="--", linewidth=1,
                   label=f"exhaustive optimum ({opt:.4g} ms)")
        values.append(opt)
    if values and min(values) > 0 and max(values) / min(values) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel("best median so far (ms)")
    ax.set_title(f"Convergence: {meta.get('kernel', '')}")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.savefig(path)


def _plot_importance(path: Path, imp: dict[str, float]) -> None:
    names = sorted(imp, key=lambda n: imp[n])
    fig = _figure(6.0, 0.5 + 0.4 * max(len(names), 2))
    ax = fig.add_subplot()
    ax.barh(names, [imp[n] for n in names], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the variance of log(time) explained")
    ax.set_title("Parameter importance")
    fig.savefig(path)


def _plot_impact(path: Path, imp: dict[str, list[tuple[Any, float, int]]]) -> None:
    names = list(imp)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = _figure(4.0 * cols, 3.0 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        labels = [str(v) for v, _, _ in imp[name]]
        ax.bar(labels, [m for _, m, _ in imp[name]], color="tab:orange")
        ax.set_title(name, fontsize="medium")
        ax.set_ylabel("median time (ms)", fontsize="small")
        ax.tick_params(axis="x", labelsize="small", labelrotation=45)
    fig.savefig(path)


def _plot_stability(path: Path, rows: list[dict]) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    labels = [str(r.get("shape")) for r in rows]
    xs = list(range(len(rows)))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], [float(r["default_ms"]) for r in rows], width,
           label="default config")
    ax.bar([x + width / 2 for x in xs], [float(r["tuned_ms"]) for r in rows], width,
           label="tuned config")
    ax.set_xticks(xs, labels, rotation=30, fontsize="small")
    ax.set_ylabel("median time (ms)")
    ax.set_title("Stability across sizes")
    ax.legend(fontsize="small")
    fig.savefig(path)


# ----------------------------------------------------------------------------- report


def _stability_rows(meta: dict) -> list[dict]:
    rows = []
    for r in meta.get("stability") or []:
        try:
            d, t = float(r["default_ms"]), float(r["tuned_ms"])
        except (KeyError, TypeError, ValueError):
            continue
        if d > 0 and t > 0 and math.isfinite(d) and math.isfinite(t):
            rows.append({"shape": r.get("shape"), "default_ms": d, "tuned_ms": t})
    return rows


def _device_text(device: Any) -> str:
    if isinstance(device, dict):
        return ", ".join(f"{k}={v}" for k, v in device.items()) or "unknown"
    return str(device) if device else "unknown"


def write_report(out_dir: Path, runs: dict[str, list[Trial]], meta: dict) -> Path:
    """Write ``report.md`` (and its PNG plots) into ``out_dir``; return the markdown's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in PLOTS:  # no stale plot from an earlier report in the same directory
        (out_dir / name).unlink(missing_ok=True)
    all_trials = [t for trials in runs.values() for t in trials]
    ok_trials = [t for t in all_trials if t.ok]
    try:
        import matplotlib  # noqa: F401

        plots = True
        no_plots = ""
    except ImportError:
        plots = False
        no_plots = "Plots skipped: matplotlib is not installed (`pip install -e '.[data]'`)."

    kernel = meta.get("kernel", "unknown kernel")
    shape = meta.get("shape")
    md = [f"# Tuning report: {cell(kernel)}", ""]
    md.append(f"- Shape: {cell('x'.join(map(str, shape)) if isinstance(shape, list | tuple) else shape or 'unknown')}")
    md.append(f"- Device: {cell(_device_text(meta.get('device')))}")
    md.append(f"- Trials: {len(all_trials)} ({len(ok_trials)} successful) over "
              f"{len(runs)} strateg{'y' if len(runs) == 1 else 'ies'}")
    for label, key in (("Default config", "default_ms"), ("torch fp32", "fp32_ms"),
                       ("Exhaustive optimum", "exhaustive_best_ms")):
        if isinstance(meta.get(key), int | float):
            md.append(f"- {label}: {_ms(meta[key])} ms")
    if no_plots:
        md += ["", no_plots]
    md.append("")

    # --- top configs
    md += ["## Top configs", ""]
    top = top_configs(runs)
    if not top:
        md.append("No successful trial: there is nothing to rank.")
    else:
        rows = []
        for i, t in enumerate(top):
            ci = f"{t.ci_ms[0]:.4g}–{t.ci_ms[1]:.4g}" if t.ci_ms else "n/a"
            rows.append([i + 1, _ms(t.median_ms), ci, _ratio(meta.get("default_ms"), t.median_ms),
                         _ratio(meta.get("fp32_ms"), t.median_ms), t.strategy, t.number,
                         _config_text(t.config)])
        md += _table(["rank", "median ms", "95% CI ms", "vs default", "vs fp32", "strategy",
                      "trial", "config"], rows)
    md.append("")

    # --- convergence
    md += ["## Convergence", ""]
    opt = meta.get("exhaustive_best_ms")
    has_opt = isinstance(opt, int | float) and opt > 0
    header = ["strategy", "trials", *STATUSES, "best ms"]
    if has_opt:
        header.append("trials to 95% of the optimum")
    rows = []
    for name, trials in runs.items():
        counts = Counter(t.status for t in trials)
        best = [b for b in best_so_far(trials) if b is not None]
        row: list[Any] = [name, len(trials), *(counts.get(s, 0) for s in STATUSES),
                          _ms(best[-1]) if best else "no successful trial"]
        if has_opt:
            reached = trials_to_reach(trials, opt / 0.95)
            row.append("not reached" if reached is None else reached)
        rows.append(row)
    if rows:
        md += _table(header, rows)
    else:
        md.append("No strategy ran.")
    if ok_trials and plots:
        _plot_convergence(out_dir / "convergence.png", runs, meta)
        md += ["", "![best-so-far median against trial number](convergence.png)"]
    failures = Counter((t.status, " ".join((t.reason or "").split())[:160]) for t in all_trials if not t.ok)
    if failures:
        md += ["", "Rejected and failed trials, most frequent reasons first:", ""]
        md += _table(["status", "reason", "trials"],
                     [[s, r or "-", n] for (s, r), n in failures.most_common(8)])
    md.append("")

    # --- parameters
    md += ["## Parameters", ""]
    if len(ok_trials) < 2:
        md.append("Fewer than two successful trials: no parameter statistics.")
    else:
        imp = importance(all_trials)
        md.append("Importance: the share of the variance of log(time) over the successful trials "
                  "that each parameter's values explain on their own.")
        md.append("")
        md += _table(["parameter", "importance"],
                     [[n, f"{v:.2f}"] for n, v in sorted(imp.items(), key=lambda kv: -kv[1])])
        if plots:
            _plot_importance(out_dir / "importance.png", imp)
            md += ["", "![parameter importance](importance.png)"]
        md += ["", "Impact: the median time of the successful trials with each value.", ""]
        effects = impact(all_trials)
        rows = []
        for name, values in effects.items():
            for v, med, n in values:
                rows.append([name, v, _ms(med), n])
        md += _table(["parameter", "value", "median ms", "trials"], rows)
        if plots:
            _plot_impact(out_dir / "impact.png", effects)
            md += ["", "![median time per parameter value](impact.png)"]
    md.append("")

    # --- stability
    md += ["## Stability across sizes", ""]
    stab = _stability_rows(meta)
    if not stab:
        md.append("No measurements on neighbouring sizes.")
    else:
        md += _table(["shape", "default ms", "tuned ms", "speedup"],
                     [[r["shape"], _ms(r["default_ms"]), _ms(r["tuned_ms"]),
                       _ratio(r["default_ms"], r["tuned_ms"])] for r in stab])
        slower = [r for r in stab if r["tuned_ms"] > r["default_ms"]]
        md += ["", f"The tuned config is slower than the default on {len(slower)} of {len(stab)} "
               "sizes." if slower else f"The tuned config is at least as fast as the default on "
               f"all {len(stab)} sizes."]
        if plots:
            _plot_stability(out_dir / "stability.png", stab)
            md += ["", "![default against tuned config per size](stability.png)"]
    md.append("")

    path = out_dir / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path
