"""Score masks: merge the members' fine-tunes in a warm `pool.Pool` and evaluate on a split.

One process may score many masks (Snakemake `run:` jobs with --force-use-threads execute in the main
process), so this module keeps a lock-guarded, module-level cache keyed by file identity (path, size,
mtime; a changed file is re-read): the `Pool` (theta_0's model and the fine-tunes) and the tokenised
split. Besides the candidates' pool it holds at most one pool for one-off merges (`_pool`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import time

import pandas as pd

from . import families, runtime, task_types
from .config import AVERAGE
from .errors import Merge2MixError
from .io import atomic_write_json, read_json
from .job import Job
from .pool import Pool, clear_verified, file_id

log = runtime.log
_LOCK = runtime.WARM  # one model per base: scoring is serialised with every warm job (runtime.WARM)
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


def _pool(fam, base_dir, device, mode, pool, budget_bytes, one_off=False):
    """The warm pool for these options. A pool the caller names (`score`'s `pool`: the run's candidates,
    merged mask after mask) stays for the process. A one-off merge's (theta_0, the best merge, the
    deployed model, a single's fine-tune) takes the one slot for one-offs and evicts the previous
    one-off pool first, so a warm process holds the candidates' pool plus at most one other model,
    however many one-off jobs it runs (with a large model on a GPU, each would be a model's memory)."""
    kind = "one_off" if one_off else "pool"
    key = (kind, file_id(os.path.join(base_dir, "model.safetensors")), str(device), mode, tuple(pool), budget_bytes)
    if one_off:
        for old in [k for k in _CACHE if k[0] == "one_off" and k != key]:
            del _CACHE[old]  # before the new pool is built: the two are never held together
    return _cached(key, lambda: Pool(fam, base_dir, device, mode, list(pool), budget_bytes))


def _split(fam, base_dir, path, task, heads):
    heads = heads or {}
    key = ("split", file_id(path), base_dir, json.dumps(task, sort_keys=True),
           tuple((n, file_id(p)) for n, p in sorted(heads.items())))
    return _cached(key, lambda: fam.encode(fam.load_processor(base_dir), pd.read_parquet(path), task, heads))


def score(job: Job, checkpoints: dict[str, str], split_path: str, *, mode: str = "auto", pool: list[str] | None = None,
          budget_bytes: int | None = None, operator: dict | None = None, weights: dict[str, float] | None = None,
          per_example: bool = False) -> dict:
    """The merge of `checkpoints` scored on `split_path`, in the context `job` (theta_0, task, device,
    threads, eval batch size, precision: see evaluate.evaluate_checked; heads: the scored split's
    zero-shot head, for families with per-dataset heads).
    `pool`: every candidate name (sizes the memory plan; that pool stays warm); default: the names in
    `checkpoints`, merged as a one-off (see _pool).
    `operator`: {"method": a merge.OPERATORS name, "params": {...}}; default the average.
    `weights`: a mixture's weights over `checkpoints` (merge2mix.mixtures): the weighted merge.
    `per_example`: classification only; the result also holds "correct" (0/1 per example, in split
    order), what a paired interval between two models on the same split needs."""
    from .evaluate import evaluate_checked, with_oom_backoff

    with _LOCK:
        dev = runtime.setup(job.threads, job.device)
        fam = families.get(job.task["type"])
        merger = _pool(fam, job.base_dir, dev, mode, pool or sorted(checkpoints), budget_bytes, one_off=not pool)
        t0 = time.perf_counter()
        op = operator or AVERAGE
        model = (merger.merge_weighted(checkpoints, weights, op) if weights
                 else merger.merge(checkpoints, op["method"], op["params"]))
        t1 = time.perf_counter()
        split = _split(fam, job.base_dir, split_path, job.task, job.heads)
        if task_types.get(job.task["type"]).generative:  # causal_lm: task.metric, in the model's dtype
            if per_example:
                raise ValueError(f"score: per_example is for classification, not task.type '{job.task['type']}'")
            metrics, bs = with_oom_backoff(lambda b: fam.evaluate(model, split, b, dev, job.task), job.batch_size, dev)
            metrics |= {"batch_size": bs, "precision": str(next(model.parameters()).dtype).replace("torch.", "")}
        else:
            metrics = evaluate_checked(model, split, fam.forward, job.batch_size, dev, **(job.precision or {}),
                                       per_example=per_example)
        t2 = time.perf_counter()
    metrics["merge_s"], metrics["eval_s"] = round(t1 - t0, 4), round(t2 - t1, 4)
    return metrics


def inputs_id(job: Job, checkpoints: dict[str, str], split_path: str, **kw) -> str:
    """What a mask's score depends on, hashed: theta_0's, the members', the split's and the head's files
    (path, size, mtime), the job context and the operator (`score`'s options; the pool and the memory
    budget only plan memory and are left out). A bundle (`merge_bundle`) reuses a result with the same
    id instead of scoring the mask again."""
    files = {"base": os.path.join(job.base_dir, "model.safetensors"), "split": split_path,
             **{f"member:{n}": p for n, p in checkpoints.items()}, **{f"head:{n}": p for n, p in (job.heads or {}).items()}}
    what = [{k: file_id(p) for k, p in sorted(files.items())}, dataclasses.asdict(dataclasses.replace(job, heads=None)),
            {k: kw.get(k) for k in ("mode", "operator", "weights")}]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _record(key: str, job: Job, checkpoints: dict[str, str], split_path: str, **kw) -> dict:
    t0 = time.perf_counter()
    metrics = score(job, checkpoints, split_path, **kw)
    nth = next(_SCORED)
    record = {"mask": key, "datasets": sorted(checkpoints), "size": len(checkpoints),
              **metrics, "operator": kw.get("operator") or AVERAGE, **({"weights": kw["weights"]} if kw.get("weights") else {}),
              "wall_s": round(time.perf_counter() - t0, 4), "inputs_id": inputs_id(job, checkpoints, split_path, **kw)}
    log.info("mask %s: accuracy %.4f macro_f1 %.4f (%d examples; process %d, its mask #%d)",
             key, record["accuracy"], record["macro_f1"], record["n"], os.getpid(), nth)
    return record


def merge_eval(key: str, out_json: str, job: Job, checkpoints: dict[str, str], split_path: str, **kw) -> dict:
    """Score one mask (`score`'s keyword options in `kw`) and write its result JSON (the unit of
    caching: one file per mask)."""
    record = _record(key, job, checkpoints, split_path, **kw)
    atomic_write_json(record, out_json)
    return record


def merge_bundle(masks: dict[str, dict[str, str]], results_dir: str, out_json: str, job: Job, split_path: str,
                 **kw) -> dict:
    """Score a bundle of masks in this one process (rule merge_bundle: one cluster job instead of one
    per mask). `masks`: key -> its members' checkpoints. A mask whose result file in `results_dir`
    (merge_eval/<mask>.json) has the same inputs_id is reused, not scored again; out_json holds every
    mask's record, which rule merge_eval then copies to the mask's own file (`from_bundle`)."""
    t0 = time.perf_counter()
    records, reused = {}, []
    for key, checkpoints in masks.items():
        old = os.path.join(results_dir, f"{key}.json")
        rec = read_json(old) if os.path.exists(old) else None
        if rec is not None and rec.get("inputs_id") == inputs_id(job, checkpoints, split_path, **kw):
            reused.append(key)
        else:
            rec = _record(key, job, checkpoints, split_path, **kw)
        records[key] = rec
    out = {"masks": records, "reused": reused, "scored": len(records) - len(reused), "process": os.getpid(),
           "wall_s": round(time.perf_counter() - t0, 4)}
    atomic_write_json(out, out_json)
    log.info("bundle of %d masks: %d scored, %d reused, in %.1f s (process %d)", len(records), out["scored"],
             len(reused), out["wall_s"], os.getpid())
    return out


def from_bundle(key: str, bundle_json: str, out_json: str) -> dict:
    """Rule merge_eval for a mask scored in a bundle: its record, copied to its own result file."""
    records = read_json(bundle_json)["masks"]
    if key not in records:
        raise Merge2MixError(f"merge_eval {key}: not in its bundle's results {bundle_json} (delete that file to rescore)")
    atomic_write_json(records[key], out_json)
    return records[key]
