#!/usr/bin/env python
"""Train a language model (default: Jane Austen, word level): a thin wrapper over `mxlstm train`.

    python scripts/train_lm.py --out runs/austen [--set data.level=char] [--data corpus.txt]
"""

import sys

from mxlstm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--task", "lm", *sys.argv[1:]]))
