"""Mutation testing of the modules whose answers users trust (`make mutate`).

Plants small bugs (mutmut: operators, constants, dropped arguments...) in masks, select, evaluate,
store, merge, engine and resume, one at a time, and runs the fast unit tests against each: a mutant
the tests do not notice "survives". mutmut names modules by their path under src/, so the run happens
in a scratch tree (build/mutation/) holding the package as src/merge2mix next to a copy of tests/
(and of bench/'s scripts, whose helpers the tests' conftest imports).

Writes bench/results/mutation/: summary.json (per module: killed, survived, ...; the score is
killed / (killed + survived + timeouts)), and report.md with every survivor, its diff and the reason
it is harmless, from the first rule of bench/mutation/survivors.yaml that matches it (a survivor no
rule explains is flagged: either write a test that kills it or say why it cannot matter).

    python bench/mutation.py [--children 2] [--keep]   # --keep: resume an interrupted run
    python bench/mutation.py --keep --retest-survivors  # after adding tests: test the survivors again
    python bench/mutation.py --report-only              # rewrite the report (e.g. after editing survivors.yaml)
    python bench/mutation.py --only masks --scratch /tmp/m --out /tmp/m/out   # one module, its own tests (smoke)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SCRATCH = REPO / "build" / "mutation"
OUT = REPO / "bench" / "results" / "mutation"
REASONS = REPO / "bench" / "mutation" / "survivors.yaml"
MUTMUT = [sys.executable, "-m", "mutmut"]


def prepare(keep: bool, only: str | None = None) -> None:
    """The scratch tree; `only`: mutate that one module against its own test file (a smoke run)."""
    if not keep:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    (SCRATCH / "src").mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "workflow" / "merge2mix", SCRATCH / "src" / "merge2mix", dirs_exist_ok=True, ignore=ignore)
    shutil.copytree(REPO / "tests", SCRATCH / "tests", dirs_exist_ok=True, ignore=ignore)
    (SCRATCH / "bench").mkdir(exist_ok=True)
    for f in (REPO / "bench").glob("*.py"):  # conftest imports bench helpers (provenance, pools)
        shutil.copy2(f, SCRATCH / "bench" / f.name)
    toml = (REPO / "bench" / "mutation" / "mutmut.toml").read_text()
    if only:
        toml = re.sub(r"only_mutate = \[.*?\n\]", f'only_mutate = ["src/merge2mix/{only}.py"]', toml, flags=re.S)
        toml = re.sub(r"pytest_add_cli_args_test_selection = \[.*?\n\]",
                      f'pytest_add_cli_args_test_selection = ["tests/test_{only}.py"]', toml, flags=re.S)
    (SCRATCH / "pyproject.toml").write_text(toml)


def statuses() -> dict[str, str]:
    """mutant name -> killed / survived / timeout / no tests / ..., from `mutmut results --all true`."""
    out = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=SCRATCH, capture_output=True, text=True, check=True)
    return dict(m.groups() for m in re.finditer(r"^\s+(\S+): (.+)$", out.stdout, re.M))


def module_of(name: str) -> str:
    return name.split(".x_")[0].split(".xǁ")[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=os.cpu_count() or 2, help="mutants tested in parallel")
    ap.add_argument("--keep", action="store_true", help="keep build/mutation and resume where mutmut stopped")
    ap.add_argument("--retest-survivors", action="store_true",
                    help="with --keep: run the survivors of the last run again (new tests may kill them)")
    ap.add_argument("--report-only", action="store_true", help="write the report from build/mutation's results, run nothing")
    ap.add_argument("--only", metavar="MODULE", help="mutate workflow/merge2mix/MODULE.py against tests/test_MODULE.py only "
                    "(a smoke run; with --scratch and --out elsewhere, the committed results stay)")
    ap.add_argument("--scratch", type=Path, default=None, help="scratch tree (default build/mutation)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results/mutation)")
    args = ap.parse_args(argv)
    global SCRATCH, OUT
    SCRATCH = args.scratch or REPO / "build" / "mutation"
    OUT = args.out or REPO / "bench" / "results" / "mutation"

    t0 = time.time()
    run = subprocess.CompletedProcess([], 0)
    if not args.report_only:
        prepare(args.keep, args.only)
        names = [n for n, s in statuses().items() if s == "survived"] if args.retest_survivors else []
        run = subprocess.run([*MUTMUT, "run", "--max-children", str(args.children), *names], cwd=SCRATCH,
                             env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    wall = time.time() - t0
    st = statuses()
    if not st:
        print("mutation: mutmut produced no results (see its output above)", file=sys.stderr)
        return run.returncode or 1

    per_module: dict[str, Counter] = {}
    for name, status in st.items():
        per_module.setdefault(module_of(name), Counter())[status] += 1
    rules = (yaml.safe_load(REASONS.read_text()) or []) if REASONS.exists() else []

    def reason_for(name: str, diff: str) -> str | None:
        for r in rules:
            if re.search(r["name"], name) and re.search(r.get("diff", ""), diff):
                return r["reason"]
        return None

    def score(c: Counter) -> float:
        tested = c["killed"] + c["survived"] + c["timeout"]
        return (c["killed"] + c["timeout"]) / tested if tested else float("nan")

    total = sum(per_module.values(), Counter())
    summary = {"modules": {m: dict(c) | {"score": round(score(c), 4)} for m, c in sorted(per_module.items())},
               "total": dict(total) | {"score": round(score(total), 4)}, "wall_s": round(wall, 1),
               "tests": "the fast unit tests in bench/mutation/mutmut.toml", "mutmut_children": args.children,
               "score_definition": "(killed + timeout) / (killed + survived + timeout); 'no tests' mutants are listed apart"}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    survivors = sorted(n for n, s in st.items() if s not in ("killed", "timeout", "not checked"))
    lines = ["# Mutation testing: survivors and why each is harmless", "",
             f"Command: `make mutate` (bench/mutation.py, {args.children} workers; this invocation {wall / 60:.1f} min). "
             "Score = (killed + timeout) / (killed + survived + timeout).", "",
             "| module | killed | survived | timeout | no tests | score |", "|---|---|---|---|---|---|"]
    for m, c in sorted(per_module.items()):
        lines.append(f"| {m} | {c['killed']} | {c['survived']} | {c['timeout']} | {c['no tests']} | {score(c):.1%} |")
    lines.append(f"| **all** | {total['killed']} | {total['survived']} | {total['timeout']} | {total['no tests']} | "
                 f"**{score(total):.1%}** |")
    lines += ["", "## Survivors", ""]
    missing = []
    for n in survivors:
        diff = subprocess.run([*MUTMUT, "show", n], cwd=SCRATCH, capture_output=True, text=True).stdout.strip()
        diff = "\n".join(l for l in diff.splitlines() if l.startswith(("+", "-")) and not l.startswith(("+++", "---")))
        reason = reason_for(n, diff)
        if not reason:
            missing.append(n)
        lines += [f"### `{n}` ({st[n]})", "", "```diff", diff, "```", "", reason or "**NO REASON GIVEN**", ""]
    (OUT / "report.md").write_text("\n".join(lines))
    print(f"mutation: {total['killed']} killed, {total['survived']} survived, {total['timeout']} timeouts, "
          f"{total['no tests']} without tests; score {score(total):.1%}; report in {OUT}/report.md")
    if missing:
        print(f"mutation: {len(missing)} survivor(s) without a reason in {REASONS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
