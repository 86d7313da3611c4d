"""Candidate defaults trained on several sets at once: ``python scripts/screen_defaults.py``.

Each run is ``mxlstm train`` in its own process (``--set`` overrides on top of the task's
preset); finished runs (a ``report.json``) are not trained again, so an interrupted grid
resumes. Results go to ``OUT/results.jsonl`` and a markdown table (per seed, mean, worst).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# set name -> (task, overrides); sets of the issue "defaults that work on unseen data"
SETS = {
    "GunPoint": ("uea", {"data.name": "GunPoint"}),
    "ItalyPowerDemand": ("uea", {"data.name": "ItalyPowerDemand"}),
    "OSULeaf": ("uea", {"data.name": "OSULeaf"}),
    "ACSF1": ("uea", {"data.name": "ACSF1"}),
    "JapaneseVowels": ("uea", {"data.name": "JapaneseVowels"}),
    "vowels": ("vowels", {}),
    "digits": ("digits", {}),
    "text": ("text", {}),
    "Tecator": ("series-regression", {"data.name": "Tecator"}),
}
FCN = {"model.family": "lstm_fcn", "model.conv_filters": "64,128,64",
       "model.series_norm": "auto", "model.max_steps": "512"}
# candidate name -> overrides on top of the preset (an empty dict: the preset as shipped)
CANDIDATES = {
    "preset": {},
    "znorm": {"model.series_norm": "true"},
    "fcn": FCN,
    "fcn_chrono": {**FCN, "model.chrono_init": "-1"},
    "fcn_warmup": {**FCN, "train.warmup_steps": "30"},
    "fcn_lr1e-3": {**FCN, "train.lr": "0.001"},
    # shorter series (windows averaged to <= 128 steps) and batches of 16: about 3x the
    # optimizer steps of "fcn" for the same compute on OSULeaf / ACSF1
    "fcn_b16": {**FCN, "model.max_steps": "128", "train.batch_size": "16"},
    "fcn_b16_level": {**FCN, "model.max_steps": "128", "train.batch_size": "16",
                      "model.series_norm": "level"},
    "fcn_b16_chrono": {**FCN, "model.max_steps": "128", "train.batch_size": "16",
                       "model.chrono_init": "-1"},
}


def run_one(out: Path, task: str, overrides: dict, seed: int) -> dict:
    """Train one run into ``out`` (unless finished) and return its report."""
    report = out / "report.json"
    if not report.exists():
        cmd = [sys.executable, "-m", "mxlstm", "train", "--task", task, "--seed", str(seed),
               "--out", str(out), "--set", "train.progress=false"]
        for key, value in overrides.items():
            cmd += ["--set", f"{key}={value}"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(str(out) + ".log", "w") as log:
            subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    return json.loads(report.read_text()) if report.exists() else {}


def score(report: dict) -> float | None:
    """Test accuracy (classification) or RMSE (regression) of a report."""
    test = report.get("test", {})
    return test.get("accuracy", test.get("rmse"))


def screen(out: Path, candidates: list[str], sets: list[str], seeds: list[int],
           extra: dict) -> list[dict]:
    """Train every (candidate, set, seed); append each result to ``out/results.jsonl``."""
    rows = []
    for name in candidates:
        for set_name in sets:
            task, base = SETS[set_name]
            for seed in seeds:
                tag = "-".join(f"{k.split('.')[1]}={v}" for k, v in extra.items())
                run = out / f"{name}{'-' + tag if tag else ''}" / f"{set_name}-s{seed}"
                report = run_one(run, task, {**base, **CANDIDATES[name], **extra}, seed)
                row = {"candidate": name, "extra": extra, "set": set_name, "seed": seed,
                       "score": score(report), "seconds": report.get("seconds"),
                       "best_epoch": report.get("best_epoch"),
                       "baseline": report.get("baseline")}
                rows.append(row)
                with open(out / "results.jsonl", "a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    return rows


def ensemble_of(out: Path, run_dirs: list[Path]) -> dict:
    """The ``train.ensemble=K`` run made of finished single-seed runs (seeds S, S+1, ...):
    each is copied to ``out/members/seed-S`` and the ensemble is evaluated exactly as
    ``mxlstm train --set train.ensemble=K --seed S`` would after training them."""
    import shutil

    from mxlstm import runs
    from mxlstm.config import apply_overrides

    seeds = []
    for run in run_dirs:
        cfg = runs.recorded_config(run)
        seeds.append(cfg.train.seed)
        target = out / "members" / f"seed-{cfg.train.seed}"
        if not target.exists():
            shutil.copytree(run, target, ignore=shutil.ignore_patterns("*.lock", ".lock*"))
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError(f"member seeds must be consecutive, got {seeds}")
    first = runs.recorded_config(run_dirs[0])
    cfg = apply_overrides(first, {"train.ensemble": len(seeds)}, "ensemble_of")
    return runs.train(cfg, out, resume=True)


def table(rows: list[dict]) -> str:
    """Markdown: one line per (candidate, set) with per-seed scores, mean and worst."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["candidate"], json.dumps(row["extra"], sort_keys=True), row["set"])
        groups.setdefault(key, []).append(row)
    lines = ["| candidate | extra | set | per seed | mean | worst | seconds (mean) |",
             "|---|---|---|---|---:|---:|---:|"]
    for (name, extra, set_name), group in groups.items():
        scores = [r["score"] for r in sorted(group, key=lambda r: r["seed"])
                  if r["score"] is not None]
        if not scores:
            continue
        pct = [100 * s for s in scores] if set_name != "Tecator" else scores
        worst = max(pct) if set_name == "Tecator" else min(pct)
        secs = [r["seconds"] for r in group if r["seconds"]]
        lines.append(f"| {name} | {extra} | {set_name} | "
                     f"{' / '.join(f'{p:.2f}' for p in pct)} | {sum(pct) / len(pct):.2f} | "
                     f"{worst:.2f} | {sum(secs) / max(len(secs), 1):.0f} |")
    return "\n".join(lines)


def summary(screen: Path, candidate: str, set_name: str, seeds=(0, 1, 2),
            ensembles: Path | None = None) -> dict:
    """Per-seed scores, mean, worst, the seed ensemble's score and the baselines of one
    (candidate, set) of a finished screen (the ensemble is assembled when missing)."""
    runs_ = [screen / candidate / f"{set_name}-s{s}" for s in seeds]
    reports = [json.loads((r / "report.json").read_text()) for r in runs_]
    scores = [score(r) for r in reports]
    out = {"set": set_name, "candidate": candidate, "scores": scores,
           "mean": sum(scores) / len(scores),
           "worst": (max if set_name == "Tecator" else min)(scores),
           "seconds": [r.get("seconds") for r in reports],
           "baseline": reports[0].get("baseline")}
    if ensembles is not None:
        out["ensemble"] = score(ensemble_of(ensembles / candidate / set_name, runs_))
    return out
