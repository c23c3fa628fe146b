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
