"""From existing PyTorch code to `tritium eval/predict/export`, and QAT from fp32 weights.

A torchvision-style ResNet written in plain PyTorch (a user's module in a temporary
directory) is ternarized, trained briefly on the digits, frozen and saved with a Python
entry point; the CLI rebuilds it only when told to trust that entry point, and its ONNX
exports (float and packed) agree with `tritium predict` on the raw test samples. `tritium train
--init` starts from the fp32 weights an earlier run wrote; `--fp32-layers` keeps layers in
full precision.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

import tritium
from tritium.cli import main
from tritium.data import Normalization, load_dataset
from tritium.driver.models import build_model, model_from_checkpoint
from tritium.driver.train import TrainError, init_from_fp32, model_inputs
from tritium.runtime import freeze_model, read_checkpoint_metadata, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.tri")
FAST = ["--no-progress", "--latency-runs", "2", "-q"]
MODULE = "tritium_e2e_user_resnet"

USER_CODE = '''
import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build(num_classes=10, width=8):
    return ResNet(num_classes, width)
'''

EVIL_CODE = '''
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("the checkpoint's code ran")
from tritium_e2e_user_resnet import build
'''


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """The user's directory: their module, and a ternarized ResNet trained on the digits and
    saved with its entry point (and once more naming another module)."""
    work = tmp_path_factory.mktemp("user")
    (work / f"{MODULE}.py").write_text(USER_CODE)
    (work / "tritium_e2e_evil.py").write_text(EVIL_CODE)
    sys.path.insert(0, str(work))
    try:
        module = __import__(MODULE)
    finally:
        sys.path.remove(str(work))
    torch.manual_seed(0)
    model = module.build(num_classes=10, width=8)
    model, report = tritium.ternarize(model)
    assert len(report.replaced) == 5 and set(report.kept) == {"conv1", "fc"}
    ds = load_dataset("digits")
    norm = Normalization.fit(ds.x_train)
    x = model_inputs(ds.x_train, norm, [1, 8, 8])
    y = torch.as_tensor(ds.y_train).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        for i in range(0, len(y), 64):
            loss = F.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    freeze_model(model.eval())
    run = {"dataset": "digits", "input_shape": [1, 8, 8],
           "normalization": (norm.mean, norm.std), "num_classes": 10}
    ckpt = work / "resnet.safetensors"
    save_checkpoint(model, ckpt, entry_point=f"{MODULE}:build",
                    entry_kwargs={"num_classes": 10, "width": 8}, **run)
    save_checkpoint(model, work / "evil.safetensors", entry_point="tritium_e2e_evil:build",
                    **run)
    save_checkpoint(model, work / "plain.safetensors", **run)
    x_test = model_inputs(ds.x_test, norm, [1, 8, 8])
    with torch.no_grad():
        acc = float((model(x_test).argmax(1) == torch.as_tensor(ds.y_test)).float().mean())
    yield {"work": work, "ckpt": ckpt, "acc": acc, "x_raw": ds.x_test}
    sys.modules.pop(MODULE, None)


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_checkpoint_names_its_code_but_the_cli_runs_it_only_when_trusted(
        user_run, monkeypatch, capsys):
    work = user_run["work"]
    monkeypatch.chdir(work)
    meta = read_checkpoint_metadata(user_run["ckpt"])
    assert meta.extra["tritium.python_entry"] == f"{MODULE}:build"
    assert json.loads(meta.extra["tritium.python_kwargs"]) == {"num_classes": 10, "width": 8}
    assert len(meta.folds) == 5             # every block conv with its batch norm
    code, _, err = _cli(capsys, "eval", "evil.safetensors")
    assert code == 1 and "--trust-entry-point" in err and "Traceback" not in err
    assert not (work / "IMPORTED").exists()          # nothing was imported
    np.save(work / "x.npy", user_run["x_raw"][:3])
    code, _, err = _cli(capsys, "predict", "evil.safetensors", "x.npy")
    assert code == 1 and "--trust-entry-point" in err
    code, _, err = _cli(capsys, "export", "evil.safetensors", "--format", "onnx", "-o",
                        "evil.onnx")
    assert code == 1 and "--trust-entry-point" in err
    assert not (work / "IMPORTED").exists() and not (work / "evil.onnx").exists()
    code, _, _ = _cli(capsys, "eval", "evil.safetensors", "--trust-entry-point", "--json")
    assert code == 0 and (work / "IMPORTED").exists()


def test_eval_predict_and_export_rebuild_the_model_from_its_entry_point(
        user_run, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(user_run["work"])
    code, out, err = _cli(capsys, "eval", "resnet.safetensors", "--trust-entry-point", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == len(user_run["x_raw"]) and report["model"] == f"{MODULE}:build"
    assert report["accuracy"] == pytest.approx(user_run["acc"], abs=0.01), user_run["acc"]
    assert report["accuracy"] > 0.5        # three epochs from scratch; chance is 0.1
    # --entry-point names the code for a checkpoint that records none
    code, out, err = _cli(capsys, "eval", "plain.safetensors", "--entry-point",
                          f"{MODULE}:build", "--json")
    assert code == 0, err
    # (that checkpoint still holds the ternarize record: the plain ResNet the entry point
    # builds is converted again before the packed weights load)
    assert json.loads(out)["accuracy"] == report["accuracy"]
    # predict: raw samples, the stored normalization applied
    np.save(tmp_path / "x.npy", user_run["x_raw"][:20])
    code, out, err = _cli(capsys, "predict", "resnet.safetensors", str(tmp_path / "x.npy"),
                          "--trust-entry-point", "--json")
    assert code == 0, err
    model, info = model_from_checkpoint(user_run["ckpt"], trust_entry_point=True)
    x = model_inputs(user_run["x_raw"][:20], Normalization(*info.normalization), [1, 8, 8])
    with torch.no_grad():
        want = model(x).argmax(1).tolist()
    assert [json.loads(line)["class"] for line in out.splitlines()] == want
    # export through the existing path
    onnx_path = tmp_path / "resnet.onnx"
    code, out, err = _cli(capsys, "export", "resnet.safetensors", "--format", "onnx", "-o",
                          str(onnx_path), "--trust-entry-point")
    assert code == 0, err
    diff = float(out.rsplit(":", 1)[1])
    assert diff < 1e-3
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 3 for d in sess.get_inputs()[0].shape]
    y = sess.run(None, {sess.get_inputs()[0].name: np.random.rand(*shape).astype(np.float32)})
    assert y[0].shape == (3, 10) and np.isfinite(y[0]).all()


def test_onnx_exports_of_the_resnet_agree_with_predict_on_raw_samples(
        user_run, monkeypatch, capsys, tmp_path):
    """The issue's done-when for a model written in plain PyTorch: onnxruntime on raw test
    samples agrees with `tritium predict` on >= 99.9% of them (both ONNX variants), and the
    packed ONNX file is smaller than the fp32 model's checkpoint."""
    import onnx
    import onnxruntime as ort
    monkeypatch.chdir(user_run["work"])
    x_raw = user_run["x_raw"].astype(np.float32)
    np.save(tmp_path / "test.npy", x_raw)
    code, out, err = _cli(capsys, "predict", "resnet.safetensors", str(tmp_path / "test.npy"),
                          "--trust-entry-point", "--json", "--top", "1")
    assert code == 0, err
    want = np.array([json.loads(line)["class"] for line in out.splitlines()])
    assert len(want) == len(x_raw)
    sizes = {}
    for fmt in ("onnx", "onnx-packed"):
        path = tmp_path / f"{fmt}.onnx"
        code, out, err = _cli(capsys, "export", "resnet.safetensors", "--format", fmt, "-o",
                              str(path), "--trust-entry-point")
        assert code == 0, err
        assert "raw samples" in out
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = sess.run(None, {"x": x_raw})          # raw: no preprocessing
        agree = float((logits.argmax(-1) == want).mean())
        assert agree >= 0.999, f"{fmt}: onnxruntime agrees with predict on {agree:.4f}"
        sizes[fmt] = path.stat().st_size
    proto = onnx.load(str(tmp_path / "onnx-packed.onnx"))
    assert {"BitShift", "BitwiseAnd"} <= {n.op_type for n in proto.graph.node}
    # the fp32 checkpoint of the same architecture, as a user saves it
    import importlib
    fp32 = tmp_path / "fp32.safetensors"
    plain = importlib.import_module(MODULE).build(num_classes=10, width=8)
    safetensors.torch.save_file(plain.state_dict(), str(fp32))
    assert sizes["onnx-packed"] < fp32.stat().st_size, (sizes, fp32.stat().st_size)
    assert sizes["onnx-packed"] < sizes["onnx"]


def test_a_bad_entry_point_is_one_clear_line(user_run, monkeypatch, capsys):
    monkeypatch.chdir(user_run["work"])
    for argv, text in (
            (["--entry-point", "no colon"], "not an entry point"),
            (["--entry-point", "tritium_e2e_missing_module:build"], "cannot import"),
            (["--entry-point", f"{MODULE}:nothing"], "has no attribute"),
            (["--entry-point", f"{MODULE}:BasicBlock"], "calling the entry point")):
        code, _, err = _cli(capsys, "eval", "resnet.safetensors", *argv)
        assert code in (1, 2) and text in err and "Traceback" not in err, err


# ----------------------------------------------------------------------------- --init

@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp32run")
    assert main(["train", MLP, "--epochs", "1", "--out", str(out), *FAST]) == 0
    return out


def test_init_starts_the_ternary_latent_weights_at_the_fp32_weights(fp32_run, tmp_path):
    fp32 = safetensors.torch.load_file(str(fp32_run / "fp32.safetensors"))
    built = build_model(MLP)
    init_from_fp32(built.model, fp32_run / "fp32.safetensors")
    state = built.model.state_dict()
    assert set(state) == set(fp32)
    for k, v in fp32.items():
        assert torch.equal(state[k], v.to(state[k].dtype)), k
    # a plain torch state_dict saved with safetensors works the same
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file(fp32, str(plain))
    again = build_model(MLP)
    init_from_fp32(again.model, plain)
    assert torch.equal(again.model.fc1.weight, built.model.fc1.weight)


def test_init_refuses_weights_that_do_not_fit(fp32_run, tmp_path):
    other = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"fc1.weight": torch.zeros(3, 64), "head.bias": torch.zeros(3)},
                                str(other))
    with pytest.raises(TrainError) as exc:
        init_from_fp32(build_model(MLP).model, other)
    msg = exc.value.message
    assert "missing from the file: fc1.bias" in msg and "not in the model: head.bias" in msg
    assert "fc1.weight is [3, 64] float32 in the file, [128, 64] float32 in the model" in msg
    with pytest.raises(TrainError, match="frozen ternary checkpoint"):
        init_from_fp32(build_model(MLP).model, fp32_run / "model.safetensors")
    pickle = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(1)}, pickle)
    with pytest.raises(TrainError, match="a pickle file"):
        init_from_fp32(build_model(MLP).model, pickle)


def test_train_init_with_fp32_layers_end_to_end(fp32_run, tmp_path, capsys):
    out = tmp_path / "qat"
    code = main(["train", MLP, "--epochs", "1", "--out", str(out), "--no-baseline",
                 "--init", str(fp32_run / "fp32.safetensors"), "--fp32-layers", "last", *FAST])
    assert code == 0, capsys.readouterr().err
    meta = read_checkpoint_metadata(out / "model.safetensors")
    assert json.loads(meta.extra["tritium.fp32_layers"]) == ["fc2"]
    assert meta.tensors["fc2.weight"].layer_kind == "FloatLinear"
    assert meta.tensors["fc1.weight_packed"].packing_format == "t2"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init"] == str(fp32_run / "fp32.safetensors")
    assert metrics["ternary"]["test_accuracy"] > 0.8
    capsys.readouterr()
    code, text, err = _cli(capsys, "eval", str(out / "model.safetensors"), "--json")
    assert code == 0, err
    assert json.loads(text)["accuracy"] == pytest.approx(metrics["ternary"]["test_accuracy"])
    # resuming with other fp32 layers is refused
    code, _, err = _cli(capsys, "train", MLP, "--epochs", "2", "--out", str(out),
                        "--no-baseline", "--resume", *FAST)
    assert code == 1 and "kept other layers in fp32" in err


def test_fp32_layers_errors(tmp_path, capsys):
    for words, text in ((["first,last"], "no ternary layers"),
                        (["nope"], "'nope' names no ternary layer"),
                        (["fc1,{x}"], "not `first`, `last`")):
        code, _, err = _cli(capsys, "train", MLP, "--epochs", "1", "--out",
                            str(tmp_path / "r"), "--fp32-layers", *words, *FAST)
        assert code in (1, 2) and text in err, err
        assert not (tmp_path / "r").exists()
