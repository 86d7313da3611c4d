"""mxlstm: LSTM (memory cell) sequence models, trainers and deployment on MXNet/Gluon."""

__version__ = "0.1.0"

from mxlstm.api import (  # noqa: E402
    LanguageModel,
    SequenceClassifier,
    SequenceRegressor,
    TextClassifier,
    load,
)
from mxlstm.blocks.cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from mxlstm.blocks.recurrent import GRU, LSTM, RNN, RecurrentLayer  # noqa: E402
from mxlstm.errors import ConfigError, DataError, ModelFileError, MxlstmError  # noqa: E402

__all__ = [
    "LSTMCell", "GRUCell", "RNNCell", "RecurrentLayer", "LSTM", "GRU", "RNN",
    "MxlstmError", "DataError", "ConfigError", "ModelFileError", "__version__",
    "SequenceClassifier", "SequenceRegressor", "TextClassifier", "LanguageModel", "load",
]
