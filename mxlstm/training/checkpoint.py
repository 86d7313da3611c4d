"""Atomic, resumable training checkpoints.

A training state is everything needed to go on with a run as if it had never stopped:

1. Model parameters: ``model.params`` (``Block.save_parameters``).
2. Optimizer state: ``optimizer.params`` + ``optimizer.json`` (see
   :mod:`mxlstm.training.optimizer_state`): per-parameter states (e.g. Adam moments) and
   the update counters, so the LR schedule resumes at the right update count. No pickle:
   loading a checkpoint never runs code from it.
3. Epoch: completed epochs, ``state["epoch"]``.
4. Global step: completed updates, ``state["global_step"]`` (orders checkpoints on lookup).
5. Early stopping: best metric, best epoch, epochs without improvement.
6. Metric history: the per-epoch metric records so far.
7. Config: in ``state`` and/or as an extra file (``config.json``; a vocabulary likewise).
8. RNG: mxlstm re-seeds every RNG (python, numpy, mxnet) at each epoch start from
   ``(seed, epoch)``, so the RNG state at an epoch boundary is a pure function of the seed
   and need not be stored.  For completeness ``random.getstate()`` and
   ``np.random.get_state()`` are still stored as JSON in ``state["rng"]`` (set on every save,
   see :func:`capture_rng_state`); MXNet's generator state cannot be read back.

Items 3-8 are the JSON dict ``state.json`` (non-finite floats as ``NaN`` / ``Infinity``).
Layout: ``run_dir/checkpoints/latest`` (text file naming the last saved tag) and
``run_dir/checkpoints/<tag>/`` with ``model.params``, the optimizer files (absent without a
trainer), ``state.json``, extra files and ``MANIFEST.json`` (written last: size + sha256 of
every other file).

Crash safety: a checkpoint is built and fsynced in ``.tmp-<tag>-<pid>``; an existing
``<tag>`` is renamed to ``.old-<tag>-<pid>``, the temp dir renamed to ``<tag>``, the old one
removed, then ``latest`` is replaced atomically.  Renames are atomic, so at every instant
``<tag>`` or ``.old-<tag>-<pid>`` is complete; :func:`find_checkpoint` looks at both and the
next save of the tag restores / removes leftovers.  One writer per run directory (the run
lock of :mod:`mxlstm.training.rundir`).  Checkpoints of mxlstm 0.1 stored the optimizer as
a pickle (``trainer.states``): their parameters still load, their optimizer state is
refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mxlstm.errors import ModelFileError, error_reason
from mxlstm.preprocess import sha256_file
from mxlstm.training import atomic
from mxlstm.training.atomic import write_atomic
from mxlstm.training.optimizer_state import (
    ARRAYS_FILE,
    load_optimizer_state,
    save_optimizer_state,
)
from mxlstm.training.optimizer_state import STATE_FILE as OPTIMIZER_FILE

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"
MANIFEST = "MANIFEST.json"
PARAMS_FILE = "model.params"
PICKLED_TRAINER_FILE = "trainer.states"  # mxlstm 0.1: a pickle, never loaded
STATE_FILE = "state.json"
_RESERVED = {PARAMS_FILE, PICKLED_TRAINER_FILE, ARRAYS_FILE, OPTIMIZER_FILE, STATE_FILE,
             MANIFEST}
_FORMAT = "mxlstm-checkpoint"
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_LEFTOVER_RE = re.compile(r"^\.(?P<kind>tmp|old)-(?P<tag>.+)-(?P<pid>\d+)$")
_LATEST_TEMP_RE = re.compile(r"^\.latest\..*\.tmp$")


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy scalars/arrays, NDArrays, paths and sets."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "asnumpy"):
        return obj.asnumpy().tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def capture_rng_state() -> dict:
    """Return python's and numpy's global RNG states as a JSON-serialisable dict."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"bit_generator": name, "keys": keys.tolist(), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }


def restore_rng_state(rng: dict) -> None:
    """Restore the RNG states captured by :func:`capture_rng_state`."""
    try:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        n = rng["numpy"]
        np.random.set_state((n["bit_generator"], np.asarray(n["keys"], dtype=np.uint32),
                             int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"])))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed RNG state ({err})") from None


_sha256 = sha256_file  # the file hash of the whole package (mxlstm.preprocess)


def _check_tag(tag: str) -> None:
    if not isinstance(tag, str) or not _TAG_RE.match(tag) or tag == LATEST:
        raise ValueError(f"invalid checkpoint tag {tag!r}: use letters, digits, '_', '.', '-' "
                         f"(not starting with '.' or '-') and not {LATEST!r}")


def _leftovers(ckpt_dir: Path, kind: str, tag: str | None = None) -> list[Path]:
    out = []
    for entry in ckpt_dir.iterdir():
        m = _LEFTOVER_RE.match(entry.name)
        if m and m["kind"] == kind and (tag is None or m["tag"] == tag) and entry.is_dir():
            out.append(entry)
    return out


def _step_key(path: Path) -> int:
    """Sort key: ``global_step`` from state.json, or -1."""
    try:
        return int(json.loads((path / STATE_FILE).read_text("utf-8"))["global_step"])
    except (OSError, ValueError, TypeError, KeyError):
        return -1


def _problem(path: Path) -> str | None:
    """Describe what is wrong with checkpoint dir ``path`` (naming the file), or None if valid."""
    if not path.is_dir():
        return f"{path}: no such checkpoint directory"
    mf = path / MANIFEST
    try:
        manifest = json.loads(mf.read_text("utf-8"))
    except FileNotFoundError:
        return f"{mf}: missing (incomplete or foreign checkpoint)"
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{mf}: unreadable ({err})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT \
            or not isinstance(files, dict):
        return f"{mf}: not an mxlstm checkpoint manifest"
    for name in (PARAMS_FILE, STATE_FILE):
        if name not in files:
            return f"{mf}: does not list {name}"
    for name, entry in files.items():
        if Path(name).name != name or name.startswith(".") or not isinstance(entry, dict):
            return f"{mf}: bad entry {name!r}"
        file = path / name
        try:
            size = file.stat().st_size
        except OSError:
            return f"{file}: missing"
        if size != entry.get("size"):
            return f"{file}: size {size} differs from {entry.get('size')} in the manifest"
        if _sha256(file) != entry.get("sha256"):
            return f"{file}: sha256 differs from the manifest (corrupted)"
    return None


def _recover(ckpt_dir: Path, tag: str) -> None:
    """Restore a missing ``<tag>`` from a valid ``.old-<tag>-*``; remove tmp / old leftovers."""
    final = ckpt_dir / tag
    if not final.exists():
        for cand in sorted(_leftovers(ckpt_dir, "old", tag), key=_step_key, reverse=True):
            if _problem(cand) is None:
                log.warning("restoring checkpoint %s from %s (interrupted save)", final, cand)
                os.rename(cand, final)
                atomic.fsync_path(ckpt_dir, directory=True)
                break
    for leftover in _leftovers(ckpt_dir, "tmp", tag) + _leftovers(ckpt_dir, "old", tag):
        atomic.remove_tree(leftover)


def _remove_latest_temps(ckpt_dir: Path) -> None:
    for entry in ckpt_dir.iterdir():
        if _LATEST_TEMP_RE.match(entry.name) and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()


def save_checkpoint(run_dir: PathLike, tag: str, model, trainer, state: dict,
                    files: dict[str, str | bytes] | None = None) -> Path:
    """Save a training state atomically as ``run_dir/checkpoints/<tag>/``; return that dir.

    ``tag`` (e.g. ``"best"``, ``"epoch-0003"``; letters, digits, ``_.-``) replaces an existing
    checkpoint of that name, and ``checkpoints/latest`` then names it.  ``model`` is saved with
    ``save_parameters``, ``trainer`` (unless None) with ``save_states``, ``state`` as JSON
    (numpy values converted; ``"rng"`` set to :func:`capture_rng_state` at save time) and
    ``files`` (plain names such as ``config.json``; str as UTF-8) as they are.
    """
    _check_tag(tag)
    extra = {name: atomic.as_bytes(data) for name, data in (files or {}).items()}
    for name in extra:
        if name in _RESERVED or Path(name).name != name or name.startswith("."):
            raise ValueError(f"invalid extra checkpoint file name {name!r}")
    state = {**state, "rng": capture_rng_state()}
    state_bytes = json.dumps(state, indent=1, default=json_default).encode("utf-8")
    ckpt_dir = Path(run_dir) / CHECKPOINTS_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _recover(ckpt_dir, tag)
    pid = os.getpid()
    tmp, old, final = ckpt_dir / f".tmp-{tag}-{pid}", ckpt_dir / f".old-{tag}-{pid}", ckpt_dir / tag
    tmp.mkdir()
    try:
        model.save_parameters(str(tmp / PARAMS_FILE))
        names = [PARAMS_FILE]
        if trainer is not None:
            names += save_optimizer_state(trainer, tmp)
        for name in names:  # written without fsync
            atomic.fsync_path(tmp / name)
        for name, data in extra.items():
            atomic.write_new(tmp / name, data)
            names.append(name)
        atomic.write_new(tmp / STATE_FILE, state_bytes)
        names.append(STATE_FILE)
        manifest = {"format": _FORMAT, "version": 1, "tag": tag, "files": {
            name: {"size": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
            for name in names}}
        atomic.write_new(tmp / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
        atomic.fsync_path(tmp, directory=True)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    had_old = final.exists()
    if had_old:
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        if had_old:  # best effort: put the previous checkpoint back under its name
            with contextlib.suppress(OSError):
                os.rename(old, final)
        raise
    atomic.fsync_path(ckpt_dir, directory=True)
    atomic.remove_tree(old)
    _remove_latest_temps(ckpt_dir)
    write_atomic(ckpt_dir / LATEST, tag + "\n")
    log.debug("saved checkpoint %s", final)
    return final


def validate_checkpoint(path: PathLike) -> bool:
    """True if ``path`` has a manifest and every listed file's size and sha256 match."""
    return _problem(Path(path)) is None


def find_checkpoint(run_dir: PathLike, tag: str = "latest") -> Path | None:
    """Return the directory of a valid checkpoint of ``run_dir``, or None.

    ``"latest"`` means the tag named in ``checkpoints/latest``, or if that is missing or
    invalid, the valid checkpoint with the highest ``global_step`` in its ``state.json``.  A
    missing or invalid ``<tag>`` is looked up in ``.old-<tag>-*`` (left by an interrupted
    save).  Invalid checkpoints are skipped with a warning naming the bad file.
    """
    ckpt_dir = Path(run_dir) / CHECKPOINTS_DIR
    if not ckpt_dir.is_dir():
        return None
    checked: set[Path] = set()

    def first_valid(cands: list[Path]) -> Path | None:
        for cand in cands:
            if cand in checked:
                continue
            checked.add(cand)
            problem = _problem(cand)
            if problem is None:
                return cand
            log.warning("skipping invalid checkpoint: %s", problem)
        return None

    def resolve(name: str) -> Path | None:
        final = ckpt_dir / name
        olds = sorted(_leftovers(ckpt_dir, "old", name), key=_step_key, reverse=True)
        found = first_valid(([final] if final.exists() else []) + olds)
        if found is not None and found != final:
            log.warning("using %s: an interrupted save left %s missing or invalid", found, final)
        return found

    if tag != LATEST:
        _check_tag(tag)
        return resolve(tag)
    pointer = ckpt_dir / LATEST
    try:
        name = pointer.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    if name and _TAG_RE.match(name) and name != LATEST:
        found = resolve(name)
        if found is not None:
            return found
    if name:
        log.warning("%s names %r, not a valid checkpoint: using the newest valid one",
                    pointer, name[:100])
    cands = [e for e in ckpt_dir.iterdir() if e.is_dir() and not e.name.startswith(".")]
    cands += _leftovers(ckpt_dir, "old")
    return first_valid(sorted(cands, key=_step_key, reverse=True))


def checkpoint_epoch(path: PathLike | None) -> int:
    """The epochs done by checkpoint dir ``path`` (0 for None or an unreadable state; loading
    it reports the problem)."""
    if path is None:
        return 0
    try:
        return int(json.loads((Path(path) / STATE_FILE).read_text("utf-8"))["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def load_checkpoint(path: PathLike, model, trainer, ctx=None) -> dict:
    """Validate checkpoint dir ``path``, load it into ``model`` and ``trainer`` (unless None)
    and return its state dict.  ``ctx`` (an ``mx.Context`` or a list) defaults to the model's
    current context (CPU if the model is not initialized yet).

    Raises
    ------
    ModelFileError
        Naming the file, if the checkpoint is missing, incomplete or corrupted, or its
        parameters / trainer states do not fit ``model`` / ``trainer``.
    """
    path = Path(path)
    problem = _problem(path)
    if problem is not None:
        raise ModelFileError(f"invalid checkpoint: {problem}")
    state_file = path / STATE_FILE
    try:
        state = json.loads(state_file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{state_file}: unreadable ({err})") from None
    if not isinstance(state, dict):
        raise ModelFileError(f"{state_file}: expected a JSON object")
    params = list(model.collect_params().values())
    if ctx is None and params:
        with contextlib.suppress(RuntimeError):  # not initialized: MXNet loads on CPU
            ctx = params[0].list_ctx()
    params_file = path / PARAMS_FILE
    try:
        model.load_parameters(str(params_file), ctx=ctx)
    except Exception as err:
        raise ModelFileError(f"{params_file}: parameters do not fit the model "
                             f"({error_reason(err)})") from err
    if trainer is not None:
        if (path / PICKLED_TRAINER_FILE).exists() and not (path / OPTIMIZER_FILE).exists():
            raise ModelFileError(
                f"{path / PICKLED_TRAINER_FILE}: optimizer state saved as a pickle by an older "
                f"mxlstm; it is not loaded (a pickle can run code). The parameters still "
                f"evaluate and export; to train on, start a new run")
        load_optimizer_state(trainer, path)
    return state


def prune_checkpoints(run_dir: PathLike, keep: set[str]) -> list[Path]:
    """Remove checkpoint dirs whose tag is not in ``keep``, and stale temp / old dirs.

    A kept tag whose directory an interrupted save left missing is first restored from its
    ``.old-<tag>-*`` dir.  Returns the removed paths.
    """
    ckpt_dir = Path(run_dir) / CHECKPOINTS_DIR
    if not ckpt_dir.is_dir():
        return []
    for tag in keep:
        if isinstance(tag, str) and _TAG_RE.match(tag) and tag != LATEST:
            _recover(ckpt_dir, tag)
    removed = []
    for entry in sorted(ckpt_dir.iterdir()):
        if entry.is_dir():
            if entry.name in keep or (entry.name.startswith(".")
                                      and not _LEFTOVER_RE.match(entry.name)):
                continue
            atomic.remove_tree(entry)
            removed.append(entry)
        elif _LATEST_TEMP_RE.match(entry.name):
            with contextlib.suppress(OSError):
                entry.unlink()
            removed.append(entry)
    if removed:
        log.debug("pruned %s", ", ".join(p.name for p in removed))
    return removed
