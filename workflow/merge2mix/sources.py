"""The user's own files a run reads (local datasets, a local model directory), as inputs Snakemake sees.

A job that reads a file Snakemake does not know of never reruns when the file changes: results go
silently stale. So every such file is an input of a small `source_stamp` job that records each file's
sha256, and the job that reads the files (prepare_data, init_model) takes that record as its input.
An edited file changes the record, and exactly what depends on it reruns. A file touched but
unchanged reruns only the stamp: the record comes out byte-identical, and Snakemake compares the
checksums of small inputs before believing a newer mtime (docs/execution.md, "What reruns").
Light: plain hashing, no pandas or torch (the file lists are built at parse time).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .io import atomic_write_json


def _files_under(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [str(path)] if path.exists() else []


def dataset_files(ds: dict) -> list[str]:
    """Every file a `local:` dataset entry reads: its path (each file below it, for an image folder) and
    its labels_path; nothing for package and Hub sources (their own records track them)."""
    local = ds.get("local")
    if not local:
        return []
    files = _files_under(Path(local["path"]))
    if local.get("labels_path"):
        files += _files_under(Path(local["labels_path"]))
    return files


def model_files(source: str, cfg_model: dict) -> list[str]:
    """The files of a local model (`model.name_or_path` a directory, or a weights file with model.arch);
    nothing for a Hub id (fetch_model's record) or a model shipped in a package (changes only with it)."""
    if "package" in cfg_model:
        return []
    p = Path(source)
    return _files_under(p) if p.is_dir() or (cfg_model.get("arch") and p.is_file()) else []


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stamp(files: list[str], out_json: str) -> dict:
    """Record each file's sha256 and size (never its mtime: a touched file must give the same bytes)."""
    record = {"files": {os.path.normpath(f): {"sha256": _sha256(f), "bytes": os.path.getsize(f)} for f in files}}
    atomic_write_json(record, out_json)
    return record
