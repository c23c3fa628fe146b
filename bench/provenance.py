"""Where a bench result came from, and how bench scripts start the workflow.

Every committed figure carries the commit and machine that produced it (a run.json or fields in a
JSON); every script that runs the workflow starts the repo's Snakefile with the package importable.
Not a benchmark: the scripts beside it import it (`python bench/<script>.py` puts bench/ on the path).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def commit() -> str:
    """The checkout's HEAD ('' outside a git checkout)."""
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def machine(**extra) -> dict:
    """The platform, processor and CPU count, plus what the script adds (threads used, Python version...)."""
    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(), **extra}


def snakemake(*args) -> list[str]:
    """The command line that runs the repo's Snakefile (from any working directory) with `args`."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *map(str, args)]


def workflow_env() -> dict:
    """The environment for that command: this one, with the package (workflow/) importable."""
    return {**os.environ, "PYTHONPATH": str(REPO / "workflow")}


def with_stub_scontrol(env: dict) -> dict:
    """`env` with a failing `scontrol` first on PATH. Snakemake imports every installed executor plugin
    at start, and the SLURM plugin runs `scontrol show config` for its --help text: ~10 s whenever
    Slurm's client is installed but no controller answers. The stub makes that fail at once, as on a
    box without the client (the benches' --stub-scontrol, the test suite's workflow runs)."""
    d = Path(tempfile.mkdtemp(prefix="merge2mix-stub-"))
    (d / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (d / "scontrol").chmod(0o755)
    return {**env, "PATH": f"{d}{os.pathsep}{env.get('PATH', '')}"}


def export_rev(rev: str, dest: Path) -> Path:
    """The files of revision `rev` of this repo, unpacked into `dest` (created; `git archive`, no .git):
    an older workflow to time side by side with the checkout's."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest
