"""A checkpoint's run metadata and embedded program are untrusted: every field is validated
(a clear CheckpointError naming the file and the field), the source is compiled as text and
never taken for a path, and a file it names is read only when it holds exactly that text."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.driver.compile import CompileError
from tritium.driver.models import ModelBuildError, RunInfo, model_from_checkpoint
from tritium.runtime import CheckpointError, read_checkpoint_metadata, save_checkpoint

V2 = Path(__file__).parent / "data" / "mlp_v2.safetensors"   # DigitsMLP, version 2
GOOD = read_checkpoint_metadata(V2).extra


@pytest.fixture(scope="module")
def model():
    m, _ = model_from_checkpoint(V2)
    return m


def _write(tmp_path: Path, model, **changes: str) -> Path:
    extra = {**GOOD, **changes}
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, extra=extra)
    return path


def test_a_rewritten_checkpoint_loads(tmp_path, model):
    m, info = model_from_checkpoint(_write(tmp_path, model))
    assert info.entry == "DigitsMLP" and info.normalization[1] > 0


@pytest.mark.parametrize("field,value", [
    ("tritium.normalization", "[NaN, 1.0]"),
    ("tritium.normalization", "[0.0, NaN]"),
    ("tritium.normalization", "[0.0, 1e999]"),
    ("tritium.normalization", "[0.0, 0.0]"),
    ("tritium.normalization", "[0.0]"),
    ("tritium.normalization", "[" * 100_000),
    ("tritium.input_shape", "[64, -1]"),
    ("tritium.input_shape", "[1e3]"),
    ("tritium.input_shape", "[100000, 100000, 100000]"),
    ("tritium.input_shape", "[[64]]"),
    ("tritium.num_classes", "0"),
    ("tritium.num_classes", "1" * 5000),
    ("tritium.num_classes", "ten"),
    ("tritium.hyperparameters", '{"hidden": NaN}'),
    ("tritium.hyperparameters", '{"hidden": {"a": 1}}'),
    ("tritium.hyperparameters", '{"z = open(1); q": 1}'),
    ("tritium.hyperparameters", "[]"),
    ("tritium.variant", "fp64"),
    ("tritium.format", "t3"),
    ("tritium.entry", "DigitsMLP\nimport os"),
    ("tritium.entry", "a.b"),
    ("tritium.file", "x\n.tri"),
    ("tritium.file", ""),
    ("tritium.dataset", "/tmp/\x00.npz"),
    ("tritium.dataset_digest", "0123456789abcdeZ"),
    ("tritium.dataset_digest", "\x1b[2J"),
    ("tritium.source", ""),
    ("tritium.source", "model M {}\x00"),
])
def test_every_run_metadata_field_is_validated(tmp_path, model, field, value):
    path = _write(tmp_path, model, **{field: value})
    with pytest.raises(CheckpointError) as err:
        model_from_checkpoint(path)
    assert str(path) in str(err.value) and repr(field) in str(err.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["tritium.normalization", "tritium.input_shape",
                              "tritium.num_classes", "tritium.hyperparameters",
                              "tritium.variant", "tritium.format", "tritium.entry",
                              "tritium.file", "tritium.dataset"]),
       value=st.one_of(
           st.text(max_size=40),
           st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                        | st.text(max_size=8),
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(
                            st.text(max_size=6), c, max_size=3),
                        max_leaves=8).map(lambda v: json.dumps(v))))
def test_generated_run_metadata_is_accepted_only_when_valid(field, value):
    extra = {**GOOD, field: value}
    try:
        info = RunInfo.from_extra(extra, "ckpt.safetensors")
    except CheckpointError as e:
        assert "ckpt.safetensors" in str(e) and repr(field) in str(e)
        return
    # whatever was accepted is what the rest of the pipeline can use
    assert all(math.isfinite(v) for v in info.normalization) and info.normalization[1] > 0
    assert info.input_shape is None or all(isinstance(d, int) and d > 0
                                           for d in info.input_shape)
    assert 1 <= info.num_classes and info.variant in ("ternary", "fp32")
    assert info.entry.isidentifier()
    assert all(k.isidentifier() for k in info.hyperparameters)
    assert all(ord(c) >= 32 for c in info.file + info.dataset)


def test_missing_run_metadata_is_a_model_build_error():
    with pytest.raises(ModelBuildError, match="tritium.entry"):
        RunInfo.from_extra({"tritium.source": "x"}, "c.safetensors")


@pytest.mark.parametrize("source", ["/dev/zero", "examples/mlp.tri", "FIFO"])
def test_the_embedded_source_is_text_never_a_path(tmp_path, model, source, monkeypatch):
    """A source without a newline or `{` is still program text: it is never opened."""
    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    if source == "FIFO":
        source = str(tmp_path / "fifo.tri")
        os.mkfifo(source)
    path = _write(tmp_path, model, **{"tritium.source": source,
                                      "tritium.file": "<checkpoint>"})
    t = time.monotonic()
    with pytest.raises(CompileError) as err:     # program text that does not parse or check
        model_from_checkpoint(path)
    assert time.monotonic() - t < 30
    assert not any(d.code in ("E0001", "E0002", "E0003", "E0004", "E0005")
                   for d in err.value.diagnostics)   # no file was read


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "long-name", "other-text"])
def test_the_file_a_checkpoint_names_is_read_only_when_it_holds_the_text(tmp_path, model,
                                                                          kind):
    if kind == "fifo":
        named = tmp_path / "mlp.tri"
        os.mkfifo(named)
    elif kind == "dev-zero":
        named = Path("/dev/zero")
    elif kind == "long-name":
        named = tmp_path / ("x" * 300 + ".tri")
    else:
        named = tmp_path / "mlp.tri"
        named.write_text(GOOD["tritium.source"].replace("DigitsMLP", "Other"))
    path = _write(tmp_path, model, **{"tritium.file": str(named)})
    t = time.monotonic()
    m, info = model_from_checkpoint(path)             # compiled from the embedded text
    assert time.monotonic() - t < 60 and info.entry == "DigitsMLP"


def test_cli_eval_of_hostile_checkpoint_paths_is_one_clear_line(tmp_path):
    import subprocess
    import sys

    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.safetensors"
    deep.write_bytes((100_000).to_bytes(8, "little") + b"[" * 100_000)
    # a path that is not a regular file is a usage error (2); a file whose content is bad, a
    # data error (1)
    for target, code in (("/dev/zero", 2), (str(fifo), 2), (str(deep), 1)):
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "tritium", "eval", target],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TRITIUM_CACHE_DIR": str(tmp_path / "c")})
        assert time.monotonic() - t < 60
        assert r.returncode == code, r.stderr
        assert "Traceback" not in r.stderr and target in r.stderr


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_resuming_from_a_training_state_that_is_not_a_file_is_a_clear_error(tmp_path, kind):
    from tritium.driver.train import TrainError, _load_state

    path = tmp_path / "train_state.safetensors"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    t = time.monotonic()
    with pytest.raises(TrainError, match="not a regular file") as err:
        _load_state(path, None, None)   # type: ignore[arg-type]
    assert time.monotonic() - t < 5 and str(path) in err.value.message
