"""``PREFIX.mar``: an export packed for Multi Model Server with model-archiver's Python API.

The archive holds, at its top level (``MAR-INF/MANIFEST.json`` names the handler)::

    NAME-symbol.json NAME-0000.params NAME-meta.json   the export (MXNet backend)
    NAME.onnx [NAME-int8.onnx]                         when exported with --onnx
    predictor.py predictor_*.py preprocess.py kinds.py the standalone predictor
    mxlstm_handler.py                                  mxlstm/serve/handler.py
    mxlstm-serve.json                                  {"prefix", "backend", limits}

Nothing of mxlstm is needed on the server: MMS, numpy and mxnet (or onnxruntime).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from mxlstm.deploy.ship import STANDALONE_FILES
from mxlstm.errors import ModelFileError
from mxlstm.serve.needs import ServeError, need_archiver

HANDLER_FILE = Path(__file__).with_name("handler.py")
HANDLER_MODULE = "mxlstm_handler"
SETTINGS_FILE = "mxlstm-serve.json"  # the handler's SETTINGS_FILE
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")  # model-archiver's model names
MAX_MANIFEST_BYTES = 1 << 20


def model_name(prefix: str | Path) -> str:
    """The MMS model name of export ``prefix`` (its base name), checked."""
    name = Path(prefix).name
    if not NAME_RULE.match(name):
        raise ModelFileError(f"cannot archive {prefix}: model name {name!r} must start with "
                             f"a letter or digit and hold only letters, digits, _ - . "
                             f"(choose another --out)")
    return name


def _export_files(prefix: Path) -> list[Path]:
    meta_file = Path(f"{prefix}-meta.json")
    files = [Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params"), meta_file]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelFileError(f"cannot archive {prefix}: missing exported file(s): "
                             f"{', '.join(missing)} (run mxlstm export first)")
    try:
        onnx = json.loads(meta_file.read_text(encoding="utf-8")).get("onnx") or {}
    except (OSError, ValueError) as err:
        raise ModelFileError(f"{meta_file}: unreadable meta.json ({err})") from None
    for record in (onnx, onnx.get("int8") or {}):
        if record.get("file"):
            path = prefix.parent / record["file"]
            if not path.is_file():
                raise ModelFileError(f"cannot archive {prefix}: missing {path} (recorded "
                                     f"in {meta_file.name})")
            files.append(path)
    return files


def write_archive(prefix: str | Path, backend: str = "mxnet",
                  max_body_bytes: int = 1 << 20, max_inputs: int = 256) -> Path:
    """Write ``PREFIX.mar`` from the export ``prefix`` and return its path.

    ``backend``: the archive's default graph runner (``mxnet`` or ``onnxruntime``,
    ``mxlstm serve --backend`` overrides it); ``max_body_bytes`` / ``max_inputs``: the
    handler's limits per request. Needs model-archiver (the ``[serve]`` extra).
    """
    need_archiver()
    from model_archiver.manifest_components.manifest import Manifest
    from model_archiver.manifest_components.model import Model
    from model_archiver.model_packaging_utils import ModelExportUtils

    prefix = Path(prefix)
    name = model_name(prefix)
    files = _export_files(prefix)
    if backend.startswith("onnxruntime") and len(files) == 3:
        raise ModelFileError(f"cannot archive {prefix} for backend {backend}: the export "
                             f"has no .onnx (mxlstm export ... --onnx)")
    out = Path(f"{prefix}.mar")
    with tempfile.TemporaryDirectory(prefix=f".{name}-mar-", dir=prefix.parent) as tmp:
        stage = Path(tmp) / "model"
        stage.mkdir()
        for f in files:
            shutil.copyfile(f, stage / f.name)
        for target, source in STANDALONE_FILES.items():
            shutil.copyfile(source, stage / target)
        shutil.copyfile(HANDLER_FILE, stage / f"{HANDLER_MODULE}.py")
        settings = {"prefix": name, "backend": backend, "max_body_bytes": max_body_bytes,
                    "max_inputs": max_inputs}
        (stage / SETTINGS_FILE).write_text(json.dumps(settings, indent=1))
        manifest = Manifest(runtime="python", model=Model(model_name=name,
                                                          handler=f"{HANDLER_MODULE}:handle"))
        ModelExportUtils.archive(tmp, name, str(stage), [], str(manifest))
        Path(tmp, f"{name}.mar").replace(out)
    return out


def read_archive(path: str | Path) -> dict:
    """``{"name", "handler", "files", "settings", "meta"}`` of a ``.mar``, read without
    unpacking it; a file that is not an mxlstm model archive raises :class:`ServeError`."""
    path = Path(path)
    if not path.is_file():
        raise ServeError(f"{path}: no such model archive (mxlstm export ... --mar writes "
                         f"PREFIX.mar)")
    try:
        with zipfile.ZipFile(path) as z:
            files = z.namelist()
            needed = ["MAR-INF/MANIFEST.json", SETTINGS_FILE]
            missing = [n for n in needed if n not in files]
            if missing:
                raise ServeError(f"{path}: not an mxlstm model archive (no {missing[0]}; "
                                 f"make it with mxlstm export ... --mar)")
            info = {n: z.getinfo(n) for n in needed}
            if any(i.file_size > MAX_MANIFEST_BYTES for i in info.values()):
                raise ServeError(f"{path}: MANIFEST.json or {SETTINGS_FILE} is too large")
            manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
            settings = json.loads(z.read(SETTINGS_FILE))
            meta_name = f"{settings['prefix']}-meta.json"
            meta = json.loads(z.read(meta_name)) if meta_name in files else None
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError) as err:
        raise ServeError(f"{path}: not a readable model archive ({err})") from None
    if meta is None:
        raise ServeError(f"{path}: the archive has no {meta_name}")
    return {"name": manifest.get("model", {}).get("modelName", settings["prefix"]),
            "handler": manifest.get("model", {}).get("handler"), "files": files,
            "settings": settings, "meta": meta}
