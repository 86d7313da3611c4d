"""The preprocessing rules shared by training and the standalone predictor: one copy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mxlstm import preprocess
from mxlstm.data.sources import NormalizationStats
from mxlstm.data.text import tokenize
from mxlstm.deploy import predictor

ROOT = Path(__file__).resolve().parents[1] / "mxlstm"


def test_word_rule():
    assert preprocess.tokenize("Don't STOP: 12abc x_y 新闻") == \
        ["don't", "stop", ":", "12", "abc", "x", "_", "y", "新", "闻"]
    assert preprocess.tokenize("e\u0301te\u0301") == ["\u00e9t\u00e9"]  # NFC, marks kept
    assert preprocess.tokenize("Ab c", preprocess.CHAR_RULE) == ["A", "b", " ", "c"]
    with pytest.raises(ValueError, match="unknown tokenizer rule"):
        preprocess.tokenize("x", "bpe")


def test_training_and_predictor_tokenize_through_the_same_rule():
    text = "Hello, world 有趣 新闻! ﾊﾟ 𠀀"
    assert tokenize(text) == predictor.tokenize(text) == preprocess.tokenize(text)
    assert tokenize(text, "char") == predictor.tokenize(text, "chars") == list(text)
    with pytest.raises(predictor.ModelFilesError, match="unknown tokenizer rule"):
        predictor.tokenize(text, "bpe")


def test_std_floor_and_normalize():
    stats = NormalizationStats([1.0, 2.0], [0.0, 4.0])
    assert stats.std.tolist() == [np.float32(preprocess.STD_FLOOR), 4.0]
    x = np.array([[1.0, 6.0], [1.0, 2.0]])
    assert np.array_equal(stats.apply(x), preprocess.normalize(x, stats.mean, stats.std))
    assert preprocess.normalize(x, stats.mean, stats.std).tolist() == [[0, 1], [0, 0]]


def test_fill_missing_interpolates_and_keeps_edges():
    series = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, 5.0], [6.0, np.nan]])
    assert preprocess.empty_channel(series) is None
    filled = preprocess.fill_missing(series.copy())
    assert filled.tolist() == [[2.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 5.0]]
    assert preprocess.empty_channel(np.array([[1.0, np.nan]])) == 1


def test_sha256_file(tmp_path):
    data = bytes(range(256)) * 5000  # more than one 1 MiB block
    (tmp_path / "f").write_bytes(data)
    assert preprocess.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("needle", ["\\u4e00-\\u9fff", "1e-8", "np.interp(",
                                    "hashlib.sha256()"])
def test_each_rule_is_written_once(needle):
    homes = [p.relative_to(ROOT).as_posix() for p in sorted(ROOT.rglob("*.py"))
             if needle in p.read_text(encoding="utf-8")]
    assert homes == ["preprocess.py"], homes
