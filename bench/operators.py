"""What each merge operator costs per mask, as a ratio to the paper's average, measured side by side
in one process on one pool (issue "A surrogate you can trust", item 1).

    python bench/operators.py                  # BERT-small-shaped pool (~11 M parameters), 6 fine-tunes
    python bench/operators.py --size base      # BERT-base-shaped (~110 M, 440 MB fp32)

For each engine mode (memory, stream) and operator, every sampled mask is merged; the operators take
turns mask by mask, so machine noise lands on all of them alike. The average in memory mode uses its
prefix-sum cache (what a run gets); the other operators have no such cache and touch every member.
Writes bench/results/operators-cpu.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "bench"))

from pools import SIZES, make_pool  # noqa: E402
from provenance import machine  # noqa: E402

OPERATORS = [("average", {}), ("task_arithmetic", {"lam": 1.0, "power": 0.5}), ("ties", {"density": 0.2, "lam": 1.0})]


def measure(root: Path, n: int, masks: int, threads: int, seed: int = 0) -> dict:
    from merge2mix import engine, families, runtime
    from merge2mix import pool as pools

    dev = runtime.setup(threads, "cpu")
    fam = families.get("text_classification")
    files = {f"ft{i}": str(root / f"ft{i}.safetensors") for i in range(n)}
    every = [c for k in range(2, n + 1) for c in combinations(sorted(files), k)]
    sample = random.Random(seed).sample(every, min(masks, len(every)))
    out = {}
    for mode in ("memory", "stream"):
        engine.clear_cache()
        pool = pools.Pool(fam, str(root / "base"), dev, mode, sorted(files), budget_bytes=10**13)
        pool.merge(files)  # every member loaded once (memory mode): the one-off cost, not the per-mask one
        for method, params in OPERATORS:  # warm-up: first-call allocations and theta_0's row
            pool.merge({m: files[m] for m in sample[0]}, method, params)
        spent = {method: 0.0 for method, _ in OPERATORS}
        for mask in sample:
            for method, params in OPERATORS:
                t0 = time.perf_counter()
                pool.merge({m: files[m] for m in mask}, method, params)
                spent[method] += time.perf_counter() - t0
        ms = {m: 1000 * s / len(sample) for m, s in spent.items()}
        out[mode] = {"per_mask_ms": {m: round(v, 3) for m, v in ms.items()},
                     "ratio_to_average": {m: round(v / ms["average"], 2) for m, v in ms.items()},
                     "model_fp32_MB": round(pool.numel * 4 / 1e6, 1)}
    return {"masks_timed": len(sample), **out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--n", type=int, default=6, help="fine-tunes in the pool")
    ap.add_argument("--masks", type=int, default=24, help="masks timed (sampled among sizes 2..n)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="where the pool is written (default bench/_work/operators-<size>)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "operators-cpu.json"))
    a = ap.parse_args(argv)
    root = make_pool(Path(a.work or REPO / "bench" / "_work" / f"operators-{a.size}-{a.n}"), a.size, a.n)
    res = {"command": "python bench/operators.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine(python=platform.python_version()),
           "size": a.size, "n": a.n, "threads": a.threads, **measure(root, a.n, a.masks, a.threads)}
    for mode in ("memory", "stream"):
        r = res[mode]
        print(f"{mode:6s} ({r['model_fp32_MB']} MB model): " + ", ".join(
            f"{m} {r['per_mask_ms'][m]} ms ({r['ratio_to_average'][m]}x)" for m in r["per_mask_ms"]))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
