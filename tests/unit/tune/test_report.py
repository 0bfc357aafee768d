"""Tuning reports from synthetic trials: files, tables, ranking, plots, degenerate inputs."""

from __future__ import annotations

import itertools
import math
import struct
from pathlib import Path

import pytest

from tritium.tune.report import cell, impact, importance, top_configs, trials_to_reach, write_report
from tritium.tune.space import Trial

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def synthetic_time(cfg: dict) -> float:
    # BLOCK_M dominates (a factor 8 across its values), num_warps matters a little,
    # "layout" not at all.
    return 1.0 * (cfg["BLOCK_M"] / 16) ** -1.5 * (1.1 if cfg["num_warps"] == 8 else 1.0)


def configs() -> list[dict]:
    return [{"BLOCK_M": m, "num_warps": w, "layout": lay}
            for m, w, lay in itertools.product((16, 32, 64, 128), (4, 8), ("a", "b"))]


def run(name: str, cfgs: list[dict]) -> list[Trial]:
    out = []
    for i, c in enumerate(cfgs):
        ms = synthetic_time(c)
        out.append(Trial(c, name, median_ms=ms, ci_ms=(ms * 0.98, ms * 1.02), number=i))
    return out


META = {"kernel": "cpu.linear", "shape": (64, 256, 1024), "device": {"isa": "avx2", "cores": 2},
        "default_ms": 1.0, "fp32_ms": 0.5, "exhaustive_best_ms": synthetic_time(
            {"BLOCK_M": 128, "num_warps": 4}),
        "stability": [{"shape": (32, 256, 1024), "default_ms": 0.6, "tuned_ms": 0.2},
                      {"shape": (128, 256, 1024), "default_ms": 2.0, "tuned_ms": 2.5}]}


def test_full_report(tmp_path):
    grid = run("grid", configs())
    tpe = run("tpe", [configs()[i] for i in (0, 5, 8, 9)])
    tpe.append(Trial({"BLOCK_M": 256, "num_warps": 4, "layout": "a"}, "tpe", status="invalid",
                     reason="needs 300000 bytes of shared memory | more than sm_80's 166912",
                     number=4))
    path = write_report(tmp_path / "rep", {"grid": grid, "tpe": tpe}, META)
    assert path == tmp_path / "rep" / "report.md"
    md = path.read_text()
    for name in ("convergence.png", "importance.png", "impact.png", "stability.png"):
        w, h = png_size(tmp_path / "rep" / name)
        assert w > 100 and h > 100
        assert f"]({name})" in md
    assert "# Tuning report: cpu.linear" in md and "64x256x1024" in md and "isa=avx2" in md

    top = md.split("## Top configs")[1].split("## Convergence")[0]
    rows = [r for r in top.splitlines() if r.startswith("| ") and not r.startswith("| rank")]
    assert len(rows) == 10
    best = synthetic_time({"BLOCK_M": 128, "num_warps": 4})
    first = [c.strip() for c in rows[0].strip("|").split("|")]
    assert first[0] == "1" and first[1] == f"{best:.4g}"
    assert first[3] == f"{1.0 / best:.2f}x" and first[4] == f"{0.5 / best:.2f}x"
    assert "BLOCK_M=128, num_warps=4" in first[7]
    medians = [float(r.strip("|").split("|")[1]) for r in rows]
    assert medians == sorted(medians)
    # each config once, although both strategies timed some of them
    assert len({r.strip("|").split("|")[7] for r in rows}) == 10

    conv = md.split("## Convergence")[1].split("## Parameters")[0]
    assert "trials to 95% of the optimum" in conv
    grid_row = next(r for r in conv.splitlines() if r.startswith("| grid"))
    assert grid_row.split("|")[-2].strip() == str(trials_to_reach(grid, best / 0.95))
    tpe_row = next(r for r in conv.splitlines() if r.startswith("| tpe"))
    assert "not reached" in tpe_row
    # the | of the failure reason is escaped: the row still has 3 cells
    assert "300000 bytes of shared memory \\| more than sm_80" in conv

    params = md.split("## Parameters")[1].split("## Stability")[0]
    imp_rows = [r for r in params.splitlines() if r.count("|") == 3 and "---" not in r][1:]
    assert imp_rows[0].startswith("| BLOCK_M")
    assert len(imp_rows) == 3 and all(r.endswith(" |") for r in imp_rows)
    assert "| BLOCK_M | 16 |" in params and "| layout | a |" in params

    stab = md.split("## Stability across sizes")[1]
    assert "| (32, 256, 1024) | 0.6 | 0.2 | 3.00x |" in stab
    assert "slower than the default on 1 of 2 sizes" in stab


def test_zero_successful_trials(tmp_path):
    failed = [Trial({"BLOCK_M": 16}, "llm", status="error", reason="segfault\nin kernel",
                    number=0),
              Trial({"BLOCK_M": 32}, "llm", status="wrong", reason="output differs", number=1)]
    md = write_report(tmp_path, {"llm": failed}, {"kernel": "k"}).read_text()
    assert "No successful trial: there is nothing to rank." in md
    assert "no successful trial" in md and "Fewer than two successful trials" in md
    assert "No measurements on neighbouring sizes." in md
    assert "| error | segfault in kernel | 1 |" in md
    assert not list(tmp_path.glob("*.png"))


def test_empty_runs_and_meta(tmp_path):
    md = write_report(tmp_path, {}, {}).read_text()
    assert "# Tuning report: unknown kernel" in md and "No strategy ran." in md
    assert "Trials: 0 (0 successful) over 0 strategies" in md


def test_stale_plots_are_removed(tmp_path):
    write_report(tmp_path, {"grid": run("grid", configs())}, META)
    assert (tmp_path / "convergence.png").exists()
    write_report(tmp_path, {"grid": []}, {})
    assert not list(tmp_path.glob("*.png"))


def test_one_success_and_degenerate_stability(tmp_path):
    trials = [Trial({"BLOCK_M": 16}, "random", median_ms=2.0, number=0)]
    meta = {"kernel": "k", "stability": [{"shape": "64", "default_ms": "bad", "tuned_ms": 1},
                                         {"shape": "x"}, {"shape": "y", "default_ms": 0,
                                                          "tuned_ms": 1}]}
    md = write_report(tmp_path, {"random": trials}, meta).read_text()
    assert "| 1 | 2 | n/a | n/a | n/a | random | 0 | BLOCK_M=16 |" in md
    assert "No measurements on neighbouring sizes." in md
    assert (tmp_path / "convergence.png").exists() and not (tmp_path / "impact.png").exists()


def test_wide_range_and_hostile_values(tmp_path):
    trials = [Trial({"name": "a|b\nc", "x": i}, "grid", median_ms=10.0 ** i, number=i)
              for i in range(4)]
    md = write_report(tmp_path, {"gr|id\n": trials}, {"kernel": "k|\nx"}).read_text()
    assert "# Tuning report: k\\| x" in md
    assert "name=a\\|b c, x=0" in md
    assert "| gr\\|id |" in md
    png_size(tmp_path / "convergence.png")


def test_importance_and_impact_directly():
    trials = run("grid", configs())
    imp = importance(trials)
    assert imp["layout"] == pytest.approx(0.0, abs=1e-12)
    assert imp["BLOCK_M"] > 0.95 > imp["num_warps"] > 0
    eff = impact(trials)
    assert [v for v, _, _ in eff["BLOCK_M"]] == [16, 32, 64, 128]
    assert [n for _, _, n in eff["BLOCK_M"]] == [4, 4, 4, 4]
    times = [m for _, m, _ in eff["BLOCK_M"]]
    assert times == sorted(times, reverse=True)
    assert math.isclose(times[0], 1.05)
    assert importance([]) == {}


def test_top_configs_ignore_failures_and_keep_the_best_trial_per_config():
    a = Trial({"m": 1}, "x", median_ms=3.0, number=0)
    b = Trial({"m": 1}, "y", median_ms=2.0, number=5)
    c = Trial({"m": 2}, "x", status="noisy", median_ms=0.1, number=1)
    assert top_configs({"x": [a, c], "y": [b]}) == [b]


def test_cell_escaping():
    assert cell("a|b\r\nc") == "a\\|b c"
    assert cell(3) == "3"
