"""Do mixture weights beat subsets? (issue "Mixture weights, not only subsets", evidence)

    python bench/weights.py --configs config.yaml bench/configs/airline-frozen-n5.yaml --oracle 6

For each config: the workflow with `weights: {}` (run `<run>-weights`; fine-tunes come from the
store), then
- the weighted deployment against the subset deployment on the target test split (mixture.json):
  accuracy and macro-F1, a Wilson 95 % interval per model, and for the difference a paired bootstrap
  interval over the test examples (both models scored again per example; analysis.paired_difference)
  beside the normal approximation that treats the two as independent (conservative);
- a small weighted oracle: `--oracle` of the scored weight vectors (the pick, the best mask, the
  rest evenly spaced over the merged-score ranking) fine-tuned by weighted sampling exactly as the
  deployment is, scored on target val and test; the merged val score's Pearson r / Spearman rho
  against the fine-tuned val score over those vectors.

Writes bench/results/weights/<run>.json, weights.csv (one row per config) and run.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix import config as config_mod  # noqa: E402  (light: no torch)
from merge2mix.select import sign  # noqa: E402
from provenance import commit, machine, snakemake, workflow_env  # noqa: E402


def wilson(p: float, n: int, z: float = 1.96) -> list[float]:
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(c - h, 4), round(c + h, 4)]


def diff_interval(p1: float, p2: float, n: int, z: float = 1.96) -> list[float]:
    se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
    return [round(p1 - p2 - z * se, 4), round(p1 - p2 + z * se, 4)]


def weighted_config(cfg_path: Path, work: Path, settings: dict) -> Path:
    raw = yaml.safe_load(cfg_path.read_text())
    raw["run"] = f"{raw['run']}-weights"
    raw["weights"] = settings
    out = work / f"{raw['run']}.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def spread(scores: dict[str, float], first: list[str], k: int) -> list[str]:
    """`first`, then the others evenly spaced over the ranking by score, `k` in all."""
    first = list(dict.fromkeys(first))  # the pick may be the best mask itself
    rest = [key for key in sorted(scores, key=lambda key: (-scores[key], key)) if key not in first]
    need = max(0, k - len(first))
    picks = [rest[round(i * (len(rest) - 1) / max(1, need - 1))] for i in range(need)] if rest and need else []
    return (first + picks)[:k]


def scoring_job(plan: config_mod.Plan, run: Path, threads: int):
    from merge2mix.job import from_config

    heads_dir = run / "heads"  # families with frozen per-dataset heads: every candidate's and the target's
    heads = {p.stem: str(p) for p in heads_dir.glob("*.safetensors")} or None
    return from_config(plan.cfg, str(run / "base"), threads, heads)


def paired_test(plan: config_mod.Plan, run: Path, job, mix: dict, seed: int) -> dict:
    """Both deployments scored again on target test, per example; the paired bootstrap of their
    difference. Their accuracies must equal mixture.json's (the same models, split and job)."""
    from merge2mix import analysis, engine

    test = str(run / "data" / plan.target / "test.parquet")
    got = {name: engine.score(job.only([plan.target]), {name: str(run / name / "model.safetensors")}, test, per_example=True)
           for name in ("deploy_weighted", "deploy")}
    for name, which in (("deploy_weighted", "weighted_deployed"), ("deploy", "subset_deployed")):
        if abs(got[name]["accuracy"] - mix["test"][which]["accuracy"]) > 1e-6:
            sys.exit(f"weights bench: {name} scores {got[name]['accuracy']} on test here, mixture.json says "
                     f"{mix['test'][which]['accuracy']}")
    return analysis.paired_difference(got["deploy_weighted"]["correct"], got["deploy"]["correct"], seed=seed)


def oracle(plan: config_mod.Plan, run: Path, job, keys: list[str], scores: dict[str, float], metric: str) -> list[dict]:
    """Fine-tune theta_0 on each weight vector by weighted sampling; score it on target val and test."""
    import tempfile

    from merge2mix import engine
    from merge2mix.mixtures import parse_weights_key
    from merge2mix.train import finetune

    rows = []
    for key in keys:
        w = parse_weights_key(key)
        with tempfile.TemporaryDirectory() as tmp:
            rec = finetune(job, {n: str(run / "data" / n / "train.parquet") for n in w}, f"{tmp}/m.safetensors",
                           f"{tmp}/m.json", weights=w)
            ev = {split: engine.score(job.only([plan.target]), {"ft": f"{tmp}/m.safetensors"},
                                      str(run / "data" / plan.target / f"{split}.parquet"))
                  for split in ("val", "test")}
        rows.append({"key": key, "merged_val": scores[key], "finetuned_val": ev["val"][metric],
                     "finetuned_val_accuracy": ev["val"]["accuracy"],
                     "finetuned_test": ev["test"]["accuracy"], "finetuned_test_macro_f1": ev["test"]["macro_f1"],
                     "steps": rec["steps"], "drawn_per_epoch": rec["drawn_per_epoch"]})
        print(f"[bench] {key}: merged val {metric} {scores[key]:.4f}, fine-tuned val {ev['val'][metric]:.4f}, "
              f"test {ev['test']['accuracy']:.4f}", flush=True)
    return rows


def main(argv=None) -> int:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", type=Path, default=[REPO / "config.yaml"])
    ap.add_argument("--oracle", type=int, default=6, help="weight vectors fine-tuned per config")
    ap.add_argument("--weights", default="{}", help="the weights: settings, as YAML (default: the schema's)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=REPO, help="where Snakemake runs (relative results paths start here)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "weights")
    a = ap.parse_args(argv)
    t0 = time.time()
    a.out.mkdir(parents=True, exist_ok=True)
    scratch = a.workdir / "bench" / "_work" / "weights"
    scratch.mkdir(parents=True, exist_ok=True)
    table = []
    for cfg_path in a.configs:
        wcfg = weighted_config(cfg_path, scratch, yaml.safe_load(a.weights))
        plan = config_mod.Plan(config_mod.load(wcfg))
        cmd = snakemake(f"{plan.run_dir}/mixture.json", "--cores", a.cores, "--configfile", wcfg)
        if subprocess.run(cmd, cwd=a.workdir, env=workflow_env()).returncode:
            sys.exit(f"weights bench: the workflow failed for {cfg_path}")
        run = a.workdir / plan.run_dir
        mix = json.loads((run / "mixture.json").read_text())
        wt, st = mix["test"]["weighted_deployed"], mix["test"]["subset_deployed"]
        job = scoring_job(plan, run, a.cores)
        paired = paired_test(plan, run, job, mix, plan.cfg["seed"])
        keys = spread(mix["scores"], [mix["key"], mix["best_mask"]], a.oracle)
        metric = mix["metric"]  # what mix["scores"] holds (select.metric)
        rows = oracle(plan, run, job, keys, mix["scores"], metric)
        orc = pd.DataFrame(rows)
        const = orc["merged_val"].nunique() < 2 or orc["finetuned_val"].nunique() < 2  # r undefined
        r = None if len(orc) < 3 or const else float(orc["merged_val"].corr(orc["finetuned_val"]))
        rho = None if len(orc) < 3 or const else float(orc["merged_val"].corr(orc["finetuned_val"], method="spearman"))
        best_ft = orc.loc[(sign(metric) * orc["finetuned_val"]).idxmax()]
        res = {"config": str(cfg_path), "run": plan.cfg["run"], "target": plan.target, "metric": metric, "weights": mix["weights"],
               "best_mask": mix["best_mask"], "val_merged": {"weights": mix["val_score"], "best_mask": mix["best_mask_val_score"]},
               "vectors_scored": mix["vectors_scored"], "n_test": wt["n"],
               "test": {"weighted": {"accuracy": wt["accuracy"], "ci95": wilson(wt["accuracy"], wt["n"]), "macro_f1": wt["macro_f1"]},
                        "subset": {"accuracy": st["accuracy"], "ci95": wilson(st["accuracy"], st["n"]), "macro_f1": st["macro_f1"]},
                        "difference": round(wt["accuracy"] - st["accuracy"], 4),
                        "difference_ci95": [round(x, 4) for x in paired["ci95"]],
                        "difference_ci95_unpaired_normal": diff_interval(wt["accuracy"], st["accuracy"], wt["n"]),
                        "only_weighted_right": paired["a_only_right"], "only_subset_right": paired["b_only_right"]},
               "oracle": {"vectors": rows, "pearson_r": r, "spearman_rho": rho, "best_finetuned_val": best_ft["key"],
                          "pick_is_best_finetuned_val": bool(best_ft["key"] == mix["key"])}}
        (a.out / f"{plan.cfg['run']}.json").write_text(json.dumps(res, indent=2) + "\n")
        table.append({"target": plan.target, "run": plan.cfg["run"], "metric": metric, "weights": json.dumps(mix["weights"]),
                      "best_mask": mix["best_mask"], "val_merged_weights": mix["val_score"],
                      "val_merged_best_mask": mix["best_mask_val_score"], "test_weighted": wt["accuracy"],
                      "test_subset": st["accuracy"], "difference": res["test"]["difference"],
                      "difference_ci95": res["test"]["difference_ci95"],
                      "difference_ci95_unpaired_normal": res["test"]["difference_ci95_unpaired_normal"],
                      "only_weighted_right": paired["a_only_right"], "only_subset_right": paired["b_only_right"],
                      "oracle_vectors": len(rows),
                      "oracle_pearson_r": r, "oracle_spearman_rho": rho, "pick_is_best_finetuned_val": res["oracle"]["pick_is_best_finetuned_val"]})
    pd.DataFrame(table).to_csv(a.out / "weights.csv", index=False)
    (a.out / "run.json").write_text(json.dumps({
        "command": "python bench/weights.py " + " ".join(argv if argv is not None else sys.argv[1:]), "commit": commit(),
        "wall_s": round(time.time() - t0, 1), "machine": machine()}, indent=2) + "\n")
    print(pd.DataFrame(table).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
