"""Tests of mxlstm.data.text on the embedded movie reviews / Austen novels and tiny files."""

from __future__ import annotations

import gzip
import json
import re

import gluonnlp
import mxnet as mx
import numpy as np
import pytest

from mxlstm.data import text as T
from mxlstm.data.fileio import read_bytes
from mxlstm.errors import DataError

README_RULE = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[^\sa-z0-9]")


def where(path, line=None, field=None) -> str:
    """Regex for the location prefix of a DataError message."""
    text = str(path) + (f":{line}" if line is not None else "") + ": "
    return re.escape(text + (f"field {field}: " if field else ""))


def write(tmp_path, name, data):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    elif isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- tokenizer
def test_tokenize_example_and_scripts():
    expected = ["hello", ",", "world", "有", "趣", "新", "闻", "!"]
    assert T.tokenize("Hello, world 有趣 新闻!") == expected
    assert T.tokenize("Café NAÏVE Привет, мир") == ["café", "naïve", "привет", ",", "мир"]
    assert T.tokenize("こんにちはカナ 한국어") == list("こんにちはカナ") + ["한", "국", "어"]
    assert T.tokenize("abc漢字def") == ["abc", "漢", "字", "def"]
    assert T.tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # combining vowel signs stay inside
    assert T.tokenize("cafe\u0301") == ["caf\u00e9"]  # NFC
    assert T.tokenize("It's 2024: x_y £5") == ["it's", "2024", ":", "x", "_", "y", "£", "5"]


def test_tokenize_matches_readme_rule_on_ascii():
    rng = np.random.RandomState(0)
    alphabet = np.array(list("abcXYZ09' \n\t.,;-_\"!?()"))
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=rng.randint(0, 40)))
        assert T.tokenize(text) == README_RULE.findall(text.lower())
    reviews = [t for t in T.load_movie_reviews().texts[:2000] if t.isascii()]
    assert len(reviews) > 1900
    assert all(T.tokenize(t) == README_RULE.findall(t.lower()) for t in reviews)


def test_tokenize_char_level():
    assert T.tokenize("Ab 有\n", level="char") == ["A", "b", " ", "有", "\n"]
    with pytest.raises(ValueError):
        T.tokenize("x", level="byte")


# --------------------------------------------------------------------------- vocabulary
def test_build_vocab_order_and_limits():
    vocab = T.build_vocab([["z", "y", "x", "y"], ["x", "w", "<eos>", "<unk>"]])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "<eos>", "y", "x", "z", "w"]
    assert (vocab.unknown_token, vocab.padding_token, vocab.eos_token, vocab.bos_token) == (
        "<unk>", "<pad>", "<eos>", None)
    plain = gluonnlp.Vocab(gluonnlp.data.count_tokens(["z", "y"]), bos_token=None)
    assert plain.idx_to_token[-2:] == ["y", "z"]  # gluonnlp alone: ties alphabetical
    assert T.build_vocab(["z", "y"]).idx_to_token[3:] == ["z", "y"]  # flat list, first seen
    assert T.build_vocab([["a", "b", "b", "c", "c"]], min_freq=2).idx_to_token[3:] == ["b", "c"]
    assert len(T.build_vocab([list("aabbc")], max_size=2)) == 5


def test_vocab_save_load_and_encode(tmp_path):
    vocab = T.build_vocab([["b", "a", "b"]])
    path = tmp_path / "vocab.json"
    T.save_vocab(vocab, path)
    loaded = T.load_vocab(path)
    assert loaded.idx_to_token == vocab.idx_to_token
    assert loaded.token_to_idx == vocab.token_to_idx
    assert loaded.eos_token == "<eos>" and loaded.padding_token == "<pad>"
    ids = T.encode(["b", "a", "never", "<eos>"], loaded)
    assert ids.dtype == np.int32 and ids.tolist() == [3, 4, 0, 2]
    assert T.encode([], loaded).shape == (0,)


def test_load_vocab_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        T.load_vocab(tmp_path / "none.json")
    bad = write(tmp_path, "bad.json", '{"idx_to_token": [\n')
    with pytest.raises(DataError, match=where(bad, 2) + "invalid JSON"):
        T.load_vocab(bad)
    other = write(tmp_path, "other.json", json.dumps({"hello": 1}))
    with pytest.raises(DataError, match=where(other) + "not a gluonnlp vocabulary"):
        T.load_vocab(other)
    binary = write(tmp_path, "bin.json", b'{"a":\n"\xc3"}')
    with pytest.raises(DataError, match=where(binary, 2) + "invalid UTF-8"):
        T.load_vocab(binary)


# --------------------------------------------------------------------------- classification
def test_movie_reviews_and_standard_split():
    ds = T.load_movie_reviews()
    assert len(ds) == 10568 and isinstance(ds, mx.gluon.data.Dataset)
    assert ds.label_names == ["0", "1"] and ds.labels.count("1") == 5242
    assert ds[0][0].startswith("The Rock is destined to be") and ds[0][1] == "1"
    assert ds.label_ids.dtype == np.int32 and int(ds.label_ids.sum()) == 5242
    train, dev, test = T.standard_split(len(ds))
    assert (len(train), len(dev), len(test)) == (8454, 1057, 1057)
    perm = np.random.RandomState(0).permutation(10568)
    np.testing.assert_array_equal(np.concatenate([train, dev, test]), perm)
    part = ds.subset(test)
    assert len(part) == 1057 and part.label_names == ["0", "1"]


def test_tsv_csv_jsonl_variants(tmp_path):
    tsv = write(tmp_path, "a.tsv.gz", "good film\t1\n\nbad film\t0\n")
    ds = T.load_text_classification(tsv)
    assert ds.texts == ["good film", "bad film"] and ds.labels == ["1", "0"]
    hdr = write(tmp_path, "b.tsv", "id\tlabel\tsentence\n7\tpos\tfine\n8\tneg\tmeh\n")
    ds = T.load_text_classification(hdr, text_field="sentence")
    assert ds.texts == ["fine", "meh"] and ds.label_names == ["neg", "pos"]
    csv_path = write(tmp_path, "c.csv", 'label,text\n1,"hello, world"\n0,"two\nlines"\n2,x\n')
    ds = T.load_text_classification(csv_path)
    assert ds.texts == ["hello, world", "two\nlines", "x"] and ds.label_names == ["0", "1", "2"]
    lines = '{"text": "héllo 有趣", "label": 1}\n\n{"text": "b", "label": "x"}\n'
    jl = write(tmp_path, "d.jsonl", lines)
    ds = T.load_text_classification(jl)
    assert ds.texts == ["héllo 有趣", "b"] and ds.labels == ["1", "x"]
    other = write(tmp_path, "e.data", "t\t1\n")
    assert T.load_text_classification(other, fmt="tsv").texts == ["t"]
    with pytest.raises(DataError, match=where(other) + "cannot tell the format"):
        T.load_text_classification(other)


@pytest.mark.parametrize("name, content, kwargs, line, field, message", [
    ("m.tsv", "text\tscore\nfine\t1\n", {}, 1, "label", "missing column 'label'"),
    ("m.csv", "label,body\n1,x\n", {}, 1, "text", "missing column 'text'"),
    ("m.tsv", "fine\t1\n", {"text_field": "body"}, 1, "body", "missing column 'body'"),
    ("m.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', {}, 2, "label",
     "missing column 'label'"),
    ("e.tsv", "good\t1\n  \t0\n", {}, 2, "text", "empty text"),
    ("e.csv", "text,label\nok,1\nfine,\n", {}, 3, "label", "empty label"),
    ("e.jsonl", '{"text": "", "label": 0}\n', {}, 1, "text", "empty text"),
    ("w.tsv", "a\t1\nb\t1\t2\n", {}, 2, None, "3 fields, expected 2 columns (text, label)"),
    ("j.jsonl", '{"text": "a", "label": 1}\n{"text": \n', {}, 2, None, "invalid JSON"),
    ("j2.jsonl", '["a", 1]\n', {}, 1, None, "expected a JSON object"),
])
def test_text_classification_errors(tmp_path, name, content, kwargs, line, field, message):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=where(path, line, field) + re.escape(message)):
        T.load_text_classification(path, **kwargs)


def test_text_classification_file_errors(tmp_path):
    binary = write(tmp_path, "b.tsv", b"ok\t1\n" + b"caf\xe9\t0\n")
    with pytest.raises(DataError, match=where(binary, 2) + "invalid UTF-8 byte 0xe9"):
        T.load_text_classification(binary)
    empty = write(tmp_path, "empty.tsv.gz", "")
    with pytest.raises(DataError, match=where(empty) + "empty file"):
        T.load_text_classification(empty)
    with pytest.raises(DataError, match="file not found"):
        T.load_text_classification(tmp_path / "missing.csv")
    header_only = write(tmp_path, "h.csv", "text,label\n")
    with pytest.raises(DataError, match="no examples"):
        T.load_text_classification(header_only)


# --------------------------------------------------------------------------- corpora
def test_load_corpus_word_and_char(tmp_path):
    a = write(tmp_path, "a.txt", "Hello there.\nSecond line\n\n  \n\nNew para 1990!\n")
    b = write(tmp_path, "b.txt.gz", "Más texto")
    words = T.load_corpus([a, b])
    assert words == ["hello", "there", ".", "second", "line", "<eos>", "new", "para", "1990",
                     "!", "<eos>", "más", "texto", "<eos>"]
    chars = T.load_corpus(a, level="char")
    assert "".join(chars) == a.read_text() and chars.count("\n") == 6
    with pytest.raises(DataError, match=where(write(tmp_path, "e.txt", "\n\n")) + "empty file"):
        T.load_corpus(tmp_path / "e.txt")
    with pytest.raises(DataError, match="field split"):
        T.load_austen("dev")


def test_austen_test_novel_char_level():
    raw = read_bytes(T.austen_paths("test")[0])
    assert len(raw) == 466854 and raw.isascii()
    chars = T.load_austen("test", level="char")
    assert len(chars) == 466854 and chars[:10] == list(raw[:10].decode())


@pytest.fixture(scope="module")
def austen_vocab():
    return T.build_vocab(T.load_austen("train"), max_size=10000)


def test_austen_word_level_vocabulary(austen_vocab):
    test = T.load_austen("test")
    raw = read_bytes(T.austen_paths("test")[0]).decode()
    paragraphs = [p for p in re.split(r"\n\s*\n", raw) if README_RULE.search(p.lower())]
    assert test.count("<eos>") == len(paragraphs)
    assert len(test) == len(README_RULE.findall(raw.lower())) + len(paragraphs)
    assert len(austen_vocab) == 10003 and austen_vocab.idx_to_token[:3] == ["<unk>", "<pad>",
                                                                             "<eos>"]
    assert set(austen_vocab.idx_to_token[3:13]) >= {",", ".", "the", "to", "and", "of"}
    for word in ("anne", "elizabeth", "emma", "she", "mr"):
        assert word in austen_vocab.token_to_idx
    ids = T.encode(test, austen_vocab)
    assert ids.shape == (len(test),) and ids.max() < len(austen_vocab)
    oov = float((ids == 0).mean())
    assert 0.01 < oov < 0.05  # held-out novel, same author: about 3.2% unknown tokens
    counts = gluonnlp.data.count_tokens(test)
    assert counts.most_common(1)[0][0] in {",", ".", "the"}
