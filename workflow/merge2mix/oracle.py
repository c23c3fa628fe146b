"""Mixture fine-tunes, scored on the target: the ground truth Merge to Mix approximates.

One job per mask (the oracle, opt-in) and always the full mask (the all_data baseline) and each
singleton (single-dataset baselines). A singleton's mixture fine-tune *is* that dataset's fine-tune
(same theta_0, hyper-parameters, seed and data), so it is scored, not trained again.
"""

from __future__ import annotations

import os
import shutil
import time

from . import engine
from .io import atomic_write_json
from .train import finetune


def mixture_scores(*, mask: str, base_dir: str, train_paths: dict[str, str], single_checkpoint: str | None,
                   val_path: str, test_path: str, hp: dict, task: dict, seed: int, device: str, threads: int,
                   batch_size: int, work_dir: str, out_json: str, data_meta: dict,
                   checkpoint_every: int | None = None, heads: dict[str, str] | None = None,
                   target_head: dict[str, str] | None = None) -> dict:
    """`heads`: the members' zero-shot heads (training), `target_head`: {target: its head} (scoring);
    both only for families with per-dataset heads (clip)."""
    t0 = time.time()
    trained = single_checkpoint is None
    if trained:
        weights = os.path.join(work_dir, "model.safetensors")
        rec = finetune(base_dir=base_dir, train_paths=train_paths, out_weights=weights, out_json=os.path.join(work_dir, "train.json"),
                       hp=hp, task=task, seed=seed, device=device, threads=threads, data_meta=data_meta,
                       work_dir=os.path.join(work_dir, "state"), checkpoint_every=checkpoint_every, heads=heads)
        steps, resumed = rec["steps"], rec["resumed_from_step"]
    else:
        weights, steps, resumed = single_checkpoint, None, None
    common = dict(base_dir=base_dir, checkpoints={"mixture": weights}, task=task, batch_size=batch_size, device=device,
                  threads=threads, heads=target_head)
    val = engine.score(split_path=val_path, **common)
    test = engine.score(split_path=test_path, **common)
    record = {"mask": mask, "datasets": sorted(train_paths), "size": len(train_paths), "trained": trained, "steps": steps,
              "resumed_from_step": resumed,
              **{f"val_{k}": val[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "loss", "n")},
              **{f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "loss", "n")},
              "wall_s": round(time.time() - t0, 2)}
    atomic_write_json(record, out_json)
    if trained:  # the metrics are the result; 2^N - 1 checkpoints would be gigabytes
        shutil.rmtree(work_dir, ignore_errors=True)
    return record
