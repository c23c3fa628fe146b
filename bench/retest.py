"""A retest of an oracle: the same mixtures fine-tuned twice, only the fine-tunes' seed changed.

    python bench/retest.py bench/results/evidence-topics-oracle-large bench/results/evidence-topics-oracle-large-t1

Each argument is a committed evidence-<run>/ (bench/evidence.py: masks.csv, the merged scores;
oracle.csv, the mixture fine-tunes' scores) of two runs that differ only in `train.seed`
(bench/configs/*-t1.yaml): same splits, same theta_0, same heads. How far a fine-tuned score moves
with the training seed alone bounds how well any surrogate can predict one (merge2mix.analysis.retest:
r with one oracle <= sqrt(retest r) in expectation). Writes <out>/retest.json (per metric: the retest
r with its interval, the ceilings, each run's merged scores against oracle a, b and their mean, and
`selection`: each oracle's val-best judged on the other's test, each merged pick's regret against
both), a scatter plot, and run.json (command, commit, machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix.analysis import retest, retest_selection  # noqa: E402  (light: no torch)
from provenance import commit, machine  # noqa: E402

METRICS = ("accuracy", "loss")  # loss: the default selection metric's ranking score


def plot(runs: dict, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (na, (ma, oa)), (nb, (mb, ob)) = runs.items()
    col = f"val_{metric}"
    both = oa[["mask", "size", col]].merge(ob[["mask", col]], on="mask", suffixes=("_a", "_b"))
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.5))
    sc = ax[0].scatter(both[f"{col}_a"], both[f"{col}_b"], c=both["size"], cmap="viridis")
    lo, hi = both[[f"{col}_a", f"{col}_b"]].min().min(), both[[f"{col}_a", f"{col}_b"]].max().max()
    ax[0].plot([lo, hi], [lo, hi], "k:", lw=1)
    ax[0].set(xlabel=f"fine-tuned val {metric}, {na}", ylabel=f"fine-tuned val {metric}, {nb}",
              title="the same mixtures, fine-tuned twice")
    fig.colorbar(sc, ax=ax[0], label="datasets in the mixture")
    for name, m in ((na, ma), (nb, mb)):
        d = m[["mask", metric]].merge(both, on="mask")
        ax[1].scatter(d[metric], (d[f"{col}_a"] + d[f"{col}_b"]) / 2, label=f"merged, {name}'s fine-tunes", alpha=0.7)
    ax[1].set(xlabel=f"merged val {metric}", ylabel=f"mean of the two fine-tuned val {metric}", title="surrogate vs the retested oracle")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="evidence-<run>/ of the first seed")
    ap.add_argument("b", type=Path, help="evidence-<run>/ of the retest (train.seed)")
    ap.add_argument("--out", type=Path, default=None, help="default: bench/results/retest-<b's run>/")
    ap.add_argument("--n-boot", type=int, default=2000)
    a = ap.parse_args(argv)
    runs = {}
    for d in (a.a, a.b):
        if not (d / "masks.csv").is_file() or not (d / "oracle.csv").is_file():
            sys.exit(f"retest: {d} is not an evidence folder (masks.csv and oracle.csv)")
        runs[d.name.removeprefix("evidence-")] = (pd.read_csv(d / "masks.csv"), pd.read_csv(d / "oracle.csv"))
    if len(runs) != 2:
        sys.exit(f"retest: {a.a} and {a.b} have the same run name; give two different runs")
    (na, (ma, oa)), (nb, (mb, ob)) = runs.items()
    out = a.out or REPO / "bench" / "results" / f"retest-{nb}"
    (out / "plots").mkdir(parents=True, exist_ok=True)
    result = {"a": na, "b": nb}
    for metric in METRICS:
        result[metric] = retest({na: ma, nb: mb}, oa, ob, metric, n_boot=a.n_boot)
        result[metric]["selection"] = retest_selection({na: ma, nb: mb}, oa, ob, metric)
        plot(runs, metric, out / "plots" / f"retest_{metric}.png")
    (out / "retest.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "run.json").write_text(json.dumps({
        "command": "python bench/retest.py " + " ".join(sys.argv[1:] if argv is None else argv), "commit": commit(),
        "machine": machine()}, indent=2) + "\n")
    for metric in METRICS:
        r = result[metric]
        print(f"{metric}: retest r {r['retest_pearson_r']:.2f} {r['retest_pearson_r_ci95']}, ceiling {r['ceiling_one_oracle']:.2f} "
              f"(one oracle) / {r['ceiling_mean_of_two']:.2f} (their mean); merged: " +
              ", ".join(f"{n} vs a {v['vs_a']['pearson_r']:.2f}, vs b {v['vs_b']['pearson_r']:.2f}, vs mean {v['vs_mean']['pearson_r']:.2f}"
                        for n, v in r["merged"].items()))
        s = r["selection"]
        print(f"  picked by {metric}: oracle a's best on b regret {s['regret_of_a_best_on_b']:.3f}, b's best on a "
              f"{s['regret_of_b_best_on_a']:.3f}; merged: " +
              ", ".join(f"{n} {v['picked']} regret a {v['regret_a']:.3f} b {v['regret_b']:.3f}" for n, v in s["merged"].items()))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
