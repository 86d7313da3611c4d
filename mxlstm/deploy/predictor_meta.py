"""The schema of ``PREFIX-meta.json`` as the standalone predictor reads it
(:func:`validate_meta`, the one schema check of the CLI and the predictor) and the
predictor's errors.

Standard library only (plus the sibling ``kinds.py`` and ``preprocess.py``), like
``predictor.py`` beside it (see there).
"""

from __future__ import annotations

import json

try:  # inside the mxlstm package, or copied beside predictor.py
    from ..kinds import KINDS
    from ..preprocess import CHAR_RULE, WORD_RULE
except ImportError:
    from kinds import KINDS  # noqa: I001
    from preprocess import CHAR_RULE, WORD_RULE

FORMAT = "mxlstm-export"
FORMAT_VERSION = 1


class PredictorError(ValueError):
    """Unusable model files or raw input; the message says which and why."""


class ModelFilesError(PredictorError):
    """Missing, damaged or mismatched exported files."""


class InputError(PredictorError):
    """Raw input the model cannot take (empty text, wrong feature count, non-numeric ...)."""


# ----------------------------------------------------------------------------- meta.json
KNOWN_VERSIONS = (1,)


def _show(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not ... else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."


def validate_meta(meta, path: str = "meta.json") -> dict:
    """Check a loaded ``PREFIX-meta.json`` against the schema this predictor reads: the
    first problem raises :class:`ModelFilesError` ``"<path>: field <name>: ..."``."""
    def field(tree: dict, prefix: str, key: str, kinds, what: str, optional: bool = False,
              test=None):
        value = tree.get(key, ...)
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if optional and value in (None, ...):
            return None
        ok = value is not ... and isinstance(value, kinds) and \
            (bool in kinds or not isinstance(value, bool)) and (test is None or test(value))
        if not ok:
            got = "missing" if value is ... else f"got {_show(value)}"
            raise ModelFilesError(f"{path}: field {prefix}{key}: expected {what}, {got}")
        return value

    def strings(v):
        return all(isinstance(x, str) for x in v)

    def count(v):
        return not isinstance(v, bool) and v >= 1

    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFilesError(f"{path}: not an mxlstm export meta.json")
    version = field(meta, "", "format_version", int, "an integer format version "
                    f"({', '.join(map(str, KNOWN_VERSIONS))})")
    if version > FORMAT_VERSION:
        raise ModelFilesError(f"{path}: field format_version: {version} is newer than this "
                              f"predictor ({FORMAT_VERSION})")
    field(meta, "", "format_version", int, f"one of {KNOWN_VERSIONS}",
          test=lambda v: v in KNOWN_VERSIONS)
    kind = KINDS[field(meta, "", "kind", str, f"one of {', '.join(KINDS)}",
                       test=lambda v: v in KINDS)]
    field(meta, "", "label_names", list, "a list of strings" + (
        " (one per class)" if kind.labelled else ""),
        test=lambda v: strings(v) and (bool(v) or not kind.labelled))
    field(meta, "", "streaming", bool, "true or false", optional=True)
    field(meta, "", "fingerprint", dict, "an object with params_sha256")
    field(meta["fingerprint"], "fingerprint.", "params_sha256", str, "a sha256 hex digest")
    spec = field(meta, "", "input", dict, "an object (names, type, dtype, ...)")
    names = field(spec, "input.", "names", list, "a list of graph input names starting "
                  "with 'data'", test=lambda v: strings(v) and v[:1] == ["data"])
    tokens = field(spec, "input.", "type", str, "'float' or 'tokens'",
                   test=lambda v: v in ("float", "tokens")) == "tokens"
    field(spec, "input.", "dtype", str, "a numpy dtype name such as float32 or int32",
          test=lambda v: v in ("float16", "float32", "float64", "int32", "int64"))
    features = field(spec, "input.", "features", int, "an integer >= 1 (features per step)",
                     optional=tokens, test=count)
    field(spec, "input.", "vocab_size", int, "an integer >= 1", optional=not tokens,
          test=count)
    for key in ("fixed_length", "sequence_length", "max_train_length"):
        field(spec, "input.", key, int, "null or an integer >= 1", optional=True, test=count)
    field(spec, "input.", "series_lengths", list, "null or [shortest, longest]",
          optional=True, test=lambda v: len(v) == 2 and all(isinstance(x, int) for x in v))
    states = field(spec, "input.", "states", list, "a list of {name, shape}")
    for k, state in enumerate(states):
        where = f"input.states[{k}]."
        if not isinstance(state, dict):
            raise ModelFilesError(f"{path}: field input.states[{k}]: expected an object "
                                  f"{{name, shape}}, got {_show(state)}")
        field(state, where, "name", str, "one of input.names", test=lambda v: v in names)
        field(state, where, "shape", list, "a list of integers with one 'N'", test=lambda v: (
            v.count("N") == 1 and all(d == "N" or (isinstance(d, int) and count(d))
                                      for d in v)))
    known = {"data", "valid_length"} | {s["name"] for s in states}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ModelFilesError(f"{path}: field input.names: unknown input {unknown[0]!r} "
                              f"(not data, valid_length or a state)")
    pre = field(meta, "", "preprocessing", dict, "an object")
    norm = field(pre, "preprocessing.", "normalization", dict, "null or {mean, std}",
                 optional=True)
    for key in ("mean", "std") if norm else ():
        field(norm, "preprocessing.normalization.", key, list, f"{features} numbers (one per "
              "feature)", test=lambda v: len(v) == features and all(
                  isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))
    vocab = field(pre, "preprocessing.", "idx_to_token", list, "null or a list of strings",
                  optional=kind.answer != "tokens", test=strings)
    tokenizer = field(pre, "preprocessing.", "tokenizer", dict, "an object {rule, level}",
                      optional=not (tokens and vocab))
    if tokenizer:
        field(tokenizer, "preprocessing.tokenizer.", "rule", str,
              f"{WORD_RULE!r} or {CHAR_RULE!r}", test=lambda v: v in (WORD_RULE, CHAR_RULE))
    for key in ("pad_id", "unk_id"):
        field(pre, "preprocessing.", key, int, "an integer id", optional=not vocab,
              test=lambda v: 0 <= v < max(len(vocab or ()), spec.get("vocab_size") or 0))
    field(pre, "preprocessing.", "truncate", int, "null or an integer >= 0", optional=True,
          test=lambda v: v >= 0)
    config = field(meta, "", "config", dict, "an object", optional=True) or {}
    data = field(config, "config.", "data", dict, "an object", optional=True) or {}
    field(data, "config.data.", "text_field", str, "a column name", optional=True)
    return meta
