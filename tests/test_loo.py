"""The leave-one-out headline table (merge2mix.loo.headline): values in their places, outcomes from
the paired intervals, wins / ties / losses counted per baseline, each target's trust verdict."""

import json

import pandas as pd
import pytest

from merge2mix import loo, plots


def write_run(run, rows, trust=None):
    run.mkdir(parents=True)
    pd.DataFrame(rows, columns=["method", "mixture", "accuracy", "m2m_diff", "m2m_diff_lo", "m2m_diff_hi"]).to_csv(
        run / "methods.csv", index=False)
    if trust:
        (run / "trust.json").write_text(json.dumps(trust))


@pytest.fixture
def runs(tmp_path):
    nan = float("nan")
    # target x: Merge to Mix ahead of all data beyond noise, tied with similarity, behind the single b
    write_run(tmp_path / "x", [
        ["pretrained", nan, 0.60, 0.20, 0.15, 0.25],
        ["single:b", "b", 0.85, -0.05, -0.09, -0.01],
        ["single:c", "c", 0.70, 0.10, 0.05, 0.15],
        ["all_data", "b+c", 0.72, 0.08, 0.02, 0.14],
        ["merge_to_mix", "b+c", 0.80, nan, nan, nan],
        ["similarity_topk", "b", 0.79, 0.01, -0.03, 0.05],
    ], trust={"verdict": "trusted", "pairs": 5, "pearson_r": 0.9, "pearson_r_ci95": [0.2, 1.0]})
    # target y: behind all data beyond noise; no trust.json (a run from before the trust rule)
    write_run(tmp_path / "y", [
        ["pretrained", nan, 0.50, 0.10, 0.04, 0.16],
        ["single:a", "a", 0.55, 0.05, -0.01, 0.11],
        ["single:c", "c", 0.58, 0.02, -0.02, 0.06],
        ["all_data", "a+c", 0.66, -0.06, -0.10, -0.02],
        ["merge_to_mix", "c", 0.60, nan, nan, nan],
        ["similarity_topk", "a", 0.55, 0.05, 0.01, 0.09],
    ])
    return {"y": tmp_path / "y", "x": tmp_path / "x"}  # not in target order: the tables sort


def test_headline_puts_each_value_in_its_place(runs):
    long, per_method, per_target = loo.headline(runs)
    cell = long.set_index(["target", "method"])
    assert cell.loc[("x", "all_data"), "accuracy"] == 0.72 and cell.loc[("y", "all_data"), "accuracy"] == 0.66
    assert cell.loc[("x", "all_data"), "outcome"] == "win" and cell.loc[("y", "all_data"), "outcome"] == "loss"
    assert cell.loc[("x", "similarity_topk"), "outcome"] == "tie" and cell.loc[("y", "similarity_topk"), "outcome"] == "win"
    assert cell.loc[("x", "single:b"), "outcome"] == "loss" and cell.loc[("y", "single:a"), "outcome"] == "tie"
    assert ("x", "merge_to_mix") not in cell.index
    m = per_method.set_index("method")
    assert (m.loc["all_data", "win"], m.loc["all_data", "tie"], m.loc["all_data", "loss"]) == (1, 0, 1)
    assert m.loc["all_data", "mean_accuracy"] == pytest.approx((0.72 + 0.66) / 2)
    assert m.loc["all_data", "mean_m2m_diff"] == pytest.approx((0.08 - 0.06) / 2)
    assert m.loc["merge_to_mix", "mean_accuracy"] == pytest.approx((0.80 + 0.60) / 2)
    # every single of every target pooled: x's b (loss) and c (win), y's a and c (ties)
    assert (m.loc["single (any)", "win"], m.loc["single (any)", "tie"], m.loc["single (any)", "loss"]) == (1, 2, 1)
    assert m.loc["single (any)", "targets"] == 2 and m.loc["single (any)", "rows"] == 4
    t = per_target.set_index("target")
    assert list(per_target["target"]) == ["x", "y"]
    assert t.loc["x", "merge_to_mix"] == "b+c" and t.loc["x", "best_single"] == "b" and t.loc["x", "best_single_accuracy"] == 0.85
    assert t.loc["y", "merge_to_mix"] == "c" and t.loc["y", "best_single"] == "c"
    assert t.loc["x", "trust"] == "trusted" and t.loc["x", "trust_pairs"] == 5 and pd.isna(t.loc["y", "trust"])


def test_outcome_boundaries():
    assert loo.outcome(0.001, 0.1) == "win" and loo.outcome(-0.1, -0.001) == "loss"
    assert loo.outcome(0.0, 0.1) == "tie" and loo.outcome(-0.1, 0.0) == "tie"


def test_leave_one_out_plot_draws_every_target(runs, tmp_path):
    long, _, per_target = loo.headline(runs)
    plots.leave_one_out(long, per_target, tmp_path / "loo.png")
    assert (tmp_path / "loo.png").stat().st_size > 5000
