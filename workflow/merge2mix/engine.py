"""Score masks: merge the members' fine-tunes in a warm `pool.Pool` and evaluate on a split.

One process may score many masks (Snakemake `run:` jobs with --force-use-threads execute in the main
process), so this module keeps a lock-guarded, module-level cache keyed by file identity (path, size,
mtime; a changed file is re-read): the `Pool` (theta_0's model and the fine-tunes) and the tokenised
split.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time

import pandas as pd

from . import families, runtime, task_types
from .config import AVERAGE
from .io import atomic_write_json
from .job import Job
from .pool import Pool, clear_verified, file_id

log = runtime.log
_LOCK = threading.RLock()  # one model per base: scoring is serialised (torch uses the cores anyway)
_CACHE: dict = {}
_SCORED = itertools.count(1)  # masks scored by this process: logged, so a log shows whether it stayed warm


def _cached(key, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
        clear_verified()


def _pool(fam, base_dir, device, mode, pool, budget_bytes):
    key = ("pool", file_id(os.path.join(base_dir, "model.safetensors")), str(device), mode, tuple(pool), budget_bytes)
    return _cached(key, lambda: Pool(fam, base_dir, device, mode, list(pool), budget_bytes))


def _split(fam, base_dir, path, task, heads):
    heads = heads or {}
    key = ("split", file_id(path), base_dir, json.dumps(task, sort_keys=True),
           tuple((n, file_id(p)) for n, p in sorted(heads.items())))
    return _cached(key, lambda: fam.encode(fam.load_processor(base_dir), pd.read_parquet(path), task, heads))


def score(job: Job, checkpoints: dict[str, str], split_path: str, *, mode: str = "auto", pool: list[str] | None = None,
          budget_bytes: int | None = None, operator: dict | None = None, weights: dict[str, float] | None = None) -> dict:
    """The merge of `checkpoints` scored on `split_path`, in the context `job` (theta_0, task, device,
    threads, eval batch size, precision: see evaluate.evaluate_checked; heads: the scored split's
    zero-shot head, for families with per-dataset heads).
    `pool`: every candidate name (sizes the memory plan); default: the names in `checkpoints`.
    `operator`: {"method": a merge.OPERATORS name, "params": {...}}; default the average.
    `weights`: a mixture's weights over `checkpoints` (merge2mix.mixtures): the weighted merge."""
    from .evaluate import evaluate_checked, with_oom_backoff

    with _LOCK:
        dev = runtime.setup(job.threads, job.device)
        fam = families.get(job.task["type"])
        merger = _pool(fam, job.base_dir, dev, mode, pool or sorted(checkpoints), budget_bytes)
        t0 = time.perf_counter()
        op = operator or AVERAGE
        model = (merger.merge_weighted(checkpoints, weights, op) if weights
                 else merger.merge(checkpoints, op["method"], op["params"]))
        t1 = time.perf_counter()
        split = _split(fam, job.base_dir, split_path, job.task, job.heads)
        if task_types.get(job.task["type"]).generative:  # causal_lm: task.metric, in the model's dtype
            metrics, bs = with_oom_backoff(lambda b: fam.evaluate(model, split, b, dev, job.task), job.batch_size, dev)
            metrics |= {"batch_size": bs, "precision": str(next(model.parameters()).dtype).replace("torch.", "")}
        else:
            metrics = evaluate_checked(model, split, fam.forward, job.batch_size, dev, **(job.precision or {}))
        t2 = time.perf_counter()
    metrics["merge_s"], metrics["eval_s"] = round(t1 - t0, 4), round(t2 - t1, 4)
    return metrics


def merge_eval(key: str, out_json: str, job: Job, checkpoints: dict[str, str], split_path: str, **kw) -> dict:
    """Score one mask (`score`'s keyword options in `kw`) and write its result JSON (the unit of
    caching: one file per mask)."""
    t0 = time.perf_counter()
    metrics = score(job, checkpoints, split_path, **kw)
    nth = next(_SCORED)
    record = {"mask": key, "datasets": sorted(checkpoints), "size": len(checkpoints),
              **metrics, "operator": kw.get("operator") or AVERAGE, **({"weights": kw["weights"]} if kw.get("weights") else {}),
              "wall_s": round(time.perf_counter() - t0, 4)}
    atomic_write_json(record, out_json)
    log.info("mask %s: accuracy %.4f macro_f1 %.4f (%d examples; process %d, its mask #%d)",
             key, record["accuracy"], record["macro_f1"], record["n"], os.getpid(), nth)
    return record
