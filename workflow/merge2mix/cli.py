"""`merge2mix` command line: check a config, show a finished run. The workflow itself is `snakemake`.

    merge2mix check [CONFIG]     validate a config (same checks as the workflow, one line per error)
    merge2mix show  [CONFIG]     print the selected mixture and where the results are
    merge2mix run-dir [CONFIG]   print the config's results folder (results/<run>)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import config as config_mod
from .errors import Merge2MixError


def _check(args) -> int:
    cfg = config_mod.load(args.config)
    plan = config_mod.Plan(cfg)
    config_mod.model_source(cfg)
    print(f"{args.config}: ok — target {plan.target}, {len(plan.candidates)} candidates, "
          f"{len(plan.masks)} masks, results in {plan.run_dir}/")
    return 0


def _show(args) -> int:
    plan = config_mod.Plan(config_mod.load(args.config))
    run = Path(plan.run_dir)
    summary = run / "summary.json"
    if not summary.is_file():
        print(f"merge2mix: error: {summary}: not there yet (run `snakemake --cores all` first)", file=sys.stderr)
        return 1
    s = json.loads(summary.read_text())
    print(f"target:            {s['target']}")
    print(f"selected mixture:  {' + '.join(s['selected_mixture'])}  (mask {s['selected_bitstring']} over "
          f"{', '.join(s['candidates'])}; best of {s['masks_scored']} merged models on target val)")
    for name, m in s["test"].items():
        print(f"test accuracy:     {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  ({name})")
    methods = run / "methods.csv"
    if methods.is_file():
        import pandas as pd

        m = pd.read_csv(methods).set_index("method")
        others = [f"{k} {m.loc[k, 'accuracy']:.4f}" for k in ("all_data", "similarity_topk", "random", "oracle") if k in m.index]
        print(f"baselines (test):  {', '.join(others)}")
    report = run / "report.html"
    print(f"results:           {run}/  (masks.csv, best_mask.json, summary.md, methods.csv"
          f"{', report.html' if report.is_file() else ''})")
    return 0


def _run_dir(args) -> int:
    print(config_mod.Plan(config_mod.load(args.config)).run_dir)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="merge2mix", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn, help_ in [("check", _check, "validate a config file"),
                            ("show", _show, "print the selected mixture of a finished run"),
                            ("run-dir", _run_dir, "print the results folder of a config")]:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("config", nargs="?", default="config.yaml", help="config file (default: config.yaml)")
        sp.set_defaults(fn=fn)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except Merge2MixError as e:
        print(f"merge2mix: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
