"""Back-test of the per-run trust check (merge2mix.trust) on every committed oracle run.

    python bench/trust_backtest.py                        # every bench/results/evidence-*/ with an oracle
    python bench/trust_backtest.py bench/results/evidence-default --ks 0 2

Each argument is an evidence-<run>/ folder (bench/evidence.py): masks.csv (every mask's merged val
scores), oracle.csv (every mixture fine-tuned), methods.csv (the mixtures the run fine-tuned for its
baselines and its pick). For each run and each K in --ks, the trust estimate is computed from exactly
the masks an ordinary run (no oracle) would have fine-tuned — all the data, similarity top-k and
threshold, the random draws, the deployed pick — plus K pairs/triples drawn as trust.anchors draws
them (calibration.anchor_masks, seed 0), their fine-tuned val scores read from the oracle. It is set
against the oracle's full-table r (Pearson, merged vs fine-tuned val, every non-single mask, the same
metric): an oracle r below 0.6 is a pool where the surrogate is weak, the threshold of the verdict
rule (docs/method.md, written down before this table was computed). A verdict agrees when it is
"trusted" on an oracle r >= 0.6 or "weak" below; "cannot tell" never counts as agreement.

Metric: each run's own selection metric (these oracles all selected by accuracy), and loss (the
embedded default's selection metric) as a second table.

Writes bench/results/trust-backtest/: backtest.csv (run x metric x K), agreement.csv (per metric and
K: runs agreeing, with a Wilson 95 % interval), scatter.png (trust r against oracle r, intervals
drawn), run.json (command, commit, machine).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix import trust  # noqa: E402  (light: no torch)
from merge2mix.calibration import anchor_masks, extra_pool  # noqa: E402
from merge2mix.masks import parse_key  # noqa: E402
from provenance import commit, machine  # noqa: E402

ORDINARY = ("all_data", "merge_to_mix", "similarity_topk", "similarity_threshold", "random")


def ordinary_masks(methods: pd.DataFrame) -> dict[str, list[str]]:
    """mask -> the roles an ordinary run fine-tuned it as (methods.csv's mixtures; random's are ' | '-joined)."""
    roles: dict[str, list[str]] = {}
    for _, row in methods.iterrows():
        if row["method"] in ORDINARY and isinstance(row["mixture"], str):
            for m in row["mixture"].split(" | "):
                role = "deployed" if row["method"] == "merge_to_mix" else row["method"]
                if role not in roles.setdefault(m.strip(), []):
                    roles[m.strip()].append(role)
    return roles


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    z, p = 1.96, k / n
    mid, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, mid - half), min(1.0, mid + half)]


def backtest(folder: Path, ks: list[int], metrics: list[str] | None = None) -> list[dict]:
    merged = pd.read_csv(folder / "masks.csv", dtype={"bitstring": str})
    oracle = pd.read_csv(folder / "oracle.csv")
    methods = pd.read_csv(folder / "methods.csv")
    best = json.loads((folder / "best_mask.json").read_text())
    cands, pick = best["candidates"], best["mask"]
    own = best.get("metric", "accuracy")
    corr = json.loads((folder / "correlation.json").read_text()) if (folder / "correlation.json").is_file() else {}
    roles = ordinary_masks(methods)
    rows = []
    for metric in metrics or list(dict.fromkeys([own, "loss"])):
        tuned = dict(zip(oracle["mask"], oracle[f"val_{metric}"].astype(float)))
        full = merged[merged["mask"].map(lambda m: len(parse_key(m)) > 1)][["mask", metric]].merge(
            oracle[["mask", f"val_{metric}"]], on="mask")
        oracle_r = float(np.corrcoef(full[metric], full[f"val_{metric}"])[0, 1])
        for k in ks:
            if k > len(extra_pool(cands)):
                continue
            r = {m: list(v) for m, v in roles.items()}
            for m in anchor_masks(cands, k, 0):
                r.setdefault(m, []).append("anchor")
            finetuned = [{"mask": m, "val": tuned[m], "role": role} for m, rs in r.items() if m != pick for role in rs]
            t = trust.assess(merged, finetuned, metric, pick={"mask": pick, "val": tuned[pick]})
            expected = "trusted" if oracle_r >= trust.R_TRUSTED else "weak"
            rows.append({
                "run": folder.name.removeprefix("evidence-"), "metric": metric, "selection_metric": metric == own,
                "k": k, "pairs": t["pairs"], "trust_r": t["pearson_r"],
                "trust_r_lo": (t["pearson_r_ci95"] or [None])[0], "trust_r_hi": (t["pearson_r_ci95"] or [None, None])[1],
                "verdict": t["verdict"], "extra_pairs_needed": t["extra_pairs_needed"],
                "oracle_r": oracle_r, "oracle_masks": len(full), "expected": expected, "agrees": t["verdict"] == expected,
                "pick_finetuned_rank": t["pick"]["finetuned_rank"], "of_finetuned": t["pick"]["of_finetuned"],
                "regret_test_accuracy": corr.get("regret"),
            })
    return rows


def agreement(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (metric, k), g in df.groupby(["metric", "k"], sort=True):
        n, agree = len(g), int(g["agrees"].sum())
        decided = g[g["verdict"] != "cannot tell"]
        out.append({"metric": metric, "k": k, "runs": n, "agree": agree, "agree_rate": agree / n,
                    "agree_ci95_lo": wilson(agree, n)[0], "agree_ci95_hi": wilson(agree, n)[1],
                    "trusted": int((g["verdict"] == "trusted").sum()), "weak": int((g["verdict"] == "weak").sum()),
                    "cannot_tell": int((g["verdict"] == "cannot tell").sum()),
                    "agree_among_decided": f"{int(decided['agrees'].sum())}/{len(decided)}",
                    "oracle_weak_runs": int((g["expected"] == "weak").sum()),
                    "oracle_weak_called_weak": int(((g["expected"] == "weak") & (g["verdict"] == "weak")).sum()),
                    "oracle_good_called_weak": int(((g["expected"] == "trusted") & (g["verdict"] == "weak")).sum())})
    return pd.DataFrame(out)


def scatter(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, ks = sorted(df["metric"].unique()), sorted(df["k"].unique())
    fig, axes = plt.subplots(len(metrics), len(ks), figsize=(3.2 * len(ks), 3.2 * len(metrics)), squeeze=False,
                             sharex=True, sharey=True)
    colors = {"trusted": "tab:green", "weak": "tab:red", "cannot tell": "tab:gray"}
    for i, metric in enumerate(metrics):
        for j, k in enumerate(ks):
            ax, g = axes[i][j], df[(df["metric"] == metric) & (df["k"] == k)]
            for _, row in g.iterrows():
                y = row["trust_r"] if pd.notna(row["trust_r"]) else -1.05  # no estimate: drawn at the bottom
                if pd.notna(row["trust_r_lo"]):
                    ax.plot([row["oracle_r"]] * 2, [row["trust_r_lo"], row["trust_r_hi"]], color=colors[row["verdict"]], lw=1, alpha=0.6)
                ax.scatter([row["oracle_r"]], [y], color=colors[row["verdict"]], s=22, zorder=3,
                           marker="o" if row["agrees"] else "x")
            ax.axvline(trust.R_TRUSTED, color="k", lw=0.6, ls=":")
            ax.axhline(trust.R_TRUSTED, color="k", lw=0.6, ls=":")
            ax.plot([-1, 1], [-1, 1], color="0.8", lw=0.6)
            ax.set_title(f"{metric}, K = {k}", fontsize=9)
            ax.set_xlim(-0.1, 1.0)
            ax.set_ylim(-1.1, 1.05)
            if i == len(metrics) - 1:
                ax.set_xlabel("oracle r (every non-single mask)")
            if j == 0:
                ax.set_ylabel("trust r (the run's own pairs)")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=v) for v, c in colors.items()]
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="*", help="evidence-<run>/ folders (default: every committed one with an oracle)")
    p.add_argument("--ks", type=int, nargs="+", default=[0, 2, 4, 8])
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "trust-backtest"))
    args = p.parse_args(argv)
    t0 = time.time()
    folders = [Path(f) for f in args.folders] or sorted(f for f in (REPO / "bench" / "results").glob("evidence-*")
                                                         if (f / "oracle.csv").is_file())
    rows = [r for f in folders for r in backtest(f, args.ks)]
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "backtest.csv", index=False)
    agree = agreement(df)
    agree.to_csv(out / "agreement.csv", index=False)
    scatter(df, out / "scatter.png")
    (out / "run.json").write_text(json.dumps({
        "command": "python bench/trust_backtest.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit(), "machine": machine(), "wall_s": round(time.time() - t0, 1),
        "runs": [f.name for f in folders]}, indent=2) + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df[["run", "metric", "k", "pairs", "trust_r", "trust_r_lo", "verdict", "oracle_r", "agrees"]].round(3).to_string(index=False))
        print(agree.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
