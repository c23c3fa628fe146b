"""A Slurm bundle of masks against its masks' own work (issue 17, item 3).

    python bench/slurm_bundle.py --config config.yaml --workdir bench/_work/slurm-bundle \
        --out bench/results/slurm-bundle [--masks-per-job 32] [--cluster-setup]

Runs the workflow up to select_mixture through profiles/slurm (masks_per_job masks per Slurm job,
one process each: rule merge_bundle) on the Slurm cluster this machine can reach; with
--cluster-setup, on the single-node cluster of tests/slurm (brought up and torn down here; root).
Then, per bundle: its Slurm job's elapsed time (sacct), the time its process spent on the bundle
(first mask to last, merge_bundles/b<i>.json), and the masks' kernel time, the sum of their merge_s +
eval_s (merge and forward pass, in the warm process). Ratios: slurm_over_kernel (what a cluster user
waits per unit of mask work; the done-when goal is <= 1.5) and process_over_kernel (the process's own
overhead, without the job's start).

Writes <out>/bundles.csv and <out>/run.json (command, commit, machine, wall).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))
from merge2mix import config  # noqa: E402  (light: no torch)
from provenance import commit, machine, snakemake, workflow_env  # noqa: E402

SLURM = REPO / "tests" / "slurm"


def sacct_elapsed(since: str) -> dict[str, int]:
    """Elapsed seconds of each merge_bundle Slurm job since `since`, by bundle (the plugin's comment
    names the rule and wildcards: rule_merge_bundle_wildcards_b0)."""
    out = subprocess.run(["sacct", "-X", "-n", "--parsable2", "-S", since, "-o", "Comment,State,ElapsedRaw"],
                         capture_output=True, text=True, check=True).stdout
    return parse_sacct(out)


def parse_sacct(text: str) -> dict[str, int]:
    found = {}
    for line in text.splitlines():
        comment, state, elapsed = (line.split("|") + ["", "", ""])[:3]
        if comment.startswith("rule_merge_bundle_wildcards_") and state == "COMPLETED":
            found[comment.removeprefix("rule_merge_bundle_wildcards_")] = int(elapsed)
    return found


def bundle_table(run_dir: Path, elapsed: dict[str, int]) -> pd.DataFrame:
    """One row per bundle file under run_dir/merge_bundles, with its Slurm elapsed time if known."""
    rows = []
    for p in sorted((run_dir / "merge_bundles").glob("b*.json")):
        b = json.loads(p.read_text())
        scored = [r for k, r in b["masks"].items() if k not in b["reused"]]
        kernel = sum(r["merge_s"] + r["eval_s"] for r in scored)
        rows.append({"bundle": p.stem, "masks": len(b["masks"]), "scored": len(scored), "process": b["process"],
                     "slurm_elapsed_s": elapsed.get(p.stem), "process_s": b["wall_s"], "kernel_s": round(kernel, 3),
                     "slurm_over_kernel": round(elapsed[p.stem] / kernel, 3) if p.stem in elapsed and kernel else None,
                     "process_over_kernel": round(b["wall_s"] / kernel, 3) if kernel else None})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--workdir", required=True, help="Snakemake's working directory (its results/ go here)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--masks-per-job", type=int, default=32)
    ap.add_argument("--cluster-setup", action="store_true", help="bring up tests/slurm's single-node cluster (root)")
    ap.add_argument("--jobs", type=int, default=4)
    a = ap.parse_args(argv)
    work, out = Path(a.workdir).resolve(), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    if a.cluster_setup:
        subprocess.run(["bash", str(SLURM / "slurm-up.sh")], check=True, env={**os.environ, "SLURM_FAKE_GPUS": "1"})
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    cmd = snakemake("--directory", work, "--configfile", Path(a.config).resolve(), "--config", f"masks_per_job={a.masks_per_job}",
                    "--profile", REPO / "profiles" / "slurm", "--default-resources", "slurm_partition=debug",
                    "slurm_account=ci", "runtime=30", "mem_mb=1500", "--slurm-init-seconds-before-status-checks", "2",
                    "--jobs", a.jobs, "--latency-wait", "5", "--until", "select_mixture")
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=workflow_env())
        elapsed = sacct_elapsed(since) if r.returncode == 0 else {}
    finally:
        if a.cluster_setup:
            subprocess.run(["bash", str(SLURM / "slurm-down.sh")], capture_output=True)
    wall = time.time() - t0
    if r.returncode != 0:
        print((r.stdout + r.stderr)[-4000:], file=sys.stderr)
        return 1
    run_dir = work / config.Plan(config.load(a.config)).run_dir
    table = bundle_table(run_dir, elapsed)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bundles.csv", index=False)
    (out / "run.json").write_text(json.dumps({
        "command": " ".join(["python", "bench/slurm_bundle.py", *(argv if argv is not None else sys.argv[1:])]),
        "commit": commit(), "wall_s_workflow": round(wall, 1),
        "machine": machine(), "started": since}, indent=2) + "\n")
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
