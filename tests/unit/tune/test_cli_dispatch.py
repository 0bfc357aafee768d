"""`tritium tune` end to end on small shapes, and the runtime's dispatch of tuned configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tritium.cli import main
from tritium.runtime import kernels
from tritium.runtime.packing import pack_ternary
from tritium.tune import cpu, dispatch
from tritium.tune.archive import Archive
from tritium.tune.loop import tune
from tritium.tune.measure import Settings
from tritium.tune.strategies import GridStrategy

ROOT = Path(__file__).resolve().parents[3]
native = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")


@pytest.fixture(autouse=True)
def _storage(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_TUNE_STORAGE", f"sqlite:///{tmp_path / 'tune.db'}")
    kernels.set_config_resolver(None)
    dispatch.reset()
    yield
    kernels.set_config_resolver(None)
    dispatch.reset()


@pytest.mark.parametrize("argv, message", [
    (["--kernel", "cpu.linear", "--shape", "8,512"], "--shape expects M,N,K"),
    (["--kernel", "cpu.linear", "--shape", "a,b,c"], "--shape expects M,N,K"),
    (["--kernel", "cpu.linear", "--shape", "0,4,4"], "--shape expects M,N,K"),
    (["--kernel", "gpu.magic", "--shape", "1,2,3"], "unknown kernel 'gpu.magic'"),
    (["--kernel", "cpu.linear"], "--kernel needs --shape"),
    (["--model", "nowhere.tri"], "--model `nowhere.tri` does not exist"),
    (["--import", "nowhere.json"], "--import `nowhere.json` does not exist"),
    (["--kernel", "cpu.linear", "--shape", "1,2,3", "--storage", "bogus://x"],
     "invalid storage URL"),
    ([], "nothing to do"),
    (["--kernel", "cpu.linear", "--shape", "1,8,8", "--budget", "0"],
     "--budget: must be an integer from 1"),
    (["--kernel", "cpu.linear", "--shape", "1,8,99999999999"], "--shape expects M,N,K"),
    (["--kernel", "cpu.linear", "--shape", "1,65536,65536"], "too large"),
    (["--model", "examples/mlp.tri", "--batch", "1,1e309"], "--batch expects"),
])
def test_bad_input_is_one_clear_line_and_exit_2(argv, message, capsys):
    assert main(["tune", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_corrupt_export_file_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "tritium-tune-archive", "version": 1,
                               "studies": [{"kernel": 3}]}))
    assert main(["tune", "--import", str(bad)]) == 2
    assert "studies[0].kernel: expected a non-empty string" in capsys.readouterr().err


@native
def test_tune_end_to_end_then_export_and_import(tmp_path, capsys):
    report = tmp_path / "report"
    argv = ["tune", "--kernel", "cpu.linear_f32", "--shape", "3,40,70", "--strategy", "random",
            "--budget", "3", "--quick", "--max-ci", "1000", "--seed", "1", "--report", str(report),
            "--export", str(tmp_path / "tuned.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "top configs" in out and "vs fp32" in out and "baseline (this run)" in out
    assert (report / "report.md").is_file()
    ar = Archive()
    (study,) = ar.find_studies("cpu.linear_f32")
    hist = ar.history(study["id"])
    # the budget counts measured trials; configs the space rejects are recorded as invalid
    # and do not count (how many the random draws hit depends on the ISA's search space)
    measured = [t for t in hist if t.status != "invalid"]
    assert len(measured) == 3, [(t.status, t.reason) for t in hist]
    assert all(t.strategy == "random" for t in hist)
    assert study["fp32_ms"] is not None
    # the default config's baseline takes batches of samples until its time is decided; on a
    # machine too loaded for even that it is recorded as not measured, and says so
    if study["default_ms"] is None:
        assert "default config noisy" in out and "recorded as not measured" in out
    else:
        assert f"baseline (this run): default config {study['default_ms']:.4f} ms" in out
    # whatever the load, the tuned config reaches the runtime exactly when it won side by
    # side by the margin, and the runtime's data says why otherwise
    from tritium.runtime import tuned

    why = dispatch.refusal(study)
    records = json.loads(tuned.records_path().read_text())
    configs = [r for r in records["configs"] if r["shape"] == [3, 40, 70]]
    refused = [r for r in records["refused"] if r["shape"] == [3, 40, 70]]
    if why is None:
        assert study["confirmed_speedup"] >= dispatch.MIN_SPEEDUP
        assert len(configs) == 1 and not refused
        # a winner on another thread pool than the process's: the runtime keeps the default
        # (tuned.foreign_pool), and the tuner says so
        if tuned.foreign_pool(configs[0]["config"].get("pool", "openmp")) is None:
            assert "the tuned config runs" in out
        else:
            assert "but the default config runs: its thread pool" in out
    else:
        assert not configs and [r["why"] for r in refused] == [why]
        assert "the tuned config runs" not in out
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["tune", "--import", str(tmp_path / "tuned.json"), "--storage", other]) == 0
    assert f"imported {len(hist)} trials" in capsys.readouterr().out
    (copied,) = Archive(other).find_studies("cpu.linear_f32")
    assert copied["shape"] == (3, 40, 70)
    assert copied["confirmed_speedup"] == study["confirmed_speedup"]  # the verdict travels


@native
def test_tune_model_finds_every_ternary_linear_shape(capsys):
    shapes = sorted(__import__("tritium.tune.cli", fromlist=["x"]).model_shapes(
        str(ROOT / "examples" / "mlp.tri"), None, [1, 64], "t2"))
    assert shapes and all(k in ("cpu.linear", "cpu.linear_f32") for k, _ in shapes)
    assert {s[0] for _, s in shapes} == {1, 64}  # both batch buckets
    assert main(["tune", "--model", str(ROOT / "examples" / "mlp.tri"), "--batch", "1",
                 "--budget", "1", "--quick", "--max-ci", "1000", "--no-stability", "-q"]) == 0
    out = capsys.readouterr().out
    assert "kernel shape" in out
    assert len(Archive().find_studies()) == len([s for s in shapes if s[1][0] == 1])


@native
def test_after_tuning_the_runtime_runs_the_tuned_specialization():
    isa = cpu.default_isa()
    shape = (16, 37, 170)
    problem = cpu.CpuLinearProblem("cpu.linear", shape, "t1.6", isa)
    ar = Archive()
    result = tune(problem, GridStrategy(), ar, budget=3, baseline=False, stability=False,
                  settings=Settings(warmup=1, samples=5, min_sample_s=0.0005, max_rel_ci=100.0),
                  device=cpu.device_info(isa),
                  device_fingerprint=cpu.device_fingerprint(cpu.device_info(isa)),
                  source_hash=cpu.source_hash())
    assert result.best is not None
    ar.close()
    from tritium.backends import cpu as cpu_backend
    from tritium.backends.cpu import KernelConfig

    tuned = KernelConfig.from_params(isa, result.best.config)
    assert dispatch.install_if_tuned()
    # without baselines the best config was never compared with the default: it does not run
    assert dispatch.resolve(16, 37, 170, "t1.6", "int8", isa) is None
    assert "compared side by side" in kernels.tuned_configs_refused()[0]["why"]
    # the verdict a side-by-side win records (tune(..., baseline=True) writes it)
    Archive().set_confirmed_speedup(result.study_id, 1.5)
    dispatch.reset()
    g = torch.Generator().manual_seed(0)
    w = pack_ternary(torch.randint(-1, 2, (37, 170), generator=g).float(), "t1.6")
    x = torch.randn(16, 170, generator=g)
    scale = torch.rand(37) + 0.5
    got = kernels.ternary_linear(x, w, scale, act_quant="int8")
    fn = kernels._RESOLVED[(16, 37, 170, "t1.6", "int8", cpu_backend.load().isa)][0]
    assert fn is cpu_backend.load(config=tuned).call.tri_linear_planned
    assert dispatch.resolve(16, 37, 170, "t1.6", "int8", isa) == tuned
    kernels.set_config_resolver(None)
    torch.testing.assert_close(got, kernels.ternary_linear(x, w, scale, act_quant="int8"),
                               rtol=0, atol=0)


def test_a_missing_or_corrupt_archive_means_the_default_config(tmp_path, monkeypatch):
    assert not dispatch.install_if_tuned()  # no archive file yet: nothing installed
    assert kernels.get_config_resolver() is None
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage" * 1000)
    monkeypatch.setenv("TRITIUM_TUNE_STORAGE", f"sqlite:///{corrupt}")
    assert dispatch.install_if_tuned()
    with pytest.warns(RuntimeWarning, match="not a database"):   # one warning, no exception
        assert dispatch.resolve(1, 64, 64, "t2", "int8", cpu.default_isa()) is None
    assert dispatch.errors() and "not a database" in dispatch.errors()[0]
    monkeypatch.setenv("TRITIUM_TUNED_CONFIGS", "0")
    dispatch.reset()
    assert not dispatch.install_if_tuned()


def test_a_triton_tune_without_gpu_prunes_by_aot_and_exits_3(capsys):
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("this checks the no-GPU path")
    code = main(["tune", "--kernel", "triton.linear_t2", "--shape", "16,256,256",
                 "--strategy", "random", "--budget", "2", "--target", "cuda:sm_80"])
    captured = capsys.readouterr()
    assert code == 3
    assert "configs build ahead of time" in captured.out
    assert "timing Triton configs needs a CUDA GPU" in captured.err


def test_triton_usage_errors_exit_2(capsys):
    pytest.importorskip("triton")
    assert main(["tune", "--kernel", "triton.nope", "--shape", "1,2,3"]) == 2
    assert "unknown Triton kernel 'triton.nope'" in capsys.readouterr().err
    assert main(["tune", "--kernel", "triton.linear_t2", "--shape", "1,2,3",
                 "--target", "cuda:sm_70"]) == 2
    assert "unknown target 'cuda:sm_70'" in capsys.readouterr().err


@native
def test_the_llm_strategy_without_endpoint_falls_back_to_the_heuristic(monkeypatch, capsys):
    monkeypatch.delenv("TRITIUM_LLM_URL", raising=False)
    assert main(["tune", "--kernel", "cpu.linear_f32", "--shape", "2,24,40", "--strategy",
                 "llm", "--budget", "2", "--quick", "--max-ci", "1000", "--no-stability",
                 "-q"]) == 0
    (study,) = Archive().find_studies("cpu.linear_f32")
    assert len(Archive().history(study["id"])) == 2
    assert main(["tune", "--kernel", "cpu.linear", "--shape", "1,8,8", "--llm-url",
                 "http://127.0.0.1:9/v1"]) == 2
    assert "--llm-url is for --strategy llm" in capsys.readouterr().err


def _study(ar: Archive, shape: tuple[int, int, int], confirmed: float, isa: str) -> None:
    from tritium.tune.measure import Trial

    device = cpu.device_info(isa)
    sid = ar.study("cpu.linear", cpu.source_hash(), shape, "t2", cpu.device_fingerprint(device),
                   device)
    config = {"threads": 1}
    tid = ar.claim(sid, config, "grid")
    ar.record(tid, Trial(config=config, strategy="grid", status="ok", median_ms=0.01,
                         ci_ms=(0.01, 0.01), times_ms=[0.01]))
    ar.set_confirmed_speedup(sid, confirmed)


def test_the_runtime_reads_the_winners_the_tuner_recorded_and_never_imports_the_tuner():
    """Tuned configs reach the runtime as data: the records file, written from the archive
    (winners by 5% only); a fresh process uses it without importing tritium.tune."""
    import os
    import subprocess
    import sys

    from tritium.runtime import tuned

    isa = cpu.default_isa()
    code = ("import sys, tritium.runtime\n"
            "from tritium.runtime import kernels, tuned\n"
            "print(kernels.get_config_resolver() is tuned.resolve)\n"
            f"print(tuned.cpu_lookup(1, 64, 64, 't2', 'int8', {isa!r}))\n"
            f"print(tuned.cpu_lookup(1, 64, 128, 't2', 'int8', {isa!r}))\n"
            f"print(tuned.cpu_refusal(1, 64, 128, 't2', 'int8', {isa!r}))\n"
            "print([m for m in sys.modules if m.startswith('tritium.tune')])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def run() -> list[str]:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    ar = Archive()
    _study(ar, (1, 64, 64), 1.2, isa)     # won by 20%: recorded
    _study(ar, (1, 64, 128), 1.04, isa)   # within the noise: not recorded
    ar.close()
    assert run()[0] == "False"            # an archive alone is not data the runtime reads
    path = dispatch.write_records()
    assert path == tuned.records_path()
    records = json.loads(path.read_text())["configs"]
    assert [(r["kernel"], r["shape"], r["config"]) for r in records] == [
        ("cpu.linear", [1, 64, 64], {"threads": 1})]
    assert [(r["shape"], r["why"]) for r in json.loads(path.read_text())["refused"]] == [
        ([1, 64, 128], dispatch.refusal({"confirmed_speedup": 1.04}))]
    out = run()
    assert out[:3] == ["True", "{'threads': 1}", "None"] and out[4] == "[]"
    assert "by only 1.04x" in out[3]


@pytest.mark.parametrize("text, why", [
    ("{", "unreadable data"),
    ('{"version": 7, "configs": []}', "malformed entry"),
    ('{"version": 1, "configs": [{"kernel": "cpu.linear"}]}', "malformed entry"),
])
def test_a_corrupt_records_file_means_the_default_config_with_one_warning(text, why):
    from tritium.runtime import tuned

    path = tuned.records_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert kernels.use_tuned_configs_if_recorded()
    with pytest.warns(RuntimeWarning, match=why):
        assert tuned.resolve(1, 64, 64, "t2", "int8", cpu.default_isa()) is None
    assert tuned.resolve(2, 64, 64, "t2", "int8", cpu.default_isa()) is None
    assert any(why in e for e in tuned.errors())
