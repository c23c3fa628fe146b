"""Size calibration: map a mask's merged score to a predicted fine-tuned score, fitted on a few real
mixture fine-tunes (the anchors). No torch; numpy only when fitting (config imports anchor_masks).

Why: a merged model's target score and a mixture fine-tune's move apart with the mixture size k (the
plain average shrinks every task vector by 1/k while the union fine-tune trains longer), so merged
scores rank masks of one size well and masks of different sizes badly. The run already fine-tunes
the N singles and all the data; `calibration.mixtures: M` adds M seeded pairs and triples. On these
anchors, least squares fits

    fine-tuned ≈ a + b * merged + c * (k - 1)

and every mask is ranked by the prediction. b is kept >= 0: a negative slope would turn the merged
score's ranking upside down on the strength of a handful of points, so it is refitted with b = 0
(masks then rank by size first, and the merged score breaks ties within a size).
"""

from __future__ import annotations

import random
from itertools import combinations

from .io import atomic_write_json, read_json
from .masks import mask_key


def extra_pool(candidates) -> list[str]:
    """The pairs and triples the extra anchors are drawn from (not all the data, already an anchor),
    sorted. Built from the pairs and triples alone: a 30-candidate pool has 2^30 masks."""
    cands = sorted(candidates)
    return sorted({mask_key(m) for k in (2, 3) for m in combinations(cands, k)} - {mask_key(cands)})


def anchor_masks(candidates, extra: int, seed: int) -> list[str]:
    """The singles, the full mask, and `extra` pairs/triples drawn with `seed` (the same draw for the
    same candidate set in any order). Sorted keys, no duplicates."""
    cands = sorted(candidates)
    fixed = [mask_key([c]) for c in cands] + [mask_key(cands)]
    pool = extra_pool(cands)
    if extra > len(pool):
        raise ValueError(f"calibration.mixtures: {extra} extra anchors asked, only {len(pool)} pairs and triples exist")
    return sorted(set(fixed) | set(random.Random(seed).sample(pool, extra)))


def fit(merged, sizes, finetuned) -> dict:
    """Least squares of finetuned on [1, merged, size - 1] over the anchors."""
    import numpy as np

    m, k, y = (np.asarray(v, dtype=float) for v in (merged, sizes, finetuned))
    if not (len(m) == len(k) == len(y)) or len(y) < 3:
        raise ValueError(f"calibration: needs at least 3 anchors with merged and fine-tuned scores, got {len(y)}")
    X = np.column_stack([np.ones_like(m), m, k - 1])
    (a, b, c), *_ = np.linalg.lstsq(X, y, rcond=None)
    clipped = bool(b < 0)
    if clipped:
        (a, c), *_ = np.linalg.lstsq(X[:, [0, 2]], y, rcond=None)
        b = 0.0
    params = {"a": float(a), "b": float(b), "c": float(c), "slope_clipped": clipped}
    resid = y - predict(params, m, k)
    return {**params, "rmse": float(np.sqrt(np.mean(resid ** 2))), "n_anchors": int(len(y))}


def predict(params: dict, merged, sizes):
    import numpy as np

    m, k = np.asarray(merged, dtype=float), np.asarray(sizes, dtype=float)
    return params["a"] + params["b"] * m + params["c"] * (k - 1)


def calibrate(*, merged_paths, finetuned_paths, metric: str, extra: int, out_json: str) -> dict:
    """Fit on the anchors' merge_eval/<mask>.json (merged score) and mixtures/<mask>.json (the mixture
    fine-tune's val score) for the selection metric; write calibration.json."""
    merged = {r["mask"]: r for r in map(read_json, merged_paths)}
    tuned = {r["mask"]: r for r in map(read_json, finetuned_paths)}
    if set(merged) != set(tuned):
        raise ValueError(f"calibration: merged anchors {sorted(merged)} and fine-tuned anchors {sorted(tuned)} differ")
    masks = sorted(merged)
    rows = [{"mask": m, "size": len(merged[m]["datasets"]), "merged": merged[m][metric], "finetuned": tuned[m][f"val_{metric}"]}
            for m in masks]
    params = fit([r["merged"] for r in rows], [r["size"] for r in rows], [r["finetuned"] for r in rows])
    pred = predict(params, [r["merged"] for r in rows], [r["size"] for r in rows])
    for r, p in zip(rows, pred):
        r["predicted"] = float(p)
    result = {"metric": metric, "model": "finetuned ~ a + b * merged + c * (size - 1)", **params,
              "extra_finetunes": extra, "operator": merged[masks[0]].get("operator"), "anchors": rows}
    atomic_write_json(result, out_json)
    return result
