"""The benchmark driver behind mxlstm bench (also python -m mxlstm.bench): run, roof,
profile, all, e2e, setup-torch.

* ``run --config X --impl Y --mode train|infer [--steps N --warmup W --threads K]``: one
  measurement in this process; prints one JSON line (``--impl torch`` hands over to
  ``.venv-torch``).
* ``roof --config X``: times the config's GEMMs; prints one JSON line.
* ``profile --config X --impl Y [--steps N --top K]``: training steps under ``mx.profiler``,
  top operators by total time.
* ``all [--pairs 5] [--out docs/benchmarks.md] [--configs a,b] [--impls ...] [--quick]``:
  the interleaved driver; writes the Markdown report and a JSON file beside it.
* ``e2e [--tasks lm,text,digits] [--pairs 5] [--batches N] [--set k=v]``: ``mxlstm train``
  against the bare model step of the same task, interleaved (:mod:`mxlstm.bench.e2e`);
  prints one JSON line per task and a Markdown table.
* ``setup-torch``: creates ``.venv-torch`` with the pinned CPU wheel of PyTorch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mxlstm.bench import e2e, report, torch_runner
from mxlstm.bench.configs import CONFIGS, IMPLS, MODES, MXNET_IMPLS, get_config, quick

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# glibc (>= 2.35) backs large malloc'd buffers with transparent huge pages: 2 MiB page
# faults instead of 4 KiB ones. MXNet 1.9 pools no CPU memory, so an LM step's (N*T, V)
# logits (45 MB) are mmap'ed and faulted in afresh at every step; on these virtual machines
# that costs LM inference ~1.3-1.6x (docs/benchmarks.md). Set for every framework alike.
HUGE_PAGES = "glibc.malloc.hugetlb=1"


def with_huge_pages(tunables: str | None) -> str:
    """``GLIBC_TUNABLES`` with :data:`HUGE_PAGES` (a ``hugetlb`` the user set is kept)."""
    items = [t for t in (tunables or "").split(":") if t]
    if not any(t.startswith("glibc.malloc.hugetlb=") for t in items):
        items.append(HUGE_PAGES)
    return ":".join(items)


def bench_env(threads: int) -> dict[str, str]:
    """This environment with the same thread count and malloc settings for every
    framework."""
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    env["MXNET_CPU_WORKER_NTHREADS"] = "1"
    env["GLIBC_TUNABLES"] = with_huge_pages(env.get("GLIBC_TUNABLES"))
    root = str(torch_runner.REPO_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _ensure_threads(threads: int) -> None:
    """Re-exec with the thread variables and ``GLIBC_TUNABLES`` set (MXNet reads the
    former when it is imported, glibc the latter when the process starts)."""
    if all(os.environ.get(var) == str(threads) for var in THREAD_VARS) \
            and os.environ.get("MXNET_CPU_WORKER_NTHREADS") == "1" \
            and os.environ.get("GLIBC_TUNABLES") == with_huge_pages(
                os.environ.get("GLIBC_TUNABLES")):
        return
    os.execve(sys.executable, [sys.executable, "-m", "mxlstm.bench", *sys.argv[1:]],
              bench_env(threads))


def _default_threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def run_json(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one measurement process; its last JSON line, or ``{'error': ...}``."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=torch_runner.REPO_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def mxnet_cmd(sub: str, config: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mxlstm.bench", sub, "--config", config, *extra]


def system_meta(threads: int) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": os.cpu_count(), "threads": threads, "platform": platform.platform()}


def drive(args: argparse.Namespace) -> int:
    """Interleaved runs of every (config, mode, impl), pair by pair; writes the report."""
    cfgs = [get_config(n) for n in args.configs.split(",")] if args.configs \
        else list(CONFIGS.values())
    cfgs = [quick(c) for c in cfgs] if args.quick else cfgs
    impls = args.impls.split(",") if args.impls else list(IMPLS)
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        raise SystemExit(f"unknown impls {unknown}; choose from {', '.join(IMPLS)}")
    load_start = os.getloadavg()[0]
    pairs = 1 if args.quick else args.pairs
    env = bench_env(args.threads)
    unavailable = {}
    if "torch" in impls:
        reason = torch_runner.torch_status()
        if reason:
            unavailable["torch"] = reason
    steps = {c.name: {m: args.steps or c.steps(m) for m in MODES} for c in cfgs}
    warmup = {c.name: args.warmup if args.warmup is not None else c.warmup for c in cfgs}
    shape_flag = [] if args.static_shape else ["--no-static-shape"]
    runs: list[dict] = []
    roofs: list[dict] = []

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for pair in range(pairs):
        for cfg in cfgs:
            rec = run_json(mxnet_cmd("roof", cfg.name, "--threads", str(args.threads)), env,
                           args.timeout)
            roofs.append({**rec, "pair": pair})
            log(f"[pair {pair + 1}/{pairs}] {cfg.name} roof: " + (
                rec.get("error") or f"train {rec['train']['roof_gflops']:.1f} GFLOP/s"))
            for mode in MODES:
                for impl in impls:
                    if impl in unavailable:
                        continue
                    n, w = steps[cfg.name][mode], warmup[cfg.name]
                    cmd = (torch_runner.run_command(cfg.name, mode, n, w, args.threads)
                           if impl == "torch" else
                           mxnet_cmd("run", cfg.name, "--impl", impl, "--mode", mode,
                                     "--steps", str(n), "--warmup", str(w),
                                     "--threads", str(args.threads), *shape_flag))
                    rec = {**run_json(cmd, env, args.timeout), "pair": pair,
                           "config": cfg.name, "impl": impl, "mode": mode}
                    runs.append(rec)
                    log(f"[pair {pair + 1}/{pairs}] {cfg.name} {mode} {impl}: " + (
                        rec.get("error") or f"{rec['tokens_per_s']:,.0f} tokens/s"))

    meta = system_meta(args.threads)
    meta["command"] = "python -m mxlstm.bench " + shlex.join(sys.argv[1:])
    meta.update(pairs=pairs, quick=args.quick, static_shape=args.static_shape,
                load_average=[round(load_start, 2), round(os.getloadavg()[0], 2)])
    versions = {"python": platform.python_version()}
    for rec in runs + roofs:
        if "framework" in rec:
            name, version = rec["framework"].split(" ", 1)
            versions[name] = version
        if "numpy" in rec:
            versions.setdefault("numpy (" + rec.get("framework", "?").split()[0] + ")",
                                rec["numpy"])
    meta["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    if pairs < 5 and not args.quick:
        meta["note"] = f"only {pairs} pairs: indicative"
    summary = report.summarize(cfgs, impls, runs, roofs, unavailable)
    out = Path(args.out)
    report.write(out, report.render(meta, cfgs, summary, steps))
    data = {"meta": meta, "steps": steps, "warmup": warmup, "summary": summary,
            "runs": runs, "roofs": roofs}
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {out} and {out.with_suffix('.json')}")
    failed = [r for r in runs + roofs if "error" in r]
    return 1 if failed else 0


def e2e_command(args: argparse.Namespace) -> int:
    """``e2e``: trainer vs bare step per task; JSON lines and the Markdown table on stdout."""
    from mxlstm.config import parse_set_options

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    results = e2e.drive(tasks, args.pairs, args.batches, args.threads, bench_env(args.threads),
                        run_json, args.timeout, parse_set_options(args.set), args.one_batch,
                        log=lambda msg: print(msg, file=sys.stderr, flush=True))
    for rec in results:
        print(json.dumps(rec), flush=True)
    print()
    print(e2e.markdown(results, "python -m mxlstm.bench " + shlex.join(sys.argv[1:])))
    return 1 if any(r["errors"] or not r["pairs"] for r in results) else 0


def main(argv: list[str] | None = None, prog: str = "python -m mxlstm.bench") -> int:
    """``prog``: the command as the user typed it, for ``--help`` and usage lines."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    threads = {"type": int, "default": _default_threads(), "help": "threads per process"}
    p = sub.add_parser("run", help="one measurement, one JSON line")
    p.add_argument("--config", required=True)
    p.add_argument("--impl", required=True, choices=IMPLS)
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--steps", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--threads", **threads)
    p.add_argument("--no-static-shape", dest="static_shape", action="store_false",
                   help="hybridize MXNet models with static_alloc only")
    p = sub.add_parser("roof", help="GEMM roof of a config, one JSON line")
    p.add_argument("--config", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", **threads)
    p = sub.add_parser("profile", help="top operators of training steps under mx.profiler")
    p.add_argument("--config", required=True)
    p.add_argument("--impl", default="mxlstm-gates", choices=MXNET_IMPLS)
    p.add_argument("--mode", default="train", choices=MODES)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--threads", **threads)
    p.add_argument("--raw", action="store_true", help="also print mx.profiler.dumps()")
    p.add_argument("--trace", help="chrome trace file (default: in the temp directory)")
    p.add_argument("--no-static-shape", dest="static_shape", action="store_false")
    p = sub.add_parser("all", help="interleaved driver, writes the report")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--out", default="docs/benchmarks.md")
    p.add_argument("--configs", help="comma-separated names (default: all)")
    p.add_argument("--impls", help=f"comma-separated subset of {','.join(IMPLS)}")
    p.add_argument("--quick", action="store_true", help="1 pair, 3 steps: smoke test")
    p.add_argument("--steps", type=int, help="timed steps per process (default: per config)")
    p.add_argument("--warmup", type=int)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    p.add_argument("--threads", **threads)
    p.add_argument("--no-static-shape", dest="static_shape", action="store_false",
                   help="hybridize MXNet models with static_alloc only")
    p = sub.add_parser("e2e", help="mxlstm train vs the bare model step, interleaved")
    p.add_argument("--tasks", default=",".join(e2e.DEFAULT_TASKS),
                   help="comma-separated task names")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--batches", type=int, default=e2e.DEFAULT_BATCHES,
                   help="least number of timed batches per process")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for both the trainer and the bare step")
    p.add_argument("--one-batch", action="store_true",
                   help="bare step repeats one batch instead of the trainer's batches")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    p.add_argument("--threads", **threads)
    sub.add_parser("setup-torch", help="create .venv-torch with torch==2.13.0 (CPU)")
    args = parser.parse_args(argv)

    if args.command == "setup-torch":
        torch_runner.create_torch_venv()
        return 0
    if args.command == "all":
        return drive(args)
    if args.command == "e2e":
        return e2e_command(args)
    cfg = get_config(args.config)
    if args.command == "run" and args.impl == "torch":
        if not torch_runner.torch_python().exists():
            print(json.dumps({"config": cfg.name, "impl": "torch", "error": "not installed"}))
            return 1
        cmd = torch_runner.run_command(cfg.name, args.mode,
                                       args.steps if args.steps is not None else cfg.steps(
                                           args.mode),
                                       args.warmup if args.warmup is not None else cfg.warmup,
                                       args.threads)
        os.execve(cmd[0], cmd, bench_env(args.threads))
    _ensure_threads(args.threads)
    from mxlstm.bench import mxnet_runner

    if args.command == "roof":
        print(json.dumps(mxnet_runner.roof(cfg, args.threads, args.repeats)), flush=True)
    elif args.command == "run":
        steps = args.steps if args.steps is not None else cfg.steps(args.mode)
        warmup = args.warmup if args.warmup is not None else cfg.warmup
        print(json.dumps(mxnet_runner.run(cfg, args.impl, args.mode, steps, warmup,
                                          args.threads, args.static_shape)), flush=True)
    else:
        trace = args.trace or os.path.join(
            tempfile.gettempdir(), f"mxlstm-profile-{cfg.name}-{args.impl}-{args.mode}.json")
        rows, table = mxnet_runner.profile(cfg, args.impl, args.steps, args.warmup, trace,
                                           args.mode, args.static_shape)
        print(f"# {cfg.name} {args.impl} {args.mode}: {args.steps} profiled steps "
              f"(static_shape={args.static_shape}), operators by total time")
        print(mxnet_runner.format_profile(rows, args.steps, args.top))
        print(f"chrome trace (chrome://tracing, Perfetto): {trace}")
        if args.raw:
            print(table)
    return 0

