"""Atomic writes: a declared output is either complete or absent, never half-written. And the compact
form a per-example result takes inside a JSON record."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path


def umask() -> int:
    """The process's umask, read without changing it (/proc on Linux; elsewhere set and restored under
    a lock: jobs run in threads of Snakemake's process)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def _tmp_for(path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def atomic_replace(write, path) -> None:
    """Call write(tmp_path), then rename tmp over `path` (same filesystem, so the rename is atomic)."""
    tmp = _tmp_for(path)
    try:
        write(tmp)
        # what open() would have given: mkstemp makes the file 0600 whatever the umask (and safetensors
        # writes its own 0600 file), and os.replace keeps the mode, so a group could read nothing
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_umask(folder) -> None:
    """Give every file below `folder` the mode the umask gives (0666 & ~umask): for what a library
    wrote itself (save_pretrained's safetensors files are 0600)."""
    mode = 0o666 & ~umask()
    for root, _, files in os.walk(folder):
        for f in files:
            os.chmod(os.path.join(root, f), mode)


def remove_empty_parents(path, levels: int) -> None:
    """Remove up to `levels` parent folders of `path` while they are empty (a finished job's work/
    folders; one still in use by another job is left alone)."""
    parent = os.path.dirname(os.path.abspath(path))
    for _ in range(levels):
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = os.path.dirname(parent)


def atomic_write_text(text: str, path) -> None:
    def w(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)

    atomic_replace(w, path)


def atomic_write_json(obj, path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", path)


def atomic_write_parquet(df, path) -> None:
    atomic_replace(lambda tmp: df.to_parquet(tmp, index=False), path)


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while b := fh.read(chunk):
            h.update(b)
    return h.hexdigest()


def read_json(path):
    with open(path) as fh:
        return json.load(fh)


def pack_correct(correct) -> str:
    """0/1 per example (split order) as one string, "0110...": a 300-example test split costs 300 bytes
    of a result JSON instead of a 900-byte list."""
    return "".join("1" if c else "0" for c in correct)


def unpack_correct(packed: str) -> list[int]:
    if set(packed) - {"0", "1"}:
        raise ValueError(f"per-example result: expected 0/1 characters, got {sorted(set(packed) - {'0', '1'})[:3]}")
    return [1 if c == "1" else 0 for c in packed]
