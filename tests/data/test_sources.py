"""Tests of mxlstm.data.sources (and the .ts / IDX / npz format modules) on real and tiny files."""

from __future__ import annotations

import gzip
import json
import re

import mxnet as mx
import numpy as np
import pytest

from mxlstm.data import sources as S
from mxlstm.data.fileio import FILES_DIR
from mxlstm.errors import DataError


def where(path, line=None, field=None) -> str:
    """Regex for the location prefix of a DataError message."""
    text = str(path) + (f":{line}" if line is not None else "") + ": "
    return re.escape(text + (f"field {field}: " if field else ""))


# --------------------------------------------------------------------------- embedded data
@pytest.fixture(scope="module")
def digits():
    return S.load_digits()


def test_digits_counts_and_shapes(digits):
    assert len(digits) == 1797
    assert isinstance(digits, mx.gluon.data.Dataset)
    assert digits.label_names == [str(k) for k in range(10)]
    assert sorted(set(digits.labels.tolist())) == list(range(10))
    x, y, n = digits[0]
    assert x.shape == (8, 8) and x.dtype == np.float32 and n == 8 and y == 0
    with gzip.open(S.embedded_path("digits.csv.gz"), "rt") as f:
        first = [float(v) for v in f.readline().split(",")]
    np.testing.assert_array_equal(x, np.reshape(first[:64], (8, 8)))
    assert min(s.min() for s in digits.sequences) == 0
    assert max(s.max() for s in digits.sequences) == 16


def test_stratified_split_is_documented_procedure(digits):
    train, test = S.stratified_split(digits.labels, 0.2, seed=0)
    assert len(train) + len(test) == 1797 and len(np.intersect1d(train, test)) == 0
    rng = np.random.RandomState(0)
    expected = []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(digits.labels == c))
        expected.extend(idx[: int(0.2 * len(idx) + 0.5)])
    np.testing.assert_array_equal(test, np.sort(expected))
    for c in range(10):
        n_c = int((digits.labels == c).sum())
        assert int((digits.labels[test] == c).sum()) == int(0.2 * n_c + 0.5)
    again, _ = S.stratified_split(digits.labels, 0.2, seed=0)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(S.stratified_split(digits.labels, 0.2, seed=1)[1], test)


def test_subset_and_dataloader(digits):
    part = S.subset(digits, [5, 0, 7])
    assert len(part) == 3 and part.labels.tolist() == [digits.labels[i] for i in (5, 0, 7)]
    np.testing.assert_array_equal(part[1][0], digits[0][0])
    assert digits.subset(np.arange(4)).label_names == digits.label_names
    loader = mx.gluon.data.DataLoader(digits.subset(np.arange(10)), batch_size=4)
    x, y, n = next(iter(loader))
    assert x.shape == (4, 8, 8) and y.shape == (4,) and n.asnumpy().tolist() == [8] * 4


@pytest.mark.parametrize("name, n_train, n_test, channels, classes, lengths", [
    ("JapaneseVowels", 270, 370, 12, 9, (7, 29)),
    ("GunPoint", 50, 150, 1, 2, (150, 150)),
    ("ItalyPowerDemand", 67, 1029, 1, 2, (24, 24)),
])
def test_uea_embedded(name, n_train, n_test, channels, classes, lengths):
    train, test = S.load_uea(name, "train"), S.load_uea(name.lower(), "TEST")
    assert (len(train), len(test)) == (n_train, n_test)
    for ds in (train, test):
        assert ds.num_channels == channels and ds.num_classes == classes
        assert ds.label_names == [str(k) for k in range(1, classes + 1)]
        assert ds.labels.dtype == np.int32 and set(ds.labels.tolist()) == set(range(classes))
        assert all(np.isfinite(s).all() for s in ds.sequences)
        assert ds.lengths.tolist() == [len(s) for s in ds.sequences]
    both = np.concatenate([train.lengths, test.lengths])
    assert (both.min(), both.max()) == lengths


def test_japanese_vowels_details():
    train = S.load_uea("JapaneseVowels", "train")
    assert np.bincount(train.labels).tolist() == [30] * 9
    x, label, n = train[0]
    assert x.shape == (n, 12) and x.dtype == np.float32
    with open(S.embedded_path("uea/JapaneseVowels_TRAIN.ts"), encoding="utf-8") as f:
        first = next(line for line in f if line[0] not in "#@")
    dims = first.split(":")
    assert len(dims) == 13 and dims[-1].strip() == "1"
    np.testing.assert_allclose(x[:, 0], [float(v) for v in dims[0].split(",")], rtol=1e-6)
    np.testing.assert_allclose(x[:, 11], [float(v) for v in dims[11].split(",")], rtol=1e-6)
    padded, lengths = train.padded()
    assert padded.shape == (270, train.max_length, 12)
    assert (padded[0, n:] == 0).all() and lengths[0] == n


def test_load_uea_bad_names():
    with pytest.raises(DataError, match="field name: unknown embedded UEA dataset 'Nope'"):
        S.load_uea("Nope", "train")
    with pytest.raises(DataError, match="field split"):
        S.load_uea("GunPoint", "valid")
    with pytest.raises(DataError, match="no such embedded"):
        S.embedded_path("uea/missing.ts")
    assert S.embedded_path("uea/GunPoint_TRAIN.ts").startswith(FILES_DIR)


# --------------------------------------------------------------------------- normalization
def test_normalization_stats_fit_apply_roundtrip():
    train = S.load_uea("JapaneseVowels", "train")
    stats = S.NormalizationStats.fit(train)
    steps = np.concatenate(train.sequences).astype(np.float64)
    np.testing.assert_allclose(stats.mean, steps.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std, steps.std(0), rtol=1e-5)
    assert stats.count == int(train.lengths.sum())
    normed = np.concatenate(stats.transform(train).sequences)
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normed.std(0), 1, atol=1e-4)
    padded, _ = train.padded()
    assert stats.apply(padded).shape == padded.shape
    restored = S.NormalizationStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_array_equal(restored.mean, stats.mean)
    np.testing.assert_array_equal(restored.std, stats.std)


def test_normalization_std_floor_and_bad_dict():
    ds = S.SequenceDataset([np.ones((3, 2)), np.ones((2, 2))], [0, 1])
    stats = S.NormalizationStats.fit(ds)
    assert stats.std.tolist() == [pytest.approx(1e-8)] * 2
    assert np.isfinite(stats.apply(np.ones((4, 2)))).all()
    with pytest.raises(DataError, match="field normalization"):
        S.NormalizationStats.from_dict({"mean": [0.0]})
    with pytest.raises(DataError, match="field normalization"):
        S.NormalizationStats.from_dict({"mean": [0.0, 1.0], "std": [1.0]})


# --------------------------------------------------------------------------- .ts format
TS_HEADER = "#comment\n@problemName toy\n@timeStamps false\n@missing true\n@univariate false\n" \
            "@dimensions 2\n@equalLength false\n@classLabel true a b\n@data\n"


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_ts_parses_variable_length_and_missing(tmp_path):
    path = write(tmp_path, "toy.ts", TS_HEADER + "1,2,3:4,5,6:b\n? ,2,?:1,?,3:a\n")
    ds = S.load_ts(path)
    assert len(ds) == 2 and ds.label_names == ["a", "b"] and ds.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(ds[0][0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(ds[1][0], [[2, 1], [2, 2], [2, 3]])  # edges nearest, linear
    kept = S.load_ts(path, missing="nan")
    assert np.isnan(kept[1][0][0, 0]) and np.isnan(kept[1][0][1, 1])
    with pytest.raises(DataError, match=where(path, 11, "dimension 1") + "missing value"):
        S.load_ts(path, missing="error")


def test_ts_regression_and_unlabelled(tmp_path):
    path = write(tmp_path, "r.ts", "@univariate true\n@targetLabel true\n@data\n1,2:0.5\n3:1.5\n")
    ds = S.load_ts(path)
    assert ds.labels.dtype == np.float32 and ds.labels.tolist() == [0.5, 1.5]
    assert ds.lengths.tolist() == [2, 1] and ds.label_names == []
    path = write(tmp_path, "u.ts", "@univariate true\n@classLabel false\n@data\n1,2\n")
    assert S.load_ts(path).labels.tolist() == [-1]


@pytest.mark.parametrize("body, line, field, message", [
    ("1,2:3:a\n", 10, None, "dimensions of one series have different lengths"),
    ("1,2:a\n", 10, None, "found 1 dimensions, expected 2 (from the header)"),
    ("1,2:3,4:5,6:a\n", 10, None, "found 3 dimensions, expected 2 (from the header)"),
    ("1,2:3,4:a\n1,x:3,4:b\n", 11, "dimension 1", "non-numeric value 'x' at position 2"),
    ("1,2:3,,4:a\n", 10, "dimension 2", "empty value at position 2"),
    ("1,2:3,inf:a\n", 10, "dimension 2", "infinite value"),
    ("1,2:3,4:c\n", 10, "class label", "unknown class label 'c'"),
    ("1,2:3,4:a\n@data\n", 11, None, "header line after @data"),
    ("?,?:1,2:a\n", 10, "dimension 1", "all values missing"),
])
def test_ts_bad_data_lines(tmp_path, body, line, field, message):
    path = write(tmp_path, "bad.ts", TS_HEADER + body)
    with pytest.raises(DataError, match=where(path, line, field) + re.escape(message)):
        S.load_ts(path)


@pytest.mark.parametrize("text, line, message", [
    ("@problemName x\n@colour red\n@data\n1:a\n", 2, "unknown header tag '@colour'"),
    ("@univariate maybe\n@data\n1\n", 1, "field @univariate: expected true or false"),
    ("@dimensions two\n@data\n1\n", 1, "field @dimensions: expected a positive integer"),
    ("@classLabel true\n@data\n1:a\n", 1, "lists no labels"),
    ("1,2,3:a\n", 1, "data before the @data line"),
    ("@timeStamps true\n@data\n(1,2):a\n", 2, "not supported"),
    ("@univariate true\n@dimensions 3\n@data\n1\n", 3, "@univariate true but @dimensions 3"),
    ("@univariate true\n@equalLength true\n@seriesLength 3\n@classLabel true 1\n@data\n"
     "1,2,3:1\n1,2:1\n", 7, "series length 2, but @seriesLength is 3"),
    ("@univariate true\n@classLabel true 1 2\n@data\n1,2\n", 4, "missing label"),
])
def test_ts_bad_headers(tmp_path, text, line, message):
    path = write(tmp_path, "h.ts", text)
    with pytest.raises(DataError, match=where(path, line) + ".*" + re.escape(message)):
        S.load_ts(path)


def test_ts_file_level_errors(tmp_path):
    empty = write(tmp_path, "empty.ts", "  \n\n")
    with pytest.raises(DataError, match=where(empty) + "empty file"):
        S.load_ts(empty)
    with pytest.raises(DataError, match=where(tmp_path / "nope.ts") + "file not found"):
        S.load_ts(tmp_path / "nope.ts")
    binary = write(tmp_path, "bin.ts", TS_HEADER.encode() + b"1,2:3,4:a\n1,\xff:3,4:b\n", "wb")
    with pytest.raises(DataError, match=where(binary, 11) + "invalid UTF-8 byte 0xff"):
        S.load_ts(binary)
    header_only = write(tmp_path, "h.ts", "@univariate true\n@data\n")
    with pytest.raises(DataError, match="no series after @data"):
        S.load_ts(header_only)
    no_data = write(tmp_path, "n.ts", "@univariate true\n")
    with pytest.raises(DataError, match="no @data line"):
        S.load_ts(no_data)
    with pytest.raises(ValueError, match="missing must be"):
        S.load_ts(header_only, missing="zero")


# --------------------------------------------------------------------------- IDX
def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def test_idx_roundtrip_plain_and_gz(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    img = write(tmp_path, "t-images-idx3-ubyte", idx_bytes(2051, images), "wb")
    lab = tmp_path / "t-labels-idx1-ubyte.gz"
    with gzip.open(lab, "wb") as f:
        f.write(idx_bytes(2049, np.array([3, 1])))
    ds = S.load_idx(img, lab)
    assert len(ds) == 2 and ds[1][0].shape == (3, 4) and ds[1][0].dtype == np.float32
    np.testing.assert_array_equal(ds[1][0], images[1])
    # classes are the distinct labels in ascending order (no empty classes 0 and 2)
    assert ds.labels.tolist() == [1, 0] and ds.label_names == ["1", "3"]


def test_idx_errors(tmp_path):
    images = np.zeros((2, 3, 3))
    img = write(tmp_path, "i-idx3", idx_bytes(2051, images), "wb")
    lab = write(tmp_path, "l-idx1", idx_bytes(2049, np.array([1, 2, 3])), "wb")
    with pytest.raises(DataError, match=where(lab) + "2 images .* but 3 labels"):
        S.load_idx(img, lab)
    with pytest.raises(DataError, match=where(lab, field="magic") + "bad IDX magic number 2049"):
        S.load_idx(lab, lab)
    short = write(tmp_path, "s-idx3", idx_bytes(2051, images)[:-1], "wb")
    with pytest.raises(DataError, match=where(short) + "header says shape"):
        S.load_idx(short, lab)
    with pytest.raises(DataError, match="file too short"):
        S.load_idx(write(tmp_path, "tiny", b"\0\0", "wb"), lab)
    with pytest.raises(DataError, match="file not found"):
        S.load_idx(tmp_path / "missing", lab)


# --------------------------------------------------------------------------- npz
def test_npz_layouts(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.arange(24.0).reshape(2, 4, 3), y=np.array([1, 0]), n=np.array([4, 2]))
    ds = S.load_npz(path, lengths_key="n")
    assert ds.lengths.tolist() == [4, 2] and ds[1][0].shape == (2, 3)
    assert ds.label_names == ["0", "1"]
    np.savez(path, x=np.zeros((3, 5)), y=np.array([0.5, 1.0, 2.0]))
    ds = S.load_npz(path)
    assert ds[0][0].shape == (5, 1) and ds.labels.dtype == np.float32 and ds.label_names == []
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.ones((3, 2)), np.ones((5, 2))
    np.savez(path, x=ragged, y=np.array([0, 1]), label_names=np.array(["neg", "pos"]))
    with pytest.raises(DataError, match=where(path, field="x") + ".*allow_pickle=True"):
        S.load_npz(path)
    ds = S.load_npz(path, allow_pickle=True)
    assert ds.lengths.tolist() == [3, 5] and ds.label_names == ["neg", "pos"]


def test_npz_errors(tmp_path):
    path = tmp_path / "b.npz"
    np.savez(path, x=np.zeros((2, 3, 1)), y=np.array([0, 1, 1]), n=np.array([3, 4]))
    with pytest.raises(DataError, match=where(path, field="y") + "3 labels for 2 sequences"):
        S.load_npz(path)
    with pytest.raises(DataError, match=where(path, field="labels") + "no array 'labels'"):
        S.load_npz(path, y_key="labels")
    np.savez(path, x=np.zeros((2, 3, 1)), y=np.array([0, 1]), n=np.array([3, 4]))
    with pytest.raises(DataError, match=where(path, field="n") + "length 4 of sequence 1"):
        S.load_npz(path, lengths_key="n")
    np.savez(path, x=np.full((1, 2, 1), np.nan), y=np.array([0]))
    with pytest.raises(DataError, match="non-finite value in sequence 0"):
        S.load_npz(path)
    bad = write(tmp_path, "c.npz", b"not a zip", "wb")
    with pytest.raises(DataError, match=where(bad) + "not a readable .npz"):
        S.load_npz(bad)
    with pytest.raises(DataError, match="file not found"):
        S.load_npz(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- CSV series
def test_csv_series_header_and_variable_length(tmp_path):
    path = write(tmp_path, "s.csv", "v1,v2,v3,label\n1,2,3,10\n4,5,6,2\n\n7,8,2\n")
    ds = S.load_csv_series(path)
    assert ds.lengths.tolist() == [3, 3, 2] and ds[0][0].shape == (3, 1)
    assert ds.label_names == ["2", "10"] and ds.labels.tolist() == [1, 0, 0]
    assert len(S.load_csv_series(write(tmp_path, "n.csv", "1,2,x\n3,4,y\n"))) == 2


def test_csv_series_errors(tmp_path):
    path = write(tmp_path, "bad.csv", "1,2,a\n3,q,b\n")
    with pytest.raises(DataError, match=where(path, 2, "column 2") + "non-numeric value 'q'"):
        S.load_csv_series(path)
    path = write(tmp_path, "one.csv", "1,2,a\n3\n")
    with pytest.raises(DataError, match=where(path, 2) + "need at least one value"):
        S.load_csv_series(path)
    with pytest.raises(DataError, match="empty file"):
        S.load_csv_series(write(tmp_path, "e.csv", ""))


def test_digits_bad_file(tmp_path):
    path = tmp_path / "d.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(",".join(["0"] * 65) + "\n" + ",".join(["1"] * 64) + "\n")
    with pytest.raises(DataError, match=where(path, 2) + "expected 65"):
        S.load_digits(path)
    with gzip.open(path, "wt") as f:
        f.write(",".join(["0"] * 64 + ["x"]) + "\n")
    with pytest.raises(DataError, match=where(path, 1, "class") + "not an integer"):
        S.load_digits(path)
    bad_gz = write(tmp_path, "g.csv.gz", b"\x1f\x8bgarbage", "wb")
    with pytest.raises(DataError, match=where(bad_gz) + "cannot read file"):
        S.load_digits(bad_gz)
