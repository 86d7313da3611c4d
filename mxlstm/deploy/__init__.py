"""Deployment: export trained models, predict without mxlstm, ONNX where it is exact.

* :func:`export_model` — ``PREFIX-symbol.json``, ``PREFIX-0000.params``, ``PREFIX-meta.json``
* :func:`export_onnx` — ``PREFIX.onnx``: native ONNX LSTM/GRU/RNN with ``sequence_lens``,
  verified in ONNX Runtime (``int8=True``: also ``PREFIX-int8.onnx``), or refused
* :class:`Predictor` — :mod:`mxlstm.deploy.predictor`, standalone files (stdlib, numpy, and
  mxnet or onnxruntime) that turn raw input into answers with the exported files
"""

from mxlstm.deploy.export import export_model
from mxlstm.deploy.onnx_export import export_onnx, onnx_refusal
from mxlstm.deploy.predictor import Predictor, PredictorError

__all__ = ["export_model", "export_onnx", "onnx_refusal", "Predictor", "PredictorError"]
