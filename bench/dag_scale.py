"""How long Snakemake takes to build the DAG (a dry run) for N candidates, i.e. 2^N - 1 masks.

    python bench/dag_scale.py 8 10 12 14
    python bench/dag_scale.py --baseline-rev 540a715 12 14   # the same dry runs on an older commit, side by side

Uses the tiny in-repo dataset files under N names (no model is loaded: a dry run never runs a job).
Prints, per N, the dry-run time, the time per 1,000 masks and, with --baseline-rev, baseline / current.
Writes bench/results/dag_scale.json. Bring a Slurm controller up or uninstall Slurm's client first:
with the client installed and no controller, the SLURM plugin adds ~10 s to every start.
"""

from __future__ import annotations

import json
import os
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from provenance import export_rev, machine

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


def dry_run(snakefile: Path, work: Path, cfg: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "--snakefile", str(snakefile),
                        "--directory", str(work), "--configfile", str(cfg)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(snakefile.parent / "workflow")})
    if r.returncode:
        sys.exit(r.stderr[-2000:])
    return time.perf_counter() - t0


def main(ns, baseline_rev=None, dest: Path = REPO / "bench" / "results" / "dag_scale.json") -> int:
    out = {"machine": machine(), "baseline_rev": baseline_rev, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = export_rev(baseline_rev, work / "baseline") if baseline_rev else None
        for n in ns:
            cfg = config(n, work)
            wall = dry_run(REPO / "Snakefile", work / "cur", cfg)
            row = {"candidates": n, "masks": 2**n - 1, "dry_run_s": round(wall, 2),
                   "s_per_1000_masks": round(1000 * wall / (2**n - 1), 2)}
            if base:
                b = dry_run(base / "Snakefile", work / "base", cfg)
                row |= {"baseline_dry_run_s": round(b, 2), "baseline_over_current": round(b / wall, 2)}
            out["runs"].append(row)
            print(row, flush=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written: {dest}")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="*", type=int, default=[8, 10, 12], help="numbers of candidates")
    ap.add_argument("--baseline-rev", help="git revision to time side by side (e.g. before a DAG fix)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dag_scale.json")
    a = ap.parse_args()
    sys.exit(main(a.n, a.baseline_rev, a.out))
