"""Bad input, tried as a new user would: every reader, config and CLI path answers with
exit status 2 and one line ``mxlstm: error: <file, key or field>: ...`` (no traceback),
and leaves existing outputs and checkpoints as they were (a new ``--out`` is not even
created)."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from e2e_inputs import (  # noqa: F401  (shared with the other e2e modules)
    REPO,
    TINY,
    TS_2D,
    TS_HEAD,
    TS_ROWS,
    Runs,
    _drop_run_log_handlers,
    _reviews,
    balanced,
    idx_images,
    idx_labels,
    npz,
    series_csv,
    snapshot,
    toml,
    train,
    truncated_npz,
    write,
)

from mxlstm.cli import main
from mxlstm.training import atomic


@pytest.fixture(autouse=True)
def _clean_logging():
    _drop_run_log_handlers()
    yield
    _drop_run_log_handlers()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("runs"))


def _set_json(path: Path, **changes) -> None:
    tree = json.loads(path.read_text())
    tree.update(changes)
    path.write_text(json.dumps(tree))


def _meta_of_text(d: Path) -> None:
    _set_json(d / "meta.json", task="text")


def _damage_config(d: Path) -> None:
    (d / "config.json").write_text('{"task": "digits", "model": {"hidden_size": ')


def _meta_without_labels(d: Path) -> None:
    meta = json.loads((d / "meta.json").read_text())
    del meta["label_names"]
    (d / "meta.json").write_text(json.dumps(meta))


# Each case: (tmp_path, runs) -> (argv, fragments the one error line must contain).
Case = Callable[[Path, Runs], tuple[list[str], list[str]]]


def _cases() -> dict[str, Case]:
    c: dict[str, Case] = {}

    # -- series files (task digits, --data / --test-data) ------------------------------
    c["npz-missing-file"] = lambda t, r: (
        train("digits", t, "--data", str(t / "nope.npz")), [f"{t / 'nope.npz'}: file not found"])
    c["data-is-a-directory"] = lambda t, r: (
        train("digits", t, "--data", str((t / "series").mkdir() or t / "series")),
        [f"{t / 'series'}: is a directory"])
    c["ts-bad-header"] = lambda t, r: (
        train("digits", t, "--data", str(write(
            t / "bad.ts", TS_HEAD.replace("@classLabel true", "@classLabel yes") + TS_ROWS))),
        [f"{t / 'bad.ts'}:6: field @classLabel: expected true or false, got 'yes'"])
    c["ts-truncated-last-line"] = lambda t, r: (
        train("digits", t, "--data", str(write(t / "cut.ts", (TS_HEAD + TS_ROWS)[:-7]))),
        [f"{t / 'cut.ts'}:19: missing label"])
    c["ts-mixed-dimensions"] = lambda t, r: (
        train("digits", t, "--data", str(write(
            t / "dims.ts", TS_2D + "1,2,3:4,5,6:a\n1,2,3:4,5,6:b\n7,8,9:a\n"))),
        [f"{t / 'dims.ts'}:7: found 1 dimensions, expected 2"])
    c["ts-infinite-value"] = lambda t, r: (
        train("digits", t, "--data", str(write(
            t / "inf.ts", TS_HEAD + TS_ROWS + "1,inf,3,4:a\n"))),
        [f"{t / 'inf.ts'}:20: field dimension 1: infinite value at position 2"])
    c["ts-unlabelled"] = lambda t, r: (
        train("digits", t, "--data", str(write(
            t / "nolabel.ts", "@problemName toy\n@univariate true\n@classLabel false\n@data\n"
            + "1,2,3\n4,5,6\n" * 6))),
        [f"{t / 'nolabel.ts'}: field label: series without class labels"])
    c["ts-regression-targets"] = lambda t, r: (
        train("digits", t, "--data", str(write(
            t / "target.ts", "@problemName toy\n@univariate true\n@targetLabel true\n@data\n"
            + "1,2,3:0.5\n4,5,6:1.25\n" * 6))),
        [f"{t / 'target.ts'}: field label: label 0.5 is not a class number"])
    c["npz-wrong-keys"] = lambda t, r: (
        train("digits", t, "--data", str(npz(t / "keys.npz", features=np.zeros((4, 3, 2)),
                                              labels=np.zeros(4, int)))),
        [f"{t / 'keys.npz'}: field x: no array 'x' (has: features, labels)"])
    c["npz-nan-features"] = lambda t, r: (
        train("digits", t, "--data", str(npz(
            t / "nan.npz", x=np.where(np.arange(60).reshape(10, 3, 2) == 31, np.nan, 1.0),
            y=np.arange(10) % 2))),
        [f"{t / 'nan.npz'}: field x: non-finite value in sequence 5"])
    c["npz-truncated"] = lambda t, r: (
        train("digits", t, "--data", str(truncated_npz(t))),
        [f"{t / 'cut.npz'}: not a readable .npz file"])
    c["npz-binary-junk"] = lambda t, r: (
        train("digits", t, "--data", str(write(t / "junk.npz",
                                               np.random.RandomState(1).bytes(4096)))),
        [f"{t / 'junk.npz'}: not a readable .npz file"])
    c["idx-gzipped-without-gz-name"] = lambda t, r: (
        train("digits", t, "--data", str(write(t / "train-images-idx3-ubyte",
                                               gzip.compress(idx_images(), mtime=0)))),
        [f"{t / 'train-images-idx3-ubyte'}: no IDX labels file"])
    c["idx-wrong-magic-number"] = lambda t, r: (
        write(t / "train-labels-idx1-ubyte", idx_labels()) and
        train("digits", t, "--data", str(write(t / "train-images-idx3-ubyte",
                                               gzip.compress(idx_images(), mtime=0)))),
        [f"{t / 'train-images-idx3-ubyte'}: field magic: bad IDX magic number 529205248, "
         f"expected 2051"])
    c["idx-truncated"] = lambda t, r: (
        write(t / "t10k-labels-idx1-ubyte", idx_labels()) and
        train("digits", t, "--data", str(write(t / "t10k-images-idx3-ubyte",
                                               idx_images(data=300)))),
        [f"{t / 't10k-images-idx3-ubyte'}: header says shape (10, 8, 8) (640 bytes of data) "
         f"but the file has 300"])
    c["csv-semicolon-delimiter"] = lambda t, r: (
        train("digits", t, "--data", str(write(t / "semi.csv",
                                               series_csv("ab").replace(",", ";")))),
        [f"{t / 'semi.csv'}:2: need at least one value and a label"])
    c["csv-nan-value"] = lambda t, r: (
        train("digits", t, "--data", str(write(t / "nan.csv",
                                               series_csv("ab") + "1,nan,3,a\n"))),
        [f"{t / 'nan.csv'}:13: non-finite value"])
    c["csv-gz-not-gzip"] = lambda t, r: (
        train("digits", t, "--data", str(write(t / "series.csv.gz", series_csv("ab")))),
        [f"{t / 'series.csv.gz'}: cannot read file (Not a gzipped file"])
    c["csv-too-few-rows"] = lambda t, r: (
        train("digits", t, "--data", str(write(t / "two.csv", series_csv("ab", n=2)))),
        [f"{t / 'two.csv'}: too few series (2) to hold out a test split"])
    c["test-data-other-channel-count"] = lambda t, r: (
        train("digits", t, "--data", str(npz(t / "train.npz", **balanced(20, 5, 2))),
              "--test-data", str(npz(t / "test.npz", **balanced(10, 5, 3)))),
        [f"{t / 'test.npz'}: test data has 3 channels, training data 2"])
    c["test-data-label-unseen-in-training"] = lambda t, r: (
        train("digits", t, "--data", str(write(t / "train.csv", series_csv("ab"))),
              "--test-data", str(write(t / "test.csv", series_csv("ac")))),
        [f"{t / 'test.csv'}: field label: label 'c' does not occur in training (known: a, b)"])

    # -- text classification files ---------------------------------------------------
    c["tsv-missing-label-column"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "r.tsv", "text\tscore\ngood\t1\nbad\t0\n"))),
        [f"{t / 'r.tsv'}:1: field label: missing column 'label'"])
    c["tsv-actually-comma-separated"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "r.tsv", "good film,pos\nbad film,neg\n"))),
        [f"{t / 'r.tsv'}:1: 1 fields, expected 2 columns (text, label)"])
    c["csv-ragged-row"] = lambda t, r: (
        train("text", t, "--data", str(write(
            t / "r.csv", "text,label\ngood film,pos\nbad, dull film,neg\n"))),
        [f"{t / 'r.csv'}:3: 3 fields, expected 2 columns as the header"])
    c["jsonl-broken-line"] = lambda t, r: (
        train("text", t, "--data", str(write(
            t / "r.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", "label": \n'))),
        [f"{t / 'r.jsonl'}:2: invalid JSON"])
    c["tsv-utf16"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "r.tsv",
                                             "good film\tpos\nbad\tneg\n".encode("utf-16")))),
        [f"{t / 'r.tsv'}:1: invalid UTF-8 byte 0xff at column 1"])
    c["jsonl-random-bytes"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "r.jsonl",
                                             np.random.RandomState(0).bytes(2000)))),
        [f"{t / 'r.jsonl'}:1: invalid UTF-8 byte"])
    c["tsv-empty-text"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "r.tsv", "good film\tpos\n\tneg\n"))),
        [f"{t / 'r.tsv'}:2: field text: empty text"])
    c["csv-huge-line"] = lambda t, r: (
        train("text", t, "--data", str(write(
            t / "r.csv", 'text,label\nshort,pos\n"' + "word " * 40000 + '",neg\n'))),
        [f"{t / 'r.csv'}:3: cannot parse as CSV (field larger than field limit"])
    c["text-test-label-unseen-in-training"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "train.tsv", _reviews(40))),
              "--test-data", str(write(t / "test.tsv", "text\tlabel\nso so\tneutral\n")),
              "--set", "model.embed_size=8"),
        [f"{t / 'test.tsv'}:2: field label: label 'neutral' does not occur in training "
         f"(known: neg, pos)"])
    c["text-txt-extension"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "reviews.txt", "good film\tpos\n"))),
        [f"{t / 'reviews.txt'}: cannot tell the format from the file name"])
    c["tsv-header-only"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "r.tsv", "text\tlabel\n"))),
        [f"{t / 'r.tsv'}: no examples (only a header)"])
    c["tsv-too-few-rows"] = lambda t, r: (
        train("text", t, "--data", str(write(t / "r.tsv", "good\tpos\nbad\tneg\nok\tpos\n"))),
        [f"{t / 'r.tsv'}: too few examples for a training, validation and test split"])

    # -- language-model corpora --------------------------------------------------------
    lm = ["--set", "model.embed_size=8"]
    c["lm-gz-not-gzip"] = lambda t, r: (
        train("lm", t, "--data", str(write(t / "book.txt.gz", "It was a dark night.\n")), *lm),
        [f"{t / 'book.txt.gz'}: cannot read file (Not a gzipped file"])
    c["lm-empty-file"] = lambda t, r: (
        train("lm", t, "--data", str(write(t / "book.txt", "\n  \n\n")), *lm),
        [f"{t / 'book.txt'}: empty file"])
    c["lm-corpus-too-short"] = lambda t, r: (
        train("lm", t, "--data", str(write(t / "book.txt", "It was a dark night.\n")), *lm),
        [f"{t / 'book.txt'}: training split of 6 tokens is too short for batch size"])

    # -- configuration -----------------------------------------------------------------
    c["toml-wrong-type"] = lambda t, r: (
        toml(t, "[train]\nepochs = 2.5\n"),
        [f"{t / 'run.toml'}: config key train.epochs: expected int, got 2.5"])
    c["toml-unknown-key"] = lambda t, r: (
        toml(t, "[model]\nhidden = 64\n"),
        [f"{t / 'run.toml'}: unknown config key 'model.hidden'; did you mean model.hidden_size?"])
    c["toml-syntax-error"] = lambda t, r: (
        toml(t, "[model\nhidden_size = 64\n"), [f"{t / 'run.toml'}: not valid TOML"])
    c["toml-section-not-a-table"] = lambda t, r: (
        toml(t, "train = 5\n"),
        [f"{t / 'run.toml'}: top-level key 'train' must be a [section] table"])
    c["toml-is-a-directory"] = lambda t, r: (
        ["config", "--task", "text", "--config", str(t)],
        [f"{t}: is a directory, expected a TOML file"])
    c["set-wrong-type"] = lambda t, r: (
        train("digits", t, "--set", "model.bidirectional=maybe"),
        ["command line: config key model.bidirectional: expected bool, got 'maybe'"])
    c["set-unknown-key"] = lambda t, r: (
        train("digits", t, "--set", "train.learning_rate=0.1"),
        ["command line: unknown config key 'train.learning_rate'"])
    c["set-out-of-range"] = lambda t, r: (
        train("digits", t, "--set", "data.valid_fraction=1.5"),
        ["config key data.valid_fraction: must be in [0, 1), got '1.5'"])
    c["set-head-units-not-numbers"] = lambda t, r: (
        train("digits", t, "--set", "model.head_units=wide"),
        ["config key model.head_units: expected comma-separated positive integers"])
    c["epochs-zero"] = lambda t, r: (
        train("digits", t, "--epochs", "0"),
        ["command line: config key train.epochs: must be at least 1, got 0"])

    # -- output and model directories ----------------------------------------------------
    c["out-under-a-regular-file"] = lambda t, r: (
        ["train", "--task", "digits", "--out", str(write(t / "notes.txt", "x") / "run"), *TINY],
        [f"{t / 'notes.txt' / 'run'}: output directory is not writable "
         f"({t / 'notes.txt'} is not a directory)"])
    c["resume-run-with-damaged-config"] = lambda t, r: (
        ["train", "--task", "digits", "--resume", *TINY, "--out",
         str(r.copy("digits", t / "run", _damage_config))],
        [f"{t / 'run' / 'config.json'}: damaged, not valid JSON"])
    c["model-meta-of-another-task"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("digits", t / "m", _meta_of_text))],
        [f"{t / 'm'}: meta.json is of task 'text' but config.json of 'digits'"])
    c["model-damaged-config"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("digits", t / "m", _damage_config))],
        [f"{t / 'm' / 'config.json'}: damaged, not valid JSON"])
    c["model-foreign-config"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("digits", t / "m", lambda d: write(
            d / "config.json", '{"task": "digits", "model": {"units": 3}}')))],
        [f"{t / 'm' / 'config.json'}: not an mxlstm run configuration (no 'data' key)"])
    c["model-empty-dir"] = lambda t, r: (
        ["evaluate", "--model", str((t / "m").mkdir() or t / "m")],
        [f"{t / 'm'}: not a model directory ({t / 'm' / 'config.json'} is missing)"])
    c["model-is-a-file"] = lambda t, r: (
        ["evaluate", "--model", str(write(t / "model.params", b"\x00" * 64))],
        [f"{t / 'model.params'}: not a model directory (a file)"])
    c["model-meta-without-label-names"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("digits", t / "m", _meta_without_labels))],
        [f"{t / 'm' / 'meta.json'}: damaged, no 'label_names' list"])
    c["model-text-without-vocab"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("text", t / "m",
                                           lambda d: (d / "vocab.json").unlink()))],
        [f"{t / 'm' / 'vocab.json'}: file not found"])
    c["model-without-checkpoints"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("digits", t / "m",
                                           lambda d: shutil.rmtree(d / "checkpoints")))],
        [f"{t / 'm'}: no valid checkpoint 'best' found"])
    c["evaluate-data-other-channel-count"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("digits", t / "m")), "--data",
         str(npz(t / "rgb.npz", **balanced(10, 8, 3)))],
        [f"{t / 'rgb.npz'}: series have 3 channels, the model was trained on 8"])
    c["evaluate-data-label-unseen-in-training"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("text", t / "m")), "--data",
         str(write(t / "new.tsv", "text\tlabel\ngood film\tpos\nso so\tmixed\n"))],
        [f"{t / 'new.tsv'}:3: field label: label 'mixed' does not occur in training"])
    c["evaluate-data-missing"] = lambda t, r: (
        ["evaluate", "--model", str(r.copy("text", t / "m")), "--data", str(t / "new.tsv")],
        [f"{t / 'new.tsv'}: file not found"])
    return c


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(name, tmp_path, runs, capsys):
    argv, fragments = CASES[name](tmp_path, runs)
    _drop_run_log_handlers()
    capsys.readouterr()
    before = snapshot(tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("mxlstm: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]
    assert out == ""
    assert snapshot(tmp_path) == before  # inputs, runs and models untouched; no new --out


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


# --------------------------------------------------------------------------- disk full
def _disk_full(path, data):
    raise OSError(errno.ENOSPC, "No space left on device")


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("mxlstm: error: ")]


def test_disk_full_during_checkpoint_of_a_resumed_run_keeps_old_checkpoints(
        tmp_path, runs, capsys, monkeypatch):
    out = runs.copy("digits", tmp_path / "run")
    before = snapshot(out)
    monkeypatch.setattr(atomic, "write_new", _disk_full)
    code = main(["train", "--task", "digits", "--out", str(out), "--resume", *TINY,
                 "--extend-epochs", "1"])
    err = capsys.readouterr().err
    errors = _error_lines(err)
    assert code == 2 and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0]
    assert f"{out / 'checkpoints'}" in errors[0]
    assert "cannot save the checkpoint of epoch 2 (no space left on device)" in errors[0]
    after = snapshot(out)
    # Checkpoints, the report and the metadata are byte for byte as they were; a resume
    # rewrites config.json (--extend-epochs) and appends to the logs by design.
    logs = {"train.log", "metrics.jsonl", "config.json"}
    assert {k: v for k, v in after.items() if k not in logs} == \
        {k: v for k, v in before.items() if k not in logs}
    assert after["metrics.jsonl"].startswith(before["metrics.jsonl"])
    old, new = json.loads(before["config.json"]), json.loads(after["config.json"])
    assert new["train"].pop("epochs") == 2 and old["train"].pop("epochs") == 1 and old == new


def test_disk_full_during_first_checkpoint_leaves_no_partial_checkpoint(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(atomic, "write_new", _disk_full)
    assert main(["train", "--task", "digits", "--out", str(out), *TINY]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1
    assert f"{out / 'checkpoints' / 'best'}: cannot save the checkpoint of epoch 1" in errors[0]
    assert "(no space left on device)" in errors[0]
    assert not out.exists()  # a run that never saved a checkpoint leaves nothing behind


# --------------------------------------------------------------------------- real process
def test_real_process_exits_2_with_one_line_and_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "digits.npz"
    args = ["train", "--task", "digits", "--data", str(missing), "--out", str(tmp_path / "run"),
            *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MXNET_ENGINE_TYPE", None)  # setting it makes MXNet log a line of its own

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mxlstm.cli", *extra, *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)

    plain = run()
    assert plain.returncode == 2
    assert plain.stderr.splitlines() == [f"mxlstm: error: {missing}: file not found"]
    assert plain.stdout == ""
    debug = run("--debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert f"mxlstm.errors.DataError: {missing}: file not found" in debug.stderr
    assert not (tmp_path / "run").exists()
