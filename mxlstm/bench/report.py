"""Statistics over interleaved runs and the Markdown/JSON report.

Throughput of a row is the median (and min–max) over pairs of each process's
``tokens/s = batch * T / median step time``. Ratios are taken within a pair (both processes
ran back to back, so slow drift of the machine cancels) and then summarised the same way.
Share of roof = the summed time of the step's GEMMs at the roof (same pair) / step time.
Imports no framework itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mxlstm.bench.configs import MODES, BenchConfig, forward_gemms, step_flops

LABELS = {"mxlstm-kernel": "mxlstm kernel", "mxlstm-fused": "mxlstm fused (MXNet RNN op)",
          "mxlstm-gates": "mxlstm gate-level",
          "mxnet-gluon": "bare MXNet gluon.rnn.LSTM", "torch": "PyTorch nn.LSTM"}
CHECK_TOL = 1e-3  # max |hybridized - imperative| first output (train: loss) accepted
RATIOS = (("mxlstm-kernel", "torch", "mxlstm kernel / PyTorch"),
          ("mxlstm-kernel", "mxlstm-fused", "mxlstm kernel / fused"),
          ("mxlstm-fused", "torch", "mxlstm fused / PyTorch"),
          ("mxlstm-fused", "mxnet-gluon", "mxlstm fused / bare MXNet"),
          ("mxlstm-gates", "mxlstm-fused", "gate-level / fused"))


def spread(values: Iterable[float]) -> dict[str, float] | None:
    """``{'median', 'min', 'max', 'n'}`` of ``values``, or None when there are none."""
    vals = [float(v) for v in values]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


def by_pair(runs: list[dict], config: str, impl: str, mode: str) -> dict[int, dict]:
    """Successful runs of one row, keyed by pair index."""
    return {r["pair"]: r for r in runs if r.get("config") == config and r.get("impl") == impl
            and r.get("mode") == mode and "error" not in r}


def pair_ratios(num: dict[int, dict], den: dict[int, dict],
                key: str = "tokens_per_s") -> list[float]:
    """``num[p][key] / den[p][key]`` for every pair ``p`` both have."""
    return [num[p][key] / den[p][key] for p in sorted(num) if p in den and den[p][key]]


def roof_shares(rows: dict[int, dict], roofs: dict[int, dict], mode: str) -> list[float]:
    """Per pair: GEMM time at the roof / measured median step time."""
    return [roofs[p][mode]["gemm_s"] / r["median_s"] for p, r in sorted(rows.items())
            if p in roofs]


def summarize(cfgs: list[BenchConfig], impls: list[str], runs: list[dict],
              roofs: list[dict], unavailable: dict[str, str]) -> dict[str, Any]:
    """Everything the tables show, per config."""
    out: dict[str, Any] = {}
    for cfg in cfgs:
        roof_by_pair = {r["pair"]: r for r in roofs
                        if r.get("config") == cfg.name and "error" not in r}
        rows: dict[str, Any] = {}
        for impl in impls:
            row: dict[str, Any] = {"status": unavailable.get(impl, "ok")}
            for mode in MODES:
                got = by_pair(runs, cfg.name, impl, mode)
                errors = [r["error"] for r in runs if r.get("config") == cfg.name
                          and r.get("impl") == impl and r.get("mode") == mode and "error" in r]
                row[mode] = {
                    "tokens_per_s": spread(r["tokens_per_s"] for r in got.values()),
                    "gflops": spread(r["gflops"] for r in got.values()),
                    "roof_share": spread(roof_shares(got, roof_by_pair, mode)),
                    "peak_rss_mib": spread(r["peak_rss_mib"] for r in got.values()),
                    "check_max_abs_diff": max((r["check_max_abs_diff"] for r in got.values()
                                               if "check_max_abs_diff" in r), default=None),
                    "errors": errors,
                }
            rows[impl] = row
        ratios: dict[str, Any] = {}
        for num, den, label in RATIOS:
            ratios[label] = {mode: spread(pair_ratios(by_pair(runs, cfg.name, num, mode),
                                                      by_pair(runs, cfg.name, den, mode)))
                             for mode in MODES}
        out[cfg.name] = {
            "config": cfg.as_dict(),
            "flops": {mode: step_flops(cfg, mode) for mode in MODES},
            "roof_gflops": {mode: spread(r[mode]["roof_gflops"] for r in roof_by_pair.values())
                            for mode in MODES},
            "rows": rows, "ratios": ratios,
        }
    return out


# -- Markdown ---------------------------------------------------------------------------
def format_spread(s: dict | None, pattern: str = "{:,.0f}") -> str:
    """A :func:`spread` as ``median (min–max)`` for a Markdown cell; ``–`` when missing."""
    if s is None:
        return "–"
    if s["n"] == 1:
        return pattern.format(s["median"])
    return (f"{pattern.format(s['median'])} ({pattern.format(s['min'])}–"
            f"{pattern.format(s['max'])})")


def _describe(cfg: BenchConfig) -> str:
    what = (f"embedding {cfg.input_size} → {cfg.num_layers}×LSTM {cfg.hidden_size} → dense "
            f"{cfg.vocab_size} at every step, softmax CE" if cfg.task == "lm" else
            f"input {cfg.input_size} → {cfg.num_layers}×LSTM {cfg.hidden_size} → last step → "
            f"dense {cfg.num_outputs}, {'softmax CE' if cfg.task == 'classify' else 'MSE'}")
    return (f"{what}; batch {cfg.batch_size}, T {cfg.seq_len}, layout {cfg.layout}; "
            f"{cfg.tokens_per_step:,} tokens/step")


def config_section(cfg: BenchConfig, s: dict[str, Any], steps: dict[str, int]) -> str:
    """The Markdown of one config: description, throughput table, ratio table."""
    gf = {m: s["flops"][m] / 1e9 for m in MODES}
    roof = s["roof_gflops"]
    lines = [
        f"### {cfg.name}", "", _describe(cfg) + ".", "",
        f"Counted FLOPs/step: train {gf['train']:.2f} GFLOP, inference {gf['infer']:.2f} "
        f"GFLOP. GEMM roof: train {format_spread(roof['train'], '{:.1f}')} GFLOP/s, inference "
        f"{format_spread(roof['infer'], '{:.1f}')} GFLOP/s. Timed steps per process: train "
        f"{steps['train']}, inference {steps['infer']}.", "",
        "| implementation | train tokens/s | inference tokens/s | train GFLOP/s | "
        "train share of roof | inference share of roof | peak RSS train / infer (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for impl, row in s["rows"].items():
        label = LABELS.get(impl, impl)
        diffs = {m: row[m]["check_max_abs_diff"] for m in MODES}
        if any(d is not None and d > CHECK_TOL for d in diffs.values()):
            label += " ⚠"
            notes.append(
                f"⚠ {LABELS.get(impl, impl)}: the hybridized model's first output differs from "
                f"the imperative one by up to {diffs['train'] or 0:.3g} (train loss) / "
                f"{diffs['infer'] or 0:.3g} (inference): these timings are of a graph that "
                "computes wrong values (see Method).")
        if row["status"] != "ok":
            lines.append(f"| {label} | {row['status']} | | | | | |")
            continue
        cells = []
        for mode in MODES:
            m = row[mode]
            cells.append(format_spread(m["tokens_per_s"]) if m["tokens_per_s"] or not m["errors"]
                         else "failed: " + m["errors"][0][:60].replace("|", "/"))
        t, i = row["train"], row["infer"]
        rss = (f"{format_spread(t['peak_rss_mib'], '{:.0f}')} / "
               f"{format_spread(i['peak_rss_mib'], '{:.0f}')}")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | "
                     f"{format_spread(t['gflops'], '{:.1f}')} | "
                     f"{format_spread(t['roof_share'], '{:.0%}')} | "
                     f"{format_spread(i['roof_share'], '{:.0%}')} | {rss} |")
    if notes:
        lines += [""] + notes
    lines += ["", "| ratio of throughputs (per pair) | train | inference |", "|---|---:|---:|"]
    for label, r in s["ratios"].items():
        lines.append(f"| {label} | {format_spread(r['train'], '{:.2f}')} | "
                     f"{format_spread(r['infer'], '{:.2f}')} |")
    return "\n".join(lines) + "\n"


def gemm_table(cfg: BenchConfig) -> str:
    """The forward GEMMs of ``cfg`` (a line of the method section)."""
    parts = [f"{g.name} ({g.m}×{g.k})·({g.k}×{g.n})" + (f" ×{g.count}" if g.count > 1 else "")
             for g in forward_gemms(cfg)]
    return f"- {cfg.name}: " + "; ".join(parts)


def render(meta: dict[str, Any], cfgs: list[BenchConfig], summary: dict[str, Any],
           steps: dict[str, dict[str, int]]) -> str:
    """The whole ``docs/benchmarks.md``."""
    head = [
        "# Benchmarks", "",
        "Training step (forward + backward + Adam update) and inference (forward only) "
        "throughput of the LSTM paths on CPU, with PyTorch as the peer.", "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- CPU: {meta['cpu']} ({meta['cores']} logical cores), threads per process: "
        f"{meta['threads']}"
        + (" (1-minute load average at start / end: {} / {})".format(*meta["load_average"])
           if meta.get("load_average") else ""),
        f"- versions: {meta['versions']}",
        f"- pairs: {meta['pairs']} (each pair runs every implementation once, per config "
        "and mode, each in a fresh process)",
    ]
    if meta.get("quick"):
        head.append("- **quick run** (`--quick`): a smoke test with a few steps, "
                    "not a measurement")
    shape = "static_alloc=True, static_shape=True" if meta.get("static_shape", True) \
        else "static_alloc=True (static_shape off: --no-static-shape)"
    head.append(f"- MXNet hybridization: {shape}")
    if meta.get("note"):
        head.append(f"- note: {meta['note']}")
    head += ["", "## Results", ""]
    body = [config_section(cfg, summary[cfg.name], steps[cfg.name]) for cfg in cfgs]
    method = [
        "## Method", "",
        "- Every number comes from a fresh process (`python -m mxlstm.bench run --config X "
        "--impl Y --mode train|infer --steps N --warmup W`), which prints one JSON line: "
        "median/min/max step time after W untimed warm-up steps and the peak RSS "
        "(`resource.getrusage`). Processes alternate A B C D A B C D …, one of each per pair.",
        "- MXNet models are hybridized with `static_alloc=True, static_shape=True`; each step "
        "ends with `mx.nd.waitall()`. PyTorch runs eagerly (`nn.LSTM` is one fused op). "
        "Same seed, same fixed batch (numpy), same thread count (`OMP_NUM_THREADS`, "
        "`MKL_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MXNET_CPU_WORKER_NTHREADS=1`, "
        "`torch.set_num_threads`), the same malloc settings "
        "(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`: large buffers on transparent huge "
        "pages, for every framework). Adam, lr 1e-3, float32.",
        "- Rows: mxlstm `LSTM(..., fused=True)` (MXNet's RNN operator, oneDNN), "
        "`fused=False` (gate-level cell in `contrib.foreach`), bare `gluon.rnn.LSTM`, "
        "PyTorch CPU `nn.LSTM`.",
        "- Check: each MXNet process first runs its model imperatively, then compares the "
        f"hybridized model's first output (train: per-sample loss) with it; more than "
        f"{CHECK_TOL:g} apart marks the row ⚠. On MXNet 1.9.1 `contrib.foreach` whose "
        "input comes from an op in the same graph computes wrong values under "
        "`static_shape=True` with the threaded engine (correct with `static_alloc` alone), so "
        "the gate-level rows always use `static_alloc=True` only (mxlstm refuses "
        "`static_shape` there); `--no-static-shape` does the same for every row.",
        "- FLOPs (multiply-add = 2): per LSTM layer forward `2·T·N·4H·(C+H)`; LM decoder "
        "`2·T·N·H·V`; head `2·N·H·K`; a training step counts 3× forward (each product "
        "`Y = XW` has backward products `dY·Wᵀ` and `Xᵀ·dY` of the same size). Elementwise "
        "work, embedding, softmax and the optimizer are not counted.",
        "- GEMM roof: those products (forward; for training also both backward products, "
        "weight gradients as one product over all steps) timed one by one in a fresh process "
        "with numpy `dot`, MXNet `dot` and MXNet `FullyConnected`, best of the three per "
        "shape; roof = counted FLOPs / summed GEMM time. Share of roof = that GEMM time / "
        "measured step time.",
        "- Forward GEMMs:",
        *[gemm_table(cfg) for cfg in cfgs],
        "- Throughput cells: median over pairs (min–max); ratios are per-pair ratios, "
        "summarised the same way.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(body) + "\n" + "\n".join(method)


KEEP_MARKER = "<!-- written by hand from here on: `make bench` keeps what follows -->"


def write(out: Path, markdown: str) -> None:
    """Write the generated report; an existing file's part from :data:`KEEP_MARKER` on
    (analysis and measurements made by hand) is kept after it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = ""
    if out.is_file():
        old = out.read_text(encoding="utf-8")
        if KEEP_MARKER in old:
            kept = "\n" + old[old.index(KEEP_MARKER):]
    out.write_text(markdown.rstrip("\n") + "\n" + kept, encoding="utf-8")
