"""Standalone predictor for models exported by ``mxlstm export``.

This file imports only the standard library, numpy and mxnet: copy it next to the three
exported files and run it on a machine without mxlstm::

    PREFIX-symbol.json   the graph          (MXNet HybridBlock.export)
    PREFIX-0000.params   the weights
    PREFIX-meta.json     inputs, preprocessing, labels, outputs, fingerprint

    python predictor.py PREFIX INPUT_FILE [--top-k 5]     # one JSON line per input

In Python::

    p = Predictor("out/digits")
    p.predict([rows_a, rows_b])     # raw inputs -> [{'label': ..., 'probabilities': ...}]
    p.predict_one("a fine film")    # text models take strings

Raw inputs: a string (text models; numeric models: one ``.ts`` data line or one CSV line
of a univariate series), a list of float rows or a numpy array ``(T, C)``, or token ids.
Several inputs are right-padded into one batch with their valid lengths.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import unicodedata
import warnings
from collections.abc import Sequence
from functools import lru_cache

import mxnet as mx
import numpy as np

FORMAT = "mxlstm-export"
FORMAT_VERSION = 1
WORD_RULE = "mxlstm-word-v1"
CHAR_RULE = "chars"
STD_FLOOR = 1e-8


class PredictorError(ValueError):
    """Unusable model files or raw input; the message says which and why."""


class ModelFilesError(PredictorError):
    """Missing, damaged or mismatched exported files."""


class InputError(PredictorError):
    """Raw input the model cannot take (empty text, wrong feature count, non-numeric ...)."""


# ----------------------------------------------------------------------------- tokenizer
# Scripts written without spaces: one token per character (ideographs, kana, Hangul).
_CJK = ("\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
        "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f")


@lru_cache(maxsize=1)
def _word_pattern() -> re.Pattern:
    """Rule ``mxlstm-word-v1``: a CJK character | letters ('letters)? | digits | any other
    non-space character; letters include combining marks (category M*)."""
    marks = [cp for cp in [*range(0x20000), *range(0xE0000, 0xE1000)]
             if unicodedata.category(chr(cp))[0] == "M"]
    spans, start = [], 0  # runs of consecutive code points as 'a-b' ranges
    for k in range(1, len(marks) + 1):
        if k == len(marks) or marks[k] != marks[k - 1] + 1:
            spans.append(f"{re.escape(chr(marks[start]))}-{re.escape(chr(marks[k - 1]))}")
            start = k
    letter = rf"(?:[^\W\d_{_CJK}]|[{''.join(spans)}])"
    return re.compile(rf"[{_CJK}]|{letter}+(?:'{letter}+)?|\d+|\S")


def tokenize(text: str, rule: str = WORD_RULE) -> list[str]:
    """Tokens of ``text``: rule ``mxlstm-word-v1`` works on NFC-normalised lower-case text;
    rule ``chars`` keeps every character unchanged."""
    if rule == CHAR_RULE:
        return list(text)
    if rule != WORD_RULE:
        raise ModelFilesError(f"unknown tokenizer rule {rule!r} (this predictor knows "
                              f"{WORD_RULE!r} and {CHAR_RULE!r})")
    return _word_pattern().findall(unicodedata.normalize("NFC", text).lower())


# ----------------------------------------------------------------------------- numbers
def _numbers(text: str, where: str) -> np.ndarray:
    """Comma-separated floats; ``?``/``nan`` become NaN (filled later)."""
    values = []
    for position, token in enumerate(text.split(","), start=1):
        token = token.strip()
        try:
            values.append(np.nan if token == "?" else float(token))
        except ValueError:
            what = "empty value" if not token else f"non-numeric value {token!r}"
            raise InputError(f"{where}{what} at position {position}") from None
    array = np.array(values, dtype=np.float64)
    if np.isinf(array).any():
        raise InputError(f"{where}infinite value")
    return array


def _fill_missing(series: np.ndarray, where: str) -> np.ndarray:
    """Linear interpolation of NaNs along time; edges take the nearest observed value."""
    for c in range(series.shape[1]):
        column = series[:, c]
        bad = np.isnan(column)
        if bad.all():
            raise InputError(f"{where}channel {c + 1}: all values missing")
        if bad.any():
            steps = np.arange(len(column))
            column[bad] = np.interp(steps[bad], steps[~bad], column[~bad])
    return series


def parse_series_line(line: str, channels: int, where: str = "") -> np.ndarray:
    """One ``.ts`` data line (channels split by ``:``, an optional trailing label) or one
    CSV line of a univariate series -> ``(T, C)`` float64."""
    fields = line.strip().split(":")
    if len(fields) == channels + 1:
        fields = fields[:-1]  # the label of a labelled .ts line
    if len(fields) != channels:
        hint = " (separate channels with ':' as in .ts, or give .npy (N, T, C))" \
            if len(fields) == 1 else ""
        raise InputError(f"{where}found {len(fields)} channel(s), the model expects "
                         f"{channels}{hint}")
    columns = [_numbers(f, where + (f"channel {k + 1}: " if channels > 1 else ""))
               for k, f in enumerate(fields)]
    if len({len(c) for c in columns}) > 1:
        raise InputError(f"{where}channels have different lengths "
                         f"{[len(c) for c in columns]}")
    return _fill_missing(np.stack(columns, axis=1), where)


def read_inputs(path: str, meta: dict) -> list[tuple[int, object]]:
    """Raw inputs of a file as ``(line or row number, item)``: one text per line (text
    models), ``.npy`` ``(N, T, C)``, ``.ts`` (after ``@data``) or one series per line."""
    text_model = meta["input"]["type"] == "tokens"
    if path.lower().endswith(".npy"):
        if text_model:
            raise InputError(f"{path}: a text model takes one text per line, not .npy")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot read .npy ({err})") from None
        if array.ndim == 2 and meta["input"]["features"] == 1:
            array = array[:, :, None]
        if array.ndim != 3:
            raise InputError(f"{path}: expected an array (N, T, C), got shape {array.shape}")
        return [(k + 1, array[k]) for k in range(len(array))]
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read ({err})") from None
    items, in_header = [], path.lower().endswith(".ts")
    if in_header and not any(x.strip().lower().startswith("@data") for x in lines):
        in_header = False  # bare data lines
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if in_header:
            in_header = not stripped.lower().startswith("@data")
            continue
        if not stripped or (not text_model and stripped.startswith("#")):
            continue
        if text_model:
            items.append((number, line))
        else:
            channels = meta["input"]["features"]
            items.append((number, parse_series_line(stripped, channels, f"{path}:{number}: ")))
    if not items:
        raise InputError(f"{path}: no inputs")
    return items


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- predictor
class Predictor:
    """Raw input -> answer with an exported model (no mxlstm needed).

    Parameters
    ----------
    prefix : str
        ``PREFIX`` of ``PREFIX-symbol.json``, ``PREFIX-0000.params``, ``PREFIX-meta.json``.
    ctx : mx.Context
    max_batch : int
        Inputs per forward pass; longer lists are split.
    """

    def __init__(self, prefix: str | os.PathLike, ctx: mx.Context | None = None,
                 max_batch: int = 256) -> None:
        self.prefix = os.fspath(prefix)
        self.ctx = ctx or mx.cpu()
        self.max_batch = max_batch
        files = [self.prefix + s for s in ("-symbol.json", "-0000.params", "-meta.json")]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise ModelFilesError(f"missing exported file(s): {', '.join(missing)}")
        try:
            with open(files[2], encoding="utf-8") as f:
                self.meta = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelFilesError(f"{files[2]}: damaged meta.json ({err})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise ModelFilesError(f"{files[2]}: not an mxlstm export meta.json")
        if self.meta.get("format_version", 0) > FORMAT_VERSION:
            raise ModelFilesError(f"{files[2]}: format version {self.meta['format_version']} "
                                  f"is newer than this predictor ({FORMAT_VERSION})")
        expected = self.meta.get("fingerprint", {}).get("params_sha256")
        if expected != _sha256(files[1]):
            raise ModelFilesError(f"{files[2]} does not belong to {files[1]} (params sha256 "
                                  f"differs from the fingerprint): a meta.json of another "
                                  f"model?")
        spec, pre = self.meta["input"], self.meta["preprocessing"]
        self.kind = self.meta["kind"]
        self.labels = self.meta["label_names"]
        self.input_names = spec["names"]
        self.states = spec["states"]
        self.fixed_length = spec.get("fixed_length")
        self._buffers: dict[tuple, mx.nd.NDArray] = {}
        self._is_text = spec["type"] == "tokens"
        self._vocab = pre.get("idx_to_token")
        self._index = {t: i for i, t in enumerate(self._vocab)} if self._vocab else None
        norm = pre.get("normalization")
        self._mean = np.asarray(norm["mean"], np.float32) if norm else None
        self._std = np.maximum(np.asarray(norm["std"], np.float32), STD_FLOOR) if norm else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.block = mx.gluon.SymbolBlock.imports(files[0], self.input_names, files[1],
                                                          ctx=self.ctx)
            except (mx.MXNetError, ValueError, AssertionError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                raise ModelFilesError(f"{self.prefix}: cannot load the graph ({first})") \
                    from None
        self.block.hybridize(static_alloc=True, static_shape=True)

    # -- preprocessing --------------------------------------------------------------------
    def preprocess(self, item) -> np.ndarray:
        """One raw input -> model input: ids ``(T,)`` or normalised features ``(T, C)``."""
        if self._is_text:
            return self._token_ids(item)
        spec = self.meta["input"]
        channels = spec["features"]
        if isinstance(item, str):
            x = parse_series_line(item, channels)
        else:
            try:
                x = np.array(item, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError("non-numeric input (expected float rows (T, C))") from None
            if x.ndim == 1 and channels == 1:
                x = x[:, None]
            if x.ndim != 2:
                raise InputError(f"expected rows (T, C), got an array of shape {x.shape}")
            if x.shape[1] != channels:
                raise InputError(f"input has {x.shape[1]} features per step, the model "
                                 f"expects {channels}")
            if not np.isfinite(x).all():
                raise InputError("input holds NaN or infinite values")
        if len(x) == 0:
            raise InputError("empty sequence")
        x = x.astype(np.float32)
        return (x - self._mean) / self._std if self._mean is not None else x

    def _token_ids(self, item) -> np.ndarray:
        pre = self.meta["preprocessing"]
        if isinstance(item, str):
            if self._index is None:
                raise InputError("this model has no vocabulary: give token ids")
            rule = pre["tokenizer"]["rule"]
            unk = pre["unk_id"]
            ids = [self._index.get(t, unk) for t in tokenize(item, rule)]
        else:
            try:
                ids = [int(v) for v in item]
            except (TypeError, ValueError):
                raise InputError("expected a text or a list of token ids") from None
            size = self.meta["input"]["vocab_size"]
            if any(not 0 <= v < size for v in ids):
                raise InputError(f"token ids must be in [0, {size})")
        if pre.get("truncate"):
            ids = ids[:pre["truncate"]]
        if not ids:
            raise InputError("empty text (no tokens)")
        return np.asarray(ids, dtype=self.meta["input"]["dtype"])

    def batch(self, items: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Preprocess and right-pad: ``(x (N, T, C) or ids (N, T), lengths (N,) float32)``."""
        rows = [self.preprocess(item) for item in items]
        lengths = np.array([len(r) for r in rows], dtype=np.float32)
        if self.fixed_length and any(len(r) != self.fixed_length for r in rows):
            other = next(len(r) for r in rows if len(r) != self.fixed_length)
            raise InputError(f"this export reads exactly {self.fixed_length} steps per input "
                             f"(exported with --fixed-length); got {other}")
        pad = self.meta["preprocessing"].get("pad_id") or 0
        x = np.full((len(rows), int(lengths.max())) + rows[0].shape[1:], pad,
                    dtype=rows[0].dtype)
        for k, r in enumerate(rows):
            x[k, :len(r)] = r
        return x, lengths

    # -- running ----------------------------------------------------------------------------
    def begin_states(self, batch_size: int = 1) -> list[np.ndarray]:
        """Zero states, each ``(L*D, N, H)``, in the order of the graph's state inputs."""
        return [np.zeros([batch_size if d == "N" else d for d in s["shape"]], np.float32)
                for s in self.states]

    def forward(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run the graph on numpy inputs in the order of ``input_names``."""
        outs = self.block(*[self._on_device(k, a) for k, a in enumerate(arrays)])
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return [o.asnumpy() for o in outs]

    def _on_device(self, position: int, a: np.ndarray) -> mx.nd.NDArray:
        """``a`` copied into an input buffer kept per (input, shape, dtype): a copy into an
        existing NDArray costs less than half of a new ``mx.nd.array`` (~80 vs ~190 us)."""
        key = (position, a.shape, a.dtype.str)
        buffer = self._buffers.get(key)
        if buffer is None:
            if len(self._buffers) >= 64:
                self._buffers.clear()
            buffer = self._buffers[key] = mx.nd.empty(a.shape, ctx=self.ctx, dtype=a.dtype)
        buffer._sync_copyfrom(a)  # waits until earlier readers of the buffer are done
        return buffer

    def predict(self, items: Sequence, top_k: int = 5) -> list[dict]:
        """Answers for a list of raw inputs (a 3-D array counts as a list)."""
        if isinstance(items, str) or len(items) == 0:
            raise InputError("predict() takes a non-empty list of inputs")
        results: list[dict] = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start:start + self.max_batch]
            x, lengths = self.batch(chunk)
            results += self._run(x, lengths, self.begin_states(len(chunk)), top_k)[0]
        return results

    def predict_one(self, item, top_k: int = 5) -> dict:
        """The answer for one raw input."""
        return self.predict([item], top_k)[0]

    def stream(self, chunk, states: list[np.ndarray] | None = None,
               top_k: int = 5) -> tuple[dict, list[np.ndarray]]:
        """Feed the next raw chunk of one sequence (streaming exports and language models);
        returns the answer after the chunk's last step and the states to pass next time."""
        if not self.states:
            raise InputError("this export takes whole sequences; export with --streaming")
        x, lengths = self.batch([chunk])
        results, new = self._run(x, lengths, states or self.begin_states(1), top_k)
        return results[0], new

    def _run(self, x, lengths, states, top_k):
        names = self.input_names
        arrays = {"data": x, "valid_length": lengths}
        arrays.update({s["name"]: v for s, v in zip(self.states, states)})
        outs = self.forward(*[arrays[n] for n in names])
        main, new_states = outs[0], outs[1:]
        if self.states and main.ndim == 3 and self.kind != "tagging":
            last = lengths.astype(np.int64) - 1  # per-step outputs: the last valid step
            main = main[np.arange(len(main)), last]
        results = [self._answer(main[k], int(lengths[k]), top_k) for k in range(len(main))]
        return results, new_states

    def _answer(self, out: np.ndarray, length: int, top_k: int) -> dict:
        if self.kind == "language_model":
            p = _softmax(out)
            best = np.argsort(-p, kind="stable")[:top_k]
            tops = [{"token": self._vocab[i], "probability": float(p[i])} for i in best]
            return {"next_token": tops[0]["token"], "top_k": tops}
        if self.kind == "regression":
            values = [float(v) for v in out]
            return {"value": values[0] if len(values) == 1 else values}
        if self.kind == "tagging":
            return {"labels": [self.labels[i] for i in out[:length].argmax(axis=-1)]}
        p = _softmax(out)
        return {"label": self.labels[int(p.argmax())],
                "probabilities": {name: float(v) for name, v in zip(self.labels, p)}}


def main(argv: Sequence[str] | None = None) -> int:
    """``python predictor.py PREFIX INPUT_FILE [--top-k K]``: one JSON line per input."""
    parser = argparse.ArgumentParser(description="predict with an mxlstm export")
    parser.add_argument("prefix", help="PREFIX of PREFIX-symbol.json / -0000.params / -meta.json")
    parser.add_argument("input", help="one text per line, .ts, CSV (one series a line) or .npy")
    parser.add_argument("--top-k", type=int, default=5, help="language models: tokens shown")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(args.prefix)
        items = read_inputs(args.input, predictor.meta)
        answers = predictor.predict([item for _, item in items], top_k=args.top_k)
    except PredictorError as err:
        print(f"predictor: error: {err}", file=sys.stderr)
        return 2
    for (number, _), answer in zip(items, answers):
        print(json.dumps({"line": number, **answer}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
