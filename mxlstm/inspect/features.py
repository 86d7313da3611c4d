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


WORD_FEATURES = ("inside_quotes", "paragraph_position", "sentence_position")


def word_features(tokens: list[str]) -> dict[str, np.ndarray]:
    """``(len(tokens),)`` features of a word-token stream: ``inside_quotes`` (a ``"``
    token opens or closes, ``<eos>`` closes), ``paragraph_position`` (tokens since the last
    ``<eos>``), ``sentence_position`` (tokens since the last ``.``, ``!`` or ``?``)."""
    n = len(tokens)
    out = {name: np.zeros(n, dtype=np.float64) for name in WORD_FEATURES}
    quote = False
    para = sentence = 0
    for t, tok in enumerate(tokens):
        if tok == "<eos>":
            quote, para = False, -1
        elif tok == '"':
            quote = not quote
        para += 1
        sentence = 0 if tok in (".", "!", "?") else sentence + 1
        out["inside_quotes"][t] = quote
        out["paragraph_position"][t] = para
        out["sentence_position"][t] = sentence
    return out


def token_features(tokens: list[str], char_level: bool) -> dict[str, np.ndarray]:
    """:func:`char_features` of the joined characters, or :func:`word_features`."""
    return char_features("".join(tokens)) if char_level else word_features(tokens)


class Correlator:
    """Pearson correlations of ``H`` units with named features, accumulated over chunks
    of steps (so a whole novel never has to be held in memory)."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sxx = None
        self.sf: dict[str, float] = {}
        self.sff: dict[str, float] = {}
        self.sxf: dict[str, np.ndarray] = {}

    def add(self, states: np.ndarray, features: dict[str, np.ndarray]) -> None:
        """``states (S, H)`` and each feature ``(S,)`` for the same ``S`` steps."""
        x = states.astype(np.float64)
        if self.sx is None:
            self.sx, self.sxx = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        self.n += len(x)
        self.sx += x.sum(axis=0)
        self.sxx += (x * x).sum(axis=0)
        for name, value in features.items():
            f = np.asarray(value, dtype=np.float64).reshape(-1)
            self.sf[name] = self.sf.get(name, 0.0) + f.sum()
            self.sff[name] = self.sff.get(name, 0.0) + (f * f).sum()
            self.sxf[name] = self.sxf.get(name, 0.0) + f @ x

    def result(self) -> dict[str, np.ndarray]:
        """``{feature: (H,)}`` correlations (0 for a constant unit or feature)."""
        out = {}
        n = max(self.n, 1)
        var_x = self.sxx / n - (self.sx / n) ** 2
        for name in self.sf:
            var_f = self.sff[name] / n - (self.sf[name] / n) ** 2
            cov = self.sxf[name] / n - (self.sx / n) * (self.sf[name] / n)
            denom = np.sqrt(np.maximum(var_x, 0) * max(var_f, 0))
            r = np.zeros_like(cov)
            ok = denom > 1e-12
            r[ok] = cov[ok] / denom[ok]
            out[name] = np.clip(r, -1, 1)
        return out
