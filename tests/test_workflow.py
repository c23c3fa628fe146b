"""The workflow as a user runs it: snakemake on the tiny BERT + in-repo datasets, and the embedded
default's DAG (dry run)."""

import json
import re
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import FIXTURES, REPO, WORKFLOW_ENV, snakemake, tiny_config, write_config


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    cfg = write_config(tiny_config(tiny_model, work / "results", oracle=True), work / "tiny.yaml")
    first = snakemake(work, "--cores", "2", "--configfile", str(cfg))
    return work, cfg, first


def test_tiny_workflow_end_to_end(tiny_run):
    work, cfg, r = tiny_run
    assert r.returncode == 0, r.stderr[-4000:]
    run = work / "results" / "tiny"
    for f in ["masks.csv", "best_mask.json", "summary.json", "summary.md", "base/model.safetensors",
              "deploy/model.safetensors", "deploy/train.json"]:
        assert (run / f).is_file(), f
    for name in ("books", "food", "films"):
        rec = json.loads((run / "finetune" / name / "train.json").read_text())
        assert rec["datasets"] == [name] and rec["train_loss"] and rec["data_sha256"][name]
        assert (run / "benchmarks" / "finetune" / f"{name}.tsv").is_file()
    for name in ("phones", "books", "food", "films"):
        assert {p.name for p in (run / "data" / name).iterdir()} >= {"train.parquet", "val.parquet", "test.parquet", "meta.json"}

    masks = pd.read_csv(run / "masks.csv", dtype={"bitstring": str})
    assert len(masks) == 7 and set(masks["mask"]) == {
        "books", "food", "films", "books+food", "books+films", "films+food", "books+films+food"}
    assert masks["bitstring"].str.len().eq(3).all() and (masks["n"] == 15).all()
    cands = ["books", "food", "films"]  # config order
    assert all(b == "".join("1" if c in m.split("+") else "0" for c in cands) for m, b in zip(masks["mask"], masks["bitstring"]))

    # Independently of select.py: read every mask's result file and order by the documented tie-break.
    scored = [json.loads(p.read_text()) for p in (run / "merge_eval").glob("*.json")]
    assert len(scored) == 7 and all(r["mask"] == "+".join(r["datasets"]) for r in scored)
    by_tie_break = sorted(scored, key=lambda r: (-r["accuracy"], -r["macro_f1"], r["loss"], r["size"], r["mask"]))
    assert masks["mask"].tolist() == [r["mask"] for r in by_tie_break]
    assert masks["accuracy"].tolist() == [r["accuracy"] for r in by_tie_break]

    best = json.loads((run / "best_mask.json").read_text())
    assert best["mask"] == by_tie_break[0]["mask"] and best["masks_scored"] == 7
    assert best["operator"] == {"method": "average", "params": {}} and all(r["operator"] == best["operator"] for r in scored)
    assert best["metric"] == "accuracy" and masks["balanced_accuracy"].between(0, 1).all()
    assert best["val_accuracy"] == max(r["accuracy"] for r in scored)  # the pick has the top val score
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selected_mixture"] == best["datasets"]
    assert set(summary["test"]) == {"base", "merged_best", "deployed"}
    assert all(m["n"] == 15 for m in summary["test"].values())
    deploy = json.loads((run / "deploy" / "train.json").read_text())
    assert deploy["datasets"] == best["datasets"] and deploy["examples"] == 20 * len(best["datasets"])
    assert "Selected mixture" in (run / "summary.md").read_text()

    # trust.json: with the oracle on, every non-single mask is a pair (3 pairs + all the data), each once,
    # the pick's own pair included; the deployed model's val score is the picked mask's mixture fine-tune's.
    trust = json.loads((run / "trust.json").read_text())
    oracle = {o["mask"]: o for o in map(json.loads, map(Path.read_text, (run / "mixtures").glob("*.json")))}
    assert trust["metric"] == "accuracy" and trust["pairs"] == 4
    table = {p["mask"]: p for p in trust["pairs_table"]}
    assert set(table) == {m for m in oracle if "+" in m}
    merged = dict(zip(masks["mask"], masks["accuracy"]))
    assert all(p["merged"] == merged[m] and p["finetuned"] == oracle[m]["val_accuracy"] for m, p in table.items())
    assert "all_data" in table["books+films+food"]["roles"]
    assert summary["deployed_val"]["accuracy"] == oracle[best["mask"]]["val_accuracy"]
    assert trust["verdict"] in {"trusted", "weak", "cannot tell"}
    assert f"Trust: {trust['verdict']}" in (run / "summary.md").read_text()

    # every result file, the shared store's too, carries the umask (was 0600 whatever the umask: mkstemp)
    from merge2mix.io import umask

    want = 0o666 & ~umask()
    files = [p for p in [*run.rglob("*"), *(work / "results" / "store").rglob("*")] if p.is_file()]
    assert len(files) > 50 and [p for p in files if stat.S_IMODE(p.stat().st_mode) != want] == []
    assert [d for d in run.rglob("*") if d.is_dir() and not any(d.iterdir())] == []  # no empty work/ leftovers


def test_evidence_bench_copies_a_finished_oracle_run(tiny_run, tmp_path, monkeypatch):
    """bench/evidence.py on the tiny oracle run: Snakemake finds it done, and the commit-ready copy has
    every file, one oracle row per mask and the command a reader can rerun; a second call refuses to
    overwrite it."""
    sys.path.insert(0, str(REPO / "bench"))
    import evidence

    work, cfg, r = tiny_run
    assert r.returncode == 0, r.stderr[-4000:]
    monkeypatch.setenv("PATH", WORKFLOW_ENV["PATH"])  # the stub scontrol: no Slurm plugin wait
    assert evidence.main(["--config", str(cfg), "--workdir", str(work), "--out-root", str(tmp_path)]) == 0
    out = tmp_path / "evidence-tiny"
    for f in ("correlation.json", "methods.csv", "masks.csv", "best_mask.json", "summary.md", "oracle.csv", "run.json"):
        assert (out / f).is_file(), f
    assert len(pd.read_csv(out / "oracle.csv")) == 7 and list((out / "plots").glob("*.png"))
    assert json.loads((out / "run.json").read_text())["command"] == f"python -m snakemake --cores 2 --configfile {cfg} --config oracle=True"
    with pytest.raises(SystemExit, match="exists"):
        evidence.main(["--config", str(cfg), "--workdir", str(work), "--out-root", str(tmp_path)])

    # bench/surrogates.py on that evidence: every mask scored again under two operators; the average's
    # scores are the run's own merged scores, and the table holds one row per operator and metric.
    import surrogates

    assert surrogates.main(["--targets", str(cfg), "--surrogates", "average", "ta_sqrt", "--calibration", "0",
                            "--anchor-draws", "2", "--evidence-root", str(tmp_path), "--workdir", str(work),
                            "--out", str(tmp_path / "sur")]) == 0
    table = pd.read_csv(tmp_path / "sur" / "surrogates.csv")
    assert len(table) == 2 * 4 and set(table["surrogate"]) == {"average", "ta_sqrt"} and table["pearson_r"].between(-1, 1).all()
    assert set(table["metric"]) == {"accuracy", "macro_f1", "balanced_accuracy", "loss"}
    assert (tmp_path / "sur" / "surrogates" / "pooled_r.png").is_file()
    # --cached-only scores nothing: ta_1, never scored for this run, is left out of the table, not scored
    assert surrogates.main(["--targets", str(cfg), "--surrogates", "average", "ta_1", "--cached-only", "--calibration", "0",
                            "--evidence-root", str(tmp_path), "--workdir", str(work), "--out", str(tmp_path / "sur")]) == 0
    assert set(pd.read_csv(tmp_path / "sur" / "surrogates.csv")["surrogate"]) == {"average"}
    assert set(pd.read_csv(tmp_path / "sur" / "surrogates" / "tiny-scores.csv")["surrogate"]) == {"average", "ta_sqrt"}
    assert json.loads((tmp_path / "sur" / "surrogates" / "run.json").read_text())["own_operator_vs_committed_masks_csv"] == {
        "tiny": {"surrogate": "average", "max_abs_diff": 0.0}}  # the tiny run scores with the average


def test_evidence_baselines_oracle_and_report(tiny_run):
    work, cfg, r = tiny_run
    assert r.returncode == 0, r.stderr[-4000:]
    run = work / "results" / "tiny"
    oracle = [json.loads(p.read_text()) for p in (run / "mixtures").glob("*.json")]
    assert len(oracle) == 7 and {o["size"] for o in oracle} == {1, 2, 3}
    assert all(o["trained"] == (o["size"] > 1) for o in oracle)  # singletons reuse the per-dataset fine-tune
    assert not list((run / "mixtures").rglob("*.safetensors"))  # mixture checkpoints are not kept

    methods = pd.read_csv(run / "methods.csv")
    assert methods["method"].tolist() == ["pretrained", "single:books", "single:films", "single:food", "all_data",
                                          "merge_to_mix", "similarity_topk", "similarity_threshold", "random", "oracle"]
    m = methods.set_index("method")
    best = json.loads((run / "best_mask.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert m.loc["merge_to_mix", "mixture"] == best["mask"]
    assert m.loc["merge_to_mix", "accuracy"] == summary["test"]["deployed"]["accuracy"]
    assert m.loc["merge_to_mix", "finetunes"] == 4 and m.loc["merge_to_mix", "merges"] == 7
    assert m.loc["oracle", "finetunes"] == 7 and m.loc["random", "runs"] == 3
    assert m.loc["merge_to_mix", "wall_s"] > 0 and m.loc["all_data", "wall_s"] > 0
    # The deployment fine-tune is the picked mask's mixture fine-tune: same data, seed, hyper-parameters.
    picked = next(o for o in oracle if o["mask"] == best["mask"])
    assert picked["test_accuracy"] == summary["test"]["deployed"]["accuracy"]
    assert picked["test_correct"] == summary["test"]["deployed"]["correct"]  # example by example
    # Every other method against the deployed model, paired over the same test examples.
    n_test = summary["test"]["deployed"]["n"]
    assert all(len(o["test_correct"]) == n_test == o["test_n"] for o in oracle)
    assert all(np.mean([c == "1" for c in o["test_correct"]]) == pytest.approx(o["test_accuracy"]) for o in oracle)
    others = m.drop(index="merge_to_mix")
    assert others["m2m_diff"].notna().all() and pd.isna(m.loc["merge_to_mix", "m2m_diff"])
    assert np.allclose(others["m2m_diff"], m.loc["merge_to_mix", "accuracy"] - others["accuracy"], atol=1e-6)
    assert (others["m2m_diff_lo"] <= others["m2m_diff"] + 1e-9).all() and (others["m2m_diff"] <= others["m2m_diff_hi"] + 1e-9).all()

    choice = json.loads((run / "baselines" / "masks.json").read_text())
    assert choice["k"] == len(best["datasets"]) and len(choice["random"]) == 3
    assert all(len(m.split("+")) == choice["k"] for m in choice["random"])
    sim = pd.read_csv(run / "baselines" / "similarity.csv")
    assert sorted(sim["candidate"]) == ["books", "films", "food"] and sim["cosine"].between(-1, 1).all()
    top_k = sim.sort_values(["cosine", "candidate"], ascending=[False, True])["candidate"].head(choice["k"])
    assert choice["similarity_topk"] == "+".join(sorted(top_k))
    at_least_mean = sim[sim["cosine"] >= sim["cosine"].mean()]["candidate"]
    assert choice["similarity_threshold"] == "+".join(sorted(at_least_mean))

    # correlation.json recomputed from the per-mask files: merged val accuracy vs fine-tuned val accuracy.
    merged = {r["mask"]: r["accuracy"] for r in (json.loads(p.read_text()) for p in (run / "merge_eval").glob("*.json"))}
    tuned = {o["mask"]: o for o in oracle}
    corr = json.loads((run / "correlation.json").read_text())
    keys = sorted(merged)
    x, y = [merged[k] for k in keys], [tuned[k]["val_accuracy"] for k in keys]
    assert corr["masks"] == 7 and corr["picked"] == best["mask"]
    assert corr["pearson_r"] == pytest.approx(float(pd.Series(x).corr(pd.Series(y))), abs=1e-9)
    assert corr["spearman_rho"] == pytest.approx(float(pd.Series(x).corr(pd.Series(y), method="spearman")), abs=1e-9)
    oracle_best = min(oracle, key=lambda o: (-o["val_accuracy"], -o["val_macro_f1"], o["val_loss"], o["size"], o["mask"]))
    assert corr["oracle_best"] == oracle_best["mask"]
    assert corr["regret"] == pytest.approx(oracle_best["test_accuracy"] - tuned[best["mask"]]["test_accuracy"])
    for png in ("methods", "accuracy_vs_size", "single_transfer", "merged_vs_finetuned"):
        assert (run / "plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rep = snakemake(work, "--report", str(work / "report.html"), "--configfile", str(cfg))
    assert rep.returncode == 0, rep.stderr[-3000:]
    html = (work / "report.html").read_text(errors="replace")
    assert "merged_vs_finetuned.png" in html and "methods.png" in html
    opening = (run / "report.rst").read_text()  # the report opens on the answer (rules/evidence.smk, report_text)
    assert f"**Selected mixture: {' + '.join(best['datasets'])}**" in opening and "merge_to_mix" in opening
    assert f"Selected mixture: {' + '.join(best['datasets'])}" in html


def _pids(path):
    return set(re.findall(r" in process (\d+)", path.read_text()))


def test_torch_jobs_run_in_snakemakes_process(tiny_run):
    """Scoring the singles, similarity, evaluate and, at --cores 2 with 2-thread fine-tunes (nothing
    could run beside them), the training jobs too are `run:` jobs that share the merge_eval jobs'
    process under the workflow profile's --force-use-threads (torch imported once)."""
    work, _, r = tiny_run
    assert r.returncode == 0
    logs = work / "results" / "tiny" / "logs"
    warm = set().union(*(_pids(p) for p in (logs / "merge_eval").glob("*.log")))
    assert len(warm) == 1
    for name in ("books", "food", "films"):
        assert _pids(logs / "mixture_finetune" / f"{name}.log") == warm, name
        assert _pids(logs / "finetune" / f"{name}.log") == warm, name
    assert _pids(logs / "similarity.log") == warm and _pids(logs / "evaluate.log") == warm
    assert _pids(logs / "mixture_finetune" / "books+food.log") == warm and _pids(logs / "deploy.log") == warm
    # Snakemake's process does not gather threads as jobs finish (runtime.one_wake_up_timer; stock
    # Snakemake 9 keeps one more wake-up timer thread per finished job)
    counts = [int(n) for p in logs.rglob("*.log") for n in re.findall(r" in process \d+ \((\d+) Python threads\)", p.read_text())]
    assert len(counts) >= 15 and max(counts) <= min(counts) + 3, sorted(counts)


def test_training_with_cores_to_spare_runs_in_processes_of_its_own_bit_identical(tiny_run, tiny_model, tmp_path):
    """--cores 4 with 2-thread fine-tunes: each fine-tune trains in a fresh process (jobs.spawn), so
    two can run side by side; the weights are bit-identical to the tiny run's, trained in Snakemake's
    process (same seed, same threads)."""
    import hashlib

    work, _, first = tiny_run
    assert first.returncode == 0
    cfg = write_config(tiny_config(tiny_model, tmp_path / "results"), tmp_path / "tiny.yaml")
    run, ref = tmp_path / "results" / "tiny", work / "results" / "tiny"
    two = ("books", "films")
    r = snakemake(tmp_path, *(str(run / "finetune" / n / "model.safetensors") for n in two), "--cores", "4",
                  "--configfile", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    pids = [_pids(run / "logs" / "finetune" / f"{n}.log") for n in two]
    assert all(len(p) == 1 for p in pids) and len(set().union(*pids)) == 2, pids  # one process each
    for name in two:
        digest = [hashlib.sha256((r / "finetune" / name / "model.safetensors").read_bytes()).digest() for r in (run, ref)]
        assert digest[0] == digest[1], name


def test_second_run_does_nothing(tiny_run):
    work, cfg, first = tiny_run
    assert first.returncode == 0
    before = {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*") if p.is_file()}
    r = snakemake(work, "--cores", "2", "--configfile", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Nothing to be done" in r.stdout + r.stderr
    after = {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*") if p.is_file()}
    assert after == before


def test_bad_config_fails_at_parse_time_with_one_line(tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, tmp_path / "results")
    cfg["train"]["lr"] = "fast"
    r = snakemake(tmp_path, "-n", "--configfile", str(write_config(cfg, tmp_path / "bad.yaml")))
    assert r.returncode != 0
    lines = [l for l in (r.stdout + r.stderr).splitlines() if "merge2mix: error" in l]
    assert lines == ["merge2mix: error: config: train.lr: 'fast' is not of type 'number'"]


def test_embedded_default_dag(tmp_path):
    r = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config.yaml"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
    assert counts["prepare_data"] == 7 and counts["finetune"] == 6 and counts["merge_eval"] == 63
    assert counts["select_mixture"] == 1 and counts["deploy"] == 1 and counts["evaluate"] == 1
    # the trust check costs no fine-tune: all the data's is the only mixture fine-tune planned before the
    # baselines' checkpoint (trust.anchors: 0)
    assert counts["trust"] == 1 and counts["mixture_finetune"] == 1


def test_cli_check_and_show(tiny_run, capsys):
    from merge2mix.cli import main

    work, cfg, first = tiny_run
    assert main(["check", str(cfg)]) == 0
    assert "target phones, 3 candidates, 7 masks" in capsys.readouterr().out
    assert main(["show", str(cfg)]) == 0
    out = capsys.readouterr().out
    best = json.loads((work / "results" / "tiny" / "best_mask.json").read_text())
    assert f"selected mixture:  {' + '.join(best['datasets'])}" in out
    assert f"best of 7 merged models by target val accuracy {best['val_accuracy']:.4f})" in out
    assert "surrogate:         average merge of the per-dataset fine-tunes, masks ranked by target val accuracy" in out
    trust = json.loads((work / "results" / "tiny" / "trust.json").read_text())
    assert f"trust:             {trust['verdict']}: merged vs fine-tuned target val accuracy" in out
    assert "not the recommended surrogate for text_classification: head trained" in out  # the tests' own settings
    report = work / "results" / "tiny" / "report.html"
    report.write_text("<html></html>")
    import os

    os.utime(report, (1, 1))  # older than every result: a plain `snakemake` rerun does not rebuild it
    assert main(["show", str(cfg)]) == 0
    assert "report.html is older than the results it shows: rebuild it with `make report" in capsys.readouterr().out
    report.touch()
    assert main(["show", str(cfg)]) == 0
    assert "older than the results" not in capsys.readouterr().out
    report.unlink()
    methods = pd.read_csv(work / "results" / "tiny" / "methods.csv").set_index("method")
    d = methods.loc["all_data"]
    assert f"all_data {d['m2m_diff']:+.3f} [{d['m2m_diff_lo']:.3f}, {d['m2m_diff_hi']:.3f}]" in out.split("deployed minus:")[1]
    bad = work / "bad.yaml"
    bad.write_text("target: [\n")
    assert main(["check", str(bad)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def _with_toys(tiny_model, work):
    cfg = tiny_config(tiny_model, work / "results", oracle=True)
    cfg["datasets"]["toys"] = {**cfg["datasets"]["books"], "local": {"path": str(FIXTURES / "toys.csv")}}
    return write_config(cfg, work / "bigger.yaml")


def _planned_jobs(out: str) -> dict[str, list[str]]:
    """rule -> the wildcards line of each job a dry run plans ('' for a job without wildcards)."""
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", out):
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block.strip())
        if m:
            w = re.search(r"^\s*wildcards: (.*)$", block, re.M)
            jobs.setdefault(m.group(1), []).append(w.group(1).strip() if w else "")
    return jobs


def test_adding_a_candidate_reruns_one_finetune_and_only_new_masks(tiny_run, tiny_model):
    work, cfg_path, first = tiny_run
    assert first.returncode == 0
    r = snakemake(work, "-n", "--cores", "2", "--configfile", str(_with_toys(tiny_model, work)))
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
    jobs = _planned_jobs(out)
    assert sum(len(v) for v in jobs.values()) == counts["total"], (jobs, counts)
    assert jobs["prepare_data"] == ["name=toys"] and jobs["finetune"] == ["name=toys"]
    with_toys = {"toys", "books+toys", "food+toys", "films+toys", "books+food+toys", "books+films+toys",
                 "films+food+toys", "books+films+food+toys"}  # 15 masks now, the 7 without toys already scored
    assert {w.removeprefix("mask=") for w in jobs["merge_eval"]} == with_toys
    assert {w.removeprefix("mask=") for w in jobs["mixture_finetune"]} == with_toys - {"toys"}  # the oracle's new mixtures
    assert jobs["single_scores"] == ["mask=toys"]  # toys alone: its fine-tune, scored
    # Nothing else: no data, theta_0, fine-tune, mask score or oracle mixture of the old candidates;
    # only the one-job reducers over all candidates (selection, baselines, deployment, reports).
    reducers = {"similarity", "select_mixture", "baseline_masks", "correlation", "deploy", "evaluate", "methods", "trust",
                "report_text", "all"}
    assert set(jobs) == {"prepare_data", "finetune", "merge_eval", "mixture_finetune", "single_scores"} | reducers, sorted(jobs)
    assert all(jobs[r] == [""] for r in reducers)


def test_a_training_seed_refits_the_fine_tunes_on_the_same_data_and_theta_0(tiny_run, tiny_model):
    """train.seed (a retest of the oracle): every fine-tune and what depends on it is planned again;
    the splits, theta_0 and nothing else upstream of training are kept."""
    work, _, first = tiny_run
    assert first.returncode == 0
    cfg = tiny_config(tiny_model, work / "results", oracle=True)
    cfg["train"]["seed"] = 1
    r = snakemake(work, "-n", "--cores", "2", "--configfile", str(write_config(cfg, work / "retest.yaml")))
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = _planned_jobs(r.stdout + r.stderr)
    assert sorted(jobs["finetune"]) == ["name=books", "name=films", "name=food"]
    assert len(jobs["merge_eval"]) == 7 and len(jobs["mixture_finetune"]) == 4 and "deploy" in jobs
    assert not {"prepare_data", "init_model"} & set(jobs), sorted(jobs)


def _hashes(root):
    import hashlib

    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _bad_inputs(tmp: Path):
    """(name, edit of the tiny config, expected one-line message) — run against a finished run."""
    empty = tmp / "empty.csv"
    empty.write_text("review,stars\n")
    one = tmp / "one_class.csv"
    one.write_text("review,stars\n" + "".join(f"the toy was good {i},pos\n" for i in range(20)))
    toys = {"local": {"path": str(FIXTURES / "toys.csv")}, "columns": {"text": "review", "label": "stars"},
            "label_map": {"neg": "negative", "pos": "positive"}}
    return [
        ("unknown key", lambda c: c.update(learning_rate=1), "config: <top level>: Additional properties are not allowed ('learning_rate'"),
        ("one candidate", lambda c: c.update(candidates=["books"]), "config: candidates: 1 candidate(s); a mixture needs at least 2"),
        # Snakemake reads --configfile itself, before the workflow runs: its own message (one line).
        ("malformed YAML", "target: [phones\n", "Config file is not valid JSON or YAML"),
        ("duplicate key", "run: tiny\nrun: other\n", "line 2: duplicate key 'run'"),
        ("missing model", lambda c: c.update(model={"name_or_path": str(tmp / "nope")}), "config: model.name_or_path: no such directory"),
        ("path escapes results", lambda c: c.update(run="../../etc"), "config: run: '../../etc' does not match"),
        ("labels differ", lambda c: c["datasets"].update(toys={**toys, "label_map": {}}), "dataset toys: labels ['neg', 'pos'] are not task labels"),
        ("wrong column", lambda c: c["datasets"].update(toys={**toys, "columns": {"text": "body", "label": "stars"}}), "dataset toys: no column 'body' for text"),
        ("empty dataset", lambda c: c["datasets"].update(toys={**toys, "local": {"path": str(empty)}}), "dataset toys: only 0 rows left"),
        ("one class", lambda c: c["datasets"].update(toys={**toys, "local": {"path": str(one)}}), "dataset toys: only one class"),
    ]


def test_bad_input_fails_with_one_line_and_keeps_earlier_results(tiny_run, tiny_model, tmp_path):
    work, _, first = tiny_run
    assert first.returncode == 0
    before = _hashes(work / "results")
    for name, edit, message in _bad_inputs(tmp_path):
        bad = tmp_path / "bad.yaml"
        if isinstance(edit, str):
            bad.write_text(edit)
        else:
            cfg = tiny_config(tiny_model, work / "results", oracle=True)
            edit(cfg)
            write_config(cfg, bad)
        r = snakemake(work, "--cores", "2", "--configfile", str(bad))
        out = r.stdout + r.stderr
        assert r.returncode != 0, name
        ours = name != "malformed YAML"
        assert any(message in l and (l.startswith("merge2mix: error: ") or not ours) for l in out.splitlines()), (name, out[-2000:])
    after = _hashes(work / "results")
    assert {p: h for p, h in after.items() if p in before} == before  # nothing computed earlier changed


def test_two_targets_over_one_pool_fine_tune_each_dataset_once(tiny_run, tiny_model):
    work, _, first = tiny_run
    assert first.returncode == 0
    cfg = tiny_config(tiny_model, work / "results", run="tiny-books", target="books")
    r = snakemake(work, "--cores", "2", "--configfile", str(write_config(cfg, work / "books.yaml")), "--until", "finetune")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = {name: json.loads((work / "results" / "tiny-books" / "finetune" / name / "train.json").read_text())
            for name in ("phones", "food", "films")}
    assert "reused_from_store" not in runs["phones"]  # a new dataset for this pool: trained
    for name in ("food", "films"):  # fine-tuned for the phones target already: reused
        assert runs[name]["reused_from_store"].startswith(str(work / "results" / "store" / "finetune"))
        first_run = json.loads((work / "results" / "tiny" / "finetune" / name / "train.json").read_text())
        assert runs[name]["weights_sha256"] == first_run["weights_sha256"]


@pytest.mark.slow
def test_killed_anywhere_resumes_to_the_same_results(tiny_run, tiny_model, tmp_path):
    """SIGKILL the whole workflow three times -- right after a fine-tune's first training checkpoint,
    in the middle of the merge_eval phase (one process per job: the naive path), between
    select_mixture's two outputs -- and rerun with --rerun-incomplete each time. The killed fine-tune
    resumes from its checkpoint and ends bit-identical to the uninterrupted run's; nothing that had
    finished is redone; masks.csv (fast path after naive) and the summary equal the uninterrupted
    run's; afterwards a dry run has nothing to do."""
    import base64
    import hashlib
    import os
    import signal
    import subprocess
    import sys
    import time

    work, _, first = tiny_run
    assert first.returncode == 0
    cfg = write_config(tiny_config(tiny_model, tmp_path / "results", checkpoint_every_steps=10), tmp_path / "tiny.yaml")
    run, ref = tmp_path / "results" / "tiny", work / "results" / "tiny"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "2", "--configfile", str(cfg), "--rerun-incomplete"]  # 2 cores as the reference: threads change float sums
    env = WORKFLOW_ENV

    def unlock():
        assert snakemake(tmp_path, "--unlock", "--configfile", str(cfg)).returncode == 0

    def killed_at(point, *args):  # a failpoint SIGKILLs Snakemake's process group from inside a job
        p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=900, start_new_session=True,
                           env={**env, "MERGE2MIX_FAILPOINTS": f"{point}=kill"})
        assert p.returncode == -9, (p.returncode, p.stderr[-3000:])
        unlock()

    def finished_outputs():
        # A job killed after its file appeared but before Snakemake recorded it as finished is still
        # marked incomplete (.snakemake/incomplete/<base64 of the path>) and rightly rerun: not finished.
        marks = tmp_path / ".snakemake" / "incomplete"
        pending = {os.path.abspath(tmp_path / base64.urlsafe_b64decode(m.name).decode())
                   for m in marks.rglob("*") if m.is_file()} if marks.exists() else set()
        files = [*run.glob("finetune/*/model.safetensors"), *run.glob("merge_eval/*.json")]
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files if str(p) not in pending}

    def untouched_since_first_seen(done):
        """Every output finished at an earlier kill still has the mtime and bytes it had when first
        seen finished; then the newly finished ones are added (their first sighting is kept)."""
        redone = [p.name for p, (mtime, data) in done.items() if p.stat().st_mtime_ns != mtime or p.read_bytes() != data]
        assert redone == [], redone
        for p, first_seen in finished_outputs().items():
            done.setdefault(p, first_seen)

    # 1. mid-finetune
    killed_at("finetune.checkpoint_saved", "--until", "finetune")
    assert list((run / "work").rglob("model.safetensors")), "the kill should leave a training checkpoint behind"
    done = finished_outputs()
    assert len(done) < 3

    # 2. mid-merge_eval phase, naive path (--workflow-profile none: one process per mask job)
    proc = subprocess.Popen(cmd + ["--workflow-profile", "none", "--until", "select_mixture"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and len(list(run.glob("merge_eval/*.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    unlock()
    untouched_since_first_seen(done)
    assert 3 + 2 <= len(done) < 3 + 7, "the kill should land mid-phase"

    # 3. between select_mixture's outputs (fast path from here on)
    killed_at("select.between_outputs")
    assert (run / "masks.csv").exists() and not (run / "best_mask.json").exists()
    untouched_since_first_seen(done)
    assert len(done) == 3 + 7

    # up to the summary: the baselines (methods.csv) have nothing to resume here and are tested above
    r = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg), "--rerun-incomplete", "--until", "evaluate")
    assert r.returncode == 0, r.stderr[-3000:]
    untouched_since_first_seen(done)
    again = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(cfg), "--until", "evaluate")
    assert re.search(r"^total\s+0$", again.stdout + again.stderr, re.M), again.stdout[-3000:]  # no job left

    resumed = [json.loads(p.read_text()).get("resumed_from_step") for p in run.glob("finetune/*/train.json")]
    assert 10 in resumed, resumed
    for name in ("books", "films", "food"):  # bit-identical to the uninterrupted run, resumed or not
        assert (hashlib.sha256((run / "finetune" / name / "model.safetensors").read_bytes()).digest()
                == hashlib.sha256((ref / "finetune" / name / "model.safetensors").read_bytes()).digest()), name
    pd.testing.assert_frame_equal(pd.read_csv(run / "masks.csv", dtype={"bitstring": str}),
                                  pd.read_csv(ref / "masks.csv", dtype={"bitstring": str}))
    ours, theirs = json.loads((run / "summary.json").read_text()), json.loads((ref / "summary.json").read_text())
    for key in ("selected_mixture", "selected_bitstring", "selection_val_accuracy", "test"):
        assert ours[key] == theirs[key], key


def test_merge_operator_and_selection_metric_from_the_config(tiny_run, tiny_model):
    """merge.method task_arithmetic with lambda(k) = 0.5 k^-0.5 and select.metric balanced_accuracy:
    the fine-tunes come from the store, every mask is scored with the operator (recorded in its result
    and in best_mask.json), a mask's score is what engine.score gives for that operator directly,
    and the pick is the best balanced accuracy."""
    from merge2mix import engine
    from merge2mix.job import Job

    work, _, first = tiny_run
    assert first.returncode == 0
    cfg = tiny_config(tiny_model, work / "results", run="tiny-ta",
                      merge={"method": "task_arithmetic", "lambda": 0.5, "lambda_power": 0.5},
                      select={"metric": "balanced_accuracy"})
    r = snakemake(work, "--cores", "2", "--configfile", str(write_config(cfg, work / "ta.yaml")), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    run = work / "results" / "tiny-ta"
    op = {"method": "task_arithmetic", "params": {"lam": 0.5, "power": 0.5}}
    scored = {p.stem: json.loads(p.read_text()) for p in (run / "merge_eval").glob("*.json")}
    assert len(scored) == 7 and all(v["operator"] == op for v in scored.values())
    best = json.loads((run / "best_mask.json").read_text())
    assert best["operator"] == op and best["metric"] == "balanced_accuracy"
    top = min(scored.values(), key=lambda r: (-r["balanced_accuracy"], -r["accuracy"], -r["macro_f1"], r["loss"], r["size"], r["mask"]))
    assert best["mask"] == top["mask"]
    engine.clear_cache()
    job = Job(base_dir=str(run / "base"), task=cfg["task"], batch_size=16, device="cpu", threads=2)
    direct = engine.score(job, {n: str(run / "finetune" / n / "model.safetensors") for n in ("books", "films")},
                          str(run / "data" / "phones" / "val.parquet"), operator=op)
    assert (direct["accuracy"], direct["loss"]) == (scored["books+films"]["accuracy"], scored["books+films"]["loss"])
    average = json.loads((work / "results" / "tiny" / "merge_eval" / "books+films.json").read_text())
    assert average["loss"] != scored["books+films"]["loss"]  # a different model from the average

@pytest.mark.slow
def test_unshared_run_resumes_deploy_and_mixture_finetunes(tiny_run, tiny_model, tmp_path):
    """share_finetunes: false writes no store, and the two fine-tunes the kill test does not reach
    resume too: the deployment fine-tune and a mixture fine-tune (all_data) each fail once right after
    saving their step-10 state; the rerun resumes from it and ends where the uninterrupted run did."""
    work, _, first = tiny_run
    assert first.returncode == 0
    ref = work / "results" / "tiny"
    cfg = write_config(tiny_config(tiny_model, tmp_path / "results", share_finetunes=False, checkpoint_every_steps=10,
                                   baselines={"similarity": False, "random_seeds": 0}), tmp_path / "tiny.yaml")
    run = tmp_path / "results" / "tiny"

    def workflow(*args, failpoint_dir=None):
        env = dict(WORKFLOW_ENV)
        if failpoint_dir:  # the first training job to save a state fails once, after saving it
            env |= {"MERGE2MIX_FAILPOINTS": "finetune.checkpoint_saved=fail-once", "MERGE2MIX_FAILPOINT_DIR": str(failpoint_dir)}
        return snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg), *args, env=env)

    assert workflow("--until", "finetune").returncode == 0
    failed = workflow("--until", "deploy", failpoint_dir=tmp_path)  # deploy is the only training job left
    assert failed.returncode != 0 and "failpoint finetune.checkpoint_saved" in failed.stdout + failed.stderr
    assert (run / "work" / "deploy" / "latest").read_text().strip() == "step-10"
    assert workflow("--until", "deploy").returncode == 0
    deploy, deploy_ref = (json.loads((r / "deploy" / "train.json").read_text()) for r in (run, ref))
    assert deploy["resumed_from_step"] == 10 and deploy["weights_sha256"] == deploy_ref["weights_sha256"]

    (tmp_path / "again").mkdir()
    failed = workflow(failpoint_dir=tmp_path / "again")  # now the all_data mixture is the only training job
    assert failed.returncode != 0 and "failpoint finetune.checkpoint_saved" in failed.stdout + failed.stderr
    r = workflow()
    assert r.returncode == 0, r.stderr[-3000:]
    full = "books+films+food"
    mixture, mixture_ref = (json.loads((r / "mixtures" / f"{full}.json").read_text()) for r in (run, ref))
    assert mixture["resumed_from_step"] == 10 and mixture_ref["resumed_from_step"] is None
    for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "steps"):
        assert mixture[k] == mixture_ref[k], k
    assert not (tmp_path / "results" / "store").exists()  # nothing shared
    assert all("reused_from_store" not in json.loads(p.read_text()) for p in run.glob("finetune/*/train.json"))

def test_size_calibration_fits_on_its_anchors_and_ranks_by_the_prediction(tiny_run, tiny_model):
    """calibration.mixtures 1: one calibrate job on the singles, all the data and one seeded pair (real
    mixture fine-tunes), its fit is least squares on exactly those files, masks.csv ranks by the
    prediction, and only the anchors were fine-tuned as mixtures."""
    from merge2mix import calibration

    work, _, first = tiny_run
    assert first.returncode == 0
    cfg = tiny_config(tiny_model, work / "results", run="tiny-cal", calibration={"mixtures": 1})
    r = snakemake(work, "--cores", "2", "--configfile", str(write_config(cfg, work / "cal.yaml")), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    run = work / "results" / "tiny-cal"
    anchors = calibration.anchor_masks(["books", "food", "films"], 1, 0)
    assert sorted(p.stem for p in (run / "mixtures").glob("*.json")) == anchors and len(anchors) == 5
    cal = json.loads((run / "calibration.json").read_text())
    merged = [json.loads((run / "merge_eval" / f"{m}.json").read_text()) for m in anchors]
    tuned = [json.loads((run / "mixtures" / f"{m}.json").read_text()) for m in anchors]
    again = calibration.fit([x["accuracy"] for x in merged], [x["size"] for x in merged], [y["val_accuracy"] for y in tuned])
    assert {k: cal[k] for k in again} == again and cal["extra_finetunes"] == 1
    table = pd.read_csv(run / "masks.csv")
    assert len(table) == 7 and table["calibrated"].is_monotonic_decreasing
    by_hand = calibration.predict(cal, table["accuracy"], table["size"])
    assert table["calibrated"].tolist() == pytest.approx(list(by_hand))
    best = json.loads((run / "best_mask.json").read_text())
    assert best["mask"] == table["mask"].iloc[0] and best["calibration"]["n_anchors"] == 5


def test_constraints_pick_the_best_allowed_mask_and_an_impossible_budget_stops_before_training(tiny_run, tiny_model):
    """exclude books + a budget: only the allowed masks are scored, and the pick is the first allowed
    mask of the unconstrained run's ranking (same fine-tunes, same merged scores). A budget below every
    allowed mixture fails after prepare_data with one line, before any fine-tune."""
    from merge2mix.constraints import allows

    work, _, first = tiny_run
    assert first.returncode == 0
    sizes = {n: json.loads((work / "results" / "tiny" / "data" / n / "meta.json").read_text())["rows"]["train"]
             for n in ("books", "food", "films")}
    c = {"exclude": ["books"], "budget": {"examples": sizes["food"] + sizes["films"]}}
    cfg = tiny_config(tiny_model, work / "results", run="tiny-con", select={"constraints": c})
    r = snakemake(work, "--cores", "2", "--configfile", str(write_config(cfg, work / "con.yaml")), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    run = work / "results" / "tiny-con"
    assert sorted(p.stem for p in (run / "merge_eval").glob("*.json")) == ["films", "films+food", "food"]
    ranking = pd.read_csv(work / "results" / "tiny" / "masks.csv")["mask"].tolist()
    best = json.loads((run / "best_mask.json").read_text())
    assert best["mask"] == next(m for m in ranking if allows(m.split("+"), c, sizes)) and best["constraints"] == c
    assert json.loads((run / "constraints.json").read_text())["train_examples"] == sizes
    looser = {"exclude": ["books"], "budget": {"examples": 10_000}}  # a changed constraint set retrains nothing
    cfg = tiny_config(tiny_model, work / "results", run="tiny-con", select={"constraints": looser})
    r = snakemake(work, "-n", "--cores", "2", "--configfile", str(write_config(cfg, work / "con2.yaml")), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    assert set(_planned_jobs(r.stdout + r.stderr)) == {"constraints", "select_mixture"}

    tight = {"budget": {"examples": min(sizes.values()) - 1}}
    cfg = tiny_config(tiny_model, work / "results", run="tiny-tight", select={"constraints": tight})
    r = snakemake(work, "--cores", "2", "--configfile", str(write_config(cfg, work / "tight.yaml")))
    assert r.returncode != 0 and "tiny-tight/logs/constraints.log" in r.stderr  # Snakemake names the job's log
    log = (work / "results" / "tiny-tight" / "logs" / "constraints.log").read_text().strip().splitlines()
    assert len(log) == 1 and re.search(rf"ERROR config: select\.constraints\.budget\.examples: {tight['budget']['examples']} "
                                       rf"admits no allowed mixture \(the smallest, (\w+), has {min(sizes.values())} train examples\)$", log[0])
    assert sizes[re.search(r"smallest, (\w+),", log[0]).group(1)] == min(sizes.values())
    assert not (work / "results" / "tiny-tight" / "finetune").exists() and not (work / "results" / "tiny-tight" / "constraints.json").exists()


def test_surrogate_search_runs_in_rounds_and_resumes_between_them(tiny_run, tiny_model):
    """select.search surrogate on the tiny pool: round 0 scores a seeded design of 3 masks, each later
    round proposes the fitted model's best unscored mask (recomputed here from the round files and
    the merged scores), until 5 masks are scored; the pick is the best of those 5 in the exhaustive
    run's ranking. A lost last round is redone alone: no mask is scored twice."""
    from merge2mix import search

    work, _, first = tiny_run
    assert first.returncode == 0
    settings = {"per_round": 1, "patience": 5, "max_masks": 5, "design_masks": 3, "alpha": 0.01}
    cfg = tiny_config(tiny_model, work / "results", run="tiny-search", select={"search": "surrogate", "surrogate": settings})
    path = write_config(cfg, work / "search.yaml")
    r = snakemake(work, "--cores", "2", "--configfile", str(path), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    run = work / "results" / "tiny-search"
    rounds = [json.loads((run / "search" / f"round_{i}.json").read_text()) for i in range(3)]
    assert not (run / "search" / "round_3.json").exists()
    assert [x["n_scored"] for x in rounds] == [3, 4, 5] and [x["done"] for x in rounds] == [False, False, True]
    assert [x["round"] for x in rounds] == [0, 1, 2]
    design = search.design(["books", "food", "films"], 3, 0)
    assert rounds[0]["scored"] == sorted(design)
    acc = {p.stem: json.loads(p.read_text())["accuracy"] for p in (run / "merge_eval").glob("*.json")}
    assert len(acc) == 5
    for rnd in rounds[:2]:
        model = search.fit([k.split("+") for k in rnd["scored"]], [acc[k] for k in rnd["scored"]], ["books", "food", "films"], 0.01)
        assert rnd["proposed"] == search.propose(model, [k.split("+") for k in rnd["scored"]], 1)
    ranking = pd.read_csv(work / "results" / "tiny" / "masks.csv")["mask"].tolist()
    best = json.loads((run / "best_mask.json").read_text())
    assert best["mask"] == next(m for m in ranking if m in acc) and best["masks_scored"] == 5
    (run / "search" / "round_2.json").unlink()
    r = snakemake(work, "-n", "--cores", "2", "--configfile", str(path), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    assert set(_planned_jobs(r.stdout + r.stderr)) == {"search_round", "select_mixture"}


def test_masks_per_job_scores_each_bundle_in_one_process(tiny_run, tiny_model):
    """masks_per_job 4 on the tiny pool (candidates books, food, films = bits 1, 2, 4): masks 1-3 and
    4-7 are two merge_bundle jobs, each logging one process; every mask keeps its own result file,
    with the per-mask run's scores. A lost bundle file reruns that bundle without scoring a mask
    again; appending a candidate adds bundles and leaves these two alone."""
    work, _, first = tiny_run
    assert first.returncode == 0
    cfg = tiny_config(tiny_model, work / "results", run="tiny-bundle", masks_per_job=4)
    path = write_config(cfg, work / "bundle.yaml")
    r = snakemake(work, "--cores", "2", "--configfile", str(path), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    run, ref = work / "results" / "tiny-bundle", work / "results" / "tiny"
    bundles = {p.stem: json.loads(p.read_text()) for p in (run / "merge_bundles").glob("*.json")}
    assert {b: sorted(x["masks"]) for b, x in bundles.items()} == {
        "b0": ["books", "books+food", "food"], "b1": ["books+films", "books+films+food", "films", "films+food"]}
    assert all(x["scored"] == len(x["masks"]) and x["reused"] == [] for x in bundles.values())
    for b, x in bundles.items():
        pids = re.findall(r"process (\d+), its mask", (run / "logs" / "merge_bundle" / f"{b}.log").read_text())
        assert len(pids) == len(x["masks"]) and set(pids) == {str(x["process"])}, (b, pids)
    volatile = ("wall_s", "merge_s", "eval_s", "inputs_id")
    for mask in [m for x in bundles.values() for m in x["masks"]]:
        got, want = (json.loads((d / "merge_eval" / f"{mask}.json").read_text()) for d in (run, ref))
        assert got == bundles["b0" if mask in bundles["b0"]["masks"] else "b1"]["masks"][mask]
        assert {k: v for k, v in got.items() if k not in volatile} == {k: v for k, v in want.items() if k not in volatile}
    # A lost mask file is copied again from its bundle's; lost with the bundle's, only that mask is scored.
    b1, films = run / "merge_bundles" / "b1.json", run / "merge_eval" / "films.json"
    kept = b1.stat().st_mtime_ns
    films.unlink()
    r = snakemake(work, "--cores", "2", "--configfile", str(path), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(films.read_text()) == bundles["b1"]["masks"]["films"] and b1.stat().st_mtime_ns == kept
    films.unlink(), b1.unlink()
    r = snakemake(work, "--cores", "2", "--configfile", str(path), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads(b1.read_text())
    assert again["scored"] == 1 and sorted(again["reused"]) == ["books+films", "books+films+food", "films+food"]
    assert {m: again["masks"][m] for m in again["reused"]} == {m: bundles["b1"]["masks"][m] for m in again["reused"]}
    assert {k: v for k, v in again["masks"]["films"].items() if k not in volatile} == {
        k: v for k, v in bundles["b1"]["masks"]["films"].items() if k not in volatile}
    cfg["datasets"]["toys"] = {**cfg["datasets"]["books"], "local": {"path": str(FIXTURES / "toys.csv")}}
    r = snakemake(work, "-n", "--cores", "2", "--configfile", str(write_config(cfg, work / "bundle-toys.yaml")),
                  "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = _planned_jobs(r.stdout + r.stderr)
    assert sorted(jobs["merge_bundle"]) == ["bundle=b2", "bundle=b3"]  # masks 8-15: the ones with toys
    assert all("toys" in w for w in jobs["merge_eval"]) and len(jobs["merge_eval"]) == 8


def test_adding_a_candidate_leaves_scored_masks_untouched(tiny_run, tiny_model):
    """A real run with a fourth candidate: the 7 masks scored before keep their files (bytes and
    mtime), the 8 new ones are scored, masks.csv ranks all 15. Last in this file on purpose: it
    changes results/tiny, which the tests above read as the uninterrupted reference."""
    work, _, first = tiny_run
    assert first.returncode == 0
    run = work / "results" / "tiny"
    old = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in [*run.glob("merge_eval/*.json"),
                                                               *run.glob("finetune/*/model.safetensors")]}
    assert len(old) == 7 + 3
    r = snakemake(work, "--cores", "2", "--configfile", str(_with_toys(tiny_model, work)), "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p, (mtime, data) in old.items() if p.stat().st_mtime_ns != mtime or p.read_bytes() != data] == []
    assert len(list(run.glob("merge_eval/*.json"))) == 15
    masks = pd.read_csv(run / "masks.csv", dtype={"bitstring": str})
    assert len(masks) == 15 and masks["bitstring"].str.len().eq(4).all()


def test_mixture_weights_search_in_rounds_and_deploy_by_weighted_sampling(tiny_run, tiny_model, capsys):
    """weights: on the tiny pool: the design is the 2 best masks and 2 Dirichlet draws on each
    multi-dataset one; rounds chain until the surrogate's optimum repeats; weighted vectors get
    weight_eval files, masks keep merge_eval's; the weighted deployment draws the chosen weights;
    mixture.json reports both deployments; a rerun has nothing to do."""
    from merge2mix import mixtures, weight_search

    work, _, first = tiny_run
    assert first.returncode == 0
    settings = {"top_masks": 2, "per_mask": 2, "max_vectors": 8}
    path = write_config(tiny_config(tiny_model, work / "results", run="tiny-weights", weights=settings), work / "weights.yaml")
    r = snakemake(work, "--cores", "2", "--configfile", str(path))
    assert r.returncode == 0, r.stderr[-4000:]
    run = work / "results" / "tiny-weights"
    design = json.loads((run / "weights" / "design.json").read_text())
    masks = pd.read_csv(run / "masks.csv")["mask"].tolist()
    assert design["top_masks"] == masks[:2] and design["vectors"] == masks[:2] + design["design"]
    assert design["design"] == weight_search.design(masks[:2], 2, 0, 2.0)
    rounds = sorted(run.glob("weights/round_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    recs = [json.loads(p.read_text()) for p in rounds]
    assert [x["done"] for x in recs] == [False] * (len(recs) - 1) + [True] and recs[-1]["n_scored"] <= 8
    proposed = [x["proposed"] for x in recs[:-1]]
    scored = design["vectors"] + proposed
    assert sorted(recs[-1]["scored"]) == sorted(scored)
    for key in scored:
        assert ((run / "weight_eval" / f"{key}.json").exists() if "@" in key else (run / "merge_eval" / f"{key}.json").exists()), key
    for p in (run / "weight_eval").glob("*.json"):
        rec = json.loads(p.read_text())
        assert rec["weights"] == mixtures.parse_weights_key(p.stem) and rec["mask"] == p.stem
    mix = json.loads((run / "mixture.json").read_text())
    assert mix["key"] == recs[-1]["best"] and mix["weights"] == mixtures.parse_weights_key(mix["key"])
    assert mix["val_score"] == max(mix["scores"].values()) and set(mix["scores"]) == set(scored)
    assert set(mix["test"]) == {"weighted_deployed", "subset_deployed"} and (run / "plots" / "score_vs_weight.png").is_file()
    deploy = json.loads((run / "deploy_weighted" / "train.json").read_text())
    assert deploy["mixture_weights"] == mix["weights"] and deploy["examples_per_epoch"] == 20 * len(mix["weights"])
    assert deploy["drawn_per_epoch"] == mixtures.allocate(mix["weights"], deploy["examples_per_epoch"])
    again = snakemake(work, "-n", "--cores", "2", "--configfile", str(path))
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    from merge2mix.cli import main

    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    top = max(mix["weights"], key=mix["weights"].get)
    assert f"mixture weights:   {top} {mix['weights'][top]:.2f}" in out
    assert f"test accuracy:     {mix['test']['weighted_deployed']['accuracy']:.4f}" in out

    # bench/weights.py on the same config (run tiny-weights: everything above is reused): both
    # deployments with intervals, and 3 weight vectors fine-tuned by weighted sampling.
    sys.path.insert(0, str(REPO / "bench"))
    import weights as weights_bench

    base_cfg = write_config(tiny_config(tiny_model, work / "results"), work / "tiny-base.yaml")
    assert weights_bench.main(["--configs", str(base_cfg), "--oracle", "3", "--weights", json.dumps(settings),
                               "--workdir", str(work), "--out", str(work / "wb")]) == 0
    res = json.loads((work / "wb" / "tiny-weights.json").read_text())
    assert res["weights"] == mix["weights"] and res["test"]["weighted"]["accuracy"] == mix["test"]["weighted_deployed"]["accuracy"]
    assert res["metric"] == mix["metric"]  # the oracle r compares merged and fine-tuned val in the selection metric
    lo, hi = res["test"]["difference_ci95"]  # paired: the examples only one of the two models got right
    assert lo <= res["test"]["difference"] <= hi
    t = res["test"]
    assert t["only_weighted_right"] - t["only_subset_right"] == round(t["difference"] * res["n_test"])
    u = t["difference_ci95_unpaired_normal"]
    assert u[0] <= t["difference"] <= u[1]
    keys = [v["key"] for v in res["oracle"]["vectors"]]
    first = list(dict.fromkeys([mix["key"], mix["best_mask"]]))
    assert len(keys) == 3 == len(set(keys)) and keys[: len(first)] == first
    assert all(v["merged_val"] == mix["scores"][v["key"]] for v in res["oracle"]["vectors"])
    assert len(pd.read_csv(work / "wb" / "weights.csv")) == 1


def test_ctrl_c_stops_a_fine_tune_training_in_snakemakes_process(tiny_model, tmp_path):
    """Ctrl-C while a fine-tune trains in Snakemake's process (a thread Snakemake waits for: it cannot
    kill it as it kills a job's process): the fine-tune stops at its next step, Snakemake exits soon
    with an error, the log says why, and no half-trained model is left as the job's output."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = write_config(tiny_config(tiny_model, tmp_path / "results", train={"lr": 0.01, "max_steps": 200000, "batch_size": 8}),
                       tmp_path / "tiny.yaml")  # ~1 h of steps: only an interrupt ends it within the test
    run = tmp_path / "results" / "tiny"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "2", "--configfile", str(cfg), "--until", "finetune"]
    with open(tmp_path / "snakemake.out", "w") as out:
        proc = subprocess.Popen(cmd, env=WORKFLOW_ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        while time.time() < deadline and not any("fine-tune on" in p.read_text() for p in run.glob("logs/finetune/*.log")):
            assert proc.poll() is None, (tmp_path / "snakemake.out").read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1)
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole foreground group
        try:
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:  # still training: do not leave it running after the test
                os.killpg(proc.pid, signal.SIGKILL)
    assert rc != 0 and time.time() - t0 < 60, rc
    training = [p for p in run.glob("logs/finetune/*.log") if "fine-tune on" in p.read_text()]
    assert len(training) == 1 and "interrupted at step" in training[0].read_text(), [p.read_text() for p in training]
    assert not (run / "finetune" / training[0].stem / "model.safetensors").exists()


def test_trust_anchors_add_exactly_their_mixture_fine_tunes(tiny_model, tmp_path):
    """trust.anchors: K plans K more pair/triple fine-tunes, drawn as calibration's anchors are (the same
    masks for the same seed); the default plans none beyond all the data's."""
    from merge2mix.calibration import anchor_masks

    planned = {}
    for k in (0, 2):
        cfg = write_config(tiny_config(tiny_model, tmp_path / "results", trust={"anchors": k}), tmp_path / f"t{k}.yaml")
        r = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(cfg))
        assert r.returncode == 0, r.stderr[-3000:]
        planned[k] = sorted(w.removeprefix("mask=") for w in _planned_jobs(r.stdout + r.stderr).get("mixture_finetune", []))
    cands = ["books", "food", "films"]
    extra = [m for m in anchor_masks(cands, 2, 0) if "+" in m and m != "books+films+food"]
    assert planned[0] == ["books+films+food"] and len(extra) == 2
    assert planned[2] == sorted(["books+films+food", *extra])
