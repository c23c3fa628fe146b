"""Leave-one-out over a pool: each dataset in turn is the target, all the others its candidates.

This is how the paper reports its vision setting (8 datasets, 8 targets x 127 masks). One config per
target is derived from the preset (run `<run>-<target>`), each is an ordinary workflow run, and the
fine-tune store (results_dir/store) lets every target reuse each dataset's fine-tune: a dataset is
fine-tuned once, not once per target. `collect` reads the finished runs into one table (target x
method, test accuracy) and the pooled merged-vs-fine-tuned correlation over every (target, mask).
No torch here: this reads configs and result files.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
from scipy import stats

from . import analysis


def target_configs(cfg: dict) -> dict[str, dict]:
    """One config per dataset as the target (the preset's own `candidates` list is ignored). `cfg` is
    the file as written (config.read_raw), not a validated config: validation rewrites keys that
    would not validate a second time."""
    out = {}
    for target in cfg["datasets"]:
        c = copy.deepcopy(cfg)
        c["run"], c["target"] = f"{cfg.get('run', 'default')}-{target}", target
        c.pop("candidates", None)
        out[target] = c
    return out


BASELINES = ("pretrained", "all_data", "similarity_topk", "similarity_threshold", "random")


def outcome(lo: float, hi: float) -> str:
    """Merge to Mix's deployed model against a method, from the paired 95 % interval of its test
    accuracy minus the method's: win (above 0), loss (below 0), tie (holds 0)."""
    return "win" if lo > 0 else "loss" if hi < 0 else "tie"


def headline(run_dirs: dict[str, str | Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The table over targets: (long, one row per target x method with test accuracy, Merge to Mix's
    paired difference and interval against it and the outcome; per_method, mean accuracy over targets
    and wins / ties / losses beyond noise; per_target, Merge to Mix's pick, its test accuracy, the
    best single and the trust verdict). Singles are one method each (`single:<name>`) and also pooled
    as `single (any)`."""
    rows, targets = [], []
    for target, run in run_dirs.items():
        run = Path(run)
        methods = pd.read_csv(run / "methods.csv")
        trust = json.loads((run / "trust.json").read_text()) if (run / "trust.json").is_file() else {}
        m2m = methods.set_index("method").loc["merge_to_mix"]
        for r in methods.to_dict("records"):
            if r["method"] == "merge_to_mix":
                continue
            lo, hi = r.get("m2m_diff_lo"), r.get("m2m_diff_hi")
            given = lo is not None and pd.notna(lo)
            rows.append({"target": target, "method": r["method"], "mixture": r.get("mixture"), "accuracy": r["accuracy"],
                         "m2m_diff": r.get("m2m_diff"), "m2m_diff_lo": lo, "m2m_diff_hi": hi,
                         "outcome": outcome(lo, hi) if given else None})
        singles = methods[methods["method"].str.startswith("single:")]
        best_single = singles.loc[singles["accuracy"].idxmax()] if len(singles) else None
        targets.append({"target": target, "merge_to_mix": m2m["mixture"], "merge_to_mix_accuracy": m2m["accuracy"],
                        "best_single": None if best_single is None else best_single["method"].removeprefix("single:"),
                        "best_single_accuracy": None if best_single is None else best_single["accuracy"],
                        "trust": trust.get("verdict"), "trust_pairs": trust.get("pairs"), "trust_r": trust.get("pearson_r"),
                        "trust_r_ci95": trust.get("pearson_r_ci95")})
    long = pd.DataFrame(rows)
    per_target = pd.DataFrame(targets).sort_values("target").reset_index(drop=True)
    pooled = long.assign(method=long["method"].where(~long["method"].str.startswith("single:"), "single (any)"))
    stats_rows = []
    for method, g in pd.concat([long, pooled[pooled["method"] == "single (any)"]]).groupby("method", sort=False):
        counts = g["outcome"].value_counts()
        stats_rows.append({"method": method, "targets": g["target"].nunique(), "rows": len(g),
                           "mean_accuracy": g["accuracy"].mean(), "mean_m2m_diff": g["m2m_diff"].mean(),
                           **{k: int(counts.get(k, 0)) for k in ("win", "tie", "loss")}})
    per_method = pd.DataFrame(stats_rows)
    per_method = pd.concat([pd.DataFrame([{"method": "merge_to_mix", "targets": len(per_target), "rows": len(per_target),
                                           "mean_accuracy": per_target["merge_to_mix_accuracy"].mean()}]), per_method],
                           ignore_index=True)
    first = ["merge_to_mix", *BASELINES, "single (any)"]  # then each single by name
    per_method = per_method.assign(_o=per_method["method"].map(lambda m: (first.index(m), "") if m in first else (len(first), m)))
    per_method = per_method.sort_values("_o").drop(columns="_o").reset_index(drop=True)
    return long.sort_values(["target", "method"]).reset_index(drop=True), per_method, per_target


def collect(run_dirs: dict[str, str | Path]) -> tuple[pd.DataFrame, dict]:
    """`run_dirs`: target -> its finished run folder. Returns (table, pooled): the table has one row
    per target and one column per method (target test accuracy); `pooled` holds Pearson r and
    Spearman rho over all (target, mask) pairs of merged vs mixture-fine-tuned val accuracy (runs
    with the oracle on), and each target's own r."""
    rows, pairs, per_target = [], [], {}
    for target, run in run_dirs.items():
        run = Path(run)
        methods = pd.read_csv(run / "methods.csv")
        rows.append({"target": target, **dict(zip(methods["method"], methods["accuracy"]))})
        oracle = sorted((run / "mixtures").glob("*.json"))
        masks = pd.read_csv(run / "masks.csv", dtype={"bitstring": str})
        if (run / "correlation.json").is_file():
            joined = masks[["mask", "accuracy"]].merge(analysis.load_results(oracle)[["mask", "val_accuracy"]], on="mask")
            pairs.append(joined.assign(target=target))
            per_target[target] = json.loads((run / "correlation.json").read_text())["pearson_r"]
    table = pd.DataFrame(rows).set_index("target").sort_index()
    pooled = {"targets": len(run_dirs), "targets_with_oracle": len(per_target), "per_target_pearson_r": per_target}
    if pairs:
        df = pd.concat(pairs, ignore_index=True)
        x, y = df["accuracy"].to_numpy(float), df["val_accuracy"].to_numpy(float)
        pooled |= {"pairs": len(df), "pearson_r": float(stats.pearsonr(x, y)[0]),
                   "spearman_rho": float(stats.spearmanr(x, y)[0])}
    return table, pooled
