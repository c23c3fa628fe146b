"""Where the time of one workflow run goes, by rule: start-up against work (issue 17, item 1).

    python bench/run_breakdown.py .snakemake/log/<timestamp>.snakemake.log [--cores 2] [--setup-s 70]

Reads Snakemake's own log of the run (each job's start and "Finished jobid" lines, its threads and
its log file) and each job's log (merge2mix writes a timestamped line when the work starts and when
it ends). Per job: start-up = first line of its log - the job's start (a fresh Python process,
imports, reading inputs before the first log line), work = last line - first line, tail = the job's
end - the last line. Per rule: jobs, seconds and CPU-seconds (seconds x threads). The floor is the
work alone, perfectly packed on the cores: set-up + sum(work x threads) / cores — no run of the same
jobs on these cores can be faster than that without doing less work. Timestamps are whole seconds,
so per-job figures carry +-1 s; sums over many jobs are what to read.

Writes <out>/by_rule.csv, <out>/jobs.csv and <out>/summary.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
LOG_TIME = re.compile(r"^(\d\d:\d\d:\d\d) ")


def parse_main_log(text: str) -> list[dict]:
    """Jobs of one Snakemake log: rule, jobid, start, end, threads, log file."""
    jobs: dict[int, dict] = {}
    now = None
    current = None
    for line in text.splitlines():
        if m := STAMP.match(line.strip()):
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            current = None
        elif m := re.match(r"^(?:local)?(?:checkpoint|rule) (\w+):$", line.strip()):
            current = {"rule": m.group(1), "start": now, "threads": 1, "log": None}
        elif current is not None and (m := re.match(r"^\s+jobid: (\d+)$", line)):
            jobs[int(m.group(1))] = current
        elif current is not None and (m := re.match(r"^\s+threads: (\d+)$", line)):
            current["threads"] = int(m.group(1))
        elif current is not None and (m := re.match(r"^\s+log: (\S+?),?$", line)):
            current["log"] = m.group(1)
        elif m := re.match(r"^Finished jobid: (\d+)", line.strip()):
            if int(m.group(1)) in jobs:
                jobs[int(m.group(1))]["end"] = now
    return [{"jobid": k, **v} for k, v in jobs.items() if "end" in v]


def work_span(log: Path, start: datetime) -> tuple[datetime, datetime] | None:
    """First and last timestamped line of a job's log, dated from the job's start (midnight-safe)."""
    if not log.is_file():
        return None
    times = []
    for line in log.read_text(errors="replace").splitlines():
        if m := LOG_TIME.match(line):
            t = datetime.combine(start.date(), datetime.strptime(m.group(1), "%H:%M:%S").time())
            times.append(t + timedelta(days=1) if t < start - timedelta(hours=12) else t)
    return (times[0], times[-1]) if times else None  # one line: (t, t), no split


def breakdown(main_log: Path, workdir: Path, cores: int, setup_s: float) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rows = []
    for j in parse_main_log(main_log.read_text(errors="replace")):
        total = (j["end"] - j["start"]).total_seconds()
        span = work_span(workdir / j["log"], j["start"]) if j["log"] else None
        if span and span[1] > span[0]:
            startup = max(0.0, (span[0] - j["start"]).total_seconds())
            work = (span[1] - span[0]).total_seconds()
        else:  # fewer than two timestamped lines (a mask's one result line, the target rule): not split, all work
            startup, work = 0.0, total
        rows.append({"rule": j["rule"], "jobid": j["jobid"], "threads": j["threads"], "start": j["start"], "end": j["end"],
                     "seconds": total, "startup_s": min(startup, total), "work_s": min(work, total),
                     "split_known": bool(span and span[1] > span[0])})
    jobs = pd.DataFrame(rows).sort_values("start")
    jobs["cpu_s"] = jobs["seconds"] * jobs["threads"]
    jobs["work_cpu_s"] = jobs["work_s"] * jobs["threads"]
    by_rule = jobs.groupby("rule").agg(jobs=("jobid", "size"), seconds=("seconds", "sum"), startup_s=("startup_s", "sum"),
                                       work_s=("work_s", "sum"), cpu_s=("cpu_s", "sum"), work_cpu_s=("work_cpu_s", "sum"))
    by_rule = by_rule.sort_values("cpu_s", ascending=False).reset_index()
    wall = (jobs["end"].max() - jobs["start"].min()).total_seconds()
    floor = setup_s + jobs["work_cpu_s"].sum() / cores
    summary = {"workflow_wall_s": wall, "setup_s": setup_s, "wall_with_setup_s": wall + setup_s, "cores": cores,
               "jobs": len(jobs), "startup_s_total": float(jobs["startup_s"].sum()),
               "work_cpu_s_total": float(jobs["work_cpu_s"].sum()), "cpu_s_total": float(jobs["cpu_s"].sum()),
               "core_utilisation": float(jobs["cpu_s"].sum() / (wall * cores)) if wall else None,
               "floor_s": floor, "wall_over_floor": (wall + setup_s) / floor if floor else None}
    return by_rule, jobs, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="Snakemake's log of the run (.snakemake/log/*.snakemake.log)")
    ap.add_argument("--workdir", default=".", help="where the run's job logs are relative to (Snakemake's --directory)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--setup-s", type=float, default=0.0, help="set-up before the workflow (make run: the venv)")
    ap.add_argument("--out", default="bench/results/run-breakdown")
    a = ap.parse_args(argv)
    by_rule, jobs, summary = breakdown(Path(a.log), Path(a.workdir), a.cores, a.setup_s)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    by_rule.to_csv(out / "by_rule.csv", index=False)
    jobs.to_csv(out / "jobs.csv", index=False)
    (out / "summary.json").write_text(json.dumps({"command": "python bench/run_breakdown.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), **summary}, indent=2) + "\n")
    with pd.option_context("display.width", 160, "display.precision", 1):
        print(by_rule.to_string(index=False))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
