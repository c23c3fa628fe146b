"""`merge2mix` command line: check a config, show a finished run. The workflow itself is `snakemake`.

    merge2mix check [CONFIG]     validate a config and read every dataset and the model's files (the
                                 workflow's own checks, one line per problem; nothing is written)
    merge2mix show  [CONFIG]     print the selected mixture and where the results are
    merge2mix run-dir [CONFIG]   print the config's results folder (results/<run>)
    merge2mix export-demo DIR [--config CONFIG]
                                 write the embedded datasets as CSV files and a config that reads them
    merge2mix leave-one-out CONFIG [--cores N] [--dry-run] [-- SNAKEMAKE ARGS]
                                 every dataset in turn as the target (the others its candidates):
                                 one workflow run each, then one table target x method and the
                                 pooled merged-vs-fine-tuned correlation (merge2mix.loo)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import assets
from . import config as config_mod
from .errors import Merge2MixError
from .summary import chosen_by, versus


def _check(args) -> int:
    from .check import check_inputs, summary_lines

    cfg = config_mod.load(args.config)
    plan = config_mod.Plan(cfg)
    source = assets.model_source(cfg)
    result = check_inputs(cfg, source)  # every dataset and the model's files, as the workflow's first job reads them
    for line in summary_lines(result):
        print(line)
    for w in result["warnings"]:
        print(f"merge2mix: warning: {w}", file=sys.stderr)
    for p in result["problems"]:
        print(f"merge2mix: error: {p}", file=sys.stderr)
    if result["problems"]:
        print(f"{args.config}: {len(result['problems'])} problem(s); nothing was computed", file=sys.stderr)
        return 1
    print(f"{args.config}: ok — target {plan.target}, {len(plan.candidates)} candidates, "
          f"{len(plan.masks)} masks, results in {plan.run_dir}/")
    return 0


def _show(args) -> int:
    from .select import operator_of

    cfg = config_mod.load(args.config)
    plan = config_mod.Plan(cfg)
    run = Path(plan.run_dir)
    summary = run / "summary.json"
    if not summary.is_file():
        print(f"merge2mix: error: {summary}: not there yet (run `snakemake --cores all` first)", file=sys.stderr)
        return 1
    s = json.loads(summary.read_text())
    print(f"target:            {s['target']}")
    print(f"selected mixture:  {' + '.join(s['selected_mixture'])}  (mask {s['selected_bitstring']} over "
          f"{', '.join(s['candidates'])}; best of {s['masks_scored']} merged models by target {chosen_by(s)})")
    best = run / "best_mask.json"
    if best.is_file():
        b = json.loads(best.read_text())
        op = operator_of(b)
        params = ", ".join(f"{k} {v}" for k, v in op["params"].items())
        print(f"surrogate:         {op['method']}{f' ({params})' if params else ''} merge of the per-dataset fine-tunes, "
              f"masks ranked by target val {b.get('metric', 'accuracy').replace('_', ' ')}")
        print(f"                   {cfg['surrogate']['note']}")
        if b.get("calibration"):
            c = b["calibration"]
            print(f"size calibration:  predicted fine-tuned {b['metric']} = {c['a']:.3f} + {c['b']:.3f} * merged + "
                  f"{c['c']:.3f} * (k - 1), fitted on {c['n_anchors']} mixture fine-tunes (rmse {c['rmse']:.3f}); "
                  f"the pick's prediction {b['calibrated']:.4f}")
    trust = run / "trust.json"
    if trust.is_file():
        from .trust import line

        print(f"trust:             {line(json.loads(trust.read_text()))}")
    for name, m in s["test"].items():
        print(f"test accuracy:     {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  ({name})")
    mixture = run / "mixture.json"
    if mixture.is_file():
        x = json.loads(mixture.read_text())
        w = ", ".join(f"{n} {v:.2f}" for n, v in sorted(x["weights"].items(), key=lambda kv: -kv[1]))
        t = x["test"]["weighted_deployed"]
        print(f"mixture weights:   {w}  (best of {x['vectors_scored']} weight vectors on target val; the best mask: "
              f"{x['best_mask']})")
        print(f"test accuracy:     {t['accuracy']:.4f}  macro-F1 {t['macro_f1']:.4f}  (deployed on the weights)")
    methods = run / "methods.csv"
    if methods.is_file():
        import pandas as pd

        m = pd.read_csv(methods).set_index("method")
        keys = [k for k in ("pretrained", "all_data", "similarity_topk", "random", "oracle") if k in m.index]
        print("baselines (test):  " + ", ".join(f"{k} {m.loc[k, 'accuracy']:.4f}" for k in keys if k != "pretrained"))  # base: above
        diffs = [f"{k} {d}" for k in keys if (d := versus(m.loc[k].to_dict()))]
        if diffs:  # runs from before per-example results have no m2m_diff
            print(f"deployed minus:    {', '.join(diffs)}  (test accuracy; paired bootstrap 95 % intervals)")
    report = run / "report.html"
    stale = report.is_file() and any(p.is_file() and p.stat().st_mtime > report.stat().st_mtime
                                     for p in (summary, run / "methods.csv", run / "trust.json", run / "report.rst"))
    print(f"results:           {run}/  (masks.csv, best_mask.json, summary.md, methods.csv"
          f"{', report.html' if report.is_file() else ''})")
    if stale:
        print(f"report.html is older than the results it shows: rebuild it with `make report CONFIG={args.config}`")
    return 0


def _export_demo(args) -> int:
    """The embedded default's datasets as CSV files (text,label, as read before label mapping) and a
    config that reads them with `local:` sources, so a new user starts from files of their own."""
    import csv

    import yaml

    from .data.prepare import read_source

    raw = config_mod.read_raw(args.config)
    cfg = config_mod.validate(raw)
    out = Path(args.dir).resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name, ds in raw["datasets"].items():
        if "package" not in ds:
            continue
        df = read_source(name, ds, config_mod.MODALITY[cfg["task"]["type"]])
        path = out / "data" / f"{name}.csv"
        df.to_csv(path, index=False, quoting=csv.QUOTE_ALL)  # every field quoted: tweets hold bare \r
        raw["datasets"][name] = {"local": {"path": str(path)},
                                 **{k: v for k, v in ds.items() if k not in ("package", "local", "hf")}}
        print(f"  {path}: {len(df)} rows")
    raw["run"] = f"{raw.get('run', 'default')}-files"
    conf = out / "config.yaml"
    conf.write_text("# merge2mix export-demo: the embedded datasets as CSV files. Edit the files or add your own,\n"
                    f"# then: merge2mix check {conf} && snakemake --cores all --configfile {conf}\n"
                    + yaml.safe_dump(raw, sort_keys=False))
    print(f"written: {conf} (run: {raw['run']})")
    return 0


def _run_dir(args) -> int:
    print(config_mod.Plan(config_mod.load(args.config)).run_dir)
    return 0


def _leave_one_out(args) -> int:
    import subprocess

    import yaml

    from . import loo

    raw = config_mod.read_raw(args.config)
    cfg = config_mod.validate(raw)
    out = Path(cfg["results_dir"]) / f"{cfg['run']}-loo"
    (out / "configs").mkdir(parents=True, exist_ok=True)
    runs = {}
    for target, c in loo.target_configs(raw).items():
        plan = config_mod.Plan(config_mod.validate(c))
        path = out / "configs" / f"{target}.yaml"
        path.write_text(yaml.safe_dump(c, sort_keys=False))
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--configfile", str(path),
               *(["-n"] if args.dry_run else []), *args.snakemake_args]
        print(f"merge2mix: target {target} ({len(plan.candidates)} candidates, {len(plan.masks)} masks): {' '.join(cmd[2:])}",
              flush=True)
        r = subprocess.run(cmd)
        if r.returncode:
            print(f"merge2mix: error: the run for target {target} failed (exit {r.returncode}); config {path}", file=sys.stderr)
            return r.returncode
        runs[target] = plan.run_dir
    if args.dry_run:
        return 0
    from . import plots

    table, pooled = loo.collect(runs)
    table.to_csv(out / "methods_by_target.csv")
    (out / "pooled_correlation.json").write_text(json.dumps(pooled, indent=2) + "\n")
    long, per_method, per_target = loo.headline(runs)
    long.to_csv(out / "versus_by_target.csv", index=False)
    per_method.to_csv(out / "wins.csv", index=False)
    per_target.to_csv(out / "targets.csv", index=False)
    plots.leave_one_out(long, per_target, out / "versus_by_target.png")
    print(table.round(4).to_string())
    print(per_target.round(4).to_string(index=False))
    print(per_method.round(4).to_string(index=False))
    if pooled.get("pairs"):
        print(json.dumps({k: v for k, v in pooled.items() if k != "per_target_pearson_r"}))
    print(f"written: {out}/ methods_by_target.csv, versus_by_target.csv (+ .png), wins.csv, targets.csv, "
          "pooled_correlation.json")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="merge2mix", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("leave-one-out", help="each dataset in turn as the target; one table over all targets")
    lo.add_argument("config", help="a preset, e.g. configs/paper-vision.yaml (its target/candidates are ignored)")
    lo.add_argument("--cores", default="all")
    lo.add_argument("--dry-run", action="store_true", help="only plan each target's run (snakemake -n)")
    lo.set_defaults(fn=_leave_one_out)
    lo.epilog = "Arguments after -- go to every snakemake call (e.g. -- --profile profiles/slurm)."
    ex = sub.add_parser("export-demo", help="write the embedded datasets as CSV files and a config that reads them")
    ex.add_argument("dir", help="folder to write data/<name>.csv and config.yaml into")
    ex.add_argument("--config", default="config.yaml", help="the config whose package datasets to export (default: config.yaml)")
    ex.set_defaults(fn=_export_demo)
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    for name, fn, help_ in [("check", _check, "validate a config file"),
                            ("show", _show, "print the selected mixture of a finished run"),
                            ("run-dir", _run_dir, "print the results folder of a config")]:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("config", nargs="?", default="config.yaml", help="config file (default: config.yaml)")
        sp.set_defaults(fn=fn)
    args = p.parse_args(argv)
    args.snakemake_args = extra
    try:
        return args.fn(args)
    except Merge2MixError as e:
        print(f"merge2mix: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
