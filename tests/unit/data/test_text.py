"""Text corpora: files and directories, the stdlib default, split by file, packing."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.data import DatasetError
from tritium.data.text import encode_split, is_text_spec, load_text, pack_windows, stdlib_dir
from tritium.data.tokenizer import ByteTokenizer


def _tree(tmp_path, n=6, size=400):
    for i in range(n):
        sub = tmp_path / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.txt").write_text(f"file {i}: " + "x = 1\n" * (size // 6))
    return tmp_path


def test_spec():
    assert is_text_spec("text") and is_text_spec("text:x") and is_text_spec(" TEXT ")
    assert not is_text_spec("digits") and not is_text_spec(None)


def test_directory_split_by_file_is_deterministic(tmp_path):
    _tree(tmp_path)
    (tmp_path / ".hidden").write_bytes(b"\0\1")            # skipped: a dot name
    a = load_text(f"text:{tmp_path}")
    b = load_text(f"text:{tmp_path}")
    assert a.split_by == "file" and a.files == 6
    names = [[n for n, _ in getattr(a, s)] for s in ("train", "val", "test")]
    assert names == [[n for n, _ in getattr(b, s)] for s in ("train", "val", "test")]
    flat = sum(names, [])
    assert len(flat) == len(set(flat)) == 6                  # each file in one split
    assert len(names[1]) == 1 and len(names[2]) == 1


def test_single_file_split_by_text(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("abcdefghij" * 100)
    c = load_text(f"text:{f}")
    assert c.split_by == "text"
    assert "".join(t for _, t in c.train + c.val + c.test) == f.read_text()


def test_max_bytes_caps_each_split(tmp_path):
    _tree(tmp_path, n=10, size=3000)
    c = load_text(f"text:{tmp_path}", max_bytes=2000)
    assert c.nbytes("train") <= 1600 and c.nbytes("val") <= 200 and c.nbytes("test") <= 200
    assert c.nbytes("train") > 0


@pytest.mark.parametrize("content, match", [(b"\x00\x01binary", "not UTF-8"),
                                            (b"caf\xe9 latin-1", "not UTF-8")])
def test_binary_or_undecodable_is_an_error(tmp_path, content, match):
    _tree(tmp_path)
    (tmp_path / "bad.bin").write_bytes(content)
    with pytest.raises(DatasetError, match=match):
        load_text(f"text:{tmp_path}")


def test_empty_and_missing(tmp_path):
    with pytest.raises(DatasetError, match="no files"):
        load_text(f"text:{tmp_path}")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(DatasetError, match="no files"):      # empty files are skipped
        load_text(f"text:{tmp_path}")
    with pytest.raises(DatasetError, match="holds no text"):
        load_text(f"text:{tmp_path}/e.txt")
    with pytest.raises(DatasetError, match="does not exist"):
        load_text(f"text:{tmp_path}/nope")


def test_stdlib_default_corpus():
    c = load_text("text", max_bytes=200_000)
    assert c.name == "stdlib" and c.split_by == "file" and c.files > 100
    names = [n for n, _ in c.train + c.val + c.test]
    assert all(n.endswith(".py") and "site-packages" not in n for n in names)
    assert (stdlib_dir() / names[0]).is_file()
    assert c.train == load_text("text", max_bytes=200_000).train


def test_pack_windows_targets_are_shifted_inputs():
    tokens = np.arange(23, dtype=np.uint16)
    w = pack_windows(tokens, 5)
    assert w.shape == (4, 6)
    assert (w[:, 1:] == w[:, :-1] + 1).all()
    assert (w[1:, 0] == w[:-1, -1]).all()        # stride seq: each target counted once
    assert pack_windows(tokens[:3], 5).shape == (0, 6)


def test_encode_split_bytes():
    t = encode_split(ByteTokenizer(), [("a", "hé"), ("b", "!")])
    assert t.tolist() == list("hé!".encode())


def test_a_directory_with_too_many_files_is_refused_and_empty_files_are_skipped(
        tmp_path, monkeypatch):
    # a corpus spec (which a checkpoint records, and eval then reads) naming `/` walked the
    # whole machine, and a size-0 pseudo-file such as /proc/kmsg blocks its reader
    from tritium.data import text as text_mod

    for i in range(6):
        (tmp_path / f"f{i}.txt").write_text(f"hello {i} " * 50)
    (tmp_path / "empty.txt").write_text("")
    corpus = load_text(f"text:{tmp_path}")
    assert len(corpus.train) + len(corpus.val) + len(corpus.test) > 0
    assert text_mod._tree_files(tmp_path) == sorted(
        p for p in tmp_path.iterdir() if p.name != "empty.txt")
    monkeypatch.setattr(text_mod, "MAX_FILES", 4)
    with pytest.raises(DatasetError, match="holds more than 4 files"):
        load_text(f"text:{tmp_path}")
