"""``mxlstm predict`` and the standalone predictor on hostile input: every case exits 2 with
one line that names the file, field or option, no traceback, in a real process under a
timeout (a FIFO must fail at once, not block), and leaves every file as it was. Then the
positive side: every input format ``train`` reads gives the predictions of the ``.npy``
path, bit for bit, and ``--top-k`` ranks labels and tokens the same way.

Tiny runs (1 epoch, 2 batches, hidden 8) are trained and exported once per module.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_bad_input import TINY, _drop_run_log_handlers, _reviews, write

from mxlstm.cli import main
from mxlstm.data.fileio import embedded_path, read_text
from mxlstm.deploy import predictor as standalone

REPO = Path(__file__).resolve().parents[2]
DEPLOY = Path(standalone.__file__).parent
TIMEOUT = 90


# --------------------------------------------------------------------------- exports
def _uni_csv(n: int = 40, t: int = 6) -> str:
    rng = np.random.RandomState(0)
    return "".join(",".join(f"{v:.3f}" for v in rng.rand(t)) + f",{k % 2}\n" for k in range(n))


class Exports:
    """Tiny runs and their exports, made on first use: ``digits`` (8 features, 10 classes),
    ``uni`` (univariate CSV series of 6 steps, labels 0/1), ``text`` (TSV reviews),
    ``lm`` (a 500-token language model)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._made: dict[str, Path] = {}

    def run(self, name: str) -> Path:
        return self.base / "runs" / name

    def prefix(self, name: str) -> Path:
        if name not in self._made:
            out, args = self.run(name), []
            if name == "uni":
                args = ["--data", str(write(self.base / "uni.csv", _uni_csv()))]
            elif name == "text":
                args = ["--data", str(write(self.base / "reviews.tsv", _reviews())),
                        "--set", "model.embed_size=8"]
            elif name == "lm":
                corpus = read_text(embedded_path("austen/persuasion.txt.gz"))[:40000]
                args = ["--data", str(write(self.base / "corpus.txt", corpus)), "--set",
                        "data.max_vocab=500", "--set", "model.embed_size=8", "--set",
                        "train.eval_batch_size=8"]
            task = "digits" if name == "uni" else name
            prefix = self.base / "exports" / name
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                assert main(["train", "--task", task, "--out", str(out), *TINY, *args]) == 0
                _drop_run_log_handlers()
                assert main(["export", "--model", str(out), "--out", str(prefix)]) == 0
            self._made[name] = prefix
        return self._made[name]

    def edited(self, name: str, dest: Path, edit: Callable[[dict], object]) -> Path:
        """A copy of export ``name`` at prefix ``dest`` whose meta.json ``edit`` changed."""
        source = self.prefix(name)
        for suffix in ("-symbol.json", "-0000.params"):
            shutil.copy(str(source) + suffix, str(dest) + suffix)
        meta = json.loads(Path(str(source) + "-meta.json").read_text())
        edit(meta)
        Path(str(dest) + "-meta.json").write_text(json.dumps(meta))
        return dest


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("hostile-predict"))


def snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root``: the sha256 of a file (size and mtime above 1 MB, e.g. a
    sparse file), ``dir`` or ``other`` (a FIFO is never read)."""
    found = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_fifo() or not (p.is_file() or p.is_dir()):
            found[str(p)] = ("other", st.st_mode)
        elif p.is_dir():
            found[str(p)] = "dir"
        elif st.st_size > 2 ** 20:
            found[str(p)] = (st.st_size, st.st_mtime_ns)
        else:
            found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MXNET_ENGINE_TYPE", None)  # setting it makes MXNet log a line of its own
    return env


# The standalone predictor as a script in a fresh `python -I -S -B` process (no .pyc): only
# the copied directory and site-packages (for mxnet and numpy) are on the path.
RUN_SCRIPT = ("import runpy, sys; sys.path.append(sys.argv[1]); sys.argv = sys.argv[2:]; "
              "sys.path.insert(0, sys.argv[0].rsplit('/', 1)[0]); "
              "runpy.run_path(sys.argv[0], run_name='__main__')")


def standalone_command(deploy: Path) -> list[str]:
    for name in ("predictor.py", "predictor_inputs.py", "predictor_backends.py"):
        if not (deploy / name).exists():
            deploy.mkdir(parents=True, exist_ok=True)
            shutil.copy(DEPLOY / name, deploy / name)
    return [sys.executable, "-I", "-S", "-B", "-c", RUN_SCRIPT, sysconfig.get_paths()["purelib"],
            str(deploy / "predictor.py")]


def run(command: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, input=stdin, stdin=None if stdin is not None else
                          subprocess.DEVNULL, capture_output=True, cwd=REPO, env=_env(),
                          timeout=TIMEOUT)


# --------------------------------------------------------------------------- hostile cases
def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


DIGITS_ROWS = np.random.RandomState(3).rand(4, 8, 8) * 16


# Each case: (tmp_path, exports) -> (predict arguments, fragments of the error line, stdin
# bytes or None); cases named "standalone-..." run the copied predictor.py instead.
Case = Callable[[Path, Exports], tuple[list[str], list[str], bytes | None]]


def _cases() -> dict[str, Case]:
    c: dict[str, Case] = {}

    def digits(t: Path, e: Exports, path: Path | str, *extra: str) -> list[str]:
        return ["--model", str(e.prefix("digits")), "--input", str(path), *extra]

    # -- what the input is: FIFO, device, directory, size, emptiness -------------------
    c["fifo"] = lambda t, e: (digits(t, e, _fifo(t / "rows.npy")),
                              [f"{t / 'rows.npy'}: not a regular file (a named pipe (FIFO))"],
                              None)
    c["character-device"] = lambda t, e: (digits(t, e, "/dev/zero"),
                                          ["/dev/zero: not a regular file (a character device)"],
                                          None)
    c["directory"] = lambda t, e: (digits(t, e, t), [f"{t}: is a directory, expected a file"],
                                   None)
    c["missing-file"] = lambda t, e: (digits(t, e, t / "nope.npy"),
                                      [f"{t / 'nope.npy'}: file not found"], None)
    c["above-the-size-cap"] = lambda t, e: (
        digits(t, e, _sparse(t / "huge.npy", 257 * 2 ** 20)),
        [f"{t / 'huge.npy'}: 269484032 bytes, above the limit of 256 MiB", "--max-input-mb"],
        None)
    c["empty-file"] = lambda t, e: (digits(t, e, write(t / "rows.csv", b"")),
                                    [f"{t / 'rows.csv'}: empty file"], None)
    c["array-of-zero-rows"] = lambda t, e: (
        digits(t, e, _npy(t / "none.npy", np.zeros((0, 8, 8), np.float32))),
        [f"{t / 'none.npy'}: no inputs (an array of shape (0, 8, 8))"], None)
    c["csv-header-only"] = lambda t, e: (
        ["--model", str(e.prefix("uni")), "--input", str(write(t / "h.csv", "a,b,c,label\n"))],
        [f"{t / 'h.csv'}: no inputs (only a header or comments)"], None)
    c["empty-stdin"] = lambda t, e: (digits(t, e, "-"), ["<stdin>: empty input"], b"")

    # -- formats -----------------------------------------------------------------------
    c["npz-without-x"] = lambda t, e: (
        digits(t, e, _npz(t / "two.npz", a=DIGITS_ROWS, b=DIGITS_ROWS)),
        [f"{t / 'two.npz'}: field x: no array 'x' (has: a, b)"], None)
    c["npz-lengths-out-of-range"] = lambda t, e: (
        digits(t, e, _npz(t / "len.npz", x=DIGITS_ROWS, lengths=np.array([8, 9, 1, 2]))),
        [f"{t / 'len.npz'}: field lengths: length 9 of row 2 outside 1..8"], None)
    c["npy-with-nan"] = lambda t, e: (
        digits(t, e, _npy(t / "nan.npy", np.where(np.arange(256).reshape(4, 8, 8) == 70,
                                                  np.nan, 1.0))),
        [f"{t / 'nan.npy'}: row 2: input holds NaN or infinite values"], None)
    c["ts-wrong-channel-count"] = lambda t, e: (
        digits(t, e, write(t / "x.ts", "@problemName x\n@dimensions 2\n@data\n1,2:3,4\n")),
        [f"{t / 'x.ts'}:4: found 2 channel(s), the model expects 8"], None)
    c["csv-label-column-ambiguous"] = lambda t, e: (
        ["--model", str(e.edited("uni", t / "uni", lambda m: m["input"].update(
            series_lengths=[3, 9]))), "--input", str(write(t / "s.csv", "1,2,3,1\n4,5,0\n"))],
        [f"{t / 's.csv'}: cannot tell whether the last column is a label",
         "--label-column yes or no"], None)
    c["csv-gz-not-gzip"] = lambda t, e: (
        ["--model", str(e.prefix("uni")), "--input", str(write(t / "s.csv.gz", "1,2,3\n"))],
        [f"{t / 's.csv.gz'}: cannot decompress"], None)
    c["text-model-given-npz"] = lambda t, e: (
        ["--model", str(e.prefix("text")), "--input", str(_npz(t / "x.npz", x=DIGITS_ROWS))],
        [f"{t / 'x.npz'}: a text model takes text", "not npz input"], None)
    c["jsonl-without-the-text-field"] = lambda t, e: (
        ["--model", str(e.prefix("text")), "--input", str(write(
            t / "r.jsonl", '{"text": "a fine film"}\n{"review": "dull"}\n'))],
        [f"{t / 'r.jsonl'}:2: field text: missing"], None)
    c["binary-junk-as-text"] = lambda t, e: (
        ["--model", str(e.prefix("text")), "--input", str(write(
            t / "r.txt", np.random.RandomState(0).bytes(512)))],
        [f"{t / 'r.txt'}:1: invalid UTF-8 byte"], None)

    # -- --top-k -------------------------------------------------------------------------
    c["top-k-zero"] = lambda t, e: (
        digits(t, e, _npy(t / "x.npy", DIGITS_ROWS), "--top-k", "0"),
        ["--top-k must be between 1 and 10 (the model's number of labels), got 0"], None)
    c["top-k-above-classes"] = lambda t, e: (
        digits(t, e, _npy(t / "x.npy", DIGITS_ROWS), "--top-k", "11"),
        ["--top-k must be between 1 and 10", "got 11"], None)
    c["top-k-negative-lm"] = lambda t, e: (
        ["--model", str(e.prefix("lm")), "--input", str(write(t / "p.txt", "she was\n")),
         "--top-k", "-3"],
        ["--top-k must be between 1 and", "(the model's number of tokens), got -3"], None)

    # -- model files -----------------------------------------------------------------------
    c["model-is-a-run-directory"] = lambda t, e: (
        ["--model", str(e.prefix("digits") and e.run("digits")), "--input",
         str(_npy(t / "x.npy", DIGITS_ROWS))],
        [f"{e.run('digits')} is a training run, not an export: run `mxlstm export --model "
         f"{e.run('digits')} --out PREFIX` first"], None)
    c["meta-format-version-a-string"] = lambda t, e: (
        digits(t, e, _npy(t / "x.npy", DIGITS_ROWS)) + ["--model", str(e.edited(
            "digits", t / "m", lambda m: m.update(format_version="1")))],
        [f"{t / 'm-meta.json'}: field format_version: expected an integer format version"],
        None)
    c["meta-without-input"] = lambda t, e: (
        digits(t, e, _npy(t / "x.npy", DIGITS_ROWS)) + ["--model", str(e.edited(
            "digits", t / "m", lambda m: m.pop("input")))],
        [f"{t / 'm-meta.json'}: field input: expected an object", "missing"], None)
    c["meta-fewer-label-names-than-outputs"] = lambda t, e: (
        digits(t, e, _npy(t / "x.npy", DIGITS_ROWS)) + ["--model", str(e.edited(
            "digits", t / "m", lambda m: m.update(label_names=m["label_names"][:3])))],
        [f"{t / 'm-meta.json'}: field label_names: 3 names, but the graph has 10 outputs"],
        None)
    c["meta-label-names-not-strings"] = lambda t, e: (
        digits(t, e, _npy(t / "x.npy", DIGITS_ROWS)) + ["--model", str(e.edited(
            "digits", t / "m", lambda m: m.update(label_names=list(range(10)))))],
        [f"{t / 'm-meta.json'}: field label_names: expected a list of strings"], None)
    c["meta-states-not-a-list"] = lambda t, e: (
        digits(t, e, _npy(t / "x.npy", DIGITS_ROWS)) + ["--model", str(e.edited(
            "digits", t / "m", lambda m: m["input"].update(states={"h": 1})))],
        [f"{t / 'm-meta.json'}: field input.states: expected a list"], None)
    c["meta-features-missing"] = lambda t, e: (
        digits(t, e, _npy(t / "x.npy", DIGITS_ROWS)) + ["--model", str(e.edited(
            "digits", t / "m", lambda m: m["input"].pop("features")))],
        [f"{t / 'm-meta.json'}: field input.features: expected an integer >= 1"], None)

    # -- the standalone predictor's own command line ---------------------------------------
    c["standalone-fifo"] = lambda t, e: (
        [str(e.prefix("digits")), str(_fifo(t / "rows.ts"))],
        [f"{t / 'rows.ts'}: not a regular file (a named pipe (FIFO))"], None)
    c["standalone-meta-format-version-a-string"] = lambda t, e: (
        [str(e.edited("digits", t / "m", lambda m: m.update(format_version="1"))),
         str(_npy(t / "x.npy", DIGITS_ROWS))],
        [f"{t / 'm-meta.json'}: field format_version"], None)
    c["standalone-meta-fewer-label-names"] = lambda t, e: (
        [str(e.edited("digits", t / "m", lambda m: m.update(label_names=["0", "1"]))),
         str(_npy(t / "x.npy", DIGITS_ROWS))],
        [f"{t / 'm-meta.json'}: field label_names: 2 names, but the graph has 10 outputs"],
        None)
    c["standalone-top-k-zero"] = lambda t, e: (
        [str(e.prefix("digits")), "-", "--top-k", "0"],
        ["--top-k must be between 1 and 10"], b"\x93NUMPY")
    c["standalone-array-of-zero-rows-on-stdin"] = lambda t, e: (
        [str(e.prefix("digits")), "-"], ["<stdin>: no inputs (an array of shape (0, 8, 8))"],
        _npy(t / "none.npy", np.zeros((0, 8, 8))).read_bytes())
    return c


CASES = _cases()


def test_there_are_at_least_15_hostile_cases():
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_predict_gives_one_line_exit_2_and_changes_nothing(name, tmp_path, exports):
    args, fragments, stdin = CASES[name](tmp_path, exports)
    is_standalone = name.startswith("standalone-")
    command = standalone_command(tmp_path / "deploy") if is_standalone else \
        [sys.executable, "-m", "mxlstm.cli", "predict"]
    before = snapshot(tmp_path), snapshot(exports.base)
    proc = run(command + args, stdin)  # raises TimeoutExpired should anything block
    err = proc.stderr.decode("utf-8", "replace")
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("predictor: error: " if is_standalone else "mxlstm: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert proc.stdout == b""
    assert (snapshot(tmp_path), snapshot(exports.base)) == before


# --------------------------------------------------------------------------- BrokenPipe
@pytest.mark.parametrize("standalone_cli", [True, False])
def test_output_into_head_exits_quietly(standalone_cli, tmp_path, exports):
    rows = _npy(tmp_path / "many.npy", np.random.RandomState(0).rand(3000, 8, 8) * 16)
    args = [str(exports.prefix("digits")), str(rows)]
    command = standalone_command(tmp_path / "deploy") + args if standalone_cli else \
        [sys.executable, "-m", "mxlstm.cli", "predict", "--model", args[0], "--input", args[1]]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, env=_env())
    try:
        first = json.loads(proc.stdout.readline())  # like `| head -n 1`
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=TIMEOUT) == 0, err
    finally:
        proc.kill()
    assert first["line"] == 1 and "label" in first
    assert err == ""


# --------------------------------------------------------------------------- positive
def predict(args: list[str], capsys, monkeypatch, stdin: bytes | None = None) -> list[dict]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    capsys.readouterr()
    code = main(["predict", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def probabilities(answers: list[dict]) -> list[list[float]]:
    return [list(a["probabilities"].values()) for a in answers]


def test_every_series_format_and_stdin_equal_the_npy_path(tmp_path, exports, capsys,
                                                          monkeypatch):
    prefix = str(exports.prefix("uni"))
    x = np.random.RandomState(1).rand(5, 6).astype(np.float32)
    rows = [",".join(repr(float(v)) for v in r) for r in x]
    labels = [str(k % 2) for k in range(len(x))]
    ts_head = "@problemName toy\n@univariate true\n@classLabel true 0 1\n@data\n"
    files = {
        "npy": _npy(tmp_path / "x.npy", x),
        "npy-3d": _npy(tmp_path / "x3.npy", x[:, :, None]),
        "npz": _npz(tmp_path / "x.npz", x=x, y=np.arange(5) % 2),
        "npz-only-array": _npz(tmp_path / "any.npz", series=x),
        "npz-full-lengths": _npz(tmp_path / "l.npz", x=x, lengths=np.full(5, 6)),
        "ts-labelled": write(tmp_path / "l.ts", ts_head + "".join(
            f"{r}:{y}\n" for r, y in zip(rows, labels))),
        "ts-unlabelled": write(tmp_path / "u.ts", ts_head.replace("true 0 1", "false") +
                               "".join(f"{r}\n" for r in rows)),
        "csv-label-column": write(tmp_path / "l.csv", "".join(
            f"{r},{y}\n" for r, y in zip(rows, labels))),
        "csv-no-label": write(tmp_path / "n.csv", "".join(f"{r}\n" for r in rows)),
        "csv-header-and-labels": write(tmp_path / "h.csv", "v1,v2,v3,v4,v5,v6,label\n" +
                                       "".join(f"{r},{y}\n" for r, y in zip(rows, labels))),
        "csv-gz": write(tmp_path / "l.csv.gz", gzip.compress("".join(
            f"{r},{y}\n" for r, y in zip(rows, labels)).encode(), mtime=0)),
    }
    before = snapshot(tmp_path)
    reference = predict(["--model", prefix, "--input", str(files["npy"])], capsys, monkeypatch)
    assert len(reference) == 5
    for name, path in files.items():
        got = predict(["--model", prefix, "--input", str(path)], capsys, monkeypatch)
        assert probabilities(got) == probabilities(reference), name
    for name in ("npy", "npz", "ts-labelled", "csv-label-column", "csv-no-label"):
        got = predict(["--model", prefix, "--input", "-"], capsys, monkeypatch,
                      stdin=files[name].read_bytes())
        assert probabilities(got) == probabilities(reference), f"stdin {name}"
    assert snapshot(tmp_path) == before


def test_npz_lengths_and_stdin_in_a_real_process(tmp_path, exports, capsys, monkeypatch):
    prefix = exports.prefix("digits")
    lengths = np.array([8, 5, 3, 6])
    expected = standalone.Predictor(prefix).predict([r[:n] for r, n in zip(DIGITS_ROWS,
                                                                          lengths)])
    archive = _npz(tmp_path / "x.npz", x=DIGITS_ROWS, lengths=lengths)
    got = predict(["--model", str(prefix), "--input", str(archive)], capsys, monkeypatch)
    assert probabilities(got) == probabilities(expected)
    proc = run(standalone_command(tmp_path / "deploy") + [str(prefix), "-"],
               archive.read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert np.allclose(probabilities(lines), probabilities(expected), atol=1e-12, rtol=0)


def test_every_text_format_equals_one_text_per_line(tmp_path, exports, capsys, monkeypatch):
    prefix = str(exports.prefix("text"))
    texts = ["a lovely film, part 3", "an awful, dull film", 'a "quoted" superb film']
    files = {
        "tsv": write(tmp_path / "r.tsv", "label\ttext\n" + "".join(
            f"pos\t{t}\n" for t in texts)),
        "tsv-no-header": write(tmp_path / "n.tsv", "".join(f"{t}\tpos\n" for t in texts)),
        "csv": write(tmp_path / "r.csv", "text,label\n" + "".join(
            '"' + t.replace('"', '""') + '",neg\n' for t in texts)),
        "jsonl": write(tmp_path / "r.jsonl", "".join(
            json.dumps({"label": "pos", "text": t}) + "\n" for t in texts)),
        "tsv-gz": write(tmp_path / "r.tsv.gz", gzip.compress(("text\tlabel\n" + "".join(
            f"{t}\tneg\n" for t in texts)).encode(), mtime=0)),
    }
    reference = predict(["--model", prefix, "--input", str(write(
        tmp_path / "r.txt", "\n".join(texts) + "\n"))], capsys, monkeypatch)
    assert len(reference) == 3
    for name, path in files.items():
        got = predict(["--model", prefix, "--input", str(path)], capsys, monkeypatch)
        assert probabilities(got) == probabilities(reference), name
    for name in ("tsv", "jsonl", "csv"):  # sniffed from the content
        got = predict(["--model", prefix, "--input", "-"], capsys, monkeypatch,
                      stdin=files[name].read_bytes())
        assert probabilities(got) == probabilities(reference), f"stdin {name}"


def test_top_k_ranks_classifier_labels_and_lm_tokens(tmp_path, exports, capsys, monkeypatch):
    rows = _npy(tmp_path / "x.npy", DIGITS_ROWS)
    args = ["--model", str(exports.prefix("digits")), "--input", str(rows)]
    for k in (1, 3, 10):
        for answer in predict([*args, "--top-k", str(k)], capsys, monkeypatch):
            p = answer["probabilities"]
            top = answer["top_k"]
            assert len(top) == k
            assert [t["label"] for t in top] == sorted(p, key=lambda n: -p[n])[:k]
            assert [t["probability"] for t in top] == [p[t["label"]] for t in top]
            assert top[0]["label"] == answer["label"]
    default = predict(args, capsys, monkeypatch)
    assert all(len(a["top_k"]) == 5 and len(a["probabilities"]) == 10 for a in default)
    two = predict(["--model", str(exports.prefix("text")), "--input", str(write(
        tmp_path / "t.txt", "a fine film\n"))], capsys, monkeypatch)
    assert len(two[0]["top_k"]) == 2  # the default, with fewer classes than 5: all of them
    lm = predict(["--model", str(exports.prefix("lm")), "--input", str(write(
        tmp_path / "p.txt", "she was\n")), "--top-k", "7"], capsys, monkeypatch)
    probs = [t["probability"] for t in lm[0]["top_k"]]
    assert len(probs) == 7 and probs == sorted(probs, reverse=True)
    assert lm[0]["next_token"] == lm[0]["top_k"][0]["token"]
