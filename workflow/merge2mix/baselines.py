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

from . import constraints as cons
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


def random_subset(candidates: list[str], k: int, seed: int, c: dict | None = None, sizes: dict | None = None,
                  avoid=()) -> list[str]:
    """k candidates drawn uniformly with a seeded generator; under constraints `c`, the first draw that
    satisfies them and is not in `avoid` (mask keys: rejection sampling, uniform over the rest), None if
    10,000 draws found none."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"random-baseline:{seed}".encode()).digest()[:4], "little"))
    avoid = set(avoid)
    for _ in range(10_000):
        draw = sorted(rng.choice(sorted(candidates), size=k, replace=False).tolist())
        if cons.allows(draw, c, sizes) and mask_key(draw) not in avoid:
            return draw
    return None


def random_draws(candidates: list[str], k: int, seeds: int, c: dict | None = None, sizes: dict | None = None,
                 pick: str | None = None) -> tuple[list, bool]:
    """`seeds` random baselines of k candidates: distinct from each other and from Merge to Mix's pick
    where the pool allows (three draws that are all the pick would compare the pick with itself, "+0.000
    [0, 0]"); where it does not, independent draws as before. Returns (draws, distinct)."""
    drawn, avoid = [], {pick} - {None}
    for s in range(seeds):
        d = random_subset(candidates, k, s, c, sizes, avoid)
        if d is None:
            break
        drawn.append(d)
        avoid.add(mask_key(d))
    if len(drawn) == seeds:
        return drawn, True
    return [random_subset(candidates, k, s, c, sizes) for s in range(seeds)], False


def by_similarity(order: list[str], k: int | None, c: dict | None, sizes: dict | None) -> list[str] | None:
    """The must_include candidates, then each next one in `order` (most similar first) that keeps
    the mixture within `c` (exclusions, at_most_one_of groups, max_datasets, the budget), up to k; None
    if the result still breaks `c` (min_datasets)."""
    if not c:
        return order[:k]
    open_ended = {key: v for key, v in c.items() if key not in ("min_datasets", "must_include")}
    chosen = list(c.get("must_include", []))
    for n in order:
        if (k is None or len(chosen) < k) and n not in chosen and cons.allows([*chosen, n], open_ended, sizes):
            chosen.append(n)
    return chosen if cons.allows(chosen, c, sizes) else None


def choose(sim: pd.DataFrame | None, candidates: list[str], k: int, random_seeds: int, c: dict | None = None,
           sizes: dict | None = None, pick: str | None = None) -> dict:
    """The masks each baseline fine-tunes on (no similarity keys when `sim` is None). Under
    select.constraints `c` (with `sizes`, the budget's unit per dataset) every baseline picks within
    them, as Merge to Mix does; a baseline that cannot is left out and named under "infeasible". The
    random draws are distinct and are not `pick` where the pool allows (random_draws)."""
    drawn, distinct = random_draws(candidates, k, random_seeds, c, sizes, pick)
    out = {"k": k, "random": [mask_key(d) for d in drawn if d is not None], "random_distinct": distinct}
    missing = []
    if sim is not None:
        # most similar first, ties by name: whatever order the table was written in
        sim = sim.sort_values(["cosine", "candidate"], ascending=[False, True], kind="mergesort")
        order = sim["candidate"].tolist()
        above = set(sim[sim["cosine"] >= sim["cosine"].mean()]["candidate"])
        picks = {"similarity_topk": by_similarity(order, k, c, sizes),
                 "similarity_threshold": by_similarity([n for n in order if n in above], None, c, sizes)}
        out |= {name: mask_key(p) for name, p in picks.items() if p}
        out["similarity"] = dict(zip(sim["candidate"], sim["cosine"].round(6)))
        missing = [name for name, p in picks.items() if not p]
    missing += ["random"] * drawn.count(None)
    if c:
        out["constraints"] = c
    if missing:
        out["infeasible"] = missing
    return out


def write_choice(choice: dict, path) -> None:
    atomic_write_json(choice, path)
