"""Correlation, regret and the methods table on constructed inputs (checked against scipy)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from merge2mix import analysis
from merge2mix.baselines import choose, random_subset


def tables(merged_acc, oracle_val, oracle_test):
    masks = [f"m{i}" for i in range(len(merged_acc))]
    merged = pd.DataFrame({"mask": masks, "accuracy": merged_acc, "macro_f1": 0.5, "loss": 1.0, "size": 1})
    oracle = pd.DataFrame({"mask": masks, "val_accuracy": oracle_val, "val_macro_f1": 0.5, "val_loss": 1.0,
                           "test_accuracy": oracle_test, "test_macro_f1": 0.5, "size": 1})
    return merged, oracle


def test_coefficients_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.random(20)
    y = x + 0.3 * rng.random(20)
    merged, oracle = tables(x, y, y)
    c = analysis.correlation(merged, oracle, "m0", n_boot=200)
    assert c["pearson_r"] == pytest.approx(stats.pearsonr(x, y)[0])
    assert c["spearman_rho"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert c["kendall_tau"] == pytest.approx(stats.kendalltau(x, y)[0])
    lo, hi = c["pearson_r_ci95"]
    assert lo <= c["pearson_r"] <= hi


def test_regret_and_agreement_on_a_constructed_case():
    # merged favours m0; the oracle's val favours m2, whose test accuracy is 0.9; m0 scores 0.7 on test.
    merged, oracle = tables([0.9, 0.5, 0.8, 0.1], [0.6, 0.5, 0.95, 0.2], [0.7, 0.5, 0.9, 0.3])
    c = analysis.correlation(merged, oracle, "m0", n_boot=50)
    assert c["merged_best"] == "m0" and c["oracle_best"] == "m2" and not c["top1_agreement"]
    assert c["regret"] == pytest.approx(0.2)
    assert c["max_test_accuracy"] == 0.9 and c["top5_overlap"] == 1.0
    merged, oracle = tables([0.9, 0.5], [0.9, 0.5], [0.8, 0.4])
    assert analysis.correlation(merged, oracle, "m0", n_boot=10)["regret"] == 0.0


def test_missing_oracle_rows_are_an_error():
    merged, oracle = tables([0.9, 0.5, 0.1], [0.6, 0.5, 0.2], [0.7, 0.5, 0.3])
    with pytest.raises(ValueError, match="cover 2 of 3"):
        analysis.correlation(merged, oracle.iloc[:2], "m0")


def test_baseline_choices():
    sim = pd.DataFrame({"candidate": ["b", "a", "c"], "cosine": [0.9, 0.8, 0.1]})
    ch = choose(sim, ["a", "b", "c"], 2, 4)
    assert ch["similarity_topk"] == "a+b" and ch["similarity_threshold"] == "a+b" and len(ch["random"]) == 4
    assert all(len(m.split("+")) == 2 for m in ch["random"])
    assert random_subset(["c", "a", "b"], 2, 7) == random_subset(["a", "b", "c"], 2, 7)  # order-free
    assert "similarity_topk" not in choose(None, ["a", "b"], 1, 1)
    assert "constraints" not in ch and "infeasible" not in ch


def test_baselines_pick_within_the_constraints():
    """Under select.constraints the baselines choose as Merge to Mix does: only feasible mixtures; one
    that cannot is left out and named, not silently broken."""
    from merge2mix import constraints as cons

    cands = ["a", "b", "c", "d", "e"]
    sim = pd.DataFrame({"candidate": ["b", "a", "c", "d", "e"], "cosine": [0.9, 0.8, 0.7, 0.2, 0.1]})
    sizes = {"a": 100, "b": 500, "c": 100, "d": 100, "e": 100}
    c = {"must_include": ["e"], "exclude": ["a"], "at_most_one_of": [["b", "c"]], "budget": {"examples": 700}}
    ch = choose(sim, cands, 3, 20, c, sizes)
    assert ch["similarity_topk"] == "b+d+e"  # e forced in, a excluded, c conflicts with b; 700 examples exactly
    assert ch["similarity_threshold"] == "b+e"  # above the mean cosine (0.54): b, a, c; then e
    assert len(ch["random"]) == 20 and all(cons.allows(m.split("+"), c, sizes) for m in ch["random"])
    assert len(set(ch["random"])) > 1 and ch["constraints"] == c  # still random among the feasible ones
    tight = choose(sim, cands, 2, 3, {"min_datasets": 3, "max_datasets": 3}, sizes)  # no 2-dataset mixture allowed
    assert tight["random"] == [] and "similarity_topk" not in tight
    assert tight["infeasible"] == ["similarity_topk", "random", "random", "random"]
    assert tight["similarity_threshold"] == "a+b+c"  # the above-mean three, which is allowed


def test_methods_table_rows_and_costs():
    mixtures = pd.DataFrame({"mask": ["a", "b", "a+b"], "val_accuracy": [0.6, 0.7, 0.8], "val_macro_f1": 0.5,
                             "val_loss": 1.0, "size": [1, 1, 2], "test_accuracy": [0.55, 0.65, 0.75],
                             "test_macro_f1": [0.5, 0.6, 0.7]})
    summary = {"selected_mixture": ["b"], "test": {"base": {"accuracy": 0.5, "macro_f1": 0.33},
                                                   "deployed": {"accuracy": 0.65, "macro_f1": 0.6}}}
    secs = {("finetune", "a"): 10.0, ("finetune", "b"): 20.0, ("mixture", "a+b"): 30.0, ("merges", None): 1.5,
            ("deploy", None): 20.0, ("similarity", None): 2.0}
    t = analysis.methods_table(summary=summary, mixtures=mixtures, candidates=["a", "b"],
                               choice={"k": 1, "random": ["a", "b"], "similarity_topk": "b", "similarity_threshold": "a+b"},
                               oracle_on=True, seconds=lambda k, n: secs.get((k, n)))
    assert list(t.columns) == ["method", "mixture", "accuracy", "accuracy_sd", "macro_f1", "balanced_accuracy", "runs",
                               "finetunes", "merges", "wall_s", "m2m_diff", "m2m_diff_lo", "m2m_diff_hi"]
    assert t["m2m_diff"].isna().all()  # no per-example results recorded: no interval made up
    assert t["balanced_accuracy"].isna().all()  # records from before balanced accuracy: empty, not made up
    t = t.set_index("method")
    assert t.loc["merge_to_mix", "wall_s"] == 10 + 20 + 1.5 + 20
    assert t.loc["oracle", "mixture"] == "a+b" and t.loc["oracle", "accuracy"] == 0.75 and t.loc["oracle", "wall_s"] == 60
    assert t.loc["random", "accuracy"] == pytest.approx(0.6) and t.loc["random", "accuracy_sd"] == pytest.approx(np.std([0.55, 0.65], ddof=1))
    assert t.loc["similarity_topk", "wall_s"] == 22 and t.loc["similarity_threshold", "wall_s"] == 32
    assert t.loc["all_data", "mixture"] == "a+b"
    mixtures["test_balanced_accuracy"] = [0.5, 0.7, 0.8]
    summary["test"]["deployed"]["balanced_accuracy"] = 0.7
    t = analysis.methods_table(summary=summary, mixtures=mixtures, candidates=["a", "b"], choice={"k": 1, "random": ["a", "b"]},
                               oracle_on=True, seconds=lambda k, n: secs.get((k, n))).set_index("method")
    assert t.loc["random", "balanced_accuracy"] == pytest.approx(0.6) and t.loc["oracle", "balanced_accuracy"] == 0.8
    assert t.loc["merge_to_mix", "balanced_accuracy"] == 0.7 and pd.isna(t.loc["pretrained", "balanced_accuracy"])


def test_methods_table_charges_what_was_paid_and_the_oracle_stays_within_the_constraints():
    """Under constraints (or the surrogate search) Merge to Mix merges fewer than 2^N - 1 masks and the
    oracle fine-tunes only the masks the plan allows; its best is the best fine-tune the constraints
    allow (budget included), not a mixture the user ruled out."""
    mixtures = pd.DataFrame({"mask": ["a", "b", "c", "a+b", "a+c", "b+c", "a+b+c"],
                             "val_accuracy": [0.6, 0.7, 0.5, 0.9, 0.8, 0.75, 0.95], "val_macro_f1": 0.5, "val_loss": 1.0,
                             "size": [1, 1, 1, 2, 2, 2, 3], "test_accuracy": [0.55, 0.65, 0.45, 0.85, 0.8, 0.7, 0.9],
                             "test_macro_f1": 0.5})
    summary = {"selected_mixture": ["a", "c"], "test": {"base": {"accuracy": 0.5, "macro_f1": 0.33},
                                                        "deployed": {"accuracy": 0.8, "macro_f1": 0.6}}}
    # max_datasets 2 (the plan leaves a+b+c out) and a budget of 250 examples (a+b is 300: over)
    checked = {"constraints": {"max_datasets": 2, "budget": {"examples": 250}}, "sizes": {"a": 100, "b": 200, "c": 100}}
    planned = ["a", "b", "c", "a+b", "a+c", "b+c"]
    t = analysis.methods_table(summary=summary, mixtures=mixtures, candidates=["a", "b", "c"], choice=None, oracle_on=True,
                               seconds=lambda k, n: None, merges=5, oracle_masks=planned, checked=checked).set_index("method")
    assert t.loc["merge_to_mix", "merges"] == 5 and t.loc["oracle", "finetunes"] == 6
    assert t.loc["oracle", "mixture"] == "a+c" and t.loc["oracle", "accuracy"] == 0.8  # a+b+c ruled out, a+b over budget
    free = analysis.methods_table(summary=summary, mixtures=mixtures, candidates=["a", "b", "c"], choice=None,
                                  oracle_on=True, seconds=lambda k, n: None).set_index("method")
    assert free.loc["merge_to_mix", "merges"] == 7 and free.loc["oracle", "finetunes"] == 7
    assert free.loc["oracle", "mixture"] == "a+b+c"


def test_similarity_baselines_sort_the_table_whatever_its_row_order():
    sim = pd.DataFrame({"candidate": ["d", "a", "c", "b"], "cosine": [0.1, 0.5, 0.9, 0.5]})
    ch = choose(sim, ["a", "b", "c", "d"], 2, 0)
    assert ch["similarity_topk"] == "a+c"  # c (0.9), then a and b tie at 0.5: a by name
    assert ch["similarity_threshold"] == "a+b+c"  # at least the mean (0.5)
    assert choose(sim.iloc[::-1], ["a", "b", "c", "d"], 2, 0)["similarity_topk"] == "a+c"


def test_agreement_with_size_held_fixed():
    """The size bias of plain averaging: merged scores fall with mixture size, fine-tuned scores rise,
    while within each size both rank the masks alike. Pooled r is negative; within-size rho is 1 and
    the partial r given size is 1."""
    size = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3])
    quality = np.array([0.0, 0.1, 0.2, 0.0, 0.1, 0.2, 0.0, 0.1, 0.2])
    merged_acc = 0.9 - 0.2 * size + quality
    tuned_acc = 0.5 + 0.1 * size + 0.5 * quality
    out = analysis.by_size(merged_acc, tuned_acc, size)
    assert out["spearman_within_size"] == {"1": pytest.approx(1.0), "2": pytest.approx(1.0), "3": pytest.approx(1.0)}
    assert out["pearson_r_given_size"] == pytest.approx(1.0)
    assert stats.pearsonr(merged_acc, tuned_acc)[0] < 0
    # by hand on a noisy case: residuals about each size's mean, then Pearson
    rng = np.random.default_rng(1)
    x, y = rng.random(9), rng.random(9)
    rx = x - np.array([x[size == k].mean() for k in size])
    ry = y - np.array([y[size == k].mean() for k in size])
    out = analysis.by_size(x, y, size)
    assert out["pearson_r_given_size"] == pytest.approx(stats.pearsonr(rx, ry)[0])
    assert out["spearman_within_size"]["2"] == pytest.approx(stats.spearmanr(x[3:6], y[3:6])[0])
    # a size with fewer than 3 masks, or a constant score, has no within-size rho
    assert analysis.by_size([0.1, 0.2, 0.3, 0.5], [0.3, 0.2, 0.1, 0.5], [1, 1, 1, 2])["spearman_within_size"] == {"1": pytest.approx(-1.0)}
    assert analysis.by_size([0.1, 0.1, 0.1], [0.3, 0.2, 0.1], [1, 1, 1]) == {"spearman_within_size": {}, "pearson_r_given_size": None}


def test_correlation_reports_size_held_fixed_agreement():
    merged, oracle = tables([0.9, 0.5, 0.8, 0.1, 0.3, 0.2], [0.6, 0.5, 0.95, 0.2, 0.4, 0.1], [0.7, 0.5, 0.9, 0.3, 0.4, 0.1])
    merged["size"] = [1, 1, 1, 2, 2, 2]
    c = analysis.correlation(merged, oracle, "m0", n_boot=20)
    assert c["spearman_within_size"] == analysis.by_size(merged["accuracy"], oracle["val_accuracy"], merged["size"])["spearman_within_size"]
    assert set(c["spearman_within_size"]) == {"1", "2"} and c["pearson_r_given_size"] is not None


def test_correlation_in_another_metric_reads_that_metric_on_both_sides():
    """macro-F1 view: r over the macro-F1 columns, the oracle's best and the regret by macro-F1, while
    accuracy says the opposite (a one-class model: high accuracy, low macro-F1)."""
    merged, oracle = tables([0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6])
    merged["macro_f1"] = [0.3, 0.5, 0.6, 0.8]
    oracle["val_macro_f1"] = [0.2, 0.5, 0.7, 0.75]
    oracle["test_macro_f1"] = [0.25, 0.45, 0.72, 0.7]
    c = analysis.correlation_in("macro_f1", merged, oracle, "m0", n_boot=50)
    assert c["pearson_r"] == pytest.approx(stats.pearsonr(merged["macro_f1"], oracle["val_macro_f1"])[0])
    assert c["oracle_best"] == "m3" and c["picked"] == "m0"
    assert c["picked_test_macro_f1"] == 0.25 and c["oracle_best_test_macro_f1"] == 0.7 and c["max_test_macro_f1"] == 0.72
    assert c["regret"] == pytest.approx(0.7 - 0.25) and "regret_definition" not in c
    assert analysis.correlation(merged, oracle, "m0", n_boot=50)["regret"] == 0.0  # by accuracy m0 is the best


def test_correlation_in_loss_ranks_lowest_first_and_reports_losses_as_they_are():
    """Loss is lower-is-better: the oracle's best is the lowest val loss, the regret is the pick's test
    loss minus the best's, r is Pearson's of the losses themselves (negating both sides changes nothing)."""
    merged, oracle = tables([0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6])
    merged["loss"] = [0.30, 0.50, 0.20, 0.60]  # merged: m2 lowest
    oracle["val_loss"] = [0.35, 0.45, 0.25, 0.15]  # fine-tuned: m3 lowest on val
    oracle["test_loss"] = [0.40, 0.42, 0.30, 0.33]
    c = analysis.correlation_in("loss", merged, oracle, "m2", n_boot=50)
    assert c["pearson_r"] == pytest.approx(stats.pearsonr(merged["loss"], oracle["val_loss"])[0])
    assert c["merged_best"] == "m2" and c["oracle_best"] == "m3" and c["picked"] == "m2"
    assert c["picked_test_loss"] == pytest.approx(0.30) and c["oracle_best_test_loss"] == pytest.approx(0.33)
    assert c["min_test_loss"] == pytest.approx(0.30) and "max_test_loss" not in c
    assert c["regret"] == pytest.approx(0.30 - 0.33)  # the pick's test loss is lower than the oracle's best's
    assert c["top1_agreement"] is False


def test_retest_bounds_any_surrogate_by_the_oracles_repeatability():
    """Planted: a true score per mask, two oracles = it plus independent training noise, a perfect
    surrogate = the true score. The retest r is Pearson's of the two oracles, and the perfect
    surrogate's r with one oracle (with their mean) lands on sqrt(r) (sqrt(2r / (1 + r)))."""
    rng = np.random.default_rng(0)
    masks = [f"m{i}" for i in range(4000)]
    true = rng.uniform(0.7, 0.9, len(masks))
    a, b = (true + rng.normal(0, 0.04, len(masks)) for _ in range(2))
    oa, ob = pd.DataFrame({"mask": masks, "val_accuracy": a}), pd.DataFrame({"mask": masks, "val_accuracy": b})
    perfect = pd.DataFrame({"mask": masks, "accuracy": true})
    out = analysis.retest({"perfect": perfect, "oracle_a": oa.rename(columns={"val_accuracy": "accuracy"})}, oa, ob,
                          n_boot=50)
    r = stats.pearsonr(a, b)[0]
    assert out["retest_pearson_r"] == pytest.approx(r) and out["masks"] == 4000
    assert out["retest_pearson_r_ci95"][0] < r < out["retest_pearson_r_ci95"][1]
    assert out["mean_abs_difference"] == pytest.approx(np.abs(a - b).mean())
    got = out["merged"]["perfect"]
    assert got["vs_a"]["pearson_r"] == pytest.approx(out["ceiling_one_oracle"], abs=0.02)
    assert got["vs_mean"]["pearson_r"] == pytest.approx(out["ceiling_mean_of_two"], abs=0.02)
    assert out["merged"]["oracle_a"]["vs_a"]["pearson_r"] == pytest.approx(1.0)  # itself
    assert out["merged"]["oracle_a"]["vs_b"]["pearson_r"] == pytest.approx(r)
    with pytest.raises(ValueError, match="share 3999 masks of 4000 and 3999"):
        analysis.retest({}, oa, ob.iloc[1:])
    with pytest.raises(ValueError, match="merged scores 'short' cover 10 of 4000"):
        analysis.retest({"short": perfect.head(10)}, oa, ob)


def test_retest_selection_judges_each_oracles_pick_by_the_others_fine_tunes():
    """Planted: oracle a's val-best is m1 (m0 ties it on val accuracy and loses on macro-F1, selection's
    tie-break), oracle b's is m2; merged scores pick m0 by accuracy and m2 by loss. Each regret is the
    judging oracle's own best's test accuracy minus the pick's."""
    def oracle(val, f1, test):
        return pd.DataFrame({"mask": ["m0", "m1", "m2"], "size": [1, 1, 2], "val_accuracy": val, "val_macro_f1": f1,
                             "val_loss": [0.5, 0.5, 0.5], "test_accuracy": test})

    oa = oracle([0.80, 0.80, 0.70], [0.6, 0.7, 0.6], [0.81, 0.83, 0.90])
    ob = oracle([0.70, 0.75, 0.78], [0.6, 0.6, 0.6], [0.84, 0.79, 0.86])
    merged = pd.DataFrame({"mask": ["m0", "m1", "m2"], "size": [1, 1, 2], "accuracy": [0.9, 0.8, 0.7],
                           "macro_f1": [0.5, 0.5, 0.5], "loss": [0.6, 0.5, 0.4]})
    s = analysis.retest_selection({"x": merged}, oa, ob, "accuracy")
    assert (s["oracle_a_best"], s["oracle_b_best"]) == ("m1", "m2")
    assert s["regret_of_a_best_on_b"] == pytest.approx(0.86 - 0.79)  # b judges m1 against its own m2
    assert s["regret_of_b_best_on_a"] == pytest.approx(0.83 - 0.90)  # negative: m2 tests better on a
    assert s["merged"]["x"] == {"picked": "m0", "regret_a": pytest.approx(0.83 - 0.81), "regret_b": pytest.approx(0.86 - 0.84)}
    by_loss = analysis.retest_selection({"x": merged}, oa, ob, "loss")
    assert by_loss["merged"]["x"]["picked"] == "m2" and by_loss["merged"]["x"]["regret_b"] == 0.0


def test_singles_mean_predicts_by_the_members_single_scores_and_compare_r_pairs_two_predictors():
    """singles_mean: a mask's mean of its members' size-1 scores. compare_r, planted: the fine-tuned
    score is additive in the singles plus small noise, a second predictor is the same plus large noise;
    the additive one has the higher r and the difference's interval lies above 0."""
    merged = pd.DataFrame({"mask": ["a", "b", "c", "a+b", "a+b+c"], "size": [1, 1, 1, 2, 3],
                           "accuracy": [0.6, 0.8, 0.7, 0.1, 0.2]})
    assert analysis.singles_mean(merged).to_dict() == pytest.approx({"a": 0.6, "b": 0.8, "c": 0.7, "a+b": 0.7, "a+b+c": 0.7})
    rng = np.random.default_rng(0)
    true = rng.uniform(0.7, 0.9, 400)
    y = true + rng.normal(0, 0.01, 400)
    good, bad = true, true + rng.normal(0, 0.1, 400)
    c = analysis.compare_r(good, bad, y, n_boot=200)
    assert c["r1"] == pytest.approx(stats.pearsonr(good, y)[0]) and c["r2"] == pytest.approx(stats.pearsonr(bad, y)[0])
    assert c["difference"] == pytest.approx(c["r1"] - c["r2"]) and 0 < c["difference_ci95"][0] < c["difference"] < c["difference_ci95"][1]
    assert c["r1_ci95"][0] < c["r1"] < c["r1_ci95"][1] and c["r2_ci95"][0] < c["r2"] < c["r2_ci95"][1]
    swapped = analysis.compare_r(bad, good, y, n_boot=200)
    assert swapped["difference_ci95"] == pytest.approx([-c["difference_ci95"][1], -c["difference_ci95"][0]])


def test_paired_difference_resamples_examples_for_both_models_at_once():
    rng = np.random.default_rng(3)
    b = (rng.random(300) < 0.8).astype(int)
    same = analysis.paired_difference(b, b)
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0]  # what both share cancels exactly
    a = b.copy()
    a[np.flatnonzero(b == 0)[:12]] = 1  # a also gets 12 examples right that b got wrong, and loses 3
    a[np.flatnonzero(b == 1)[:3]] = 0
    d = analysis.paired_difference(a, b, seed=1, n_boot=4000)
    assert d["difference"] == pytest.approx(9 / 300) and (d["a_only_right"], d["b_only_right"]) == (12, 3)
    se = np.sqrt((15 / 300 - (9 / 300) ** 2) / 300)  # the paired (McNemar) standard error
    lo, hi = d["ci95"]
    assert lo < 9 / 300 < hi and (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)
    unpaired = 2 * 1.96 * np.sqrt(a.mean() * (1 - a.mean()) / 300 + b.mean() * (1 - b.mean()) / 300)
    assert hi - lo < unpaired / 2  # pairing is the point: far narrower than treating them as independent
    with pytest.raises(ValueError, match="scored on"):
        analysis.paired_difference(a, b[:-1])


def test_methods_table_gives_each_method_a_paired_interval_against_merge_to_mix():
    """With per-example test results (mixtures/<mask>.json test_correct, summary.json's correct), every
    row gets the deployed model's accuracy minus its own with a paired bootstrap interval over the same
    examples; random is compared with the mean of its runs per example; a row without per-example
    results (here: an older all_data record) stays empty rather than getting a made-up interval."""
    from merge2mix.io import pack_correct

    rng = np.random.default_rng(0)
    n = 200
    deployed = (rng.random(n) < 0.8).astype(int)
    worse = deployed.copy()
    worse[np.flatnonzero(deployed == 1)[:30]] = 0  # right on 30 fewer examples: clearly behind
    near = deployed.copy()
    near[np.flatnonzero(deployed == 1)[:2]] = 0  # 2 fewer: within noise
    runs = {"a": worse, "b": deployed, "a+b": near}
    mixtures = pd.DataFrame({"mask": list(runs), "val_accuracy": [0.6, 0.7, 0.8], "val_macro_f1": 0.5, "val_loss": 1.0,
                             "size": [1, 1, 2], "test_accuracy": [v.mean() for v in runs.values()], "test_macro_f1": 0.5,
                             "test_correct": [pack_correct(v) for v in runs.values()]})
    mixtures.loc[mixtures["mask"] == "a+b", "test_correct"] = None  # written before per-example results
    base = np.zeros(n, int)
    summary = {"selected_mixture": ["b"], "test": {
        "base": {"accuracy": 0.0, "macro_f1": 0.0, "correct": pack_correct(base)},
        "deployed": {"accuracy": deployed.mean(), "macro_f1": 0.7, "correct": pack_correct(deployed)}}}
    t = analysis.methods_table(summary=summary, mixtures=mixtures, candidates=["a", "b"],
                               choice={"k": 1, "random": ["a", "b"], "similarity_topk": "b"}, oracle_on=False,
                               seconds=lambda k, name: None).set_index("method")
    assert t.loc["single:a", "m2m_diff"] == pytest.approx(30 / n)
    assert 0 < t.loc["single:a", "m2m_diff_lo"] < 30 / n < t.loc["single:a", "m2m_diff_hi"]  # ahead beyond noise
    assert t.loc["pretrained", "m2m_diff"] == pytest.approx(deployed.mean())
    assert t.loc["similarity_topk", ["m2m_diff", "m2m_diff_lo", "m2m_diff_hi"]].tolist() == [0, 0, 0]  # the same mixture
    assert t.loc["random", "m2m_diff"] == pytest.approx(15 / n)  # against the mean of a and b per example
    assert t.loc["random", "m2m_diff_hi"] - t.loc["random", "m2m_diff_lo"] < t.loc["single:a", "m2m_diff_hi"] - t.loc["single:a", "m2m_diff_lo"]
    assert t[["m2m_diff", "m2m_diff_lo", "m2m_diff_hi"]].loc[["all_data", "merge_to_mix"]].isna().all().all()


def test_per_example_results_pack_into_one_string():
    from merge2mix.io import pack_correct, unpack_correct

    assert pack_correct([1, 0, 0, 1]) == "1001" and pack_correct([True, False]) == "10"
    assert unpack_correct(pack_correct([0, 1, 1])) == [0, 1, 1] and unpack_correct("") == []
    with pytest.raises(ValueError, match="0/1 characters"):
        unpack_correct("01x")


def test_bootstrap_of_the_coefficients_all_at_once_equals_one_scipy_call_per_resample():
    """correlation()'s intervals come from _boot_coefs (numpy, every resample at once); it must be the
    per-resample scipy loop (_boot over _coefs) to rounding: the same resamples, the same ones skipped
    (a constant side), ties on both sides (tau-b, average ranks), and more pairs than one chunk holds."""
    rng = np.random.default_rng(3)
    for n, n_boot in ((4, 300), (63, 400), (700, 12)):  # n = 4: many resamples constant on a side
        x = np.round(rng.random(n) * 8) / 8
        y = np.round((x + rng.random(n) * 0.3) * 10) / 10
        loop = analysis._boot(analysis._coefs, (x, y), np.random.default_rng(0), n_boot)
        fast = analysis._boot_coefs(x, y, np.random.default_rng(0), n_boot)
        assert len(loop) < n_boot if n == 4 else len(loop) == n_boot
        for k, v in fast.items():
            assert len(v) == len(loop), k
            np.testing.assert_allclose(v, [b[k] for b in loop], rtol=0, atol=1e-12, err_msg=f"n={n} {k}")


def test_random_baselines_are_distinct_and_never_the_pick_when_the_pool_allows():
    from merge2mix.baselines import random_draws

    cands = ["a", "b", "c", "d", "e"]
    for pick in ("a+b", "c+d", "b+e"):
        ch = choose(None, cands, 2, 3, pick=pick)
        assert len(set(ch["random"])) == 3 and pick not in ch["random"] and ch["random_distinct"] is True
    assert choose(None, cands, 2, 3, pick="a+b") == choose(None, list(reversed(cands)), 2, 3, pick="a+b")  # seeded, order-free
    # 3 candidates, k = 2: only 2 subsets besides the pick, so 3 distinct draws cannot be had: independent ones
    draws, distinct = random_draws(["a", "b", "c"], 2, 3, pick="a+b")
    assert not distinct and len(draws) == 3 and draws == [random_subset(["a", "b", "c"], 2, s) for s in range(3)]
    # under constraints: distinct and allowed
    c = {"must_include": ["a"]}
    ch = choose(None, cands, 2, 3, c, pick="a+b")
    assert len(set(ch["random"])) == 3 and all(m.startswith("a+") and m != "a+b" for m in ch["random"])
