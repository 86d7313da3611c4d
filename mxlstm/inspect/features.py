"""Features a person can name, per position of a text or sequence, and the units whose
state follows them (Pearson correlation over all valid steps).

Character features (for character-level models) follow Karpathy et al. (2015): inside a
quotation, position in the line, inside parentheses, and a few more. A paragraph (blank
line) closes an open quotation, as in the Gutenberg texts where a quotation that runs on
opens every paragraph again.
"""

from __future__ import annotations

import numpy as np

CHAR_FEATURES = ("inside_quotes", "line_position", "inside_parentheses", "word_position",
                 "sentence_position", "after_space", "capital")


def char_features(text: str) -> dict[str, np.ndarray]:
    """``(len(text),)`` float arrays; each value describes the text up to and including
    that character (what a model has read when its state is taken):

    ``inside_quotes`` 1 after an opening ``"`` until the closing one; ``line_position``
    characters since the last newline; ``inside_parentheses`` 1 inside ``( ... )``;
    ``word_position`` letters since the last non-letter; ``sentence_position`` characters
    since the last ``.``, ``!`` or ``?``; ``after_space`` 1 at a space; ``capital`` 1 at
    an upper-case letter.
    """
    n = len(text)
    out = {name: np.zeros(n, dtype=np.float64) for name in CHAR_FEATURES}
    quote = paren = False
    line = word = sentence = 0
    previous = ""
    for t, ch in enumerate(text):
        if ch == "\n" and previous == "\n":
            quote = paren = False
        if ch == '"':
            quote = not quote
        elif ch == "(":
            paren = True
        elif ch == ")":
            paren = False
        line = 0 if ch == "\n" else line + 1
        word = word + 1 if ch.isalpha() else 0
        sentence = 0 if ch in ".!?" else sentence + 1
        out["inside_quotes"][t] = quote
        out["inside_parentheses"][t] = paren
        out["line_position"][t] = line
        out["word_position"][t] = word
        out["sentence_position"][t] = sentence
        out["after_space"][t] = ch == " "
        out["capital"][t] = ch.isupper()
        previous = ch
    return out


def position_features(valid_length: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """``(N, T)`` features of any sequence: ``position`` (steps read so far, from 1) and
    ``steps_left`` (steps still to come)."""
    t = np.arange(steps, dtype=np.float64)[None, :]
    lengths = np.asarray(valid_length, dtype=np.float64)[:, None]
    return {"position": np.broadcast_to(t + 1, (len(lengths), steps)).copy(),
            "steps_left": np.maximum(lengths - t - 1, 0)}


def correlations(states: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pearson correlation of every unit with every feature.

    ``states (S, H)`` and each feature ``(S,)``: the same ``S`` valid steps. Returns
    ``{feature: (H,)}``; a constant unit or feature correlates 0.
    """
    x = states.astype(np.float64)
    x = x - x.mean(axis=0)
    x_norm = np.sqrt((x * x).sum(axis=0))
    result = {}
    for name, value in features.items():
        f = np.asarray(value, dtype=np.float64).reshape(-1)
        f = f - f.mean()
        f_norm = np.sqrt((f * f).sum())
        denom = x_norm * f_norm
        r = np.zeros(x.shape[1])
        ok = denom > 0
        r[ok] = (f @ x)[ok] / denom[ok]
        result[name] = r
    return result


def best_units(corr: dict[str, np.ndarray], top: int = 3) -> dict[str, list]:
    """Per feature, the ``top`` units by ``|r|`` as ``[[unit, r], ...]``."""
    return {name: [[int(u), round(float(r[u]), 4)]
                   for u in np.argsort(-np.abs(r), kind="stable")[:top]]
            for name, r in corr.items()}
