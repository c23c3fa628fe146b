"""Score subset masks: average the members' fine-tuned weights and evaluate on the target val split.

One process may score many masks (Snakemake `run:` jobs with --force-use-threads execute in the main
process): theta_0's model skeleton, the tokenised target split and every checkpoint are loaded once
and kept in a lock-guarded, module-level cache keyed by file identity (path, size, mtime), so a
changed file is re-read. With one process per job the same code simply loads what it needs.
"""

from __future__ import annotations

import os
import threading
import time

import pandas as pd

from . import families, runtime
from .errors import CheckpointError
from .io import atomic_write_json
from .merge import average, check_compatible, load_weights

log = runtime.log
_LOCK = threading.RLock()  # one model skeleton per base: scoring is serialised (torch uses the cores anyway)
_CACHE: dict = {}


def _file_id(path) -> tuple:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: file not found") from None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)


def _cached(key, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def _model(fam, base_dir, device):
    key = ("model", _file_id(os.path.join(base_dir, "model.safetensors")), str(device))
    return _cached(key, lambda: fam.load_model(base_dir, device))


def _split(fam, base_dir, path, task):
    key = ("split", _file_id(path), base_dir, tuple(task["labels"]), task["max_length"])
    return _cached(key, lambda: fam.encode(fam.load_tokenizer(base_dir), pd.read_parquet(path), task["labels"], task["max_length"]))


def _weights(path):
    return _cached(("weights", _file_id(path)), lambda: load_weights(path))


def merged_model(fam, base_dir: str, checkpoints: dict[str, str], device):
    """theta_0's architecture holding the average of the given checkpoints (call under _LOCK)."""
    model = _model(fam, base_dir, device)
    ref = model.state_dict()
    sds = []
    for name in sorted(checkpoints):
        sd = _weights(checkpoints[name])
        check_compatible(ref, sd, f"{name} ({checkpoints[name]})")
        sds.append(sd)
    model.load_state_dict(average(sds, fam.is_merged))
    return model


def score(*, base_dir: str, checkpoints: dict[str, str], split_path: str, task: dict, batch_size: int,
          device: str = "auto", threads: int = 1) -> dict:
    """Metrics of the merged model of `checkpoints` on the split at `split_path`."""
    from .evaluate import evaluate

    with _LOCK:
        dev = runtime.setup(threads, device)
        fam = families.get(task["type"])
        t0 = time.perf_counter()
        model = merged_model(fam, base_dir, checkpoints, dev)
        t1 = time.perf_counter()
        metrics = evaluate(model, _split(fam, base_dir, split_path, task), fam.forward, batch_size, dev)
        t2 = time.perf_counter()
    metrics["merge_s"], metrics["eval_s"] = round(t1 - t0, 4), round(t2 - t1, 4)
    return metrics


def merge_eval(*, key: str, bits: str, out_json: str, **kw) -> dict:
    """Score one mask and write its result JSON (the unit of caching: one file per mask)."""
    t0 = time.perf_counter()
    metrics = score(**kw)
    record = {"mask": key, "datasets": sorted(kw["checkpoints"]), "bitstring": bits, "size": len(kw["checkpoints"]),
              **metrics, "wall_s": round(time.perf_counter() - t0, 4)}
    atomic_write_json(record, out_json)
    log.info("mask %s: accuracy %.4f macro_f1 %.4f (%d examples)", key, record["accuracy"], record["macro_f1"], record["n"])
    return record
