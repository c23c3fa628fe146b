"""The user's own files a run reads (local datasets, a local model directory), tracked by content.

A job that reads a file Snakemake does not know of never reruns when the file changes: results go
silently stale. Listing the file as an input would rerun on any newer mtime (Snakemake compares
checksums only of inputs under 1 MB), so a touched but unchanged 2 GB file would rerun everything.
Instead the reader (prepare_data, init_model) gets the files' content hash as a parameter: an edited
file changes it and exactly what depends on the file reruns (Snakemake's params trigger); a touched
one gives the same hash and nothing reruns. Hashes are computed at parse time and cached by (size,
mtime) in results_dir/.merge2mix-hashes.json, so a file is read again only after it was touched.
Light: plain hashing, no pandas or torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .io import atomic_write_json, file_sha256

CACHE = ".merge2mix-hashes.json"


class NotTracked:
    """The content param of a reader with no local files: not a builtin type, so Snakemake leaves it out
    of its params comparison and runs from before content tracking do not rerun. Defined here, not in
    the Snakefile: a script job unpickles its params, and a class of Snakemake's own namespace would
    make it import Snakemake while Snakemake is loading."""

    def __repr__(self):
        return "not tracked"

    def __eq__(self, other):
        return isinstance(other, NotTracked)

    def __hash__(self):
        return 0


NOT_TRACKED = NotTracked()


def _files_under(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
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


class Hashes:
    """File sha256s cached by (path, size, mtime_ns), and the input specs already checked
    (merge2mix.check): read from and written back to `cache_path`."""

    def __init__(self, cache_path: str | None):
        self.path, self.entries, self.checked, self.dirty = cache_path, {}, set(), False
        if cache_path and os.path.isfile(cache_path):
            try:
                with open(cache_path) as fh:
                    saved = json.load(fh)
                self.entries, self.checked = dict(saved["files"]), set(saved["checked"])
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged cache is only a cache

    def mark_checked(self, spec: str) -> None:
        self.checked.add(spec)
        self.dirty = True

    def file(self, path: str) -> str:
        st = os.stat(path)
        key, stamp = os.path.abspath(path), [st.st_size, st.st_mtime_ns]
        hit = self.entries.get(key)
        if hit and hit[:2] == stamp:
            return hit[2]
        digest = file_sha256(path)
        self.entries[key], self.dirty = [*stamp, digest], True
        return digest

    def content(self, files: list[str], root: str | None = None) -> str | None:
        """One sha256 over the files' names (relative to `root`) and contents; None for no files."""
        if not files:
            return None
        h = hashlib.sha256()
        for f in files:
            name = os.path.relpath(f, root) if root else os.path.basename(f)
            h.update(f"{name}\0{self.file(f)}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        if self.dirty and self.path:
            try:
                atomic_write_json({"files": self.entries, "checked": sorted(self.checked)}, self.path)
            except OSError:
                pass  # a read-only results folder: hashing again next time is the only cost
