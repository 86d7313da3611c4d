"""The splits read to count training series (``train.small_data``), kept for the one
``prepare`` that follows, so that a run reads its data files once.

:func:`count_training` reads the splits and keeps them; :func:`read_splits` hands them
over once (and forgets them), when the configuration names the same data and the files
are unchanged (size, modification time, inode); otherwise it reads them afresh. Nothing
is shared: the kept objects go to exactly one caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mxlstm.config import RunConfig

Reader = Callable[[RunConfig], tuple[Any, Any]]
_kept: dict[tuple, tuple[Any, Any]] = {}


def _key(cfg: RunConfig) -> tuple:
    d = cfg.data
    files = []
    for path in (d.path, d.test_path):
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        files.append(None if st is None else (st.st_size, st.st_mtime_ns, st.st_ino))
    return cfg.task, d.name, d.path, d.test_path, *files


def count_training(cfg: RunConfig, read: Reader) -> int:
    """Series in the training split of ``read(cfg)``; the splits are kept for
    :func:`read_splits`."""
    splits = read(cfg)
    _kept.clear()
    _kept[_key(cfg)] = splits
    return len(splits[0])


def read_splits(cfg: RunConfig, read: Reader) -> tuple[Any, Any]:
    """The kept splits of ``cfg``'s data if :func:`count_training` read them (handed over
    once), else ``read(cfg)``."""
    kept = _kept.pop(_key(cfg), None)
    _kept.clear()
    return kept if kept is not None else read(cfg)
