"""Evidence: how well merged models stand in for mixture fine-tunes, and how the methods compare.
Reads result files only (no torch).

- correlation(): Pearson r, Spearman rho, Kendall tau between merged and mixture-fine-tuned target
  val accuracy over masks, with paired bootstrap 95% intervals; the same agreement with the mixture
  size held fixed (Spearman within each size, Pearson of the residuals after each size's mean);
  top-1 / top-5 agreement; regret.
- retest(): the same mixtures fine-tuned twice (train.seed): how repeatable the oracle is, and the r
  that noise leaves reachable for any surrogate; retest_selection(): the regret of one seed's oracle
  pick judged by the other's fine-tunes, beside each merged pick's.
- singles_mean(), compare_r(): a predictor that merges nothing (the mean of the members' single
  scores) and a paired comparison of two predictors' r.
- methods_table(): one row per method with target test metrics, its compute cost and its paired
  difference from Merge to Mix's deployed model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .io import atomic_replace, atomic_write_json, read_json, unpack_correct
from .constraints import allows
from .masks import mask_key, parse_key
from .select import rank, sign


def load_results(paths) -> pd.DataFrame:
    return pd.DataFrame([read_json(p) for p in paths])


def _coefs(x, y) -> dict:
    return {"pearson_r": stats.pearsonr(x, y)[0], "spearman_rho": stats.spearmanr(x, y)[0],
            "kendall_tau": stats.kendalltau(x, y)[0]}


def by_size(x, y, size) -> dict:
    """Agreement that a size bias cannot produce: Spearman rho within each mixture size (sizes with at
    least 3 masks and both scores varying), and the partial Pearson r given size (size as a factor:
    each score minus its size's mean, then Pearson of the residuals)."""
    x, y, size = (np.asarray(v, dtype=float) for v in (x, y, size))
    within, rx, ry = {}, x.copy(), y.copy()
    for k in np.unique(size):
        i = size == k
        if i.sum() >= 3 and np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            within[str(int(k))] = float(stats.spearmanr(x[i], y[i])[0])
        rx[i] -= x[i].mean()
        ry[i] -= y[i].mean()
    partial = float(stats.pearsonr(rx, ry)[0]) if np.ptp(rx) > 0 and np.ptp(ry) > 0 else None
    return {"spearman_within_size": within, "pearson_r_given_size": partial}


def calibrated_agreement(masks: pd.DataFrame, oracle: pd.DataFrame, metric: str, anchors: list[str]) -> dict:
    """Size calibration's predictions (masks.csv `calibrated`) against the mixture fine-tunes' val
    `metric`: over every mask, and over the masks that are not anchors (the fit saw the anchors)."""
    df = masks[["mask", "calibrated"]].merge(oracle[["mask", f"val_{metric}"]], on="mask")
    held = df[~df["mask"].isin(anchors)]
    out = {"metric": metric, "masks": len(df), "anchors": len(anchors), **{k: float(v) for k, v in
           _coefs(df["calibrated"], df[f"val_{metric}"]).items()}}
    if len(held) >= 3 and np.ptp(held["calibrated"]) > 0 and np.ptp(held[f"val_{metric}"]) > 0:
        out |= {f"{k}_not_anchors": float(v) for k, v in _coefs(held["calibrated"], held[f"val_{metric}"]).items()}
    return out


def rank_mixtures(mixtures: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mixture fine-tunes ranked by their own target val `metric`, with selection's tie-break."""
    return rank(mixtures.rename(columns={"val_accuracy": "accuracy", "val_macro_f1": "macro_f1",
                                         "val_balanced_accuracy": "balanced_accuracy", "val_loss": "loss"}), metric)


def correlation(merged: pd.DataFrame, oracle: pd.DataFrame, picked: str, seed: int = 0, n_boot: int = 2000) -> dict:
    """`merged`: masks.csv rows (mask, accuracy on val). `oracle`: one row per mask with val/test
    accuracy of the mixture fine-tune. `picked`: the mask Merge to Mix selected."""
    df = merged[["mask", "accuracy"]].merge(oracle[["mask", "val_accuracy", "test_accuracy"]], on="mask")
    if len(df) != len(merged):
        raise ValueError(f"oracle results cover {len(df)} of {len(merged)} masks")
    x, y = df["accuracy"].to_numpy(float), df["val_accuracy"].to_numpy(float)
    out = {"masks": len(df), **{k: float(v) for k, v in _coefs(x, y).items()}}
    if "size" in merged:
        out |= by_size(x, y, merged.set_index("mask").loc[df["mask"], "size"].to_numpy())
    for k, v in _boot_coefs(x, y, np.random.default_rng(seed), n_boot).items():
        out[f"{k}_ci95"] = _ci95(v[np.isfinite(v)])

    o = rank_mixtures(oracle)
    m = rank(merged)
    oracle_best = o["mask"].iloc[0]
    test = dict(zip(oracle["mask"], oracle["test_accuracy"]))
    out |= {
        "merged_best": m["mask"].iloc[0],
        "oracle_best": oracle_best,
        "top1_agreement": bool(m["mask"].iloc[0] == oracle_best),
        "top5_overlap": len(set(m["mask"].head(5)) & set(o["mask"].head(5))) / min(5, len(df)),
        "picked_in_oracle_top5": bool(picked in set(o["mask"].head(5))),
        "picked": picked,
        "picked_test_accuracy": float(test[picked]),
        "oracle_best_test_accuracy": float(test[oracle_best]),
        "max_test_accuracy": float(max(test.values())),
        "regret": float(test[oracle_best] - test[picked]),
        "regret_definition": "test accuracy of the oracle's val-best mixture fine-tune minus that of the mask Merge to Mix picked",
    }
    return out


def correlation_in(metric: str, merged: pd.DataFrame, oracle: pd.DataFrame, picked: str, seed: int = 0,
                   n_boot: int = 2000) -> dict:
    """correlation() in another metric (macro_f1, balanced_accuracy, loss) on both sides: merged vs
    fine-tuned val, the oracle's val-best and the regret in test. Keys say the metric. Loss is lower-is-
    better: it is ranked negated (r and rho are unchanged by negating both sides), and reported as
    itself: `regret` is the picked mixture's test loss minus the oracle's best's (> 0: the pick is
    worse), `min_test_loss` the lowest."""
    s = sign(metric)
    m = merged.assign(accuracy=s * merged[metric])
    o = oracle.assign(val_accuracy=s * oracle[f"val_{metric}"], test_accuracy=s * oracle[f"test_{metric}"])
    c = correlation(m, o, picked, seed=seed, n_boot=n_boot)
    c.pop("regret_definition")
    for k in ("picked_test_accuracy", "oracle_best_test_accuracy", "max_test_accuracy"):
        c[k] *= s
    if s < 0:
        c["min_test_accuracy"] = c.pop("max_test_accuracy")
    return {k.replace("accuracy", metric): v for k, v in c.items()}


def _boot(stat, arrays, rng, n_boot) -> list:
    """stat(*arrays resampled) over `n_boot` paired bootstrap resamples of the masks (one index draw
    serves every array); resamples where any array is constant are skipped."""
    out = []
    for _ in range(n_boot):
        i = rng.integers(0, len(arrays[0]), len(arrays[0]))
        if all(np.ptp(a[i]) > 0 for a in arrays):
            out.append(stat(*(a[i] for a in arrays)))
    return out


def _boot_coefs(x, y, rng, n_boot) -> dict[str, np.ndarray]:
    """_boot(_coefs, (x, y), rng, n_boot), all resamples at once: one (n_boot, n) draw gives the same
    indices as n_boot draws of n; Pearson, Spearman (Pearson of average ranks) and Kendall's tau-b
    (signs of every pair) computed per row in numpy, equal to scipy's to rounding. Seconds instead of
    one scipy call per resample and coefficient (~19 s for 2000 resamples on a slow 2-core box)."""
    n = len(x)
    i = rng.integers(0, n, (n_boot, n))
    xs, ys = x[i], y[i]
    kept = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
    xs, ys = xs[kept], ys[kept]
    return {"pearson_r": _pearson_rows(xs, ys),
            "spearman_rho": _pearson_rows(stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1)),
            "kendall_tau": _kendall_rows(xs, ys)}


def _pearson_rows(a, b) -> np.ndarray:
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _kendall_rows(a, b) -> np.ndarray:
    """Kendall's tau-b of each row pair: (concordant - discordant) / sqrt(pairs untied in a * pairs
    untied in b), as scipy.stats.kendalltau; rows in chunks of ~4M pair signs."""
    n = a.shape[1]
    upper = np.triu_indices(n, 1)
    step = max(1, 4_000_000 // (n * n))
    out = np.empty(len(a))
    for s in range(0, len(a), step):
        sa = np.sign(a[s:s + step, :, None] - a[s:s + step, None, :])[:, upper[0], upper[1]]
        sb = np.sign(b[s:s + step, :, None] - b[s:s + step, None, :])[:, upper[0], upper[1]]
        out[s:s + step] = (sa * sb).sum(axis=1) / np.sqrt(np.abs(sa).sum(axis=1) * np.abs(sb).sum(axis=1))
    return out


def _ci95(values) -> list[float] | None:
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))] if len(values) else None


def paired_difference(correct_a, correct_b, seed: int = 0, n_boot: int = 2000) -> dict:
    """Accuracy of model a minus model b scored on the same examples (`correct_*`: 0/1 per example,
    in the same order, or a mean over runs per example), with a percentile bootstrap 95 % interval that
    resamples examples (one draw serves both models, so what they share cancels)."""
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired_difference: the two models were scored on {a.shape} and {b.shape} examples")
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    return {"n": len(d), "difference": float(d.mean()), "ci95": _ci95(means),
            "a_only_right": int((d > 0).sum()), "b_only_right": int((d < 0).sum())}


def _boot_r(x, y, rng, n_boot) -> list[float] | None:
    return _ci95(_boot(lambda a, b: stats.pearsonr(a, b)[0], (x, y), rng, n_boot))


def retest(merged: dict[str, pd.DataFrame], oracle_a: pd.DataFrame, oracle_b: pd.DataFrame, metric: str = "accuracy",
           seed: int = 0, n_boot: int = 2000) -> dict:
    """Two oracles of the same masks, splits and theta_0 that differ only in the fine-tunes' seed
    (train.seed). `merged`: name -> masks.csv rows (mask, `metric`), e.g. each seed's merged scores.
    A fine-tuned score is a true score plus training noise; the retest r (oracle a against b) is its
    reliability, so no predictor independent of that noise can correlate with one oracle above
    sqrt(retest r) in expectation, nor with the two oracles' mean above sqrt(2r / (1 + r))
    (Spearman-Brown). Pearson r with paired bootstrap 95 % intervals over masks."""
    col = f"val_{metric}"
    df = oracle_a[["mask", col]].merge(oracle_b[["mask", col]], on="mask", suffixes=("_a", "_b"))
    if len(df) != len(oracle_a) or len(df) != len(oracle_b):
        raise ValueError(f"retest: the oracles share {len(df)} masks of {len(oracle_a)} and {len(oracle_b)}")
    a, b = df[f"{col}_a"].to_numpy(float), df[f"{col}_b"].to_numpy(float)
    rng = np.random.default_rng(seed)
    r = float(stats.pearsonr(a, b)[0])
    out = {"metric": metric, "masks": len(df), "retest_pearson_r": r, "retest_pearson_r_ci95": _boot_r(a, b, rng, n_boot),
           "retest_spearman_rho": float(stats.spearmanr(a, b)[0]),
           "mean_abs_difference": float(np.abs(a - b).mean()),
           "ceiling_one_oracle": float(np.sqrt(r)) if r > 0 else 0.0,
           "ceiling_mean_of_two": float(np.sqrt(2 * r / (1 + r))) if r > 0 else 0.0, "merged": {}}
    for name, m in merged.items():
        x = df[["mask"]].merge(m[["mask", metric]], on="mask")[metric].to_numpy(float)
        if len(x) != len(df):
            raise ValueError(f"retest: merged scores '{name}' cover {len(x)} of {len(df)} masks")
        out["merged"][name] = {f"vs_{k}": {"pearson_r": float(stats.pearsonr(x, y)[0]), "ci95": _boot_r(x, y, rng, n_boot)}
                               for k, y in (("a", a), ("b", b), ("mean", (a + b) / 2))}
    return out


def retest_selection(merged: dict[str, pd.DataFrame], oracle_a: pd.DataFrame, oracle_b: pd.DataFrame,
                     metric: str = "accuracy") -> dict:
    """Selection across a retest, as regret in test accuracy (correlation()'s): each oracle's val-best
    (by `metric`, selection's tie-break) judged by the other oracle's fine-tunes -- what picking by one
    training seed's fine-tunes loses to the other seed's own pick, a floor no surrogate is expected to
    beat -- and each merged pick's (`merged`: name -> masks.csv rows) regret against both oracles."""
    oracles = {"a": oracle_a, "b": oracle_b}
    best = {k: rank_mixtures(o, metric)["mask"].iloc[0] for k, o in oracles.items()}
    test = {k: dict(zip(o["mask"], o["test_accuracy"])) for k, o in oracles.items()}

    def regret(k: str, mask: str) -> float:
        return float(test[k][best[k]] - test[k][mask])

    out = {"metric": metric, "oracle_a_best": best["a"], "oracle_b_best": best["b"],
           "regret_of_a_best_on_b": regret("b", best["a"]), "regret_of_b_best_on_a": regret("a", best["b"]), "merged": {}}
    for name, m in merged.items():
        pick = rank(m, metric)["mask"].iloc[0]
        out["merged"][name] = {"picked": pick, "regret_a": regret("a", pick), "regret_b": regret("b", pick)}
    return out


def singles_mean(merged: pd.DataFrame, metric: str = "accuracy") -> pd.Series:
    """A predictor that merges nothing: each mask's mean of its members' single scores (masks.csv's
    size-1 rows, i.e. the N fine-tunes the method trains anyway), indexed by mask. Its argmax is always
    a single (a mean never exceeds its largest term), so it ranks mixtures but cannot select one."""
    single = merged.loc[merged["size"] == 1].set_index("mask")[metric]
    return pd.Series({k: float(np.mean([single[n] for n in parse_key(k)])) for k in merged["mask"]})


def compare_r(x1, x2, y, seed: int = 0, n_boot: int = 2000) -> dict:
    """Pearson r of two predictors x1, x2 with the same target y, and r(x1) - r(x2), each with a paired
    bootstrap 95 % interval (one resample of the masks serves all three)."""
    x1, x2, y = (np.asarray(v, float) for v in (x1, x2, y))
    b = np.asarray(_boot(lambda a1, a2, t: (stats.pearsonr(a1, t)[0], stats.pearsonr(a2, t)[0]), (x1, x2, y),
                         np.random.default_rng(seed), n_boot)).reshape(-1, 2)
    r1, r2 = float(stats.pearsonr(x1, y)[0]), float(stats.pearsonr(x2, y)[0])
    return {"r1": r1, "r1_ci95": _ci95(b[:, 0]), "r2": r2, "r2_ci95": _ci95(b[:, 1]), "difference": r1 - r2,
            "difference_ci95": _ci95(b[:, 0] - b[:, 1])}


def bench_seconds(path) -> float | None:
    """Wall seconds from a Snakemake benchmark: file (None when the job did not run here)."""
    try:
        return float(pd.read_csv(path, sep="\t")["s"].iloc[0])
    except (FileNotFoundError, KeyError, IndexError, ValueError):
        return None


def methods_table(*, summary: dict, mixtures: pd.DataFrame, candidates: list[str], choice: dict | None,
                  oracle_on: bool, seconds, calibration: dict | None = None, merges: int | None = None,
                  oracle_masks: list[str] | None = None, checked: dict | None = None) -> pd.DataFrame:
    """Target test metrics of each method and what it cost. With size calibration (`calibration`:
    calibration.json), Merge to Mix also pays for its anchors beyond the singles (all the data and
    calibration.mixtures pairs/triples). `merges`: the masks the run merge-scored (fewer than 2^N - 1
    under constraints or the surrogate search; default 2^N - 1). `oracle_masks`: the masks the oracle
    fine-tuned (default: every mask); `checked` (constraints.json: the constraints and each dataset's
    size): the oracle's best is the best fine-tune among the masks they allow, budget included, as
    Merge to Mix's pick is.

    `m2m_diff` [`m2m_diff_lo`, `m2m_diff_hi`]: the deployed Merge to Mix model's test accuracy minus
    the row's, with a paired bootstrap 95 % interval over the test examples (paired_difference; random:
    against the mean of its runs per example). Empty where a model's per-example results were not
    recorded (generative tasks; runs from before they were).

    `mixtures`: every mixture fine-tune result (mixtures/<mask>.json rows). `seconds(kind, name)` gives
    the wall time of one job ('finetune', name) / ('mixture', mask) / ('deploy' | 'merges' | 'similarity', None)."""
    n = len(candidates)
    full = mask_key(candidates)
    by_mask = mixtures.set_index("mask")

    def fit_s(mask):  # a singleton's mixture fine-tune is the per-dataset fine-tune
        return seconds("finetune", mask) if len(parse_key(mask)) == 1 else seconds("mixture", mask)

    correct = {}  # method -> 0/1 per test example (random: the mean over its runs), where recorded

    def per_example(packed):
        return np.asarray(unpack_correct(packed), float) if isinstance(packed, str) else None

    def row(method, mask, finetunes, merges, wall):
        r = by_mask.loc[mask]
        correct[method] = per_example(r.get("test_correct"))
        out = {"method": method, "mixture": mask, "accuracy": r["test_accuracy"], "accuracy_sd": None,
               "macro_f1": r["test_macro_f1"], "balanced_accuracy": r.get("test_balanced_accuracy"), "runs": 1,
               "finetunes": finetunes, "merges": merges, "wall_s": wall}
        return out

    base, deployed = summary["test"]["base"], summary["test"]["deployed"]
    correct["pretrained"], correct["merge_to_mix"] = per_example(base.get("correct")), per_example(deployed.get("correct"))
    rows = [{"method": "pretrained", "mixture": "", "accuracy": base["accuracy"], "accuracy_sd": None,
             "macro_f1": base["macro_f1"], "balanced_accuracy": base.get("balanced_accuracy"), "runs": 1, "finetunes": 0,
             "merges": 0, "wall_s": 0.0}]
    rows += [row(f"single:{c}", c, 1, 0, fit_s(c)) for c in sorted(candidates)]
    rows.append(row("all_data", full, 1, 0, fit_s(full)))
    finetune_s = [seconds("finetune", c) for c in candidates]
    m2m_s = None if None in finetune_s else sum(finetune_s) + (seconds("merges", None) or 0) + (seconds("deploy", None) or 0)
    anchors = [] if calibration is None else [a["mask"] for a in calibration["anchors"] if a["size"] > 1]
    anchor_s = [fit_s(m) for m in anchors]
    m2m_s = None if m2m_s is None or None in anchor_s else m2m_s + sum(anchor_s)
    rows.append({"method": "merge_to_mix", "mixture": mask_key(summary["selected_mixture"]), "accuracy": deployed["accuracy"],
                 "accuracy_sd": None, "macro_f1": deployed["macro_f1"], "balanced_accuracy": deployed.get("balanced_accuracy"),
                 "runs": 1, "finetunes": n + 1 + len(anchors),
                 "merges": 2**n - 1 if merges is None else merges, "wall_s": m2m_s})
    if choice:
        sim_s = seconds("similarity", None) or 0
        for name in ("similarity_topk", "similarity_threshold"):
            if name in choice:
                m = choice[name]
                w = fit_s(m)
                rows.append(row(name, m, 1, 0, None if w is None else w + sim_s))
        if choice.get("random"):
            accs = [by_mask.loc[m, "test_accuracy"] for m in choice["random"]]
            f1s = [by_mask.loc[m, "test_macro_f1"] for m in choice["random"]]
            bal = [by_mask.loc[m].get("test_balanced_accuracy") for m in choice["random"]]
            ws = [fit_s(m) for m in choice["random"]]
            runs = [per_example(by_mask.loc[m].get("test_correct")) for m in choice["random"]]
            correct["random"] = None if any(c is None for c in runs) else np.mean(runs, axis=0)
            rows.append({"method": "random", "mixture": " | ".join(choice["random"]), "accuracy": float(np.mean(accs)),
                         "accuracy_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                         "macro_f1": float(np.mean(f1s)),
                         "balanced_accuracy": None if any(pd.isna(b) for b in bal) else float(np.mean(bal)),
                         "runs": len(accs), "finetunes": 1, "merges": 0,
                         "wall_s": None if None in ws else float(np.mean(ws))})
    if oracle_on:
        paid = mixtures if oracle_masks is None else mixtures[mixtures["mask"].isin(oracle_masks)]
        allowed = paid if checked is None else paid[[allows(parse_key(m), checked["constraints"], checked["sizes"])
                                                     for m in paid["mask"]]]
        o = rank_mixtures(allowed)
        ws = [fit_s(m) for m in paid["mask"]]
        rows.append(row("oracle", o["mask"].iloc[0], len(paid) if oracle_masks is not None else 2**n - 1, 0,
                        None if None in ws else float(sum(ws))))
    ours = correct["merge_to_mix"]
    for r in rows:
        theirs = correct.get(r["method"])
        d = None if ours is None or theirs is None or r["method"] == "merge_to_mix" else paired_difference(ours, theirs)
        lo, hi = d["ci95"] if d else (None, None)
        r |= {"m2m_diff": d["difference"] if d else None, "m2m_diff_lo": lo, "m2m_diff_hi": hi}
    return pd.DataFrame(rows)


def write_methods(df: pd.DataFrame, path) -> None:
    atomic_replace(lambda tmp: df.to_csv(tmp, index=False), path)


def write_correlation(result: dict, path) -> None:
    atomic_write_json(result, path)
