"""How close the surrogate search gets to the exhaustive answer at a fraction of the masks, against
greedy forward selection and random masks at the same budgets (issue "Beyond exhaustive").

    python bench/search.py --masks results/pool12-a/masks.csv results/pool12-b/masks.csv
    python bench/search.py --masks bench/results/evidence-default/masks.csv --budgets 0.35 0.5

Each --masks file is an exhaustive run's masks.csv (every mask's merged val score): the searches
replay against it, so a search "scores" a mask by looking it up, and the exhaustive best is known.
For each table x method x budget (a fraction of 2^N - 1, at least the round-0 design for the
surrogate): the gap between the best merged val score found and the exhaustive best (points), and
whether the exhaustive best was found; random over --seeds seeds (mean and worst).

Writes bench/results/search/search.csv and run.json (command, commit, machine, wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix import search  # noqa: E402  (no torch)
from merge2mix.masks import parse_key  # noqa: E402


def replay(table: pd.DataFrame, metric: str, budgets: list[float], seeds: int) -> list[dict]:
    scores = dict(zip(table["mask"], table[metric]))
    cands = sorted({n for m in scores for n in parse_key(m)})
    n_masks = 2 ** len(cands) - 1
    if len(scores) != n_masks:
        raise SystemExit(f"search bench: {len(scores)} masks, an exhaustive run of {len(cands)} candidates has {n_masks}")
    best = max(scores.values())
    rows = []
    for frac in budgets:
        budget = max(1, round(frac * n_masks))
        runs = {"surrogate": [search.surrogate_search(cands, scores.get, budget, per_round=max(1, budget // 10))],
                "greedy": [search.greedy_search(cands, scores.get, budget)],
                "random": [search.random_search(cands, scores.get, budget, seed=s) for s in range(seeds)]}
        for method, results in runs.items():
            gaps = [100 * (best - r["best_score"]) for r in results]
            rows.append({"candidates": len(cands), "masks": n_masks, "budget_fraction": frac, "budget": budget, "method": method,
                         "masks_scored": max(len(r["scored"]) for r in results), "gap_points": sum(gaps) / len(gaps),
                         "gap_points_worst": max(gaps), "found_best": sum(r["best_score"] == best for r in results) / len(results)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--masks", nargs="+", required=True, help="masks.csv of exhaustive runs")
    ap.add_argument("--metric", default="accuracy")
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.01, 0.02, 0.05, 0.10])
    ap.add_argument("--seeds", type=int, default=10, help="random search seeds")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "search"))
    a = ap.parse_args(argv)
    t0, rows = time.time(), []
    for path in a.masks:
        for r in replay(pd.read_csv(path), a.metric, a.budgets, a.seeds):
            rows.append({"table": path, **r})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "search.csv", index=False)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    (out / "run.json").write_text(json.dumps({
        "command": "python bench/search.py " + " ".join(argv if argv is not None else sys.argv[1:]), "commit": commit,
        "wall_s": round(time.time() - t0, 1), "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}, indent=2) + "\n")
    print(df.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
