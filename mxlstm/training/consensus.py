"""Agreement between the workers of a distributed job before training starts.

A ``dist_sync`` step needs every worker: workers that resume from checkpoints of
different epochs run different numbers of steps, and the one with fewer waits for the
others for ever at the end. :func:`agree_on_start` compares the starting epochs of all
workers through the kvstore and stops every worker with one clear line instead.
"""

from __future__ import annotations

from typing import Any

import mxnet as mx

from mxlstm.errors import TrainingError, error_reason

# An int key (the Trainer uses the ints 0..P-1; one kvstore cannot mix int and str keys)
# far above any parameter index.
START_KEY = 2**31 - 2


def _is_dist(kvstore: Any) -> bool:
    return isinstance(kvstore, mx.kv.KVStore) and kvstore.type.startswith("dist")


def agree_on_start(kvstore: Any, epoch: int) -> None:
    """Check that every worker of a dist kvstore starts from ``epoch``; no-op otherwise.

    Every worker must call this exactly once, at the same point relative to the other
    kvstore operations (``init`` of a dist kvstore is collective): before the Trainer's
    kvstore is initialised, which ``Trainer.load_states`` (a resume) does. Each worker pushes a
    vector of ``num_workers`` zeros with its epoch at its rank; the servers sum the pushes,
    so the pulled vector holds the starting epoch of every rank. Raises
    :class:`~mxlstm.errors.TrainingError` (on every worker) if they differ.
    """
    if not _is_dist(kvstore) or kvstore.num_workers < 2:
        return
    n, rank = kvstore.num_workers, kvstore.rank
    mine = mx.nd.zeros((n,), dtype="float32")
    mine[rank] = float(epoch) + 1.0  # +1: a rank that pushed nothing shows as 0
    gathered = mx.nd.zeros((n,), dtype="float32")
    try:
        kvstore.init(START_KEY, mx.nd.zeros((n,), dtype="float32"))
        kvstore.push(START_KEY, mine)
        kvstore.pull(START_KEY, out=gathered)
        epochs = [int(round(v)) - 1 for v in gathered.asnumpy().tolist()]
    except mx.base.MXNetError as err:
        raise TrainingError(f"workers cannot compare their starting epochs: "
                            f"{error_reason(err)}") from None
    if len(set(epochs)) > 1 or epochs[rank] != epoch:
        listed = ", ".join(f"rank {r}: {e}" for r, e in enumerate(epochs))
        raise TrainingError(
            f"workers resume from different epochs (epochs done by {listed}): resume every "
            f"worker from the same run directory state (OUT/worker-*/checkpoints/latest)")
