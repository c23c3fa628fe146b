"""Size calibration (merge2mix.calibration): the anchors, the fit, and the ranking it drives."""

import json
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from merge2mix import analysis, calibration
from merge2mix import config as config_mod
from merge2mix.errors import ConfigError, Merge2MixError
from merge2mix.masks import mask_key
from merge2mix.select import select

pytestmark = pytest.mark.usefixtures("isolated_cwd")

CANDS = ["a", "b", "c", "d", "e"]


def test_anchors_are_singles_all_data_and_seeded_pairs_or_triples():
    anchors = calibration.anchor_masks(CANDS, 3, seed=0)
    fixed = {"a", "b", "c", "d", "e", "a+b+c+d+e"}
    extra = set(anchors) - fixed
    assert fixed <= set(anchors) and len(anchors) == 9 and len(extra) == 3
    assert all(len(m.split("+")) in (2, 3) for m in extra)
    assert anchors == sorted(anchors)
    assert calibration.anchor_masks(CANDS, 0, seed=0) == sorted(fixed)
    draws = {tuple(calibration.anchor_masks(CANDS, 3, seed=s)) for s in range(10)}
    assert len(draws) > 1  # the seed matters


@settings(max_examples=30, deadline=None)
@given(st.permutations(CANDS), st.integers(0, 20), st.integers(0, 1000))
def test_anchor_draw_does_not_depend_on_candidate_order(order, extra, seed):
    assert calibration.anchor_masks(order, extra, seed) == calibration.anchor_masks(CANDS, extra, seed)


def test_too_many_anchors_is_a_one_line_config_error():
    # 3 candidates: pairs ab, ac, bc; the only triple is all the data, already an anchor -> 3 extra at most
    assert len(calibration.anchor_masks(["a", "b", "c"], 3, 0)) == 7
    with pytest.raises(ValueError, match="4 extra anchors asked, only 3"):
        calibration.anchor_masks(["a", "b", "c"], 4, 0)
    raw = {"run": "r", "target": "t", "model": {"name_or_path": "x/y"}, "task": {"labels": ["negative", "positive"]},
           "datasets": {n: {"package": {"loader": "rotten_tomatoes"}} for n in ("t", "a", "b", "c")},
           "calibration": {"mixtures": 4}}
    with pytest.raises(ConfigError, match=r"^config: calibration\.mixtures: 4 extra anchors, but 3 candidates have only 3 "):
        config_mod.validate(raw)
    raw["calibration"] = {"mixtures": 3}
    plan = config_mod.Plan(config_mod.validate(raw))
    assert plan.anchors == ["a", "a+b", "a+b+c", "a+c", "b", "b+c", "c"]
    raw["calibration"] = None
    assert config_mod.Plan(config_mod.validate(raw)).anchors == []


def test_fit_recovers_a_planted_line_and_clips_a_negative_slope():
    rng = np.random.default_rng(0)
    merged, size = rng.uniform(0.3, 0.9, 12), rng.integers(1, 6, 12)
    tuned = 0.1 + 0.7 * merged + 0.03 * (size - 1)
    p = calibration.fit(merged, size, tuned)
    assert (p["a"], p["b"], p["c"]) == pytest.approx((0.1, 0.7, 0.03), abs=1e-9)
    assert p["rmse"] == pytest.approx(0, abs=1e-9) and not p["slope_clipped"] and p["n_anchors"] == 12
    np.testing.assert_allclose(calibration.predict(p, merged, size), tuned, atol=1e-9)
    down = calibration.fit(merged, size, 0.9 - 0.5 * merged + 0.02 * (size - 1))  # merged anti-predicts
    assert down["b"] == 0.0 and down["slope_clipped"]
    X = np.column_stack([np.ones(12), size - 1])  # the refit is least squares on size alone
    (a, c), *_ = np.linalg.lstsq(X, 0.9 - 0.5 * merged + 0.02 * (size - 1), rcond=None)
    assert (down["a"], down["c"]) == pytest.approx((a, c))
    with pytest.raises(ValueError, match="at least 3 anchors"):
        calibration.fit([0.5, 0.6], [1, 2], [0.5, 0.6])


def _write(tmp_path, masks, merged, tuned):
    mp, fp = [], []
    for m, x, y in zip(masks, merged, tuned):
        names = m.split("+")
        (tmp_path / "merge_eval").mkdir(exist_ok=True)
        (tmp_path / "mixtures").mkdir(exist_ok=True)
        r = {"mask": m, "datasets": names, "size": len(names), "accuracy": x, "macro_f1": x / 2, "balanced_accuracy": x,
             "loss": 1 - x, "n": 10}
        (tmp_path / "merge_eval" / f"{m}.json").write_text(json.dumps(r))
        (tmp_path / "mixtures" / f"{m}.json").write_text(json.dumps({"mask": m, "val_accuracy": y, "val_loss": 1 - y}))
        mp.append(tmp_path / "merge_eval" / f"{m}.json")
        fp.append(tmp_path / "mixtures" / f"{m}.json")
    return mp, fp


def test_calibrated_selection_ranks_by_the_prediction(tmp_path):
    """Merged accuracy falls with size while fine-tuned accuracy rises: the plain pick is a single,
    the calibrated pick is the mask with the best predicted fine-tuned score (computed here by hand)."""
    rng = random.Random(1)
    masks = [mask_key(c) for c in (["a"], ["b"], ["c"], ["d"], ["a", "b"], ["a", "c"], ["b", "d"], ["a", "b", "c"],
                                   ["b", "c", "d"], ["a", "b", "c", "d"])]
    merged = [0.80 - 0.1 * (len(m.split("+")) - 1) + rng.uniform(-0.02, 0.02) for m in masks]
    size = [len(m.split("+")) for m in masks]  # fine-tuned: up with size, and with the merged score within a size
    tuned = [0.70 + 0.08 * (k - 1) + 0.5 * (x - (0.80 - 0.1 * (k - 1))) for k, x in zip(size, merged)]
    mp, fp = _write(tmp_path, masks, merged, tuned)
    anchors = ["a", "b", "c", "d", "a+b+c+d", "a+c"]
    cal = calibration.calibrate(merged_paths=[p for p in mp if p.stem in anchors],
                                finetuned_paths=[p for p in fp if p.stem in anchors], metric="accuracy", extra=1,
                                out_json=str(tmp_path / "calibration.json"))
    assert [r["mask"] for r in cal["anchors"]] == sorted(anchors) and cal["n_anchors"] == 6 and cal["extra_finetunes"] == 1
    assert json.loads((tmp_path / "calibration.json").read_text()) == cal
    plain = select(mp, ["a", "b", "c", "d"], tmp_path / "plain.csv", tmp_path / "plain.json")
    assert len(plain["datasets"]) == 1 and "calibration" not in plain
    best = select(mp, ["a", "b", "c", "d"], tmp_path / "masks.csv", tmp_path / "best.json",
                  calibration_path=str(tmp_path / "calibration.json"))
    by_hand = {m: cal["a"] + cal["b"] * x + cal["c"] * (len(m.split("+")) - 1) for m, x in zip(masks, merged)}
    assert best["mask"] == max(by_hand, key=by_hand.get) == "a+b+c+d"
    assert best["calibrated"] == pytest.approx(by_hand["a+b+c+d"])
    assert best["tie_break"].startswith("calibrated desc, accuracy desc")
    assert (cal["b"], cal["c"], cal["rmse"]) == pytest.approx((0.5, 0.13, 0.0), abs=1e-9)  # the planted line
    assert best["calibration"]["n_anchors"] == 6
    df = pd.read_csv(tmp_path / "masks.csv")
    assert list(df.columns)[-2:] == ["calibrated", "rank"]
    assert df["calibrated"].tolist() == pytest.approx(sorted(by_hand.values(), reverse=True))
    with pytest.raises(Merge2MixError, match="fitted for accuracy, select.metric is loss"):
        select(mp, ["a", "b", "c", "d"], tmp_path / "x.csv", tmp_path / "x.json", metric="loss",
               calibration_path=str(tmp_path / "calibration.json"))


def test_calibrated_loss_ranks_ascending(tmp_path):
    masks = ["a", "b", "a+b"]
    mp, fp = _write(tmp_path, masks, [0.6, 0.7, 0.5], [0.6, 0.7, 0.9])
    calibration.calibrate(merged_paths=mp, finetuned_paths=fp, metric="loss", extra=0, out_json=str(tmp_path / "c.json"))
    best = select(mp, ["a", "b"], tmp_path / "m.csv", tmp_path / "b.json", metric="loss", calibration_path=str(tmp_path / "c.json"))
    assert best["mask"] == "a+b" and best["tie_break"].startswith("calibrated asc, loss asc")  # lowest predicted loss


def test_mismatched_anchor_files_are_an_error(tmp_path):
    mp, fp = _write(tmp_path, ["a", "b", "a+b"], [0.6, 0.7, 0.5], [0.6, 0.7, 0.9])
    with pytest.raises(ValueError, match="merged anchors"):
        calibration.calibrate(merged_paths=mp, finetuned_paths=fp[:2], metric="accuracy", extra=0, out_json=str(tmp_path / "c.json"))


def test_methods_table_charges_merge_to_mix_for_its_anchors():
    mix = pd.DataFrame([{"mask": m, "test_accuracy": 0.5, "test_macro_f1": 0.5} for m in ("a", "b", "c", "a+b", "a+b+c")])
    summary = {"test": {"base": {"accuracy": 0.4, "macro_f1": 0.3}, "deployed": {"accuracy": 0.6, "macro_f1": 0.5}},
               "selected_mixture": ["a", "b"]}
    secs = {("finetune", "a"): 1.0, ("finetune", "b"): 2.0, ("finetune", "c"): 3.0, ("mixture", "a+b"): 10.0,
            ("mixture", "a+b+c"): 20.0, ("merges", None): 0.5, ("deploy", None): 4.0}

    def table(cal):
        t = analysis.methods_table(summary=summary, mixtures=mix, candidates=["a", "b", "c"], choice=None, oracle_on=False,
                                   seconds=lambda kind, name: secs.get((kind, name)), calibration=cal)
        return t.set_index("method").loc["merge_to_mix"]

    plain = table(None)
    assert (plain["finetunes"], plain["wall_s"]) == (4, 10.5)
    cal = {"anchors": [{"mask": m, "size": len(m.split("+"))} for m in ("a", "b", "c", "a+b", "a+b+c")]}
    with_cal = table(cal)
    assert (with_cal["finetunes"], with_cal["wall_s"]) == (6, 40.5)  # + all the data + one pair


def test_calibrated_agreement_and_its_scatter_panel(tmp_path):
    from merge2mix import plots

    masks = pd.DataFrame({"mask": ["a", "b", "c", "a+b", "a+c", "b+c"], "size": [1, 1, 1, 2, 2, 2],
                          "accuracy": [0.9, 0.8, 0.7, 0.5, 0.4, 0.3], "calibrated": [0.6, 0.5, 0.4, 0.9, 0.7, 0.8]})
    oracle = pd.DataFrame({"mask": masks["mask"], "val_accuracy": [0.6, 0.5, 0.4, 0.8, 0.75, 0.7]})
    c = analysis.calibrated_agreement(masks, oracle, "accuracy", ["a", "b", "c"])
    assert c["masks"] == 6 and c["anchors"] == 3
    assert c["pearson_r"] == pytest.approx(np.corrcoef(masks["calibrated"], oracle["val_accuracy"])[0, 1])
    assert c["pearson_r_not_anchors"] == pytest.approx(np.corrcoef([0.9, 0.7, 0.8], [0.8, 0.75, 0.7])[0, 1])
    assert c["spearman_rho_not_anchors"] == pytest.approx(0.5)
    df = masks.merge(oracle, on="mask")
    corr = {"pearson_r": 0.1, "spearman_rho": 0.1, "kendall_tau": 0.1, "calibrated": c}
    plots.merged_vs_finetuned(df, "a+b", corr, tmp_path / "s.png", calibrated=df.rename(columns={"val_accuracy": "finetuned"}))
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size[0] > 1.5 * Image.open(tmp_path / "s.png").size[1]  # two panels side by side
