"""Standalone predictor for models exported by ``mxlstm export``.

This file and its siblings (``predictor_inputs.py``, ``predictor_files.py``,
``predictor_meta.py``, ``predictor_backends.py``, and ``preprocess.py`` / ``kinds.py``: the
rules training used) import only the standard library and numpy, plus mxnet for the
``mxnet`` backend (default) or onnxruntime for ``backend="onnxruntime"``. ``mxlstm export``
writes them next to the three
exported files (:mod:`mxlstm.deploy.ship`); run them on a machine without mxlstm::

    PREFIX-symbol.json   the graph          (MXNet HybridBlock.export)      backend mxnet
    PREFIX-0000.params   the weights                                        backend mxnet
    PREFIX.onnx          the ONNX graph     (mxlstm export --onnx)          backend onnxruntime
    PREFIX-meta.json     inputs, preprocessing, labels, outputs, fingerprint

    python predictor.py PREFIX INPUT [--top-k K] [--format F]   # one JSON line per input
    python predictor.py PREFIX - < rows.npy                      # '-': standard input

In Python::

    p = Predictor("out/digits")
    p.predict([rows_a, rows_b])     # raw inputs -> [{'label', 'probabilities', 'top_k'}]
    p.predict_one("a fine film")    # text models take strings
    predict_file(p, "reviews.tsv")  # every input format of ``mxlstm train`` (see
                                    # predictor_inputs.py), with the line of each answer

Raw inputs: a string (text models; numeric models: one ``.ts`` data line or one CSV line
of a univariate series), a list of float rows or a numpy array ``(T, C)``, or token ids.
Several inputs are right-padded into one batch with their valid lengths.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence

import numpy as np

try:  # inside the mxlstm package, or copied beside this file (see the module docstring)
    from .. import preprocess  # noqa: I001
    from ..kinds import KINDS
    from .predictor_backends import BACKENDS, load_graph
    from .predictor_inputs import Inputs, add_input_options, parse_series_line, read_inputs, \
        read_options
    from .predictor_meta import (CHAR_RULE, FORMAT, FORMAT_VERSION, WORD_RULE, InputError,
                                 ModelFilesError, PredictorError, validate_meta)
except ImportError:
    import preprocess  # noqa: I001
    from kinds import KINDS
    from predictor_backends import BACKENDS, load_graph
    from predictor_inputs import Inputs, add_input_options, parse_series_line, read_inputs, \
        read_options
    from predictor_meta import (CHAR_RULE, FORMAT, FORMAT_VERSION, WORD_RULE, InputError,
                                ModelFilesError, PredictorError, validate_meta)

__all__ = ["FORMAT", "FORMAT_VERSION", "CHAR_RULE", "WORD_RULE",
           "Predictor", "PredictorError", "ModelFilesError", "InputError", "Inputs",
           "read_inputs", "parse_series_line", "validate_meta", "predict_file", "tokenize"]


def tokenize(text: str, rule: str = WORD_RULE) -> list[str]:
    """Tokens of ``text`` by the training rule (:func:`preprocess.tokenize`): rule
    ``mxlstm-word-v1`` works on NFC-normalised lower-case text; rule ``chars`` keeps every
    character unchanged."""
    try:
        return preprocess.tokenize(text, rule)
    except ValueError as err:
        raise ModelFilesError(f"{err} in this predictor") from None


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- predictor
class Predictor:
    """Raw input -> answer with an exported model (no mxlstm needed).

    Parameters
    ----------
    prefix : str
        ``PREFIX`` of ``PREFIX-symbol.json``, ``PREFIX-0000.params``, ``PREFIX-meta.json``.
    ctx : mx.Context or None
        MXNet backend: the device (default CPU).
    backend : {'mxnet', 'onnxruntime', 'onnxruntime-int8'}
        The graph runner (:mod:`predictor_backends`); preprocessing and answers are the same.
    threads : int or None
        ONNX Runtime's intra-op threads (None: its default).
    max_batch : int
        Inputs per forward pass; longer lists are split.
    """

    def __init__(self, prefix: str | os.PathLike, ctx=None, max_batch: int = 256,
                 backend: str = "mxnet", threads: int | None = None) -> None:
        self.prefix = os.fspath(prefix)
        self.max_batch = max_batch
        if backend not in BACKENDS:
            raise ModelFilesError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
        self.backend = backend
        if os.path.isfile(os.path.join(self.prefix, "config.json")) and \
                os.path.isdir(os.path.join(self.prefix, "checkpoints")):
            raise ModelFilesError(f"{self.prefix} is a training run, not an export: run "
                                  f"`mxlstm export --model {self.prefix} --out PREFIX` first")
        meta_file = self.prefix + "-meta.json"
        if not os.path.isfile(meta_file):
            raise ModelFilesError(f"missing exported file(s): {meta_file}")
        try:
            with open(meta_file, encoding="utf-8") as f:
                self.meta = validate_meta(json.load(f), meta_file)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelFilesError(f"{meta_file}: damaged meta.json ({err})") from None
        except OSError as err:
            raise ModelFilesError(f"{meta_file}: cannot read ({err.strerror or err})") from None
        spec, pre = self.meta["input"], self.meta["preprocessing"]
        self.kind = self.meta["kind"]
        self.answers = KINDS[self.kind].answer  # labels, step_labels, values or tokens
        self.labels = self.meta["label_names"]
        self.input_names = spec["names"]
        self.states = spec["states"]
        self.fixed_length = spec.get("fixed_length")
        self._is_text = spec["type"] == "tokens"
        self._vocab = pre.get("idx_to_token")
        self._index = {t: i for i, t in enumerate(self._vocab)} if self._vocab else None
        norm = pre.get("normalization")
        self._mean = np.asarray(norm["mean"], np.float32) if norm else None
        self._std = preprocess.floor_std(norm["std"]) if norm else None
        self.graph = load_graph(backend, self.prefix, self.meta, ctx, threads)
        self.output_size = self.graph.output_size  # classes, vocabulary or values
        self._check_outputs(meta_file)

    def _check_outputs(self, meta_file: str) -> None:
        if KINDS[self.kind].labelled:
            field, have = "label_names", len(self.labels)
        elif self.answers == "tokens":
            field, have = "preprocessing.idx_to_token", len(self._vocab)
        else:
            return
        if have != self.output_size:
            raise ModelFilesError(f"{meta_file}: field {field}: {have} names, but the graph "
                                  f"has {self.output_size} outputs")

    def resolve_top_k(self, top_k: int | None, option: str = "top_k") -> int | None:
        """``top_k`` checked against the model: 1..classes (classifiers) or 1..vocabulary
        (language models); None -> 5, or all of them when there are fewer."""
        ranked = KINDS[self.kind].ranked
        if ranked is None:
            if top_k is None:
                return None
            raise InputError(f"{option}: a {self.kind} model has no labels to rank "
                             f"({option} is for classifiers and language models)")
        if top_k is None:
            return min(5, self.output_size)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or \
                not 1 <= top_k <= self.output_size:
            raise InputError(f"{option} must be between 1 and {self.output_size} (the "
                             f"model's number of {ranked}), got {top_k!r}")
        return top_k

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
        return preprocess.normalize(x, self._mean, self._std) if self._mean is not None else x

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

    def batch(self, items: Sequence, where: Sequence[str] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Preprocess and right-pad: ``(x (N, T, C) or ids (N, T), lengths (N,) float32)``;
        ``where[k]`` prefixes the message of a bad input ``k`` (e.g. ``"file:3: "``)."""
        rows = []
        for k, item in enumerate(items):
            try:
                rows.append(self.preprocess(item))
                if self.fixed_length and len(rows[-1]) != self.fixed_length:
                    raise InputError(f"this export reads exactly {self.fixed_length} steps "
                                     f"per input (exported with --fixed-length); got "
                                     f"{len(rows[-1])}")
            except InputError as err:
                if where is None:
                    raise
                raise InputError(f"{where[k]}{err}") from None
        if len(rows) == 1:  # nothing to pad (a fifth of a batch-1 call's Python time)
            return rows[0][None], np.array([len(rows[0])], dtype=np.float32)
        lengths = np.array([len(r) for r in rows], dtype=np.float32)
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
        """Run the graph on numpy inputs in the order of ``input_names``; outputs in the
        order of ``meta['outputs']``."""
        return self.graph.forward(*arrays)

    def predict(self, items: Sequence, top_k: int | None = None,
                where: Sequence[str] | None = None) -> list[dict]:
        """Answers for a list of raw inputs (a 3-D array counts as a list). ``top_k``:
        the k most probable labels (classifiers) or tokens (language models), see
        :meth:`resolve_top_k`; ``where``: message prefixes, one per input."""
        if isinstance(items, str) or len(items) == 0:
            raise InputError("predict() takes a non-empty list of inputs")
        top_k = self.resolve_top_k(top_k)
        results: list[dict] = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start:start + self.max_batch]
            x, lengths = self.batch(chunk, where and where[start:start + self.max_batch])
            results += self._run(x, lengths, self.begin_states(len(chunk)), top_k)[0]
        return results

    def predict_one(self, item, top_k: int | None = None) -> dict:
        """The answer for one raw input."""
        return self.predict([item], top_k)[0]

    def stream(self, chunk, states: list[np.ndarray] | None = None,
               top_k: int | None = None) -> tuple[dict, list[np.ndarray]]:
        """Feed the next raw chunk of one sequence (streaming exports and language models);
        returns the answer after the chunk's last step and the states to pass next time."""
        if not self.states:
            raise InputError("this export takes whole sequences; export with --streaming")
        x, lengths = self.batch([chunk])
        results, new = self._run(x, lengths, states or self.begin_states(1),
                                 self.resolve_top_k(top_k))
        return results[0], new

    def _run(self, x, lengths, states, top_k):
        names = self.input_names
        arrays = {"data": x, "valid_length": lengths}
        arrays.update({s["name"]: v for s, v in zip(self.states, states)})
        outs = self.forward(*[arrays[n] for n in names])
        main, new_states = outs[0], outs[1:]
        if self.states and main.ndim == 3 and self.answers != "step_labels":
            last = lengths.astype(np.int64) - 1  # per-step outputs: the last valid step
            main = main[np.arange(len(main)), last]
        if self.answers in ("tokens", "values", "step_labels"):
            results = [self._answer(main[k], int(lengths[k]), top_k)
                       for k in range(len(main))]
        else:
            results = self._label_answers(main, top_k)
        return results, new_states

    def _label_answers(self, logits: np.ndarray, top_k: int) -> list[dict]:
        """Classifier answers for logits ``(N, K)``: one softmax over the batch and lists
        instead of numpy scalars (a third of the Python time around a batch-1 call); one
        row in Python floats (float64, as :func:`_softmax`; ties ranked alike)."""
        if len(logits) == 1:
            row = logits[0].astype(np.float64).tolist()
            top = max(row)
            exps = [math.exp(v - top) for v in row]
            total = sum(exps)
            if math.isfinite(total):  # else (NaN or inf logits) numpy's rules below
                row = [e / total for e in exps]
                best = sorted(range(len(row)), key=row.__getitem__, reverse=True)[:top_k]
                return self._label_dicts([row], [best])
        p = _softmax(logits)
        best = np.argsort(-p, axis=-1, kind="stable")[:, :top_k].tolist()
        return self._label_dicts(p.tolist(), best)

    def _label_dicts(self, rows: list[list[float]], best: list[list[int]]) -> list[dict]:
        labels = self.labels
        out = []
        for row, top in zip(rows, best):
            out.append({"label": labels[top[0]], "probabilities": dict(zip(labels, row)),
                        "top_k": [{"label": labels[i], "probability": row[i]} for i in top]})
        return out

    def _answer(self, out: np.ndarray, length: int, top_k: int) -> dict:
        """The answer of one row of a language model, regressor or tagger."""
        if self.answers == "tokens":
            p = _softmax(out)
            best = np.argsort(-p, kind="stable")[:top_k]
            tops = [{"token": self._vocab[i], "probability": float(p[i])} for i in best]
            return {"next_token": tops[0]["token"], "top_k": tops}
        if self.answers == "values":
            values = [float(v) for v in out]
            return {"value": values[0] if len(values) == 1 else values}
        return {"labels": [self.labels[i] for i in out[:length].argmax(axis=-1)]}


def predict_file(predictor: Predictor, path: str, top_k: int | None = None,
                 option: str = "--top-k", **read_options) -> list[dict]:
    """Answers for the inputs of file ``path`` (``-``: standard input), each with the
    ``line`` (or array row) it answers; ``read_options`` go to :func:`read_inputs`."""
    top_k = predictor.resolve_top_k(top_k, option)
    items = read_inputs(path, predictor.meta, **read_options)
    answers = predictor.predict([item for _, item in items], top_k=top_k, where=items.where)
    return [{"line": number, **answer} for (number, _), answer in zip(items, answers)]


def main(argv: Sequence[str] | None = None) -> int:
    """``python predictor.py PREFIX INPUT [--top-k K] [--format F]``: one JSON line per
    input; errors: one line ``predictor: error: ...`` and exit status 2."""
    parser = argparse.ArgumentParser(description="predict with an mxlstm export")
    parser.add_argument("prefix", help="PREFIX of PREFIX-symbol.json / -0000.params / -meta.json")
    parser.add_argument("input", help="input file ('-': standard input): text (one a line, "
                        ".tsv, .csv, .jsonl) or series (.npy, .npz, .ts, CSV, IDX)")
    add_input_options(parser)
    parser.add_argument("--backend", choices=BACKENDS, default="mxnet",
                        help="graph runner (onnxruntime: PREFIX.onnx, no mxnet needed)")
    args = parser.parse_args(argv)
    try:
        answers = predict_file(Predictor(args.prefix, backend=args.backend), args.input,
                               args.top_k, **read_options(args))
        for answer in answers:
            print(json.dumps(answer, ensure_ascii=False))
        sys.stdout.flush()
    except PredictorError as err:
        print(f"predictor: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        print("predictor: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
