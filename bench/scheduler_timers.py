"""Snakemake's scheduler wake-up timers: stock Snakemake 9 against merge2mix.runtime.one_wake_up_timer.

    python bench/scheduler_timers.py toy --jobs 100 400            # toy workflows, side by side
    python bench/scheduler_timers.py phase --config bench/configs/n8-apple.yaml --workdir bench/_work/n8 \\
        --baseline-rev b995749 --pairs 2                               # the merge_eval phase, N = 8

Stock Snakemake 9 starts a 1-s wake-up timer at every scheduling pass, and each timer runs another
pass when it fires: after k finished jobs k timers fire each second, and each pass resets every
ready job's params and resources. That is CPU taken from the jobs in the same process.

toy: M `run:` jobs in Snakemake's process (--force-use-threads), one at a time, each a sleep of
--job-s seconds, so the process's CPU is Snakemake's own; stock and patched alternate (the toy's
Snakefile applies the patch or not). phase: the masks of a work folder rescored (`--until
select_mixture`, results deleted first) with this checkout's workflow and with --baseline-rev's (a
`git archive` of it), alternating; the fine-tunes are built first if missing (not timed).
Per run, from /proc every 0.2 s and the process's rusage: wall, the process's CPU-seconds, its main
thread's, the most threads alive at once, voluntary and involuntary context switches. Prints
stock ÷ patched; writes <out> (JSON with commit and machine).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import REPO, commit, export_rev, machine, workflow_env

TOY = """import os, sys, time
sys.path.insert(0, os.environ["M2M_WORKFLOW"])
if os.environ["ONE_TIMER"] == "1":
    from merge2mix.runtime import one_wake_up_timer
    one_wake_up_timer()
rule all:
    input: expand("out/{i}.txt", i=range(int(os.environ["JOBS"])))
rule job:
    output: "out/{i}.txt"
    threads: 2
    run:
        time.sleep(float(os.environ["JOB_S"]))
        open(output[0], "w").close()
"""


def _ticks(path: str) -> float:
    """utime + stime of a /proc stat file, in seconds."""
    st = open(path).read()
    f = st[st.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], cwd, env: dict) -> dict:
    """Run `cmd`, sampling its process; its figures (the process must succeed)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:  # a pipe would fill up and stall Snakemake
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        main_s, threads = 0.0, 0
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)  # rusage of this process alone
            if pid:
                break
            try:
                main_s = _ticks(f"/proc/{p.pid}/task/{p.pid}/stat")
                line = [x for x in open(f"/proc/{p.pid}/status") if x.startswith("Threads:")][0]
                threads = max(threads, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen, or it waits again
        if p.returncode:
            log.seek(0)
            sys.exit(f"scheduler_timers: {' '.join(cmd[:4])} ... failed:\n{log.read()[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(ru.ru_utime + ru.ru_stime, 2), "main_thread_cpu_s": round(main_s, 2),
            "max_threads": threads, "voluntary_switches": ru.ru_nvcsw, "involuntary_switches": ru.ru_nivcsw}


RATIOS = ("wall_s", "cpu_s", "main_thread_cpu_s", "max_threads", "involuntary_switches")


def ratios(stock: dict, patched: dict, keys=RATIOS) -> dict:
    return {f"{k}_stock_over_patched": round(stock[k] / max(patched[k], 1e-9), 2) for k in keys}


def toy(jobs: list[int], job_s: float, work: Path) -> list[dict]:
    (work / "Snakefile").write_text(TOY)
    rows = []
    for m in jobs:
        runs = {}
        for label in ("stock", "patched") if m % 2 else ("patched", "stock"):  # alternate who goes first
            for d in ("out", ".snakemake"):
                shutil.rmtree(work / d, ignore_errors=True)
            env = {**os.environ, "M2M_WORKFLOW": str(REPO / "workflow"), "ONE_TIMER": str(int(label == "patched")),
                   "JOBS": str(m), "JOB_S": str(job_s)}
            runs[label] = measure([sys.executable, "-m", "snakemake", "--cores", "2", "--force-use-threads", "-q"], work, env)
        row = {"jobs": m, "job_s": job_s, "stock": runs["stock"], "patched": runs["patched"], **ratios(runs["stock"], runs["patched"])}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def phase(config: Path, workdir: Path, baseline_rev: str, pairs: int) -> list[dict]:
    workdir = workdir.resolve()  # the runs start in it: every path below must be absolute
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / f"baseline-{baseline_rev}"
    if not base.exists():
        export_rev(baseline_rev, base)
    import yaml

    cfg = yaml.safe_load(config.read_text())
    scores = workdir / cfg.get("results_dir", "results") / cfg["run"] / "merge_eval"  # an absolute results_dir wins

    def cmd(repo: Path) -> list[str]:
        return [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--cores", "2",
                "--configfile", str(config.resolve()), "--rerun-triggers", "mtime", "--until", "select_mixture"]

    env = workflow_env()
    print("[bench] fine-tunes and a first pass (not timed) ...", flush=True)
    measure(cmd(REPO), workdir, env)
    rows = []
    for i in range(pairs):
        runs = {}
        for label in ("stock", "patched") if i % 2 == 0 else ("patched", "stock"):
            for f in glob.glob(str(scores / "*.json")):
                os.remove(f)
            repo = base if label == "stock" else REPO
            runs[label] = measure(cmd(repo), workdir, {**env, "PYTHONPATH": str(repo / "workflow")})
            scored = [json.loads(Path(f).read_text()) for f in glob.glob(str(scores / "*.json"))]
            runs[label] |= {"masks": len(scored), "jobs_forward_s": round(sum(r["eval_s"] for r in scored), 3),
                            "jobs_merge_s": round(sum(r["merge_s"] for r in scored), 3)}
        row = {"pair": i, "order": list(runs), "stock": runs["stock"], "patched": runs["patched"],
               **ratios(runs["stock"], runs["patched"], (*RATIOS, "jobs_forward_s"))}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("toy", help="toy workflows of sleeping jobs")
    t.add_argument("--jobs", type=int, nargs="+", default=[100, 400])
    t.add_argument("--job-s", type=float, default=0.1)
    p = sub.add_parser("phase", help="the merge_eval phase of a work folder, this checkout against a baseline")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--baseline-rev", required=True, help="a commit without the patch (e.g. b995749)")
    p.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="JSON to write (default bench/results/scheduler-timers/<mode>.json)")
    a = ap.parse_args(argv)
    started = time.time()
    if a.mode == "toy":
        with tempfile.TemporaryDirectory() as tmp:
            rows = toy(a.jobs, a.job_s, Path(tmp))
    else:
        rows = phase(a.config, a.workdir, a.baseline_rev, a.pairs)
    out = a.out or REPO / "bench" / "results" / "scheduler-timers" / f"{a.mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(["python", "bench/scheduler_timers.py", *(argv or sys.argv[1:])]), "commit": commit(),
              "machine": machine(python=sys.version.split()[0]), "wall_s": round(time.time() - started, 1), "runs": rows}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
