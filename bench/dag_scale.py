"""How long Snakemake takes to build the DAG (a dry run) for N candidates, i.e. 2^N - 1 masks.

    python bench/dag_scale.py 8 10 12 14

Uses the tiny in-repo dataset files under N names (no model is loaded: a dry run never runs a job).
Writes bench/results/dag_scale.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def config(n: int, work: Path) -> Path:
    csv = str(REPO / "tests" / "fixtures" / "data" / "books.csv")
    ds = {"local": {"path": csv}, "columns": {"text": "review", "label": "stars"},
          "label_map": {"neg": "negative", "pos": "positive"}}
    cfg = {"run": f"scale{n}", "results_dir": str(work / "results"), "model": {"name_or_path": "some-org/some-model"},
           "task": {"labels": ["negative", "positive"]}, "target": "target", "max_candidates": 20,
           "datasets": {"target": ds, **{f"d{i:02d}": ds for i in range(n)}}}
    p = work / f"scale{n}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def main(ns):
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in ns:
            cfg = config(n, work)
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "--snakefile", str(REPO / "Snakefile"),
                                "--directory", str(work), "--configfile", str(cfg)], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode:
                sys.exit(r.stderr[-2000:])
            row = {"candidates": n, "masks": 2**n - 1, "dry_run_s": round(wall, 2)}
            out["runs"].append(row)
            print(row, flush=True)
    dest = REPO / "bench" / "results" / "dag_scale.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written: {dest.relative_to(REPO)}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [8, 10, 12])
