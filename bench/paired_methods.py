"""The deployed Merge to Mix model against every baseline, with paired intervals, on committed targets.

    python bench/paired_methods.py bench/configs/apple-frozen-n5.yaml bench/configs/airline-frozen-n5.yaml
    python bench/paired_methods.py --no-run ...    # only collect runs already made

The committed oracle runs (bench/results/evidence-<run>/) kept each method's test accuracy but not
which examples it got right, so their differences could only get unpaired intervals. For each
config this runs the workflow again at the current commit with the oracle off, into
results/<run>-paired/ (`--config run=<run>-paired oracle=False`; the per-dataset fine-tunes come
from the store when they are there), where methods.csv holds `m2m_diff` [lo, hi]: the deployed
model's test accuracy minus each method's, paired bootstrap 95 % over the same test examples
(merge2mix.analysis.methods_table). It checks the rerun against the committed run — same mixture
and same test accuracy for every method, or it says which differ — so the intervals belong to the
committed figures.

Writes bench/results/paired-methods/paired.csv (target, method, mixture, accuracy, the committed
accuracy, whether the rerun reproduces it, the difference and its interval, within_noise),
paired.png (one panel per target) and run.json (command, commit, machine, wall time per config).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix import config as config_mod  # noqa: E402  (light: no torch)
from provenance import commit, machine, snakemake, workflow_env  # noqa: E402

SUFFIX = "paired"


def compare(target: str, run: str, rerun: pd.DataFrame, committed: pd.DataFrame | None) -> pd.DataFrame:
    """One row per method of the rerun's methods.csv, beside the committed run's (None: nothing
    committed to check against)."""
    t = rerun.assign(target=target, run=run, mixture=rerun["mixture"].fillna(""))
    if committed is None:
        t["committed_accuracy"], t["reproduced"] = float("nan"), pd.NA
    else:
        c = committed.assign(mixture=committed["mixture"].fillna("")).set_index("method")
        t["committed_accuracy"] = t["method"].map(c["accuracy"])
        same_mix = t["mixture"] == t["method"].map(c["mixture"])
        t["reproduced"] = same_mix & ((t["accuracy"] - t["committed_accuracy"]).abs() < 1e-6)
    within = (t["m2m_diff_lo"] <= 0) & (0 <= t["m2m_diff_hi"])
    t["within_noise"] = within.astype("boolean").mask(t["m2m_diff"].isna())  # empty: no interval
    return t[["target", "run", "method", "mixture", "accuracy", "committed_accuracy", "reproduced", "m2m_diff",
              "m2m_diff_lo", "m2m_diff_hi", "within_noise"]]


def plot(table: pd.DataFrame, path: Path) -> None:
    """One panel per run (a target may have several draws): Merge to Mix minus each method, with the
    paired interval (right of 0: Merge to Mix ahead)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table.dropna(subset=["m2m_diff"])
    runs = list(dict.fromkeys(shown["run"]))
    cols = min(3, len(runs))
    rows = -(-len(runs) // cols)
    height = 0.3 * shown.groupby("run").size().max() + 1.6
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, height * rows), squeeze=False)  # own x scale each
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    for ax, run in zip(axes.flat, runs):
        t = shown[shown["run"] == run].iloc[::-1]
        y = range(len(t))
        ax.errorbar(t["m2m_diff"], y, xerr=[t["m2m_diff"] - t["m2m_diff_lo"], t["m2m_diff_hi"] - t["m2m_diff"]],
                    fmt="o", color="black", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(list(y), t["method"])
        ax.set_title(f"{run}\n(target {t['target'].iloc[0]})", fontsize=9)
        ax.set_xlabel("Merge to Mix minus method\n(test accuracy, paired 95 %)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", type=Path, help="configs of committed runs (bench/configs/*.yaml)")
    ap.add_argument("--no-run", action="store_true", help="collect results/<run>-paired/ as they are; run nothing")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=REPO, help="where Snakemake runs (relative results paths start here)")
    ap.add_argument("--evidence-root", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "paired-methods")
    a = ap.parse_args(argv)
    t0 = time.time()
    tables, runs = [], {}
    for cfg_path in a.configs:
        cfg = config_mod.load(cfg_path)
        run = f"{cfg['run']}-{SUFFIX}"
        cmd = snakemake("--cores", a.cores, "--configfile", cfg_path, "--config", f"run={run}", "oracle=False")
        if not a.no_run:
            s = time.time()
            if subprocess.run(cmd, cwd=a.workdir, env=workflow_env()).returncode:
                sys.exit(f"paired_methods: the workflow failed for {cfg_path}")
            runs[run] = {"config": str(cfg_path), "wall_s": round(time.time() - s, 1)}
        methods = a.workdir / cfg["results_dir"] / run / "methods.csv"
        if not methods.is_file():
            sys.exit(f"paired_methods: {methods}: not there (run without --no-run first)")
        committed = a.evidence_root / f"evidence-{cfg['run']}" / "methods.csv"
        tables.append(compare(cfg["target"], cfg["run"], pd.read_csv(methods),
                              pd.read_csv(committed) if committed.is_file() else None))
    table = pd.concat(tables, ignore_index=True)
    a.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.out / "paired.csv", index=False)
    plot(table, a.out / "paired.png")
    (a.out / "run.json").write_text(json.dumps({
        "command": "python bench/paired_methods.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit(), "runs": runs, "wall_s": round(time.time() - t0, 1), "machine": machine()}, indent=2) + "\n")
    pd.set_option("display.width", 200)
    print(table.drop(columns=["run"]).round(3).to_string(index=False))
    not_reproduced = table[table["reproduced"].eq(False)]
    if len(not_reproduced):
        print(f"paired_methods: {len(not_reproduced)} rows differ from the committed run: "
              f"{', '.join(not_reproduced['target'] + ':' + not_reproduced['method'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
