#!/usr/bin/env python
"""Adding / copy-memory problems, LSTM against GRU and plain RNN baselines.

    python scripts/train_long_memory.py --task adding --set data.seq_length=500 \
        --set model.cell=rnn --out runs/adding500-rnn
"""

import sys

from mxlstm.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--task" not in args:
        args = ["--task", "adding", *args]
    sys.exit(main(["train", *args]))
