"""Hostile data: inputs that used to hang, exhaust memory, train on garbage or crash.

Each case runs ``mxlstm`` as a user would and must answer with exit status 2 and exactly
one line ``mxlstm: error: <file or key>: ...`` (no traceback), within a time limit (a hang
fails the test instead of blocking it), leaving every file already on disk as it was and
creating no ``--out``. The kinds: special files (FIFO, device), size caps (gzip bomb,
oversized file, oversized or lying ``.npz`` member), header rows that do not name the
fields, unlearnable class sets (one class, an id column, more classes than examples),
numbers that overflow float32, mixed label kinds and empty sets. Behaviour checks follow:
``1`` / ``1.0`` / ``"1"`` are one class, a label ``2e9`` is one class, 10,000 classes give
a report without a K x K matrix.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from e2e_inputs import (
    REPO,
    TINY,
    TS_ROWS,
    _drop_run_log_handlers,
    idx_images,
    idx_labels,
    npz,
    snapshot,
    train,
    write,
)
from hostile_files import (
    _compressed_npz,
    _symlink,
    _with,
    fifo,
    gzip_bomb,
    lying_npz,
    reviews,
    series_csv,
    ts_file,
)

from mxlstm.cli import main
from mxlstm.data.sources import load_npz
from mxlstm.data.text import load_text_classification
from mxlstm.training.log import write_report
from mxlstm.training.metrics import ClassificationMetrics

CASE_SECONDS = 60


@pytest.fixture(autouse=True)
def _clean_logging():
    _drop_run_log_handlers()
    yield
    _drop_run_log_handlers()


@pytest.fixture
def deadline():
    """Fail (instead of hanging) when the test body runs longer than CASE_SECONDS: SIGALRM
    interrupts a blocking open() or read() in the main thread."""

    def expire(signum, frame):
        raise TimeoutError(f"no answer within {CASE_SECONDS} s (blocked?)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(CASE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# Each case: tmp_path -> (argv, fragments that the one error line must contain).
Case = Callable[[Path], tuple[list[str], list[str]]]


def _cases() -> dict[str, Case]:
    c: dict[str, Case] = {}
    small = ["--set", "model.embed_size=8"]

    # -- special files: never opened, so never blocking ----------------------------------
    c["fifo-as-text-data"] = lambda t: (
        train("text", t, "--data", str(fifo(t / "reviews.tsv")), *small),
        [f"{t / 'reviews.tsv'}: is a named pipe (FIFO), expected a regular file"])
    c["fifo-as-series-data"] = lambda t: (
        train("digits", t, "--data", str(fifo(t / "series.npz"))),
        [f"{t / 'series.npz'}: is a named pipe (FIFO)"])
    c["fifo-as-test-data"] = lambda t: (
        train("text", t, "--data", str(write(t / "r.tsv", reviews(60))),
              "--test-data", str(fifo(t / "test.tsv")), *small),
        [f"{t / 'test.tsv'}: is a named pipe (FIFO)"])
    c["fifo-as-config"] = lambda t: (
        ["train", "--task", "digits", "--config", str(fifo(t / "run.toml")), "--out",
         str(t / "run"), *TINY],
        [f"{t / 'run.toml'}: is a named pipe (FIFO), expected a TOML file"])
    c["symlink-to-fifo"] = lambda t: (
        train("lm", t, "--data", str(_symlink(fifo(t / "pipe"), t / "book.txt")), *small),
        [f"{t / 'book.txt'}: is a named pipe (FIFO)"])
    c["dev-zero-as-series-data"] = lambda t: (
        train("digits", t, "--data", "/dev/zero"),
        ["/dev/zero: is a character device, expected a regular file"])
    c["dev-zero-as-corpus"] = lambda t: (
        train("lm", t, "--data", "/dev/zero", *small),
        ["/dev/zero: is a character device"])

    # -- size caps ---------------------------------------------------------------------
    c["gzip-bomb-tsv"] = lambda t: (
        train("text", t, "--data", str(gzip_bomb(t / "r.tsv.gz", 24)),
              "--set", "data.max_input_mb=2", *small),
        [f"{t / 'r.tsv.gz'}: decompresses to more than the input size cap of 2 MB "
         f"(data.max_input_mb=2; raise the key to read it)"])
    c["gzip-bomb-idx"] = lambda t: (
        write(t / "train-labels-idx1-ubyte.gz", gzip.compress(idx_labels())) and
        train("digits", t, "--data", str(gzip_bomb(t / "train-images-idx3-ubyte.gz", 8)),
              "--set", "data.max_input_mb=1"),
        [f"{t / 'train-images-idx3-ubyte.gz'}: decompresses to more than the input size "
         f"cap of 1 MB"])
    c["file-over-the-cap"] = lambda t: (
        train("text", t, "--data", str(write(t / "big.tsv", reviews(80000))),
              "--set", "data.max_input_mb=1", *small),
        [f"{t / 'big.tsv'}: file of 2.", "MB is larger than the input size cap of 1 MB "
         "(data.max_input_mb=1"])
    c["npz-member-over-the-cap"] = lambda t: (
        train("digits", t, "--data", str(_compressed_npz(t / "zeros.npz")),
              "--set", "data.max_input_mb=1"),
        [f"{t / 'zeros.npz'}: field x: declares 3.1 MB of data, more than the input size "
         f"cap of 1 MB"])
    c["npz-header-lies-about-its-shape"] = lambda t: (
        train("digits", t, "--data", str(lying_npz(t / "lie.npz"))),
        [f"{t / 'lie.npz'}: field x: cannot read array: damaged archive (header says shape "
         f"(1000000000000,)"])

    # -- header rows ---------------------------------------------------------------------
    c["tsv-header-not-naming-the-fields"] = lambda t: (
        train("text", t, "--data", str(write(t / "data.tsv", reviews(
            60, ("1", "0"), header="review\tsentiment\n"))), *small),
        [f"{t / 'data.tsv'}:1: the first row ('review', 'sentiment') looks like a header but "
         f"does not name data.text_field='text' / data.label_field='label': set "
         f"data.text_field=review data.label_field=sentiment, or data.header=false"])
    c["csv-header-other-case"] = lambda t: (
        train("text", t, "--data", str(write(t / "data.csv", reviews(
            60, header="Text\tLabel\n").replace("\t", ","))), *small),
        [f"{t / 'data.csv'}:1: the first row ('Text', 'Label') looks like a header",
         "set data.text_field=Text data.label_field=Label"])
    c["header-true-without-the-label-field"] = lambda t: (
        train("text", t, "--data", str(write(t / "data.tsv", reviews(
            60, header="text\tsentiment\n"))), "--set", "data.header=true", *small),
        [f"{t / 'data.tsv'}:1: field label: missing column 'label' (header has: text, "
         f"sentiment; set data.label_field"])

    # -- class sets ----------------------------------------------------------------------
    c["tsv-one-class"] = lambda t: (
        train("text", t, "--data", str(write(t / "r.tsv", reviews(60, ("pos",)))), *small),
        [f"{t / 'r.tsv'}: field label: only one class ('pos') in 60 examples"])
    c["tsv-one-class-spelled-two-ways"] = lambda t: (
        train("text", t, "--data", str(write(t / "r.tsv", reviews(60, ("1", "1.0")))),
              *small),
        [f"{t / 'r.tsv'}: field label: only one class ('1') in 60 examples"])
    c["npz-one-class"] = lambda t: (
        train("digits", t, "--data", str(npz(t / "one.npz", x=np.ones((30, 4, 2)),
                                             y=np.full(30, 7)))),
        [f"{t / 'one.npz'}: field label: only one class ('7') in 24 series"])
    c["tsv-label-column-is-an-id"] = lambda t: (
        train("text", t, "--data", str(write(t / "r.tsv", reviews(
            40, tuple(f"row{i}" for i in range(40))))), *small),
        [f"{t / 'r.tsv'}: field label: every one of the 40 examples has a label of its own"])
    c["npz-more-classes-than-series"] = lambda t: (
        train("digits", t, "--data", str(npz(
            t / "names.npz", x=np.ones((12, 4, 2)), y=np.arange(12) % 2,
            label_names=np.array([f"c{k}" for k in range(40)])))),
        [f"{t / 'names.npz'}: field label: more classes (40) than series"])
    c["npz-label-outside-label-names"] = lambda t: (
        train("digits", t, "--data", str(npz(
            t / "names.npz", x=np.ones((12, 4, 2)), y=np.arange(12) % 3,
            label_names=np.array(["a", "b"])))),
        [f"{t / 'names.npz'}: field y: label 2 outside 0..1"])
    c["jsonl-booleans-mixed-with-numbers"] = lambda t: (
        train("text", t, "--data", str(write(t / "r.jsonl", "".join(
            json.dumps({"text": f"film {i}", "label": [True, 1, False, 0][i % 4]}) + "\n"
            for i in range(40)))), *small),
        [f"{t / 'r.jsonl'}:2: field label: labels mix booleans and numbers ('true' on line "
         f"1, '1' on line 2)"])

    # -- numbers that overflow float32 -----------------------------------------------------
    c["npz-1e300"] = lambda t: (
        train("digits", t, "--data", str(npz(t / "big.npz", x=_with(np.ones((20, 4, 2)),
                                                                    (3, 1, 0), 1e300),
                                             y=np.arange(20) % 2))),
        [f"{t / 'big.npz'}: field x: value 1e+300 in sequence 3 at step 2, channel 1 does "
         f"not fit float32"])
    c["npz-4e38"] = lambda t: (
        train("digits", t, "--data", str(npz(t / "big.npz", x=_with(np.ones((20, 4, 2)),
                                                                    (0, 0, 1), -4e38),
                                             y=np.arange(20) % 2))),
        [f"{t / 'big.npz'}: field x: value -4e+38 in sequence 0 at step 1, channel 2"])
    c["csv-series-1e300"] = lambda t: (
        train("digits", t, "--data", str(write(t / "s.csv", series_csv(
            [f"{k},{k + 1},{k + 2},{'ab'[k % 2]}\n" for k in range(12)] +
            ["1,1e300,3,a\n"])))),
        [f"{t / 's.csv'}:13: value 1e+300 at position 2 does not fit float32"])
    c["ts-4e38"] = lambda t: (
        train("digits", t, "--data", str(write(t / "big.ts", ts_file(
            TS_ROWS + "1,2,4e38,4:a\n")))),
        [f"{t / 'big.ts'}:20: field dimension 1: value 4e+38 at position 3 does not fit "
         f"float32"])

    # -- empty sets --------------------------------------------------------------------------
    c["npz-n-0"] = lambda t: (
        train("digits", t, "--data", str(npz(t / "empty.npz", x=np.zeros((0, 4, 2)),
                                             y=np.zeros(0, int)))),
        [f"{t / 'empty.npz'}: field x: no sequences (array 'x' holds 0 items)"])
    c["idx-n-0"] = lambda t: (
        write(t / "train-labels-idx1-ubyte", idx_labels(0)) and
        train("digits", t, "--data", str(write(t / "train-images-idx3-ubyte",
                                               idx_images(n=0)))),
        [f"{t / 'train-images-idx3-ubyte'}: no images (the IDX header says 0 items)"])
    c["csv-series-header-only"] = lambda t: (
        train("digits", t, "--data", str(write(t / "s.csv", "v1,v2,label\n"))),
        [f"{t / 's.csv'}: no data rows"])
    c["ts-no-series"] = lambda t: (
        train("digits", t, "--data", str(write(t / "e.ts", ts_file("")))),
        [f"{t / 'e.ts'}: no series after @data"])
    c["tsv-header-and-blank-lines"] = lambda t: (
        train("text", t, "--data", str(write(t / "r.tsv", "text\tlabel\n\n  \n")), *small),
        [f"{t / 'r.tsv'}: no examples (only a header)"])
    c["text-test-file-empty-after-header"] = lambda t: (
        train("text", t, "--data", str(write(t / "r.tsv", reviews(60))),
              "--test-data", str(write(t / "test.csv", "text,label\n")), *small),
        [f"{t / 'test.csv'}: no examples"])
    return c


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_one_line_exit_2_nothing_touched(name, tmp_path, capsys, deadline):
    argv, fragments = CASES[name](tmp_path)
    _drop_run_log_handlers()
    capsys.readouterr()
    before = snapshot(tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("mxlstm: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert out == ""
    assert snapshot(tmp_path) == before  # inputs untouched; no --out made
    assert not (tmp_path / "run").exists()


def test_there_are_at_least_20_hostile_cases():
    assert len(CASES) >= 20


# --------------------------------------------------------------------------- real process
def _cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MXNET_ENGINE_TYPE", None)
    return subprocess.run([sys.executable, "-m", "mxlstm.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_fifo_as_data_in_a_real_process_answers_instead_of_blocking(tmp_path):
    pipe = fifo(tmp_path / "reviews.tsv")
    proc = _cli(["train", "--task", "text", "--data", str(pipe), "--out",
                 str(tmp_path / "run"), *TINY], timeout=120)  # a hang raises TimeoutExpired
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"mxlstm: error: {pipe}: is a named pipe (FIFO), expected a regular file"]
    assert proc.stdout == "" and not (tmp_path / "run").exists()


def test_gzip_bomb_stays_within_the_cap_in_memory(tmp_path, deadline):
    """Reading stops at the cap: a 64 MB bomb under a 4 MB cap allocates a few MB."""
    from mxlstm.data.validate import input_limit
    from mxlstm.errors import DataError

    bomb = gzip_bomb(tmp_path / "r.tsv.gz", 64)
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with input_limit(4), pytest.raises(
                DataError, match="decompresses to more than the input size cap of 4 MB"):
            load_text_classification(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


# --------------------------------------------------------------------------- behaviour
def test_labels_1_and_1_0_are_one_class(tmp_path):
    rows = [{"text": f"film {i}", "label": v}
            for i, v in enumerate([1, 1.0, "1", "1.0", " 1 ", 0, 0.0, "0", "-0", "+1"])]
    jl = write(tmp_path / "r.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    ds = load_text_classification(jl)
    assert ds.label_names == ["0", "1"]
    assert ds.label_ids.tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 1]
    tsv = write(tmp_path / "r.tsv", "".join(f"{r['text']}\t{r['label']}\n" for r in rows))
    assert load_text_classification(tsv).label_names == ["0", "1"]


def test_a_run_on_labels_1_and_1_0_learns_two_classes(tmp_path, capsys, deadline):
    data = write(tmp_path / "r.tsv", reviews(80, ("1", "0", "1.0", "0.0")))
    out = tmp_path / "run"
    assert main(["train", "--task", "text", "--data", str(data), "--out", str(out), *TINY,
                 "--set", "model.embed_size=8"]) == 0, capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["label_names"] == ["0", "1"]
    report = json.loads((out / "report.json").read_text())
    assert np.array(report["test"]["confusion"]).shape == (2, 2)


def test_npz_label_2e9_is_one_class_not_2e9_names(tmp_path, capsys, deadline):
    path = npz(tmp_path / "big-label.npz", x=np.random.RandomState(0).rand(40, 5, 2),
               y=np.where(np.arange(40) % 2, 2_000_000_000, 3))
    tracemalloc.start()
    try:
        ds = load_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ds.label_names == ["3", "2000000000"] and peak < 8 << 20
    assert ds.labels.tolist()[:4] == [0, 1, 0, 1]
    out = tmp_path / "run"
    assert main(["train", "--task", "digits", "--data", str(path), "--out", str(out),
                 *TINY]) == 0, capsys.readouterr().err
    assert json.loads((out / "meta.json").read_text())["label_names"] == ["3", "2000000000"]


def test_10000_classes_report_has_no_k_by_k_matrix(tmp_path):
    k, n, batch = 10_000, 4000, 500
    rng = np.random.RandomState(0)
    labels = rng.randint(0, k, n)
    hit = rng.rand(n) < 0.3
    predicted = np.where(hit, labels, (labels + 1) % k)
    tracemalloc.start()
    try:
        metrics = ClassificationMetrics(k)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert metrics.confusion is None and peak < 4 << 20  # a K x K int64 matrix is 800 MB
    for start in range(0, n, batch):
        logits = np.zeros((batch, k), np.float32)
        logits[np.arange(batch), predicted[start:start + batch]] = 1.0
        metrics.update(labels[start:start + batch], logits)
    result = metrics.result()
    assert "confusion" not in result and result["count"] == n
    assert result["accuracy"] == pytest.approx(hit.mean())
    report = tmp_path / "report.json"
    write_report(report, {"test": result})
    assert report.stat().st_size < 10_000
    small = ClassificationMetrics(50)
    small.update(labels[:100] % 50, np.eye(50, dtype=np.float32)[predicted[:100] % 50])
    assert np.array(small.result()["confusion"]).shape == (50, 50)
    assert small.result()["accuracy"] == pytest.approx(np.mean(hit[:100]))
