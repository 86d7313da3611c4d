"""The standalone predictor's files and :func:`ship_predictor`, which copies them beside an
export: ``predictor.py`` with its siblings and the rules it shares with training
(``preprocess.py``, ``kinds.py``), so the copy reads inputs exactly as training did."""

from __future__ import annotations

import shutil
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
# name beside the export -> source file in the package
STANDALONE_FILES: dict[str, Path] = {
    "predictor.py": _PACKAGE / "deploy" / "predictor.py",
    "predictor_inputs.py": _PACKAGE / "deploy" / "predictor_inputs.py",
    "predictor_files.py": _PACKAGE / "deploy" / "predictor_files.py",
    "predictor_meta.py": _PACKAGE / "deploy" / "predictor_meta.py",
    "predictor_backends.py": _PACKAGE / "deploy" / "predictor_backends.py",
    "preprocess.py": _PACKAGE / "preprocess.py",
    "kinds.py": _PACKAGE / "kinds.py",
}


def ship_predictor(directory: str | Path) -> list[Path]:
    """Copy :data:`STANDALONE_FILES` into ``directory`` (made if missing); returns the
    copies. Each file is written under a temporary name and renamed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, source in STANDALONE_FILES.items():
        target = directory / name
        tmp = directory / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.replace(target)
        written.append(target)
    return written
