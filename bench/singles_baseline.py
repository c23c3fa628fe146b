"""Does merging add anything over the singles? The merged score against a predictor that merges nothing.

    python bench/singles_baseline.py                     # every committed evidence-*/ with an oracle
    python bench/singles_baseline.py bench/results/evidence-topics-oracle-large

Each argument is an evidence-<run>/ folder (bench/evidence.py: masks.csv, the merged val scores;
oracle.csv, every mixture fine-tuned). The baseline predicts a mixture's fine-tuned val score by the
mean of its members' single scores (merge2mix.analysis.singles_mean: the N fine-tunes the method
trains anyway, no merge). Per run and metric (accuracy; loss, the embedded default's ranking score):
Pearson r of each predictor with the fine-tuned score over all masks, and their difference, with
paired bootstrap 95 % intervals (analysis.compare_r). The baseline's argmax is always a single, so a
high r here says how much of the ranking is additive in the singles, not that it could select.

With --blend, also w * z(merged) + (1 - w) * z(singles' mean) (z: standardised within the run) for
w = 0, 0.1, ..., 1 on the runs that have a bench/configs/<run>.yaml (the frozen-head oracles; it
names the target), w chosen leave one target out (bench/surrogates.leave_one_target_out: a target
with several draws counts once): can the singles repair the merged ranking where it is weak?

Writes bench/results/singles-baseline/singles_baseline.csv (with --blend: blend.csv, blend_loto.csv)
and run.json (command, commit, machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix.analysis import compare_r, rank_mixtures, singles_mean  # noqa: E402  (light: no torch)
from merge2mix.select import sign  # noqa: E402
from provenance import commit, machine  # noqa: E402

METRICS = ("accuracy", "loss")
W = [round(0.1 * i, 1) for i in range(11)]


def compare(folder: Path, merged: pd.DataFrame, oracle: pd.DataFrame, n_boot: int) -> list[dict]:
    rows = []
    for metric in METRICS:
        df = merged[["mask", "size", metric]].merge(oracle[["mask", f"val_{metric}"]], on="mask")
        if len(df) != len(merged):
            sys.exit(f"singles_baseline: {folder}: oracle.csv covers {len(df)} of {len(merged)} masks")
        base = singles_mean(merged, metric).loc[df["mask"]].to_numpy()
        c = compare_r(df[metric], base, df[f"val_{metric}"], n_boot=n_boot)
        rows.append({"run": folder.name.removeprefix("evidence-"), "metric": metric, "masks": len(df),
                     "r_merged": c["r1"], "r_merged_ci95": c["r1_ci95"], "r_singles_mean": c["r2"],
                     "r_singles_mean_ci95": c["r2_ci95"], "merged_minus_singles": c["difference"],
                     "difference_ci95": c["difference_ci95"]})
    return rows


def blend(folder: Path, merged: pd.DataFrame, oracle: pd.DataFrame, target: str) -> list[dict]:
    """Per metric and w: Pearson r / Spearman rho of the blend with the fine-tuned val score, the
    blend's pick and its regret in test accuracy against the oracle's val-best (selection's tie-break)."""
    import numpy as np
    from scipy import stats

    test = dict(zip(oracle["mask"], oracle["test_accuracy"]))
    rows = []
    for metric in METRICS:
        df = merged[["mask", metric]].merge(oracle[["mask", f"val_{metric}"]], on="mask")
        x, sm = df[metric].to_numpy(float), singles_mean(merged, metric).loc[df["mask"]].to_numpy(float)
        x, sm = (x - x.mean()) / x.std(), (sm - sm.mean()) / sm.std()
        y = df[f"val_{metric}"].to_numpy(float)
        best = rank_mixtures(oracle, metric)["mask"].iloc[0]
        for w in W:
            p = w * x + (1 - w) * sm
            pick = df["mask"].iloc[int(np.argmax(sign(metric) * p))]
            rows.append({"pool": "frozen", "head": "frozen", "target": target, "run": folder.name.removeprefix("evidence-"),
                         "metric": metric, "option": f"w={w}", "w": w, "pearson_r": float(stats.pearsonr(p, y)[0]),
                         "spearman_rho": float(stats.spearmanr(p, y)[0]), "picked": pick, "regret": float(test[best] - test[pick])})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="evidence-<run>/ folders (default: every committed one with oracle.csv)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "singles-baseline")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--blend", action="store_true", help="also blends of both, w chosen leave one target out")
    ap.add_argument("--configs", type=Path, default=REPO / "bench" / "configs", help="<run>.yaml per blended run (its target)")
    a = ap.parse_args(argv)
    folders = a.folders or sorted(p.parent for p in (REPO / "bench" / "results").glob("evidence-*/oracle.csv"))
    for f in folders:
        if not (f / "masks.csv").is_file() or not (f / "oracle.csv").is_file():
            sys.exit(f"singles_baseline: {f} is not an evidence folder with an oracle (masks.csv and oracle.csv)")
    tables = {f: (pd.read_csv(f / "masks.csv"), pd.read_csv(f / "oracle.csv")) for f in folders}
    table = pd.DataFrame([row for f, (m, o) in tables.items() for row in compare(f, m, o, a.n_boot)])
    a.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.out / "singles_baseline.csv", index=False)
    (a.out / "run.json").write_text(json.dumps({
        "command": " ".join(["python bench/singles_baseline.py", *(sys.argv[1:] if argv is None else argv)]), "commit": commit(),
        "machine": machine()}, indent=2) + "\n")
    with pd.option_context("display.width", 200, "display.precision", 2):
        print(table[["run", "metric", "masks", "r_merged", "r_singles_mean", "merged_minus_singles", "difference_ci95"]].to_string(index=False))
    if a.blend:
        import yaml
        from surrogates import leave_one_target_out

        runs = {f: a.configs / f"{f.name.removeprefix('evidence-')}.yaml" for f in folders}
        bt = pd.DataFrame([row for f, cfg in runs.items() if cfg.is_file()
                           for row in blend(f, *tables[f], yaml.safe_load(cfg.read_text())["target"])])
        loto = leave_one_target_out(bt)
        full = bt[bt["w"] == 1.0].set_index(["run", "metric"])[["pearson_r", "regret"]].add_suffix("_merged_only")
        loto = loto.join(full, on=["run", "metric"])
        bt.to_csv(a.out / "blend.csv", index=False)
        loto.to_csv(a.out / "blend_loto.csv", index=False)
        with pd.option_context("display.width", 200, "display.precision", 3):
            print(loto[["metric", "held_out", "run", "chosen_on_others", "pearson_r", "pearson_r_merged_only", "regret",
                        "regret_merged_only"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
