"""Text data: tokenizer, vocabulary, classification files and language-model corpora.

Word tokens follow the shared data README rule ``[a-z]+(?:'[a-z]+)?|[0-9]+|[^\\sa-z0-9]``
on lower-cased text, extended to every script (see :func:`tokenize`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import gluonnlp
import numpy as np
from mxnet.gluon.data import Dataset

from mxlstm import preprocess
from mxlstm.data.fileio import PathLike, embedded_path, read_lines, read_text, require_file
from mxlstm.data.sources import sort_label_names
from mxlstm.data.validate import canonical_label, check_label_kinds
from mxlstm.errors import DataError
from mxlstm.preprocess import CHAR_RULE, WORD_RULE

UNK, PAD, EOS = "<unk>", "<pad>", "<eos>"
SPECIAL_TOKENS = (UNK, PAD, EOS)
AUSTEN_SPLITS = {
    "train": ("emma", "mansfieldpark", "prideprejudice", "sensesensibility"),
    "valid": ("northangerabbey",),
    "test": ("persuasion",),
}
FORMATS = ("tsv", "csv", "jsonl")
_EXTENSIONS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


# --------------------------------------------------------------------------- tokenizer
def tokenize(text: str, level: str = "word") -> list[str]:
    """Split text into tokens.

    ``level='word'``: NFC-normalize and lower-case, then take, left to right, a single
    CJK character (ideographs, kana, Hangul), a run of letters of any script (combining
    marks included) with an optional ``'``-joined second run, a run of digits, or any
    other single non-space character. On ASCII text this is exactly the README regex
    ``[a-z]+(?:'[a-z]+)?|[0-9]+|[^\\sa-z0-9]``.
    ``level='char'``: every character, unchanged (no lower-casing, whitespace kept).
    The rules live in :mod:`mxlstm.preprocess`, shared with the standalone predictor.

    Examples
    --------
    >>> tokenize("Hello, world 有趣 新闻!")
    ['hello', ',', 'world', '有', '趣', '新', '闻', '!']
    """
    if level not in ("word", "char"):
        raise ValueError(f"level must be 'word' or 'char', got {level!r}")
    return preprocess.tokenize(text, WORD_RULE if level == "word" else CHAR_RULE)


# --------------------------------------------------------------------------- vocabulary
def build_vocab(token_lists: Iterable[Sequence[str]] | Sequence[str], min_freq: int = 1,
                max_size: int | None = None) -> gluonnlp.Vocab:
    """Build a ``gluonnlp.Vocab`` from token sequences.

    Indices: ``<unk>`` 0, ``<pad>`` 1, ``<eos>`` 2, then the tokens with count
    ``>= min_freq`` by decreasing count, ties by first appearance (gluonnlp itself breaks
    ties alphabetically, so the order is fixed here first). ``max_size`` caps the number of
    non-special tokens. A flat list of strings counts as one sequence.
    """
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    if isinstance(token_lists, list | tuple) and token_lists and isinstance(token_lists[0], str):
        token_lists = [token_lists]
    counter: Counter = Counter()
    for tokens in token_lists:
        gluonnlp.data.count_tokens(tokens, counter=counter)
    kept = [t for t in counter if counter[t] >= min_freq and t not in SPECIAL_TOKENS]
    kept.sort(key=lambda t: -counter[t])  # stable: equal counts keep first-appearance order
    if max_size is not None:
        kept = kept[:max_size]
    # Distinct pseudo-counts make gluonnlp keep exactly this order.
    ranks = Counter({t: len(kept) - i for i, t in enumerate(kept)})
    return gluonnlp.Vocab(ranks, unknown_token=UNK, padding_token=PAD, bos_token=None,
                          eos_token=EOS)


def save_vocab(vocab: gluonnlp.Vocab, path: PathLike) -> None:
    """Write ``vocab.to_json()`` to ``path`` (UTF-8)."""
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write(vocab.to_json())


def load_vocab(path: PathLike) -> gluonnlp.Vocab:
    """Read a vocabulary written by :func:`save_vocab`; bad files raise :class:`DataError`."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err.msg})", path=path, line=err.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get("idx_to_token"), list) \
            or not isinstance(data.get("token_to_idx"), dict):
        raise DataError("not a gluonnlp vocabulary (no idx_to_token / token_to_idx)", path=path)
    try:
        return gluonnlp.Vocab.from_json(text)
    except (AssertionError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"inconsistent vocabulary ({err!r})", path=path) from None


def encode(tokens: Iterable[str], vocab: gluonnlp.Vocab) -> np.ndarray:
    """Map tokens to ids, ``(L,)`` int32; unknown tokens get the ``<unk>`` id."""
    ids = vocab[list(tokens)]
    return np.asarray(ids, dtype=np.int32).reshape(-1)


# --------------------------------------------------------------------------- classification
class TextDataset(Dataset):
    """Texts with string labels; ``dataset[i]`` is ``(text, label)``.

    ``label_names`` are the distinct labels sorted (numerically when all are numbers);
    ``label_ids`` gives each label's index in it, ``(N,)`` int32. ``lines`` (optional) are
    the 1-based line numbers of the items in ``path``, for messages.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[str],
                 label_names: Sequence[str] | None = None, path: PathLike | None = None,
                 lines: Sequence[int] | None = None):
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self.texts = list(texts)
        self.labels = [str(v) for v in labels]
        self.label_names = list(label_names) if label_names else sort_label_names(self.labels)
        self.path = None if path is None else os.fspath(path)
        self.lines = None if lines is None else [int(n) for n in lines]

    def __getitem__(self, idx: int) -> tuple[str, str]:
        return self.texts[idx], self.labels[idx]

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return f"TextDataset(n={len(self)}, labels={self.label_names}, path={self.path!r})"

    @property
    def label_ids(self) -> np.ndarray:
        """Class index of every item, ``(N,)`` int32."""
        index = {name: k for k, name in enumerate(self.label_names)}
        return np.array([index[v] for v in self.labels], dtype=np.int32)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        """Items at ``indices`` (same ``label_names``)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return TextDataset([self.texts[i] for i in idx], [self.labels[i] for i in idx],
                           self.label_names, self.path,
                           None if self.lines is None else [self.lines[i] for i in idx])


def _guess_format(path: PathLike) -> str:
    name = os.fspath(path).lower()
    name = name[:-3] if name.endswith(".gz") else name
    fmt = _EXTENSIONS.get(os.path.splitext(name)[1])
    if fmt is None:
        raise DataError("cannot tell the format from the file name: expected a .tsv, .csv or "
                        ".jsonl file (optionally .gz; fmt='tsv', 'csv' or 'jsonl' in Python)",
                        path=path)
    return fmt


def _delimited_records(lines: list[str], fmt: str,
                       path: PathLike | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` for non-blank records of a TSV or CSV file."""
    if fmt == "tsv":
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, line.split("\t")
        return
    reader = csv.reader(io.StringIO("\n".join(lines)))
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # e.g. a field longer than csv.field_size_limit()
            raise DataError(f"cannot parse as CSV ({err})", path, start) from None
        if any(f.strip() for f in fields):
            yield start, fields
        start = reader.line_num + 1


HEADER_MODES = ("auto", "true", "false")
_HEADER_NAME = re.compile(r"[^\W\d][\w.-]{0,31}")


def looks_like_header(first: list[str], later_labels: Iterable[str]) -> bool:
    """The ``data.header=auto`` rule for a first row that does not name the fields.

    It looks like a header when it has two or more cells, its text and label cells are both
    short names (a letter, then up to 31 letters, digits, ``_``, ``.`` or ``-``: ``review``,
    ``sentiment``, ``Label``; no spaces, not a number) and its label cell occurs nowhere
    else in the label column.
    """
    if len(first) < 2:
        return False
    text, label = first[0].strip(), first[1].strip()
    if not (_HEADER_NAME.fullmatch(text) and _HEADER_NAME.fullmatch(label)):
        return False
    return all(other.strip() != label for other in later_labels)


def _column_indices(first: list[str], text_field: str, label_field: str, path: PathLike,
                    line: int, header: str, later_labels: Iterable[str]
                    ) -> tuple[int, int, bool]:
    """Return ``(text column, label column, has_header)`` from the first record."""
    names = [f.strip() for f in first]
    if header == "false":
        return 0, 1, False
    if header == "true" or text_field in names or label_field in names:
        for field in (text_field, label_field):
            if field not in names:
                raise DataError(f"missing column '{field}' (header has: {', '.join(names)}; "
                                f"set data.{'text' if field == text_field else 'label'}"
                                f"_field to one of them)", path, line, field)
        return names.index(text_field), names.index(label_field), True
    if looks_like_header(first, later_labels):
        shown = ", ".join(repr(n) for n in names)
        raise DataError(f"the first row ({shown}) looks like a header but does not name "
                        f"data.text_field={text_field!r} / data.label_field={label_field!r}: "
                        f"set data.text_field={names[0]} data.label_field={names[1]}, or "
                        f"data.header=false if it is data", path, line)
    if (text_field, label_field) != ("text", "label"):
        raise DataError(f"missing column '{text_field}': no header row naming the columns",
                        path, line, text_field)
    return 0, 1, False


def _delimited_rows(lines: list[str], fmt: str, text_field: str, label_field: str,
                    path: PathLike, header: str = "auto") -> Iterator[tuple[int, str, str]]:
    records = list(_delimited_records(lines, fmt, path))
    first_line, first = records[0] if records else (1, [])
    later = (fields[1] for _, fields in records[1:] if len(fields) > 1)
    text_col, label_col, has_header = _column_indices(first, text_field, label_field, path,
                                                      first_line, header, later)
    width = len(first) if has_header else 2
    rows = records[1:] if has_header else records
    for line, fields in rows:
        if len(fields) != width:
            what = "columns as the header" if has_header else "columns (text, label)"
            raise DataError(f"{len(fields)} fields, expected {width} {what}", path, line)
        yield line, fields[text_col], fields[label_col]


def _chain_first(line: int, fields: list[str], rest: Iterator) -> Iterator:
    yield line, fields
    yield from rest


def _json_rows(lines: list[str], text_field: str, label_field: str,
               path: PathLike) -> Iterator[tuple[int, str, str]]:
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataError(f"invalid JSON ({err.msg})", path, line) from None
        if not isinstance(record, dict):
            raise DataError("expected a JSON object", path, line)
        values = []
        for field in (text_field, label_field):
            if field not in record:
                raise DataError(f"missing column '{field}'", path, line, field)
            value = record[field]
            if field == label_field and isinstance(value, bool | int | float):
                try:
                    value = canonical_label(value)
                except ValueError:
                    raise DataError(f"non-finite label {value}", path, line, field) from None
            if not isinstance(value, str):
                raise DataError(f"expected a string, got {type(value).__name__}", path, line,
                                field)
            values.append(value)
        yield line, values[0], values[1]


def load_text_classification(path: PathLike, text_field: str = "text",
                             label_field: str = "label", fmt: str | None = None,
                             header: str = "auto") -> TextDataset:
    """Load a text classification file: TSV, CSV or JSON lines (``.gz`` allowed).

    The format comes from the extension (``.tsv``, ``.csv``, ``.jsonl``) unless ``fmt`` is
    given. TSV / CSV header rows (``header``, the key ``data.header``):

    * ``'auto'``: the first row is a header when it names ``text_field`` or
      ``label_field`` (then both must be there); a first row that does not name them but
      :func:`looks_like_header` is refused with a message saying which keys to set;
      otherwise there is no header and the columns are ``text, label``;
    * ``'true'``: the first row is the header; both fields are looked up in it;
    * ``'false'``: no header; column 1 is the text, column 2 the label.

    Texts keep their spelling; labels are strings in their canonical form
    (:func:`mxlstm.data.validate.canonical_label`: ``1``, ``1.0``, JSON ``1`` -> ``'1'``,
    booleans -> ``'true'`` / ``'false'``); mixing booleans and numbers is refused.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if header not in HEADER_MODES:
        raise ValueError(f"header must be one of {HEADER_MODES}, got {header!r}")
    require_file(path)
    fmt = fmt or _guess_format(path)
    lines = read_lines(path)
    if fmt == "jsonl":
        rows = _json_rows(lines, text_field, label_field, path)
    else:
        rows = _delimited_rows(lines, fmt, text_field, label_field, path, header)
    texts, labels, numbers = [], [], []
    for line, text, label in rows:
        if not text.strip():
            raise DataError("empty text", path, line, text_field)
        if not label.strip():
            raise DataError("empty label", path, line, label_field)
        texts.append(text)
        labels.append(canonical_label(label))
        numbers.append(line)
    if not texts:
        raise DataError("no examples (only a header)", path=path)
    check_label_kinds(labels, path, numbers, label_field)
    return TextDataset(texts, labels, path=path, lines=numbers)


def load_movie_reviews() -> TextDataset:
    """The embedded VADER movie-review sentences: 10,568 rows, labels ``'0'``/``'1'``."""
    return load_text_classification(embedded_path("vader/movie_reviews.tsv.gz"))


def standard_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shared README split: ``perm = RandomState(seed).permutation(n)``, 80/10/10.

    Returns ``(perm[:int(0.8*n)], perm[int(0.8*n):int(0.9*n)], perm[int(0.9*n):])``.
    """
    perm = np.random.RandomState(seed).permutation(n)
    a, b = int(0.8 * n), int(0.9 * n)
    return perm[:a], perm[a:b], perm[b:]


# --------------------------------------------------------------------------- corpora
def _paragraph_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        words = tokenize(paragraph)
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    return tokens


def load_corpus(paths: PathLike | Sequence[PathLike], level: str = "word") -> list[str]:
    """Read plain-text files (``.txt`` or ``.txt.gz``, UTF-8) as one token stream.

    ``level='word'``: :func:`tokenize` tokens with one ``<eos>`` after each paragraph
    (paragraphs are separated by blank lines). ``level='char'``: every character of the
    files in order, newlines included.
    """
    if level not in ("word", "char"):
        raise ValueError(f"level must be 'word' or 'char', got {level!r}")
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    tokens: list[str] = []
    for path in paths:
        text = read_text(path)
        if not text.strip():
            raise DataError("empty file", path=path)
        tokens.extend(text if level == "char" else _paragraph_tokens(text))
    return tokens


def austen_paths(split: str) -> list[str]:
    """Embedded Austen files of ``split`` (``'train'``, ``'valid'`` or ``'test'``)."""
    if split not in AUSTEN_SPLITS:
        raise DataError(f"split must be one of {', '.join(AUSTEN_SPLITS)}, got '{split}'",
                        field="split")
    return [embedded_path(f"austen/{name}.txt.gz") for name in AUSTEN_SPLITS[split]]


def load_austen(split: str, level: str = "word") -> list[str]:
    """Tokens of the embedded Austen ``split`` (train: 4 novels, valid/test: 1 each)."""
    return load_corpus(austen_paths(split), level=level)
