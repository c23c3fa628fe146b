#!/bin/bash
# usage: REPO=<checkout that ran bench/merge_eval.py> phase.sh <repo whose workflow to time>
# Times the merge_eval phase (all masks + select_mixture) in the bench's work folder and sums the
# jobs' own merge_s / eval_s from their result files. /tmp/stubbin holds a failing scontrol stub.
R=$1; cd "$REPO/bench/_work/merge_eval" && rm -f results/default/merge_eval/*.json
s=$(date +%s.%N)
PATH=/tmp/stubbin:$PATH PYTHONPATH=$R/workflow "$REPO/.venv/bin/python" -m snakemake --snakefile "$R/Snakefile" --cores 2 \
  --configfile config.yaml --rerun-triggers mtime --until select_mixture > "/tmp/phase_$(basename "$R").log" 2>&1
e=$(date +%s.%N)
python3 - "$R" "$s" "$e" <<'PY'
import json, glob, sys
rs = [json.load(open(f)) for f in glob.glob("results/default/merge_eval/*.json")]
w = float(sys.argv[3]) - float(sys.argv[2])
print(sys.argv[1], "phase %.1f" % w, "n", len(rs), "eval %.1f merge %.1f wall_s %.1f" % tuple(sum(r[k] for r in rs) for k in ("eval_s", "merge_s", "wall_s")))
PY
