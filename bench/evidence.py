"""Run a config with the oracle on (every mixture fine-tuned) and commit-ready copies of its evidence.

    python bench/evidence.py                          # the embedded default (N = 6: 57 extra fine-tunes)
    python bench/evidence.py --config bench/configs/target-airline.yaml --cores 8

A committed evidence-<run>/ is not overwritten without --force (config.yaml and
bench/configs/target-apple.yaml share the run name `default`).

Writes bench/results/evidence-<run>/: correlation.json, methods.csv, masks.csv, oracle.csv (one row
per mixture fine-tune), the plots, and run.json (the exact command, commit, machine, wall time).
Work already done for the same config (fine-tunes, masks) is reused from results/<run>/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix import config as config_mod  # noqa: E402
from provenance import commit, machine, snakemake, workflow_env  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--force", action="store_true", help="overwrite an existing bench/results/evidence-<run>/")
    ap.add_argument("--workdir", type=Path, default=REPO, help="where Snakemake runs (its .snakemake/ and relative paths)")
    ap.add_argument("--out-root", type=Path, default=REPO / "bench" / "results", help="evidence-<run>/ goes here")
    a = ap.parse_args(argv)
    plan = config_mod.Plan(config_mod.load(a.config))
    out = a.out_root / f"evidence-{plan.cfg['run']}"
    if out.exists() and not a.force:
        sys.exit(f"evidence: {out} exists (committed evidence); --force to overwrite it")
    args = ["--cores", str(a.cores), "--configfile", str(a.config), "--config", "oracle=True"]
    t0 = time.time()
    r = subprocess.run(snakemake(*args), cwd=a.workdir, env=workflow_env())
    wall = time.time() - t0
    if r.returncode:
        sys.exit(f"snakemake failed (exit {r.returncode})")
    run = a.workdir / plan.run_dir
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for f in ("correlation.json", "methods.csv", "masks.csv", "best_mask.json", "summary.md"):
        shutil.copy2(run / f, out / f)
    for f in (run / "plots").glob("*.png"):
        shutil.copy2(f, out / "plots" / f.name)
    oracle = pd.DataFrame([json.loads(p.read_text()) for p in sorted((run / "mixtures").glob("*.json"))])
    oracle.drop(columns=["datasets"]).to_csv(out / "oracle.csv", index=False)
    (out / "run.json").write_text(json.dumps({
        "command": " ".join(["python", "-m", "snakemake", *args]),  # without --snakefile (the repo's)
        "commit": commit(), "wall_s_this_invocation": round(wall, 1),
        "note": "wall time covers only the jobs this invocation ran; jobs already done were reused",
        "machine": machine(),
    }, indent=2) + "\n")
    print(f"written: {out}")
    print(json.dumps({k: v for k, v in json.loads((out / "correlation.json").read_text()).items()
                      if not k.endswith("definition")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
