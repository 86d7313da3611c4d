#!/usr/bin/env python
"""Train a sequence classifier (digits, vowels, uea or text): a thin wrapper over `mxlstm train`.

    python scripts/train_classifier.py --task vowels --out runs/vowels [--set key=value ...]
"""

import sys

from mxlstm.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--task" not in args:
        args = ["--task", "digits", *args]
    sys.exit(main(["train", *args]))
