"""Mixture fine-tunes, scored on the target: the ground truth Merge to Mix approximates.

One job per mask (the oracle, opt-in) and always the full mask (the all_data baseline) and each
singleton (single-dataset baselines). A singleton's mixture fine-tune *is* that dataset's fine-tune
(same theta_0, hyper-parameters, seed and data), so it is scored, not trained again.
"""

from __future__ import annotations

import os
import shutil
import time

from . import engine, task_types
from .io import atomic_write_json, pack_correct, remove_empty_parents
from .job import Job
from .train import finetune


def mixture_scores(job: Job, mask: str, train_paths: dict[str, str], single_checkpoint: str | None, splits: dict[str, str],
                   work_dir: str, out_json: str, data_meta: dict) -> dict:
    """Fine-tune theta_0 on the mask's `train_paths` (a singleton: its existing `single_checkpoint`) and
    score it on the target's `splits` ({"val": path, "test": path}). For families with per-dataset heads,
    job.heads holds the members' heads (training) and the target's (scoring)."""
    t0 = time.time()
    trained = single_checkpoint is None
    if trained:
        weights = os.path.join(work_dir, "model.safetensors")
        rec = finetune(job, train_paths, weights, os.path.join(work_dir, "train.json"), data_meta=data_meta,
                       work_dir=os.path.join(work_dir, "state"))
        steps, resumed = rec["steps"], rec["resumed_from_step"]
    else:
        weights, steps, resumed = single_checkpoint, None, None
    scorer = job.only(set(job.heads or ()) - set(train_paths))  # the one head that is not a member's: the target's
    # per example on test (classification): methods.csv's paired intervals between methods need it
    per_example = not task_types.get(job.task["type"]).generative
    val = engine.score(scorer, {"mixture": weights}, splits["val"])
    test = engine.score(scorer, {"mixture": weights}, splits["test"], per_example=per_example)
    record = {"mask": mask, "datasets": sorted(train_paths), "size": len(train_paths), "trained": trained, "steps": steps,
              "resumed_from_step": resumed,
              **{f"val_{k}": val[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "loss", "n")},
              **{f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "loss", "n")},
              **({"test_correct": pack_correct(test["correct"])} if per_example else {}),
              "wall_s": round(time.time() - t0, 2)}
    atomic_write_json(record, out_json)
    if trained:  # the metrics are the result; 2^N - 1 checkpoints would be gigabytes
        shutil.rmtree(work_dir, ignore_errors=True)
        remove_empty_parents(work_dir, 2)  # work/mixture/, work/: no empty leftovers
    return record
