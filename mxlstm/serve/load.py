"""Load test of ``mxlstm serve`` from this machine's loopback, next to the in-process
predictor's latency::

    python -m mxlstm.serve.load --model export/digits.mar [--requests 2000]
        [--concurrency 1,8,32] [--max-seconds 60] [--batch-size 16] [--max-batch-delay 10]
        [--workers 1] [--repeats 1] [--json FILE]

It starts two :class:`~mxlstm.serve.server.Server` on free 127.0.0.1 ports, one request a
forward pass and ``--batch-size`` requests a pass, sends 20 warm-up requests to each,
then, ``--repeats`` times, at each concurrency ``C`` on one server and right after on the
other keeps ``C`` clients (threads, one keep-alive connection each) busy until
``--requests`` answers or ``--max-seconds``. The table gives medians over the repeats
and the per-pair ratios (batching / no batching throughput; no-batching p50 minus the
in-process p50 of the same repeat).
Every answer is checked against the in-process answer; the table gives throughput,
p50/p90/p99 latency, errors (non-200, wrong answers, exceptions) and lost requests (sent,
never answered). The in-process row times ``Predictor.predict_one`` on the same input.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from mxlstm.kinds import KINDS
from mxlstm.serve.archive import read_archive
from mxlstm.serve.http import Client
from mxlstm.serve.server import ServeOptions, Server


def sample_input(meta: dict, seed: int = 0):
    """A raw input for the model of ``meta``: a text (text models, LMs) or float rows
    ``(T, C)`` with ``T`` the export's fixed length, else 8."""
    spec = meta["input"]
    if spec["type"] == "tokens":
        stateful = KINDS[meta["kind"]].stateful  # a language model: a context to go on
        return "she was" if stateful else "she was not a fine film, part 1"
    steps = spec.get("fixed_length") or spec.get("sequence_length") or 8
    return np.random.RandomState(seed).rand(steps, spec["features"]).round(4).tolist()


def percentiles(latencies_s: list[float]) -> dict:
    """p50 / p90 / p99 in ms (None without samples)."""
    if not latencies_s:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
    ms = np.asarray(latencies_s) * 1e3
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}


def drive(url: str, body: str, expected: dict, requests: int, concurrency: int,
          max_seconds: float) -> dict:
    """Send ``body`` to ``url`` (``http://host:port/predictions/NAME``) from
    ``concurrency`` clients until ``requests`` were sent or ``max_seconds`` passed."""
    base, path = url.split("/predictions/", 1)
    lock, sent = threading.Lock(), [0]
    latencies: list[float] = []
    counts = {"answered": 0, "errors": 0, "wrong": 0, "exceptions": 0}
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        conn = Client(base, timeout=max_seconds)
        try:
            while True:
                with lock:
                    if sent[0] >= requests or time.monotonic() > deadline:
                        return
                    sent[0] += 1
                start = time.perf_counter()
                try:
                    status, payload = conn.request("POST", f"/predictions/{path}", body)
                except OSError:
                    with lock:
                        counts["exceptions"] += 1
                    continue
                took = time.perf_counter() - start
                ok = status == 200 and _same(json.loads(payload), expected)
                with lock:
                    latencies.append(took)
                    counts["answered"] += 1
                    counts["errors"] += status != 200
                    counts["wrong"] += status == 200 and not ok
        finally:
            conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    lost = sent[0] - counts["answered"]
    return {"concurrency": concurrency, "sent": sent[0], **counts, "lost": lost,
            "seconds": round(seconds, 3),
            "throughput_rps": round(counts["answered"] / seconds, 1), **percentiles(latencies)}


def _same(got: dict, want: dict, tol: float = 1e-6) -> bool:
    """Answers equal to ``tol`` (probabilities, values) with the same labels / tokens."""
    if set(got) != set(want):
        return False
    for key, value in want.items():
        other = got[key]
        if isinstance(value, float):
            if abs(other - value) > tol:
                return False
        elif isinstance(value, dict):
            if not _same(other, value, tol):
                return False
        elif isinstance(value, list):
            if len(value) != len(other) or not all(
                    _same(a, b, tol) if isinstance(b, dict) else
                    (abs(a - b) <= tol if isinstance(b, float) else a == b)
                    for a, b in zip(other, value)):
                return False
        elif other != value:
            return False
    return True


def in_process_latency(predictor, item, repeats: int = 300) -> dict:
    """``Predictor.predict_one`` on ``item``: p50/p90/p99 over ``repeats`` calls."""
    for _ in range(20):
        predictor.predict_one(item)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict_one(item)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def _median_row(rows: list[dict]) -> dict:
    """Rows of one server and concurrency over the repeats: medians of throughput and
    latencies, sums of the counts."""
    out = {"concurrency": rows[0]["concurrency"], "repeats": len(rows)}
    for key in ("sent", "answered", "errors", "wrong", "exceptions", "lost"):
        out[key] = sum(r[key] for r in rows)
    for key in ("throughput_rps", "p50_ms", "p90_ms", "p99_ms"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = round(float(np.median(values)), 3) if values else None
    return out


def run(archive: str, requests: int, concurrency: list[int], max_seconds: float,
        batch_size: int, max_batch_delay: int, workers: int, repeats: int = 1) -> dict:
    """The whole measurement (see the module docstring) as a dict. Both servers run side
    by side; each repeat times the in-process predictor, then each concurrency on the
    server without batching and right after on the batching one (A B A B ...)."""
    from contextlib import ExitStack

    from mxlstm.deploy.predictor import Predictor

    info = read_archive(archive)
    item = sample_input(info["meta"])
    body = json.dumps(item)
    batches = (1, batch_size)
    with tempfile.TemporaryDirectory(prefix="mxlstm-load-") as tmp, ExitStack() as stack:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        predictor = Predictor(str(Path(tmp) / info["settings"]["prefix"]))
        expected = json.loads(json.dumps(predictor.predict_one(item)))
        urls = []
        for batch in batches:
            options = ServeOptions(port=0, workers=workers, batch_size=batch,
                                   max_batch_delay=max_batch_delay,
                                   run_dir=Path(tmp) / f"run-b{batch}")
            server = stack.enter_context(Server([archive], options))
            urls.append(f"{server.url}/predictions/{info['name']}")
            drive(urls[-1], body, expected, 20, 1, max_seconds)  # warm-up
        in_process, raw = [], [[[] for _ in concurrency] for _ in batches]
        for _ in range(repeats):
            in_process.append(in_process_latency(predictor, item))
            for k, level in enumerate(concurrency):
                for b, url in enumerate(urls):
                    raw[b][k].append(drive(url, body, expected, requests, level, max_seconds))
    result = {"model": info["name"], "input": body[:200], "requests": requests,
              "max_seconds": max_seconds, "workers": workers, "repeats": repeats,
              "in_process": {q: round(float(np.median([x[q] for x in in_process])), 3)
                             for q in in_process[0]}, "servers": [], "pairs": {}}
    for b, batch in enumerate(batches):
        result["servers"].append({"batch_size": batch, "max_batch_delay_ms":
                                  max_batch_delay if batch > 1 else None,
                                  "rows": [_median_row(rows) for rows in raw[b]],
                                  "repeat_rows": raw[b]})
    for k, level in enumerate(concurrency):  # per-pair ratios, then their median
        ratios = [round(y["throughput_rps"] / x["throughput_rps"], 3)
                  for x, y in zip(raw[0][k], raw[1][k])]
        gaps = [round(x["p50_ms"] - ip["p50_ms"], 3) for x, ip in zip(raw[0][k], in_process)]
        result["pairs"][str(level)] = {
            "batching_throughput_ratio": ratios, "median_ratio": float(np.median(ratios)),
            "p50_gap_ms": gaps, "median_p50_gap_ms": float(np.median(gaps))}
    return result


def table(result: dict) -> str:
    """The result as markdown: medians over the repeats, then the per-pair ratios."""
    lines = ["| server | concurrency | requests | throughput (req/s) | p50 ms | p90 ms | "
             "p99 ms | errors | lost |", "|---|---|---|---|---|---|---|---|---|"]
    ip, repeats = result["in_process"], result.get("repeats", 1)
    lines.append(f"| in-process `Predictor.predict_one` | 1 | {300 * repeats} | | "
                 f"{ip['p50_ms']} | {ip['p90_ms']} | {ip['p99_ms']} | | |")
    for server in result["servers"]:
        name = "no batching" if server["batch_size"] == 1 else \
            f"batch {server['batch_size']}, {server['max_batch_delay_ms']} ms"
        for r in server["rows"]:
            lines.append(f"| {name} | {r['concurrency']} | {r['answered']} | "
                         f"{r['throughput_rps']} | {r['p50_ms']} | {r['p90_ms']} | "
                         f"{r['p99_ms']} | {r['errors'] + r['wrong'] + r['exceptions']} | "
                         f"{r['lost']} |")
    lines.append("")
    lines.append("| concurrency | batching / no batching throughput, per pair | median | "
                 "no-batching p50 - in-process p50 (ms), per repeat | median |")
    lines.append("|---|---|---|---|---|")
    for level, pair in result.get("pairs", {}).items():  # the p50 gap: at concurrency 1
        gaps, gap = (", ".join(map(str, pair["p50_gap_ms"])),
                     f"{pair['median_p50_gap_ms']:.2f}") if level == "1" else ("", "")
        lines.append(f"| {level} | {', '.join(map(str, pair['batching_throughput_ratio']))} | "
                     f"{pair['median_ratio']:.2f}x | {gaps} | {gap} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mxlstm.serve.load",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, metavar="PREFIX.mar")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-batch-delay", type=int, default=10, metavar="MS")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1,
                        help="interleaved repeats (A B A B); the table gives medians")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    args = parser.parse_args(argv)
    from mxlstm.errors import MxlstmError

    try:
        levels = [int(c) for c in args.concurrency.split(",")]
        if min(levels + [args.requests, args.repeats, args.batch_size]) < 1:
            raise ValueError("--concurrency, --requests, --repeats and --batch-size must "
                             "be at least 1")
        result = run(args.model, args.requests, levels, args.max_seconds, args.batch_size,
                     args.max_batch_delay, args.workers, args.repeats)
    except (MxlstmError, ValueError) as err:
        print(f"mxlstm: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
