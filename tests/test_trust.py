"""The per-run trust check (merge2mix.trust): which pairs count, the estimate and its intervals, the
verdict rule of docs/method.md on planted tables, and the line a user reads."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from merge2mix import analysis, trust


def merged_table(scores: dict[str, float], metric="accuracy"):
    return pd.DataFrame({"mask": list(scores), metric: list(scores.values())})


def test_pairs_exclude_singles_merge_duplicates_and_list_unscored_masks():
    merged = merged_table({"a": 0.9, "b": 0.8, "a+b": 0.7, "a+c": 0.6, "b+c": 0.5, "a+b+c": 0.4})
    finetuned = [
        {"mask": "a", "val": 0.91, "role": "single"},  # a single's merge is its fine-tune: no evidence
        {"mask": "a+b+c", "val": 0.55, "role": "all_data"},
        {"mask": "a+b", "val": 0.75, "role": "similarity_topk"},
        {"mask": "a+b", "val": 0.75, "role": "random"},  # the same mixture drawn twice: one pair, both roles
        {"mask": "b+c", "val": 0.52, "role": "random"},
        {"mask": "c+d", "val": 0.3, "role": "anchor"},  # fine-tuned, never merge-scored
    ]
    df, unscored = trust.pairs(merged, finetuned, "accuracy")
    assert df["mask"].tolist() == ["a+b", "a+b+c", "b+c"]  # sorted by key, not by input order
    row = df.set_index("mask")
    assert row.loc["a+b", "roles"] == ["similarity_topk", "random"]
    assert row.loc["a+b", "merged"] == 0.7 and row.loc["a+b", "finetuned"] == 0.75
    assert row.loc["a+b+c", "merged"] == 0.4 and row.loc["a+b+c", "finetuned"] == 0.55 and row.loc["a+b+c", "size"] == 3
    assert row.loc["b+c", "merged"] == 0.5 and row.loc["b+c", "finetuned"] == 0.52
    assert unscored == ["c+d"]


def planted(x, y):
    masks = [f"m{i}+n" for i in range(len(x))]
    merged = merged_table(dict(zip(masks, x)), "loss")
    finetuned = [{"mask": m, "val": v} for m, v in zip(masks, y)]
    return merged, finetuned


def test_estimate_is_pearson_and_spearman_with_the_shared_bootstrap():
    x = np.array([0.30, 0.42, 0.35, 0.50, 0.61, 0.44, 0.39])
    y = np.array([0.33, 0.40, 0.41, 0.47, 0.58, 0.39, 0.45])
    t = trust.assess(*planted(x, y), "loss")
    assert t["pairs"] == 7 and t["pearson_r"] == pytest.approx(stats.pearsonr(x, y)[0])
    assert t["spearman_rho"] == pytest.approx(stats.spearmanr(x, y)[0])
    boot = analysis._boot_coefs(x, y, np.random.default_rng(0), 2000)  # the pairs in key order = input order here
    assert t["pearson_r_ci95"] == pytest.approx(analysis._ci95(boot["pearson_r"][np.isfinite(boot["pearson_r"])]))
    lo, hi = t["pearson_r_ci95"]
    assert lo < t["pearson_r"] < hi


@pytest.mark.parametrize("x, y, verdict, extra", [
    # strong and tight: trusted
    ([1, 2, 3, 4, 5, 6, 7, 8], [1.1, 2.0, 2.9, 4.2, 5.1, 5.8, 7.2, 7.9], "trusted", 0),
    # reversed: weak (a visible warning), whatever the interval
    ([1, 2, 3, 4, 5, 6], [6, 5, 4.5, 3, 2, 1], "weak", 0),
    # unrelated: r below 0.6 is weak
    ([1, 2, 3, 4, 5, 6], [3, 1, 4, 1, 5, 2], "weak", 0),
    # three pairs: cannot tell, one more would
    ([1, 2, 3], [1, 2, 3], "cannot tell", 1),
    # a constant side: cannot tell
    ([1, 2, 3, 4], [2, 2, 2, 2], "cannot tell", 1),
])
def test_verdict_on_planted_tables(x, y, verdict, extra):
    t = trust.assess(*planted(x, y), "loss")
    assert t["verdict"] == verdict and t["extra_pairs_needed"] == extra


def test_cannot_tell_when_r_is_high_but_the_interval_reaches_zero_and_says_how_many_would_tell():
    t = trust.verdict(5, 0.7, [-0.2, 0.99])
    assert t["verdict"] == "cannot tell"
    # Fisher z: n >= 3 + (1.96 / atanh 0.7)^2 = 8.5 -> 9 pairs, 4 more than 5
    assert t["extra_pairs_needed"] == 4
    assert trust.verdict(5, 0.7, [0.01, 0.99]) == {"verdict": "trusted", "extra_pairs_needed": 0}
    assert trust.verdict(5, 0.599, [0.01, 0.99])["verdict"] == "weak"  # the threshold is on r itself
    assert trust.verdict(5, 0.6, [0.01, 0.99])["verdict"] == "trusted"
    assert trust.verdict(3, 0.99, [0.9, 1.0]) == {"verdict": "cannot tell", "extra_pairs_needed": 1}


def test_the_picks_own_pair_ranks_its_fine_tune_in_the_selection_metrics_direction():
    merged = merged_table({"a": 0.2, "a+b": 0.3, "a+c": 0.35, "a+b+c": 0.5, "b+c": 0.45}, "loss")
    finetuned = [{"mask": "a", "val": 0.25}, {"mask": "a+b+c", "val": 0.31}, {"mask": "b+c", "val": 0.5},
                 {"mask": "a+c", "val": 0.27}]
    t = trust.assess(merged, finetuned, "loss", pick={"mask": "a+b", "val": 0.28})
    # loss: lower is better; a (0.25) and a+c (0.27) beat the pick's 0.28
    assert t["pick"] == {"mask": "a+b", "merged": 0.3, "finetuned": 0.28, "finetuned_rank": 3, "of_finetuned": 5,
                         "beaten_on_val_by": ["a", "a+c"]}
    assert t["pairs"] == 4 and "deployed" in t["pairs_table"][0]["roles"]  # a+b first by key
    acc = trust.assess(merged.rename(columns={"loss": "accuracy"}), finetuned, "accuracy", pick={"mask": "a+b", "val": 0.28})
    assert acc["pick"]["finetuned_rank"] == 3 and acc["pick"]["beaten_on_val_by"] == ["a+b+c", "b+c"]


def test_the_line_warns_on_weak_and_says_how_many_more_on_cannot_tell():
    weak = trust.assess(*planted([1, 2, 3, 4, 5, 6], [6, 5, 4.5, 3, 2, 1]), "loss")
    assert trust.line(weak).startswith("weak: merged vs fine-tuned target val loss, r -0.99 [")
    assert "WARNING: on this pool the fine-tunes do not bear the merged scores out" in trust.line(weak)
    assert "from only 6 pairs, a verdict the back-test found unreliable (trust.anchors: 4 firms it up)" in trust.line(weak)
    firm = trust.assess(*planted(list(range(9)), [v + 0.1 * (v % 2) for v in range(9)]), "loss")
    assert firm["verdict"] == "trusted" and "unreliable" not in trust.line(firm)
    merged, finetuned = planted([1, 2], [1, 2])
    few = trust.assess(merged.rename(columns={"loss": "balanced_accuracy"}), finetuned, "balanced_accuracy")
    assert trust.line(few) == ("cannot tell: merged vs fine-tuned target val balanced accuracy, 2 fine-tuned mixture(s) "
                               "to compare; about 2 more would tell (trust.anchors: 2)")


def test_write_reads_the_runs_files(tmp_path):
    """Rule trust's function: masks.csv, the mixtures' records (roles from the script) and the deployed
    model's val score in summary.json."""
    merged = merged_table({"a": 0.9, "b": 0.5, "a+b": 0.8, "a+c": 0.6, "b+c": 0.4, "a+b+c": 0.7, "c": 0.3})
    merged.to_csv(tmp_path / "masks.csv", index=False)
    paths = []
    for m, v in {"a": 0.9, "b": 0.5, "c": 0.3, "a+b+c": 0.72, "b+c": 0.45, "a+c": 0.55}.items():
        paths.append(tmp_path / f"{m}.json")
        paths[-1].write_text(json.dumps({"mask": m, "val_accuracy": v}))
    summary = {"selected_mixture": ["a", "b"], "deployed_val": {"accuracy": 0.83}}
    t = trust.write(masks_csv=str(tmp_path / "masks.csv"), mixture_jsons=[str(p) for p in paths],
                    roles={"a+b+c": ["all_data"], "b+c": ["random"], "a+c": ["random", "similarity_topk"]},
                    metric="accuracy", summary=summary, out_json=str(tmp_path / "trust.json"))
    assert json.loads((tmp_path / "trust.json").read_text())["pairs"] == 4 == t["pairs"]
    assert {p["mask"]: p["roles"] for p in t["pairs_table"]} == {
        "a+b": ["deployed"], "a+b+c": ["all_data"], "a+c": ["random", "similarity_topk"], "b+c": ["random"]}
    assert t["pick"]["finetuned_rank"] == 2 and t["pick"]["of_finetuned"] == 7 and t["pick"]["beaten_on_val_by"] == ["a"]
    del summary["deployed_val"]  # a run from before the deployed model was scored on val: no pick pair
    assert "pick" not in trust.write(masks_csv=str(tmp_path / "masks.csv"), mixture_jsons=[str(p) for p in paths], roles={},
                                     metric="accuracy", summary=summary, out_json=str(tmp_path / "t2.json"))
