"""`tritium export --format onnx|onnx-packed`: graphs that take raw samples, carry their
metadata, keep the weights ternary (packed) and agree with `tritium predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.cli import main
from tritium.data import load_dataset
from tritium.driver.evaluate import load_for_eval, predict
from tritium.driver.export import (
    NBITS_BLOCK_SIZES,
    NBitsTernaryLinear,
    PackedTernaryWeight,
    Preprocess,
    pack_codes,
    unpack_codes,
)

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--no-progress", "--latency-runs", "5"]


@pytest.fixture(scope="module", params=["mlp", "lenet5"])
def run(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(request.param)
    epochs = "3" if request.param == "mlp" else "1"
    assert main(["train", str(ROOT / "examples" / f"{request.param}.tri"), "--epochs", epochs,
                 "--out", str(out), *FAST]) == 0
    return out


def _export(ckpt: Path, fmt: str, out: Path) -> Path:
    """`fmt` is an export format, or `onnx-nbits` for `onnx-packed --matmul-nbits`."""
    args = ["--format", "onnx-packed", "--matmul-nbits"] if fmt == "onnx-nbits" \
        else ["--format", fmt]
    assert main(["export", str(ckpt), *args, "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("fmt", ["onnx", "onnx-packed", "onnx-nbits"])
def test_onnx_on_raw_samples_agrees_with_predict(run: Path, tmp_path: Path, fmt: str):
    ckpt = run / "model.safetensors"
    path = _export(ckpt, fmt, tmp_path / "m.onnx")
    ds = load_dataset("digits")
    model, info = load_for_eval(ckpt)
    want = predict(model, info, ds.x_test).argmax(-1).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"x": ds.x_test.astype(np.float32)})   # raw: no preprocessing
    agree = float((logits.argmax(-1) == want).mean())
    assert agree >= 0.999, f"{fmt}: onnxruntime agrees with predict on {agree:.4f}"
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["tritium.labels"]) == [str(i) for i in range(10)]
    norm = json.loads(meta["tritium.normalization"])
    assert (norm["mean"], norm["std"]) == pytest.approx(info.normalization)
    assert json.loads(meta["tritium.input_shape"]) == ["batch", 1, 8, 8]
    assert meta["tritium.version"] and meta["tritium.model"] == info.entry
    ops = {n.op_type for n in proto.graph.node}
    if info.input_shape == [1, 32, 32]:
        assert "Resize" in ops                      # 8x8 -> 32x32 in the graph
    if fmt != "onnx":
        floats = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
        codes = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.UINT8
                 and i.name.endswith(".packed")]
        assert codes, "no packed ternary initializer"
        # every float initializer is a scale or a bias: no weight matrix is stored as floats
        # (MatMulNBits: one scale per block, [n, blocks], the same for every block of a row)
        by_name = {i.name: onnx.numpy_helper.to_array(i) for i in floats}
        for name, value in by_name.items():
            if name.endswith(".scales"):
                assert fmt == "onnx-nbits" and (value == value[:, :1]).all(), name
            else:
                assert value.ndim <= 1 or value.shape[1:] == (1,) * (value.ndim - 1) \
                    or name.endswith("bias"), name
    if fmt == "onnx-packed":
        assert {"BitShift", "BitwiseAnd"} <= ops
    if fmt == "onnx-nbits":
        nbits = [n for n in proto.graph.node if n.op_type == "MatMulNBits"]
        # every linear layer of both models is ternary and plain: all of them are MatMulNBits
        linears = 2 if info.input_shape == [64] else 3
        assert len(nbits) == linears and all(n.domain == "com.microsoft" for n in nbits)
        for node in nbits:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["bits"] == 2 and attrs["block_size"] in (16, 32, 64, 128, 256)
        assert meta["tritium.weights"].startswith("ternary: linear layers as com.microsoft")
        assert ("BitShift" in ops) == (info.input_shape == [1, 32, 32])   # LeNet's convs


def test_packed_onnx_is_smaller_than_the_fp32_checkpoint(run: Path, tmp_path: Path):
    packed = _export(run / "model.safetensors", "onnx-packed", tmp_path / "p.onnx")
    nbits = _export(run / "model.safetensors", "onnx-nbits", tmp_path / "n.onnx")
    plain = _export(run / "model.safetensors", "onnx", tmp_path / "f.onnx")
    fp32 = run / "fp32.safetensors"
    assert packed.stat().st_size < fp32.stat().st_size
    assert packed.stat().st_size < plain.stat().st_size
    # no unpacking subgraph per linear layer: smaller still
    assert nbits.stat().st_size < packed.stat().st_size


def test_matmul_nbits_needs_the_packed_format(run: Path, tmp_path: Path, capsys):
    assert main(["export", str(run / "model.safetensors"), "--format", "onnx",
                 "--matmul-nbits", "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "--matmul-nbits applies to --format onnx-packed" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_fp32_checkpoint_cannot_be_exported_packed(run: Path, tmp_path: Path, capsys):
    assert main(["export", str(run / "fp32.safetensors"), "--format", "onnx-packed",
                 "-o", str(tmp_path / "x.onnx")]) != 0
    assert "needs a ternary checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_an_fp32_export_is_not_described_as_ternary(run: Path, tmp_path: Path, capsys,
                                                      fmt: str):
    """The fp32 checkpoint's export said `float weights trits*scale`, `the unpacked ternary
    model`, and its file recorded ternary weights as trits * scale."""
    capsys.readouterr()
    out = _export(run / "fp32.safetensors", fmt, tmp_path / f"x.{fmt}")
    said = capsys.readouterr().out
    assert "fp32 model" in said and "trits" not in said and "ternary" not in said
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert "trits" not in meta["tritium.weights"]
    else:
        from safetensors import safe_open
        with safe_open(str(out), "pt") as fh:
            assert "trits" not in fh.metadata()["tritium.export"]


def test_the_onnx_metadata_names_the_data_not_where_it_was():
    from tritium.driver.export import onnx_metadata
    from tritium.driver.models import RunInfo

    info = RunInfo(source="", file="m.tri", entry="M", dataset="/home/someone/data/cells.npz",
                   input_shape=[4], num_classes=3)
    assert onnx_metadata(info, [4], packed=False)["tritium.dataset"] == "cells"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=67))
def test_codes_round_trip(trits: list[int]):
    t = torch.tensor(trits, dtype=torch.int8)
    packed = pack_codes(t)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-len(trits) // 4)
    back = unpack_codes(packed, torch.tensor([0, 2, 4, 6], dtype=torch.uint8), len(trits))
    assert back.tolist() == [float(v) for v in trits]


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 9), st.integers(1, 13), st.booleans(), st.integers(0, 2 ** 31))
def test_packed_weight_is_trits_times_scale(n: int, k: int, per_channel: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    trits = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
    scale = torch.rand(n if per_channel else 1, generator=g) + 0.1
    w = PackedTernaryWeight(trits, scale)()
    torch.testing.assert_close(w, trits.float() * scale.reshape(-1, 1).expand(n, 1))


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 9), st.integers(1, 300), st.booleans(), st.booleans(),
       st.sampled_from([(3,), (2, 5)]), st.integers(0, 2 ** 31))
def test_matmul_nbits_layer_runs_in_onnxruntime_as_trits_times_scale(
        n: int, k: int, per_channel: bool, bias: bool, lead: tuple[int, ...], seed: int):
    """Any shape (K not a multiple of the block, 2-D and 3-D inputs): the exported node
    computes ``x (trits * scale)^T + b`` in onnxruntime, and the blob holds 2 bits a weight."""
    import io
    import warnings
    g = torch.Generator().manual_seed(seed)
    trits = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
    scale = torch.rand(n if per_channel else 1, generator=g) + 0.1
    b = torch.randn(n, generator=g) if bias else None
    layer = NBitsTernaryLinear(trits, scale, b).eval()
    assert layer.block_size in NBITS_BLOCK_SIZES
    assert layer.packed.dtype == torch.uint8 and layer.packed.shape == (
        n, -(-k // layer.block_size), layer.block_size // 4)
    x = torch.randn(*lead, k, generator=g)
    want = x @ (trits.float() * scale.reshape(-1, 1)).T + (0 if b is None else b)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # the TorchScript exporter's deprecation
        torch.onnx.export(layer, (x,), buf, dynamo=False, input_names=["x"],
                          opset_version=18, custom_opsets={"com.microsoft": 1})
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([[64], [1, 8, 8], [8, 8], [3, 8, 8]]),
       st.sampled_from([[64], [1, 32, 32], [3, 16, 16], [1, 8, 8]]),
       st.floats(-5, 5), st.floats(0.1, 10))
def test_preprocess_matches_model_inputs(raw: list[int], model: list[int], mean: float,
                                         std: float):
    from tritium.data import DatasetError, Normalization
    from tritium.driver.export import ExportShapeError
    from tritium.driver.train import model_inputs

    x = np.random.default_rng(0).random((3, *raw), dtype=np.float32) * 16
    try:
        want = model_inputs(x, Normalization(mean, std), model)
    except DatasetError:
        with pytest.raises(ExportShapeError):
            Preprocess(mean, std, raw, model)
        return
    got = Preprocess(mean, std, raw, model)(torch.as_tensor(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
