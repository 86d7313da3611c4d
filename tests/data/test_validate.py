"""The input-validation layer: file kinds, size caps, float32 finiteness, labels, classes."""

from __future__ import annotations

import gzip
import os
import re

import numpy as np
import pytest

from mxlstm.data import validate as V
from mxlstm.data.fileio import read_bytes, require_file
from mxlstm.data.text import load_text_classification, looks_like_header
from mxlstm.errors import DataError


def write(path, data):
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --------------------------------------------------------------------------- file kinds
def test_regular_file_check_never_opens_special_files(tmp_path):
    pipe = tmp_path / "p.tsv"
    os.mkfifo(pipe)
    for path, message in [(pipe, "is a named pipe (FIFO), expected a regular file"),
                          ("/dev/null", "is a character device, expected a regular file"),
                          (tmp_path, "is a directory, expected a file"),
                          (tmp_path / "missing", "file not found"),
                          (tmp_path / "missing" / "below", "file not found")]:
        with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
            V.check_regular_file(path)
        with pytest.raises(DataError, match=re.escape(message)):
            require_file(path)
        with pytest.raises(DataError, match=re.escape(message)):
            read_bytes(path)  # would block for ever on the FIFO if it opened it
    assert V.special_file_problem(pipe) == "is a named pipe (FIFO)"
    assert V.special_file_problem(tmp_path) is None
    assert V.special_file_problem(tmp_path / "missing") is None
    assert V.special_file_problem(write(tmp_path / "f", "x")) is None


def test_open_regular_reads_blocking_after_the_nonblocking_open(tmp_path):
    path = write(tmp_path / "a.bin", b"abc" * 1000)
    with V.open_regular(path) as f:
        assert not f.closed and f.read() == b"abc" * 1000
        assert os.get_blocking(f.fileno())


# --------------------------------------------------------------------------- size caps
def test_cap_on_plain_files_on_disk_and_while_reading(tmp_path):
    path = write(tmp_path / "a.txt", b"x" * (2 << 20))
    assert len(read_bytes(path)) == 2 << 20
    with V.input_limit(1):
        assert V.max_input_bytes() == 1 << 20
        with pytest.raises(DataError, match=re.escape(
                f"{path}: file of 2.0 MB is larger than the input size cap of 1 MB "
                f"(data.max_input_mb=1; raise the key to read it)")):
            read_bytes(path)
    assert V.max_input_bytes() == V.DEFAULT_MAX_INPUT_MB << 20  # restored after the block
    with pytest.raises(ValueError):
        with V.input_limit(0):
            pass


def test_cap_on_decompressed_bytes_stops_reading(tmp_path):
    path = tmp_path / "z.txt.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\0" * (3 << 20))
    assert path.stat().st_size < 20_000
    with V.input_limit(2):
        with pytest.raises(DataError, match="decompresses to more than the input size cap "
                                            "of 2 MB"):
            read_bytes(path)
    with V.input_limit(3):  # exactly at the cap is fine
        assert len(read_bytes(path)) == 3 << 20


def test_damaged_gzip_is_one_error(tmp_path):
    good = gzip.compress(b"hello world\n" * 100)
    path = write(tmp_path / "cut.txt.gz", good[: len(good) // 2])
    with pytest.raises(DataError, match=re.escape(f"{path}: cannot read file (")):
        read_bytes(path)


def test_declared_size_check():
    V.check_declared_size(1 << 20, "x.npz")
    with V.input_limit(1), pytest.raises(DataError, match="x.npz: field x: declares 2.0 MB"):
        V.check_declared_size(2 << 20, "x.npz", "x")


# --------------------------------------------------------------------------- float32
@pytest.mark.parametrize("value", [1e300, -4e38, 3.5e38])
def test_float32_overflow_is_refused_after_the_cast(value):
    x = np.ones((3, 2))
    x[2, 1] = value
    assert np.isfinite(x).all()  # a float64 check lets it through
    with pytest.raises(DataError, match=re.escape(
            f"f.npz:4: field x: value {value:g} in row 9 at step 3, channel 2 does not fit "
            f"float32")):
        V.float32_checked(x, "f.npz", 4, "x", where="in row 9")


def test_float32_checked_keeps_good_values_and_optional_nan():
    x = np.array([1.0, -2.5, 3.4e38, np.nan])
    with pytest.raises(DataError, match="non-finite value nan at position 4"):
        V.float32_checked(x)
    out = V.float32_checked(x, allow_nan=True)
    assert out.dtype == np.float32 and np.isnan(out[3]) and out[2] == np.float32(3.4e38)
    with pytest.raises(DataError, match="non-finite value inf"):
        V.float32_checked(np.array([np.inf]), allow_nan=True)


# --------------------------------------------------------------------------- labels
@pytest.mark.parametrize("raw, canonical", [
    (1, "1"), (1.0, "1"), ("1", "1"), ("1.0", "1"), (" +1.000 ", "1"), ("1e0", "1"),
    ("01", "1"), (np.int64(1), "1"), (np.float32(1.0), "1"), ("-0", "0"), (-0.0, "0"),
    ("0.50", "0.5"), (0.5, "0.5"), ("5e-1", "0.5"), ("1.5e1", "15"), ("-3", "-3"),
    ("2e9", "2000000000"), (2e9, "2000000000"), ("1e300", "1E+300"),
    (True, "true"), (False, "false"), (np.bool_(True), "true"), ("TRUE", "true"),
    (" False ", "false"), ("pos", "pos"), ("Pos", "Pos"), (" a b ", "a b"), ("nan", "nan"),
    ("1.2.3", "1.2.3"), ("0x10", "0x10"),
])
def test_canonical_label(raw, canonical):
    assert V.canonical_label(raw) == canonical


def test_canonical_label_refuses_non_finite_numbers():
    with pytest.raises(ValueError):
        V.canonical_label(float("nan"))


def test_label_kinds_booleans_and_numbers_do_not_mix():
    V.check_label_kinds(["true", "false", "true"])
    V.check_label_kinds(["1", "0", "2"])
    V.check_label_kinds(["true", "maybe"])
    with pytest.raises(DataError, match=re.escape(
            "d.tsv:9: field label: labels mix booleans and numbers ('false' on line 7, "
            "'1' on line 9)")):
        V.check_label_kinds(["pos", "false", "1"], "d.tsv", [5, 7, 9])


def test_index_labels_uses_distinct_values_only():
    ids, names = V.index_labels(np.array([2_000_000_000, 3, 3, 2_000_000_000]))
    assert names == ["3", "2000000000"] and ids.tolist() == [1, 0, 0, 1]
    ids, names = V.index_labels(np.array([2.0, 1.0, 2.0]))
    assert names == ["1", "2"] and ids.tolist() == [1, 0, 1]
    ids, names = V.index_labels(np.array([True, False]))
    assert names == ["false", "true"] and ids.tolist() == [1, 0]
    ids, names = V.index_labels(np.array([-1, 1, -1]))
    assert names == ["-1", "1"] and ids.tolist() == [0, 1, 0]
    with pytest.raises(DataError, match="non-finite label"):
        V.index_labels(np.array([1.0, np.inf]))


def test_check_classes():
    V.check_classes([0, 1, 0, 1], ["a", "b"], "f")
    V.check_classes([0, 1], ["a", "b"], "f")  # two examples, two classes: split decides
    cases = [
        ([], ["a"], "f: no examples"),
        ([0, 0, 0], ["a"], "f: field label: only one class ('a') in 3 examples"),
        ([1, 1], ["a", "b"], "only one class ('b') in 2 examples"),
        ([0, 1, 0, 1], [f"c{k}" for k in range(5)], "more classes (5) than examples (4)"),
        ([0, 1, 2], ["a", "b", "c"], "every one of the 3 examples has a label of its own"),
    ]
    for ids, names, message in cases:
        with pytest.raises(DataError, match=re.escape(message)):
            V.check_classes(ids, names, "f")


# --------------------------------------------------------------------------- header rule
@pytest.mark.parametrize("first, later, expected", [
    (["review", "sentiment"], ["1", "0"], True),
    (["Text", "Label"], ["pos", "neg"], True),
    (["review_text", "y.class"], ["a"], True),
    (["good", "pos"], ["pos", "neg"], False),  # its label occurs again: data
    (["a fine film", "sentiment"], ["1"], False),  # a sentence, not a name
    (["review", "1"], ["0", "2"], False),  # a number is a label, not a column name
    (["review"], [], False),
])
def test_looks_like_header(first, later, expected):
    assert looks_like_header(first, later) is expected


def test_header_modes(tmp_path):
    rows = "review\tsentiment\ngreat film\t1\nawful film\t0\nfine film\t1.0\n"
    path = write(tmp_path / "r.tsv", rows)
    with pytest.raises(DataError, match=re.escape(
            f"{path}:1: the first row ('review', 'sentiment') looks like a header")):
        load_text_classification(path)
    named = load_text_classification(path, "review", "sentiment")
    assert named.texts == ["great film", "awful film", "fine film"]
    assert named.labels == ["1", "0", "1"] and named.label_names == ["0", "1"]
    forced = load_text_classification(path, "review", "sentiment", header="true")
    assert forced.texts == named.texts
    data = load_text_classification(path, header="false")  # the first row is data
    assert data.texts[0] == "review" and data.label_names == ["0", "1", "sentiment"]
    with pytest.raises(DataError, match=re.escape(
            f"{path}:1: field text: missing column 'text' (header has: review, sentiment")):
        load_text_classification(path, header="true")
    plain = write(tmp_path / "p.tsv", "good\tpos\nbad\tneg\nok\tpos\n")
    assert load_text_classification(plain).texts == ["good", "bad", "ok"]
    with pytest.raises(ValueError):
        load_text_classification(plain, header="maybe")
