"""`tritium train`, `eval`, `predict` and `export` end to end on the embedded digits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tritium.cli import main
from tritium.data import Normalization
from tritium.driver.evaluate import evaluate_checkpoint, load_for_eval
from tritium.driver.train import model_inputs
from tritium.runtime import TernaryLayer, read_checkpoint_metadata, tritium_layers

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.tri")
LENET = str(ROOT / "examples" / "lenet5.tri")
FAST = ["--no-progress", "--latency-runs", "5"]


def train(*args: str) -> int:
    return main(["train", *args, *FAST])


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mlp")
    assert train(MLP, "--epochs", "3", "--out", str(out)) == 0
    return out


def _history(out: Path, label: str = "ternary") -> list[dict]:
    hist = json.loads((out / "metrics.json").read_text())["history"][label]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in hist]


def test_train_writes_every_file(mlp_run: Path):
    names = {p.name for p in mlp_run.iterdir()}
    assert names == {"model.safetensors", "fp32.safetensors", "train_state.safetensors",
                     "model.py", "metrics.json", "curves.png", "weights.png"}
    for png in ("curves.png", "weights.png"):
        assert (mlp_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "class DigitsMLP(nn.Module)" in (mlp_run / "model.py").read_text()
    m = json.loads((mlp_run / "metrics.json").read_text())
    assert [r["epoch"] for r in m["history"]["ternary"]] == [1, 2, 3]
    assert set(m["weight_distribution"]) == {"fc1", "fc2"}
    for share in m["weight_distribution"].values():
        assert sum(share.values()) == pytest.approx(1.0)
    assert {r["key"] for r in m["performance"]} == {"min_accuracy", "max_size_kb"}
    assert m["ternary"]["checkpoint_bytes"] == (mlp_run / "model.safetensors").stat().st_size
    assert m["ternary"]["tuned_configs"] == []  # no tuning archive in this test's cache root
    assert m["ternary"]["tuned_configs_refused"] == []
    # dense trits, the batch norm folded into fc1, float16 scales and biases: the tensors
    # 16.7x smaller; the files (each with the same plain-text run description) 9.5x
    assert m["ratio"]["tensors"] > 16.0
    assert m["ratio"]["checkpoint"] > 9.0
    raw = (mlp_run / "model.safetensors").read_bytes()
    assert m["ternary"]["tensor_bytes"] == len(raw) - 8 - int.from_bytes(raw[:8], "little")
    assert m["warnings"] == []          # a healthy run, no augmentation


def test_checkpoint_is_frozen_and_self_describing(mlp_run: Path):
    meta = read_checkpoint_metadata(mlp_run / "model.safetensors")
    assert meta.packing_formats == {"t2"}
    assert meta.extra["tritium.entry"] == "DigitsMLP"
    assert meta.extra["tritium.source"] == Path(MLP).read_text()
    assert json.loads(meta.extra["tritium.input_shape"]) == [64]
    model, info = load_for_eval(mlp_run / "model.safetensors")
    layers = [layer for _, layer in tritium_layers(model) if isinstance(layer, TernaryLayer)]
    assert layers and all(layer.frozen for layer in layers)
    assert info.variant == "ternary"
    # the batch norm is folded into fc1 and gone from the file and the model
    assert meta.folds == {"fc1": "bn1"} and model.fc1.folded
    assert type(model.bn1) is torch.nn.Identity
    assert not any(name.startswith("bn1.") for name in meta.tensors)
    # the fp32 baseline stays an honest float32 state_dict, batch norm included
    fp32 = read_checkpoint_metadata(mlp_run / "fp32.safetensors")
    assert not fp32.folds and not fp32.float16 and not fp32.frozen
    assert {"bn1.running_mean", "fc1.weight", "fc2.weight"} <= set(fp32.tensors)


def test_reported_accuracy_equals_recomputation_from_the_checkpoints(mlp_run: Path):
    m = json.loads((mlp_run / "metrics.json").read_text())
    ternary = evaluate_checkpoint(mlp_run / "model.safetensors")
    fp32 = evaluate_checkpoint(mlp_run / "fp32.safetensors")
    assert ternary.accuracy == m["ternary"]["test_accuracy"]
    assert fp32.accuracy == m["fp32"]["test_accuracy"]
    assert ternary.samples == m["splits"]["test"] == 359
    assert ternary.accuracy > 0.85           # three epochs are plenty for a sanity bound


def test_eval_and_predict_commands(mlp_run: Path, tmp_path: Path, capsys):
    assert main(["eval", str(mlp_run / "model.safetensors"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    m = json.loads((mlp_run / "metrics.json").read_text())
    assert got["accuracy"] == m["ternary"]["test_accuracy"]

    from sklearn.datasets import load_digits
    d = load_digits()
    np.save(tmp_path / "x.npy", d.data[:8])
    np.savetxt(tmp_path / "x.csv", d.data[:8], delimiter=",", header="a" * 3, comments="")
    for name in ("x.npy", "x.csv"):
        assert main(["predict", str(mlp_run / "model.safetensors"), str(tmp_path / name),
                     "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(rows) == 8
        assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 for r in rows)
        assert sum(r["class"] == t for r, t in zip(rows, d.target[:8])) >= 6
    np.save(tmp_path / "one.npy", d.data[0])          # a single sample
    assert main(["predict", str(mlp_run / "model.safetensors"), str(tmp_path / "one.npy")]) == 0
    assert capsys.readouterr().out.startswith("0: class ")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_torchscript_and_safetensors_match(mlp_run: Path, tmp_path: Path):
    ckpt = mlp_run / "model.safetensors"
    model, _ = load_for_eval(ckpt)
    x = torch.randn(5, 64)
    with torch.no_grad():
        ref = model(x)
    assert main(["export", str(ckpt), "--format", "torchscript", "-o", str(tmp_path / "m.pt")]) == 0
    ts = torch.jit.load(str(tmp_path / "m.pt"))
    torch.testing.assert_close(ts(x), ref, atol=1e-4, rtol=1e-4)
    assert main(["export", str(ckpt), "--format", "safetensors",
                 "-o", str(tmp_path / "m.safetensors")]) == 0
    import safetensors.torch
    state = safetensors.torch.load_file(str(tmp_path / "m.safetensors"))
    w = state["fc1.weight"]
    scale = w.abs().max()
    assert set((w / scale).round().unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_export_onnx_runs_in_onnxruntime(mlp_run: Path, tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    ckpt = mlp_run / "model.safetensors"
    assert main(["export", str(ckpt), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    model, info = load_for_eval(ckpt)
    x = torch.rand(7, 1, 8, 8) * 16      # raw digits: the graph normalizes them
    with torch.no_grad():
        ref = model(model_inputs(x.numpy(), Normalization(*info.normalization),
                                 info.input_shape)).numpy()
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_lenet5_trains_and_freezes_through_the_same_command(tmp_path: Path):
    out = tmp_path / "lenet"
    assert train(LENET, "--epochs", "1", "--no-baseline", "--out", str(out)) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["input_shape"] == [1, 32, 32]
    assert "fp32" not in m and not (out / "fp32.safetensors").exists()
    model, _ = load_for_eval(out / "model.safetensors")
    kinds = {type(layer).__name__ for _, layer in tritium_layers(model) if layer.frozen}
    assert kinds == {"TernaryConv2d", "TernaryLinear"}
    assert evaluate_checkpoint(out / "model.safetensors").accuracy == m["ternary"]["test_accuracy"]
    assert m["ternary"]["test_accuracy"] > 0.3      # one epoch of a CNN: well above chance
    try:
        import onnxruntime as ort
    except ImportError:
        return
    assert main(["export", str(out / "model.safetensors"), "--format", "onnx",
                 "-o", str(tmp_path / "lenet.onnx")]) == 0
    info = load_for_eval(out / "model.safetensors")[1]
    x = torch.rand(3, 1, 8, 8) * 16      # raw digits: the graph normalizes and resizes them
    with torch.no_grad():
        ref = model(model_inputs(x.numpy(), Normalization(*info.normalization),
                                 info.input_shape)).numpy()
    sess = ort.InferenceSession(str(tmp_path / "lenet.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], ref, atol=1e-4, rtol=1e-4)


def test_seeded_runs_are_reproducible_and_resume_matches(tmp_path: Path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    common = ["--no-baseline", "--seed", "3"]
    assert train(MLP, "--epochs", "2", "--out", str(a), *common) == 0
    assert train(MLP, "--epochs", "2", "--out", str(b), *common) == 0
    assert _history(a) == _history(b)
    # one epoch, then resume to two: the same weights as the uninterrupted run
    assert train(MLP, "--epochs", "1", "--out", str(c), *common) == 0
    assert train(MLP, "--epochs", "2", "--out", str(c), "--resume", *common) == 0
    assert _history(c) == _history(a)
    import safetensors.torch
    sa = safetensors.torch.load_file(str(a / "train_state.safetensors"))
    sc = safetensors.torch.load_file(str(c / "train_state.safetensors"))
    assert sa.keys() == sc.keys()
    for k in sa:
        assert torch.equal(sa[k], sc[k]), k
    d = tmp_path / "d"
    assert train(MLP, "--epochs", "2", "--out", str(d), "--no-baseline", "--seed", "4") == 0
    assert _history(d) != _history(a)


def test_missing_dataset_says_which_files_go_where(tmp_path: Path, capsys):
    assert train(MLP, "--data", "mnist", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in err
    assert str(tmp_path / "mnist") in err
    assert "Traceback" not in err
    assert train(MLP, "--data", "cifar10", "--data-dir", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "data_batch_1.bin" in err and "cifar-10-batches-bin" in err
    assert not (tmp_path / "o").exists()


def test_bad_inputs_are_errors_not_tracebacks(tmp_path: Path, mlp_run: Path, capsys):
    assert main(["train", str(tmp_path / "nope.tri")]) == 2
    assert main(["eval", str(tmp_path / "nope.safetensors")]) == 2
    bad = tmp_path / "bad.safetensors"
    data = bytearray((mlp_run / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert main(["eval", str(bad)]) == 1
    assert main(["predict", str(mlp_run / "model.safetensors"), str(tmp_path / "x.txt")]) == 2
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5), dtype=np.float32))
    assert main(["predict", str(mlp_run / "model.safetensors"), str(tmp_path / "wrong.npy")]) == 1
    assert main(["train", MLP, "--data", "nosuch"]) == 2
    assert main(["train", MLP, "--resume", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "corrupted" in err and "no such file" in err
    assert "64 features" in err


@pytest.mark.slow
def test_ctrl_c_leaves_the_last_good_checkpoint(tmp_path: Path):
    out = tmp_path / "run"
    env = {**os.environ, "NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tritium", "train", MLP, "--epochs", "500",
                             "--no-baseline", "--out", str(out), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    state = out / "train_state.safetensors"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and (out / "model.safetensors").exists():
            break
        time.sleep(0.1)
    time.sleep(0.5)      # now in the middle of an epoch or a checkpoint write
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout + stderr
    assert "Traceback" not in stderr
    report = evaluate_checkpoint(out / "model.safetensors")
    assert report.accuracy > 0.5
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # the run resumes from its last finished epoch (here: nothing left to train)
    assert train(MLP, "--epochs", "1", "--no-baseline", "--out", str(out), "--resume") == 0
    assert len(json.loads((out / "metrics.json").read_text())["history"]["ternary"]) >= 1


def test_local_mnist_files_train_lenet_with_resizing(tmp_path: Path, capsys):
    import gzip
    import struct

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)

    def idx(name: str, arr: np.ndarray) -> None:
        head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(
            struct.pack(">I", d) for d in arr.shape)
        (folder / f"{name}.gz").write_bytes(gzip.compress(head + arr.astype(np.uint8).tobytes()))

    # two easy classes: bright top half vs bright bottom half, 28x28
    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 2
        x = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, :14] += 200 * (c == 0)
            x[i, 14:] += 200 * (c == 1)
        return x, y

    xt, yt = images(64)
    xs, ys = images(20)
    idx("train-images-idx3-ubyte", xt)
    idx("train-labels-idx1-ubyte", yt)
    idx("t10k-images-idx3-ubyte", xs)
    idx("t10k-labels-idx1-ubyte", ys)
    out = tmp_path / "run"
    assert train(LENET, "--data", "mnist", "--data-dir", str(tmp_path / "data"), "--epochs", "2",
                 "--no-baseline", "--out", str(out)) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "mnist" and m["splits"]["test"] == 20
    assert main(["eval", str(out / "model.safetensors"), "--data-dir", str(tmp_path / "data"),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert got["accuracy"] == m["ternary"]["test_accuracy"]
    # the MLP declares 64 inputs: 28x28 images cannot be flattened into it
    assert train(MLP, "--data", "mnist", "--data-dir", str(tmp_path / "data"), "--out",
                 str(tmp_path / "mlp")) == 1
    assert "64 features" in capsys.readouterr().err


def test_a_mirroring_augmentation_on_digits_is_warned_about(tmp_path: Path, capsys):
    out = tmp_path / "flip"
    assert train(MLP, "--epochs", "1", "--no-baseline", "--augment", "horizontal_flip",
                 "--out", str(out)) == 0
    printed = capsys.readouterr().out
    first = printed.splitlines()[0]
    assert first.startswith("warning:") and "mirrored digit" in first   # before training
    m = json.loads((out / "metrics.json").read_text())
    assert any("horizontal_flip" in w for w in m["warnings"])
