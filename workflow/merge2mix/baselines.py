"""Baselines that choose a mixture without merging: similarity to the target, and random subsets.

similarity: cosine between the mean-pooled theta_0 embedding of each candidate's train split and of
the target's val split. `similarity_topk` takes the k most similar candidates, k = the size of the
Merge to Mix selection; `similarity_threshold` takes every candidate at least as similar as the mean
of the candidates' similarities. random: for seeds 0..R-1, k candidates drawn uniformly.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .io import atomic_replace, atomic_write_json
from .job import Job
from .masks import mask_key


def similarities(job: Job, train_paths: dict[str, str], target_val: str, max_examples: int, out_csv: str) -> pd.DataFrame:
    """Each candidate's cosine to the target in theta_0's embedding space (job: theta_0, task, device,
    threads, batch size; job.seed draws the `max_examples` kept per split)."""
    import torch

    from . import families, runtime
    from .evaluate import with_oom_backoff

    task, seed = job.task, job.seed
    dev = runtime.setup(job.threads, job.device, seed)
    fam = families.get(task["type"])
    model, proc = fam.load_model(job.base_dir, dev), fam.load_processor(job.base_dir)

    def emb(path):
        df = pd.read_parquet(path)
        df = df.sample(n=min(len(df), max_examples), random_state=seed) if len(df) > max_examples else df
        enc = fam.encode(proc, df, task)  # no heads: only the embedding is used
        return with_oom_backoff(lambda bs: fam.mean_embedding(model, enc, bs, dev), job.batch_size, dev)[0]

    target = emb(target_val)
    rows = [{"candidate": n, "cosine": float(torch.nn.functional.cosine_similarity(emb(p), target, dim=0))}
            for n, p in train_paths.items()]
    df = pd.DataFrame(rows).sort_values(["cosine", "candidate"], ascending=[False, True]).reset_index(drop=True)
    atomic_replace(lambda tmp: df.to_csv(tmp, index=False), out_csv)
    return df


def random_subset(candidates: list[str], k: int, seed: int) -> list[str]:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"random-baseline:{seed}".encode()).digest()[:4], "little"))
    return sorted(rng.choice(sorted(candidates), size=k, replace=False).tolist())


def choose(sim: pd.DataFrame | None, candidates: list[str], k: int, random_seeds: int) -> dict:
    """The masks each baseline fine-tunes on (no similarity keys when `sim` is None)."""
    out = {"k": k, "random": [mask_key(random_subset(candidates, k, s)) for s in range(random_seeds)]}
    if sim is not None:
        out["similarity_topk"] = mask_key(sim.head(k)["candidate"].tolist())
        out["similarity_threshold"] = mask_key(sim[sim["cosine"] >= sim["cosine"].mean()]["candidate"].tolist())
        out["similarity"] = dict(zip(sim["candidate"], sim["cosine"].round(6)))
    return out


def write_choice(choice: dict, path) -> None:
    atomic_write_json(choice, path)
