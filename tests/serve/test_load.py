"""The load test's summary (no server needed): medians over interleaved repeats, summed
counts, and the per-pair table rows."""

from __future__ import annotations

from mxlstm.serve.load import _median_row, table


def _row(c: int, rps: float, p50: float, errors: int = 0) -> dict:
    return {"concurrency": c, "sent": 10, "answered": 10 - errors, "errors": errors,
            "wrong": 0, "exceptions": 0, "lost": 0, "throughput_rps": rps,
            "p50_ms": p50, "p90_ms": p50 * 2, "p99_ms": p50 * 3}


def test_median_row_takes_medians_and_sums_counts():
    got = _median_row([_row(1, 100.0, 3.0), _row(1, 300.0, 1.0, errors=2),
                       _row(1, 200.0, 9.0)])
    assert (got["throughput_rps"], got["p50_ms"], got["p99_ms"]) == (200.0, 3.0, 9.0)
    assert (got["sent"], got["answered"], got["errors"], got["repeats"]) == (30, 28, 2, 3)


def test_table_gives_the_pair_ratios_and_the_gap_at_concurrency_one():
    rows = [_median_row([_row(c, 100.0 * c, 2.0)]) for c in (1, 32)]
    result = {"in_process": {"p50_ms": 0.5, "p90_ms": 1.0, "p99_ms": 2.0}, "repeats": 2,
              "servers": [{"batch_size": 1, "max_batch_delay_ms": None, "rows": rows},
                          {"batch_size": 16, "max_batch_delay_ms": 10, "rows": rows}],
              "pairs": {"1": {"batching_throughput_ratio": [0.2, 0.3], "median_ratio": 0.25,
                              "p50_gap_ms": [1.5, 0.5], "median_p50_gap_ms": 1.0},
                        "32": {"batching_throughput_ratio": [3.0, 2.0], "median_ratio": 2.5,
                               "p50_gap_ms": [9.0, 9.0], "median_p50_gap_ms": 9.0}}}
    lines = table(result).splitlines()
    assert "| in-process `Predictor.predict_one` | 1 | 600 | | 0.5 | 1.0 | 2.0 | | |" in lines
    assert "| batch 16, 10 ms | 32 | 10 | 3200.0 | 2.0 | 4.0 | 6.0 | 0 | 0 |" in lines
    assert "| 1 | 0.2, 0.3 | 0.25x | 1.5, 0.5 | 1.00 |" in lines
    assert "| 32 | 3.0, 2.0 | 2.50x |  |  |" in lines
