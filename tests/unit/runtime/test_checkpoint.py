"""Checkpoints: round trips, metadata, validation of every corruption case, size on disk."""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

import tritium
from tritium.runtime.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from tritium.runtime.checkpoint_format import _pack_v3, _unpack_v3, _v4_blob, _v4_header
from tritium.runtime.layers import (
    BitLinear,
    Int4Linear,
    Int8Linear,
    TernaryConv2d,
    TernaryLinear,
    freeze_model,
)
from tritium.runtime.packing import FORMAT_VERSION, packed_row_bytes

# runs once per ISA path of this CPU (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("every_isa")


class Net(nn.Module):
    """A small mixed model: ternary conv + BN, ternary/int8/int4/BitNet linears."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = TernaryConv2d(1, 4, 3, padding=1, bias=False, per_channel=True)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = TernaryLinear(64, 32, quantizer="absmean")
        self.fc2 = Int8Linear(32, 16)
        self.fc3 = Int4Linear(16, 12, group_size=8)
        self.head = BitLinear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = nn.functional.avg_pool2d(h, 2).flatten(1)
        return self.head(torch.relu(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(h)))))))


def _trained_net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    net = Net()
    net.train()
    net(torch.randn(8, 1, 8, 8))  # move the BatchNorm running statistics off their defaults
    return net.eval()


X = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(42))


def test_unfrozen_roundtrip_and_metadata(tmp_path: Path) -> None:
    net = _trained_net()
    path = tmp_path / "net.safetensors"
    meta = save_checkpoint(path, net, source_hash="abc123", extra={"epochs": "3"})
    assert not meta.frozen
    fresh = _trained_net(seed=1)
    state, loaded = load_checkpoint(path, fresh)
    assert set(state) == set(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), net(X))
    assert loaded.checkpoint_version == CHECKPOINT_VERSION
    assert loaded.tritium_version == tritium.__version__
    assert loaded.packing_version == FORMAT_VERSION
    assert loaded.source_hash == "abc123"
    assert loaded.extra == {"epochs": "3"}
    info = loaded.tensors["fc1.weight"]
    assert (info.layer_kind, info.logical_shape, info.packing_format, info.quantizer) == (
        "TernaryLinear",
        (32, 64),
        "none",
        "absmean",
    )
    assert loaded.tensors["bn.running_mean"].layer_kind == "BatchNorm2d"
    assert loaded.tensors["bn.running_mean"].quantizer == "none"
    assert loaded == meta
    # no temp files left behind by the atomic write
    assert os.listdir(tmp_path) == ["net.safetensors"]


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_frozen_roundtrip_into_unfrozen_model(tmp_path: Path, fmt: str) -> None:
    net = freeze_model(_trained_net(), fmt)
    path = tmp_path / "frozen.safetensors"
    save_checkpoint(path, net)
    state, meta = load_checkpoint(path)
    assert meta.frozen and meta.packing_formats == {fmt, "int8", "int4"}
    # only packed data, scales, biases and BatchNorm state are stored
    for name, tensor in state.items():
        leaf = name.rsplit(".", 1)[1]
        assert leaf in {"weight_packed", "weight_int8", "weight_scale", "bias"} or name.startswith(
            "bn."
        ), name
        if leaf == "weight_packed":
            assert tensor.dtype == torch.uint8
    info = meta.tensors["conv.weight_packed"]
    assert info.logical_shape == (4, 1, 3, 3) and info.packing_format == fmt
    assert state["conv.weight_packed"].shape == (4, packed_row_bytes(9, fmt))
    assert meta.tensors["fc2.weight_int8"].packing_format == "int8"
    assert meta.tensors["fc3.weight_packed"].logical_shape == (12, 16)
    assert meta.tensors["head.weight_packed"].quantizer == "absmean"
    # a fresh, unfrozen model becomes a frozen skeleton and then holds the same weights
    fresh = _trained_net(seed=5)
    load_checkpoint(path, fresh)
    assert fresh.fc1.frozen and fresh.fc1.format == fmt and fresh.fc3.frozen
    # ternary scales and biases went through float16 (relative error <= 2**-11 each)
    assert meta.float16 == {"conv.weight_scale", "fc1.weight_scale", "fc1.bias",
                            "head.weight_scale"}
    assert all(state[n].dtype == torch.float32 for n in meta.float16)
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), net(X), rtol=5e-3, atol=5e-3)
    # and loading into an already frozen skeleton of the right format works too, exactly
    # when the scales are kept in float32
    save_checkpoint(path, net, float16_scales=False)
    assert not read_checkpoint_metadata(path).float16
    skeleton = freeze_model(Net(), fmt).eval()
    load_checkpoint(path, skeleton)
    with torch.no_grad():
        torch.testing.assert_close(skeleton(X), net(X), rtol=0, atol=0)


def test_file_is_plain_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, freeze_model(_trained_net()))
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert header["__metadata__"]["tritium.checkpoint_version"] == str(CHECKPOINT_VERSION)
    assert not raw.startswith(b"PK") and b"\x80\x02" not in raw[:16]  # not a zip/pickle
    plain = safetensors.torch.load_file(str(path))
    assert set(plain) == set(read_checkpoint_metadata(path).tensors)


# --- corruption -------------------------------------------------------------------------


def _as_v3(header: dict) -> None:
    """Rewrite a version 4 header as the version 3 one of the same checkpoint (one
    deflate+base85 ``tritium`` key), the tensor data untouched."""
    blob = _v4_blob(header["__metadata__"])
    header["__metadata__"] = {"tritium.checkpoint_version": "3", "tritium": _pack_v3(blob)}


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    """A version 3 checkpoint (the corruption tests below edit its compressed field)."""
    path = tmp_path / "good.safetensors"
    save_checkpoint(path, freeze_model(_trained_net()), source_hash="h")
    _rewrite_header(path, _as_v3)
    assert read_checkpoint_metadata(path).checkpoint_version == 3
    return path


@pytest.fixture()
def good4(tmp_path: Path) -> Path:
    path = tmp_path / "good4.safetensors"
    save_checkpoint(path, freeze_model(_trained_net()), source_hash="h",
                    extra={"tritium.source": "model M {}", "tritium.normalization": "[0.5, 2.0]"})
    return path


def _rewrite_header(path: Path, edit: Callable[[dict], None]) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    blob = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])


def _edit_blob(change: Callable[[dict], None]) -> Callable[[dict], None]:
    """A header edit that changes the decoded version 3 ``tritium`` metadata."""
    def edit(header: dict) -> None:
        blob = _unpack_v3(header["__metadata__"]["tritium"])
        change(blob)
        header["__metadata__"]["tritium"] = _pack_v3(blob)

    return edit


def _edit_packed(key: str, index: int, value: object) -> Callable[[dict], None]:
    return _edit_blob(lambda b: b["t"][key].__setitem__(index, value))


def _expect_error(path: Path, *fragments: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    err = info.value
    assert isinstance(err, ValueError)
    msg = str(err)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return err


def test_random_bytes(good: Path) -> None:
    good.write_bytes(os.urandom(4096))
    _expect_error(good)


def test_random_bytes_with_plausible_prefix(good: Path) -> None:
    good.write_bytes(struct.pack("<Q", 100) + os.urandom(200))
    _expect_error(good, "header is not valid JSON")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated(good: Path, keep: float) -> None:
    raw = good.read_bytes()
    good.write_bytes(raw[: int(len(raw) * keep)])
    _expect_error(good, "truncated")


def test_truncated_inside_header(good: Path) -> None:
    good.write_bytes(good.read_bytes()[:100])
    _expect_error(good, "truncated")


def test_empty_and_tiny_files(good: Path) -> None:
    good.write_bytes(b"")
    _expect_error(good, "too short")
    good.write_bytes(b"\x01\x02\x03")
    _expect_error(good, "too short")


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "absent.safetensors", "no such file")


def test_trailing_garbage(good: Path) -> None:
    good.write_bytes(good.read_bytes() + b"junk")
    _expect_error(good, "trailing")


def test_flipped_data_byte(good: Path) -> None:
    raw = bytearray(good.read_bytes())
    raw[-3] ^= 0xFF
    good.write_bytes(bytes(raw))
    _expect_error(good, "digest", "corrupted")


def test_header_edited_version(good: Path) -> None:
    _rewrite_header(good, lambda h: h["__metadata__"].update({"tritium.checkpoint_version": "9"}))
    _expect_error(good, "version 9", "reads versions 1, 2, 3")


def test_header_edited_packing_version(good: Path) -> None:
    _rewrite_header(good, _edit_blob(lambda b: b.update(p=7)))
    _expect_error(good, "packing version 7")


def test_header_edited_unknown_format(good: Path) -> None:
    _rewrite_header(good, _edit_packed("fc1.weight_packed", 0, "t3"))
    _expect_error(good, "fc1.weight_packed", "unknown packing format 't3'")


def test_header_edited_logical_shape(good: Path) -> None:
    _rewrite_header(good, _edit_packed("fc1.weight_packed", 1, [32, 400]))
    _expect_error(good, "fc1.weight_packed", "implies")


def test_header_edited_tensor_shape(good: Path) -> None:
    def edit(header: dict) -> None:
        header["bn.weight"]["shape"] = [5]

    _rewrite_header(good, edit)
    _expect_error(good, "bn.weight", "needs 20 bytes")


def test_header_edited_offsets(good: Path) -> None:
    def edit(header: dict) -> None:
        start, end = header["bn.bias"]["data_offsets"]
        header["bn.bias"]["data_offsets"] = [start + 4, end + 4]

    _rewrite_header(good, edit)
    _expect_error(good)


def test_header_edited_garbage_metadata(good: Path) -> None:
    _rewrite_header(good, lambda h: h["__metadata__"].update({"tritium": "{not json"}))
    _expect_error(good, "metadata is not readable", "damaged")
    _rewrite_header(good, lambda h: h.pop("__metadata__"))
    _expect_error(good, "not a Tritium checkpoint")


def test_header_edited_dtype(good: Path) -> None:
    def edit(header: dict) -> None:
        header["fc1.weight_packed"]["dtype"] = "I8"

    _rewrite_header(good, edit)
    _expect_error(good, "fc1.weight_packed")


def test_plain_safetensors_is_not_a_tritium_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(path))
    _expect_error(path, "not a Tritium checkpoint")


# --- model mismatches -------------------------------------------------------------------


def test_shape_mismatch_against_model(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, nn.Sequential(TernaryLinear(8, 4)))
    with pytest.raises(CheckpointError, match=r"'0.weight'.*expects \(5, 8\)"):
        load_checkpoint(path, nn.Sequential(TernaryLinear(8, 5)))
    # a frozen checkpoint whose packed rows differ from the model's
    save_checkpoint(path, freeze_model(nn.Sequential(TernaryLinear(300, 4))))
    with pytest.raises(CheckpointError, match="0.weight_packed"):
        load_checkpoint(path, nn.Sequential(TernaryLinear(100, 4)))


def test_strict_and_non_strict_keys(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, nn.Sequential(TernaryLinear(8, 4)))
    bigger = nn.Sequential(TernaryLinear(8, 4), nn.Linear(4, 2))
    with pytest.raises(CheckpointError, match="missing from the checkpoint: 1.bias, 1.weight"):
        load_checkpoint(path, bigger)
    load_checkpoint(path, bigger, strict=False)
    with pytest.raises(CheckpointError, match="not in the model: 0.bias"):
        load_checkpoint(path, nn.Sequential(TernaryLinear(8, 4, bias=False)))


def test_frozen_model_cannot_take_float_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, nn.Sequential(TernaryLinear(8, 4)))
    with pytest.raises(CheckpointError, match="is frozen but the checkpoint holds its float"):
        load_checkpoint(path, freeze_model(nn.Sequential(TernaryLinear(8, 4))))
    save_checkpoint(path, freeze_model(nn.Sequential(TernaryLinear(8, 4)), "t1.6"))
    with pytest.raises(CheckpointError, match="frozen as 't2'"):
        load_checkpoint(path, freeze_model(nn.Sequential(TernaryLinear(8, 4)), "t2"))


def test_extra_must_be_strings(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="str to str"):
        save_checkpoint(tmp_path / "x.safetensors", nn.Linear(2, 2), extra={"n": 3})  # type: ignore[dict-item]


# --- size -------------------------------------------------------------------------------


def _torch_save_size(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(buf.getvalue())


def _ratio(tmp_path: Path, model: nn.Module, fmt: str) -> float:
    fp32 = _torch_save_size(model)
    path = tmp_path / f"{fmt}.safetensors"
    save_checkpoint(path, freeze_model(model, fmt))
    return fp32 / path.stat().st_size


def test_checkpoint_at_least_14x_smaller_mlp(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(
        TernaryLinear(256, 512), nn.ReLU(), TernaryLinear(512, 512), nn.ReLU(), TernaryLinear(512, 10)
    )
    assert _ratio(tmp_path, mlp, "t2") >= 14.0


def test_checkpoint_at_least_14x_smaller_convnet(tmp_path: Path) -> None:
    torch.manual_seed(0)

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [TernaryConv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    convnet = nn.Sequential(
        *block(3, 32), *block(32, 64), nn.MaxPool2d(2), *block(64, 128), nn.MaxPool2d(2),
        *block(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), TernaryLinear(128, 10),
    )
    assert _ratio(tmp_path, convnet, "t1.6") >= 14.0


def test_rejected_checkpoint_leaves_model_untouched(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, freeze_model(nn.Sequential(TernaryLinear(300, 4), TernaryLinear(4, 2))))
    model = nn.Sequential(TernaryLinear(300, 4), TernaryLinear(4, 3))
    weight = model[0].weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"'1.bias' has shape \(2,\)"):
        load_checkpoint(path, model)
    assert not model[0].frozen and not model[1].frozen
    assert torch.equal(model[0].weight, weight)


def test_dense_storage_round_trips_and_beats_the_kernel_layout(tmp_path: Path) -> None:
    """Ternary weights are stored at 1.6 bits per trit whatever the in-memory layout pads:
    a 64-wide row costs 32 bytes in t2 (padded to 128 trits) but 13 bytes in the file."""
    from tritium.runtime.checkpoint import decode_dense, encode_dense

    for n in (1, 4, 5, 6, 64 * 7 + 3):
        t = torch.randint(-1, 2, (n,), dtype=torch.int8)
        assert torch.equal(decode_dense(encode_dense(t), n), t)
    model = nn.Sequential(TernaryLinear(64, 128), TernaryLinear(128, 10))
    x = torch.randn(3, 64)
    with torch.no_grad():
        freeze_model(model, "t2")
        ref = model(x)
    path = tmp_path / "dense.safetensors"
    save_checkpoint(path, model, float16_scales=False)
    fresh = nn.Sequential(TernaryLinear(64, 128), TernaryLinear(128, 10))
    load_checkpoint(path, fresh)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), ref, rtol=0, atol=0)
    trit_bytes = -(-(64 * 128) // 5) + -(-(128 * 10) // 5)
    assert path.stat().st_size < trit_bytes + 4 * (128 + 10 + 2) + 4096   # + header


def test_dense_storage_rejects_impossible_bytes(tmp_path: Path) -> None:
    from tritium.runtime.checkpoint import decode_dense

    with pytest.raises(ValueError, match="not five base-3 digits"):
        decode_dense(torch.tensor([243], dtype=torch.uint8), 5)
    with pytest.raises(ValueError, match="padding"):
        decode_dense(torch.tensor([0], dtype=torch.uint8), 1)   # digits 0,0,0,0,0: pad = -1


def test_compressed_metadata_damage_is_a_clear_error(good: Path) -> None:
    _rewrite_header(good, lambda h: h["__metadata__"].update({"tritium": "bm90IHpsaWI="}))
    _expect_error(good, "metadata", "damaged")
    # a valid stream cut short
    def cut(header: dict) -> None:
        header["__metadata__"]["tritium"] = header["__metadata__"]["tritium"][:40]

    raw = good.read_bytes()
    good.write_bytes(raw)
    _rewrite_header(good, cut)
    _expect_error(good, "metadata", "damaged")


def test_v3_metadata_fields_are_checked(good: Path) -> None:
    raw = good.read_bytes()
    for change, fragment in [
        (lambda b: b.pop("d"), "field 'd' is missing"),
        (lambda b: b.update(k=[]), "field 'k' is missing or not a dict"),
        (lambda b: b.update(f16=["nope"]), "not stored: ['nope']"),
        (lambda b: b.update(f16=["bn.weight"]), "'bn.weight' is listed as float16 but stored as F32"),
        (lambda b: b.update(fold={"bn": "x"}), "is not a stored ternary layer"),
        (lambda b: b["t"].update({"fc1.weight_packed": "t2"}), "not a [format, shape] pair"),
    ]:
        good.write_bytes(raw)
        _rewrite_header(good, _edit_blob(change))
        _expect_error(good, fragment)
    good.write_bytes(raw)
    _rewrite_header(good, lambda h: h["__metadata__"].pop("tritium"))
    _expect_error(good, "no 'tritium' metadata key")


# --- older versions and what version 3 stores ---------------------------------------------

DATA = Path(__file__).parent / "data"


class _V2Net(nn.Module):
    """The model of data/v2_frozen.safetensors, written by checkpoint version 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = TernaryConv2d(1, 4, 3, padding=1, bias=False, per_channel=True)
        self.bn = nn.BatchNorm2d(4)
        self.fc = TernaryLinear(64, 10, quantizer="absmean")
        self.bn1 = nn.BatchNorm1d(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = nn.functional.avg_pool2d(h, 2).flatten(1)
        return self.bn1(self.fc(h))


def _v2_forward64(model: _V2Net, x: torch.Tensor, magnitudes: bool) -> torch.Tensor:
    """_V2Net's forward in float64 from its loaded trits, scales and BatchNorm statistics;
    with ``magnitudes``, every input, weight and BatchNorm coefficient by its absolute value
    (the sum of |terms| each output's rounding errors scale with)."""
    f = torch.abs if magnitudes else (lambda t: t)

    def affine(bn: nn.BatchNorm1d | nn.BatchNorm2d, h: torch.Tensor) -> torch.Tensor:
        a = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        b = bn.bias.double() - bn.running_mean.double() * a
        shape = (1, -1) + (1,) * (h.dim() - 2)
        return h * f(a).view(shape) + f(b).view(shape)

    q = model.conv.ternary_weight()
    w = q.trits.double() * q.scale.double().view(-1, 1, 1, 1)
    h = nn.functional.conv2d(f(x.double()), f(w), padding=1)
    h = nn.functional.avg_pool2d(torch.relu(affine(model.bn, h)), 2).flatten(1)
    q = model.fc.ternary_weight()
    w = q.trits.double() * q.scale.double().view(-1, 1)
    return affine(model.bn1, nn.functional.linear(h, f(w), f(model.fc.bias.double())))


def _v2_rounding_bound(model: _V2Net, x: torch.Tensor) -> torch.Tensor:
    """What any float32 evaluation of _V2Net may differ from the exact result by, whatever
    its summation order (ISA path, threads, torch kernels): gamma_n * M, the classic forward
    error bound of a chain of n roundings (gamma_n = n u / (1 - n u), u = 2**-24) over the
    absolute-value forward M (ReLU and average pooling do not enlarge an error). Along each
    output: the 3x3 conv (9 products summed, 1 scale), its BatchNorm (2), the 2x2 average (4),
    the 64-input linear (64, scale and bias 2), its BatchNorm (2): n = 84."""
    n, u = 84, 2.0**-24
    return n * u / (1 - n * u) * _v2_forward64(model, x, magnitudes=True)


def test_version_2_files_are_still_read(tmp_path: Path) -> None:
    path = DATA / "v2_frozen.safetensors"
    meta = read_checkpoint_metadata(path)
    assert meta.checkpoint_version == 2 and meta.source_hash == "v2" and not meta.folds
    assert meta.extra == {"note": "written by checkpoint version 2"}
    model = _V2Net()
    load_checkpoint(path, model)
    io_ = safetensors.torch.load_file(str(DATA / "v2_frozen_io.safetensors"))
    with torch.no_grad():
        y = model.eval()(io_["x"])
    # The fixture's outputs were computed on another machine: this model's fp32-activation
    # kernels sum in an order that depends on the ISA path (AVX-512, AVX2, NEON, scalar, the
    # torch fallback; an AVX2 machine differs from an AVX-512 one by 1 ulp in 9 of the 30),
    # so the outputs agree to float32 rounding, not bit for bit: to the bound any summation
    # order must meet (below). A wrongly read weight, scale or fold changes them by far more.
    bound = _v2_rounding_bound(model, io_["x"])
    exact = _v2_forward64(model, io_["x"], magnitudes=False)
    assert torch.all((y.double() - exact).abs() <= bound)
    assert torch.all((y.double() - io_["y"].double()).abs() <= 2 * bound)
    # and the bound stays far below what a misread tensor does: a float16-rounded scale
    # (2**-11 relative) would move the largest output by more than twice the bound
    assert 2 * bound.max() < 2.0**-11 * exact.abs().max()
    # and written again as version 3 (exactly, with float32 scales): same machine, same bits
    out = tmp_path / "v3.safetensors"
    save_checkpoint(out, model, float16_scales=False, source_hash=meta.source_hash)
    again = _V2Net()
    assert load_checkpoint(out, again)[1].checkpoint_version == CHECKPOINT_VERSION
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(io_["x"]), y, rtol=0, atol=0)
    # a damaged version 2 file is still reported clearly
    damaged = tmp_path / "v2_damaged.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    damaged.write_bytes(bytes(raw))
    _expect_error(damaged, "digest", "corrupted")


def test_float16_only_when_the_values_fit(tmp_path: Path) -> None:
    layer = TernaryLinear(8, 4).freeze()
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1e-6, 1.0, -2.0, 0.0]))   # 1e-6 is below float16's normal range
    path = tmp_path / "l.safetensors"
    meta = save_checkpoint(path, layer)
    assert meta.float16 == {"weight_scale"}
    state, _ = load_checkpoint(path)
    assert torch.equal(state["bias"], layer.bias.detach())
    assert state["weight_scale"].dtype == torch.float32
    assert float((state["weight_scale"] - layer.weight_scale).abs().max()) <= \
        float(layer.weight_scale.abs().max()) * 2 ** -11


def test_source_hash_is_recovered_from_the_embedded_source(tmp_path: Path) -> None:
    import hashlib

    src = "model M { }\n"
    path = tmp_path / "s.safetensors"
    h = hashlib.sha256(src.encode()).hexdigest()
    assert save_checkpoint(path, nn.Linear(2, 2), source_hash=h,
                           extra={"tritium.source": src}).source_hash == h
    assert read_checkpoint_metadata(path).source_hash == h
    save_checkpoint(path, nn.Linear(2, 2), source_hash="other", extra={"tritium.source": src})
    assert read_checkpoint_metadata(path).source_hash == "other"
    save_checkpoint(path, nn.Linear(2, 2), extra={"tritium.source": src})
    assert read_checkpoint_metadata(path).source_hash is None


# --- hostile files: not regular, deep JSON, adversarial header values -----------------------


@pytest.mark.parametrize("kind", ["dev-zero", "link-to-dev-zero", "fifo", "directory"])
def test_a_path_that_is_not_a_regular_file_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    import time

    path = tmp_path / "model.safetensors"
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    t = time.monotonic()
    err = _expect_error(path, "not a regular file")
    assert time.monotonic() - t < 5 and err.path == str(path)


def _raw_header(path: Path, header: bytes) -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header)


@pytest.mark.parametrize("header", [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                    b'{"__metadata__": {"x": "y"}, "t": {"dtype": "F32", '
                                    b'"shape": [[[[1]]]], "data_offsets": [0, 4]}}'])
def test_deeply_nested_header_json_is_a_clear_error(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "deep.safetensors"
    _raw_header(path, header)
    _expect_error(path, "header is not valid JSON", "nested")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_the_header_are_rejected(good: Path, value: str) -> None:
    raw = good.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    text = raw[8:8 + n].decode()
    i = text.index('"data_offsets":[') + len('"data_offsets":[')
    j = text.index(",", i)
    edited = (text[:i] + value + text[j:]).encode()
    good.write_bytes(struct.pack("<Q", len(edited)) + edited + raw[8 + n:])
    _expect_error(good, "not a finite number")


def test_deep_json_inside_the_compressed_metadata_is_a_clear_error(good: Path) -> None:
    import base64
    import zlib

    from tritium.runtime.checkpoint_format import _V3_ZDICT

    def deep(header: dict) -> None:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _V3_ZDICT)
        raw = b'{"x":' * 100_000 + b"1" + b"}" * 100_000
        header["__metadata__"]["tritium"] = base64.b85encode(
            c.compress(raw) + c.flush()).decode()

    _rewrite_header(good, deep)
    _expect_error(good, "metadata", "nested")


def test_v3_metadata_values_are_range_checked(good: Path) -> None:
    raw = good.read_bytes()
    for change, fragment in [
        (lambda b: b.update(p=-1), "field 'p'"),
        (lambda b: b.update(p=10 ** 30), "field 'p'"),
        (lambda b: b.update(d="zz" * 16), "field 'd'"),
        (lambda b: b.update(d=""), "field 'd'"),
        (lambda b: b.update(v="x" * 1000), "field 'v'"),
        (lambda b: b.update(h="h" * 1000), "field 'h'"),
        (lambda b: b["t"].update({"fc1.weight_packed": ["t2", [1] * 100]}), "logical_shape"),
    ]:
        good.write_bytes(raw)
        _rewrite_header(good, _edit_blob(change))
        _expect_error(good, fragment)


def test_a_shape_of_absurd_rank_is_rejected(good: Path) -> None:
    def edit(h: dict) -> None:
        h["fc1.bias"]["shape"] = [1] * 1000

    _rewrite_header(good, edit)
    _expect_error(good, "malformed shape", "...")


# --- version 4: plain metadata ------------------------------------------------------------


def test_v4_metadata_is_plain_text_any_safetensors_tool_reads(good4: Path) -> None:
    with safetensors.safe_open(str(good4), framework="pt") as f:
        meta = f.metadata()
    assert meta["tritium.checkpoint_version"] == "4"
    assert meta["tritium.version"] == tritium.__version__
    assert meta["tritium.source"] == "model M {}"
    assert json.loads(meta["tritium.normalization"]) == [0.5, 2.0]
    layers = json.loads(meta["tritium.layers"])
    assert layers["fc1"] == {"kind": "TernaryLinear", "quantizer": "absmean"}
    packed = json.loads(meta["tritium.packed"])
    assert packed["fc1.weight_packed"]["format"] == "t2"
    assert packed["fc1.weight_packed"]["shape"] == [32, 64]
    # the header's own JSON parse is all a reader needs: no compressed or encoded value
    assert all(not v.startswith("zlib:") for v in meta.values())
    m = read_checkpoint_metadata(good4)
    assert m.checkpoint_version == 4 and m.source_hash == "h"
    assert m.extra["tritium.normalization"] == "[0.5, 2.0]"


def test_v4_and_v3_of_one_checkpoint_load_the_same(good4: Path, tmp_path: Path) -> None:
    v3 = tmp_path / "v3.safetensors"
    v3.write_bytes(good4.read_bytes())
    _rewrite_header(v3, _as_v3)
    s4, m4 = load_checkpoint(good4)
    s3, m3 = load_checkpoint(v3)
    assert (m3.checkpoint_version, m4.checkpoint_version) == (3, 4)
    assert (m3.tensors, m3.extra, m3.folds, m3.float16, m3.source_hash) == \
        (m4.tensors, m4.extra, m4.folds, m4.float16, m4.source_hash)
    assert all(torch.equal(s3[k], s4[k]) for k in s4)


def test_v4_header_round_trips_the_fields(good4: Path) -> None:
    raw = good4.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    assert _v4_header(_v4_blob(meta)) == meta


def test_extra_may_not_use_a_reserved_key(tmp_path: Path) -> None:
    for key in ("tritium.digest", "tritium.layers", "tritium.checkpoint_version", "tritium"):
        with pytest.raises(CheckpointError, match="reserved"):
            save_checkpoint(tmp_path / "x.safetensors", _trained_net(), extra={key: "1"})


def test_v4_metadata_fields_are_checked(good4: Path) -> None:
    raw = good4.read_bytes()

    def set_key(key: str, value: str | None) -> Callable[[dict], None]:
        def edit(h: dict) -> None:
            if value is None:
                h["__metadata__"].pop(key)
            else:
                h["__metadata__"][key] = value
        return edit

    for key, value, fragment in [
        ("tritium.digest", None, "'tritium.digest' is missing"),
        ("tritium.digest", "zz" * 16, "field 'd'"),
        ("tritium.packing_version", "-1", "not a decimal integer"),
        ("tritium.packing_version", "1" * 40, "not a decimal integer"),
        ("tritium.layers", "[", "'tritium.layers' is not valid JSON"),
        ("tritium.layers", "[]", "must be JSON objects"),
        ("tritium.layers", '{"fc1": {"kind": 3}}', "'tritium.layers' entry 'fc1'"),
        ("tritium.layers", '{"fc1": {"kind": "X", "more": "y"}}', "'tritium.layers' entry"),
        ("tritium.packed", '{"fc1.weight_packed": "t2"}', "'tritium.packed' entry"),
        ("tritium.packed", '{"fc1.weight_packed": {"format": "t2", "shape": [1e9999]}}',
         "not a finite number"),
        ("tritium.packed", '{"fc1.weight_packed": {"format": "t9", "shape": [32, 64]}}',
         "unknown packing format"),
        ("tritium.packed", '{"nope": {"format": "t2", "shape": [32, 64]}}', "not stored"),
        ("tritium.float16", '["nope"]', "not stored: ['nope']"),
        ("tritium.float16", '{"a": 1}', "field 'f16'"),
        ("tritium.folds", '{"bn": "x"}', "is not a stored ternary layer"),
        ("tritium.folds", "[" * 10000, "nested"),
        ("tritium.version", "x" * 1000, "field 'v'"),
        ("tritium.source_hash", "h" * 1000, "field 'h'"),
    ]:
        good4.write_bytes(raw)
        _rewrite_header(good4, set_key(key, value))
        _expect_error(good4, fragment)
