"""Builders of hostile data files for test_hostile_data.py."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path

import numpy as np
from e2e_inputs import TS_HEAD


# --------------------------------------------------------------------------- inputs
def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def reviews(n: int, labels=("pos", "neg"), header: str = "text\tlabel\n") -> str:
    words = ["good", "bad", "fine", "dull", "great", "poor"]
    return header + "".join(f"a {words[i % 6]} film number {i}\t{labels[i % len(labels)]}\n"
                            for i in range(n))


def gzip_bomb(path: Path, megabytes: int) -> Path:
    """A few kB of gzip that inflate to ``megabytes`` MB of valid TSV rows."""
    row = b"a perfectly ordinary film\tpos\n" * 4096
    with gzip.open(path, "wb", compresslevel=9) as f:
        for _ in range(megabytes * (1 << 20) // len(row) + 1):
            f.write(row)
    return path


def lying_npz(path: Path) -> Path:
    """An ``.npz`` whose ``x`` header declares 10**12 float64 values but holds 64 bytes."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)})
    labels = io.BytesIO()
    np.save(labels, np.arange(10) % 2)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", member.getvalue() + b"\0" * 64)
        z.writestr("y.npy", labels.getvalue())
    return path


def series_csv(rows: list[str]) -> str:
    return "".join(rows)


def ts_file(rows: str, labels: str = "a b") -> str:
    return TS_HEAD.replace("@classLabel true a b", f"@classLabel true {labels}") + rows




def _symlink(target: Path, link: Path) -> Path:
    link.symlink_to(target)
    return link


def _with(x: np.ndarray, index: tuple, value: float) -> np.ndarray:
    x[index] = value
    return x


def _compressed_npz(path: Path) -> Path:
    np.savez_compressed(path, x=np.zeros((100, 512, 8)), y=np.arange(100) % 2)
    return path
