"""Optimizer state of a ``gluon.Trainer`` saved without pickle.

``Trainer.save_states`` pickles the optimizer, and unpickling a file runs whatever code
the file asks for: a crafted run directory would run code on the machine that resumes
it. Here the per-parameter states (e.g. Adam's moments) go to an NDArray file
(``mx.nd.save``: a plain array container) and the counters to JSON:

* ``optimizer.params`` -- every state array, keyed ``"<index>/<position>"``;
* ``optimizer.json`` -- the optimizer's name, ``num_update``, the per-device update counts
  (Adam's bias correction reads them), the learning rate when no scheduler owns it
  (the plateau schedule changes it) and the nesting of each parameter's state
  (``null``, an array, or a list / tuple of those).

The learning-rate scheduler is not stored: it is rebuilt from the run's configuration and
is a function of ``num_update`` (see ``trainer.make_optimizer``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mxnet as mx
from mxnet import gluon

from mxlstm.errors import ModelFileError, error_reason

FORMAT = "mxlstm-optimizer-state"
ARRAYS_FILE = "optimizer.params"
STATE_FILE = "optimizer.json"


def _flatten(state: Any, prefix: str, arrays: dict[str, mx.nd.NDArray]) -> Any:
    """A JSON description of ``state``; its arrays go into ``arrays``."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        arrays[prefix] = state.as_in_context(mx.cpu())
        return {"array": prefix}
    if isinstance(state, tuple | list):
        kind = "tuple" if isinstance(state, tuple) else "list"
        return {kind: [_flatten(s, f"{prefix}.{i}", arrays) for i, s in enumerate(state)]}
    raise TypeError(f"optimizer state of type {type(state).__name__} cannot be saved")


def _rebuild(layout: Any, arrays: dict[str, mx.nd.NDArray], where: str) -> Any:
    if layout is None:
        return None
    if isinstance(layout, dict) and len(layout) == 1:
        (kind, value), = layout.items()
        if kind == "array" and isinstance(value, str) and value in arrays:
            return arrays[value].copy()
        if kind in ("tuple", "list") and isinstance(value, list):
            items = [_rebuild(v, arrays, where) for v in value]
            return tuple(items) if kind == "tuple" else items
    raise ModelFileError(f"{where}: damaged optimizer state layout {str(layout)[:80]!r}")


def save_optimizer_state(trainer: gluon.Trainer, directory: Path) -> list[str]:
    """Write the trainer's optimizer state into ``directory``; returns the file names."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    updater = trainer._updaters[0]  # every context's updater holds the same states
    optimizer = trainer._optimizer
    arrays: dict[str, mx.nd.NDArray] = {}
    layout = {str(index): _flatten(state, str(index), arrays)
              for index, state in updater.states.items()}
    counts = {str(device): {str(i): int(c) for i, c in per_index.items()}
              for device, per_index in optimizer._all_index_update_counts.items()}
    info = {"format": FORMAT, "version": 1, "optimizer": type(optimizer).__name__.lower(),
            "num_update": int(optimizer.num_update), "index_update_counts": counts,
            "lr": None if optimizer.lr_scheduler is not None else float(optimizer.lr),
            "states": layout}
    mx.nd.save(str(directory / ARRAYS_FILE), arrays)
    (directory / STATE_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return [ARRAYS_FILE, STATE_FILE]


def _index(key: str) -> int | str:
    return int(key) if key.lstrip("-").isdigit() else key


def load_optimizer_state(trainer: gluon.Trainer, directory: Path) -> None:
    """Load what :func:`save_optimizer_state` wrote into ``trainer`` (built by the same
    configuration). Every problem raises :class:`ModelFileError` naming the file."""
    info_file, arrays_file = directory / STATE_FILE, directory / ARRAYS_FILE
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{info_file}: missing (checkpoint saved without a "
                             f"trainer)") from None
    except (OSError, ValueError) as err:
        raise ModelFileError(f"{info_file}: unreadable ({err})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT \
            or not isinstance(info.get("states"), dict):
        raise ModelFileError(f"{info_file}: not an mxlstm optimizer state")
    optimizer = trainer._optimizer
    name = type(optimizer).__name__.lower()
    if info.get("optimizer") != name:
        raise ModelFileError(f"{info_file}: state of optimizer {info.get('optimizer')!r}, "
                             f"but the run uses {name!r}")
    try:
        loaded = mx.nd.load(str(arrays_file))
    except mx.base.MXNetError as err:
        raise ModelFileError(f"{arrays_file}: cannot load ({error_reason(err)})") from None
    if isinstance(loaded, list) and not loaded:  # no state arrays (e.g. plain SGD)
        loaded = {}
    if not isinstance(loaded, dict):
        raise ModelFileError(f"{arrays_file}: expected named arrays")
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    expected = {p.name: p for p in trainer._params}
    try:
        states = {_index(k): v for k, v in info["states"].items()}
        counts = {int(d): {_index(i): int(c) for i, c in per.items()}
                  for d, per in info["index_update_counts"].items()}
        num_update = int(info["num_update"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{info_file}: damaged ({err})") from None
    if any(not isinstance(i, int) or not 0 <= i < len(expected) for i in states):
        raise ModelFileError(f"{info_file}: states for {len(states)} parameters do not fit "
                             f"the model's {len(expected)}")
    shapes = [p.shape for p in trainer._params]
    for key, array in loaded.items():
        index = _index(key.split(".")[0])
        if not isinstance(index, int) or not 0 <= index < len(shapes) \
                or array.shape != shapes[index]:
            raise ModelFileError(f"{arrays_file}: state {key!r} of shape {array.shape} does "
                                 f"not fit the model's parameters")
    for updater in trainer._updaters:
        updater.states = {i: _rebuild(s, loaded, str(info_file)) for i, s in states.items()}
        updater.states_synced = dict.fromkeys(updater.states, False)
    optimizer.num_update = num_update
    optimizer._all_index_update_counts = counts or {0: {}}
    optimizer._index_update_count = optimizer._all_index_update_counts.setdefault(0, {})
    if info.get("lr") is not None and optimizer.lr_scheduler is None:
        optimizer.set_learning_rate(float(info["lr"]))
