"""Concurrent jobs on a multi-GPU workstation each get their own CUDA_VISIBLE_DEVICES (fake counts)."""

import os
import subprocess
import sys
import time

from conftest import REPO

CHILD = """
import os, sys, time
sys.path.insert(0, {workflow!r})
from merge2mix import runtime
slot = runtime.claim_gpu(poll_s=0.05)
print(slot, os.environ.get("CUDA_VISIBLE_DEVICES"), time.time(), flush=True)
time.sleep(float(sys.argv[1]))
"""


def spawn(tmp_path, hold, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    e.update({"MERGE2MIX_GPU_LOCKS": str(tmp_path), **env})
    return subprocess.Popen([sys.executable, "-c", CHILD.format(workflow=str(REPO / "workflow")), str(hold)],
                            stdout=subprocess.PIPE, text=True, env=e)


def test_jobs_get_distinct_gpus_and_wait_for_a_free_one(tmp_path):
    t0 = time.time()
    procs = [spawn(tmp_path, 1.5, MERGE2MIX_FAKE_GPUS="2") for _ in range(2)]
    time.sleep(0.5)
    third = spawn(tmp_path, 0, MERGE2MIX_FAKE_GPUS="2")
    outs = [p.communicate(timeout=60)[0].split() for p in [*procs, third]]
    assert sorted(o[0] for o in outs[:2]) == ["0", "1"]
    assert all(o[0] == o[1] for o in outs)  # CUDA_VISIBLE_DEVICES = the slot
    assert float(outs[2][2]) - t0 >= 1.4  # the third waited until a slot was released


def test_no_claim_with_one_gpu_or_when_the_device_is_set(tmp_path):
    one = spawn(tmp_path, 0, MERGE2MIX_FAKE_GPUS="1").communicate(timeout=60)[0].split()
    assert one[:2] == ["None", "None"]
    preset = spawn(tmp_path, 0, MERGE2MIX_FAKE_GPUS="4", CUDA_VISIBLE_DEVICES="3").communicate(timeout=60)[0].split()
    assert preset[:2] == ["None", "3"]
    slurm = spawn(tmp_path, 0, MERGE2MIX_FAKE_GPUS="4", SLURM_JOB_ID="7").communicate(timeout=60)[0].split()
    assert slurm[:2] == ["None", "None"]
