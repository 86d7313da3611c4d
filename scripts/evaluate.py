#!/usr/bin/env python
"""Evaluate a trained model directory: a thin wrapper over `mxlstm evaluate`.

    python scripts/evaluate.py --model runs/digits [--data other.npz]
"""

import sys

from mxlstm.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
