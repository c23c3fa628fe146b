"""The tiny workflow submitted to a real single-node Slurm cluster through profiles/slurm.

Brings the cluster up with tests/slurm/slurm-up.sh (installs Debian's Slurm packages when missing;
needs root), runs the workflow with --executor slurm, checks outputs and sacct, tears the daemons
down by PID. Where Slurm cannot be installed or run: skipped with the reason, except in CI
(CI=true), where that is a failure.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO, tiny_config, write_config

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
SLURM = REPO / "tests" / "slurm"


def unavailable(reason: str):
    """In CI (CI=true) the real-Slurm claims must be checked, so a Slurm that cannot be brought up
    fails the test with the reason; elsewhere (a laptop without root) it is a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the Slurm test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster():
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("apt-get") and not shutil.which("slurmctld"):
        unavailable("Slurm test needs Linux, root and apt-get (or Slurm already installed)")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        unavailable("pip install snakemake-executor-plugin-slurm (Python >= 3.11)")
    up = subprocess.run(["bash", str(SLURM / "slurm-up.sh")], capture_output=True, text=True, timeout=600,
                        env={**os.environ, "SLURM_FAKE_GPUS": "1"})
    if up.returncode == 3:
        unavailable(f"Slurm cannot be set up here: {up.stderr.strip()}")
    assert up.returncode == 0, up.stdout + up.stderr
    yield
    subprocess.run(["bash", str(SLURM / "slurm-down.sh")], capture_output=True, timeout=120)


def test_tiny_workflow_on_slurm(cluster, tiny_model, tmp_path):
    """A failed run is reported and resumes through the profile; a failed job is retried; outputs,
    sacct states, the GPU requests and the bundling of mask jobs are as the profile says."""
    cfg = tiny_config(tiny_model, tmp_path / "results", baselines={"similarity": False, "random_seeds": 0},
                      threads={"finetune": 1, "merge_eval": 1, "evaluate": 1})
    cfg_path = write_config(cfg, tmp_path / "tiny.yaml")
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    cmd = ["timeout", "-k", "10", "1200", sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(tmp_path), "--configfile", str(cfg_path), "--profile", str(REPO / "profiles" / "slurm"),
           "--default-resources", "slurm_partition=debug", "slurm_account=ci", "runtime=30", "mem_mb=1500",
           "--slurm-init-seconds-before-status-checks", "2", "--jobs", "4", "--latency-wait", "5"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow"), "MERGE2MIX_FAILPOINTS": "finetune.start=fail-once"}
    run = tmp_path / "results" / "tiny"
    # 1. No retries: the first fine-tune to start fails (a failpoint); Snakemake reports it, lets the
    #    running jobs finish and stops.
    (tmp_path / "fp1").mkdir(), (tmp_path / "fp2").mkdir()
    r = subprocess.run(cmd + ["--retries", "0", "--until", "finetune"], capture_output=True, text=True,
                       env={**env, "MERGE2MIX_FAILPOINT_DIR": str(tmp_path / "fp1")})
    assert r.returncode != 0 and "Error in rule finetune" in r.stdout + r.stderr, (r.stdout + r.stderr)[-5000:]
    done = {p: p.stat().st_mtime_ns for p in run.glob("finetune/*/model.safetensors")}
    assert 1 <= len(done) < 3, done
    # 2. Resume through the profile (rerun-incomplete, retries: 2). The failpoint fires once more, so
    #    the resubmitted fine-tune fails again and the profile's retry completes it.
    #    Up to the summary: the baselines' jobs (methods.csv) would only add more of the same submissions.
    r = subprocess.run(cmd + ["--until", "evaluate"], capture_output=True, text=True,
                       env={**env, "MERGE2MIX_FAILPOINT_DIR": str(tmp_path / "fp2")})
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    assert "Error in rule finetune" in r.stdout + r.stderr  # reported, then retried
    assert {p: p.stat().st_mtime_ns for p in done} == done  # finished fine-tunes were not redone
    for f in ("masks.csv", "best_mask.json", "summary.json", "deploy/model.safetensors"):
        assert (run / f).is_file(), f
    assert len(list((run / "merge_eval").glob("*.json"))) == 7
    assert json.loads((run / "best_mask.json").read_text())["masks_scored"] == 7

    acct = subprocess.run(["sacct", "-X", "-n", "--parsable2", "-S", since, "-o", "JobID,State,ReqTRES,Comment"],
                          capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in acct.splitlines() if line]
    by_rule: dict[str, list] = {}
    for job_id, state, tres, comment in rows:
        by_rule.setdefault(comment.removeprefix("rule_").split("_wildcards")[0], []).append((state, tres, comment))
    finetunes = {c: sorted(st for st, _, c2 in by_rule["finetune"] if c2 == c) for _, _, c in by_rule["finetune"]}
    kept = {f"rule_finetune_wildcards_{p.parent.name}" for p in done}
    assert len(finetunes) == 3 and all(finetunes[c] == ["COMPLETED"] for c in kept), finetunes  # submitted once
    # one failure in run 1, one in run 2 (then the retry), and every fine-tune completed in the end
    assert sum(states.count("FAILED") for states in finetunes.values()) == 2, finetunes
    assert all("COMPLETED" in states for states in finetunes.values()), finetunes
    # profiles/slurm scores masks in bundles (masks_per_job 32): the 7 masks are one Slurm job asking for
    # one GPU, and one process scored all of them (its log); each mask's own merge_eval job only copied
    # its record, on the submit host (never a Slurm job).
    merges = by_rule.get("merge_bundle", [])
    assert len(merges) == 1 and merges[0][0] == "COMPLETED" and "merge_eval" not in by_rule, by_rule
    assert all("gres/gpu=1" in tres for _, tres, _ in by_rule["finetune"] + merges), by_rule  # GPU rules asked for one
    bundle = json.loads((run / "merge_bundles" / "b0.json").read_text())
    pids = re.findall(r"process (\d+), its mask #(\d+)", (run / "logs" / "merge_bundle" / "b0.log").read_text())
    assert sorted(bundle["masks"]) == sorted(p.stem for p in (run / "merge_eval").glob("*.json"))
    assert {p for p, _ in pids} == {str(bundle["process"])} and sorted(int(k) for _, k in pids) == list(range(1, 8)), pids
    # bench/slurm_bundle.py's table of this run: the bundle's Slurm time against its masks' work
    sys.path.insert(0, str(REPO / "bench"))
    import slurm_bundle

    table = slurm_bundle.bundle_table(run, slurm_bundle.sacct_elapsed(since))
    assert table[["bundle", "masks", "scored"]].values.tolist() == [["b0", 7, 7]], table
    assert table["slurm_elapsed_s"].iloc[0] > 0 and table["slurm_over_kernel"].iloc[0] >= table["process_over_kernel"].iloc[0] >= 1
