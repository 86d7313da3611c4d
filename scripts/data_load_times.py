#!/usr/bin/env python
"""Item counts and load times (best of 3) of every embedded dataset.

    .venv/bin/python scripts/data_load_times.py
"""

import time
from collections.abc import Callable

from mxlstm.data.sources import load_digits, load_uea
from mxlstm.data.text import load_austen, load_movie_reviews


def timed(name: str, load: Callable) -> None:
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        items = load()
        seconds.append(time.perf_counter() - start)
    print(f"{name:30s} {len(items):>9,} items  {min(seconds) * 1000:8.1f} ms")


if __name__ == "__main__":
    timed("digits", load_digits)
    for dataset in ("JapaneseVowels", "GunPoint", "ItalyPowerDemand"):
        for split in ("train", "test"):
            timed(f"{dataset} {split}", lambda d=dataset, s=split: load_uea(d, s))
    timed("movie reviews", load_movie_reviews)
    for split in ("train", "valid", "test"):
        timed(f"austen {split} (word tokens)", lambda s=split: load_austen(s))
        timed(f"austen {split} (characters)", lambda s=split: load_austen(s, "char"))
