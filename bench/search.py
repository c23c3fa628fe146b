"""How close the surrogate search gets to the exhaustive answer at a fraction of the masks, against
greedy forward selection and random masks at the same budgets (issue "Beyond exhaustive").

    python bench/search.py --masks results/pool12-a/masks.csv results/pool12-b/masks.csv
    python bench/search.py --masks bench/results/evidence-default/masks.csv --budgets 0.35 0.5

Each --masks file is an exhaustive run's masks.csv (every mask's merged val score): the searches
replay against it, so a search "scores" a mask by looking it up, and the exhaustive best is known.
For each table x method x budget (a fraction of 2^N - 1, at least the round-0 design for the
surrogate): the gap between the best merged val score found and the exhaustive best (points), and
whether the exhaustive best was found; random over --seeds seeds (mean and worst). The surrogate's
settings follow the budget, fixed before any table was seen: round 0 takes at most half of it (every
single, then seeded pairs: search.design) and each later round a tenth.

Constraints (CONSTRAINTS, also fixed beforehand): for each set, the exhaustive run's pick under it
(merge2mix.select.within_constraints on the table, what the workflow does) against the best feasible
mask found by brute force here, and the surrogate search under it at the 5 % budget. Dataset sizes
for the budget come from the run's data/<name>/meta.json, or sizes.json next to masks.csv.

Writes bench/results/search/search.csv, constraints.csv and run.json (command, commit, machine, wall time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix import constraints, search  # noqa: E402  (no torch)
from merge2mix.masks import parse_key  # noqa: E402
from merge2mix.select import rank, within_constraints  # noqa: E402
from provenance import commit, machine  # noqa: E402

CONSTRAINTS = {  # named for the report; names absent from a pool are dropped from the set
    "max_datasets=3": {"max_datasets": 3},
    "must rt_movies, not deflategate": {"must_include": ["rt_movies"], "exclude": ["deflategate"]},
    "one newsgroup at most, 2+ datasets": {"at_most_one_of": [["ng_comp", "ng_rec", "ng_sci", "ng_talk"]], "min_datasets": 2},
    "budget 1,200 examples": {"budget": {"examples": 1200}},
}


def replay(table: pd.DataFrame, metric: str, budgets: list[float], seeds: int) -> list[dict]:
    scores = dict(zip(table["mask"], table[metric]))
    cands = sorted({n for m in scores for n in parse_key(m)})
    n_masks = 2 ** len(cands) - 1
    if len(scores) != n_masks:
        raise SystemExit(f"search bench: {len(scores)} masks, an exhaustive run of {len(cands)} candidates has {n_masks}")
    best = max(scores.values())
    rows = []
    n_round0 = len(search.design(cands, None, 0))
    for frac in budgets:
        budget = max(1, round(frac * n_masks))
        runs = {"surrogate": [search.surrogate_search(cands, scores.get, budget, {"per_round": max(1, budget // 10),
                                                      "design_masks": min(n_round0, budget // 2)})],
                "greedy": [search.greedy_search(cands, scores.get, budget)],
                "random": [search.random_search(cands, scores.get, budget, seed=s) for s in range(seeds)]}
        for method, results in runs.items():
            gaps = [100 * (best - r["best_score"]) for r in results]
            rows.append({"candidates": len(cands), "masks": n_masks, "budget_fraction": frac, "budget": budget, "method": method,
                         "masks_scored": max(len(r["scored"]) for r in results), "gap_points": sum(gaps) / len(gaps),
                         "gap_points_worst": max(gaps), "found_best": sum(r["best_score"] == best for r in results) / len(results),
                         "masks_tied_best": sum(v == best for v in scores.values())})
    return rows


def sizes_of(masks_csv: Path, cands: list[str]) -> dict[str, int]:
    meta = [masks_csv.parent / "data" / c / "meta.json" for c in cands]
    if all(p.exists() for p in meta):
        return {c: json.loads(p.read_text())["rows"]["train"] for c, p in zip(cands, meta)}
    return json.loads((masks_csv.parent / "sizes.json").read_text())


def for_pool(c: dict, cands: list[str]) -> dict:
    """A CONSTRAINTS set with the names this pool lacks left out (the two targets' pools differ)."""
    out = {k: [n for n in v if n in cands] if k in ("must_include", "exclude") else v for k, v in c.items()}
    if "at_most_one_of" in c:
        out["at_most_one_of"] = [[n for n in g if n in cands] for g in c["at_most_one_of"]]
    return out


def constrained(table: pd.DataFrame, metric: str, sizes: dict[str, int], frac: float = 0.05) -> list[dict]:
    """Each CONSTRAINTS set: the workflow's exhaustive pick against brute force, and the surrogate under it."""
    scores = dict(zip(table["mask"], table[metric]))
    cands = sorted(sizes)
    budget = round(frac * (2 ** len(cands) - 1))
    ranked = rank(table, metric)
    rows = []
    for name, c in CONSTRAINTS.items():
        c = for_pool(c, cands)
        feasible = {m: v for m, v in scores.items() if constraints.allows(parse_key(m), c, sizes)}
        brute = max(feasible.values())
        picked = within_constraints(ranked, {"constraints": c, "sizes": sizes}).iloc[0]["mask"]
        settings = {"per_round": max(1, budget // 10), "design_masks": min(len(search.design(cands, None, 0, c)), budget // 2)}
        res = search.surrogate_search(cands, scores.get, budget, settings, c=c, sizes=sizes)
        rows.append({"constraints": name, "feasible_masks": len(feasible), "best_feasible": brute, "exhaustive_pick": picked,
                     "exhaustive_pick_is_best_feasible": scores[picked] == brute, "surrogate_budget": budget,
                     "surrogate_masks": len(res["scored"]), "surrogate_pick": res["best"],
                     "surrogate_pick_feasible": constraints.allows(parse_key(res["best"]), c, sizes),
                     "surrogate_gap_points": 100 * (brute - res["best_score"])})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--masks", nargs="+", required=True, help="masks.csv of exhaustive runs")
    ap.add_argument("--metric", default="accuracy")
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.01, 0.02, 0.05, 0.10])
    ap.add_argument("--seeds", type=int, default=10, help="random search seeds")
    ap.add_argument("--no-constraints", action="store_true", help="skip the constraint check (no dataset sizes at hand)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "search"))
    a = ap.parse_args(argv)
    t0, rows, crows = time.time(), [], []
    for path in a.masks:
        table = pd.read_csv(path)
        for r in replay(table, a.metric, a.budgets, a.seeds):
            rows.append({"table": path, **r})
        if not a.no_constraints:
            cands = sorted({n for m in table["mask"] for n in parse_key(m)})
            crows += [{"table": path, **r} for r in constrained(table, a.metric, sizes_of(Path(path), cands))]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "search.csv", index=False)
    if crows:
        pd.DataFrame(crows).to_csv(out / "constraints.csv", index=False)
        print(pd.DataFrame(crows).round(3).to_string(index=False))
    (out / "run.json").write_text(json.dumps({
        "command": "python bench/search.py " + " ".join(argv if argv is not None else sys.argv[1:]), "commit": commit(),
        "wall_s": round(time.time() - t0, 1), "machine": machine()}, indent=2) + "\n")
    print(df.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
