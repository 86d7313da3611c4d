"""Deployment: export trained models, predict without mxlstm, ONNX where it is exact.

* :func:`export_model` — ``PREFIX-symbol.json``, ``PREFIX-0000.params``, ``PREFIX-meta.json``
* :func:`export_onnx` — ``PREFIX.onnx`` (opset 13) for graphs that convert exactly
* :class:`Predictor` — :mod:`mxlstm.deploy.predictor`, a standalone file (stdlib, numpy,
  mxnet only) that turns raw input into answers with the three exported files
"""

from mxlstm.deploy.export import export_model
from mxlstm.deploy.onnx_export import export_onnx, onnx_refusal
from mxlstm.deploy.predictor import Predictor, PredictorError

__all__ = ["export_model", "export_onnx", "onnx_refusal", "Predictor", "PredictorError"]
