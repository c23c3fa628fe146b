"""Search over mixture weights around the best masks (issue "Mixture weights, not only subsets",
item 3). No torch; a weight vector is scored by a `score(key) -> float` callback (higher is better),
as in merge2mix.search, so every vector is one cached merge result named by its mixtures key.

1. Design: around each of the top masks, seeded Dirichlet draws over its members (concentration 1 is
   uniform on that face of the simplex; larger values stay nearer equal weights), rounded to keys.
   The masks themselves (equal weights) are scored already.
2. Surrogate: separable and piecewise linear, f(w) = b + sum_i g_i(w_i), each g_i linear between the
   breakpoints GRID (hat-function features), fitted by ridge regression on every scored vector.
3. Its optimum over the simplex (sum w = 1, w_i >= 0), restricted to the datasets of the top masks,
   with a cap per dataset and the subset search's membership constraints (exclude; must_include as
   w_i >= MIN_WEIGHT; max/min_datasets and at_most_one_of on indicators u_i >= w_i): a MILP (each g_i
   in lambda form with SOS2 binaries) solved by PuLP/CBC. The optimum is scored; the loop stops when
   it was scored already (the fit has converged on a vector) or the budget is spent.
"""

from __future__ import annotations

import random

from . import constraints as cons
from .masks import parse_key
from .mixtures import normalize, parse_weights_key, weights_key

GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_WEIGHT = 0.05  # a must_include dataset's least weight


def design(top_masks: list[str], per_mask: int, seed: int, concentration: float = 2.0) -> list[str]:
    """`per_mask` seeded Dirichlet draws on each top mask's members, as keys (unique, not the masks)."""
    rng = random.Random(seed)
    out: list[str] = []
    for mask in top_masks:
        names, mine = parse_key(mask), []
        for _ in range(20 * per_mask if len(names) > 1 else 0):  # a single has no other weights
            if len(mine) == per_mask:
                break
            key = weights_key({n: rng.gammavariate(concentration, 1.0) for n in names})
            if "@" in key and key not in out:
                out.append(key)
                mine.append(key)
    return out


def _hats(v: float) -> list[float]:
    """The GRID hat functions at v: at most two non-zero, summing to 1 (linear interpolation)."""
    out = [0.0] * len(GRID)
    for j in range(len(GRID) - 1):
        lo, hi = GRID[j], GRID[j + 1]
        if lo <= v <= hi:
            t = (v - lo) / (hi - lo)
            out[j], out[j + 1] = 1 - t, t
            break
    return out


def features(keys: list[str], names: list[str]):
    import numpy as np

    return np.array([[h for n in names for h in _hats(parse_weights_key(k).get(n, 0.0))] for k in keys])


def fit(keys: list[str], scores, names: list[str], alpha: float = 1e-2) -> dict:
    """Ridge (closed form, intercept unpenalised) on the hat features: g[name][j] = g_name(GRID[j])."""
    import numpy as np

    X, y = features(keys, names), np.asarray(scores, dtype=float)
    Xc = X - X.mean(0)
    w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - y.mean()))
    b = y.mean() - X.mean(0) @ w
    g = {n: [float(w[i * len(GRID) + j]) for j in range(len(GRID))] for i, n in enumerate(names)}
    rmse = float(np.sqrt(np.mean((X @ w + b - y) ** 2)))
    return {"intercept": float(b), "g": g, "names": list(names), "rmse": rmse, "n": len(y), "alpha": alpha}


def predict(model: dict, keys: list[str]):
    import numpy as np

    coef = np.array([v for n in model["names"] for v in model["g"][n]])
    return features(keys, model["names"]) @ coef + model["intercept"]


def optimum(model: dict, c: dict | None = None, cap: float = 1.0, sizes: dict[str, int] | None = None) -> dict[str, float] | None:
    """The surrogate's best weight vector under the constraints (None if none is feasible); with
    `sizes` (each dataset's train examples or tokens), a budget bounds the datasets' total."""
    import pulp

    c, names, m = c or {}, model["names"], len(GRID)
    prob = pulp.LpProblem("weights", pulp.LpMaximize)
    lam = {(n, j): cons.variable(prob, f"l{i}_{j}", 0, 1) for i, n in enumerate(names) for j in range(m)}
    seg = {(n, j): cons.binary(prob, f"z{i}_{j}") for i, n in enumerate(names) for j in range(m - 1)}
    on = {n: cons.binary(prob, f"u{i}") for i, n in enumerate(names)}
    w = {n: pulp.lpSum(GRID[j] * lam[n, j] for j in range(m)) for n in names}
    prob += model["intercept"] + pulp.lpSum(model["g"][n][j] * lam[n, j] for n in names for j in range(m))
    for n in names:
        prob += pulp.lpSum(lam[n, j] for j in range(m)) == 1
        prob += pulp.lpSum(seg[n, j] for j in range(m - 1)) == 1  # SOS2: the two lambdas of one segment
        for j in range(m):
            prob += lam[n, j] <= pulp.lpSum(seg[n, s] for s in (j - 1, j) if 0 <= s < m - 1)
        prob += w[n] <= min(cap, 1.0) * on[n]
        prob += w[n] >= MIN_WEIGHT * on[n]  # a dataset in the mixture carries a real weight
    prob += pulp.lpSum(w.values()) == 1
    present = set(names)
    for n in c.get("exclude", []):
        if n in present:
            prob += on[n] == 0
    for n in c.get("must_include", []):
        if n in present:
            prob += on[n] == 1
    prob += pulp.lpSum(on.values()) >= c.get("min_datasets", 1)
    if c.get("max_datasets") is not None:
        prob += pulp.lpSum(on.values()) <= c["max_datasets"]
    for g in c.get("at_most_one_of", []):
        prob += pulp.lpSum(on[n] for n in g if n in present) <= 1
    budget = cons.budget_of(c)
    if budget is not None and sizes is not None:  # the deployment trains on the members' rows
        prob += pulp.lpSum(sizes[n] * on[n] for n in names) <= budget[1]
    if cons.solve(prob) != "Optimal":
        return None
    return {n: float(pulp.value(w[n])) for n in names if pulp.value(w[n]) > 1e-9}


def _best(scored: dict[str, float], c: dict | None, sizes: dict[str, int] | None) -> str:
    """The best scored vector that satisfies `c` (any, if none does: a draw may round a member away),
    then fewer datasets, then the smallest key (as select and search break ties)."""
    allowed = [k for k in scored if cons.allows(parse_weights_key(k), c, sizes)] or list(scored)
    return min(allowed, key=lambda k: (-scored[k], len(parse_weights_key(k)), k))


# weight_search's settings: the config's weights: keys (max_vectors is the budget) and a seed.
WEIGHTS = {"per_mask": 4, "concentration": 2.0, "cap": 1.0, "alpha": 1e-2, "seed": 0}


def weight_search(top_masks: list[str], score, budget: int, settings: dict | None = None, *, c: dict | None = None,
                  sizes: dict[str, int] | None = None) -> dict:
    """Score the top masks and the design, then rounds of fit -> optimum -> score until the optimum
    repeats or `budget` vectors are scored (`settings`: WEIGHTS' keys). Returns the scores, the rounds
    and the best vector."""
    s = {**WEIGHTS, **(settings or {})}
    alpha, cap = s["alpha"], s["cap"]
    names = sorted({n for m in top_masks for n in parse_key(m)})
    scored: dict[str, float] = {}
    for key in [*top_masks, *design(top_masks, s["per_mask"], s["seed"], s["concentration"])][:budget]:
        scored[key] = score(key)
    rounds = [{"round": 0, "scored": list(scored)}]
    while len(scored) < budget:
        model = fit(list(scored), list(scored.values()), names, alpha)
        best = optimum(model, c, cap, sizes)
        key = None if best is None else weights_key(normalize(best))
        rounds.append({"round": len(rounds), "proposed": key, "fit_rmse": model["rmse"],
                       "predicted": None if key is None else float(predict(model, [key])[0])})
        if key is None or key in scored:
            break
        scored[key] = score(key)
    top = _best(scored, c, sizes)
    return {"scored": scored, "rounds": rounds, "best": top, "best_score": scored[top], "weights": parse_weights_key(top)}


# -- The workflow's steps (rules/weights.smk) ---------------------------------------------------------

def design_step(*, masks_csv: str, top: int, per_mask: int, seed: int, concentration: float, out_json: str) -> dict:
    """The weight_design job: the `top` masks of masks.csv (its ranking, constraints applied there) and
    the Dirichlet draws around them; every one of these vectors is then scored like a mask."""
    import pandas as pd

    from .io import atomic_write_json

    masks = pd.read_csv(masks_csv)["mask"].head(top).tolist()
    keys = design(masks, per_mask, seed, concentration)
    out = {"top_masks": masks, "design": keys, "vectors": masks + keys}
    atomic_write_json(out, out_json)
    return out


def round_step(*, r: int, result_paths: list[str], design_path: str, metric: str, settings: dict, c: dict | None,
               out_json: str, constraints_path: str | None = None) -> dict:
    """One round (the weight_round checkpoint): read every vector scored so far, fit the surrogate and
    propose its optimum, or stop (`done`) when the optimum was scored already, none is feasible or
    `max_vectors` are scored. Loss is negated so that higher is better throughout."""
    from .io import atomic_write_json, read_json
    from .select import sign

    scored = {rec["mask"]: sign(metric) * rec[metric] for rec in map(read_json, result_paths)}
    names = sorted({n for m in read_json(design_path)["top_masks"] for n in parse_key(m)})
    sizes = read_json(constraints_path)["sizes"] if constraints_path else None  # select.constraints' budget unit
    out = {"round": r, "metric": metric, "n_scored": len(scored), "scored": sorted(scored), "fit": None, "proposed": None}
    if len(scored) < settings["max_vectors"]:
        model = fit(list(scored), list(scored.values()), names, settings["alpha"])
        w = optimum(model, c, settings["cap"], sizes)
        key = None if w is None else weights_key(w)
        out["fit"] = {k: model[k] for k in ("intercept", "g", "names", "rmse", "n", "alpha")}
        out["optimum"] = key
        out["predicted"] = None if key is None else float(predict(model, [key])[0])
        out["proposed"] = None if key is None or key in scored else key
    best = _best(scored, c, sizes)
    out |= {"best": best, "best_score": sign(metric) * scored[best], "weights": parse_weights_key(best), "done": out["proposed"] is None,
            "scores": {k: sign(metric) * v for k, v in scored.items()}}
    atomic_write_json(out, out_json)
    return out
