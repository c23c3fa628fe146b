"""The workflow as a user runs it: snakemake on the tiny BERT + in-repo datasets, and the embedded
default's DAG (dry run)."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import FIXTURES, REPO, snakemake, tiny_config, write_config


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
    assert masks["rank"].tolist() == list(range(1, 8))
    assert len(list((run / "merge_eval").glob("*.json"))) == 7

    best = json.loads((run / "best_mask.json").read_text())
    assert best["mask"] == masks["mask"][0] and best["masks_scored"] == 7
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selected_mixture"] == best["datasets"]
    assert set(summary["test"]) == {"base", "merged_best", "deployed"}
    assert all(m["n"] == 15 for m in summary["test"].values())
    deploy = json.loads((run / "deploy" / "train.json").read_text())
    assert deploy["datasets"] == best["datasets"] and deploy["examples"] == 20 * len(best["datasets"])
    assert "Selected mixture" in (run / "summary.md").read_text()


def test_evidence_baselines_oracle_and_report(tiny_run):
    work, cfg, r = tiny_run
    assert r.returncode == 0, r.stderr[-4000:]
    run = work / "results" / "tiny"
    oracle = [json.loads(p.read_text()) for p in (run / "oracle").glob("*.json")]
    assert len(oracle) == 7 and {o["size"] for o in oracle} == {1, 2, 3}
    assert all(o["trained"] == (o["size"] > 1) for o in oracle)  # singletons reuse the per-dataset fine-tune
    assert not list((run / "oracle").rglob("*.safetensors"))  # mixture checkpoints are not kept

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

    choice = json.loads((run / "baselines" / "masks.json").read_text())
    assert choice["k"] == len(best["datasets"]) and len(choice["random"]) == 3
    sim = pd.read_csv(run / "baselines" / "similarity.csv")
    assert sorted(sim["candidate"]) == ["books", "films", "food"] and sim["cosine"].between(-1, 1).all()

    corr = json.loads((run / "correlation.json").read_text())
    assert corr["masks"] == 7 and -1 <= corr["pearson_r"] <= 1 and corr["picked"] == best["mask"]
    assert corr["regret"] == pytest.approx(corr["oracle_best_test_accuracy"] - corr["picked_test_accuracy"])
    for png in ("methods", "accuracy_vs_size", "single_transfer", "merged_vs_finetuned"):
        assert (run / "plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rep = snakemake(work, "--report", str(work / "report.html"), "--configfile", str(cfg))
    assert rep.returncode == 0, rep.stderr[-3000:]
    html = (work / "report.html").read_text(errors="replace")
    assert "merged_vs_finetuned.png" in html and "methods.png" in html


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


def test_cli_check_and_show(tiny_run, capsys):
    from merge2mix.cli import main

    work, cfg, first = tiny_run
    assert main(["check", str(cfg)]) == 0
    assert "target phones, 3 candidates, 7 masks" in capsys.readouterr().out
    assert main(["show", str(cfg)]) == 0
    out = capsys.readouterr().out
    best = json.loads((work / "results" / "tiny" / "best_mask.json").read_text())
    assert f"selected mixture:  {' + '.join(best['datasets'])}" in out
    bad = work / "bad.yaml"
    bad.write_text("target: [\n")
    assert main(["check", str(bad)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_phase_resumes_and_naive_path_agrees(tiny_run, tiny_model, tmp_path):
    """Kill the merge_eval phase (one process per job: the naive path) with SIGKILL, resume with the
    fast path: finished masks are kept as they were, and masks.csv equals the uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    work, _, first = tiny_run
    assert first.returncode == 0
    cfg = write_config(tiny_config(tiny_model, tmp_path / "results"), tmp_path / "tiny.yaml")
    assert snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg), "--until", "finetune").returncode == 0
    out = tmp_path / "results" / "tiny" / "merge_eval"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "2", "--configfile", str(cfg), "--workflow-profile", "none", "--until", "select_mixture"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "workflow")})
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("*.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # A job killed after its file appeared but before Snakemake recorded it as finished is still
    # marked incomplete (.snakemake/incomplete/<base64 of the path>) and rightly rerun: not "done".
    import base64

    marks = tmp_path / ".snakemake" / "incomplete"
    pending = {os.path.abspath(tmp_path / base64.urlsafe_b64decode(m.name).decode())
               for m in marks.rglob("*") if m.is_file()} if marks.exists() else set()
    done = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in out.glob("*.json") if str(p) not in pending}
    assert 2 <= len(done) < 7, "the kill should land mid-phase"
    for _, text in done.values():
        json.loads(text)  # complete files only: results are written atomically
    assert snakemake(tmp_path, "--unlock", "--configfile", str(cfg)).returncode == 0
    r = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg), "--rerun-incomplete")
    assert r.returncode == 0, r.stderr[-3000:]
    redone = [n for n, (mtime, text) in done.items()
              if (out / n).stat().st_mtime_ns != mtime or (out / n).read_text() != text]
    assert not redone, (redone, sorted(pending), r.stdout[-4000:] + r.stderr[-6000:])
    again = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(cfg))
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    ours = pd.read_csv(tmp_path / "results" / "tiny" / "masks.csv", dtype={"bitstring": str})
    ref = pd.read_csv(work / "results" / "tiny" / "masks.csv", dtype={"bitstring": str})
    pd.testing.assert_frame_equal(ours, ref)


def test_adding_a_candidate_reruns_one_finetune_and_only_new_masks(tiny_run, tiny_model):
    work, cfg_path, first = tiny_run
    assert first.returncode == 0
    cfg = tiny_config(tiny_model, work / "results", oracle=True)
    cfg["datasets"]["toys"] = {**cfg["datasets"]["books"], "local": {"path": str(FIXTURES / "toys.csv")}}
    bigger = write_config(cfg, work / "bigger.yaml")
    r = snakemake(work, "-n", "--cores", "2", "--configfile", str(bigger))
    assert r.returncode == 0, r.stderr[-3000:]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M)}
    assert counts["prepare_data"] == 1 and counts["finetune"] == 1, counts
    assert counts["merge_eval"] == 8, counts  # 15 masks now, 7 of them already scored
    assert "init_model" not in counts


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
        ("empty dataset", lambda c: c["datasets"].update(toys={**toys, "local": {"path": str(empty)}}), "dataset toys: no rows left"),
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
def test_killed_finetune_resumes_in_the_workflow(tiny_model, tmp_path):
    """SIGKILL the workflow while a fine-tune is mid-way (after its first saved state), resume with
    --rerun-incomplete: the fine-tune continues from its state and ends bit-identical."""
    import os
    import signal
    import subprocess
    import sys
    import time

    def cfg_for(d):
        c = tiny_config(tiny_model, d / "results", candidates=["books", "food"], share_finetunes=False,
                        baselines={"similarity": False, "random_seeds": 0}, checkpoint_every_steps=20)
        c["train"] = {**c["train"], "max_steps": 400}
        return write_config(c, d / "c.yaml")

    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "kill"
    ref_dir.mkdir(), kill_dir.mkdir()
    until = ["--until", "finetune"]
    assert snakemake(ref_dir, "--cores", "2", "--configfile", str(cfg_for(ref_dir)), *until).returncode == 0
    cfg = cfg_for(kill_dir)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(kill_dir),
           "--cores", "2", "--configfile", str(cfg), *until]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "workflow")})
    states = kill_dir / "results" / "tiny" / "work" / "finetune"
    deadline = time.time() + 300
    while time.time() < deadline and not list(states.glob("*/latest")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(states.glob("*/latest")), "no training state was saved before the kill"
    assert snakemake(kill_dir, "--unlock", "--configfile", str(cfg)).returncode == 0
    r = snakemake(kill_dir, "--cores", "2", "--configfile", str(cfg), "--rerun-incomplete", *until)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = []
    for name in ("books", "food"):
        rec = json.loads((kill_dir / "results" / "tiny" / "finetune" / name / "train.json").read_text())
        ref = json.loads((ref_dir / "results" / "tiny" / "finetune" / name / "train.json").read_text())
        assert rec["weights_sha256"] == ref["weights_sha256"] and rec["train_loss"] == ref["train_loss"]
        resumed.append(rec["resumed_from_step"])
    assert any(s for s in resumed), resumed  # at least the killed one continued from its state
