"""Multi Model Server handler of an mxlstm model archive (``PREFIX.mar``).

Shipped into the archive as ``mxlstm_handler.py`` beside the exported files and the
standalone predictor (:data:`mxlstm.deploy.ship.STANDALONE_FILES`); it imports only the
standard library and those files (numpy, and mxnet or onnxruntime), never mxlstm.
MMS calls :func:`handle` with a batch of requests (one row each, several when the model
was registered with ``batch_size > 1``) and answers each with the string it returns.

Request body (``POST /predictions/NAME``)::

    "a fine film"                          one raw input: text (text models, LMs), or a
                                           .ts data line / CSV line (series models)
    [[0.1, 0.2], [0.3, 0.4]]               one raw input: float rows (T, C) or token ids
    {"input": X, "top_k": 3}               one raw input, with options
    {"inputs": [X1, X2, ...], "top_k": 3}  several: answered as {"answers": [...]}

A ``text/plain`` body is one raw string (not JSON). Answers are the predictor's dicts
(``label``/``probabilities``/``top_k``, ``value``, ``labels``, ``next_token``/``top_k``).
Every bad request is answered alone with status 400 (413 above the size limit) and
``{"error": "<one line>"}``; the other requests of the batch and the worker go on.
"""

from __future__ import annotations

import json
import logging
import os
import sys

SETTINGS_FILE = "mxlstm-serve.json"  # {"prefix", "backend", "max_body_bytes", "max_inputs"}
BACKEND_ENV = "MXLSTM_SERVE_BACKEND"  # overrides the archive's backend (mxlstm serve --backend)
QUIET_ENV = "MXLSTM_SERVE_QUIET"  # "1": the worker sends MMS no per-request metric line
_PHRASES = {400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error"}
_service = None


class RequestError(ValueError):
    """A request the model cannot answer; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _no_constants(name: str):
    raise RequestError(f"{name} is not a number this model takes (JSON has no {name})")


class Service:
    """One worker's predictor and the request rules; built once, at model load."""

    def __init__(self, model_dir: str) -> None:
        if model_dir not in sys.path:
            sys.path.insert(0, model_dir)
        from predictor import InputError, Predictor, PredictorError

        with open(os.path.join(model_dir, SETTINGS_FILE), encoding="utf-8") as f:
            settings = json.load(f)
        self.backend = os.environ.get(BACKEND_ENV) or settings.get("backend", "mxnet")
        self.max_body = int(settings.get("max_body_bytes", 1 << 20))
        self.max_inputs = int(settings.get("max_inputs", 256))
        self.predictor = Predictor(os.path.join(model_dir, settings["prefix"]),
                                   backend=self.backend, threads=1)
        self.errors = (InputError, PredictorError)
        if os.environ.get(QUIET_ENV) == "1":  # MMS logs each request's PredictionTime at
            logging.getLogger("mms.service").setLevel(logging.WARNING)  # info: skip it

    # -- one request -> raw inputs --------------------------------------------------------
    def parse(self, body, content_type: str) -> tuple[list, int | None, bool]:
        """``(raw inputs, top_k, several)`` of one request body."""
        if content_type.startswith("application/x-www-form-urlencoded"):  # curl -d's default
            raise RequestError("a form body (Content-Type application/x-www-form-urlencoded,"
                               " what curl -d sends): send JSON with -H 'Content-Type: "
                               "application/json', or text with text/plain")
        if isinstance(body, (bytes, bytearray)):
            if len(body) > self.max_body:
                raise RequestError(f"request body of {len(body)} bytes is above the limit "
                                   f"of {self.max_body} bytes", 413)
            try:
                body = bytes(body).decode("utf-8")
            except UnicodeDecodeError as err:
                raise RequestError(f"request body is not UTF-8 text (byte {err.start})") \
                    from None
        if isinstance(body, str):
            if not body.strip():
                raise RequestError("empty request body")
            if content_type.startswith("text/"):
                return [body.rstrip("\r\n")], None, False
            try:
                body = json.loads(body, parse_constant=_no_constants)
            except ValueError as err:
                if isinstance(err, RequestError):
                    raise
                raise RequestError(f"request body is not JSON ({_one_line(err)}); send "
                                   f"text as a JSON string or as text/plain") from None
        if not isinstance(body, dict):
            return [body], None, False
        unknown = sorted(set(body) - {"input", "inputs", "top_k"})
        if unknown or ("input" in body) == ("inputs" in body):
            raise RequestError("expected a raw input, or an object with 'input' or "
                               "'inputs' (and optionally 'top_k')" +
                               (f"; unknown field {unknown[0]!r}" if unknown else ""))
        top_k = body.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise RequestError(f"top_k must be a whole number, got {_one_line(top_k)}")
        if "input" in body:
            return [body["input"]], top_k, False
        items = body["inputs"]
        if not isinstance(items, list) or not items or len(items) > self.max_inputs:
            raise RequestError(f"'inputs' must be a list of 1 to {self.max_inputs} raw "
                               f"inputs")
        return items, top_k, True

    # -- a batch of requests ----------------------------------------------------------------
    def answer(self, requests: list[tuple]) -> list[tuple[int, dict]]:
        """``requests``: ``(items, top_k, several)`` each -> ``(status, answer)`` each.
        Requests with the same ``top_k`` go through the graph as one padded batch."""
        out: list[tuple[int, dict] | None] = [None] * len(requests)
        groups: dict = {}
        for k, (_, top_k, _) in enumerate(requests):
            groups.setdefault(top_k, []).append(k)
        for top_k, members in groups.items():
            try:
                flat = [item for k in members for item in requests[k][0]]
                answers = self.predictor.predict(flat, top_k=top_k)
            except self.errors:  # one of them is bad: answer each alone
                for k in members:
                    out[k] = self._alone(requests[k])
                continue
            start = 0
            for k in members:
                items, _, several = requests[k]
                mine = answers[start:start + len(items)]
                start += len(items)
                out[k] = (200, {"answers": mine} if several else mine[0])
        return out

    def _alone(self, request: tuple) -> tuple[int, dict]:
        items, top_k, several = request
        try:
            answers = self.predictor.predict(items, top_k=top_k)
        except self.errors as err:
            return 400, {"error": _one_line(err)}
        return 200, ({"answers": answers} if several else answers[0])


def _body(row) -> object:
    if not isinstance(row, dict):
        return row
    for key in ("body", "data"):
        if row.get(key) is not None:
            return row[key]
    return next(iter(row.values()), None)


def _content_type(context, idx: int) -> str:
    try:
        headers = context.get_all_request_header(idx) or {}
    except (AttributeError, IndexError, KeyError, TypeError):
        return ""
    for key, value in headers.items():
        if isinstance(value, dict):  # the parameter's own headers: {"content-type": ...}
            value = value.get("content-type")
        if str(key).lower() == "content-type" or (key == "body" and value):
            return str(value or "").lower()
    return ""


def handle(data, context):
    """MMS entry point: ``data`` None at model load, else one row per request; returns
    one JSON string per row, and sets each row's status and content type."""
    global _service
    if _service is None:
        _service = Service(context.system_properties["model_dir"])
    if data is None:
        return None
    parsed, results = [], [None] * len(data)
    for idx, row in enumerate(data):
        try:
            parsed.append((idx, _service.parse(_body(row), _content_type(context, idx))))
        except RequestError as err:
            results[idx] = (err.status, {"error": _one_line(err)})
    try:
        for (idx, _), result in zip(parsed, _service.answer([p for _, p in parsed])):
            results[idx] = result
    except Exception as err:  # noqa: BLE001 - a bug must not take the worker down
        for idx, _ in parsed:
            results[idx] = (500, {"error": _one_line(f"internal error: "
                                                     f"{type(err).__name__}: {err}")})
    answers = []
    for idx, (status, answer) in enumerate(results):
        context.set_response_content_type(idx, "application/json")
        if status != 200:
            context.set_response_status(status, _PHRASES.get(status, "Error"), idx)
        answers.append(json.dumps(answer, ensure_ascii=False))
    return answers
