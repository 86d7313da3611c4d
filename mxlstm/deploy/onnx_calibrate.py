"""Calibration batches for the static int8 quantization of the series model's convolutions.

ONNX Runtime's static quantization (``QLinearConv``) needs the range of each convolution's
input and output, measured on real inputs once at export. :func:`calibration_batches` takes
them from the run's **training split only**, without augmentation: ``count`` samples evenly
spaced over the split (every class of a split sorted by class), padded into batches by the
training loader's own batchify function, so the same run always gives the same batches
and the same int8 graph.
"""

from __future__ import annotations

import numpy as np

from mxlstm.data.augment_batch import unaugmented

SAMPLES = 256
BATCH = 32


def calibration_indices(size: int, count: int = SAMPLES) -> np.ndarray:
    """``min(count, size)`` indices evenly spaced over ``[0, size)``, first and last included."""
    return np.unique(np.linspace(0, size - 1, min(count, size)).round().astype(int))


def calibration_batches(prepared, meta: dict, count: int = SAMPLES, batch: int = BATCH
                        ) -> list[dict[str, np.ndarray]]:
    """Graph inputs ``{data (N, T, C), valid_length (N,)}`` of training samples (module
    doc); a fixed-length export gets only the samples of its length (maybe none)."""
    dataset, pad = unaugmented(prepared.train_loader)
    samples = [dataset[int(i)] for i in calibration_indices(len(dataset), count)]
    fixed = meta["input"].get("fixed_length")
    if fixed:  # a fixed-length graph reads exactly its T steps
        samples = [s for s in samples if len(s[0]) == fixed]
    dtype = np.dtype(meta["input"]["dtype"])
    batches = []
    for start in range(0, len(samples), batch):
        x, _, lengths = pad(samples[start:start + batch])[:3]
        batches.append({"data": x.asnumpy().astype(dtype),
                        "valid_length": lengths.asnumpy().astype(np.float32)})
    return batches


def reader(batches: list[dict[str, np.ndarray]], names: list[str]):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``batches`` (inputs
    ``names`` of the graph)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self):
            arrays = next(self._batches, None)
            return None if arrays is None else {n: arrays[n] for n in names}

    return _Reader()


def split_batches(loader, meta: dict) -> list[dict[str, np.ndarray]]:
    """Graph inputs of every batch of an evaluation ``loader`` (e.g. the validation split,
    for the export-time comparison of the int8 graph with the fp32 one)."""
    dtype = np.dtype(meta["input"]["dtype"])
    batches = []
    for batch in loader:
        x = batch[0].asnumpy().astype(dtype)
        lengths = batch[2].asnumpy() if len(batch) > 2 else np.full(len(x), x.shape[1])
        batches.append({"data": x, "valid_length": lengths.astype(np.float32)})
    return batches
