"""Tuning the generated Triton kernels: the real loop on Triton's interpreter (CPU tensors, so
correctness is real and timings are not), the CLI, and dispatch of archived configs on a GPU.

TRITON_INTERPRET is set here, while pytest collects (as tests/unit/backends/triton/conftest.py does),
because Triton builds its standard library for the interpreter or the compiler when it is
first imported. AOT pruning in such a process compiles in a helper process.
"""

from __future__ import annotations

import importlib.util
import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from tritium.tune import dispatch  # noqa: E402
from tritium.tune.archive import Archive  # noqa: E402
from tritium.tune.loop import tune  # noqa: E402
from tritium.tune.measure import Settings, measure_config  # noqa: E402
from tritium.tune.space import Trial  # noqa: E402
from tritium.tune.strategies import make_strategy  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="needs triton")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHAPE = (3, 40, 200)
FAST = Settings(warmup=1, samples=3, min_sample_s=0.0, max_rel_ci=10.0)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TRITIUM_TUNE_STORAGE", raising=False)
    monkeypatch.delenv("TRITIUM_TUNED_CONFIGS", raising=False)
    dispatch.reset()
    yield
    dispatch.reset()


@pytest.fixture
def interpreted():
    from tritium.tune import triton_run

    triton_run.use_interpreter()  # fails if triton was imported for its compiler


def _problem(kernel="triton.linear_t2", shape=SHAPE):
    from tritium.tune.triton_run import TritonProblem

    return TritonProblem(kernel, shape, "interpret", "cuda:sm_80")


# ----------------------------------------------------------------------------- the problem


@pytest.mark.usefixtures("interpreted")
@pytest.mark.parametrize("kernel", ["triton.linear_t2", "triton.linear_t16",
                                    "triton.linear_t2_q8_relu_bias", "triton.quantize_int8"])
def test_a_config_launches_exactly_and_passes_the_full_check(kernel):
    p = _problem(kernel)
    config = p.space().default()
    trial = measure_config(p, config, "test", seed=5, settings=FAST)
    assert trial.status == "ok", trial.reason
    assert trial.median_ms > 0 and len(trial.times_ms) == FAST.samples
    lo, hi = trial.ci_ms
    assert lo <= trial.median_ms <= hi


@pytest.mark.usefixtures("interpreted")
def test_the_runner_bypasses_autotune_and_writes_the_callers_buffer(monkeypatch):
    from tritium.backends.triton import launch

    seen = []
    real = launch._launch

    def spy(kernel, grid_of, args, constexprs, config):
        seen.append(dict(config))
        return real(kernel, grid_of, args, constexprs, config)

    monkeypatch.setattr(launch, "_launch", spy)
    p = _problem()
    config = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 256, "GROUP_M": 1, "num_warps": 4,
              "num_stages": 1}
    inputs = p.inputs(1)
    out = p.output(inputs)
    out.fill_(float("nan"))
    p.runner(config)(inputs, out)
    assert seen == [config]
    assert p.check(out, p.reference(inputs)) is None


@pytest.mark.usefixtures("interpreted")
def test_a_kernel_that_skips_its_writes_is_wrong(monkeypatch):
    from tritium.backends.triton import launch

    monkeypatch.setattr(launch, "_launch", lambda *a, **k: None)
    p = _problem()
    trial = measure_config(p, p.space().default(), "test", seed=3, settings=FAST)
    assert trial.status == "wrong"
    assert "of 120 outputs differ" in trial.reason and "nan" in trial.reason
    q = _problem("triton.quantize_int8")
    trial = measure_config(q, q.space().default(), "test", seed=3, settings=FAST)
    assert trial.status == "wrong" and "600 int8 values" in trial.reason


@pytest.mark.usefixtures("interpreted")
def test_an_int8_result_one_bit_off_is_wrong():
    p = _problem("triton.linear_t16_q8")
    inputs = p.inputs(2)
    expected = p.reference(inputs)
    out = p.output(inputs)
    p.runner(p.space().default())(inputs, out)
    assert p.check(out, expected) is None
    out[1, 7] = torch.nextafter(out[1, 7], torch.tensor(float("inf")))
    assert "1 of 120 outputs differ from the bit-exact int8 reference" in p.check(out, expected)


def test_interpreter_and_gpu_fingerprints_never_meet():
    from tritium.tune.triton_run import device_fingerprint, prune_target

    gpu = {"kind": "cuda", "model": "NVIDIA H100", "capability": "sm_90", "sms": 132}
    interp = {"kind": "triton-interpreter", "model": "NVIDIA H100", "cores": 132}
    assert not device_fingerprint(gpu).startswith("interpreter-")
    assert device_fingerprint(interp).startswith("interpreter-")
    assert device_fingerprint(gpu) != device_fingerprint({**gpu, "capability": "sm_80"})
    assert (prune_target(90), prune_target(80), prune_target(86), prune_target(75)) == (
        "cuda:sm_90", "cuda:sm_80", "cuda:sm_80", None)


# ----------------------------------------------------------------------------- the loop


@pytest.mark.usefixtures("interpreted")
@pytest.mark.parametrize("kernel", ["triton.linear_t2", "triton.linear_t16"])
def test_the_interpreter_loop_records_ok_trials(tmp_path, kernel):
    from tritium.tune import triton_run
    from tritium.tune import triton_space as ts

    p = _problem(kernel)
    info = triton_run.interpreter_device_info("cuda:sm_80")
    fp = triton_run.device_fingerprint(info)
    ar = Archive(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        result = tune(p, make_strategy("random", seed=1), ar, budget=3, settings=FAST,
                      prune=lambda sp, c: ts.prune(sp, c, "cuda:sm_80"), stability=False,
                      device={**ts.device_description("cuda:sm_80"), **info},
                      device_fingerprint=fp, source_hash=triton_run.source_hash(kernel))
        history = ar.history(result.study_id)
        study = ar.study_info(result.study_id)
    finally:
        ar.close()
    measured = [t for t in history if t.status != "invalid"]
    assert len(measured) == 3 and all(t.status == "ok" for t in measured), history
    assert all(t.median_ms > 0 for t in measured)
    assert result.default is not None and result.default.ok and result.fp32_ms > 0
    assert study["device_fingerprint"] == fp and fp.startswith("interpreter-")
    assert study["device"]["kind"] == "triton-interpreter"
    assert "say nothing about a GPU" in study["device"]["timings"]
    assert study["format"] == p.fmt == ("t2" if kernel.endswith("t2") else "t1.6")


@pytest.mark.usefixtures("interpreted")
def test_a_config_pruned_by_aot_is_invalid_with_its_reason(tmp_path, monkeypatch):
    from tritium.backends.triton import launch
    from tritium.tune import triton_run
    from tritium.tune import triton_space as ts

    # legal in the space, but its sm_80 build needs more shared memory than an A100 block has
    p = _problem(shape=(64, 256, 1024))
    big = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 256, "GROUP_M": 1, "num_warps": 4,
           "num_stages": 4}
    assert p.space().validate(big) is None

    class Once:
        name = "once"

        def suggest(self, sp, history, ctx):
            return None if history else big

    monkeypatch.setattr(launch, "_launch", lambda *a, **k: pytest.fail("a pruned config ran"))
    ar = Archive(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        result = tune(p, Once(), ar, budget=1, settings=FAST, baseline=False, stability=False,
                      prune=lambda sp, c: ts.prune(sp, c, "cuda:sm_80"),
                      device_fingerprint="interpreter-x",
                      source_hash=triton_run.source_hash(p.kernel))
        history = ar.history(result.study_id)
    finally:
        ar.close()
    assert [(t.status, t.median_ms) for t in history] == [("invalid", None)]
    assert history[0].reason.startswith("needs ")
    assert history[0].reason.endswith("cuda:sm_80 allows at most 166912 bytes")


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.usefixtures("interpreted")
def test_cli_tunes_on_the_interpreter_and_reports(tmp_path, capsys):
    from tritium.cli import main

    db = tmp_path / "t.db"
    code = main(["tune", "--kernel", "triton.linear_t2", "--shape", "3,40,200", "--device",
                 "interpret", "--budget", "3", "--storage", f"sqlite:///{db}",
                 "--no-stability", "--strategy", "random", "--target", "cuda:sm_80",
                 "--report", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Triton's interpreter on CPU tensors" in out and "top configs" in out
    assert "say nothing about a GPU" in out
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "kind=triton-interpreter" in report and "say nothing about a GPU" in report
    ar = Archive(f"sqlite:///{db}")
    try:
        (study,) = ar.find_studies("triton.linear_t2")
        trials = ar.history(study["id"])
    finally:
        ar.close()
    assert study["device_fingerprint"].startswith("interpreter-")
    assert sum(t.status == "ok" for t in trials) == 3


@pytest.mark.usefixtures("interpreted")
def test_cli_llm_strategy_gets_the_kernel_source_and_device(tmp_path, capsys, monkeypatch):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tritium.cli import main

    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    config = {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 256, "GROUP_M": 1, "num_warps": 4,
              "num_stages": 2}
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            requests.append(json.loads(body))
            reply = json.dumps({"choices": [{"index": 0, "message": {
                "role": "assistant", "content": json.dumps(config)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    db = tmp_path / "t.db"
    try:
        code = main(["tune", "--kernel", "triton.linear_t2", "--shape", "3,40,200", "--device",
                     "interpret", "--budget", "1", "--storage", f"sqlite:///{db}",
                     "--no-stability", "--strategy", "llm", "--target", "cuda:sm_80",
                     "--llm-url", f"http://127.0.0.1:{server.server_address[1]}/v1"])
    finally:
        server.shutdown()
        server.server_close()
    out = capsys.readouterr().out
    assert code == 0, out
    prompt = json.dumps(requests[0])
    assert "@triton.jit" in prompt and "tri_linear_t2" in prompt
    assert "166912" in prompt and "triton-interpreter" in prompt
    ar = Archive(f"sqlite:///{db}")
    try:
        (study,) = ar.find_studies("triton.linear_t2")
        (trial,) = ar.history(study["id"])
    finally:
        ar.close()
    assert (trial.config, trial.strategy, trial.status) == (config, "llm", "ok")


def test_interpreter_after_a_compiler_import_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITIUM_CACHE_DIR"] = str(tmp_path / "cache")
    code = ("import sys, triton\n"
            "from tritium.cli import main\n"
            "sys.exit(main(['tune', '--kernel', 'triton.linear_t2', '--shape', '3,40,200', "
            "'--device', 'interpret', '--storage', 'sqlite:///" + str(tmp_path / "x.db") +
            "']))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Triton was already imported for its compiler" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_without_gpu_or_interpreter_still_prunes_and_exits_3(capsys):
    from tritium.cli import main

    if torch.cuda.is_available():
        pytest.skip("this checks the no-GPU path")
    code = main(["tune", "--kernel", "triton.linear_t2", "--shape", "3,40,200", "--budget",
                 "2", "--strategy", "grid", "--target", "cuda:sm_80"])
    captured = capsys.readouterr()
    assert code == 3
    assert "configs build ahead of time" in captured.out
    assert "--device interpret" in captured.err


def test_cli_device_is_for_triton_kernels(capsys):
    from tritium.cli import main

    assert main(["tune", "--kernel", "cpu.linear", "--shape", "1,64,64", "--device",
                 "interpret"]) == 2
    assert "--device is for triton.* kernels" in capsys.readouterr().err


# ----------------------------------------------------------------------------- dispatch

GPU = {"kind": "cuda", "model": "NVIDIA H100 80GB HBM3", "capability": "sm_90", "sms": 132,
       "target": "cuda:sm_90"}
TUNED = {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 256, "GROUP_M": 1, "num_warps": 4,
         "num_stages": 3}


def _archive_study(ar, kernel, device, fp, config, ms, default_ms, shape=(4, 4096, 4096)):
    from tritium.tune import triton_run

    sid = ar.study(kernel, triton_run.source_hash(kernel), shape, "t2", fp, device)
    ar.set_baseline(sid, default_ms, None)
    ar.set_confirmed_speedup(sid, default_ms / ms)   # as if side by side it did as well
    tid = ar.claim(sid, config, "grid")
    ar.record(tid, Trial(config=config, strategy="grid", status="ok", median_ms=ms,
                         ci_ms=(ms, ms), times_ms=[ms]))
    return sid


def test_dispatch_uses_the_gpus_archived_config_and_never_the_interpreters(tmp_path,
                                                                            monkeypatch):
    from tritium.backends.triton import dispatch as triton_dispatch
    from tritium.runtime.packing import pack_ternary
    from tritium.tune import triton_run

    kernel = "triton.linear_t2_q8"
    url = f"sqlite:///{tmp_path / 'd.db'}"
    gpu_fp = triton_run.device_fingerprint(GPU)
    interp = {"kind": "triton-interpreter", "model": "cpu", "cores": 2}
    interp_fp = triton_run.device_fingerprint(interp)
    ar = Archive(url)
    try:
        _archive_study(ar, kernel, GPU, gpu_fp, TUNED, 0.05, 0.08)
        # a faster interpreter row at the same shape, and one stored under the GPU's
        # fingerprint but recorded as an interpreter device: neither may be dispatched
        _archive_study(ar, kernel, interp, interp_fp, {**TUNED, "BLOCK_M": 32}, 0.01, 0.08)
        _archive_study(ar, "triton.linear_t2", interp, gpu_fp, TUNED, 0.01, 0.08)
    finally:
        ar.close()
    dispatch.reset(url)
    sh = triton_run.source_hash(kernel)
    assert dispatch.triton_lookup(kernel, "t2", 4, 4096, 4096, gpu_fp, sh) == TUNED
    # a neighbouring shape (another batch bucket) gets no borrowed config
    assert dispatch.triton_lookup(kernel, "t2", 8, 4096, 4096, gpu_fp, sh) is None
    assert dispatch.triton_lookup(kernel, "t2", 4, 4096, 4096, interp_fp, sh) is None
    assert dispatch.triton_lookup("triton.linear_t2", "t2", 4, 4096, 4096, gpu_fp,
                                  triton_run.source_hash("triton.linear_t2")) is None
    assert dispatch.triton_lookup(kernel, "t2", 4, 4096, 4096, gpu_fp, "other-source") is None

    # The backend's hook on a (faked) CUDA device: device index and fingerprint from it
    # (the runtime's own description of the GPU: it never imports the tuner).
    from tritium.runtime import tuned

    monkeypatch.setattr(tuned, "cuda_device_info", lambda index=None: dict(GPU))

    class FakeCuda:
        def __init__(self, x):
            self.x = x
            self.device = torch.device("cuda", 0)

        def __getattr__(self, name):
            return getattr(self.x, name)

    w = pack_ternary(torch.zeros(4096, 4096, dtype=torch.int8), "t2")
    x = torch.zeros(4, 4096)
    got = triton_dispatch.tuned_linear_config(FakeCuda(x), w, False, None, "int8", False)
    assert got == (kernel, TUNED)
    assert triton_dispatch.tuned_linear_config(x, w, False, None, "int8", False) is None
    assert triton_dispatch.tuned_linear_config(FakeCuda(x), w, True, None, "int8",
                                               False) is None  # no tuned bias variant
    monkeypatch.setenv("TRITIUM_TUNED_CONFIGS", "0")
    dispatch.reset(url)
    assert triton_dispatch.tuned_linear_config(FakeCuda(x), w, False, None, "int8",
                                               False) is None


def test_dispatch_skips_configs_that_did_not_beat_the_default_and_survives_bad_archives(
        tmp_path, monkeypatch):
    from tritium.tune import triton_run

    kernel = "triton.linear_t2"
    url = f"sqlite:///{tmp_path / 'd.db'}"
    fp = triton_run.device_fingerprint(GPU)
    ar = Archive(url)
    try:
        _archive_study(ar, kernel, GPU, fp, TUNED, 0.09, 0.08)
    finally:
        ar.close()
    dispatch.reset(url)
    from tritium.runtime import tuned

    monkeypatch.setattr(tuned, "cuda_device_info", lambda index=None: dict(GPU))
    assert dispatch.triton_config(kernel, "t2", 4, 4096, 4096, 0) is None
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    dispatch.reset(f"sqlite:///{corrupt}")
    assert dispatch.triton_config(kernel, "t2", 4, 4096, 4096, 0) is None
    assert dispatch.errors()
    dispatch.reset()  # the default archive does not exist: not even opened
    assert dispatch.triton_config(kernel, "t2", 4, 4096, 4096, 0) is None
    assert not (tmp_path / "cache" / "tune").exists()


def test_a_tuned_config_that_fails_to_launch_falls_back_to_autotuning(tmp_path, monkeypatch):
    from tritium.backends.triton import dispatch as triton_dispatch
    from tritium.backends.triton import launch
    from tritium.runtime.packing import pack_ternary

    calls = []

    def fake_linear(x, w, scale, bias, activation, act_quant, residual, *, config=None):
        calls.append(config)
        if config is not None:
            raise RuntimeError("out of resources")
        return "autotuned"

    monkeypatch.setattr(launch, "triton_ternary_linear", fake_linear)
    monkeypatch.setattr(triton_dispatch, "tuned_linear_config",
                        lambda *a: ("triton.linear_t2", dict(TUNED)))
    w = pack_ternary(torch.zeros(8, 128, dtype=torch.int8), "t2")
    assert triton_dispatch.ternary_linear(torch.zeros(2, 128), w, torch.ones(8), None, None,
                                          "none", None) == "autotuned"
    assert calls == [TUNED, None]
    assert any("failed to launch" in e for e in dispatch.errors())


# ----------------------------------------------------------------------------- on a GPU


GPU_SCRIPT = """
import sys
import torch
from tritium.cli import main
from tritium.runtime import kernels
from tritium.runtime.packing import pack_ternary
from tritium.backends.triton import launch
from tritium.tune import dispatch, triton_run
from tritium.tune.archive import Archive
from tritium.tune.space import Trial

url = sys.argv[1]
kernel, shape = "triton.linear_t2_q8", (4, 512, 512)
code = main(["tune", "--kernel", kernel, "--shape", "4,512,512", "--budget", "3",
             "--strategy", "random", "--quick", "--no-stability", "--storage", url])
assert code == 0, code
info = triton_run.cuda_device_info()
fp = triton_run.device_fingerprint(info)
ar = Archive(url)
(study,) = ar.find_studies(kernel)
assert study["device_fingerprint"] == fp and study["device"]["kind"] == "cuda"
assert all(t.status in ("ok", "noisy", "invalid") for t in ar.history(study["id"]))
# a study at another shape whose best clearly beat the default: dispatch must launch it
tuned = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 256, "GROUP_M": 1, "num_warps": 4,
         "num_stages": 2}
sid = ar.study(kernel, triton_run.source_hash(kernel), (8, 512, 512), "t2", fp, info)
ar.set_baseline(sid, 1.0, None)
tid = ar.claim(sid, tuned, "grid")
ar.record(tid, Trial(config=tuned, strategy="grid", status="ok", median_ms=0.001,
                     ci_ms=(0.001, 0.001), times_ms=[0.001]))
ar.close()
dispatch.reset(url)
assert dispatch.triton_config(kernel, "t2", 8, 512, 512, torch.cuda.current_device()) == tuned
seen = []
real = launch._launch
def spy(kernel_, grid_of, args, constexprs, config):
    seen.append(config)
    return real(kernel_, grid_of, args, constexprs, config)
launch._launch = spy
t = torch.randint(-1, 2, (512, 512), dtype=torch.int8)
w = pack_ternary(t, "t2")
wg = type(w)(w.format, w.data.cuda(), w.shape)
x = torch.randn(8, 512)
y = kernels.ternary_linear(x.cuda(), wg, torch.ones(512).cuda(), None, None, "int8")
assert seen == [tuned], seen
assert torch.equal(y.cpu(), kernels.ternary_linear(x, w, torch.ones(512), None, None, "int8"))
print("gpu ok")
"""


@pytest.mark.gpu
@needs_cuda
def test_gpu_timing_and_dispatch(tmp_path):  # pragma: no cover - needs a CUDA device
    # In a process of its own: this one runs Triton's interpreter (TRITON_INTERPRET=1).
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITIUM_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", GPU_SCRIPT, f"sqlite:///{tmp_path / 'g.db'}"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "gpu ok" in proc.stdout, proc.stdout + proc.stderr
