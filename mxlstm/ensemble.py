"""Seed ensembles (``--set train.ensemble=K``): K runs, one graph that averages them.

Layout of ``--out DIR``::

    DIR/members/seed-S/   a complete run (seeds S = seed, seed + 1, ..., seed + K - 1),
                          each with its own validation split (``train.seed`` draws it)
    DIR/config.json       the ensemble's configuration (``train.ensemble = K``), written
                          once a member has trained (or was interrupted), so that
                          ``--resume`` continues the same K seeds whatever the preset says
    DIR/meta.json         member 0's meta (its normalisation is the ensemble's input) and
                          ``ensemble.members``
    DIR/report.json       the ensemble's test metrics, every member's, the baselines

:class:`EnsembleModel` is an ordinary HybridBlock of ``(x, valid_length)``, so
``mxlstm evaluate``, ``export`` (one graph) and ``predict`` work on DIR as on any run.
Classifiers output ``log(mean_k softmax(logits_k))`` (a softmax of it is the mean of the
members' probabilities), regressors the mean of the members' predictions. Each member
sees the input normalised with its own training statistics: the graph maps member 0's
normalisation to member k's with a per-channel affine (constants of the graph).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from mxlstm.config import RunConfig, apply_overrides
from mxlstm.errors import ConfigError, ModelFileError

log = logging.getLogger(__name__)


class EnsembleModel(HybridBlock):
    """Average of trained members.

    Parameters
    ----------
    members : list of HybridBlock
        Trained models of ``(x (N, T, C), valid_length (N,))``.
    classify : bool
        Average probabilities (output log-probabilities ``(N, K)``) instead of outputs.
    affines : list of (scale, shift) or None
        Per member, ``x_k = x * scale + shift`` (``(C,)`` each) applied to the input first.
    id_maps : list of (V,) arrays or None
        Token models: per member, ``x_k = id_map[x]`` maps member 0's token ids to the
        member's own vocabulary (a token member 0 does not know is ``<unk>`` for all).

    Inputs (positional): ``x (N, T, C)``, ``valid_length (N,)``.
    """

    export_refusal = "the model is a seed ensemble; export it with valid_length (the default)"

    def __init__(self, members: list, classify: bool,
                 affines: list[tuple[np.ndarray, np.ndarray] | None] | None = None,
                 id_maps: list[np.ndarray | None] | None = None) -> None:
        super().__init__()
        self.classify = classify
        self.per_step = False
        self.embedding = None
        self._members = list(members)
        for k, member in enumerate(self._members):
            self.register_child(member, f"member{k}")
        self._affine: list[tuple[str, str] | None] = []
        affines = affines or [None] * len(members)
        with self.name_scope():
            for k, pair in enumerate(affines):
                if pair is None:
                    self._affine.append(None)
                    continue
                for name, value in ((f"scale{k}", pair[0]), (f"shift{k}", pair[1])):
                    setattr(self, name, self.params.get_constant(name, mx.nd.array(value)))
                self._affine.append((f"scale{k}", f"shift{k}"))
            self._id_map: list[str | None] = []
            for k, ids in enumerate(id_maps or [None] * len(members)):
                if ids is None:
                    self._id_map.append(None)
                    continue
                setattr(self, f"ids{k}", self.params.get_constant(
                    f"ids{k}", mx.nd.array(np.asarray(ids, np.float32))))
                self._id_map.append(f"ids{k}")

    def hybrid_forward(self, F, x, valid_length, **constants):
        outs = []
        for k, member in enumerate(self._members):
            xk = x
            if self._affine[k] is not None:
                scale, shift = (constants[name] for name in self._affine[k])
                xk = F.broadcast_add(F.broadcast_mul(x, scale), shift)
            if self._id_map[k] is not None:
                xk = F.cast(F.take(constants[self._id_map[k]], x), dtype="int32")
            out = member(xk, valid_length)
            outs.append(F.softmax(out, axis=-1) if self.classify else out)
        total = outs[0]
        for out in outs[1:]:
            total = total + out
        mean = total / len(outs)
        return F.log(F.maximum(mean, 1e-30)) if self.classify else mean


def member_seeds(cfg: RunConfig) -> list[int]:
    return [cfg.train.seed + k for k in range(cfg.train.ensemble)]


def member_dir(out: Path, seed: int) -> Path:
    return Path(out) / "members" / f"seed-{seed}"


def train_ensemble(cfg: RunConfig, out: str | Path, resume: bool = False,
                   debug: bool = False, extend_epochs: int = 0,
                   explicit: list[tuple[dict, str]] | None = None,
                   progress: str = "auto", quiet: bool = False) -> dict:
    """Train the K members of ``cfg`` (each exactly as ``train.seed=S``, ``ensemble=1``)
    into ``out/members/``, then evaluate their average; returns the report. A resume
    resumes every member as :func:`mxlstm.runs.train` resumes a run (``extend_epochs``,
    the user's ``explicit`` keys, the same checks of the data and configuration)."""
    from mxlstm import runs
    from mxlstm.training.checkpoint import write_atomic
    from mxlstm.training.log import MetricsLog, write_report

    out = Path(out)
    started = time.time()
    had_members = (out / "members").is_dir()
    resumed = resume and had_members
    if (out / "config.json").exists() and not resume:
        raise ConfigError(f"{out} already holds a run; use --resume to continue it or "
                          f"choose another --out")
    reports = []
    try:
        for seed in member_seeds(cfg):
            own = {"train.ensemble": 1, "train.seed": seed}
            member = apply_overrides(cfg, own, "ensemble")
            log.info("ensemble member seed %d of %s", seed, out)
            reports.append(runs.train(
                member, member_dir(out, seed), resume=resume, debug=debug,
                extend_epochs=extend_epochs, progress=progress, quiet=quiet,
                explicit=None if explicit is None else [*explicit, (own, "ensemble")]))
            _record_config(out, cfg)
    except BaseException:
        # the members that ran stay resumable (not a new run refused by members of an
        # earlier one, whose configuration this is not)
        if (resume or not had_members) and any(member_dir(out, s).is_dir()
                                                for s in member_seeds(cfg)):
            with contextlib.suppress(OSError):
                _record_config(out, cfg)
        raise
    if extend_epochs:  # the ensemble's config.json records the members' new total
        planned = max(r.get("epochs_planned") or cfg.train.epochs for r in reports)
        cfg = apply_overrides(cfg, {"train.epochs": planned}, "--extend-epochs")
    meta = json.loads((member_dir(out, member_seeds(cfg)[0]) / "meta.json").read_text())
    meta["ensemble"] = {"members": [f"members/seed-{s}" for s in member_seeds(cfg)]}
    write_atomic(out / "meta.json", json.dumps(meta, indent=2))
    vocab = member_dir(out, member_seeds(cfg)[0]) / "vocab.json"
    if vocab.exists():  # token models read their inputs with member 0's vocabulary
        write_atomic(out / "vocab.json", vocab.read_text(encoding="utf-8"))
    write_atomic(out / "config.json", cfg.to_json())
    test = runs.evaluate(out)["test"]
    # every member's epochs, whichever process trained them (a finished member trains
    # nothing when resumed, and its stored report is that of the process that trained it)
    trained_seconds = [runs.train_seconds(MetricsLog.read(member_dir(out, s) / "metrics.jsonl"))
                       for s in member_seeds(cfg)]
    report = {
        "task": cfg.task, "ensemble": cfg.train.ensemble, "seeds": member_seeds(cfg),
        "test": test, "best_epoch": [r.get("best_epoch") for r in reports],
        "epochs_run": [r.get("epochs_run") for r in reports],
        "members": [{"seed": s, "test": r["test"], "best_epoch": r.get("best_epoch"),
                     "seconds": r.get("seconds"), "train_seconds": t}
                    for s, r, t in zip(member_seeds(cfg), reports, trained_seconds)],
        "single_seed_test": reports[0]["test"], "baseline": reports[0].get("baseline"),
        "counts": reports[0].get("counts"), "selection": reports[0].get("selection"),
        "monitor": reports[0].get("monitor"),
        "seconds": round(time.time() - started, 1),
        "resumed": resumed,
        "train_seconds": round(sum(trained_seconds), 1),
    }
    write_report(out / "report.json", report)
    return report


def _record_config(out: Path, cfg: RunConfig) -> None:
    """``out/config.json`` = ``cfg``, unless it is there already."""
    from mxlstm.training.checkpoint import write_atomic

    if not (out / "config.json").exists():
        write_atomic(out / "config.json", cfg.to_json())


def resume_ensemble_config(out: Path, cfg: RunConfig,
                           explicit: list[tuple[dict, str]] | None) -> RunConfig:
    """The configuration a ``--resume`` into ``out`` continues with when ``out`` holds a
    seed ensemble: its own ``config.json`` (the same K and seeds, whatever the task's
    preset says now) with the user's explicit keys on top, checked as a single run's resume
    is (:func:`mxlstm.training.resume.resume_config`); ``cfg`` unchanged otherwise."""
    from mxlstm.training.resume import resume_config

    if not ((out / "members").is_dir() and (out / "config.json").is_file()):
        return cfg  # a single run (resumed by runs.train itself), or nothing yet
    return resume_config(out, cfg, explicit)


def _affine(base: dict | None, own: dict | None, channels: int):
    """``(scale, shift)`` mapping input normalised with ``base`` to ``own`` (None: same)."""
    if base == own:
        return None
    mean0, std0 = (np.asarray(base[k], np.float64) if base else None for k in ("mean", "std"))
    mean1, std1 = (np.asarray(own[k], np.float64) if own else None for k in ("mean", "std"))
    ones, zeros = np.ones(channels), np.zeros(channels)
    raw_scale, raw_shift = (std0, mean0) if base else (ones, zeros)  # raw = x * s + m
    inv, sub = (1.0 / std1, mean1) if own else (ones, zeros)  # own = (raw - m) / s
    return (raw_scale * inv).astype(np.float32), ((raw_shift - sub) * inv).astype(np.float32)


def _id_map(meta: dict, own: dict) -> np.ndarray | None:
    """Member 0's token ids -> the member's (None: not a token model, or the same)."""
    base, mine = (m.get("files", {}).get("vocab.json") for m in (meta, own))
    if base is None or base == mine:
        return None
    from gluonnlp import Vocab

    first, vocab = Vocab.from_json(base), Vocab.from_json(mine)
    return np.array([vocab[token] for token in first.idx_to_token], np.int64)


def load_ensemble(model_dir: str | Path, cfg: RunConfig, meta: dict, ctx=None):
    """``(prepared, cfg, meta)`` of an ensemble directory: member 0's data with an
    :class:`EnsembleModel` of all members (best checkpoints)."""
    from mxlstm import runs, tasks

    model_dir = Path(model_dir)
    names = (meta.get("ensemble") or {}).get("members")
    if not isinstance(names, list) or not names:
        raise ModelFileError(f"{model_dir / 'meta.json'}: an ensemble run without "
                             f"'ensemble.members'")
    contexts = ctx or [mx.cpu()]
    members, affines, id_maps = [], [], []
    channels = meta["input"].get("channels") or 1
    for name in names:
        path = model_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelFileError(f"{model_dir / 'meta.json'}: member {name!r} outside the run")
        member_prepared, _, member_meta = runs.load_model(path, ctx=contexts)
        members.append(member_prepared.model)
        affines.append(_affine(meta.get("normalization"), member_meta.get("normalization"),
                               channels))
        id_maps.append(_id_map(meta, member_meta))
    prepared = tasks.prepare(cfg, artefacts=meta)
    # one label per sequence: average the members' probabilities (taggers average outputs)
    classify = prepared.spec.kind.labelled and not getattr(members[0], "per_step", False)
    prepared.model = EnsembleModel(members, classify, affines,
                                   id_maps if any(m is not None for m in id_maps) else None)
    prepared.model.params.initialize(ctx=contexts)  # its own: the affine constants
    prepared.model.hybridize(static_alloc=True)
    return prepared, cfg, meta
