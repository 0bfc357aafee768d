"""Language-model training: `--data text:PATH`, bits per byte, the tokenizer in the
checkpoint, resume, and the errors for models and data that do not fit."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from tritium.data import DatasetError
from tritium.driver.train import TrainError, TrainOptions, train

_TINY = """
model TinyLM {
    vocab: VOCAB
    dim: 32
    layer embed: Embedding { num_embeddings: vocab, embedding_dim: dim }
    layer fc: BitLinear { in_features: dim, out_features: dim }
    layer head: Linear { in_features: dim, out_features: vocab, bias: false }
    forward(tokens: Tensor<int64, [batch, SEQ]>) -> Tensor[batch, SEQ, VOCAB] {
        return head(relu(fc(embed(tokens))))
    }
    training { optimizer: "adam", learning_rate: 0.01, epochs: 2, batch_size: 8 SEQLEN }
}
"""


def _model(tmp_path, vocab=256, seq="seq", seq_len=": 16"):
    text = _TINY.replace("VOCAB", str(vocab)).replace("SEQLEN", f", seq_len{seq_len}"
                                                      if seq_len else "")
    p = tmp_path / "tiny.tri"
    p.write_text(text.replace("SEQ", seq))
    return p


@pytest.fixture()
def corpus(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(6):
        (d / f"m{i}.py").write_text("".join(f"def f{i}_{j}(x):\n    return x * {j}\n"
                                            for j in range(40)))
    return d


def _opts(tmp_path, model, corpus, **kw):
    base = dict(out=str(tmp_path / "run"), data=f"text:{corpus}", latency_runs=1,
                quiet=True, steps_per_epoch=6)
    return TrainOptions(str(model), **{**base, **kw})


def test_lm_run_reports_bits_per_byte_for_both_models(tmp_path, corpus):
    from safetensors import safe_open

    r = train(_opts(tmp_path, _model(tmp_path), corpus))
    m = r.metrics
    assert m["task"] == "lm" and m["seq_len"] == 16 and "seq_len" in m["seq_len_from"]
    for variant in ("ternary", "fp32"):
        v = m[variant]
        # bytes tokenizer: one byte per token, so bits per byte = nats per token / ln 2
        assert v["test_bpb"] == pytest.approx(v["test_loss"] / math.log(2), rel=1e-6)
        assert v["test_perplexity"] == pytest.approx(math.exp(v["test_loss"]), rel=1e-6)
        assert 0 < v["test_bpb"] < 8.0        # learned something: below a uniform byte
        assert all("val_bpb" in row for row in m["history"][variant])
    saved = json.loads((r.out / "metrics.json").read_text())
    assert saved["ternary"]["test_bpb"] == m["ternary"]["test_bpb"]
    for name in ("model.safetensors", "fp32.safetensors", "train_state.safetensors"):
        with safe_open(str(r.out / name), framework="pt") as fh:
            assert json.loads(fh.metadata()["tritium.tokenizer"]) == {"type": "bytes",
                                                                       "version": 1}
    assert (r.out / "curves.png").stat().st_size > 0


def test_lm_resume_ends_where_an_uninterrupted_run_ends(tmp_path, corpus):
    from safetensors.torch import load_file

    model = _model(tmp_path)
    whole = train(_opts(tmp_path, model, corpus, out=str(tmp_path / "a"), baseline=False))
    train(_opts(tmp_path, model, corpus, out=str(tmp_path / "b"), baseline=False, epochs=1))
    resumed = train(_opts(tmp_path, model, corpus, out=str(tmp_path / "b"), baseline=False,
                          resume=str(tmp_path / "b")))
    assert [h["val_loss"] for h in resumed.metrics["history"]["ternary"]] == \
        [h["val_loss"] for h in whole.metrics["history"]["ternary"]]
    a = load_file(str(tmp_path / "a" / "train_state.safetensors"))
    b = load_file(str(tmp_path / "b" / "train_state.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_model_vocab_smaller_than_tokenizer_names_both(tmp_path, corpus):
    with pytest.raises(DatasetError, match=r"predicts 100 tokens.*vocabulary of 256"):
        train(_opts(tmp_path, _model(tmp_path, vocab=100), corpus))


def test_sequence_length_sources(tmp_path, corpus):
    with pytest.raises(TrainError, match="does not fix the sequence length"):
        train(_opts(tmp_path, _model(tmp_path, seq_len=""), corpus))
    r = train(_opts(tmp_path, _model(tmp_path, seq_len=""), corpus, seq_len=8,
                    baseline=False))
    assert r.metrics["seq_len"] == 8 and r.metrics["seq_len_from"] == "--seq-len"
    r = train(_opts(tmp_path, _model(tmp_path, seq="12", seq_len=""), corpus,
                    baseline=False))
    assert r.metrics["seq_len"] == 12 and "forward" in r.metrics["seq_len_from"]
    with pytest.raises(TrainError, match="differs"):
        train(_opts(tmp_path, _model(tmp_path, seq="12", seq_len=""), corpus, seq_len=8))


def test_too_little_text_for_one_window(tmp_path, corpus):
    with pytest.raises(DatasetError, match="less than one window"):
        train(_opts(tmp_path, _model(tmp_path), corpus, seq_len=None, max_bytes=100))


def test_bpe_tokenizer_run(tmp_path, corpus):
    pytest.importorskip("tokenizers")
    from tritium.driver.evaluate import load_for_eval
    from tritium.driver.train.lm import tokenizer_of
    from tritium.runtime import read_checkpoint_metadata

    r = train(_opts(tmp_path, _model(tmp_path, vocab=300), corpus, tokenizer="bpe:300",
                    baseline=False))
    assert r.metrics["tokenizer"]["kind"] == "bpe"
    ckpt = r.out / "model.safetensors"
    tok = tokenizer_of(read_checkpoint_metadata(ckpt).extra, str(ckpt))
    assert tok.kind == "bpe" and tok.vocab_size <= 300
    assert tok.decode(tok.encode("def f(x):\n")) == "def f(x):\n"
    load_for_eval(ckpt)
    from tritium import generate
    g = generate(str(ckpt), "def f", 12, seed=0, top_k=10)
    assert len(g.tokens) == 12 and all(t < tok.vocab_size for t in g.tokens)
    assert g.text == tok.decode(g.tokens)


def test_eval_recomputes_the_reported_test_bits_per_byte(tmp_path, corpus, capsys):
    from tritium.cli import main

    r = train(_opts(tmp_path, _model(tmp_path), corpus, baseline=False))
    assert main(["eval", str(r.out / "model.safetensors"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["bpb"] == pytest.approx(r.metrics["ternary"]["test_bpb"], rel=1e-5)
    assert got["perplexity"] == pytest.approx(r.metrics["ternary"]["test_perplexity"], rel=1e-5)


def test_a_trained_language_model_exports_through_the_cli(tmp_path, corpus, capsys):
    # export fed the model a float sample: a traceback ("Expected tensor for argument #1
    # 'indices' to have one of the following scalar types: Long, Int")
    from tritium.cli import main

    r = train(_opts(tmp_path, _model(tmp_path), corpus, baseline=False, epochs=1))
    ckpt = str(r.out / "model.safetensors")
    for fmt in ("safetensors", "torchscript"):
        assert main(["export", ckpt, "--format", fmt, "-o", str(tmp_path / f"x.{fmt}")]) == 0
        assert (tmp_path / f"x.{fmt}").stat().st_size > 0
    assert main(["export", ckpt, "--format", "onnx", "-o", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert "language model" in err and "gguf" in err and "Traceback" not in err


def test_eval_refuses_a_tokenizer_larger_than_the_model(tmp_path, corpus, capsys):
    # an edited tokenizer record with more tokens than the model's vocabulary: eval raised the
    # model's IndexError (ids past the embedding table) as a traceback
    pytest.importorskip("tokenizers")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ckpt_edit import with_metadata

    from tritium.cli import main
    from tritium.data.tokenizer import train_bpe

    r = train(_opts(tmp_path, _model(tmp_path), corpus, baseline=False, epochs=1))
    bpe = train_bpe([(corpus / "m0.py").read_text() * 4], vocab_size=300)
    assert bpe.vocab_size > 256
    bad = with_metadata(r.out / "model.safetensors", tmp_path / "bad.safetensors",
                         **{"tritium.tokenizer": json.dumps(bpe.to_json())})
    assert main(["eval", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "more tokens than the model's vocabulary of 256" in err and "Traceback" not in err


def test_training_block_language_model_keys(tmp_path, corpus):
    p = _model(tmp_path, seq_len=": 16, steps_per_epoch: 2, max_bytes: 20000, "
                                 "tokenizer: \"bytes\"")
    p.write_text(p.read_text().replace("batch_size: 8", f"batch_size: 8, dataset: \"text:{corpus}\""))
    r = train(TrainOptions(str(p), out=str(tmp_path / "run"), latency_runs=1, quiet=True,
                           baseline=False, epochs=1))
    assert r.metrics["steps_per_epoch"] == 2 and r.metrics["dataset"] == str(corpus)
    assert sum(r.metrics["corpus"]["bytes"].values()) <= 20000
    from tritium.driver.compile import CompileError
    bad = _model(tmp_path, seq_len=": 16, steps_per_epoch: 0")     # the checker's ranges
    with pytest.raises(CompileError, match="steps_per_epoch"):
        train(_opts(tmp_path, bad, corpus, steps_per_epoch=None))


def test_data_text_path_errors_through_the_cli(tmp_path, capsys):
    from tritium.cli import main

    model = _model(tmp_path)
    assert main(["train", str(model), "--data", f"text:{tmp_path}/missing"]) == 2
    assert "text:" in capsys.readouterr().err
    (tmp_path / "bin").mkdir()
    for i in range(3):
        (tmp_path / "bin" / f"{i}.dat").write_bytes(bytes(range(256)))
    assert main(["train", str(model), "--data", f"text:{tmp_path}/bin", "-q"]) == 1
    err = capsys.readouterr().err
    assert "not UTF-8 text" in err and "Traceback" not in err
