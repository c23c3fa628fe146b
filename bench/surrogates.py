"""How well each merge operator stands in for mixture fine-tunes, against committed oracle runs.

    python bench/surrogates.py --drop rt_movies                  # the four committed oracles
    python bench/surrogates.py --targets config.yaml --surrogates average ta_0.5
    python bench/surrogates.py --drop rt_movies --targets config.yaml bench/configs/apple-frozen-n5.yaml ...

The oracle (every mixture fine-tuned and scored on the target) does not depend on the surrogate, so
the committed oracle of bench/results/evidence-<run>/oracle.csv serves every operator: this script
computes (or reuses) only the run's per-dataset fine-tunes and the target's val split, then
scores all 2^N - 1 masks in one process with each operator (merge2mix.engine.score, the code path of
merge_eval). The scores of the operator a run used must equal its committed masks.csv: that checks the fine-tunes are
the ones the oracle run merged. Scores already in bench/results/surrogates/<run>-scores.csv are reused
(--rescore to compute them again), so the analysis can be rerun without the scoring; --cached-only
scores nothing and analyses each run with the operators its cache has.

For each target x surrogate x selection metric (accuracy, macro_f1, balanced_accuracy, loss): pooled Pearson r (paired
bootstrap 95 % interval over masks), Spearman rho, Spearman within each mixture size (mean over
sizes), Pearson given size, top-5 overlap, the pick and its regret (test metric of the oracle's
val-best mixture minus that of the surrogate's pick). Then leave-one-target-out: the surrogate with
the best pooled r on the other target(s) is reported on the held-out one, within each (head, pool).
A target with several draws (runs with another seed) counts once in the choice and is reported per draw.

`--drop NAME`: also analyse each run on the sub-pool without NAME (the masks without it, and their
oracle fine-tunes, are a subset of the full run's), so a run of N = 6 compares with one of N = 5.

When the grid operators (average, ta_sqrt, ta_1) are all scored, the rule pre-registered in
surrogates/anchor-rule.md is applied per run and metric (surrogate `anchor`, column `anchor_chose`):
the grid operator whose merge of every candidate is closest to the all-data fine-tune's val score.

Size calibration (merge2mix.calibration) is simulated on the same oracles: for M extra anchors, the
anchors' oracle scores stand for the fine-tunes the run would make (`calibrated()`), over several
seeded anchor draws.

Writes bench/results/surrogates.csv, bench/results/surrogates/<run>-scores.csv (every mask's merged
val scores per operator), surrogates/calibration.csv, surrogates/pooled_r.png (every run's pooled r and interval per
operator, in accuracy and loss) and surrogates/run.json (command, commit, machine, wall time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix import config as config_mod  # noqa: E402  (light: no torch)
from merge2mix import task_types  # noqa: E402
from provenance import commit, machine, snakemake, workflow_env  # noqa: E402

SURROGATES = {
    "average": ("average", {}),
    "ta_0.25": ("task_arithmetic", {"lam": 0.25, "power": 0.0}),
    "ta_0.5": ("task_arithmetic", {"lam": 0.5, "power": 0.0}),
    "ta_1": ("task_arithmetic", {"lam": 1.0, "power": 0.0}),
    "ta_sqrt": ("task_arithmetic", {"lam": 1.0, "power": 0.5}),
    "ties_0.2_1": ("ties", {"density": 0.2, "lam": 1.0, "power": 0.0}),
    "ties_0.2_0.5": ("ties", {"density": 0.2, "lam": 0.5, "power": 0.0}),
}
TARGETS = ["bench/configs/target-apple.yaml", "bench/configs/target-airline.yaml",  # trained head, N = 6
           "bench/configs/apple-frozen-n5.yaml", "bench/configs/airline-frozen-n5.yaml"]  # frozen head, N = 5
METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "loss")


def without(frame: pd.DataFrame, drop: list[str]) -> pd.DataFrame:
    """The rows whose mask uses none of `drop`."""
    return frame[[not set(m.split("+")) & set(drop) for m in frame["mask"]]]


def finetunes(plan: config_mod.Plan, cfg_path: str, cores: int, workdir: Path = REPO) -> None:
    """Make sure the run's per-dataset fine-tunes and the target's val split exist (reused if done)."""
    run = plan.run_dir
    files = [f"{run}/finetune/{n}/model.safetensors" for n in plan.candidates] + [f"{run}/data/{plan.target}/val.parquet"]
    if plan.cfg["task"]["type"] in config_mod.PER_DATASET_LABELS:
        files.append(f"{run}/heads/{plan.target}.safetensors")
    cmd = snakemake(*files, "--cores", cores, "--configfile", cfg_path)  # --configfile takes a list: the targets go before it
    if subprocess.run(cmd, cwd=workdir, env=workflow_env()).returncode:
        sys.exit(f"surrogates: the fine-tunes of {cfg_path} failed")


def score_all(plan: config_mod.Plan, surrogates: list[str], threads: int, workdir: Path = REPO) -> pd.DataFrame:
    from tqdm import tqdm

    from merge2mix import engine
    from merge2mix.job import from_config

    cfg, run = plan.cfg, workdir / plan.run_dir
    ckpt = {n: str(run / "finetune" / n / "model.safetensors") for n in plan.candidates}
    head = run / "heads" / f"{plan.target}.safetensors"  # families with frozen per-dataset heads
    heads = {plan.target: str(head)} if cfg["task"]["type"] in config_mod.PER_DATASET_LABELS else None
    job = from_config(cfg, str(run / "base"), threads, heads)
    rows = []
    for name in surrogates:
        method, params = SURROGATES[name]
        for mask in tqdm(plan.masks, desc=f"{cfg['run']} {name}", mininterval=5):
            members = mask.split("+")
            r = engine.score(job, {m: ckpt[m] for m in members}, str(run / "data" / plan.target / "val.parquet"),
                             pool=plan.candidates, operator={"method": method, "params": params})
            rows.append({"surrogate": name, "mask": mask, "size": len(members),
                         **{k: r[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "loss")}})
    return pd.DataFrame(rows)


def agreement(scores: pd.DataFrame, oracle: pd.DataFrame, metric: str) -> dict:
    """analysis.correlation_in: `metric` in place of accuracy on both sides, and the pick's regret in
    test accuracy too (against the oracle's val-accuracy best, as correlation.json's regret), since
    the goal asks for both. Loss is the one lower-is-better metric: it is negated on both sides, which
    leaves every correlation as it is and makes the regret the pick's test loss minus the oracle's
    val-loss best's (positive: worse); picked_test and max_test are reported as losses."""
    from merge2mix import analysis
    from merge2mix.select import rank

    merged = scores[["mask", "size", "accuracy", "macro_f1", "balanced_accuracy", "loss"]]
    picked = rank(merged, metric)["mask"].iloc[0]
    test_acc = oracle.set_index("mask")["test_accuracy"]
    regret_acc = float(test_acc[analysis.rank_mixtures(oracle, "accuracy")["mask"].iloc[0]] - test_acc[picked])
    c = analysis.correlation_in(metric, merged, oracle, picked, n_boot=2000)  # loss: ranked lowest first there
    within = c["spearman_within_size"]
    return {"pearson_r": c["pearson_r"], "pearson_r_ci95": c["pearson_r_ci95"], "spearman_rho": c["spearman_rho"],
            "spearman_within_size_mean": float(np.mean(list(within.values()))) if within else None,
            "pearson_r_given_size": c["pearson_r_given_size"], "top5_overlap": c["top5_overlap"],
            "picked": picked, "oracle_best": c["oracle_best"], "picked_test": c[f"picked_test_{metric}"],
            "regret": c["regret"], "max_test": c.get(f"max_test_{metric}", c.get(f"min_test_{metric}")),
            "regret_accuracy": regret_acc}


ANCHOR_GRID = {"ta_1": 0.0, "ta_sqrt": 0.5, "average": 1.0}  # task arithmetic with lambda(k) = k^-p


def anchor_choice(scores: pd.DataFrame, oracle: pd.DataFrame, metric: str) -> str:
    """The rule of surrogates/anchor-rule.md: of the grid operators, the one whose merge of every
    candidate is closest to the all-data fine-tune's val `metric` (a fine-tune every run makes as a
    baseline); a tie keeps the larger p (nearer the paper's average)."""
    full = oracle.loc[oracle["size"].idxmax(), "mask"]
    truth = float(oracle.set_index("mask").loc[full, f"val_{metric}"])
    at = scores[scores["mask"] == full].set_index("surrogate")[metric]
    err = {name: abs(float(at[name]) - truth) for name in ANCHOR_GRID}
    return min(err, key=lambda n: (err[n], -ANCHOR_GRID[n]))


def calibrated(scores: pd.DataFrame, oracle: pd.DataFrame, metric: str, candidates: list[str], extra: int,
               seeds: int) -> dict:
    """Size calibration (merge2mix.calibration) as the workflow would run it: anchors = the singles, all
    the data and `extra` seeded pairs/triples, whose oracle val scores are what the run would have
    fine-tuned; every mask ranked by the fitted prediction. Over `seeds` anchor draws: Pearson r on the
    masks that are not anchors (and the uncalibrated r on the same masks, paired), and the regret of
    the prediction's pick. loss is the one metric where lower is better: it is predicted as is."""
    from scipy import stats

    from merge2mix import calibration

    df = scores.merge(oracle, on=["mask", "size"])
    up = metric != "loss"
    best_val = df.sort_values(f"val_{metric}", ascending=not up, kind="mergesort").iloc[0]
    r_cal, r_raw, regrets, picks = [], [], [], []
    for seed in range(seeds):
        anchors = set(calibration.anchor_masks(candidates, extra, seed))
        a = df[df["mask"].isin(anchors)]
        params = calibration.fit(a[metric], a["size"], a[f"val_{metric}"])
        pred = calibration.predict(params, df[metric], df["size"])
        held = ~df["mask"].isin(anchors).to_numpy()
        r_cal.append(stats.pearsonr(pred[held], df.loc[held, f"val_{metric}"])[0])
        r_raw.append(stats.pearsonr(df.loc[held, metric], df.loc[held, f"val_{metric}"])[0])
        order = np.lexsort((df[metric].to_numpy() * (-1 if up else 1), pred * (-1 if up else 1)))
        pick = df.iloc[order[0]]
        regrets.append(float(best_val[f"test_{metric}"] - pick[f"test_{metric}"]) * (1 if up else -1))
        picks.append(pick["mask"])
    return {"pearson_r_held": float(np.mean(r_cal)), "pearson_r_held_uncalibrated": float(np.mean(r_raw)),
            "pearson_r_held_range": [round(float(np.min(r_cal)), 3), round(float(np.max(r_cal)), 3)],
            "regret": float(np.mean(regrets)), "regret_max": float(np.max(regrets)),
            "picked": pd.Series(picks).mode().iloc[0], "anchor_draws": seeds}


def leave_one_target_out(table: pd.DataFrame) -> pd.DataFrame:
    """Within each (pool, metric): the option (a surrogate within one head, or a head and surrogate
    together) with the best mean pooled r on the other targets, reported on the held-out one. Only
    options scored on every run compete (some runs were scored with fewer operators); a target with
    several draws (runs with another seed) counts once in the choice and is reported once per draw."""
    loto = []
    for (pool, metric), m in table.groupby(["pool", "metric"]):
        scopes = [(f"head {h}", m[m["head"] == h]) for h in sorted(m["head"].unique())]
        if m["head"].nunique() > 1:
            scopes.append(("head and surrogate", m))
        for scope, sub in scopes:
            common = set.intersection(*(set(g["option"]) for _, g in sub.groupby("run")))
            sub = sub[sub["option"].isin(common)]
            for held in sorted(sub["target"].unique()):
                others = sub[sub["target"] != held]
                if others.empty:
                    continue
                chosen = others.groupby(["target", "option"])["pearson_r"].mean().groupby("option").mean().idxmax()
                for _, row in sub[(sub["target"] == held) & (sub["option"] == chosen)].iterrows():
                    loto.append({"pool": pool, "metric": metric, "choice_over": scope, "held_out": held, "run": row["run"],
                                 "chosen_on_others": chosen, **row[["pearson_r", "spearman_rho", "regret", "picked"]].to_dict()})
    return pd.DataFrame(loto)


PLOTTED = {"average": "average (the paper)", "ta_1": "task arithmetic, λ = 1",  # the operators scored on every run
           "ta_sqrt": "task arithmetic, λ = k^-1/2 (embedded default)", "ties_0.2_1": "TIES 0.2, λ = 1",
           "anchor": "λ = k^-p chosen by the all-data anchor"}


def plot_r(table: pd.DataFrame, path: Path, metrics=("accuracy", "loss"), goal: float = 0.8) -> None:
    """One panel per metric: each run's pooled Pearson r (merged vs fine-tuned val) with its 95 %
    interval, one marker per operator, the goal as a dashed line. Each run on its whole pool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table[table["surrogate"].isin(list(PLOTTED))].copy()
    t["n"] = t["pool"].str.removeprefix("N=").astype(int)
    t = t[t["n"] == t.groupby("run")["n"].transform("max")]
    t["trained"] = t["head"] != "label_description"  # the frozen head (the default's) first
    runs = list(dict.fromkeys(t.sort_values(["trained", "target", "run"], kind="mergesort")["run"]))
    label = {r: f"{g['target'].iloc[0]} · {r} ({'frozen' if g['head'].iloc[0] == 'label_description' else 'trained'} head)"
             for r, g in t.groupby("run")}
    metrics = [m for m in metrics if m in set(t["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 0.45 * len(runs) + 1.6), sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for j, name in enumerate(PLOTTED):
            rows = t[(t["metric"] == metric) & (t["surrogate"] == name)].set_index("run")
            ys = [i + (j - (len(PLOTTED) - 1) / 2) * 0.15 for i, r in enumerate(runs) if r in rows.index]
            got = [rows.loc[r] for r in runs if r in rows.index]
            ci = [_as_pair(g["pearson_r_ci95"], g["pearson_r"]) for g in got]
            xs = [g["pearson_r"] for g in got]
            ax.errorbar(xs, ys, xerr=[[x - lo for x, (lo, _) in zip(xs, ci)], [hi - x for x, (_, hi) in zip(xs, ci)]],
                        fmt="o", ms=4, capsize=2, lw=1, label=PLOTTED[name])
        ax.axvline(goal, ls="--", color="grey", lw=1, label=f"goal r = {goal}")
        ax.set_xlim(-0.2, 1.0)
        ax.set_title(f"pooled Pearson r, val {metric}")
        ax.set_yticks(range(len(runs)), [label[r] for r in runs], fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()  # once: the panels share the y axis
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.6 / (0.45 * len(runs) + 1.6), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _as_pair(ci, r) -> tuple[float, float]:
    """A 95 % interval from the table (a list, or its string form once read back from CSV); r when absent."""
    if isinstance(ci, str):
        ci = json.loads(ci)
    return (ci[0], ci[1]) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (r, r)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", nargs="+", default=TARGETS, help="configs whose evidence-<run>/oracle.csv is committed")
    ap.add_argument("--surrogates", nargs="+", default=list(SURROGATES), choices=list(SURROGATES))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--rescore", action="store_true", help="score every mask again even where <run>-scores.csv has it")
    ap.add_argument("--cached-only", action="store_true",
                    help="score nothing: analyse each run with the operators its <run>-scores.csv already has")
    ap.add_argument("--drop", nargs="*", default=[], help="also analyse each run on the pool without these candidates")
    ap.add_argument("--calibration", nargs="*", type=int, default=[0, 2, 4, 8],
                    help="extra anchors M to simulate size calibration with (singles + all data + M)")
    ap.add_argument("--anchor-draws", type=int, default=20)
    ap.add_argument("--evidence-root", type=Path, default=REPO / "bench" / "results", help="where evidence-<run>/ lie")
    ap.add_argument("--workdir", type=Path, default=REPO, help="where the runs' relative results paths start")
    a = ap.parse_args(argv)
    out = Path(a.out)
    (out / "surrogates").mkdir(parents=True, exist_ok=True)
    t0, rows, cal, checks = time.time(), [], [], {}
    for cfg_path in a.targets:
        plan = config_mod.Plan(config_mod.load(cfg_path))
        run = plan.cfg["run"]
        evidence = a.evidence_root / f"evidence-{run}"
        oracle = pd.read_csv(evidence / "oracle.csv")
        cached = out / "surrogates" / f"{run}-scores.csv"
        have = pd.read_csv(cached) if cached.exists() and not a.rescore else pd.DataFrame(columns=["surrogate"])
        missing = [] if a.cached_only else [n for n in a.surrogates if n not in set(have["surrogate"])]
        if missing:  # the cache keeps every operator ever scored; the analysis takes those asked for
            finetunes(plan, cfg_path, a.cores, a.workdir)
            have = pd.concat([have[~have["surrogate"].isin(missing)], score_all(plan, missing, a.cores, a.workdir)],
                             ignore_index=True)
            have.to_csv(cached, index=False)
        scores = have[have["surrogate"].isin(a.surrogates)]
        names = [n for n in a.surrogates if n in set(scores["surrogate"])]  # --cached-only: what the cache has
        own = config_mod.merge_operator(plan.cfg["merge"])  # the operator the oracle run itself scored with
        same = [n for n in names if SURROGATES[n] == (own["method"], own["params"])]
        if same:  # the fine-tunes are the oracle run's: that operator's scores are its masks.csv
            committed = pd.read_csv(evidence / "masks.csv").set_index("mask")["accuracy"]
            mine = scores[scores["surrogate"] == same[0]].set_index("mask")["accuracy"]
            checks[run] = {"surrogate": same[0], "max_abs_diff": float((mine - committed.loc[mine.index]).abs().max())}
        # a type whose every dataset has its frozen class-name head (the topic family) counts as task.head: label_description
        frozen = task_types.get(plan.cfg["task"]["type"]).per_dataset_heads
        head = "label_description" if frozen else plan.cfg["task"].get("head", "trained")
        pools = [(f"N={len(plan.candidates)}", [])]
        kept = [c for c in plan.candidates if c not in a.drop]
        if len(kept) < len(plan.candidates):
            pools.append((f"N={len(kept)}", [c for c in plan.candidates if c in a.drop]))
        for pool, drop in pools:
            kept_cands = [c for c in plan.candidates if c not in drop]
            for name in names:
                s = without(scores[scores["surrogate"] == name], drop)
                for metric in [m for m in METRICS if f"val_{m}" in oracle]:  # older oracles lack balanced_accuracy
                    rows.append({"target": plan.target, "run": run, "head": head, "pool": pool,
                                 "surrogate": name, "operator": json.dumps(SURROGATES[name]), "metric": metric,
                                 "extra_finetunes": 0, **agreement(s, without(oracle, drop), metric)})
                    for extra in a.calibration:
                        cal.append({"target": plan.target, "run": run, "head": head, "pool": pool,
                                    "surrogate": f"{name}+cal{extra}", "metric": metric, "extra_finetunes": extra,
                                    **calibrated(s, without(oracle, drop), metric, kept_cands, extra, a.anchor_draws)})
            if set(ANCHOR_GRID) <= set(names):  # the pre-registered rule, per metric: an operator per run
                for metric in [m for m in METRICS if f"val_{m}" in oracle]:
                    chose = anchor_choice(without(scores, drop), without(oracle, drop), metric)
                    s = without(scores[scores["surrogate"] == chose], drop)
                    rows.append({"target": plan.target, "run": run, "head": head, "pool": pool, "surrogate": "anchor",
                                 "operator": json.dumps(SURROGATES[chose]), "metric": metric, "extra_finetunes": 0,
                                 "anchor_chose": chose, **agreement(s, without(oracle, drop), metric)})
    table = pd.DataFrame(rows)
    table["option"] = table["head"] + "/" + table["surrogate"]
    loto = leave_one_target_out(table)
    cal = pd.DataFrame(cal)
    cal.to_csv(out / "surrogates" / "calibration.csv", index=False)
    table["pearson_r_ci95"] = table["pearson_r_ci95"].map(lambda v: None if v is None else [round(x, 3) for x in v])
    table.to_csv(out / "surrogates.csv", index=False)
    plot_r(table, out / "surrogates" / "pooled_r.png")
    loto.to_csv(out / "surrogates" / "leave-one-target-out.csv", index=False)
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "workflow", "bench/surrogates.py"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip())
    (out / "surrogates" / "run.json").write_text(json.dumps({
        "command": "python bench/surrogates.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit(), "code_dirty": dirty, "wall_s": round(time.time() - t0, 1),
        "own_operator_vs_committed_masks_csv": checks,
        "machine": machine()}, indent=2) + "\n")
    pd.set_option("display.width", 200)
    print(table[["run", "pool", "surrogate", "metric", "pearson_r", "spearman_rho", "spearman_within_size_mean",
                 "pearson_r_given_size", "top5_overlap", "regret", "picked"]].round(3).to_string(index=False))
    print(pd.DataFrame(loto).round(3).to_string(index=False))
    print(cal[cal["metric"] == "accuracy"][["run", "pool", "surrogate", "pearson_r_held", "pearson_r_held_uncalibrated",
                                              "regret", "regret_max", "picked"]].round(3).to_string(index=False))
    print(f"the run's own operator vs its committed masks.csv, max |diff|: {checks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
