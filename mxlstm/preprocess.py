"""The preprocessing rules shared by training (:mod:`mxlstm.data`) and the standalone
predictor: one copy of each, standard library and numpy only.

``mxlstm export`` copies this file beside ``predictor.py`` (see
:data:`mxlstm.deploy.ship.STANDALONE_FILES`), so an exported model is read with exactly the
rules it was trained with, on a machine without mxlstm.

* tokenizer rules ``mxlstm-word-v1`` (:data:`WORD_RULE`) and ``chars`` (:func:`tokenize`)
* normalisation: per-channel mean and std, std floored at :data:`STD_FLOOR`
* missing values (``?`` / NaN): linear interpolation along time (:func:`fill_missing`)
* file fingerprints: sha256 of the content (:func:`sha256_file`)
"""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from functools import lru_cache

import numpy as np

WORD_RULE = "mxlstm-word-v1"
CHAR_RULE = "chars"
STD_FLOOR = 1e-8

# Scripts written without spaces: each character is its own token.
CJK = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK Unified Ideographs extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # halfwidth Katakana
    "\U00020000-\U0003134f"  # CJK extensions B..G
)


def _mark_class() -> str:
    """Regex class body of all combining marks (Unicode category M*)."""
    ranges, start = [], None
    code_points = [*range(0x20000), *range(0xE0000, 0xE1000), sys.maxunicode + 1]
    for cp in code_points:
        is_mark = cp <= sys.maxunicode and unicodedata.category(chr(cp)).startswith("M")
        if is_mark and start is None:
            start = cp
        elif not is_mark and start is not None:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(cp - 1))}")
            start = None
    return "".join(ranges)


@lru_cache(maxsize=1)
def word_pattern() -> re.Pattern:
    """Rule ``mxlstm-word-v1``: a CJK character | letters ('letters)? | digits | any other
    non-space character; letters include combining marks (category M*)."""
    letter = rf"(?:[^\W\d_{CJK}]|[{_mark_class()}])"
    return re.compile(rf"[{CJK}]|{letter}+(?:'{letter}+)?|\d+|\S")


def tokenize(text: str, rule: str = WORD_RULE) -> list[str]:
    """Tokens of ``text``: rule ``mxlstm-word-v1`` works on NFC-normalised lower-case text;
    rule ``chars`` keeps every character unchanged. Raises ValueError on another rule.

    >>> tokenize("Hello, world 有趣 新闻!")
    ['hello', ',', 'world', '有', '趣', '新', '闻', '!']
    """
    if rule == CHAR_RULE:
        return list(text)
    if rule != WORD_RULE:
        raise ValueError(f"unknown tokenizer rule {rule!r} (known: {WORD_RULE!r}, "
                         f"{CHAR_RULE!r})")
    return word_pattern().findall(unicodedata.normalize("NFC", text).lower())


def floor_std(std) -> np.ndarray:
    """Per-channel standard deviations ``(C,)`` as float32, floored at :data:`STD_FLOOR`."""
    return np.maximum(np.asarray(std, dtype=np.float32).reshape(-1), STD_FLOOR)


def normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` of ``x (..., C)`` in float32 (``std`` from :func:`floor_std`)."""
    return (np.asarray(x, dtype=np.float32) - mean) / std


def empty_channel(series: np.ndarray) -> int | None:
    """Index of the first channel of ``series (T, C)`` with no observed value, or None."""
    for c in range(series.shape[1]):
        if np.isnan(series[:, c]).all():
            return c
    return None


def fill_missing(series: np.ndarray) -> np.ndarray:
    """Fill the NaNs of ``series (T, C)`` in place by linear interpolation along time;
    edges take the nearest observed value. Every channel must hold one observed value
    (see :func:`empty_channel`)."""
    for c in range(series.shape[1]):
        column = series[:, c]
        bad = np.isnan(column)
        if bad.any():
            steps = np.arange(len(column))
            column[bad] = np.interp(steps[bad], steps[~bad], column[~bad])
    return series


def sha256_file(path) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
