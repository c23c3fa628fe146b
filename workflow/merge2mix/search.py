"""Mixture search beyond exhaustive: a surrogate over masks, maximised by an integer program. No torch.

A mask is a binary vector x over the candidates. The surrogate is ridge regression on

    [x_i (N)] + [x_i * x_j, i < j (N(N-1)/2)] + [one-hot of the size k = sum x_i (N)]

so it can learn each dataset's effect, each pair's interaction and any effect of the size (the
merged score's size bias). Maximising it is an ILP over binary x: the products linearise exactly
(y_ij <= x_i, y_ij <= x_j, y_ij >= x_i + x_j - 1) and the size one-hot is s_k in {0,1}, sum s_k = 1,
sum k s_k = sum x_i. No-good cuts (sum_{i in S} (1 - x_i) + sum_{i not in S} x_i >= 1 for every mask S
already scored or proposed) make each solve return a new mask, so M solves give the top M unscored
masks under the fitted model and the `select.constraints` (merge2mix.constraints).

Also the baselines a search is compared with at equal budgets: seeded random masks and greedy forward
selection. Search loops here take a `score(key) -> float` callback (higher is better).
"""

from __future__ import annotations

import random
from itertools import combinations

from . import constraints as cons
from .masks import mask_key, parse_key


def features(masks: list[list[str]], candidates: list[str]):
    """The design matrix (masks x features) and the feature names."""
    import numpy as np

    n = len(candidates)
    pairs = list(combinations(range(n), 2))
    idx = {c: i for i, c in enumerate(candidates)}
    X = np.zeros((len(masks), n + len(pairs) + n))
    for r, m in enumerate(masks):
        on = sorted(idx[c] for c in m)
        X[r, on] = 1
        for p, (i, j) in enumerate(pairs):
            X[r, n + p] = float(i in on and j in on)
        X[r, n + len(pairs) + len(on) - 1] = 1
    names = [*candidates, *(f"{candidates[i]}*{candidates[j]}" for i, j in pairs), *(f"size={k}" for k in range(1, n + 1))]
    return X, names


def fit(masks: list[list[str]], scores, candidates: list[str], alpha: float = 1e-2) -> dict:
    """Ridge (closed form, intercept unpenalised) on the features of the scored masks."""
    import numpy as np

    X, names = features(masks, candidates)
    y = np.asarray(scores, dtype=float)
    mu = y.mean()
    Xc = X - X.mean(0)
    w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - mu))
    b = mu - X.mean(0) @ w
    resid = y - (X @ w + b)
    return {"intercept": float(b), "weights": dict(zip(names, map(float, w))), "alpha": alpha, "candidates": list(candidates),
            "rmse": float(np.sqrt(np.mean(resid ** 2))), "n": len(y)}


def predict(model: dict, masks: list[list[str]]):
    import numpy as np

    X, names = features(masks, model["candidates"])
    return X @ np.array([model["weights"][k] for k in names]) + model["intercept"]


def propose(model: dict, seen: list[list[str]], m: int, c: dict | None = None, sizes: dict | None = None) -> list[str]:
    """The top `m` masks under `model` that are not in `seen` and satisfy `c`, best first (fewer when
    fewer exist). One CBC solve per proposal, each adding a no-good cut on the last."""
    import pulp

    cands = model["candidates"]
    n, w = len(cands), model["weights"]
    prob, x = cons.problem(cands, c or {}, sizes)
    y = {}
    for i, j in combinations(range(n), 2):
        v = y[i, j] = cons.binary(prob, f"y{i}_{j}")
        xi, xj = x[cands[i]], x[cands[j]]
        prob += v <= xi
        prob += v <= xj
        prob += v >= xi + xj - 1
    s = {k: cons.binary(prob, f"s{k}") for k in range(1, n + 1)}
    prob += pulp.lpSum(s.values()) == 1
    prob += pulp.lpSum(k * v for k, v in s.items()) == pulp.lpSum(x.values())
    prob.setObjective(model["intercept"] + pulp.lpSum(w[cands[i]] * x[cands[i]] for i in range(n))
                      + pulp.lpSum(w[f"{cands[i]}*{cands[j]}"] * v for (i, j), v in y.items())
                      + pulp.lpSum(w[f"size={k}"] * v for k, v in s.items()))

    def cut(mask):
        on = set(mask)
        prob.addConstraint(pulp.lpSum(1 - x[cn] for cn in cands if cn in on) + pulp.lpSum(x[cn] for cn in cands if cn not in on) >= 1)

    for mask in seen:
        cut(mask)
    out = []
    for _ in range(m):
        if cons.solve(prob) != "Optimal":
            break
        mask = sorted(cn for cn in cands if x[cn].value() > 0.5)
        out.append(mask_key(mask))
        cut(mask)
    return out


def design(candidates: list[str], m0: int | None, seed: int, c: dict | None = None) -> list[str]:
    """Round 0: the singles and pairs that `c` allows. With `m0` smaller than that (large N, or a small
    mask budget), every single first - each dataset's own effect is what the fit needs most - then a
    seeded sample of pairs; with `m0` below the number of singles, a seeded sample of singles. When
    `c` allows no single and no pair (min_datasets: 3, must_include of three), the smallest masks it
    allows instead (_smallest_allowed): a valid config must not leave round 0 empty."""
    singles = [mask_key(m) for m in combinations(candidates, 1) if cons.allows(m, c)]
    pairs = [mask_key(m) for m in combinations(candidates, 2) if cons.allows(m, c)]
    if not singles and not pairs:
        return _smallest_allowed(candidates, m0 or 2 * len(candidates), seed, c)
    if m0 is None or m0 >= len(singles) + len(pairs):
        return singles + pairs
    rng = random.Random(seed)
    if m0 <= len(singles):
        return rng.sample(singles, m0)
    return singles + rng.sample(pairs, m0 - len(singles))


def _smallest_allowed(candidates: list[str], m: int, seed: int, c: dict | None) -> list[str]:
    """Up to `m` distinct masks that `c` allows, the smallest first: the integer program of `propose`
    with every dataset costing 1 (plus a seeded jitter below 0.01, so that masks of one size come in a
    seeded spread rather than the solver's order). Enumerating sizes would not do: C(30, 10) masks."""
    rng = random.Random(f"design:{seed}")
    model = {"candidates": list(candidates), "intercept": 0.0,
             "weights": {**{cn: -1.0 - 0.01 * rng.random() for cn in candidates},
                         **{f"{a}*{b}": 0.0 for a, b in combinations(candidates, 2)},
                         **{f"size={k}": 0.0 for k in range(1, len(candidates) + 1)}}}
    return propose(model, [], m, c)


def _best(scored: dict[str, float], c: dict | None = None, sizes: dict | None = None) -> str | None:
    """Highest score, then fewer datasets, then the key (select's tie-break, on one score), among the
    masks `c` allows (with `sizes`, its budget too): a mask that cannot be picked is never the
    incumbent. None when no scored mask is allowed."""
    allowed = [k for k in scored if cons.allows(parse_key(k), c, sizes)]
    return min(allowed, key=lambda k: (-scored[k], len(parse_key(k)), k)) if allowed else None


# surrogate_search's settings: the config's select.surrogate keys (max_masks is the budget) and a seed.
SURROGATE = {"per_round": 8, "patience": 2, "design_masks": None, "alpha": 1e-2, "explore": 0.0, "seed": 0}


def _proposals(model, scored, want: int, explore: float, rng: random.Random, c, sizes, proposer=None) -> list[str]:
    """A round's masks: the fitted model's top unscored ones, and with `explore` > 0 that share of the
    round drawn at random among the allowed unscored masks (a fit on a flat top keeps proposing its
    neighbours; random masks reach the rest)."""
    n_explore = int(explore * want)
    seen = [parse_key(k) for k in scored]
    props = proposer(model, seen, want - n_explore) if proposer else propose(model, seen, want - n_explore, c, sizes)
    if n_explore:
        props += random_masks(model["candidates"], want - len(props), rng, set(scored) | set(props), c, sizes)
    return props


def surrogate_search(candidates, score, budget: int, settings: dict | None = None, *, c: dict | None = None,
                     sizes: dict | None = None, proposer=None) -> dict:
    """Rounds of fit -> propose -> score until `budget` masks are scored or the incumbent has not
    improved for `patience` rounds (`settings`: SURROGATE's keys, patience None = spend the budget;
    round 0 is `design` with `design_masks`; `explore`: _proposals). `proposer(model, seen, m)`
    replaces `propose` (a benchmark's variants). Returns the scores, the rounds and the best mask."""
    s = {**SURROGATE, **(settings or {})}
    per_round, patience, alpha = s["per_round"], s["patience"], s["alpha"]
    rng = random.Random(f"explore:{s['seed']}")
    scored: dict[str, float] = {}
    rounds = []
    # the budget too, where the sizes are known here (the workflow's round 0 is planned before they are)
    first = [k for k in design(candidates, s["design_masks"], s["seed"], c) if cons.allows(parse_key(k), c, sizes)][:budget]
    for key in first:
        scored[key] = score(key)
    rounds.append({"round": 0, "proposed": first, "best": _best(scored, c, sizes)})
    stale = 0
    while len(scored) < budget and (patience is None or stale < patience):
        keys = list(scored)
        model = fit([parse_key(k) for k in keys], [scored[k] for k in keys], list(candidates), alpha)
        props = _proposals(model, scored, min(per_round, budget - len(scored)), s["explore"], rng, c, sizes, proposer)
        if not props:
            break
        before = _best(scored, c, sizes)
        for key in props:
            scored[key] = score(key)
        after = _best(scored, c, sizes)
        stale = 0 if after is not None and (before is None or scored[after] > scored[before]) else stale + 1
        rounds.append({"round": len(rounds), "proposed": props, "fit_rmse": model["rmse"], "best": after})
    best = _best(scored, c, sizes)
    return {"scored": scored, "rounds": rounds, "best": best, "best_score": None if best is None else scored[best]}


def random_masks(candidates, m: int, rng: random.Random, taken=(), c: dict | None = None,
                 sizes: dict | None = None) -> list[str]:
    """`m` distinct masks not in `taken` that `c` allows, drawn with `rng` (each dataset in with
    probability 1/2, redrawn when empty, taken or not allowed; fewer after 100 * m draws)."""
    out: list[str] = []
    taken = set(taken)
    tries = 0
    while len(out) < m and tries < 100 * m:
        tries += 1
        mask = [cn for cn in candidates if rng.random() < 0.5]
        if not mask or mask_key(mask) in taken or not cons.allows(mask, c, sizes):
            continue
        out.append(mask_key(mask))
        taken.add(out[-1])
    return out


def random_search(candidates, score, budget: int, seed: int = 0, c: dict | None = None, sizes: dict | None = None) -> dict:
    """`budget` distinct allowed masks drawn uniformly (random_masks)."""
    scored = {k: score(k) for k in random_masks(candidates, budget, random.Random(seed), (), c, sizes)}
    best = _best(scored, c, sizes)
    return {"scored": scored, "best": best, "best_score": scored[best]}


def greedy_search(candidates, score, budget: int, c: dict | None = None, sizes: dict | None = None) -> dict:
    """Forward selection: start from the best single, add the dataset that most improves the score,
    stop when none does or the budget is spent. The best is the best scored mask that satisfies `c`
    (None if the path never reached one: min_datasets is not enforced along the way)."""
    scored: dict[str, float] = {}

    def s(m):
        k = mask_key(m)
        if k not in scored:
            scored[k] = score(k)
        return scored[k]

    current: list[str] = []
    value = float("-inf")
    while len(scored) < budget:
        on_path = {**(c or {}), "min_datasets": 1}  # a path passes through smaller masks
        options = [current + [cn] for cn in candidates if cn not in current and cons.allows(current + [cn], on_path, sizes)]
        options = options[: budget - len(scored)]
        if not options:
            break
        vals = {mask_key(o): s(o) for o in options}
        top = max(vals, key=vals.get)
        if vals[top] <= value:
            break
        current, value = parse_key(top), vals[top]
    best = _best(scored, c, sizes)  # a path may pass below min_datasets
    return {"scored": scored, "best": best, "best_score": None if best is None else scored[best], "path": current}


def round_step(*, result_paths: list[str], previous: str | None, candidates: list[str], metric: str,
               settings: dict, c: dict | None, constraints_path: str | None, out_json: str) -> dict:
    """One round of the workflow's surrogate search (rule search_round, a checkpoint): read every mask
    scored so far (merge_eval/<mask>.json), update the incumbent, and either stop (`done`) or fit the
    surrogate and propose the next masks. `previous`: the last round's record (none for round 0).
    `settings`: select.surrogate with max_masks resolved (the plan's mask budget) and the run's seed
    (a round's exploring draws are seeded by it and the round). Loss is negated so that higher is
    better throughout."""
    from .io import atomic_write_json, read_json
    from .select import sign

    max_masks = settings["max_masks"]
    scored = {r["mask"]: sign(metric) * r[metric] for r in map(read_json, result_paths)}
    sizes = read_json(constraints_path)["sizes"] if constraints_path else None
    prev = read_json(previous) if previous else None
    r = 0 if prev is None else prev["round"] + 1
    best = _best(scored, c, sizes)  # the incumbent: the best mask that can be picked (the budget too)
    score_now = None if best is None else scored[best]
    improved = prev is None or (score_now is not None and (prev["best_score"] is None or score_now > prev["best_score"]))
    stale = 0 if improved else prev["stale"] + 1
    out = {"round": r, "metric": metric, "n_scored": len(scored), "scored": sorted(scored), "best": best,
           "best_score": score_now, "stale": stale, "max_masks": max_masks, "fit": None, "proposed": []}
    if len(scored) < max_masks and (settings["patience"] is None or stale < settings["patience"]):
        model = fit([parse_key(k) for k in scored], list(scored.values()), list(candidates), settings["alpha"])
        out["fit"] = {"rmse": model["rmse"], "n": model["n"], "alpha": model["alpha"]}
        rng = random.Random(f"explore:{settings['seed']}:{r}")
        out["proposed"] = _proposals(model, scored, min(settings["per_round"], max_masks - len(scored)),
                                     settings["explore"], rng, c, sizes)
    out["done"] = not out["proposed"]
    atomic_write_json(out, out_json)
    return out
